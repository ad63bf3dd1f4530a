//! Replication state of one hosted partition (the leader-side half of Kafka's `Partition`):
//! the in-sync replicas as the metadata image last said, each follower's progress as its
//! fetches report it, and the high watermark they determine.
//!
//! Invariants:
//! - The high watermark never moves back while this node leads, and never passes the
//!   leader's log end offset.
//! - As leader, the high watermark is the smallest log end offset of the ISR members (the
//!   leader's own included): a record below it is on every in-sync replica, so a clean
//!   election cannot lose it. With the leader alone in the ISR it is the log end offset.
//! - At most one ISR change (AlterPartition) is in flight per partition; the next waits for
//!   the image to carry the result (a new partition epoch) or for the request to fail.
//! - While an expansion is in flight, the high watermark also waits for the joining
//!   followers (Kafka's maximal ISR, KIP-497): the controller may already have committed
//!   them, and a clean election may pick one before this leader applies the new ISR.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::controller::image::PartitionImage;

/// What the leader knows of one follower, from its fetches.
#[derive(Clone, Copy, Debug)]
struct FollowerProgress {
    /// The follower's log end offset: the offset of its last fetch (-1: not fetched yet).
    log_end_offset: i64,
    /// Last time the follower had fetched up to the leader's log end as of an earlier fetch
    /// (Kafka's `lastCaughtUpTimeMs`): what ISR shrinking measures lag by.
    last_caught_up_ms: i64,
    /// The time and the leader's log end offset of the follower's previous fetch.
    last_fetch_ms: i64,
    last_fetch_leader_end: i64,
    /// The follower's log start offset as its last fetch said (-1: not fetched yet): a
    /// consumer is sent to it only for offsets its log still holds (KIP-392).
    log_start_offset: i64,
}

impl FollowerProgress {
    fn new(now_ms: i64) -> FollowerProgress {
        FollowerProgress {
            log_end_offset: -1,
            last_caught_up_ms: now_ms,
            last_fetch_ms: now_ms,
            last_fetch_leader_end: -1,
            log_start_offset: -1,
        }
    }
}

/// An ISR change the leader wants the controller to commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsrChange {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

#[derive(Debug)]
struct State {
    node_id: i32,
    leading: bool,
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    high_watermark: i64,
    followers: BTreeMap<i32, FollowerProgress>,
    isr_change_in_flight: bool,
    /// Refused ISR changes in a row, and when the next may be asked (ms): a controller that
    /// refuses (a fenced follower, a stale epoch) is not asked again every replication tick.
    isr_change_failures: u32,
    isr_change_retry_at_ms: i64,
    /// Followers the ISR change in flight adds: counted in the high watermark until it is
    /// settled (the image carries it, or it failed).
    joining: Vec<i32>,
}

/// Backoff after the first refused ISR change, doubled per refusal in a row up to the max
/// (Kafka's AlterPartition retries likewise back off, from `retry.backoff.ms`).
const ISR_CHANGE_BACKOFF_MIN_MS: i64 = 100;
const ISR_CHANGE_BACKOFF_MAX_MS: i64 = 2_000;

#[derive(Debug)]
pub struct Replication {
    state: Mutex<State>,
}

impl Replication {
    pub fn new(node_id: i32, high_watermark: i64) -> Replication {
        Replication {
            state: Mutex::new(State {
                node_id,
                leading: false,
                leader_epoch: -1,
                partition_epoch: -1,
                replicas: Vec::new(),
                isr: Vec::new(),
                high_watermark,
                followers: BTreeMap::new(),
                isr_change_in_flight: false,
                isr_change_failures: 0,
                isr_change_retry_at_ms: i64::MIN,
                joining: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("replication lock")
    }

    /// Applies the partition's state from the metadata image. A new leader epoch (or the
    /// start of leadership) resets follower progress: followers prove themselves again.
    pub fn apply(&self, partition: &PartitionImage, log_end_offset: i64, now_ms: i64) {
        let mut state = self.lock();
        let leading = partition.leader == state.node_id;
        let new_term = leading && (!state.leading || partition.leader_epoch != state.leader_epoch);
        if new_term {
            state.followers = partition
                .replicas
                .iter()
                .filter(|&&id| id != state.node_id)
                .map(|&id| (id, FollowerProgress::new(now_ms)))
                .collect();
        }
        if !leading {
            state.followers.clear();
        } else if !new_term && partition.replicas != state.replicas {
            // A reassignment added or removed replicas during this term: a new replica must
            // be tracked to join the ISR, a removed one no longer counts.
            let node_id = state.node_id;
            state
                .followers
                .retain(|id, _| partition.replicas.contains(id));
            for &id in &partition.replicas {
                if id != node_id {
                    state
                        .followers
                        .entry(id)
                        .or_insert_with(|| FollowerProgress::new(now_ms));
                }
            }
        }
        if leading && !new_term {
            // A follower taken out of the ISR (the controller fenced it: it may be dead) joins
            // again only once a fetch shows it caught up. Its last position may be exactly the
            // high watermark it held back while it was in the ISR, which would pass the join
            // test at the next tick: the leader asked to add a killed broker back within
            // 100 ms of its fencing (Kafka expands only on a follower's fetch).
            let state = &mut *state;
            for (id, progress) in &mut state.followers {
                if state.isr.contains(id) && !partition.isr.contains(id) {
                    progress.log_end_offset = -1;
                }
            }
        }
        if partition.partition_epoch != state.partition_epoch || new_term || !leading {
            state.isr_change_in_flight = false;
            state.joining.clear();
            state.isr_change_failures = 0;
            state.isr_change_retry_at_ms = i64::MIN;
        }
        state.leading = leading;
        state.leader_epoch = partition.leader_epoch;
        state.partition_epoch = partition.partition_epoch;
        state.replicas = partition.replicas.clone();
        state.isr = partition.isr.clone();
        state.high_watermark = state.high_watermark.min(log_end_offset);
        if leading {
            Self::advance(&mut state, log_end_offset);
        }
    }

    pub fn high_watermark(&self) -> i64 {
        self.lock().high_watermark
    }

    pub fn node_id(&self) -> i32 {
        self.lock().node_id
    }

    /// As leader: the followers in the ISR that fetched in this term, with their log end,
    /// log start and time since they last caught up (what a replica selector chooses by).
    pub fn in_sync_followers(&self, now_ms: i64) -> Vec<super::replica_selector::FollowerView> {
        let state = self.lock();
        if !state.leading {
            return Vec::new();
        }
        state
            .followers
            .iter()
            .filter(|(id, progress)| state.isr.contains(id) && progress.log_end_offset >= 0)
            .map(
                |(&broker_id, progress)| super::replica_selector::FollowerView {
                    view: super::replica_selector::ReplicaView {
                        broker_id,
                        log_end_offset: progress.log_end_offset,
                        time_since_last_caught_up_ms: now_ms - progress.last_caught_up_ms,
                    },
                    log_start_offset: progress.log_start_offset,
                },
            )
            .collect()
    }

    /// Records the log start offset a follower's fetch carried.
    pub fn follower_log_start(&self, follower_id: i32, log_start_offset: i64) {
        if let Some(progress) = self.lock().followers.get_mut(&follower_id) {
            progress.log_start_offset = log_start_offset;
        }
    }

    /// The ISR as last applied from the image.
    pub fn isr(&self) -> Vec<i32> {
        self.lock().isr.clone()
    }

    pub fn isr_len(&self) -> usize {
        self.lock().isr.len()
    }

    /// Whether the replica set has other brokers than this one (with none, the ISR is the
    /// leader alone and never changes).
    pub fn has_followers(&self) -> bool {
        self.lock().replicas.len() > 1
    }

    /// The high watermark as leader whose log ends at `log_end_offset`: with the leader alone
    /// in the ISR it follows the log end at once (whoever appended: produce, a coordinator,
    /// a marker).
    pub fn high_watermark_as_leader(&self, log_end_offset: i64) -> i64 {
        let mut state = self.lock();
        Self::advance(&mut state, log_end_offset);
        state.high_watermark
    }

    /// Records a follower's fetch at `fetch_offset` (its log end offset) while the leader's
    /// log ends at `leader_end`. Returns the high watermark and whether it moved.
    pub fn follower_fetched(
        &self,
        follower_id: i32,
        fetch_offset: i64,
        leader_end: i64,
        now_ms: i64,
    ) -> (i64, bool) {
        let mut state = self.lock();
        if let Some(progress) = state.followers.get_mut(&follower_id) {
            if fetch_offset >= leader_end {
                progress.last_caught_up_ms = now_ms;
            } else if fetch_offset >= progress.last_fetch_leader_end {
                progress.last_caught_up_ms = progress.last_caught_up_ms.max(progress.last_fetch_ms);
            }
            progress.log_end_offset = fetch_offset;
            progress.last_fetch_ms = now_ms;
            progress.last_fetch_leader_end = leader_end;
        }
        let before = state.high_watermark;
        Self::advance(&mut state, leader_end);
        (state.high_watermark, state.high_watermark > before)
    }

    /// As follower: the leader said its high watermark is `leader_high_watermark`.
    /// Returns whether it moved (consumers reading from this follower may wait for it).
    pub fn follower_learned(&self, leader_high_watermark: i64, log_end_offset: i64) -> bool {
        let mut state = self.lock();
        if state.leading {
            return false;
        }
        let before = state.high_watermark;
        state.high_watermark = leader_high_watermark.min(log_end_offset);
        state.high_watermark != before
    }

    fn advance(state: &mut State, leader_end: i64) {
        if !state.leading {
            return;
        }
        let mut candidate = leader_end;
        for id in state.isr.iter().chain(&state.joining) {
            if *id == state.node_id {
                continue;
            }
            let follower_end = state
                .followers
                .get(id)
                .map_or(-1, |progress| progress.log_end_offset);
            candidate = candidate.min(follower_end);
        }
        if candidate > state.high_watermark {
            state.high_watermark = candidate;
        }
    }

    /// The ISR change this leader should ask for now, if any (and none is in flight):
    /// followers that have not caught up for `lag_max_ms` leave (Kafka's
    /// `replica.lag.time.max.ms`); followers outside the ISR whose log reached the high
    /// watermark join, if `eligible` (the broker is live in the leader's image: Kafka's
    /// `isReplicaIsrEligible`; a restarted broker fetches while still fenced, and the
    /// controller would refuse it). Marks the change in flight; [`Self::isr_change_failed`]
    /// clears it.
    pub fn isr_change_due(
        &self,
        leader_end: i64,
        lag_max_ms: i64,
        now_ms: i64,
        eligible: impl Fn(i32) -> bool,
    ) -> Option<IsrChange> {
        let mut state = self.lock();
        if !state.leading
            || state.isr_change_in_flight
            || state.replicas.len() < 2
            || now_ms < state.isr_change_retry_at_ms
        {
            return None;
        }
        let node_id = state.node_id;
        let mut new_isr: Vec<i32> = Vec::with_capacity(state.replicas.len());
        for &id in &state.replicas {
            let in_sync = state.isr.contains(&id);
            let keep = if id == node_id {
                true
            } else {
                let Some(progress) = state.followers.get(&id) else {
                    continue;
                };
                match in_sync {
                    true => now_ms - progress.last_caught_up_ms <= lag_max_ms,
                    false => {
                        eligible(id)
                            && progress.log_end_offset >= state.high_watermark
                            && progress.log_end_offset >= leader_end.min(state.high_watermark)
                            && now_ms - progress.last_caught_up_ms <= lag_max_ms
                    }
                }
            };
            if keep {
                new_isr.push(id);
            }
        }
        let mut current = state.isr.clone();
        current.sort_unstable();
        let mut proposed = new_isr.clone();
        proposed.sort_unstable();
        if current == proposed {
            return None;
        }
        state.isr_change_in_flight = true;
        state.joining = new_isr
            .iter()
            .copied()
            .filter(|id| !state.isr.contains(id))
            .collect();
        Some(IsrChange {
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            new_isr,
        })
    }

    /// As leader: (replica count, ISR size, each follower's log end offset once it fetched),
    /// for metrics. None when not leading.
    pub fn leader_view(&self) -> Option<(usize, usize, Vec<(i32, i64)>)> {
        let state = self.lock();
        if !state.leading {
            return None;
        }
        let follower_ends = state
            .followers
            .iter()
            .filter(|(_, progress)| progress.log_end_offset >= 0)
            .map(|(id, progress)| (*id, progress.log_end_offset))
            .collect();
        Some((state.replicas.len(), state.isr.len(), follower_ends))
    }

    /// The controller refused or did not answer: a later check may ask again, after a
    /// backoff that doubles with each refusal in a row (up to [`ISR_CHANGE_BACKOFF_MAX_MS`])
    /// and ends when the image brings a new partition epoch.
    pub fn isr_change_failed(&self, now_ms: i64) {
        let mut state = self.lock();
        state.isr_change_in_flight = false;
        state.joining.clear();
        let backoff_ms = ISR_CHANGE_BACKOFF_MIN_MS
            .saturating_mul(1 << state.isr_change_failures.min(16))
            .min(ISR_CHANGE_BACKOFF_MAX_MS);
        state.isr_change_failures = state.isr_change_failures.saturating_add(1);
        state.isr_change_retry_at_ms = now_ms.saturating_add(backoff_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Partition led by node 1 in leader epoch 1.
    fn partition(isr: &[i32], partition_epoch: i32) -> PartitionImage {
        PartitionImage {
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
            leader: 1,
            leader_epoch: 1,
            partition_epoch,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }
    }

    #[test]
    fn high_watermark_is_the_smallest_isr_log_end_and_never_moves_back() {
        let replication = Replication::new(1, 0);
        replication.apply(&partition(&[1, 2, 3], 1), 10, 0);
        assert_eq!(
            replication.high_watermark(),
            0,
            "followers have not fetched"
        );
        assert_eq!(replication.follower_fetched(2, 10, 10, 1), (0, false));
        assert_eq!(replication.follower_fetched(3, 7, 10, 1), (7, true));
        assert_eq!(replication.follower_fetched(3, 10, 10, 2), (10, true));
        // A stale fetch (an older offset) cannot pull it back.
        assert_eq!(replication.follower_fetched(3, 5, 10, 3), (10, false));
        // The ISR shrank to the leader alone: the log end at once.
        replication.apply(&partition(&[1], 2), 12, 4);
        assert_eq!(replication.high_watermark_as_leader(15), 15);
    }

    #[test]
    fn laggards_leave_and_caught_up_followers_join() {
        let replication = Replication::new(1, 0);
        replication.apply(&partition(&[1, 2, 3], 1), 10, 0);
        replication.follower_fetched(2, 10, 10, 100);
        assert_eq!(replication.isr_change_due(10, 1000, 500, |_| true), None);
        replication.follower_fetched(2, 10, 10, 1400);
        // Follower 3 never fetched: out after the lag time; 2 keeps up.
        let change = replication
            .isr_change_due(10, 1000, 1500, |_| true)
            .unwrap();
        assert_eq!(change.new_isr, vec![1, 2]);
        assert_eq!(
            replication.isr_change_due(10, 1000, 1600, |_| true),
            None,
            "one in flight"
        );
        replication.apply(&partition(&[1, 2], 2), 10, 1600);
        // HW follows the smaller ISR; 3 catches up and is taken back.
        assert_eq!(replication.high_watermark(), 10);
        replication.follower_fetched(3, 10, 10, 1700);
        let change = replication
            .isr_change_due(10, 1000, 1700, |_| true)
            .unwrap();
        assert_eq!(change.new_isr, vec![1, 2, 3]);
        replication.isr_change_failed(1700);
        assert!(
            replication
                .isr_change_due(10, 1000, 1750, |_| true)
                .is_none(),
            "refused: not asked again at once"
        );
        assert!(replication
            .isr_change_due(10, 1000, 1800, |_| true)
            .is_some());
        replication.isr_change_failed(1800);
        assert!(
            replication
                .isr_change_due(10, 1000, 1950, |_| true)
                .is_none(),
            "twice: 200 ms"
        );
        assert!(replication
            .isr_change_due(10, 1000, 2000, |_| true)
            .is_some());
    }

    #[test]
    fn a_follower_taken_out_of_the_isr_joins_only_after_fetching_again() {
        let replication = Replication::new(1, 0);
        replication.apply(&partition(&[1, 2, 3], 1), 10, 0);
        replication.follower_fetched(2, 10, 10, 100);
        replication.follower_fetched(3, 10, 10, 100);
        // Follower 3 dies; the leader appends up to 14, which 2 has not fetched yet.
        assert_eq!(replication.high_watermark_as_leader(14), 10);
        // The controller fences 3 and takes it out of the ISR: the high watermark stays at 10,
        // 2's position, which is also 3's last.
        replication.apply(&partition(&[1, 2], 2), 14, 300);
        assert_eq!(
            replication.isr_change_due(14, 30_000, 350, |_| true),
            None,
            "3's old position equals the high watermark, but it has not fetched since"
        );
        replication.follower_fetched(3, 14, 14, 400);
        let change = replication
            .isr_change_due(14, 30_000, 400, |_| true)
            .unwrap();
        assert_eq!(change.new_isr, vec![1, 2, 3]);
    }

    #[test]
    fn a_follower_fenced_in_the_leaders_image_does_not_join() {
        let replication = Replication::new(1, 0);
        replication.apply(&partition(&[1, 2], 1), 10, 0);
        replication.follower_fetched(2, 10, 10, 100);
        // Broker 3 restarted and caught up, but the controller has not unfenced it yet.
        replication.follower_fetched(3, 10, 10, 100);
        assert_eq!(
            replication.isr_change_due(10, 30_000, 200, |id| id != 3),
            None
        );
        let change = replication
            .isr_change_due(10, 30_000, 300, |_| true)
            .unwrap();
        assert_eq!(change.new_isr, vec![1, 2, 3]);
    }

    /// Found by the simulation (seed 1393): the controller commits an expansion, then a clean
    /// election picks the joining follower before the leader applied the new ISR.
    #[test]
    fn high_watermark_waits_for_a_joining_follower_while_the_expansion_is_in_flight() {
        let replication = Replication::new(1, 0);
        replication.apply(&partition(&[1, 2], 1), 10, 0);
        replication.follower_fetched(2, 10, 10, 1);
        replication.follower_fetched(3, 10, 10, 1);
        assert_eq!(replication.high_watermark(), 10);
        let change = replication.isr_change_due(10, 1000, 2, |_| true).unwrap();
        assert_eq!(change.new_isr, vec![1, 2, 3]);
        // The leader appends; follower 2 has it all, 3 (joining) not yet.
        replication.follower_fetched(2, 20, 20, 3);
        assert_eq!(replication.high_watermark(), 10, "3 may be elected with 10");
        replication.follower_fetched(3, 15, 20, 4);
        assert_eq!(replication.high_watermark(), 15);
        // Refused: 3 no longer holds the high watermark back.
        replication.isr_change_failed(5);
        assert_eq!(replication.high_watermark_as_leader(20), 20);
    }
    /// A reassignment adds replica 4 while node 1 leads (same leader epoch): the leader tracks
    /// it, and lets it into the ISR once it caught up; a replica removed stops counting.
    #[test]
    fn replicas_added_during_a_term_are_tracked_and_join() {
        let replication = Replication::new(1, 0);
        replication.apply(&partition(&[1, 2, 3], 1), 10, 0);
        replication.follower_fetched(2, 10, 10, 1);
        replication.follower_fetched(3, 10, 10, 1);
        let mut moving = partition(&[1, 2, 3], 2);
        moving.replicas = vec![1, 2, 4, 3];
        moving.adding_replicas = vec![4];
        moving.removing_replicas = vec![3];
        replication.apply(&moving, 10, 2);
        assert_eq!(
            replication.isr_change_due(10, 1000, 3, |_| true),
            None,
            "4 not fetched yet"
        );
        replication.follower_fetched(4, 10, 10, 4);
        let change = replication.isr_change_due(10, 1000, 5, |_| true).unwrap();
        assert_eq!(change.new_isr, vec![1, 2, 4, 3]);
        // The move completed: 3 is gone, its progress no longer tracked.
        let mut done = partition(&[1, 2, 4], 3);
        done.replicas = vec![1, 2, 4];
        replication.apply(&done, 10, 6);
        let (replicas, isr, followers) = replication.leader_view().unwrap();
        assert_eq!((replicas, isr), (3, 3));
        assert_eq!(
            followers.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![2, 4]
        );
    }
}
