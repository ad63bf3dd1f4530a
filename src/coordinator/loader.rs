//! The shard loader (Kafka's `CoordinatorLoader`, run on its own thread): coordinator shards
//! are loaded and unloaded here, in the order the metadata changes asked for them, never on
//! the metadata path.
//!
//! Loading a shard takes the coordinator's lock, and a coordinator may hold it across a write
//! that waits for the in-sync replicas (up to 5 s when a follower just died). On the quorum
//! driver's thread that wait held back the node's own metadata: after the active controller
//! fenced a killed broker, the new controller's broker answered Metadata for seconds with ISRs
//! that still listed the dead broker (`compat/cluster/rolling.sh`, rolling-kill-broker-2). Until
//! a shard is loaded, requests for it are answered COORDINATOR_LOAD_IN_PROGRESS, as in Kafka;
//! [`ShardLoader::wait_idle`] lets the node's start and an internal topic's creation wait for
//! the loads they caused, as they did when loading was synchronous.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::controller::image::MetadataImage;

use super::transaction::TRANSACTION_STATE_TOPIC;
use super::OFFSETS_TOPIC;

/// Shard changes waiting at once; beyond it the metadata path waits for the loader (internal
/// topics have at most a few hundred partitions, so only a loader stuck for long gets here).
pub const PENDING_SHARD_CHANGES_MAX: usize = 100_000;

/// A coordinator shard to load (this node became the leader of its internal partition) or to
/// unload, with what the image said when the change was applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardChange {
    pub topic: String,
    pub partition: i32,
    pub led: bool,
    /// The internal topic's partition count (None once the topic is gone).
    pub partition_count: Option<i32>,
    /// The partition's leader epoch: a transaction shard's coordinator epoch.
    pub leader_epoch: i32,
}

impl ShardChange {
    /// The shard change of `topic`-`partition` whose leadership here began (`led`) or ended,
    /// as `image` says; None for a partition of a topic without coordinator shards.
    pub fn new(
        image: &MetadataImage,
        topic: &str,
        partition: i32,
        led: bool,
    ) -> Option<ShardChange> {
        if topic != OFFSETS_TOPIC && topic != TRANSACTION_STATE_TOPIC {
            return None;
        }
        let topic_image = image.topics.get(topic);
        Some(ShardChange {
            topic: topic.to_string(),
            partition,
            led,
            partition_count: topic_image.map(|t| t.partition_count()),
            leader_epoch: topic_image
                .and_then(|t| t.partitions.get(&partition))
                .map_or(0, |p| p.leader_epoch),
        })
    }
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<ShardChange>,
    /// Changes ever enqueued and ever applied: `wait_idle` waits for the first count it sees.
    enqueued: u64,
    applied: u64,
    stopped: bool,
}

#[derive(Default)]
pub struct ShardLoader {
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl ShardLoader {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().expect("shard loader lock")
    }

    /// Queues changes for the loader thread, in order.
    pub fn enqueue(&self, changes: impl IntoIterator<Item = ShardChange>) {
        let mut queue = self.lock();
        for change in changes {
            while queue.pending.len() >= PENDING_SHARD_CHANGES_MAX && !queue.stopped {
                queue = self.changed.wait(queue).expect("shard loader lock");
            }
            queue.pending.push_back(change);
            queue.enqueued += 1;
        }
        self.changed.notify_all();
    }

    /// The loader thread's next changes (every one queued), waiting for some; None once
    /// stopped.
    pub fn next(&self) -> Option<Vec<ShardChange>> {
        let mut queue = self.lock();
        loop {
            if queue.stopped {
                return None;
            }
            if !queue.pending.is_empty() {
                let changes: Vec<ShardChange> = queue.pending.drain(..).collect();
                self.changed.notify_all();
                return Some(changes);
            }
            queue = self.changed.wait(queue).expect("shard loader lock");
        }
    }

    /// The loader thread applied `count` changes it took with [`Self::next`].
    pub fn applied(&self, count: usize) {
        let mut queue = self.lock();
        queue.applied += count as u64;
        assert!(
            queue.applied <= queue.enqueued,
            "applied only what was queued"
        );
        self.changed.notify_all();
    }

    /// Waits until every change queued so far is applied, up to `timeout`; whether they were.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut queue = self.lock();
        let target = queue.enqueued;
        while queue.applied < target && !queue.stopped {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            queue = self
                .changed
                .wait_timeout(queue, left)
                .expect("shard loader lock")
                .0;
        }
        queue.applied >= target
    }

    /// Ends the loader thread (the node is shutting down); queued changes are dropped.
    pub fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(partition: i32, led: bool) -> ShardChange {
        ShardChange {
            topic: OFFSETS_TOPIC.to_string(),
            partition,
            led,
            partition_count: Some(50),
            leader_epoch: 0,
        }
    }

    #[test]
    fn changes_are_taken_in_order_and_idle_waits_for_them() {
        let loader = std::sync::Arc::new(ShardLoader::default());
        assert!(
            loader.wait_idle(Duration::from_millis(1)),
            "idle when empty"
        );
        loader.enqueue([change(1, true), change(1, false), change(2, true)]);
        assert!(!loader.wait_idle(Duration::from_millis(10)));
        let worker = {
            let loader = loader.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while let Some(changes) = loader.next() {
                    seen.extend(changes.iter().map(|c| (c.partition, c.led)));
                    loader.applied(changes.len());
                }
                seen
            })
        };
        assert!(loader.wait_idle(Duration::from_secs(10)));
        loader.stop();
        assert_eq!(
            worker.join().unwrap(),
            vec![(1, true), (1, false), (2, true)]
        );
    }
}
