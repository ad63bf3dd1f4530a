//! The quorum driver: the I/O shell around [`crate::raft::RaftNode`] (see `raft/mod.rs`,
//! "Driving it"). It runs on its own thread with its own small tokio runtime, so that a
//! handler blocked (boundedly) on a commit can never starve it.
//!
//! One loop: a tick every `tick_ms`, commands from the rest of the node (proposals, quorum
//! requests from the controller listener, answers to our own requests), then the `Ready` in
//! field order — quorum-state (fsync), snapshot, truncation, entries (fsync), messages,
//! then apply. Committed entries are applied to the metadata image on every node (leader,
//! followers, observers) and the resulting [`Change`]s go to the one subscriber (the broker,
//! which opens and deletes logs) before any proposer is answered.
//!
//! Interface for the rest of the node: [`Quorum::image`], [`Quorum::status`] (epoch, leader,
//! high watermark, replica progress: DescribeQuorum), [`Quorum::active_controller`] (where
//! to forward), [`Quorum::propose_and_wait`] (the controller's commit),
//! [`Quorum::subscribe`], [`Quorum::inbound`] (the controller listener's quorum RPCs),
//! [`Quorum::shutdown`] (resign, then stop).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::image::{Change, MetadataImage};
use super::metadata_log::{self, MetadataLog};
use super::peer::PeerClient;
use super::records::MetadataRecord;
use super::wire;
use crate::config::{
    BrokerConfig, CONTROLLER_QUORUM_ELECTION_TIMEOUT_MS, CONTROLLER_QUORUM_FETCH_TIMEOUT_MS,
    METADATA_LOG_MAX_RECORD_BYTES_BETWEEN_SNAPSHOTS,
};
use crate::log::log_dir_space::LogDirSpace;
use crate::raft::{
    Config, Entry, EntryKind, Epoch, Message, NodeId, Offset, Persisted, ProposeError, QuorumState,
    RaftNode, Ready, RoleKind, Snapshot,
};

/// Commands queued for the driver; senders beyond it get "busy".
const COMMANDS_MAX: usize = 4096;
/// Quorum requests from one peer waiting for the Raft node's answer.
const PENDING_INBOUND_PER_PEER_MAX: usize = 16;
/// Proposals waiting for commit (Raft refuses more than this uncommitted anyway).
const PENDING_PROPOSALS_MAX: usize = 4096;
/// A proposal nobody waits for any more is forgotten after this.
const PROPOSAL_FORGET_AFTER: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct QuorumConfig {
    pub node_id: NodeId,
    /// `controller.quorum.voters` as (id, host:port); empty: a one-voter quorum of this node.
    pub voters: Vec<(NodeId, String)>,
    pub cluster_id: String,
    pub tick_ms: u64,
    pub election_timeout_ms: u64,
    pub fetch_timeout_ms: u64,
    /// Take a snapshot of the image once this many bytes of entries were applied after the
    /// last one (`metadata.log.max.record.bytes.between.snapshots`).
    pub snapshot_interval_bytes: u64,
}

impl QuorumConfig {
    /// The quorum settings of the node `config` describes, in cluster `cluster_id`, with the
    /// driver's clock ticking every `tick_ms`.
    pub fn from_config(config: &BrokerConfig, cluster_id: String, tick_ms: u64) -> QuorumConfig {
        let properties = &config.properties;
        QuorumConfig {
            node_id: config.node_id,
            voters: config.quorum_voters.clone(),
            cluster_id,
            tick_ms,
            election_timeout_ms: properties.get_i64(CONTROLLER_QUORUM_ELECTION_TIMEOUT_MS) as u64,
            fetch_timeout_ms: properties.get_i64(CONTROLLER_QUORUM_FETCH_TIMEOUT_MS) as u64,
            snapshot_interval_bytes: properties
                .get_i64(METADATA_LOG_MAX_RECORD_BYTES_BETWEEN_SNAPSHOTS)
                as u64,
        }
    }

    pub fn voter_ids(&self) -> Vec<NodeId> {
        if self.voters.is_empty() {
            vec![self.node_id]
        } else {
            self.voters.iter().map(|(id, _)| *id).collect()
        }
    }

    /// A one-voter quorum with fast timeouts, for tests that open a [`super::Controller`].
    #[cfg(test)]
    pub fn single_node_for_tests(node_id: NodeId) -> QuorumConfig {
        QuorumConfig {
            node_id,
            voters: Vec::new(),
            cluster_id: "test".into(),
            tick_ms: 10,
            election_timeout_ms: 100,
            fetch_timeout_ms: 200,
            snapshot_interval_bytes: 1 << 20,
        }
    }

    pub fn is_single_node(&self) -> bool {
        self.voter_ids() == [self.node_id]
    }

    pub fn voter_address(&self, id: NodeId) -> Option<&str> {
        self.voters
            .iter()
            .find(|(v, _)| *v == id)
            .map(|(_, address)| address.as_str())
    }
}

/// Why a proposal did not commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposeFailure {
    /// This node does not lead (or stopped leading before the entry committed).
    NotController {
        leader_id: Option<NodeId>,
    },
    /// No answer in time (no quorum, or the driver is overloaded).
    Timeout,
    TooLarge,
}

/// What the leader knows of one replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub node_id: NodeId,
    pub log_end_offset: Offset,
    /// Wall clock of its last fetch, -1 if none.
    pub last_fetch_ms: i64,
}

/// A copy of the quorum's state, refreshed after every driver step.
#[derive(Clone, Debug)]
pub struct QuorumStatus {
    pub node_id: NodeId,
    pub epoch: Epoch,
    pub leader_id: Option<NodeId>,
    pub role: RoleKind,
    /// This node leads and has applied everything committed before its epoch began.
    pub active: bool,
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
    pub applied_offset: Offset,
    pub voters: Vec<NodeId>,
    /// Leader only: voters and observers that fetched.
    pub replicas: Vec<ReplicaStatus>,
    /// The driver has stopped (shutdown): nothing commits here any more.
    pub stopped: bool,
}

/// Receives the image just applied and the changes that led to it, before the image is
/// published to readers: whatever a reader finds in the image has been applied by then.
pub type Subscriber = Box<dyn Fn(&MetadataImage, &[Change]) + Send + Sync>;

struct Shared {
    image: RwLock<Arc<MetadataImage>>,
    status: RwLock<QuorumStatus>,
    /// The subscriber, or the changes waiting for one.
    subscriber: Mutex<(Option<Subscriber>, Vec<Change>)>,
}

enum Command {
    Propose {
        data: Bytes,
        reply: std::sync::mpsc::Sender<Result<(), ProposeFailure>>,
    },
    Inbound {
        from: NodeId,
        message: Message,
        reply: oneshot::Sender<Message>,
    },
    Response {
        from: NodeId,
        message: Message,
    },
    Shutdown {
        done: std::sync::mpsc::Sender<()>,
    },
}

/// The handle the node keeps; cheap to clone.
#[derive(Clone)]
pub struct Quorum {
    inner: Arc<QuorumInner>,
}

/// The answer to one proposal, sent by the driver once the proposal's fate is known.
type ProposeAnswer = std::sync::mpsc::Receiver<Result<(), ProposeFailure>>;

struct QuorumInner {
    config: QuorumConfig,
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The answer still to come of this node's last proposal that timed out. A proposal is
    /// built against the image its caller read; one built while an earlier proposal may still
    /// commit lacks that proposal's changes, and both could commit (two changes of one
    /// partition at one partition epoch — every node's replay refuses the second). So no
    /// proposal is sent until the earlier one is resolved (committed, refused, or dropped).
    unresolved: Mutex<Option<ProposeAnswer>>,
}

fn fatal(what: &str, error: impl std::fmt::Display) -> ! {
    tracing::error!(%error, "metadata log: {what} failed; exiting");
    eprintln!("dlog: metadata log: {what} failed: {error}");
    std::process::exit(70)
}

/// Metadata records of one data entry: a JSON array, or (logs from before the quorum) one
/// JSON record.
pub fn decode_entry_records(data: &[u8]) -> anyhow::Result<Vec<MetadataRecord>> {
    if data.first() == Some(&b'[') {
        Ok(serde_json::from_slice(data)?)
    } else {
        Ok(vec![MetadataRecord::decode(data)?])
    }
}

pub fn encode_entry_records(records: &[MetadataRecord]) -> Bytes {
    Bytes::from(serde_json::to_vec(records).expect("metadata records serialize"))
}

impl Quorum {
    /// Restores the quorum from `dir` (`__cluster_metadata-0`) and starts the driver thread.
    /// `space`: the log directory's, whose reserve the metadata writes may use when it is
    /// full (None: no reserve, as in tests).
    pub fn open(
        dir: &Path,
        config: QuorumConfig,
        space: Option<Arc<LogDirSpace>>,
    ) -> std::io::Result<Quorum> {
        let snapshot = metadata_log::read_latest_snapshot(dir)?;
        let start = snapshot.as_ref().map_or(0, |s| s.id.end_offset);
        let (log, entries) = MetadataLog::open(dir, start)?;
        let image = match &snapshot {
            Some(s) => serde_json::from_slice(&s.data).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("snapshot {:?}: {e}", s.id),
                )
            })?,
            None => MetadataImage::new(),
        };
        let mut quorum_state = metadata_log::read_quorum_state(dir)?.unwrap_or(QuorumState {
            epoch: 0,
            voted_for: None,
            leader_id: None,
        });
        let last_epoch = entries
            .last()
            .map(|e| e.epoch)
            .or(snapshot.as_ref().map(|s| s.id.epoch))
            .unwrap_or(0);
        if quorum_state.epoch < last_epoch {
            quorum_state = QuorumState {
                epoch: last_epoch,
                voted_for: None,
                leader_id: None,
            };
        }
        let voters = config.voter_ids();
        for voter in &voters {
            assert!(
                *voter == config.node_id || config.voter_address(*voter).is_some(),
                "voter {voter} has no address"
            );
        }
        let tick_ms = config.tick_ms.max(1);
        let mut raft_config = Config::new(
            config.node_id,
            voters.clone(),
            (config.node_id as u64) ^ crate::clock::now_ms() as u64,
        );
        raft_config.election_timeout_ticks = (config.election_timeout_ms / tick_ms).max(2) as u32;
        raft_config.check_quorum_timeout_ticks = (config.fetch_timeout_ms / tick_ms).max(3) as u32;
        // A caught-up fetch is held this long: also how late a follower may learn of a new
        // high watermark (the fetch carries none), so kept well under a second.
        raft_config.fetch_max_wait_ticks = (200 / tick_ms).max(1) as u32;
        raft_config.fetch_retry_ticks = raft_config.fetch_max_wait_ticks * 2 + 2;
        raft_config.begin_quorum_retry_ticks = (200 / tick_ms).max(1) as u32;
        // One entry is one metadata change (a CreateTopics of thousands of partitions is
        // one); fetches still carry at least one entry whatever their byte limit.
        raft_config.entry_size_bytes_max = 8 << 20;
        let log_end = start + entries.len() as Offset;
        let raft = RaftNode::restore(
            raft_config,
            Persisted {
                quorum_state,
                snapshot: snapshot.clone(),
                entries,
            },
        );
        tracing::info!(
            node_id = config.node_id,
            ?voters,
            epoch = quorum_state.epoch,
            log_start = start,
            log_end,
            "metadata quorum restored"
        );
        let status = QuorumStatus {
            node_id: config.node_id,
            epoch: raft.epoch(),
            leader_id: raft.leader_id(),
            role: raft.role(),
            active: false,
            high_watermark: raft.high_watermark(),
            log_start_offset: raft.log_start_offset(),
            log_end_offset: raft.log_end_offset(),
            applied_offset: raft.high_watermark(),
            voters: voters.clone(),
            replicas: Vec::new(),
            stopped: false,
        };
        let shared = Arc::new(Shared {
            image: RwLock::new(Arc::new(image.clone())),
            status: RwLock::new(status),
            subscriber: Mutex::new((None, initial_changes(&MetadataImage::new(), &image))),
        });
        let (commands, receiver) = mpsc::channel(COMMANDS_MAX);
        let peers = config
            .voters
            .iter()
            .filter(|(id, _)| *id != config.node_id)
            .map(|(id, address)| {
                (
                    *id,
                    PeerClient::with_timeout(
                        address.clone(),
                        format!("dlog-raft-{}", config.node_id),
                        Duration::from_millis(config.fetch_timeout_ms.max(1000)),
                    ),
                )
            })
            .collect();
        let driver = Driver {
            raft,
            log,
            space,
            dir: dir.to_path_buf(),
            image,
            shared: shared.clone(),
            voters,
            peers,
            cluster_id: config.cluster_id.clone(),
            tick_ms,
            commands: commands.clone(),
            pending_proposals: BTreeMap::new(),
            pending_inbound: HashMap::new(),
            bytes_since_snapshot: 0,
            snapshot_interval_bytes: config.snapshot_interval_bytes.max(1),
            active: false,
            applied_offset: start,
        };
        let thread = std::thread::Builder::new()
            .name("dlog-quorum".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("quorum runtime");
                runtime.block_on(driver.run(receiver));
            })?;
        Ok(Quorum {
            inner: Arc::new(QuorumInner {
                config,
                shared,
                commands,
                thread: Mutex::new(Some(thread)),
                unresolved: Mutex::new(None),
            }),
        })
    }

    pub fn config(&self) -> &QuorumConfig {
        &self.inner.config
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.inner.shared.image.read().expect("image lock").clone()
    }

    pub fn status(&self) -> QuorumStatus {
        self.inner
            .shared
            .status
            .read()
            .expect("status lock")
            .clone()
    }

    /// Whether this node is the active controller (leads, caught up).
    pub fn is_active(&self) -> bool {
        let status = self.status();
        status.active && status.leader_id == Some(status.node_id)
    }

    /// The leader this node knows of and its controller listener address (None for itself
    /// when it has no controller listener, e.g. a one-voter quorum).
    pub fn active_controller(&self) -> Option<(NodeId, Option<String>)> {
        let status = self.status();
        if status.stopped {
            return None;
        }
        let leader = status.leader_id?;
        Some((
            leader,
            self.inner.config.voter_address(leader).map(str::to_string),
        ))
    }

    /// Sets the one subscriber to applied changes; it first receives every change applied so
    /// far (the replay of the log), on this thread. Later calls run on the driver thread, in
    /// log order, before the proposal that caused them is answered.
    pub fn subscribe(&self, subscriber: Subscriber) {
        let mut slot = self
            .inner
            .shared
            .subscriber
            .lock()
            .expect("subscriber lock");
        let backlog = std::mem::take(&mut slot.1);
        if !backlog.is_empty() {
            subscriber(&self.image(), &backlog);
        }
        slot.0 = Some(subscriber);
    }

    /// Proposes one entry and waits (blocking this thread, at most `timeout`) until it
    /// commits and is applied. Inside a multi-thread tokio runtime the worker is handed off
    /// first (`block_in_place`), so other tasks keep running.
    /// Refused (Timeout) while an earlier proposal that timed out was unresolved when the
    /// caller took the commit lock ([`Self::poll_resolved`]): the caller built `data` against an
    /// image that may lack it. The refusal waits (at most `timeout`) for that proposal's fate,
    /// so a client retrying the refused request finds it known.
    pub fn propose_and_wait(&self, data: Bytes, timeout: Duration) -> Result<(), ProposeFailure> {
        let mut unresolved = self.inner.unresolved.lock().expect("unresolved lock");
        if unresolved.is_some() {
            blocking(|| resolved(&mut unresolved, timeout));
            return Err(ProposeFailure::Timeout);
        }
        let (reply, result) = std::sync::mpsc::channel();
        if self
            .inner
            .commands
            .try_send(Command::Propose { data, reply })
            .is_err()
        {
            return Err(ProposeFailure::Timeout);
        }
        match blocking(|| result.recv_timeout(timeout)) {
            Ok(outcome) => outcome,
            // The driver stopped: the proposal is dropped with it.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(ProposeFailure::Timeout),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                *unresolved = Some(result);
                Err(ProposeFailure::Timeout)
            }
        }
    }

    /// Whether this node's last proposal that timed out is resolved by now (not waiting).
    /// The controller calls this as it takes its commit lock, before reading the image it
    /// builds a proposal against; only this clears a resolved proposal, so one resolved while
    /// the holder builds still refuses the holder's proposal.
    pub fn poll_resolved(&self) -> bool {
        let mut unresolved = self.inner.unresolved.lock().expect("unresolved lock");
        resolved(&mut unresolved, Duration::ZERO)
    }

    /// A quorum request from the controller listener; resolves to the Raft node's answer, or
    /// None when it gave none in time.
    pub async fn inbound(&self, from: NodeId, message: Message) -> Option<Message> {
        let timeout = match &message {
            Message::FetchRequest(r) => {
                Duration::from_millis(u64::from(r.max_wait_ticks) * self.inner.config.tick_ms)
                    + Duration::from_secs(2)
            }
            _ => Duration::from_secs(2),
        };
        let (reply, answer) = oneshot::channel();
        self.inner
            .commands
            .try_send(Command::Inbound {
                from,
                message,
                reply,
            })
            .ok()?;
        tokio::time::timeout(timeout, answer).await.ok()?.ok()
    }

    /// Waits (blocking, bounded) until this node is the active controller and its image has
    /// applied everything below `offset`: a one-voter quorum's start.
    pub fn wait_active(&self, offset: Offset, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let status = self.status();
            if status.applied_offset >= offset && status.active {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// Resigns if leading (EndQuorumEpoch to the voters), then stops the driver.
    pub fn shutdown(&self) {
        let (done, finished) = std::sync::mpsc::channel();
        if self
            .inner
            .commands
            .try_send(Command::Shutdown { done })
            .is_ok()
        {
            let _ = finished.recv_timeout(Duration::from_secs(3));
        }
        if let Some(thread) = self.inner.thread.lock().expect("thread lock").take() {
            let _ = thread.join();
        }
    }
}

/// Runs a blocking `f`: inside a multi-thread tokio runtime the worker is handed off first
/// (`block_in_place`), so other tasks keep running.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Whether the proposal answer in `unresolved` (if any) has come, waiting up to `timeout`;
/// clears it when it has. A dropped sender (the driver stopped) resolves it too.
fn resolved(unresolved: &mut Option<ProposeAnswer>, timeout: Duration) -> bool {
    let Some(answer) = unresolved.as_ref() else {
        return true;
    };
    match answer.recv_timeout(timeout) {
        Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            *unresolved = None;
            true
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => false,
    }
}

/// The changes that turn `before` into `after` (a snapshot installed, or the first image).
fn initial_changes(before: &MetadataImage, after: &MetadataImage) -> Vec<Change> {
    let mut changes: Vec<Change> = before
        .topics
        .keys()
        .filter(|name| !after.topics.contains_key(*name))
        .map(|name| Change::TopicRemoved(name.clone()))
        .collect();
    changes.extend(after.topics.keys().map(|n| Change::TopicChanged(n.clone())));
    if !after.broker_configs.is_empty() || !before.broker_configs.is_empty() {
        changes.push(Change::BrokerConfigChanged);
    }
    changes
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Vote,
    BeginQuorumEpoch,
    EndQuorumEpoch,
    Fetch,
    FetchSnapshot,
}

fn kind_of(message: &Message) -> (Kind, bool) {
    match message {
        Message::VoteRequest(_) => (Kind::Vote, true),
        Message::VoteResponse(_) => (Kind::Vote, false),
        Message::BeginQuorumEpochRequest(_) => (Kind::BeginQuorumEpoch, true),
        Message::BeginQuorumEpochResponse(_) => (Kind::BeginQuorumEpoch, false),
        Message::EndQuorumEpochRequest(_) => (Kind::EndQuorumEpoch, true),
        Message::EndQuorumEpochResponse(_) => (Kind::EndQuorumEpoch, false),
        Message::FetchRequest(_) => (Kind::Fetch, true),
        Message::FetchResponse(_) => (Kind::Fetch, false),
        Message::FetchSnapshotRequest(_) => (Kind::FetchSnapshot, true),
        Message::FetchSnapshotResponse(_) => (Kind::FetchSnapshot, false),
    }
}

struct PendingInbound {
    kind: Kind,
    /// Fetches: (fetch offset, last fetched epoch), echoed by the answer.
    fetch: Option<(Offset, Epoch)>,
    reply: oneshot::Sender<Message>,
}

struct PendingProposal {
    epoch: Epoch,
    since: Instant,
    reply: std::sync::mpsc::Sender<Result<(), ProposeFailure>>,
}

struct Driver {
    raft: RaftNode,
    log: MetadataLog,
    /// The log directory's space: a write failing for lack of it uses the reserve.
    space: Option<Arc<LogDirSpace>>,
    dir: PathBuf,
    image: MetadataImage,
    shared: Arc<Shared>,
    voters: Vec<NodeId>,
    peers: HashMap<NodeId, PeerClient>,
    cluster_id: String,
    tick_ms: u64,
    commands: mpsc::Sender<Command>,
    pending_proposals: BTreeMap<Offset, PendingProposal>,
    pending_inbound: HashMap<NodeId, VecDeque<PendingInbound>>,
    bytes_since_snapshot: u64,
    snapshot_interval_bytes: u64,
    active: bool,
    /// Entries below this are applied to `image`.
    applied_offset: Offset,
}

impl Driver {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut interval = tokio::time::interval(Duration::from_millis(self.tick_ms));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut shutdown: Option<std::sync::mpsc::Sender<()>> = None;
        loop {
            tokio::select! {
                _ = interval.tick() => {
                    self.raft.tick();
                    self.forget_abandoned();
                }
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    shutdown = self.handle(command);
                    // Take what else is queued (bounded), then act on one Ready for all.
                    for _ in 0..256 {
                        if shutdown.is_some() {
                            break;
                        }
                        match commands.try_recv() {
                            Ok(command) => shutdown = self.handle(command),
                            Err(_) => break,
                        }
                    }
                }
            }
            let outbound = self.process_ready();
            if let Some(done) = shutdown.take() {
                // Deliver the resignation (EndQuorumEpoch) before the runtime goes away.
                let sends = outbound
                    .into_iter()
                    .filter_map(|(to, message)| {
                        let peer = self.peers.get(&to)?.clone();
                        let cluster_id = self.cluster_id.clone();
                        let tick_ms = self.tick_ms;
                        Some(async move {
                            call(&peer, &cluster_id, to, message, tick_ms).await;
                        })
                    })
                    .collect::<Vec<_>>();
                let all = async {
                    for send in sends {
                        send.await;
                    }
                };
                let _ = tokio::time::timeout(Duration::from_millis(1000), all).await;
                {
                    let mut status = self.shared.status.write().expect("status lock");
                    status.stopped = true;
                    status.active = false;
                    status.leader_id = None;
                }
                let _ = done.send(());
                tracing::info!("metadata quorum driver stopped");
                return;
            }
            for (to, message) in outbound {
                self.send_request(to, message);
            }
            self.maybe_snapshot();
            self.publish_status();
        }
    }

    /// Applies one command; Some(done) for a shutdown.
    fn handle(&mut self, command: Command) -> Option<std::sync::mpsc::Sender<()>> {
        match command {
            Command::Propose { data, reply } => {
                let outcome = self.raft.propose(data);
                match outcome {
                    Ok(offset) => {
                        if self.pending_proposals.len() >= PENDING_PROPOSALS_MAX {
                            let _ = reply.send(Err(ProposeFailure::Timeout));
                        } else {
                            self.pending_proposals.insert(
                                offset,
                                PendingProposal {
                                    epoch: self.raft.epoch(),
                                    since: Instant::now(),
                                    reply,
                                },
                            );
                        }
                    }
                    Err(ProposeError::NotLeader { leader_id, .. }) => {
                        let _ = reply.send(Err(ProposeFailure::NotController { leader_id }));
                    }
                    Err(ProposeError::Busy) => {
                        let _ = reply.send(Err(ProposeFailure::Timeout));
                    }
                    Err(ProposeError::TooLarge) => {
                        let _ = reply.send(Err(ProposeFailure::TooLarge));
                    }
                }
            }
            Command::Inbound {
                from,
                message,
                reply,
            } => {
                if from == self.raft.node_id() {
                    return None; // A peer claiming our id: dropped (the caller answers).
                }
                let (kind, _) = kind_of(&message);
                let fetch = match &message {
                    Message::FetchRequest(r) => Some((r.fetch_offset, r.last_fetched_epoch)),
                    _ => None,
                };
                let queue = self.pending_inbound.entry(from).or_default();
                if kind == Kind::Fetch {
                    // The leader keeps one fetch per replica: a newer one replaces an older
                    // one, which will never be answered. Answer it now (the handler falls
                    // back to an error the fetcher ignores): a waiting fetch would hold up
                    // every later response on its connection (responses go in order).
                    queue.retain(|p| p.kind != Kind::Fetch);
                }
                if queue.len() >= PENDING_INBOUND_PER_PEER_MAX {
                    queue.pop_front();
                }
                queue.push_back(PendingInbound { kind, fetch, reply });
                self.raft.step(from, message);
            }
            Command::Response { from, message } => self.raft.step(from, message),
            Command::Shutdown { done } => {
                self.raft.resign();
                return Some(done);
            }
        }
        None
    }

    /// Drops waiters nobody listens to any more.
    fn forget_abandoned(&mut self) {
        for queue in self.pending_inbound.values_mut() {
            queue.retain(|p| !p.reply.is_closed());
        }
        self.pending_inbound.retain(|_, q| !q.is_empty());
        let now = Instant::now();
        self.pending_proposals
            .retain(|_, p| now.duration_since(p.since) < PROPOSAL_FORGET_AFTER);
    }

    /// Acts on every Ready; returns the requests to send.
    fn process_ready(&mut self) -> Vec<(NodeId, Message)> {
        let mut outbound = Vec::new();
        let mut rounds = 0;
        while self.raft.has_ready() && rounds < 64 {
            rounds += 1;
            let ready = self.raft.ready();
            let persisting = Instant::now();
            self.persist(&ready);
            let took = persisting.elapsed();
            if took > Duration::from_millis(200) {
                tracing::warn!(
                    took_ms = took.as_millis() as u64,
                    "slow metadata log write (fsync)"
                );
            }
            let Ready {
                messages,
                apply_snapshot,
                committed_offset,
                committed,
                ..
            } = ready;
            for envelope in messages {
                let (_, is_request) = kind_of(&envelope.message);
                if is_request {
                    outbound.push((envelope.to, envelope.message));
                } else {
                    self.answer_inbound(envelope.to, envelope.message);
                }
            }
            self.apply(apply_snapshot, committed_offset, committed);
        }
        outbound
    }

    /// Writes what Raft was told is persisted. Raft has moved on already (it is a pure state
    /// machine), so a write that fails is fatal: but one failing for lack of space first
    /// takes the log directory's reserve and is tried again (`log::log_dir_space`), so a
    /// full disk stops the metadata log only once the reserve is used up too.
    fn persist(&mut self, ready: &Ready) {
        let space = self.space.clone();
        let with_reserve = |what: &str, write: &mut dyn FnMut() -> std::io::Result<()>| match &space
        {
            Some(space) => space.with_reserve(what, write),
            None => write(),
        };
        if let Some(state) = &ready.quorum_state {
            let (dir, voters) = (&self.dir, &self.voters);
            if let Err(e) = with_reserve("quorum-state", &mut || {
                metadata_log::write_quorum_state(dir, state, voters)
            }) {
                fatal("writing quorum-state", e);
            }
        }
        if let Some(snapshot) = &ready.snapshot {
            let dir = &self.dir;
            if let Err(e) = with_reserve("metadata snapshot", &mut || {
                metadata_log::write_snapshot(dir, snapshot)
            }) {
                fatal("writing a snapshot", e);
            }
            let end = snapshot.id.end_offset;
            let remaining: Vec<Entry> = if ready.snapshot_replaces_log {
                Vec::new()
            } else {
                let keep_end = ready
                    .truncate_to
                    .unwrap_or(Offset::MAX)
                    .min(self.log.end_offset());
                (end..keep_end)
                    .map(|o| {
                        self.raft
                            .entry(o)
                            .expect("entry after the snapshot")
                            .clone()
                    })
                    .collect()
            };
            let log = &mut self.log;
            if let Err(e) = with_reserve("metadata log compaction", &mut || {
                log.compact(end, &remaining)
            }) {
                fatal("compacting the log", e);
            }
        }
        if let Some(offset) = ready.truncate_to {
            if offset < self.log.end_offset() {
                if let Err(e) = self.log.truncate(offset.max(self.log.start_offset())) {
                    fatal("truncating the log", e);
                }
            }
        }
        if !ready.entries.is_empty() {
            let log = &mut self.log;
            if let Err(e) = with_reserve("metadata log append", &mut || {
                log.append(ready.entries_offset, &ready.entries)
            }) {
                fatal("appending to the log", e);
            }
        }
    }

    fn answer_inbound(&mut self, to: NodeId, message: Message) {
        let (kind, _) = kind_of(&message);
        let Some(queue) = self.pending_inbound.get_mut(&to) else {
            return;
        };
        let position = match &message {
            Message::FetchResponse(r) => queue.iter().position(|p| {
                p.kind == Kind::Fetch && p.fetch == Some((r.fetch_offset, r.last_fetched_epoch))
            }),
            _ => queue.iter().position(|p| p.kind == kind),
        };
        let Some(position) = position else { return };
        let pending = queue.remove(position).expect("in range");
        let _ = pending.reply.send(message);
    }

    fn send_request(&self, to: NodeId, message: Message) {
        let Some(peer) = self.peers.get(&to).cloned() else {
            return;
        };
        let commands = self.commands.clone();
        let cluster_id = self.cluster_id.clone();
        let tick_ms = self.tick_ms;
        tokio::spawn(async move {
            if let Some(answer) = call(&peer, &cluster_id, to, message, tick_ms).await {
                let _ = commands.try_send(Command::Response {
                    from: to,
                    message: answer,
                });
            }
        });
    }

    fn apply(
        &mut self,
        snapshot: Option<Snapshot>,
        committed_offset: Offset,
        committed: Vec<Entry>,
    ) {
        let mut changes = Vec::new();
        let mut answers = Vec::new();
        let mut changed_image = false;
        if let Some(snapshot) = snapshot {
            let image: MetadataImage = match serde_json::from_slice(&snapshot.data) {
                Ok(image) => image,
                Err(e) => fatal("reading a fetched snapshot", e),
            };
            changes.extend(initial_changes(&self.image, &image));
            self.image = image;
            changed_image = true;
            self.applied_offset = snapshot.id.end_offset;
            self.bytes_since_snapshot = 0;
            let covered: Vec<Offset> = self
                .pending_proposals
                .range(..snapshot.id.end_offset)
                .map(|(o, _)| *o)
                .collect();
            for offset in covered {
                let pending = self.pending_proposals.remove(&offset).expect("listed");
                answers.push((pending.reply, Err(ProposeFailure::Timeout)));
            }
            tracing::info!(
                end_offset = snapshot.id.end_offset,
                "installed a metadata snapshot"
            );
        }
        if !committed.is_empty() {
            assert_eq!(
                committed_offset, self.applied_offset,
                "applied out of order"
            );
        }
        for (index, entry) in committed.iter().enumerate() {
            let offset = committed_offset + index as Offset;
            match entry.kind {
                EntryKind::LeaderChange => {
                    if entry.epoch == self.raft.epoch() && self.raft.is_leader() {
                        self.active = true;
                        tracing::info!(epoch = entry.epoch, offset, "active controller");
                    }
                }
                EntryKind::Data => {
                    self.bytes_since_snapshot += entry.data.len() as u64;
                    match decode_entry_records(&entry.data) {
                        Ok(records) => {
                            for record in &records {
                                let next = self.image.applied_offset + 1;
                                changes.extend(self.image.apply(next, record));
                            }
                            changed_image = true;
                        }
                        Err(error) => {
                            tracing::error!(offset, %error, "unreadable metadata entry skipped")
                        }
                    }
                }
            }
            if let Some(pending) = self.pending_proposals.remove(&offset) {
                let outcome = if pending.epoch == entry.epoch {
                    Ok(())
                } else {
                    Err(ProposeFailure::NotController {
                        leader_id: self.raft.leader_id(),
                    })
                };
                answers.push((pending.reply, outcome));
            }
        }
        self.applied_offset += committed.len() as Offset;
        // The subscriber first (the broker opens logs and loads coordinator shards), then the
        // image readers see: a handler never finds a partition the node has not applied yet.
        if !changes.is_empty() {
            let mut slot = self.shared.subscriber.lock().expect("subscriber lock");
            match &slot.0 {
                Some(subscriber) => subscriber(&self.image, &changes),
                None => slot.1.extend(changes),
            }
        }
        if changed_image {
            *self.shared.image.write().expect("image lock") = Arc::new(self.image.clone());
        }
        // Status before answers: a proposer that returns sees its commit applied.
        self.publish_status();
        for (reply, outcome) in answers {
            let _ = reply.send(outcome);
        }
    }

    fn maybe_snapshot(&mut self) {
        if self.bytes_since_snapshot < self.snapshot_interval_bytes
            || self.applied_offset <= self.raft.log_start_offset()
        {
            return;
        }
        let data = serde_json::to_vec(&self.image).expect("image serializes");
        self.raft.snapshot(self.applied_offset, Bytes::from(data));
        self.bytes_since_snapshot = 0;
        tracing::info!(end_offset = self.applied_offset, "metadata snapshot taken");
        let outbound = self.process_ready();
        for (to, message) in outbound {
            self.send_request(to, message);
        }
    }

    fn publish_status(&mut self) {
        if !self.raft.is_leader() {
            self.active = false;
        }
        let now_ms = crate::clock::now_ms();
        let now_ticks = self.raft.now_ticks;
        let replicas = self
            .raft
            .replica_progress()
            .map(|progress| {
                progress
                    .iter()
                    .map(|(id, p)| ReplicaStatus {
                        node_id: *id,
                        log_end_offset: p.end_offset,
                        last_fetch_ms: p.last_fetch_tick.map_or(-1, |t| {
                            now_ms - (now_ticks.saturating_sub(t) * self.tick_ms) as i64
                        }),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let status = QuorumStatus {
            node_id: self.raft.node_id(),
            epoch: self.raft.epoch(),
            leader_id: self.raft.leader_id(),
            role: self.raft.role(),
            active: self.active,
            high_watermark: self.raft.high_watermark(),
            log_start_offset: self.raft.log_start_offset(),
            log_end_offset: self.raft.log_end_offset(),
            applied_offset: self.applied_offset,
            voters: self.voters.clone(),
            replicas,
            stopped: false,
        };
        *self.shared.status.write().expect("status lock") = status;
    }
}

/// Sends one quorum request and converts the answer (echo fields from the request).
async fn call(
    peer: &PeerClient,
    cluster_id: &str,
    to: NodeId,
    message: Message,
    tick_ms: u64,
) -> Option<Message> {
    let outcome = match message {
        Message::VoteRequest(r) => peer
            .send(wire::VOTE_VERSION, &wire::vote_request(&r, cluster_id, to))
            .await
            .map(|k| wire::from_vote_response(&k, r.pre_vote).map(Message::VoteResponse)),
        Message::BeginQuorumEpochRequest(r) => peer
            .send(
                wire::BEGIN_QUORUM_EPOCH_VERSION,
                &wire::begin_quorum_epoch_request(&r, cluster_id, to),
            )
            .await
            .map(|k| {
                wire::from_begin_quorum_epoch_response(&k).map(Message::BeginQuorumEpochResponse)
            }),
        Message::EndQuorumEpochRequest(r) => peer
            .send(
                wire::END_QUORUM_EPOCH_VERSION,
                &wire::end_quorum_epoch_request(&r, cluster_id),
            )
            .await
            .map(|k| wire::from_end_quorum_epoch_response(&k).map(Message::EndQuorumEpochResponse)),
        Message::FetchRequest(r) => peer
            .send(
                wire::FETCH_VERSION,
                &wire::fetch_request(&r, cluster_id, tick_ms),
            )
            .await
            .map(|k| wire::from_fetch_response(&k, &r).map(Message::FetchResponse)),
        Message::FetchSnapshotRequest(r) => peer
            .send(
                wire::FETCH_SNAPSHOT_VERSION,
                &wire::fetch_snapshot_request(&r, cluster_id),
            )
            .await
            .map(|k| wire::from_fetch_snapshot_response(&k).map(Message::FetchSnapshotResponse)),
        _ => return None,
    };
    match outcome {
        Ok(answer) => answer,
        Err(error) => {
            tracing::debug!(to, %error, "quorum request failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::Properties;
    use crate::controller::records::ConfigResource;
    use crate::controller::{Controller, METADATA_TOPIC};
    use crate::log::log_config::LogConfig;
    use crate::log::partition::{Checkpoints, PartitionLog};
    use crate::record::builder::BatchBuilder;

    /// A data directory written before the quorum: the metadata log is a partition log of
    /// plain batches of JSON records (several per batch), with index files, no quorum-state.
    #[test]
    fn a_single_node_data_dir_from_before_the_quorum_opens() {
        let temp = tempfile::tempdir().unwrap();
        let properties = Properties::default();
        let topic_id = uuid::Uuid::new_v4();
        {
            let config = Arc::new(LogConfig::new(&properties, &BTreeMap::new()));
            let dir = temp.path().join(format!("{METADATA_TOPIC}-0"));
            let log = PartitionLog::open(
                &dir,
                METADATA_TOPIC,
                0,
                config,
                Checkpoints::default(),
                false,
            )
            .unwrap();
            let batches: Vec<Vec<MetadataRecord>> = vec![
                vec![
                    MetadataRecord::Topic {
                        name: "old".into(),
                        topic_id,
                    },
                    MetadataRecord::Partition {
                        topic_id,
                        partition: 0,
                        replicas: vec![1],
                        isr: vec![1],
                        leader: 1,
                        leader_epoch: 0,
                        partition_epoch: 0,
                        adding_replicas: Vec::new(),
                        removing_replicas: Vec::new(),
                    },
                ],
                vec![MetadataRecord::Config {
                    resource: ConfigResource::Topic,
                    resource_name: "old".into(),
                    name: "retention.ms".into(),
                    value: Some("1000".into()),
                }],
                vec![MetadataRecord::ProducerIds {
                    broker_id: 1,
                    broker_epoch: 0,
                    next_producer_id: 1000,
                }],
            ];
            for records in batches {
                let batch = records
                    .iter()
                    .fold(BatchBuilder::new(1), |b, r| {
                        b.record(None, Some(&r.encode()), 1)
                    })
                    .build();
                log.append_trusted(&batch, 1).unwrap();
            }
            log.close(1).unwrap();
        }
        let check = |controller: &Controller, next_producer_id: i64| {
            let image = controller.image();
            let topic = image.topics.get("old").expect("topic replayed");
            assert_eq!(topic.id, topic_id);
            assert_eq!(topic.partition_count(), 1);
            assert_eq!(
                topic.configs.get("retention.ms").map(String::as_str),
                Some("1000")
            );
            assert_eq!(image.next_producer_id, next_producer_id);
        };
        let controller = Controller::open(
            temp.path(),
            1,
            properties.clone(),
            QuorumConfig::single_node_for_tests(1),
        )
        .unwrap();
        check(&controller, 1000);
        // A commit through the one-voter quorum, then a restart: both histories replay.
        assert_eq!(controller.allocate_producer_ids(1000).unwrap(), 1000);
        check(&controller, 2000);
        controller.shutdown().unwrap();
        drop(controller);
        let controller = Controller::open(
            temp.path(),
            1,
            properties,
            QuorumConfig::single_node_for_tests(1),
        )
        .unwrap();
        check(&controller, 2000);
        controller.shutdown().unwrap();
    }
}
