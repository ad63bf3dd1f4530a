//! The replica layer: owns every partition hosted on this node (Kafka's `ReplicaManager` and
//! `Partition`). Its role here (leader or follower), its leader epoch and its high watermark
//! come from the metadata image, never from "a log directory exists on this node": a copy of
//! a partition that is not led here refuses produce (NOT_LEADER_OR_FOLLOWER) and no
//! coordinator shard is loaded from it. Requests that must wait for data (long-poll fetch now,
//! acks=all produce next) wait on this layer's wake-ups, and fetch sessions (KIP-227) live here.
//!
//! Handlers and coordinators reach partition logs only through this layer.

pub mod fetch_session;
pub mod fetcher;
pub mod replica_selector;
pub mod replication;
pub mod replication_quota;
#[cfg(test)]
mod sim;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex, RwLock};

use kafka_protocol::ResponseError;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use crate::clock::now_ms;
use crate::controller::image::{Change, MetadataImage, TopicImage};
use crate::log::log_config::LogConfig;
use crate::log::LogManager;

pub use crate::log::partition::{AppendError, AppendResult, FileSlice, LogOffsets, PartitionLog};
pub use crate::log::producer_state::ProducerError;
pub use fetch_session::FetchSessions;
pub use replication::{IsrChange, Replication};

/// What this node is for one hosted partition, from the metadata image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Takes produce, serves fetch, runs the coordinator shard of an internal partition.
    Leader,
    /// Hosts a copy, filled by fetching from the leader ([`fetcher`]).
    Follower,
}

/// One hosted partition: the role, leader and leader epoch this node last applied, its log
/// and its replication state (kept across role changes: the high watermark survives them).
#[derive(Clone)]
struct Replica {
    role: Role,
    leader: i32,
    leader_epoch: i32,
    log: Arc<PartitionLog>,
    replication: Arc<Replication>,
}

impl Replica {
    /// This replica as a partition led here; None when this node follows it.
    fn led(&self) -> Option<LedPartition> {
        (self.role == Role::Leader).then(|| LedPartition {
            log: self.log.clone(),
            leader_epoch: self.leader_epoch,
            replication: self.replication.clone(),
        })
    }
}

/// A partition led here, as produce and fetch need it.
#[derive(Clone)]
pub struct LedPartition {
    pub log: Arc<PartitionLog>,
    /// Stamped on the batches appended (and checked against fetchers' epochs).
    pub leader_epoch: i32,
    pub replication: Arc<Replication>,
}

impl LedPartition {
    /// Whether fewer replicas are in sync than the topic's `min.insync.replicas`: an acks=all
    /// write is refused (NOT_ENOUGH_REPLICAS), a client's as a coordinator's or a marker's.
    pub fn under_min_isr(&self) -> bool {
        self.replication.isr_len() < self.log.config().min_insync_replicas
    }

    /// KIP-320: a fetcher behind this leader's epoch is fenced; one ahead of it knows of a
    /// leadership this node has not applied yet. -1 is not checked.
    pub fn check_leader_epoch(self, current_leader_epoch: i32) -> Result<Self, ResponseError> {
        match current_leader_epoch {
            epoch if epoch < 0 || epoch == self.leader_epoch => Ok(self),
            epoch if epoch < self.leader_epoch => Err(ResponseError::FencedLeaderEpoch),
            _ => Err(ResponseError::UnknownLeaderEpoch),
        }
    }

    /// Where a follower's log diverges from this leader's (KIP-595's DivergingEpoch): its last
    /// batch is of `last_fetched_epoch` and its log ends at `fetch_offset`; if that epoch
    /// ends earlier here, or this log never had it, the (epoch, end offset) the follower must
    /// truncate by. None when the follower's log is a prefix of this one.
    pub fn diverging_epoch(
        &self,
        last_fetched_epoch: i32,
        fetch_offset: i64,
    ) -> Option<(i32, i64)> {
        if last_fetched_epoch < 0 {
            return None;
        }
        let (epoch, end_offset) = self.log.end_offset_for_leader_epoch(last_fetched_epoch);
        (epoch != last_fetched_epoch || end_offset < fetch_offset).then_some((epoch, end_offset))
    }

    /// The high watermark now: what consumers may read (see [`Replication`]). The leader's
    /// own part is what it may acknowledge: with `flush.messages=1`, what is on its disk.
    pub fn high_watermark(&self) -> i64 {
        self.replication
            .high_watermark_as_leader(self.log.acknowledgeable_end_offset())
    }
}

/// A partition this node follows, as its fetcher needs it.
#[derive(Clone)]
pub struct FollowedPartition {
    pub topic: String,
    pub partition: i32,
    pub leader_epoch: i32,
    pub log: Arc<PartitionLog>,
    pub replication: Arc<Replication>,
}

/// A hosted partition a consumer may read here (KIP-392): led here, or followed and read up
/// to the high watermark its leader last sent.
#[derive(Clone)]
pub enum ReadablePartition {
    Leader(LedPartition),
    Follower(FollowedPartition),
}

impl ReadablePartition {
    pub fn log(&self) -> &Arc<PartitionLog> {
        match self {
            ReadablePartition::Leader(led) => &led.log,
            ReadablePartition::Follower(followed) => &followed.log,
        }
    }

    /// The leader epoch this node applied for the partition.
    pub fn leader_epoch(&self) -> i32 {
        match self {
            ReadablePartition::Leader(led) => led.leader_epoch,
            ReadablePartition::Follower(followed) => followed.leader_epoch,
        }
    }

    /// What consumers may read below: a leader's high watermark now, a follower's as its
    /// leader last said (never above its own log end).
    pub fn high_watermark(&self) -> i64 {
        match self {
            ReadablePartition::Leader(led) => led.high_watermark(),
            ReadablePartition::Follower(followed) => followed.replication.high_watermark(),
        }
    }

    /// KIP-320 on either role (Kafka's `localLogWithEpochOrThrow`): a fetcher behind the
    /// epoch this node applied is fenced; one ahead knows of a change not applied here yet.
    pub fn check_leader_epoch(self, current_leader_epoch: i32) -> Result<Self, ResponseError> {
        match current_leader_epoch {
            epoch if epoch < 0 || epoch == self.leader_epoch() => Ok(self),
            epoch if epoch < self.leader_epoch() => Err(ResponseError::FencedLeaderEpoch),
            _ => Err(ResponseError::UnknownLeaderEpoch),
        }
    }
}

/// A partition whose leadership here began or ended when an image was applied: what the
/// coordinator runtime loads or unloads shards on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeadershipChange {
    pub topic: String,
    pub partition: i32,
    /// True: this node leads it now; false: it stopped leading it (or the partition is gone).
    pub led: bool,
}

pub struct ReplicaManager {
    node_id: i32,
    logs: LogManager,
    /// Hosted partitions by topic, then partition (looked up by `&str` on the data path,
    /// without allocating). Written only when an image is applied.
    replicas: RwLock<HashMap<String, BTreeMap<i32, Replica>>>,
    /// Woken after every append and every round of the log flusher, so that waiting fetches
    /// and produce responses re-check without polling.
    appended: Arc<Notify>,
    /// Woken after every round of the log flusher only: what a produce waiting for its
    /// records to be flushed waits on, so that it is not woken by every other append.
    flushed: Arc<Notify>,
    pub fetch_sessions: FetchSessions,
    /// The high watermarks `replication-offset-checkpoint` held at start, taken by each
    /// partition's replica when the first image creates it.
    checkpointed_high_watermarks: Mutex<HashMap<(String, i32), i64>>,
    /// The replication throttles (KIP-73) of both sides: read by the fetch handler (leader)
    /// and the fetchers (follower), updated from the image by the node.
    pub replication_quotas: replication_quota::ReplicationQuotas,
    /// Where consumers are sent to read (`replica.selector.class`, KIP-392).
    pub replica_selector: replica_selector::ReplicaSelector,
}

/// Kafka's file of the hosted partitions' high watermarks, in the log directory.
const HIGH_WATERMARK_FILE: &str = "replication-offset-checkpoint";

impl ReplicaManager {
    /// Reads `replication-offset-checkpoint`: a restarted replica exposes what was known to be
    /// replicated before, instead of nothing until its followers fetch again.
    pub fn new(node_id: i32, logs: LogManager) -> io::Result<ReplicaManager> {
        let checkpointed =
            crate::log::checkpoint::read(&logs.data_dir().join(HIGH_WATERMARK_FILE))?;
        let appended = Arc::new(Notify::new());
        let flushed = Arc::new(Notify::new());
        // A flush moves what may be acknowledged, as an append moves the log end.
        let (on_appended, on_flushed) = (appended.clone(), flushed.clone());
        logs.flusher().on_flushed(Box::new(move || {
            on_flushed.notify_waiters();
            on_appended.notify_waiters();
        }));
        Ok(ReplicaManager {
            node_id,
            logs,
            replicas: RwLock::new(HashMap::new()),
            appended,
            flushed,
            fetch_sessions: FetchSessions::default(),
            checkpointed_high_watermarks: Mutex::new(checkpointed.into_iter().collect()),
            replication_quotas: replication_quota::ReplicationQuotas::new(
                replication_quota::ReplicationQuotas::settings(&Default::default()),
            ),
            replica_selector: replica_selector::ReplicaSelector::default(),
        })
    }

    /// This manager with its replication quotas measured as `properties` say
    /// (`replication.quota.window.*`).
    pub fn with_replication_quota_settings(
        mut self,
        properties: &crate::config::Properties,
    ) -> ReplicaManager {
        self.replication_quotas = replication_quota::ReplicationQuotas::new(
            replication_quota::ReplicationQuotas::settings(properties),
        );
        self
    }

    /// This manager with the replica selector `replica.selector.class` names; an error
    /// for a class Kafka does not ship.
    pub fn with_replica_selector(
        mut self,
        properties: &crate::config::Properties,
    ) -> Result<ReplicaManager, String> {
        self.replica_selector = replica_selector::ReplicaSelector::from_class(
            properties.get(crate::config::REPLICA_SELECTOR_CLASS),
        )?;
        Ok(self)
    }

    /// Writes every hosted partition's high watermark to `replication-offset-checkpoint`
    /// (Kafka: every `replica.high.watermark.checkpoint.interval.ms` and at shutdown). A
    /// checkpointed value is one the high watermark has reached, so never above it.
    pub fn checkpoint_high_watermarks(&self) -> io::Result<()> {
        let entries: Vec<((String, i32), i64)> = {
            let replicas = self.replicas.read().expect("replicas lock");
            replicas
                .iter()
                .flat_map(|(topic, partitions)| {
                    partitions.iter().map(move |(&index, replica)| {
                        ((topic.clone(), index), replica.replication.high_watermark())
                    })
                })
                .collect()
        };
        let path = self.logs.data_dir().join(HIGH_WATERMARK_FILE);
        self.logs
            .space()
            .with_reserve("high watermark checkpoint", || {
                crate::log::checkpoint::write(&path, &entries)
            })
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// The storage under every hosted partition (maintenance, metrics, log dirs).
    pub fn logs(&self) -> &LogManager {
        &self.logs
    }

    /// Applies metadata changes to hosted partitions: opens the logs of partitions assigned to
    /// this node (with their topic's effective config), takes each one's role and leader epoch
    /// from the image, and deletes the logs of removed topics. Returns the partitions whose
    /// leadership here began or ended, in image order.
    pub fn apply(
        &self,
        image: &MetadataImage,
        changes: &[Change],
        log_config: impl Fn(&TopicImage) -> Arc<LogConfig>,
    ) -> io::Result<Vec<LeadershipChange>> {
        let mut leadership = Vec::new();
        let mut done = std::collections::HashSet::new();
        for change in changes {
            match change {
                Change::BrokerConfigChanged => {
                    for topic in image.topics.values() {
                        if done.insert(topic.name.clone()) {
                            self.apply_topic(topic, log_config(topic), &mut leadership)?;
                        }
                    }
                }
                Change::TopicChanged(name) if done.insert(name.clone()) => {
                    if let Some(topic) = image.topics.get(name) {
                        self.apply_topic(topic, log_config(topic), &mut leadership)?;
                    }
                }
                Change::TopicRemoved(name) => {
                    done.remove(name);
                    self.remove_topic(name, &mut leadership);
                    self.logs.delete_topic(name)?;
                }
                Change::TopicChanged(_) | Change::BrokersChanged => {}
            }
        }
        Ok(leadership)
    }

    fn apply_topic(
        &self,
        topic: &TopicImage,
        config: Arc<LogConfig>,
        leadership: &mut Vec<LeadershipChange>,
    ) -> io::Result<()> {
        let hosted: Vec<i32> = topic
            .partitions
            .iter()
            .filter(|(_, partition)| partition.replicas.contains(&self.node_id))
            .map(|(index, _)| *index)
            .collect();
        self.logs
            .ensure_topic(&topic.name, &topic.id.to_string(), &hosted, config)?;
        let mut all = self.replicas.write().expect("replicas lock");
        // The first image of a topic in this process also looks for the directories of
        // partitions moved away while this node was down; later ones only at replicas
        // dropped (a stat per partition on every ISR change would be waste).
        let first_seen = !all.contains_key(&topic.name);
        let replicas = all.entry(topic.name.clone()).or_default();
        let mut dropped: Vec<i32> = Vec::new();
        for (&index, partition) in &topic.partitions {
            if !partition.replicas.contains(&self.node_id) {
                // Not (or no longer, after a reassignment) a replica here: stop hosting it;
                // its files go below, once the lock is released.
                let previous = replicas.remove(&index);
                if previous.as_ref().map(|r| r.role) == Some(Role::Leader) {
                    leadership.push(change(&topic.name, index, false));
                }
                if first_seen || previous.is_some() {
                    dropped.push(index);
                }
                continue;
            }
            let Some(log) = self.logs.get(&topic.name, index) else {
                continue;
            };
            let role = match partition.leader == self.node_id {
                true => Role::Leader,
                false => Role::Follower,
            };
            let previous = replicas.get(&index);
            let was_leader = previous.map(|r| r.role) == Some(Role::Leader);
            if was_leader != (role == Role::Leader) {
                leadership.push(change(&topic.name, index, role == Role::Leader));
            }
            // A new replica starts with the high watermark of the checkpoint, kept within its
            // log (Kafka's `min(checkpoint, log end)`), or at its log start without one: it
            // exposes nothing it has not seen replicated.
            let replication = match previous {
                Some(previous) => previous.replication.clone(),
                None => {
                    let offsets = log.offsets();
                    let checkpointed = self
                        .checkpointed_high_watermarks
                        .lock()
                        .expect("checkpointed high watermarks lock")
                        .remove(&(topic.name.clone(), index));
                    let high_watermark = checkpointed
                        .unwrap_or(offsets.log_start_offset)
                        .clamp(offsets.log_start_offset, offsets.log_end_offset);
                    Arc::new(Replication::new(self.node_id, high_watermark))
                }
            };
            replication.apply(partition, log.acknowledgeable_end_offset(), now_ms());
            if role == Role::Leader {
                log.set_leader_epoch(partition.leader_epoch);
            }
            replicas.insert(
                index,
                Replica {
                    role,
                    leader: partition.leader,
                    leader_epoch: partition.leader_epoch,
                    log,
                    replication,
                },
            );
        }
        drop(all);
        // A reassignment moved these partitions away (perhaps while this node was down):
        // their data goes, as Kafka's stray logs do.
        for index in dropped {
            self.logs.delete_partition(&topic.name, index)?;
        }
        Ok(())
    }

    fn remove_topic(&self, name: &str, leadership: &mut Vec<LeadershipChange>) {
        let removed = self.replicas.write().expect("replicas lock").remove(name);
        for (index, replica) in removed.into_iter().flatten() {
            if replica.role == Role::Leader {
                leadership.push(change(name, index, false));
            }
        }
    }

    fn replica(&self, topic: &str, partition: i32) -> Option<Replica> {
        let replicas = self.replicas.read().expect("replicas lock");
        replicas.get(topic)?.get(&partition).cloned()
    }

    /// The log of a partition this node leads: what produce, fetch from consumers, ListOffsets
    /// and the coordinators use. Otherwise NOT_LEADER_OR_FOLLOWER when the partition exists
    /// (the client refreshes metadata and goes to the leader), else UNKNOWN_TOPIC_OR_PARTITION.
    pub fn leader_log(
        &self,
        image: &MetadataImage,
        topic: &str,
        partition: i32,
    ) -> Result<Arc<PartitionLog>, ResponseError> {
        self.leader_partition(image, topic, partition)
            .map(|led| led.log)
    }

    /// A partition this node leads, with its leader epoch and replication state.
    pub fn leader_partition(
        &self,
        image: &MetadataImage,
        topic: &str,
        partition: i32,
    ) -> Result<LedPartition, ResponseError> {
        self.replica(topic, partition)
            .and_then(|replica| replica.led())
            .ok_or_else(|| missing_partition_error(image, topic, partition))
    }

    /// A hosted partition as a consumer that may read from followers (Fetch v11+) sees it:
    /// led or followed here; otherwise the errors of [`Self::leader_partition`].
    pub fn readable_partition(
        &self,
        image: &MetadataImage,
        topic: &str,
        partition: i32,
    ) -> Result<ReadablePartition, ResponseError> {
        let replica = self
            .replica(topic, partition)
            .ok_or_else(|| missing_partition_error(image, topic, partition))?;
        Ok(match replica.led() {
            Some(led) => ReadablePartition::Leader(led),
            None => ReadablePartition::Follower(FollowedPartition {
                topic: topic.to_string(),
                partition,
                leader_epoch: replica.leader_epoch,
                log: replica.log,
                replication: replica.replication,
            }),
        })
    }

    /// The partitions this node follows whose leader is `leader_id`, in topic order.
    pub fn followed_from(&self, leader_id: i32) -> Vec<FollowedPartition> {
        let replicas = self.replicas.read().expect("replicas lock");
        let mut followed = Vec::new();
        for (topic, partitions) in replicas.iter() {
            for (&partition, replica) in partitions {
                if replica.role == Role::Follower && replica.leader == leader_id {
                    followed.push(FollowedPartition {
                        topic: topic.clone(),
                        partition,
                        leader_epoch: replica.leader_epoch,
                        log: replica.log.clone(),
                        replication: replica.replication.clone(),
                    });
                }
            }
        }
        followed
    }

    /// The leaders (other live nodes) of the partitions this node follows.
    pub fn followed_leaders(&self) -> std::collections::BTreeSet<i32> {
        let replicas = self.replicas.read().expect("replicas lock");
        replicas
            .values()
            .flat_map(BTreeMap::values)
            .filter(|replica| replica.role == Role::Follower && replica.leader >= 0)
            .map(|replica| replica.leader)
            .collect()
    }

    /// Every partition led here: (topic, partition, state), for the replication metrics.
    pub fn led_replicated(&self) -> Vec<(String, i32, LedPartition)> {
        self.led_where(|_| true)
    }

    /// The partitions led here that have followers: those whose ISR can change (checked every
    /// replication tick, so 10,000 partitions of one replica cost nothing there).
    pub fn led_with_followers(&self) -> Vec<(String, i32, LedPartition)> {
        self.led_where(|replica| replica.replication.has_followers())
    }

    fn led_where(&self, keep: impl Fn(&Replica) -> bool) -> Vec<(String, i32, LedPartition)> {
        let replicas = self.replicas.read().expect("replicas lock");
        let mut led = Vec::new();
        for (topic, partitions) in replicas.iter() {
            for (&partition, replica) in partitions {
                if !keep(replica) {
                    continue;
                }
                if let Some(state) = replica.led() {
                    led.push((topic.clone(), partition, state));
                }
            }
        }
        led
    }

    /// The high watermark of a hosted partition: a leader's now, or what a follower last
    /// learned from its leader; -1 when not hosted.
    pub fn high_watermark_of(&self, topic: &str, partition: i32) -> i64 {
        match self.replica(topic, partition) {
            Some(replica) => match replica.led() {
                Some(led) => led.high_watermark(),
                None => replica.replication.high_watermark(),
            },
            None => -1,
        }
    }

    /// Whether this node leads the partition.
    pub fn is_leader(&self, topic: &str, partition: i32) -> bool {
        self.replica(topic, partition)
            .is_some_and(|replica| replica.role == Role::Leader)
    }

    /// The role and leader epoch this node applied for a hosted partition.
    pub fn role(&self, topic: &str, partition: i32) -> Option<(Role, i32)> {
        self.replica(topic, partition)
            .map(|replica| (replica.role, replica.leader_epoch))
    }

    /// The logs of every hosted partition this node leads.
    pub fn led_logs(&self) -> Vec<Arc<PartitionLog>> {
        let replicas = self.replicas.read().expect("replicas lock");
        replicas
            .values()
            .flat_map(BTreeMap::values)
            .filter(|replica| replica.role == Role::Leader)
            .map(|replica| replica.log.clone())
            .collect()
    }

    /// Waits (at most `timeout`) until the high watermark of `led` reaches `offset`: every
    /// in-sync replica has what is below it. False on timeout or when leadership moved.
    pub async fn wait_replicated(
        &self,
        topic: &str,
        partition: i32,
        led: &LedPartition,
        offset: i64,
        timeout: std::time::Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.appended();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if led.high_watermark() >= offset {
                return true;
            }
            if self.role(topic, partition) != Some((Role::Leader, led.leader_epoch)) {
                return false;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return led.high_watermark() >= offset;
            }
        }
    }

    /// Wakes every waiting fetch after records were appended.
    pub fn notify_appended(&self) {
        self.appended.notify_waiters();
    }

    /// A wake-up for the next append (register it before reading, so an append between the
    /// read and the wait is not missed).
    pub fn appended(&self) -> Notified<'_> {
        self.appended.notified()
    }

    /// A wake-up for the log flusher's next round (register it before reading).
    pub fn flushed(&self) -> Notified<'_> {
        self.flushed.notified()
    }
}

fn change(topic: &str, partition: i32, led: bool) -> LeadershipChange {
    LeadershipChange {
        topic: topic.to_string(),
        partition,
        led,
    }
}

/// Why a partition is not served here: it exists elsewhere (NOT_LEADER_OR_FOLLOWER, so the
/// client refreshes metadata and goes there) or it does not exist at all.
pub fn missing_partition_error(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
) -> ResponseError {
    let exists = image
        .topics
        .get(topic)
        .is_some_and(|t| t.partitions.contains_key(&partition));
    match exists {
        true => ResponseError::NotLeaderOrFollower,
        false => ResponseError::UnknownTopicOrPartition,
    }
}
