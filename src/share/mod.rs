//! Share groups' data side (KIP-932): the share-partitions of the partitions this node leads
//! and the share sessions of the members fetching from it (Kafka's `SharePartitionManager`).
//! Membership and assignments are the group coordinator's (`coordinator::share_group`); this
//! owner knows only which member holds which record.
//!
//! State is in memory: a share-partition starts from `share.auto.offset.reset` when first
//! fetched and is lost on restart (Kafka persists it through the share coordinator in
//! `__share_group_state`; not implemented yet).

pub mod partition;
pub mod session;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::{self, Properties};
use partition::{AcknowledgeError, AcknowledgeType, AcquiredRange, ShareLimits, SharePartition};
use session::ShareSessions;

/// Share-partitions held at most (each holds up to `max_record_locks` in-flight records); a
/// fetch that would create one more is refused.
pub const SHARE_PARTITIONS_MAX: usize = 4096;

/// (group id, topic id, partition).
pub type SharePartitionKey = (String, Uuid, i32);

/// Where a new share-partition starts (the group config `share.auto.offset.reset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoOffsetReset {
    Earliest,
    Latest,
}

#[derive(Clone, Debug)]
pub struct ShareSettings {
    pub limits: ShareLimits,
    /// `group.share.record.lock.duration.ms`, as the response's AcquisitionLockTimeoutMs.
    pub record_lock_duration_ms: i32,
}

impl ShareSettings {
    pub fn from_properties(properties: &Properties) -> ShareSettings {
        let lock_ms = properties.get_i64(config::GROUP_SHARE_RECORD_LOCK_DURATION_MS);
        ShareSettings {
            limits: ShareLimits {
                record_lock_duration_ms: lock_ms,
                delivery_count_limit: properties
                    .get_i64(config::GROUP_SHARE_DELIVERY_COUNT_LIMIT)
                    .clamp(1, i16::MAX as i64) as u16,
                max_record_locks: properties
                    .get_i64(config::GROUP_SHARE_PARTITION_MAX_RECORD_LOCKS)
                    .clamp(1, 1_000_000) as usize,
            },
            record_lock_duration_ms: lock_ms.clamp(0, i32::MAX as i64) as i32,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareError {
    /// SHARE_PARTITIONS_MAX reached.
    TooManySharePartitions,
}

pub struct ShareManager {
    settings: ShareSettings,
    partitions: Mutex<HashMap<SharePartitionKey, SharePartition>>,
    sessions: Mutex<ShareSessions>,
    /// Woken when records become available again (released, a member gone), so waiting
    /// share fetches re-check.
    released: Notify,
}

impl ShareManager {
    pub fn new(settings: ShareSettings) -> ShareManager {
        ShareManager {
            settings,
            partitions: Mutex::new(HashMap::new()),
            sessions: Mutex::new(ShareSessions::default()),
            released: Notify::new(),
        }
    }

    pub fn settings(&self) -> &ShareSettings {
        &self.settings
    }

    pub fn sessions(&self) -> MutexGuard<'_, ShareSessions> {
        self.sessions.lock().expect("share sessions lock")
    }

    fn partitions(&self) -> MutexGuard<'_, HashMap<SharePartitionKey, SharePartition>> {
        self.partitions.lock().expect("share partitions lock")
    }

    pub fn released(&self) -> tokio::sync::futures::Notified<'_> {
        self.released.notified()
    }

    /// Where to read for `key` now (None: nothing can be acquired). Creates the
    /// share-partition on first use at `log_start_offset` or `high_watermark` as `reset`
    /// says; expires due locks; moves past records the log no longer has.
    pub fn fetch_offset(
        &self,
        key: &SharePartitionKey,
        reset: AutoOffsetReset,
        log_start_offset: i64,
        high_watermark: i64,
        now_ms: i64,
    ) -> Result<Option<i64>, ShareError> {
        let mut partitions = self.partitions();
        if !partitions.contains_key(key) {
            if partitions.len() >= SHARE_PARTITIONS_MAX {
                return Err(ShareError::TooManySharePartitions);
            }
            let start = match reset {
                AutoOffsetReset::Earliest => log_start_offset,
                AutoOffsetReset::Latest => high_watermark,
            };
            partitions.insert(
                key.clone(),
                SharePartition::new(start, self.settings.limits),
            );
        }
        let partition = partitions.get_mut(key).expect("inserted above");
        if partition.expire_locks(now_ms) > 0 {
            self.released.notify_waiters();
        }
        partition.advance_to_log_start(log_start_offset);
        Ok(partition.next_fetch_offset())
    }

    /// Acquires for `member` what it may have of the batches read (see
    /// [`SharePartition::acquire`]).
    pub fn acquire(
        &self,
        key: &SharePartitionKey,
        member: &str,
        batches: &[(i64, i64)],
        max_records: usize,
        now_ms: i64,
    ) -> Vec<AcquiredRange> {
        match self.partitions().get_mut(key) {
            Some(partition) => partition.acquire(member, batches, max_records, now_ms),
            None => Vec::new(),
        }
    }

    /// Applies a member's acknowledgement batches for one share-partition, each batch
    /// all-or-nothing; the first error is reported (Kafka reports one code per partition).
    pub fn acknowledge(
        &self,
        key: &SharePartitionKey,
        member: &str,
        batches: &[(i64, i64, Vec<AcknowledgeType>)],
        now_ms: i64,
    ) -> Result<(), AcknowledgeError> {
        let mut partitions = self.partitions();
        let Some(partition) = partitions.get_mut(key) else {
            return Err(AcknowledgeError::InvalidRecordState);
        };
        partition.expire_locks(now_ms);
        let mut outcome = Ok(());
        let mut released = false;
        for (first, last, types) in batches {
            match partition.acknowledge(member, *first, *last, types, now_ms) {
                Ok(()) => released |= types.contains(&AcknowledgeType::Release),
                Err(error) => outcome = outcome.and(Err(error)),
            }
        }
        drop(partitions);
        if released {
            self.released.notify_waiters();
        }
        outcome
    }

    /// Releases what `member` holds in `partitions` (its share session closed).
    pub fn release_member(&self, group_id: &str, member: &str, partitions: &[(Uuid, i32)]) {
        let mut held = self.partitions();
        let mut released = 0;
        for (topic_id, partition) in partitions {
            if let Some(state) = held.get_mut(&(group_id.to_string(), *topic_id, *partition)) {
                released += state.release_member(member);
            }
        }
        drop(held);
        if released > 0 {
            self.released.notify_waiters();
        }
    }

    /// Releases everything `member` holds in the group and closes its session (it left the
    /// group or its session timed out).
    pub fn member_left(&self, group_id: &str, member: &str) {
        self.sessions().remove_member(group_id, member);
        let mut held = self.partitions();
        let mut released = 0;
        for ((group, _, _), state) in held.iter_mut() {
            if group == group_id {
                released += state.release_member(member);
            }
        }
        drop(held);
        if released > 0 {
            self.released.notify_waiters();
        }
    }

    /// The start offset of each share-partition of a group (for describing its offsets).
    pub fn start_offsets(&self, group_id: &str) -> Vec<(Uuid, i32, i64)> {
        let mut offsets: Vec<(Uuid, i32, i64)> = self
            .partitions()
            .iter()
            .filter(|((group, _, _), _)| group == group_id)
            .map(|((_, topic_id, partition), state)| (*topic_id, *partition, state.start_offset()))
            .collect();
        offsets.sort();
        offsets
    }

    /// Starts one share-partition afresh at `start_offset` (AlterShareGroupOffsets, only
    /// while the group has no members): whatever was in flight is dropped, as Kafka writes
    /// the new SPSO with no state batches.
    pub fn reset_start_offset(
        &self,
        key: &SharePartitionKey,
        start_offset: i64,
    ) -> Result<(), ShareError> {
        let mut partitions = self.partitions();
        if !partitions.contains_key(key) && partitions.len() >= SHARE_PARTITIONS_MAX {
            return Err(ShareError::TooManySharePartitions);
        }
        partitions.insert(
            key.clone(),
            SharePartition::new(start_offset, self.settings.limits),
        );
        Ok(())
    }

    /// Forgets a group's share-partitions of one topic (DeleteShareGroupOffsets): the next
    /// fetch starts them again from `share.auto.offset.reset`.
    pub fn delete_topic(&self, group_id: &str, topic_id: Uuid) {
        self.partitions()
            .retain(|(group, topic, _), _| !(group == group_id && *topic == topic_id));
    }

    /// Forgets a group's share-partitions (the group was deleted).
    pub fn delete_group(&self, group_id: &str) {
        self.partitions()
            .retain(|(group, _, _), _| group != group_id);
    }
}
