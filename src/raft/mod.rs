//! A pure Raft state machine in KRaft's shape (KIP-595, with KIP-996 pre-vote): no sockets,
//! clocks, files or randomness inside. The caller feeds it inputs — a message from a peer
//! ([`RaftNode::step`]), a clock tick ([`RaftNode::tick`]), a client proposal
//! ([`RaftNode::propose`]), a snapshot of its applied state ([`RaftNode::snapshot`]), a
//! graceful resignation ([`RaftNode::resign`]) — and then drains a [`Ready`]: what to persist,
//! what to send, what to apply. Randomized election timeouts come from
//! [`Config::random_seed`], so a run is a function of its inputs; that is what makes the
//! deterministic simulation (`sim.rs`) possible.
//!
//! KRaft's differences from textbook Raft, all kept here:
//! - the leader epoch is the term; followers *pull* with Fetch(fetch offset, last fetched
//!   epoch), and the leader learns their progress from those fetches;
//! - the high watermark is the commit index; a leader advances it only once a majority holds
//!   an entry of its own epoch (it writes a LeaderChange entry on election for that);
//! - a fetch whose (offset, epoch) the leader's log does not hold is answered with the
//!   diverging epoch and its end offset, and the follower truncates;
//! - a fetch below the leader's log start is answered with a snapshot id: FetchSnapshot;
//! - pre-vote: a node that lost its leader first asks whether it could win, without bumping
//!   its epoch, and voters that still hear from a leader say no — so a node returning from a
//!   partition does not disrupt a healthy leader;
//! - check-quorum: a leader that got fetches from no majority within a timeout resigns.
//!
//! # Driving it (the controller's quorum driver)
//!
//! `src/controller/` replaces its one-node `Controller::commit` with a driver task that owns a
//! `RaftNode` and the metadata log files (`__cluster_metadata-0`, `quorum-state`, snapshots):
//! 1. On start, read `quorum-state` (epoch, voted-for, leader), the latest snapshot and the
//!    log after it, and call [`RaftNode::restore`] ([`RaftNode::new`] on an empty data dir);
//!    rebuild the image from the snapshot. `Config::voters` comes from
//!    `controller.quorum.voters`; a node not in it is an observer (a broker).
//! 2. Loop over one `select!`: a timer firing every tick (e.g. 50 ms; the timeouts in
//!    [`Config`] are in ticks) → `tick()`; a decoded Vote / BeginQuorumEpoch /
//!    EndQuorumEpoch / Fetch / FetchSnapshot request or response from the controller
//!    listener → `step(from, message)`; a metadata change to commit → `propose(bytes)`. The
//!    offset `propose` returns is where the change will land: answer the client when a
//!    `Ready::committed` entry at that offset carries the proposing epoch, fail it when one
//!    of another epoch lands there (a new leader truncated it) or the node stops leading.
//! 3. After each input (or a batch of them), if `has_ready()`, take `ready()` and act on it
//!    strictly in field order: write `quorum_state` (fsync), the snapshot, the truncation,
//!    the entries (fsync) — then send `messages` — then apply `apply_snapshot` and
//!    `committed` to the image. Sending before the fsync would let a vote or a fetch offset
//!    outlive a crash that lost what it promised; for a one-voter quorum the entries of a
//!    Ready are already in its `committed`, which is safe only in that order.
//! 4. Messages map one-to-one onto `kafka_protocol::messages` (see `messages.rs`). Responses
//!    carry a few "echo" fields (`VoteResponse::pre_vote`, `FetchResponse::fetch_offset` and
//!    `last_fetched_epoch`) that are not on the wire: the driver keeps each in-flight
//!    request by correlation id and copies them from it. Requests whose sender is not a
//!    voter get `InconsistentVoterSet`; the driver should also check the cluster id.
//! 5. When the image has applied far enough past the last snapshot, serialize it and call
//!    `snapshot(applied_offset, bytes)`; serve DescribeQuorum from `epoch()`,
//!    `leader_id()`, `high_watermark()` and `replica_progress()`.
//! 6. On SIGTERM, `resign()` if leader, send the resulting EndQuorumEpoch messages, exit.

pub mod election;
pub mod log;
pub mod messages;
pub mod replication;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use self::log::RaftLog;
pub use self::messages::*;

/// Limits and timeouts, all in ticks of the caller's clock.
#[derive(Clone, Debug)]
pub struct Config {
    pub node_id: NodeId,
    /// The voter set (static, as `controller.quorum.voters`).
    pub voters: Vec<NodeId>,
    /// A follower that heard nothing from its leader for this long (randomized up to twice
    /// it) starts an election; so does a node with no leader.
    pub election_timeout_ticks: u32,
    /// A leader with fetches from no majority of voters within this long resigns.
    pub check_quorum_timeout_ticks: u32,
    /// How long the leader may hold a fetch that is caught up, waiting for new entries.
    pub fetch_max_wait_ticks: u32,
    /// A fetch unanswered for this long is sent again (it or its answer was lost).
    pub fetch_retry_ticks: u32,
    /// How often a leader re-announces itself to voters that have not fetched yet.
    pub begin_quorum_retry_ticks: u32,
    pub fetch_entries_max: usize,
    pub fetch_size_bytes_max: usize,
    pub snapshot_chunk_size_bytes_max: usize,
    /// Proposals are refused while this many entries wait for commit.
    pub uncommitted_entries_max: usize,
    /// Proposals are refused while the in-memory log holds this many entries (snapshot).
    pub log_entries_max: usize,
    pub entry_size_bytes_max: usize,
    /// Seeds the election timeout randomization.
    pub random_seed: u64,
}

impl Config {
    pub fn new(node_id: NodeId, voters: Vec<NodeId>, random_seed: u64) -> Config {
        Config {
            node_id,
            voters,
            election_timeout_ticks: 10,
            check_quorum_timeout_ticks: 15,
            fetch_max_wait_ticks: 3,
            fetch_retry_ticks: 6,
            begin_quorum_retry_ticks: 4,
            fetch_entries_max: 64,
            fetch_size_bytes_max: 1 << 20,
            snapshot_chunk_size_bytes_max: 1 << 20,
            uncommitted_entries_max: 1024,
            log_entries_max: 1 << 20,
            entry_size_bytes_max: 1 << 20,
            random_seed,
        }
    }
}

/// What must survive a restart before any message is sent: Kafka's `quorum-state` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuorumState {
    pub epoch: Epoch,
    pub voted_for: Option<NodeId>,
    pub leader_id: Option<NodeId>,
}

/// Durable state handed back to [`RaftNode::restore`] after a restart.
#[derive(Clone, Debug)]
pub struct Persisted {
    pub quorum_state: QuorumState,
    pub snapshot: Option<Snapshot>,
    /// The log after the snapshot (from offset 0 without one).
    pub entries: Vec<Entry>,
}

/// The output of a batch of inputs. Act on it in field order: persist, then send, then apply.
#[derive(Clone, Debug, Default)]
pub struct Ready {
    /// Write and fsync before anything else.
    pub quorum_state: Option<QuorumState>,
    /// Persist; then drop the log below `snapshot.id.end_offset` (the whole log when
    /// `snapshot_replaces_log`: a snapshot fetched from the leader).
    pub snapshot: Option<Snapshot>,
    pub snapshot_replaces_log: bool,
    /// Drop persisted entries at this offset and above.
    pub truncate_to: Option<Offset>,
    /// Append (and fsync) these, the first at `entries_offset`.
    pub entries_offset: Offset,
    pub entries: Vec<Entry>,
    /// Send only after the above is durable.
    pub messages: Vec<Envelope>,
    /// Reset the state machine to this snapshot before applying `committed`.
    pub apply_snapshot: Option<Snapshot>,
    /// Committed entries to apply, the first at `committed_offset`.
    pub committed_offset: Offset,
    pub committed: Vec<Entry>,
    pub high_watermark: Offset,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleKind {
    Unattached,
    Follower,
    Prospective,
    Candidate,
    Leader,
    Resigned,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposeError {
    NotLeader {
        leader_id: Option<NodeId>,
        epoch: Epoch,
    },
    /// Too many entries wait for commit, or the log needs a snapshot first.
    Busy,
    TooLarge,
}

/// Votes collected by a prospective (pre-vote) or a candidate; the node's own included.
#[derive(Clone, Debug, Default)]
pub(crate) struct VoteTally {
    pub granted: BTreeSet<NodeId>,
    pub rejected: BTreeSet<NodeId>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct FollowerState {
    /// When the in-flight fetch (or FetchSnapshot) was sent; `None`: none in flight.
    pub fetch_sent_tick: Option<u64>,
    /// Last valid answer from the leader; `None` also after it resigned (EndQuorumEpoch).
    pub leader_contact_tick: Option<u64>,
    pub snapshot_fetch: Option<SnapshotFetch>,
}

#[derive(Clone, Debug)]
pub(crate) struct SnapshotFetch {
    pub id: SnapshotId,
    pub data: Vec<u8>,
}

/// What the leader knows of one replica, from its fetches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaProgress {
    /// Fetch offset of its last valid fetch: its log matches ours below it. -1: unknown.
    pub end_offset: Offset,
    pub last_fetch_tick: Option<u64>,
}

#[derive(Clone, Debug)]
pub(crate) struct LeaderState {
    /// Offset of this epoch's LeaderChange entry; the high watermark must pass it.
    pub epoch_start_offset: Offset,
    pub elected_tick: u64,
    pub begin_quorum_sent_tick: u64,
    pub progress: BTreeMap<NodeId, ReplicaProgress>,
    /// Caught-up fetches held until new entries, a high watermark move or `max_wait_ticks`
    /// (one per replica: a newer fetch replaces an older one).
    pub parked: BTreeMap<NodeId, (FetchRequest, u64)>,
}

#[derive(Clone, Debug)]
pub(crate) enum Role {
    Unattached,
    Follower(FollowerState),
    Prospective(VoteTally),
    Candidate(VoteTally),
    Leader(LeaderState),
    Resigned,
}

/// splitmix64: a tiny seeded generator, enough to spread election timeouts.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (bias is irrelevant at these sizes).
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0);
        self.next_u64() % bound
    }
}

pub struct RaftNode {
    pub(crate) config: Config,
    // Quorum state (persisted through `Ready::quorum_state`).
    pub(crate) epoch: Epoch,
    pub(crate) voted_for: Option<NodeId>,
    pub(crate) leader_id: Option<NodeId>,
    pub(crate) quorum_state_dirty: bool,

    pub(crate) role: Role,
    pub(crate) log: RaftLog,
    /// The latest snapshot (the one at the log start), kept to serve FetchSnapshot.
    pub(crate) snapshot: Option<Snapshot>,
    pub(crate) high_watermark: Offset,
    /// Entries below this were handed out in `Ready::committed` (or a snapshot).
    pub(crate) applied_offset: Offset,

    // What the caller has persisted, to compute the next Ready.
    pub(crate) stable_end_offset: Offset,
    pub(crate) pending_truncate: Option<Offset>,
    pub(crate) pending_snapshot: Option<(Snapshot, bool)>,
    pub(crate) pending_apply_snapshot: Option<Snapshot>,
    pub(crate) messages: Vec<Envelope>,

    pub(crate) now_ticks: u64,
    pub(crate) election_elapsed_ticks: u32,
    pub(crate) election_timeout_current_ticks: u32,
    pub(crate) random: SplitMix64,
}

impl RaftNode {
    /// A node with an empty log and no history.
    pub fn new(config: Config) -> RaftNode {
        RaftNode::restore(
            config,
            Persisted {
                quorum_state: QuorumState {
                    epoch: 0,
                    voted_for: None,
                    leader_id: None,
                },
                snapshot: None,
                entries: Vec::new(),
            },
        )
    }

    /// A node from what it persisted before a restart. Volatile state (high watermark,
    /// replica progress, leader contact) starts over; the high watermark from the snapshot.
    pub fn restore(mut config: Config, persisted: Persisted) -> RaftNode {
        config.voters.sort_unstable();
        config.voters.dedup();
        assert!(!config.voters.is_empty(), "a quorum needs voters");
        assert!(config.election_timeout_ticks > 0);
        assert!(config.fetch_retry_ticks > config.fetch_max_wait_ticks);
        assert!(config.fetch_entries_max > 0 && config.snapshot_chunk_size_bytes_max > 0);
        let start = persisted.snapshot.as_ref().map_or(
            SnapshotId {
                end_offset: 0,
                epoch: 0,
            },
            |s| s.id,
        );
        let log = RaftLog::new(start, persisted.entries);
        let state = persisted.quorum_state;
        assert!(log.last_epoch() <= state.epoch, "log ahead of the epoch");
        let mut node = RaftNode {
            random: SplitMix64(config.random_seed),
            config,
            epoch: state.epoch,
            voted_for: state.voted_for,
            leader_id: state.leader_id,
            quorum_state_dirty: false,
            role: Role::Unattached,
            high_watermark: log.start_offset(),
            applied_offset: log.start_offset(),
            stable_end_offset: log.end_offset(),
            log,
            snapshot: persisted.snapshot,
            pending_truncate: None,
            pending_snapshot: None,
            pending_apply_snapshot: None,
            messages: Vec::new(),
            now_ticks: 0,
            election_elapsed_ticks: 0,
            election_timeout_current_ticks: 0,
        };
        node.role = match node.leader_id {
            // It led this epoch before the restart; it may not lead it again (its progress
            // is gone) and must not vote in it: wait it out.
            Some(leader) if leader == node.config.node_id => Role::Resigned,
            Some(_) => Role::Follower(FollowerState::default()),
            None => Role::Unattached,
        };
        node.reset_election_timer();
        node
    }

    // ---- accessors -------------------------------------------------------------------

    pub fn node_id(&self) -> NodeId {
        self.config.node_id
    }
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }
    pub fn leader_id(&self) -> Option<NodeId> {
        self.leader_id
    }
    pub fn voted_for(&self) -> Option<NodeId> {
        self.voted_for
    }
    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }
    pub fn log_start_offset(&self) -> Offset {
        self.log.start_offset()
    }
    pub fn log_end_offset(&self) -> Offset {
        self.log.end_offset()
    }
    pub fn last_epoch(&self) -> Epoch {
        self.log.last_epoch()
    }
    pub fn entry(&self, offset: Offset) -> Option<&Entry> {
        self.log.entry(offset)
    }
    pub fn latest_snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }
    pub fn is_voter(&self) -> bool {
        self.config.voters.contains(&self.config.node_id)
    }
    pub fn role(&self) -> RoleKind {
        match self.role {
            Role::Unattached => RoleKind::Unattached,
            Role::Follower(_) => RoleKind::Follower,
            Role::Prospective(_) => RoleKind::Prospective,
            Role::Candidate(_) => RoleKind::Candidate,
            Role::Leader(_) => RoleKind::Leader,
            Role::Resigned => RoleKind::Resigned,
        }
    }
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }
    /// The leader's view of each replica (voters and observers), for DescribeQuorum.
    pub fn replica_progress(&self) -> Option<&BTreeMap<NodeId, ReplicaProgress>> {
        match &self.role {
            Role::Leader(leader) => Some(&leader.progress),
            _ => None,
        }
    }

    // ---- inputs ----------------------------------------------------------------------

    /// One tick of the caller's clock.
    pub fn tick(&mut self) {
        self.now_ticks += 1;
        match self.role {
            Role::Leader(_) => self.tick_leader(),
            Role::Follower(_) => self.tick_follower(),
            _ => self.tick_election(),
        }
        self.check_invariants();
    }

    /// A message from `from`.
    pub fn step(&mut self, from: NodeId, message: Message) {
        match message {
            Message::VoteRequest(m) => self.handle_vote_request(from, m),
            Message::VoteResponse(m) => self.handle_vote_response(from, m),
            Message::BeginQuorumEpochRequest(m) => self.handle_begin_quorum_epoch(from, m),
            Message::BeginQuorumEpochResponse(m) => {
                self.observe_leader(from, m.leader_id, m.leader_epoch, false);
            }
            Message::EndQuorumEpochRequest(m) => self.handle_end_quorum_epoch(from, m),
            Message::EndQuorumEpochResponse(m) => {
                self.observe_leader(from, m.leader_id, m.leader_epoch, false);
            }
            Message::FetchRequest(m) => self.handle_fetch_request(from, m),
            Message::FetchResponse(m) => self.handle_fetch_response(from, m),
            Message::FetchSnapshotRequest(m) => self.handle_fetch_snapshot_request(from, m),
            Message::FetchSnapshotResponse(m) => self.handle_fetch_snapshot_response(from, m),
        }
        self.check_invariants();
    }

    /// Appends `data` if this node leads; returns the offset it will commit at (if it commits:
    /// a later leader may truncate it).
    pub fn propose(&mut self, data: Bytes) -> Result<Offset, ProposeError> {
        if !self.is_leader() {
            return Err(ProposeError::NotLeader {
                leader_id: self.leader_id,
                epoch: self.epoch,
            });
        }
        if data.len() > self.config.entry_size_bytes_max {
            return Err(ProposeError::TooLarge);
        }
        let uncommitted = (self.log.end_offset() - self.high_watermark) as usize;
        let log_entries = (self.log.end_offset() - self.log.start_offset()) as usize;
        if uncommitted >= self.config.uncommitted_entries_max
            || log_entries >= self.config.log_entries_max
        {
            return Err(ProposeError::Busy);
        }
        let offset = self.log.end_offset();
        self.log.append(Entry {
            epoch: self.epoch,
            kind: EntryKind::Data,
            data,
        });
        self.maybe_advance_high_watermark();
        self.complete_parked_fetches(false);
        self.check_invariants();
        Ok(offset)
    }

    /// The caller's state machine serialized its state up to `end_offset` (which it has
    /// applied): the log may drop the entries below.
    pub fn snapshot(&mut self, end_offset: Offset, data: Bytes) {
        assert!(
            end_offset <= self.applied_offset,
            "snapshot at {end_offset} beyond what was applied ({})",
            self.applied_offset
        );
        if end_offset <= self.log.start_offset() {
            return; // Nothing new: an older or equal snapshot is already the log start.
        }
        let id = SnapshotId {
            end_offset,
            epoch: self.log.epoch_at(end_offset - 1).expect("offset in log"),
        };
        assert!(end_offset <= self.stable_end_offset);
        self.log.compact_to(id);
        let snapshot = Snapshot { id, data };
        self.snapshot = Some(snapshot.clone());
        // A snapshot fetched from the leader and not yet persisted is superseded by this one,
        // but it still replaces the log on disk.
        let replaces = self.pending_snapshot.as_ref().is_some_and(|(_, r)| *r);
        self.pending_snapshot = Some((snapshot, replaces));
        self.check_invariants();
    }

    /// Graceful shutdown of a leader: stop accepting proposals and tell the voters, most
    /// caught-up first, so one of them takes over without waiting for a timeout.
    pub fn resign(&mut self) {
        let Role::Leader(leader) = &self.role else {
            return;
        };
        let mut successors: Vec<(Offset, NodeId)> = self
            .other_voters()
            .map(|v| (leader.progress.get(&v).map_or(-1, |p| p.end_offset), v))
            .collect();
        successors.sort_by(|a, b| b.cmp(a));
        let preferred_successors: Vec<NodeId> = successors.into_iter().map(|(_, v)| v).collect();
        for voter in preferred_successors.clone() {
            self.send(
                voter,
                Message::EndQuorumEpochRequest(EndQuorumEpochRequest {
                    leader_id: self.config.node_id,
                    leader_epoch: self.epoch,
                    preferred_successors: preferred_successors.clone(),
                }),
            );
        }
        self.become_resigned();
        self.check_invariants();
    }

    /// Whether [`RaftNode::ready`] has anything to persist, send or apply.
    pub fn has_ready(&self) -> bool {
        self.quorum_state_dirty
            || self.pending_snapshot.is_some()
            || self.pending_truncate.is_some()
            || self.stable_end_offset != self.log.end_offset()
            || !self.messages.is_empty()
            || self.pending_apply_snapshot.is_some()
            || self.applied_offset != self.high_watermark
    }

    /// Drains what the inputs since the last call produced.
    pub fn ready(&mut self) -> Ready {
        let mut ready = Ready {
            high_watermark: self.high_watermark,
            ..Default::default()
        };
        if self.quorum_state_dirty {
            self.quorum_state_dirty = false;
            ready.quorum_state = Some(QuorumState {
                epoch: self.epoch,
                voted_for: self.voted_for,
                leader_id: self.leader_id,
            });
        }
        if let Some((snapshot, replaces)) = self.pending_snapshot.take() {
            ready.snapshot = Some(snapshot);
            ready.snapshot_replaces_log = replaces;
        }
        ready.truncate_to = self.pending_truncate.take();
        assert!(self.stable_end_offset >= self.log.start_offset());
        assert!(self.stable_end_offset <= self.log.end_offset());
        ready.entries_offset = self.stable_end_offset;
        ready.entries = self
            .log
            .slice(self.stable_end_offset, usize::MAX, usize::MAX);
        self.stable_end_offset = self.log.end_offset();
        ready.messages = std::mem::take(&mut self.messages);
        ready.apply_snapshot = self.pending_apply_snapshot.take();
        assert!(self.applied_offset >= self.log.start_offset());
        assert!(self.applied_offset <= self.high_watermark);
        ready.committed_offset = self.applied_offset;
        ready.committed = self.log.slice(
            self.applied_offset,
            (self.high_watermark - self.applied_offset) as usize,
            usize::MAX,
        );
        assert_eq!(
            ready.committed.len() as Offset,
            self.high_watermark - self.applied_offset
        );
        self.applied_offset = self.high_watermark;
        ready
    }

    // ---- shared transitions ----------------------------------------------------------

    pub(crate) fn majority(&self) -> usize {
        self.config.voters.len() / 2 + 1
    }

    pub(crate) fn is_voter_id(&self, id: NodeId) -> bool {
        self.config.voters.binary_search(&id).is_ok()
    }

    pub(crate) fn other_voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        let me = self.config.node_id;
        self.config.voters.iter().copied().filter(move |v| *v != me)
    }

    pub(crate) fn send(&mut self, to: NodeId, message: Message) {
        assert_ne!(to, self.config.node_id, "a node never messages itself");
        // Bound: a few messages per peer per input; parked fetches add one per replica.
        assert!(self.messages.len() < 64 + 8 * self.config.voters.len() + 1024);
        self.messages.push(Envelope {
            from: self.config.node_id,
            to,
            message,
        });
    }

    pub(crate) fn reset_election_timer(&mut self) {
        self.election_elapsed_ticks = 0;
        if self.config.voters == [self.config.node_id] {
            // A one-voter quorum has nobody to wait for.
            self.election_timeout_current_ticks = 1;
            return;
        }
        let base = self.config.election_timeout_ticks;
        self.election_timeout_current_ticks = base + self.random.below(base as u64) as u32;
    }

    fn set_epoch(&mut self, epoch: Epoch) {
        assert!(epoch >= self.epoch, "epochs never go back");
        if epoch > self.epoch {
            self.epoch = epoch;
            self.voted_for = None;
            self.leader_id = None;
            self.quorum_state_dirty = true;
        }
    }

    /// A newer epoch with no known leader.
    pub(crate) fn become_unattached(&mut self, epoch: Epoch) {
        assert!(epoch > self.epoch);
        self.set_epoch(epoch);
        self.role = Role::Unattached;
        self.reset_election_timer();
    }

    /// `heard_from_leader`: the leader itself spoke (it is alive), rather than a third party.
    pub(crate) fn become_follower(
        &mut self,
        epoch: Epoch,
        leader: NodeId,
        heard_from_leader: bool,
    ) {
        assert_ne!(leader, self.config.node_id);
        assert!(
            !(self.is_leader() && epoch == self.epoch),
            "a leader of epoch {epoch} saw another leader"
        );
        self.set_epoch(epoch);
        assert!(
            self.leader_id.is_none() || self.leader_id == Some(leader),
            "two leaders in epoch {epoch}: {:?} and {leader}",
            self.leader_id
        );
        if self.leader_id != Some(leader) {
            self.leader_id = Some(leader);
            self.quorum_state_dirty = true;
        }
        self.role = Role::Follower(FollowerState {
            leader_contact_tick: heard_from_leader.then_some(self.now_ticks),
            ..FollowerState::default()
        });
        self.reset_election_timer();
    }

    pub(crate) fn become_resigned(&mut self) {
        assert_eq!(self.leader_id, Some(self.config.node_id));
        self.role = Role::Resigned;
        self.reset_election_timer();
    }

    /// Any message naming a newer epoch moves this node to it (as follower of its leader when
    /// the message names one); a message naming the leader of our epoch, when we know none,
    /// attaches us to it. `leader_speaking`: the message is the leader's own answer as leader
    /// (a fetch it served): only that proves the leader alive — a voter repeating the name of
    /// a leader that has since died or resigned must not keep us from electing a new one.
    /// Returns whether the epoch changed.
    pub(crate) fn observe_leader(
        &mut self,
        from: NodeId,
        leader_id: Option<NodeId>,
        epoch: Epoch,
        leader_speaking: bool,
    ) -> bool {
        let me = self.config.node_id;
        let Some(leader) = leader_id.filter(|l| *l != me) else {
            if epoch > self.epoch {
                self.become_unattached(epoch);
                return true;
            }
            return false;
        };
        let alive = leader_speaking && from == leader;
        if epoch > self.epoch {
            self.become_follower(epoch, leader, alive);
            return true;
        }
        if epoch == self.epoch
            && !matches!(self.role, Role::Follower(_))
            && (self.leader_id.is_none()
                || (self.leader_id == Some(leader) && (alive || !self.is_voter())))
        {
            // We were unattached, prospective or a losing candidate — or an observer looking
            // for its leader (observers never vote: following a stale name costs nothing).
            self.become_follower(epoch, leader, alive);
        }
        false
    }

    /// Internal consistency, checked after every input.
    fn check_invariants(&self) {
        assert!(self.high_watermark >= self.log.start_offset());
        assert!(
            self.high_watermark <= self.log.end_offset(),
            "high watermark {} past log end {}",
            self.high_watermark,
            self.log.end_offset()
        );
        assert!(self.log.last_epoch() <= self.epoch);
        assert!(self.applied_offset <= self.high_watermark);
        match &self.role {
            Role::Leader(leader) => {
                assert_eq!(self.leader_id, Some(self.config.node_id));
                assert_eq!(self.voted_for, Some(self.config.node_id));
                assert!(leader.epoch_start_offset < self.log.end_offset());
                // (A snapshot may already cover the epoch's first entry.)
                assert!(
                    leader.epoch_start_offset < self.log.start_offset()
                        || self.log.epoch_at(leader.epoch_start_offset) == Some(self.epoch)
                );
            }
            Role::Candidate(tally) => {
                assert_eq!(self.voted_for, Some(self.config.node_id));
                assert!(self.leader_id.is_none());
                assert!(tally.granted.len() < self.majority());
            }
            Role::Follower(_) => assert!(self.leader_id.is_some()),
            Role::Resigned => assert_eq!(self.leader_id, Some(self.config.node_id)),
            Role::Unattached | Role::Prospective(_) => {}
        }
        if let Some(snapshot) = &self.snapshot {
            assert_eq!(snapshot.id, self.log.start());
        } else {
            assert_eq!(self.log.start_offset(), 0);
        }
    }
}
