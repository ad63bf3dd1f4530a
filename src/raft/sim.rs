//! Deterministic simulation of a quorum of [`RaftNode`]s: one seeded generator decides every
//! message delay, drop, duplicate, reorder, partition (symmetric or one-way), crash (also in
//! the middle of persisting a Ready), restart from only what was persisted, clock skew,
//! client proposal, snapshot and resignation. After every step the [`Checker`] verifies the
//! safety properties; after the faults heal, liveness: a leader is elected and a new entry
//! commits everywhere within a bounded number of ticks.
//!
//! `cargo test --release --lib raft::sim` runs `RAFT_SIM_SEEDS` seeds (default 10,000) from
//! `RAFT_SIM_FIRST_SEED` (default 0) on `RAFT_SIM_THREADS` threads (default: all cores);
//! `RAFT_SIM_SEED=n` replays one seed and prints its trace when it fails (`RAFT_SIM_TRACE=1`:
//! always). A failing seed in a batch is replayed with its trace (the last 400 lines;
//! `RAFT_SIM_TRACE_ALL=1`: all) before the test fails. A soak:
//! `RAFT_SIM_SEEDS=1000000 RAFT_SIM_FIRST_SEED=10000 cargo test --release --lib raft::sim -- --nocapture`.
//!
//! Each seed draws its own fault rates, 3 or 5 voters (plus an observer in a quarter of the
//! seeds) and fetch size, runs 150–400 ticks of chaos, then heals everything and requires
//! progress.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use bytes::Bytes;

use super::*;

/// Ticks the healed cluster gets to elect a leader and commit a new entry on every node.
const LIVENESS_TICKS_MAX: u64 = 300;
const OBSERVER_ID: NodeId = 100;

/// The replicated state machine: a hash chain over applied entries. Two nodes that applied
/// the same prefix have the same hash; a snapshot is the (offset, hash) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct App {
    applied_offset: Offset,
    hash: u64,
}

const APP_HASH_INITIAL: u64 = 0x0123_4567_89ab_cdef;

fn chain(hash: u64, offset: Offset, entry: &Entry) -> u64 {
    let mut h = hash ^ (offset as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h = h.rotate_left(17) ^ (entry.epoch as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = h.rotate_left(23) ^ (entry.kind == EntryKind::Data) as u64;
    for byte in entry.data.iter() {
        h = (h ^ *byte as u64).wrapping_mul(0x100_0000_01b3);
    }
    SplitMix64(h).next_u64()
}

fn snapshot_bytes(app: App) -> Bytes {
    let mut data = Vec::with_capacity(16);
    data.extend_from_slice(&app.applied_offset.to_be_bytes());
    data.extend_from_slice(&app.hash.to_be_bytes());
    Bytes::from(data)
}

fn app_from_snapshot(snapshot: &Snapshot) -> App {
    assert_eq!(snapshot.data.len(), 16, "snapshot bytes intact");
    let offset = i64::from_be_bytes(snapshot.data[..8].try_into().unwrap());
    let hash = u64::from_be_bytes(snapshot.data[8..].try_into().unwrap());
    assert_eq!(offset, snapshot.id.end_offset);
    App {
        applied_offset: offset,
        hash,
    }
}

/// What a node's disk holds.
#[derive(Clone, Debug)]
struct Durable {
    quorum_state: QuorumState,
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
}

impl Durable {
    fn start_offset(&self) -> Offset {
        self.snapshot.as_ref().map_or(0, |s| s.id.end_offset)
    }
}

struct SimNode {
    id: NodeId,
    raft: Option<RaftNode>,
    durable: Durable,
    app: App,
    incarnation: u64,
    /// High watermark last seen in this incarnation.
    high_watermark_seen: Offset,
    role_seen: RoleKind,
}

struct InFlight {
    deliver_at: u64,
    envelope: Envelope,
}

/// Fault rates of one seed, per mille.
#[derive(Debug)]
struct Faults {
    restart: u64,
    /// Entries per fetch response: 1 makes a follower take an old epoch's entries without the
    /// new leader's, the window in which committing by counting old entries is wrong.
    fetch_entries_max: usize,
    drop: u64,
    duplicate: u64,
    delay_long: u64,
    crash: u64,
    torn_persist: u64,
    partition: u64,
    heal: u64,
    skip_tick: u64,
    propose: u64,
    snapshot: u64,
    resign: u64,
}

/// The safety properties, over everything any node ever reported.
#[derive(Default)]
struct Checker {
    leaders_by_epoch: BTreeMap<Epoch, NodeId>,
    /// The committed prefix of the log, as far as any node has reported it.
    committed: Vec<Entry>,
    /// `prefix_hash[o]`: the state after applying `committed[..o]`.
    prefix_hash: Vec<u64>,
    /// The largest high watermark seen in each epoch.
    high_watermark_by_epoch: BTreeMap<Epoch, Offset>,
}

impl Checker {
    fn new() -> Checker {
        Checker {
            prefix_hash: vec![APP_HASH_INITIAL],
            ..Default::default()
        }
    }

    /// `entry` is committed at `offset`: it must equal what was committed there before.
    fn committed_at(&mut self, offset: Offset, entry: &Entry, who: NodeId) {
        let index = offset as usize;
        if index < self.committed.len() {
            assert_eq!(
                &self.committed[index], entry,
                "node {who}: committed entry at {offset} changed"
            );
        } else {
            assert_eq!(
                index,
                self.committed.len(),
                "node {who}: committed {offset} beyond the known prefix (gap)"
            );
            let hash = chain(self.prefix_hash[index], offset, entry);
            self.committed.push(entry.clone());
            self.prefix_hash.push(hash);
        }
    }

    fn state_at(&self, offset: Offset, who: NodeId) -> u64 {
        assert!(
            (offset as usize) < self.prefix_hash.len(),
            "node {who}: state at {offset} beyond anything committed ({})",
            self.committed.len()
        );
        self.prefix_hash[offset as usize]
    }

    /// Committed entries a leader of `epoch` must hold: those committed in epochs up to it.
    fn committed_through_epoch(&self, epoch: Epoch) -> Offset {
        self.high_watermark_by_epoch
            .range(..=epoch)
            .map(|(_, hw)| *hw)
            .max()
            .unwrap_or(0)
    }
}

/// How often the interesting paths ran, so a green run means something.
#[derive(Clone, Copy, Debug, Default)]
struct Coverage {
    elections_won: u64,
    pre_votes_refused: u64,
    divergence_truncations: u64,
    snapshots_taken: u64,
    snapshots_installed: u64,
    fetch_snapshot_chunks: u64,
    torn_persist_crashes: u64,
    crashes: u64,
    check_quorum_resignations: u64,
    graceful_resignations: u64,
    observer_commits: u64,
}

impl Coverage {
    fn add(&mut self, other: &Coverage) {
        self.elections_won += other.elections_won;
        self.pre_votes_refused += other.pre_votes_refused;
        self.divergence_truncations += other.divergence_truncations;
        self.snapshots_taken += other.snapshots_taken;
        self.snapshots_installed += other.snapshots_installed;
        self.fetch_snapshot_chunks += other.fetch_snapshot_chunks;
        self.torn_persist_crashes += other.torn_persist_crashes;
        self.crashes += other.crashes;
        self.check_quorum_resignations += other.check_quorum_resignations;
        self.graceful_resignations += other.graceful_resignations;
        self.observer_commits += other.observer_commits;
    }
}

struct Sim {
    coverage: Coverage,
    random: SplitMix64,
    seed: u64,
    faults: Faults,
    voters: Vec<NodeId>,
    nodes: Vec<SimNode>,
    network: Vec<InFlight>,
    /// Links that drop messages, (from, to): a partition is a set of these.
    blocked: BTreeSet<(NodeId, NodeId)>,
    now: u64,
    checker: Checker,
    trace: Option<Vec<String>>,
    next_value: u64,
    proposals: u64,
    steps: u64,
}

impl Sim {
    fn new(seed: u64, trace: bool) -> Sim {
        let mut random = SplitMix64(seed);
        let voter_count = if random.below(2) == 0 { 3 } else { 5 };
        let voters: Vec<NodeId> = (1..=voter_count).collect();
        let mut ids = voters.clone();
        if random.below(4) == 0 {
            ids.push(OBSERVER_ID);
        }
        // A quarter of the seeds crash and restart nodes often.
        let crashy = random.below(4) == 0;
        let fetch_entries_max = 1 + random.below(4) as usize;
        let mut rate = |max: u64| random.below(max + 1);
        let faults = Faults {
            restart: if crashy { 100 + rate(400) } else { 50 },
            fetch_entries_max,
            drop: rate(200),
            duplicate: rate(100),
            delay_long: rate(300),
            crash: if crashy { rate(100) } else { rate(20) },
            torn_persist: rate(500),
            partition: rate(30),
            heal: 20 + rate(80),
            skip_tick: rate(100),
            propose: 100 + rate(500),
            snapshot: rate(60),
            resign: rate(10),
        };
        let nodes = ids
            .iter()
            .map(|&id| SimNode {
                id,
                raft: None,
                durable: Durable {
                    quorum_state: QuorumState {
                        epoch: 0,
                        voted_for: None,
                        leader_id: None,
                    },
                    snapshot: None,
                    entries: Vec::new(),
                },
                app: App {
                    applied_offset: 0,
                    hash: APP_HASH_INITIAL,
                },
                incarnation: 0,
                high_watermark_seen: 0,
                role_seen: RoleKind::Unattached,
            })
            .collect();
        let mut sim = Sim {
            coverage: Coverage::default(),
            random,
            seed,
            faults,
            voters,
            nodes,
            network: Vec::new(),
            blocked: BTreeSet::new(),
            now: 0,
            checker: Checker::new(),
            trace: trace.then(Vec::new),
            next_value: 0,
            proposals: 0,
            steps: 0,
        };
        let faults = format!("{:?}", sim.faults);
        sim.log(|| format!("seed {seed} voters {:?} faults {faults}", sim_ids(&ids)));
        for index in 0..sim.nodes.len() {
            sim.start(index);
        }
        sim
    }

    fn log(&mut self, line: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            let mut text = format!("[t{} s{}] ", self.now, self.steps);
            text.push_str(&line());
            trace.push(text);
        }
    }

    fn chance(&mut self, per_mille: u64) -> bool {
        self.random.below(1000) < per_mille
    }

    fn config(&self, id: NodeId, incarnation: u64) -> Config {
        let mut config = Config::new(
            id,
            self.voters.clone(),
            self.seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add((id as u64) << 32 | incarnation),
        );
        // Small limits so that fetches, snapshot chunks and back-pressure all get exercised.
        config.fetch_entries_max = self.faults.fetch_entries_max;
        config.snapshot_chunk_size_bytes_max = 7;
        config.uncommitted_entries_max = 64;
        config.log_entries_max = 256;
        config
    }

    /// (Re)starts node `index` from its disk.
    fn start(&mut self, index: usize) {
        let node = &self.nodes[index];
        assert!(node.raft.is_none());
        let config = self.config(node.id, node.incarnation + 1);
        let persisted = Persisted {
            quorum_state: node.durable.quorum_state,
            snapshot: node.durable.snapshot.clone(),
            entries: node.durable.entries.clone(),
        };
        let raft = RaftNode::restore(config, persisted);
        let app = match &node.durable.snapshot {
            Some(snapshot) => {
                let app = app_from_snapshot(snapshot);
                let expected = self.checker.state_at(app.applied_offset, node.id);
                assert_eq!(app.hash, expected, "node {}: persisted snapshot", node.id);
                app
            }
            None => App {
                applied_offset: 0,
                hash: APP_HASH_INITIAL,
            },
        };
        let node = &mut self.nodes[index];
        node.incarnation += 1;
        node.high_watermark_seen = raft.high_watermark();
        node.role_seen = raft.role();
        node.app = app;
        node.raft = Some(raft);
        let id = node.id;
        self.log(|| format!("node {id} starts"));
        self.check_node(index);
    }

    fn crash(&mut self, index: usize) {
        let id = self.nodes[index].id;
        self.nodes[index].raft = None;
        self.coverage.crashes += 1;
        self.log(|| format!("node {id} crashes"));
    }

    /// Acts on node `index`'s Ready: persist (maybe torn by a crash), send, apply; then check.
    fn process_ready(&mut self, index: usize) {
        self.steps += 1;
        let was_leader = self.nodes[index].role_seen == RoleKind::Leader;
        let has_ready = self.nodes[index].raft.as_ref().unwrap().has_ready();
        let ready = self.nodes[index].raft.as_mut().expect("running").ready();
        let id = self.nodes[index].id;
        let role = self.nodes[index].raft.as_ref().unwrap().role();
        self.nodes[index].role_seen = role;
        if !was_leader && role == RoleKind::Leader {
            self.coverage.elections_won += 1;
        }
        if was_leader && role == RoleKind::Resigned {
            self.coverage.check_quorum_resignations += 1;
        }
        if ready.truncate_to.is_some() {
            self.coverage.divergence_truncations += 1;
        }
        if ready.snapshot_replaces_log {
            self.coverage.snapshots_installed += 1;
        }
        if id == OBSERVER_ID {
            self.coverage.observer_commits += ready.committed.len() as u64;
        }
        let operations = ready.quorum_state.is_some() as usize
            + ready.snapshot.is_some() as usize
            + ready.truncate_to.is_some() as usize
            + ready.entries.len();
        let torn_after = if operations > 0 && self.chance(self.faults.crash * 4) {
            if self.chance(self.faults.torn_persist) {
                Some(self.random.below(operations as u64) as usize)
            } else {
                Some(operations)
            }
        } else {
            None
        };
        assert_eq!(
            has_ready,
            operations > 0
                || !ready.messages.is_empty()
                || !ready.committed.is_empty()
                || ready.apply_snapshot.is_some(),
            "node {id}: has_ready disagrees with ready"
        );
        let quiet = operations == 0 && ready.committed.is_empty() && ready.apply_snapshot.is_none();
        self.log(|| {
            if quiet {
                return format!("node {id}: {} messages", ready.messages.len());
            }
            format!(
                "node {id} ready: quorum {:?} snapshot {:?}{} truncate {:?} entries {}+{} hw {} committed {}+{}",
                ready.quorum_state,
                ready.snapshot.as_ref().map(|s| s.id),
                if ready.snapshot_replaces_log { " (replaces)" } else { "" },
                ready.truncate_to,
                ready.entries_offset,
                ready.entries.len(),
                ready.high_watermark,
                ready.committed_offset,
                ready.committed.len()
            )
        });
        let mut budget = torn_after.unwrap_or(usize::MAX);
        let mut allowed = || {
            if budget == 0 {
                return false;
            }
            budget -= 1;
            true
        };
        let durable = &mut self.nodes[index].durable;
        if let Some(state) = ready.quorum_state {
            if !allowed() {
                return self.crash_torn(index, 0);
            }
            let before = durable.quorum_state;
            assert!(
                state.epoch >= before.epoch,
                "node {id}: durable epoch went back"
            );
            if state.epoch == before.epoch {
                assert!(
                    before.voted_for.is_none() || before.voted_for == state.voted_for,
                    "node {id}: changed its vote in epoch {}: {before:?} -> {state:?}",
                    state.epoch
                );
                assert!(
                    before.leader_id.is_none() || before.leader_id == state.leader_id,
                    "node {id}: changed leader in epoch {}",
                    state.epoch
                );
            }
            durable.quorum_state = state;
        }
        if let Some(snapshot) = &ready.snapshot {
            if !allowed() {
                return self.crash_torn(index, 1);
            }
            if ready.snapshot_replaces_log {
                durable.entries.clear();
            } else {
                let drop = snapshot.id.end_offset - durable.start_offset();
                assert!(drop > 0 && drop as usize <= durable.entries.len());
                durable.entries.drain(..drop as usize);
            }
            assert!(
                snapshot.id.end_offset > durable.start_offset(),
                "node {id}: durable snapshot moved back"
            );
            durable.snapshot = Some(snapshot.clone());
        }
        if let Some(offset) = ready.truncate_to {
            if !allowed() {
                return self.crash_torn(index, 2);
            }
            let keep = offset - durable.start_offset();
            assert!(keep >= 0 && keep as usize <= durable.entries.len());
            durable.entries.truncate(keep as usize);
        }
        assert_eq!(
            ready.entries_offset,
            durable.start_offset() + durable.entries.len() as Offset,
            "node {id}: entries must continue the durable log"
        );
        for entry in &ready.entries {
            if !allowed() {
                return self.crash_torn(index, 3);
            }
            durable.entries.push(entry.clone());
        }
        if torn_after.is_some() {
            // Crashed after persisting everything, before sending.
            return self.crash_torn(index, 4);
        }
        for envelope in ready.messages {
            self.send(envelope);
        }
        if let Some(snapshot) = &ready.apply_snapshot {
            let app = app_from_snapshot(snapshot);
            let expected = self.checker.state_at(app.applied_offset, id);
            assert_eq!(app.hash, expected, "node {id}: installed snapshot differs");
            self.nodes[index].app = app;
        }
        let node = &mut self.nodes[index];
        assert_eq!(
            ready.committed_offset, node.app.applied_offset,
            "node {id}: committed entries must continue what was applied"
        );
        for (i, entry) in ready.committed.iter().enumerate() {
            let offset = ready.committed_offset + i as Offset;
            self.checker.committed_at(offset, entry, id);
            let node = &mut self.nodes[index];
            node.app.hash = chain(node.app.hash, offset, entry);
            node.app.applied_offset = offset + 1;
            assert_eq!(
                node.app.hash,
                self.checker.prefix_hash[(offset + 1) as usize],
                "node {id}: applied state differs at {offset}"
            );
        }
        self.check_node(index);
    }

    fn crash_torn(&mut self, index: usize, stage: u32) {
        if stage < 4 {
            self.coverage.torn_persist_crashes += 1;
        }
        let id = self.nodes[index].id;
        self.log(|| format!("node {id} crashes while persisting (stage {stage})"));
        self.crash(index);
    }

    fn send(&mut self, envelope: Envelope) {
        if self.chance(self.faults.drop) {
            return;
        }
        let copies = if self.chance(self.faults.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = if self.chance(self.faults.delay_long) {
                1 + self.random.below(12)
            } else {
                1 + self.random.below(2)
            };
            self.network.push(InFlight {
                deliver_at: self.now + delay,
                envelope: envelope.clone(),
            });
        }
    }

    fn index_of(&self, id: NodeId) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .expect("known node")
    }

    /// The safety properties, for node `index` after a step.
    fn check_node(&mut self, index: usize) {
        let checker = &mut self.checker;
        let node = &mut self.nodes[index];
        let Some(raft) = &node.raft else {
            return;
        };
        let id = raft.node_id();
        let high_watermark = raft.high_watermark();
        assert!(
            high_watermark >= node.high_watermark_seen,
            "node {id}: high watermark moved back from {} to {high_watermark}",
            node.high_watermark_seen
        );
        node.high_watermark_seen = high_watermark;
        let epoch = raft.epoch();
        if raft.is_leader() {
            let leader = *checker.leaders_by_epoch.entry(epoch).or_insert(id);
            assert_eq!(
                leader, id,
                "two leaders in epoch {epoch}: {leader} and {id}"
            );
        }
        // Logs agree up to the high watermark: every node's committed prefix is the one.
        let start = raft.log_start_offset();
        if let Some(snapshot) = raft.latest_snapshot() {
            let state = app_from_snapshot(snapshot);
            let expected = checker.state_at(state.applied_offset, id);
            assert_eq!(state.hash, expected, "node {id}: snapshot differs");
        }
        for offset in start..high_watermark {
            let entry = raft.entry(offset).expect("entries below hw");
            checker.committed_at(offset, entry, id);
        }
        let seen = checker.high_watermark_by_epoch.entry(epoch).or_insert(0);
        *seen = (*seen).max(high_watermark);
        // A leader holds every entry committed up to its epoch.
        if raft.is_leader() {
            let required = checker.committed_through_epoch(epoch);
            assert!(
                raft.log_end_offset() >= required,
                "leader {id} of epoch {epoch} lacks committed entries: log end {}, committed {required}",
                raft.log_end_offset()
            );
            for offset in start..required {
                let entry = raft.entry(offset).expect("in log");
                assert_eq!(
                    entry,
                    &checker.committed[offset as usize],
                    "leader {id} of epoch {epoch} has a different entry at committed offset {offset}"
                );
            }
        }
    }

    fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].raft.is_some())
            .collect()
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            return None;
        }
        Some(items[self.random.below(items.len() as u64) as usize])
    }

    /// One tick of simulated time: faults, ticks, proposals, snapshots, deliveries.
    /// Every committed entry is on the disks of a majority of voters (in its log or under its
    /// snapshot): what any crash leaves behind still holds it.
    fn check_durable_majority(&self) {
        let committed = self.checker.committed.len() as Offset;
        let mut held: Vec<Offset> = self
            .nodes
            .iter()
            .filter(|n| self.voters.contains(&n.id))
            .map(|n| {
                let durable = &n.durable;
                let mut end = durable.start_offset();
                if end > committed {
                    return end;
                }
                for entry in &durable.entries {
                    if end >= committed || *entry != self.checker.committed[end as usize] {
                        break;
                    }
                    end += 1;
                }
                end
            })
            .collect();
        held.sort_unstable_by(|a, b| b.cmp(a));
        let majority_holds = held[self.voters.len() / 2];
        assert!(
            majority_holds >= committed,
            "committed through {committed} but a majority of disks hold only {majority_holds}: {held:?}"
        );
    }

    fn round(&mut self, chaos: bool) {
        self.now += 1;
        if self.now.is_multiple_of(16) {
            self.check_durable_majority();
        }
        if chaos {
            self.inject_faults();
        }
        let mut order = self.running();
        self.shuffle(&mut order);
        for index in order {
            if self.nodes[index].raft.is_none() {
                continue;
            }
            if chaos && self.chance(self.faults.skip_tick) {
                continue; // Clock skew: this node's clock runs slow.
            }
            self.nodes[index].raft.as_mut().unwrap().tick();
            self.process_ready(index);
        }
        if chaos && self.chance(self.faults.propose) {
            self.propose_somewhere();
        }
        if self.chance(self.faults.snapshot) {
            if let Some(index) = self.pick(&self.running()) {
                self.take_snapshot(index);
            }
        }
        self.deliver_due();
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.random.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    fn inject_faults(&mut self) {
        if self.chance(self.faults.crash) {
            if let Some(index) = self.pick(&self.running()) {
                self.crash(index);
            }
        }
        let crashed: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].raft.is_none())
            .collect();
        if !crashed.is_empty() && self.chance(self.faults.restart) {
            let index = self.pick(&crashed).unwrap();
            self.start(index);
        }
        if self.chance(self.faults.partition) {
            self.partition();
        }
        if !self.blocked.is_empty() && self.chance(self.faults.heal) {
            self.blocked.clear();
            self.log(|| "network heals".to_string());
        }
        if self.chance(self.faults.resign) {
            let leaders: Vec<usize> = self
                .running()
                .into_iter()
                .filter(|i| self.nodes[*i].raft.as_ref().unwrap().is_leader())
                .collect();
            if let Some(index) = self.pick(&leaders) {
                let id = self.nodes[index].id;
                self.log(|| format!("leader {id} resigns"));
                self.nodes[index].raft.as_mut().unwrap().resign();
                self.coverage.graceful_resignations += 1;
                self.nodes[index].role_seen = RoleKind::Resigned;
                self.process_ready(index);
                if self.nodes[index].raft.is_some() && self.chance(500) {
                    self.crash(index); // A graceful shutdown.
                }
            }
        }
    }

    fn partition(&mut self) {
        let ids: Vec<NodeId> = self.nodes.iter().map(|n| n.id).collect();
        self.blocked.clear();
        if self.chance(300) {
            // One-way: `from` can no longer reach some nodes, which still reach it.
            let from = self.pick(&ids).unwrap();
            for &to in &ids {
                if to != from && self.chance(600) {
                    self.blocked.insert((from, to));
                }
            }
        } else {
            let side: Vec<bool> = ids.iter().map(|_| self.random.below(2) == 0).collect();
            for (i, &a) in ids.iter().enumerate() {
                for (j, &b) in ids.iter().enumerate() {
                    if side[i] != side[j] {
                        self.blocked.insert((a, b));
                    }
                }
            }
        }
        let blocked = format!("{:?}", self.blocked);
        self.log(|| format!("partition: blocked {blocked}"));
    }

    fn propose_somewhere(&mut self) {
        let Some(index) = self.pick(&self.running()) else {
            return;
        };
        self.next_value += 1;
        let value = self.next_value;
        let data = Bytes::from(value.to_be_bytes().to_vec());
        let result = self.nodes[index].raft.as_mut().unwrap().propose(data);
        let id = self.nodes[index].id;
        self.log(|| format!("propose {value} at node {id}: {result:?}"));
        if result.is_ok() {
            self.proposals += 1;
        }
        self.process_ready(index);
    }

    fn take_snapshot(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        let raft = node.raft.as_mut().unwrap();
        if node.app.applied_offset <= raft.log_start_offset() {
            return;
        }
        let app = node.app;
        raft.snapshot(app.applied_offset, snapshot_bytes(app));
        self.coverage.snapshots_taken += 1;
        let id = node.id;
        self.log(|| format!("node {id} snapshots at {}", app.applied_offset));
        self.process_ready(index);
    }

    fn deliver_due(&mut self) {
        let now = self.now;
        let mut due = Vec::new();
        let mut index = 0;
        while index < self.network.len() {
            if self.network[index].deliver_at <= now {
                due.push(self.network.swap_remove(index));
            } else {
                index += 1;
            }
        }
        // Messages due in the same tick arrive in any order.
        self.shuffle(&mut due);
        for in_flight in due {
            let Envelope { from, to, message } = in_flight.envelope;
            if self.blocked.contains(&(from, to)) {
                continue;
            }
            let index = self.index_of(to);
            if self.nodes[index].raft.is_none() {
                continue;
            }
            match &message {
                Message::VoteResponse(m) if m.pre_vote && !m.vote_granted => {
                    self.coverage.pre_votes_refused += 1
                }
                Message::FetchSnapshotResponse(_) => self.coverage.fetch_snapshot_chunks += 1,
                _ => {}
            }
            if self.trace.is_some() {
                let line = format!("{from} -> {to}: {message:?}");
                self.log(|| line);
            }
            self.nodes[index].raft.as_mut().unwrap().step(from, message);
            self.process_ready(index);
        }
    }

    fn leader(&self) -> Option<usize> {
        // The leader of the newest epoch any running node leads.
        self.running()
            .into_iter()
            .filter(|i| self.nodes[*i].raft.as_ref().unwrap().is_leader())
            .max_by_key(|i| self.nodes[*i].raft.as_ref().unwrap().epoch())
    }

    /// Heal everything, then demand progress: an elected leader and a new entry committed on
    /// every node within `LIVENESS_TICKS_MAX`. Returns the ticks it took.
    fn check_liveness(&mut self) -> u64 {
        self.blocked.clear();
        for index in 0..self.nodes.len() {
            if self.nodes[index].raft.is_none() {
                self.start(index);
            }
        }
        self.faults.drop = 0;
        self.faults.duplicate = 0;
        self.faults.delay_long = 0;
        self.faults.crash = 0;
        self.log(|| "faults heal; checking liveness".to_string());
        let healed_at = self.now;
        let mut proposed: Option<(Offset, Bytes, Epoch)> = None;
        while self.now - healed_at < LIVENESS_TICKS_MAX {
            self.round(false);
            if let Some((_, _, epoch)) = &proposed {
                let current = self
                    .leader()
                    .map(|i| self.nodes[i].raft.as_ref().unwrap().epoch());
                if current.is_some_and(|e| e != *epoch) {
                    proposed = None; // A new leader may have truncated it: propose again.
                }
            }
            if let Some((offset, data, _)) = &proposed {
                let everywhere = self.nodes.iter().all(|n| {
                    let raft = n.raft.as_ref().unwrap();
                    raft.high_watermark() > *offset
                });
                if everywhere {
                    let committed = &self.checker.committed[*offset as usize];
                    if committed.data == *data {
                        return self.now - healed_at;
                    }
                    proposed = None; // Lost to a leader change: propose again.
                }
            }
            if proposed.is_none() {
                if let Some(index) = self.leader() {
                    self.next_value += 1;
                    let data = Bytes::from(self.next_value.to_be_bytes().to_vec());
                    let raft = self.nodes[index].raft.as_mut().unwrap();
                    let epoch = raft.epoch();
                    if let Ok(offset) = raft.propose(data.clone()) {
                        proposed = Some((offset, data, epoch));
                    }
                    self.process_ready(index);
                }
            }
        }
        let roles: Vec<String> = self
            .nodes
            .iter()
            .map(|n| {
                let r = n.raft.as_ref().unwrap();
                format!(
                    "{}:{:?}@{} hw {} end {}",
                    n.id,
                    r.role(),
                    r.epoch(),
                    r.high_watermark(),
                    r.log_end_offset()
                )
            })
            .collect();
        panic!(
            "no progress {LIVENESS_TICKS_MAX} ticks after healing: {roles:?}, proposed {proposed:?}"
        );
    }
}

fn sim_ids(ids: &[NodeId]) -> Vec<NodeId> {
    ids.to_vec()
}

#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    seeds: u64,
    steps: u64,
    committed: u64,
    liveness_ticks_max: u64,
    liveness_ticks_max_seed: u64,
    coverage: Coverage,
}

impl Stats {
    fn add(&mut self, other: &Stats) {
        self.seeds += other.seeds;
        self.steps += other.steps;
        self.committed += other.committed;
        if other.liveness_ticks_max > self.liveness_ticks_max {
            self.liveness_ticks_max = other.liveness_ticks_max;
            self.liveness_ticks_max_seed = other.liveness_ticks_max_seed;
        }
        self.coverage.add(&other.coverage);
    }
}

fn run_seed(seed: u64, trace: &mut Option<Vec<String>>) -> Stats {
    let mut sim = Sim::new(seed, trace.is_some());
    let result = catch_unwind(AssertUnwindSafe(|| {
        let chaos_rounds = 150 + sim.random.below(250);
        for _ in 0..chaos_rounds {
            sim.round(true);
        }
        let liveness_ticks = sim.check_liveness();
        Stats {
            seeds: 1,
            steps: sim.steps,
            committed: sim.checker.committed.len() as u64,
            liveness_ticks_max: liveness_ticks,
            liveness_ticks_max_seed: seed,
            coverage: sim.coverage,
        }
    }));
    *trace = sim.trace.take();
    match result {
        Ok(stats) => stats,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}"))
    })
}

fn print_trace(seed: u64, trace: &[String]) {
    let mut text = String::new();
    for line in trace {
        let _ = writeln!(text, "{line}");
    }
    eprintln!(
        "---- trace of seed {seed} ({} lines) ----\n{text}---- end of trace ----",
        trace.len()
    );
}

/// Replays `seed` with tracing and prints the trace (the tail unless RAFT_SIM_TRACE_ALL).
fn replay_with_trace(seed: u64) -> String {
    let mut trace = Some(Vec::new());
    let result = catch_unwind(AssertUnwindSafe(|| run_seed(seed, &mut trace)));
    let trace = trace.unwrap_or_default();
    let tail = if std::env::var("RAFT_SIM_TRACE_ALL").is_ok() {
        &trace[..]
    } else {
        &trace[trace.len().saturating_sub(400)..]
    };
    print_trace(seed, tail);
    match result {
        Ok(_) => "passed when replayed (not deterministic?)".to_string(),
        Err(panic) => panic_message(&panic),
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else {
        "panic".to_string()
    }
}

#[test]
fn simulation() {
    if let Some(seed) = env_u64("RAFT_SIM_SEED") {
        let mut trace = Some(Vec::new());
        let result = catch_unwind(AssertUnwindSafe(|| run_seed(seed, &mut trace)));
        let trace = trace.unwrap_or_default();
        match result {
            Ok(outcome) => {
                if std::env::var("RAFT_SIM_TRACE").is_ok() {
                    print_trace(seed, &trace);
                }
                eprintln!(
                    "seed {seed} passed: {} committed, {} steps, liveness in {} ticks; {:?}",
                    outcome.committed, outcome.steps, outcome.liveness_ticks_max, outcome.coverage
                );
            }
            Err(panic) => {
                print_trace(seed, &trace);
                panic!("seed {seed} failed: {}", panic_message(&panic));
            }
        }
        return;
    }
    let first = env_u64("RAFT_SIM_FIRST_SEED").unwrap_or(0);
    let count = env_u64("RAFT_SIM_SEEDS").unwrap_or(10_000);
    let threads = env_u64("RAFT_SIM_THREADS")
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u64))
        .clamp(1, 64);
    let started = Instant::now();
    let results: Vec<Result<Stats, (u64, String)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                scope.spawn(move || {
                    let mut stats = Stats::default();
                    let mut seed = first + thread;
                    while seed < first + count {
                        match catch_unwind(AssertUnwindSafe(|| run_seed(seed, &mut None))) {
                            Ok(outcome) => stats.add(&outcome),
                            Err(panic) => return Err((seed, panic_message(&panic))),
                        }
                        seed += threads;
                    }
                    Ok(stats)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut failures = Vec::new();
    let mut stats = Stats::default();
    for result in results {
        match result {
            Ok(thread_stats) => stats.add(&thread_stats),
            Err(failure) => failures.push(failure),
        }
    }
    eprintln!(
        "raft simulation: {} seeds ({first}..{}) on {threads} threads in {:.1?}: {} steps, {} committed entries, slowest recovery {} ticks (seed {})\ncoverage: {:?}",
        stats.seeds,
        first + count,
        started.elapsed(),
        stats.steps,
        stats.committed,
        stats.liveness_ticks_max,
        stats.liveness_ticks_max_seed,
        stats.coverage
    );
    if let Some((seed, message)) = failures.into_iter().min_by_key(|(seed, _)| *seed) {
        let replayed = replay_with_trace(seed);
        panic!(
            "seed {seed} failed: {message} (replayed: {replayed}); replay with RAFT_SIM_SEED={seed} cargo test --release --lib raft::sim"
        );
    }
}

/// KIP-996's point: a voter cut off from everyone keeps asking for pre-votes but never bumps
/// the epoch, so when it returns the leader keeps leading.
#[test]
fn a_partitioned_voter_rejoins_without_disrupting_the_leader() {
    for seed in 0..50 {
        let mut sim = Sim::new(seed, false);
        let fetch_entries_max = sim.faults.fetch_entries_max;
        sim.faults = Faults {
            restart: 0,
            fetch_entries_max,
            drop: 0,
            duplicate: 0,
            delay_long: 0,
            crash: 0,
            torn_persist: 0,
            partition: 0,
            heal: 0,
            skip_tick: 0,
            propose: 0,
            snapshot: 0,
            resign: 0,
        };
        let mut rounds = 0;
        while sim.leader().is_none() {
            sim.round(false);
            rounds += 1;
            assert!(rounds < 200, "seed {seed}: no leader");
        }
        for _ in 0..20 {
            sim.round(false);
        }
        let leader = sim.leader().unwrap();
        let leader_id = sim.nodes[leader].id;
        let epoch = sim.nodes[leader].raft.as_ref().unwrap().epoch();
        let isolated = sim
            .nodes
            .iter()
            .map(|n| n.id)
            .find(|id| *id != leader_id && sim.voters.contains(id))
            .unwrap();
        for other in sim.nodes.iter().map(|n| n.id) {
            if other != isolated {
                sim.blocked.insert((isolated, other));
                sim.blocked.insert((other, isolated));
            }
        }
        for _ in 0..200 {
            sim.round(false);
        }
        let isolated_index = sim.index_of(isolated);
        let isolated_raft = sim.nodes[isolated_index].raft.as_ref().unwrap();
        assert_eq!(
            isolated_raft.epoch(),
            epoch,
            "seed {seed}: epoch bumped in isolation"
        );
        assert_eq!(isolated_raft.role(), RoleKind::Prospective);
        sim.blocked.clear();
        // The returning voter asks before the leader's BeginQuorumEpoch reaches it.
        let mut ticks = 0;
        while !sim.network.iter().any(|m| {
            m.envelope.from == isolated && matches!(m.envelope.message, Message::VoteRequest(_))
        }) {
            sim.nodes[isolated_index].raft.as_mut().unwrap().tick();
            sim.process_ready(isolated_index);
            ticks += 1;
            assert!(ticks < 100);
        }
        for _ in 0..100 {
            sim.round(false);
        }
        for node in &sim.nodes {
            let raft = node.raft.as_ref().unwrap();
            assert_eq!(
                raft.epoch(),
                epoch,
                "seed {seed}: node {} moved on",
                node.id
            );
        }
        assert!(sim.nodes[leader].raft.as_ref().unwrap().is_leader());
        let isolated_raft = sim.nodes[isolated_index].raft.as_ref().unwrap();
        assert_eq!(isolated_raft.role(), RoleKind::Follower);
        assert_eq!(isolated_raft.leader_id(), Some(leader_id));
    }
}

/// Logical election time: ticks from the leader's crash to a new leader, on a quiet network
/// (1–2 tick delays). Printed with `--nocapture`; bounded loosely (timeouts are 10–19 ticks).
#[test]
fn election_ticks_after_a_leader_crash() {
    let mut ticks_all = Vec::new();
    for seed in 0..200 {
        let mut sim = Sim::new(seed, false);
        let fetch_entries_max = sim.faults.fetch_entries_max;
        sim.faults = Faults {
            restart: 0,
            fetch_entries_max,
            drop: 0,
            duplicate: 0,
            delay_long: 0,
            crash: 0,
            torn_persist: 0,
            partition: 0,
            heal: 0,
            skip_tick: 0,
            propose: 0,
            snapshot: 0,
            resign: 0,
        };
        while sim.leader().is_none() {
            sim.round(false);
        }
        for _ in 0..30 {
            sim.round(false);
        }
        let old = sim.leader().unwrap();
        sim.crash(old);
        let mut ticks = 0;
        while sim.leader().is_none() {
            sim.round(false);
            ticks += 1;
            assert!(ticks < 100, "seed {seed}: no new leader in {ticks} ticks");
        }
        ticks_all.push(ticks);
    }
    ticks_all.sort_unstable();
    let percentile = |p: usize| ticks_all[(ticks_all.len() * p / 100).min(ticks_all.len() - 1)];
    eprintln!(
        "election after leader crash, {} trials: p50 {} ticks, p99 {} ticks, max {} ticks",
        ticks_all.len(),
        percentile(50),
        percentile(99),
        ticks_all.last().unwrap()
    );
}
