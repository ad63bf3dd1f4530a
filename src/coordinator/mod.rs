//! Coordinators. This file: the group coordinator: consumer groups (the classic rebalance
//! protocol and KIP-848), their committed offsets, and the `__consumer_offsets` topic that
//! makes both durable.
//!
//! This node coordinates the groups of the `__consumer_offsets` partitions it leads: one shard
//! per partition, loaded (replayed) when leadership arrives and unloaded when it leaves
//! ([`runtime`]). The groups of every loaded shard live in one map behind one mutex: group
//! operations are short and never wait while holding it; the ones that must wait (JoinGroup,
//! SyncGroup) hold a oneshot receiver instead. Writes to `__consumer_offsets` happen under the
//! mutex, so the log's order is the order in which changes were applied, and a replay rebuilds
//! exactly the state clients saw acknowledged. One timer task ([`run_timers`]) sleeps until
//! the earliest deadline (session, join phase, sync phase, pending member id, offset
//! retention) and fires what is due.

pub mod assignor;
pub mod consumer_group;
pub mod consumer_records;
pub mod group;
pub mod loader;
pub mod offsets;
pub mod producer_ids;
pub mod records;
pub mod runtime;
pub mod share_group;
pub mod transaction;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::Notify;

use crate::clock::now_ms;
use crate::config::{self, Properties};
use crate::controller::image::MetadataImage;
use crate::controller::NewTopic;
use crate::record::batch::BatchIter;
use crate::record::builder::BatchBuilder;
use crate::record::control;
use crate::record::records as record_codec;
use runtime::CoordinatorHost;

use consumer_group::{ConsumerGroup, ConsumerLimits, HeartbeatRequest, HeartbeatResult};
use consumer_records::{ConsumerKey, ConsumerValue};
use group::{ClassicGroup, ClassicLimits, GroupState, JoinRequest, JoinResult, Reply, SyncResult};
use offsets::OffsetStore;
use records::{OffsetValue, OffsetsRecord};
use runtime::WriteError;

/// The internal topic of group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Groups this coordinator holds at most; a new group beyond it is refused with
/// GROUP_MAX_SIZE_REACHED (Kafka has no such cap; memory needs one).
pub const GROUPS_MAX: usize = 100_000;
/// Members per group at most, whatever group.max.size says.
pub const MEMBERS_PER_GROUP_MAX: usize = 10_000;
/// Longest group id accepted: ids are written into records with int16 lengths.
pub const GROUP_ID_BYTES_MAX: usize = 16 * 1024;
/// Longest member id, instance id, protocol name or client id kept.
pub const NAME_BYTES_MAX: usize = 16 * 1024;
/// Protocols one JoinGroup may offer, and their metadata in bytes: what a member stores.
pub const PROTOCOLS_PER_MEMBER_MAX: usize = 64;
pub const PROTOCOL_METADATA_BYTES_MAX: usize = 1024 * 1024;

/// Coordinator settings, read once from the broker properties.
#[derive(Clone, Debug)]
pub struct Settings {
    pub session_timeout_min_ms: i32,
    pub session_timeout_max_ms: i32,
    pub initial_rebalance_delay_ms: i64,
    pub members_max: usize,
    pub offsets_partitions: i32,
    pub offsets_segment_bytes: i64,
    pub offset_metadata_bytes_max: usize,
    pub offsets_retention_ms: i64,
    pub offsets_retention_check_interval_ms: i64,
    pub consumer_session_timeout_ms: i32,
    pub consumer_heartbeat_interval_ms: i32,
    pub consumer_members_max: usize,
    pub consumer_assignors: Vec<String>,
    /// `group.coordinator.rebalance.protocols` lists `consumer`: KIP-848 groups are served.
    pub consumer_protocol_enabled: bool,
}

impl Settings {
    pub fn from_properties(properties: &Properties) -> Settings {
        Settings {
            session_timeout_min_ms: properties.get_i64(config::GROUP_MIN_SESSION_TIMEOUT_MS) as i32,
            session_timeout_max_ms: properties.get_i64(config::GROUP_MAX_SESSION_TIMEOUT_MS) as i32,
            initial_rebalance_delay_ms: properties
                .get_i64(config::GROUP_INITIAL_REBALANCE_DELAY_MS),
            members_max: (properties.get_i64(config::GROUP_MAX_SIZE) as usize)
                .min(MEMBERS_PER_GROUP_MAX),
            offsets_partitions: properties.get_i64(config::OFFSETS_TOPIC_NUM_PARTITIONS) as i32,
            offsets_segment_bytes: properties.get_i64(config::OFFSETS_TOPIC_SEGMENT_BYTES),
            offset_metadata_bytes_max: properties.get_i64(config::OFFSET_METADATA_MAX_BYTES)
                as usize,
            offsets_retention_ms: properties
                .get_i64(config::OFFSETS_RETENTION_MINUTES)
                .saturating_mul(60_000),
            offsets_retention_check_interval_ms: properties
                .get_i64(config::OFFSETS_RETENTION_CHECK_INTERVAL_MS),
            consumer_session_timeout_ms: properties
                .get_i64(config::GROUP_CONSUMER_SESSION_TIMEOUT_MS)
                as i32,
            consumer_heartbeat_interval_ms: properties
                .get_i64(config::GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS)
                as i32,
            consumer_members_max: (properties.get_i64(config::GROUP_CONSUMER_MAX_SIZE) as usize)
                .min(MEMBERS_PER_GROUP_MAX),
            consumer_protocol_enabled: properties
                .get(config::GROUP_COORDINATOR_REBALANCE_PROTOCOLS)
                .split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("consumer")),
            consumer_assignors: properties
                .get(config::GROUP_CONSUMER_ASSIGNORS)
                .split(',')
                .map(|a| a.trim().to_ascii_lowercase())
                .filter(|a| !a.is_empty())
                .collect(),
        }
    }

    fn consumer_limits(&self) -> ConsumerLimits {
        ConsumerLimits {
            session_timeout_ms: self.consumer_session_timeout_ms,
            members_max: self.consumer_members_max,
            assignors: self.consumer_assignors.clone(),
        }
    }

    fn classic_limits(&self) -> ClassicLimits {
        ClassicLimits {
            initial_rebalance_delay_ms: self.initial_rebalance_delay_ms,
            members_max: self.members_max,
        }
    }
}

/// One group: its membership protocol state and its committed offsets. A group speaks one
/// protocol at a time: while `consumer` is set it is a KIP-848 consumer group (its classic
/// part stays empty); an empty group switches protocol when a member of the other kind joins.
pub struct Group {
    pub classic: ClassicGroup,
    pub consumer: Option<ConsumerGroup>,
    pub offsets: OffsetStore,
    /// The consumer group records `__consumer_offsets` holds for this group (the last ones
    /// written or loaded): a change writes only the difference.
    persisted: BTreeMap<ConsumerKey, ConsumerValue>,
}

/// Encoded (key, value) records for one append; a None value is a tombstone.
type EncodedRecords = Vec<(Vec<u8>, Option<Vec<u8>>)>;

impl Group {
    fn new(group_id: &str, now_ms: i64) -> Group {
        Group {
            classic: ClassicGroup::new(group_id, now_ms),
            consumer: None,
            offsets: OffsetStore::default(),
            persisted: BTreeMap::new(),
        }
    }

    /// The records that bring `__consumer_offsets` from `persisted` to the consumer group as
    /// it is now (all tombstones when it is gone), and that new state.
    fn consumer_changes(
        &self,
        image: &MetadataImage,
    ) -> (EncodedRecords, BTreeMap<ConsumerKey, ConsumerValue>) {
        let group_id = &self.classic.group_id;
        let now = match &self.consumer {
            Some(consumer) => consumer.to_records(&|topic| image.topics.get(topic).map(|t| t.id)),
            None => BTreeMap::new(),
        };
        let mut encoded: EncodedRecords = self
            .persisted
            .keys()
            .filter(|key| !now.contains_key(*key))
            .map(|key| (consumer_records::encode_key(group_id, key), None))
            .collect();
        encoded.extend(
            now.iter()
                .filter(|(key, value)| self.persisted.get(*key) != Some(*value))
                .map(|(key, value)| {
                    (
                        consumer_records::encode_key(group_id, key),
                        Some(consumer_records::encode_value(value)),
                    )
                }),
        );
        (encoded, now)
    }

    /// No members of either protocol.
    fn has_no_members(&self) -> bool {
        self.classic.is_empty()
            && self.classic.state == GroupState::Empty
            && self.consumer.as_ref().is_none_or(|c| c.members.is_empty())
    }

    /// When the group last became empty (offset retention counts from it).
    fn empty_since_ms(&self) -> i64 {
        match &self.consumer {
            Some(consumer) => consumer.state_timestamp_ms,
            None => self.classic.state_timestamp_ms,
        }
    }

    /// (protocol type, state name, group type) for ListGroups.
    pub fn listing(&self) -> (String, &'static str, &'static str) {
        match &self.consumer {
            Some(consumer) => ("consumer".to_string(), consumer.state_name(), "consumer"),
            None => (
                self.classic.protocol_type.clone().unwrap_or_default(),
                self.classic.state.name(),
                "classic",
            ),
        }
    }

    fn next_deadline_ms(&self) -> Option<i64> {
        let classic = self.classic.next_deadline_ms();
        let consumer = self
            .consumer
            .as_ref()
            .and_then(ConsumerGroup::next_deadline_ms);
        classic.into_iter().chain(consumer).min()
    }
}

/// A partition's commit request: (partition, offset, leader epoch, metadata).
pub type PartitionCommit = (i32, i64, i32, Option<String>);

pub struct GroupCoordinator {
    settings: Settings,
    groups: Mutex<HashMap<String, Group>>,
    /// Wakes the timer task when a deadline earlier than the one it sleeps on appears.
    wake: Notify,
    /// The earliest deadline the timer knew of when it last looked (i64::MAX: none). Read and
    /// written under the groups lock, so a new earlier deadline is never missed.
    timer_target_ms: AtomicI64,
    /// Transactional offset commits found in `__consumer_offsets` at load with no marker after
    /// them yet, by producer id: the transaction coordinator decides them when it completes
    /// (or aborts) the transaction ([`GroupCoordinator::end_transactional_offsets`]).
    undecided_offsets: Mutex<HashMap<i64, Vec<OffsetsRecord>>>,
    /// The shards loaded here: `__consumer_offsets` partitions this node leads and replayed.
    shards: Mutex<Shards>,
}

#[derive(Default)]
struct Shards {
    /// The topic's partition count when a shard was loaded (group ids hash over it).
    partition_count: i32,
    loaded: BTreeSet<i32>,
}

/// A group description for DescribeGroups.
pub struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol_name: String,
    /// (member id, instance id, client id, client host, metadata, assignment)
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

pub fn validate_group_id(group_id: &str) -> Result<(), ResponseError> {
    if group_id.is_empty() || group_id.len() > GROUP_ID_BYTES_MAX {
        return Err(ResponseError::InvalidGroupId);
    }
    Ok(())
}

impl GroupCoordinator {
    pub fn new(properties: &Properties) -> GroupCoordinator {
        GroupCoordinator {
            settings: Settings::from_properties(properties),
            groups: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            timer_target_ms: AtomicI64::new(i64::MAX),
            undecided_offsets: Mutex::new(HashMap::new()),
            shards: Mutex::new(Shards::default()),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().expect("groups lock")
    }

    /// NOT_COORDINATOR unless the group's shard is loaded here: in a cluster each broker
    /// coordinates the groups of the `__consumer_offsets` partitions it leads, and a client
    /// that asked another one rediscovers the coordinator (FindCoordinator);
    /// COORDINATOR_LOAD_IN_PROGRESS while this node leads the partition but its shard is still
    /// replaying, as Kafka answers. Creates the topic on first use, before any group lock is
    /// taken: its shards load as the commit applies.
    pub fn check_coordinator(
        &self,
        host: &dyn CoordinatorHost,
        group_id: &str,
    ) -> Result<(), ResponseError> {
        let partition = self.offsets_partition(host, group_id)?;
        match self.is_loaded(partition) {
            true => Ok(()),
            false => Err(runtime::unloaded_shard_error(
                host,
                OFFSETS_TOPIC,
                partition,
            )),
        }
    }

    /// Whether the shard of `__consumer_offsets`-`partition` is loaded here.
    pub fn is_loaded(&self, partition: i32) -> bool {
        self.shards
            .lock()
            .expect("shards lock")
            .loaded
            .contains(&partition)
    }

    /// Creates `__consumer_offsets` if absent (as Kafka does on the first FindCoordinator).
    pub fn ensure_offsets_topic(&self, host: &dyn CoordinatorHost) -> Result<i32, ResponseError> {
        if let Some(topic) = host.image().topics.get(OFFSETS_TOPIC) {
            return Ok(topic.partition_count());
        }
        let topic = NewTopic {
            name: OFFSETS_TOPIC.to_string(),
            partition_count: self.settings.offsets_partitions,
            replication_factor: -1,
            assignments: Default::default(),
            configs: [
                ("cleanup.policy".to_string(), "compact".to_string()),
                (
                    "segment.bytes".to_string(),
                    self.settings.offsets_segment_bytes.to_string(),
                ),
                ("compression.type".to_string(), "producer".to_string()),
            ]
            .into_iter()
            .collect(),
        };
        match host.create_topic(&topic) {
            Ok(()) => {}
            Err(error) if error.error == ResponseError::TopicAlreadyExists => {}
            Err(error) => {
                tracing::error!(message = error.message, "cannot create {OFFSETS_TOPIC}");
                return Err(ResponseError::CoordinatorNotAvailable);
            }
        }
        host.image()
            .topics
            .get(OFFSETS_TOPIC)
            .map(|t| t.partition_count())
            .ok_or(ResponseError::CoordinatorNotAvailable)
    }

    /// The `__consumer_offsets` partition of `group_id` (the topic is created if absent).
    pub fn offsets_partition(
        &self,
        host: &dyn CoordinatorHost,
        group_id: &str,
    ) -> Result<i32, ResponseError> {
        Ok(records::partition_for(
            group_id,
            self.ensure_offsets_topic(host)?,
        ))
    }

    /// Appends records for `group_id` to its `__consumer_offsets` partition, as one batch.
    /// The append has produce's durability (acks=all on one replica: in the log once this
    /// returns).
    fn append(
        &self,
        host: &dyn CoordinatorHost,
        group_id: &str,
        records: &[(Vec<u8>, Option<Vec<u8>>)],
    ) -> Result<(), ResponseError> {
        self.append_as(host, group_id, records, None)
    }

    /// [`Self::append`], as a transactional batch of `producer` (id, epoch) when given.
    fn append_as(
        &self,
        host: &dyn CoordinatorHost,
        group_id: &str,
        records: &[(Vec<u8>, Option<Vec<u8>>)],
        producer: Option<(i64, i16)>,
    ) -> Result<(), ResponseError> {
        if records.is_empty() {
            return Ok(());
        }
        // The topic exists: every path here passed check_coordinator or offsets_partition.
        let partition_count = host
            .image()
            .topics
            .get(OFFSETS_TOPIC)
            .map(|t| t.partition_count())
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        let partition = records::partition_for(group_id, partition_count);
        let now = now_ms();
        let builder = match producer {
            // Kafka writes transactional offset commits without a sequence number.
            Some((producer_id, epoch)) => BatchBuilder::new(now)
                .producer(producer_id, epoch, -1)
                .transactional(),
            None => BatchBuilder::new(now),
        };
        let batch = records
            .iter()
            .fold(builder, |builder, (key, value)| {
                builder.record(Some(key), value.as_deref(), now)
            })
            .build();
        host.append(OFFSETS_TOPIC, partition, &batch, false)
            .map_err(|error| {
                tracing::error!(group_id, %error, "appending to {OFFSETS_TOPIC} failed");
                match error {
                    WriteError::NotLeader(..) => ResponseError::NotCoordinator,
                    WriteError::Storage(_) => ResponseError::CoordinatorNotAvailable,
                }
            })
    }

    /// Writes what changed in `group`'s consumer group records since they were last written.
    fn persist_consumer(
        &self,
        host: &dyn CoordinatorHost,
        group: &mut Group,
    ) -> Result<(), ResponseError> {
        let (encoded, now) = group.consumer_changes(&host.image());
        self.append(host, &group.classic.group_id, &encoded)?;
        group.persisted = now;
        Ok(())
    }

    fn persist_group(
        &self,
        host: &dyn CoordinatorHost,
        group: &Group,
    ) -> Result<(), ResponseError> {
        let id = &group.classic.group_id;
        let value = records::group_value(&group.classic.to_record());
        self.append(host, id, &[(records::group_key(id), Some(value))])
    }

    /// Loads the shard of `partition` (this node became its leader): replays the partition,
    /// the latest record per key winning, into the groups map.
    /// `partition_count` is the topic's, from the image that made this node its leader.
    pub fn load_shard(
        &self,
        host: &dyn CoordinatorHost,
        partition: i32,
        partition_count: i32,
    ) -> Result<(), WriteError> {
        // Held from the read to the insert of what it left undecided: a marker appended after
        // the read has its decision (`end_transactional_offsets`) wait for the load, and then
        // finds the replayed offsets it decides (chaos seed 5501: a marker decided in between
        // found nothing, and its offsets stayed undecided for good).
        let mut undecided_offsets = self
            .undecided_offsets
            .lock()
            .expect("undecided offsets lock");
        let bytes = host.read_all(OFFSETS_TOPIC, partition)?;
        let now = now_ms();
        let mut groups = self.lock();
        let mut record_count = 0u64;
        // Groups whose KIP-848 records were replayed: rebuilt once the whole shard is read.
        let mut consumer_groups: BTreeSet<String> = BTreeSet::new();
        // Transactional offset commits wait for their transaction's marker.
        let mut undecided: HashMap<i64, Vec<OffsetsRecord>> = HashMap::new();
        {
            for item in BatchIter::new(&bytes) {
                let Ok((position, header)) = item else { break };
                let batch = &bytes[position..position + header.size_bytes()];
                if header.is_control() {
                    let decided = undecided.remove(&header.producer_id);
                    if let (Some(records), Some(true)) =
                        (decided, control::is_commit(batch, &header))
                    {
                        for record in records {
                            apply_loaded(&mut groups, record, now);
                        }
                    }
                    continue;
                }
                let decoded = record_codec::records_section(batch, &header).and_then(|section| {
                    let records = record_codec::decode(&section, &header)?;
                    Ok(records
                        .into_iter()
                        .filter_map(|r| Some((r.key?.to_vec(), r.value.map(<[u8]>::to_vec))))
                        .collect::<Vec<_>>())
                });
                let Ok(pairs) = decoded else {
                    tracing::warn!(partition, "skipping undecodable batch in {OFFSETS_TOPIC}");
                    continue;
                };
                for (key, value) in pairs {
                    record_count += 1;
                    match records::decode(&key, value.as_deref()) {
                        Ok(Some(record)) if header.is_transactional() => undecided
                            .entry(header.producer_id)
                            .or_default()
                            .push(record),
                        Ok(Some(record)) => {
                            if let OffsetsRecord::Consumer { group, .. } = &record {
                                consumer_groups.insert(group.clone());
                            }
                            apply_loaded(&mut groups, record, now)
                        }
                        Ok(None) => {}
                        Err(error) => {
                            tracing::warn!(partition, error, "skipping bad {OFFSETS_TOPIC} record")
                        }
                    }
                }
            }
        }
        let image = host.image();
        let topic_names: HashMap<uuid::Uuid, String> = image
            .topics
            .values()
            .map(|t| (t.id, t.name.clone()))
            .collect();
        let all_topics: Vec<String> = image.topics.keys().cloned().collect();
        let limits = self.settings.consumer_limits();
        for group_id in &consumer_groups {
            let Some(group) = groups.get_mut(group_id) else {
                continue;
            };
            group.consumer = ConsumerGroup::from_records(
                &group.persisted,
                &|id| topic_names.get(&id).cloned(),
                &all_topics,
                &limits,
                now,
            );
        }
        tracing::debug!(
            partition,
            groups = groups.len(),
            consumer_groups = consumer_groups.len(),
            records = record_count,
            undecided_transactions = undecided.len(),
            undecided_producers = ?undecided.keys().collect::<Vec<_>>(),
            "loaded consumer groups"
        );
        for (producer_id, records) in undecided {
            undecided_offsets
                .entry(producer_id)
                .or_default()
                .extend(records);
        }
        let mut shards = self.shards.lock().expect("shards lock");
        shards.partition_count = partition_count;
        shards.loaded.insert(partition);
        Ok(())
    }

    /// Unloads the shard of `partition` (this node stopped leading it): its groups are
    /// forgotten here; the new leader replays them.
    pub fn unload_shard(&self, partition: i32) {
        let mut shards = self.shards.lock().expect("shards lock");
        if !shards.loaded.remove(&partition) {
            return;
        }
        let partition_count = shards.partition_count;
        drop(shards);
        let in_shard =
            |group_id: &str| records::partition_for(group_id, partition_count) == partition;
        let mut groups = self.lock();
        let before = groups.len();
        groups.retain(|group_id, _| !in_shard(group_id));
        tracing::info!(
            partition,
            groups = before - groups.len(),
            "unloaded consumer groups"
        );
        drop(groups);
        let mut undecided = self
            .undecided_offsets
            .lock()
            .expect("undecided offsets lock");
        for records in undecided.values_mut() {
            records.retain(|record| !in_shard(record.group_id()));
        }
        undecided.retain(|_, records| !records.is_empty());
    }

    // ---- classic membership ----

    pub fn join(
        &self,
        host: &dyn CoordinatorHost,
        group_id: &str,
        request: JoinRequest,
    ) -> Reply<JoinResult> {
        let now = now_ms();
        let member_id = request.member_id.clone();
        let fail = |error| Reply::Now(JoinResult::error(error, &member_id));
        if let Err(error) = validate_group_id(group_id) {
            return fail(error);
        }
        if let Err(error) = self.check_coordinator(host, group_id) {
            return fail(error);
        }
        let settings = &self.settings;
        if request.session_timeout_ms < settings.session_timeout_min_ms
            || request.session_timeout_ms > settings.session_timeout_max_ms
        {
            return fail(ResponseError::InvalidSessionTimeout);
        }
        if request.rebalance_timeout_ms <= 0
            || [
                &request.member_id,
                &request.client_id,
                &request.protocol_type,
            ]
            .iter()
            .any(|s| s.len() > NAME_BYTES_MAX)
            || request
                .group_instance_id
                .as_ref()
                .is_some_and(|s| s.is_empty() || s.len() > NAME_BYTES_MAX)
            || request
                .protocols
                .iter()
                .any(|(name, _)| name.len() > NAME_BYTES_MAX)
            || request.protocols.len() > PROTOCOLS_PER_MEMBER_MAX
            || request
                .protocols
                .iter()
                .map(|(_, m)| m.len())
                .sum::<usize>()
                > PROTOCOL_METADATA_BYTES_MAX
        {
            return fail(ResponseError::InvalidRequest);
        }
        let mut groups = self.lock();
        if !groups.contains_key(group_id) {
            if !request.member_id.is_empty() {
                return fail(ResponseError::UnknownMemberId);
            }
            if groups.len() >= GROUPS_MAX {
                tracing::warn!(group_id, "refusing a new group: {GROUPS_MAX} groups exist");
                return fail(ResponseError::GroupMaxSizeReached);
            }
        }
        let group = groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id, now));
        if let Some(consumer) = &group.consumer {
            if !consumer.members.is_empty() {
                // One protocol at a time: classic members cannot join a consumer group.
                return fail(ResponseError::InconsistentGroupProtocol);
            }
            group.consumer = None;
            if let Err(error) = self.persist_consumer(host, group) {
                return fail(error);
            }
        }
        let (reply, effects) = group.classic.join(request, settings.classic_limits(), now);
        group.classic.check_invariants();
        if effects.persist_group {
            let _ = self.persist_group(host, group);
        }
        if group.has_no_members() && group.offsets.is_empty() && group.classic.generation_id == 0 {
            // A join refused at once (bad protocol, MEMBER_ID_REQUIRED aside) leaves nothing.
            groups.remove(group_id);
        }
        let wake = self.deadline_moved_earlier(&groups, group_id);
        drop(groups);
        if wake {
            self.wake.notify_one();
        }
        reply
    }

    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &self,
        host: &dyn CoordinatorHost,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        instance: Option<&str>,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> Reply<SyncResult> {
        if let Err(error) =
            validate_group_id(group_id).and_then(|()| self.check_coordinator(host, group_id))
        {
            return Reply::Now(SyncResult::error(error));
        }
        let now = now_ms();
        let limits = self.settings.classic_limits();
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return Reply::Now(SyncResult::error(ResponseError::UnknownMemberId));
        };
        let (reply, effects) = group.classic.sync(
            generation_id,
            member_id,
            instance,
            protocol_type,
            protocol_name,
            assignments,
            limits,
            now,
        );
        if effects.persist_group {
            let error = self.persist_group(host, group).err();
            group.classic.complete_sync(error, limits, now);
        }
        group.classic.check_invariants();
        let wake = self.deadline_moved_earlier(&groups, group_id);
        drop(groups);
        if wake {
            self.wake.notify_one();
        }
        reply
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        instance: Option<&str>,
    ) -> Option<ResponseError> {
        if let Err(error) = validate_group_id(group_id) {
            return Some(error);
        }
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        group
            .classic
            .heartbeat(generation_id, member_id, instance, now_ms())
    }

    /// LeaveGroup: Err for the whole request, else one result per member identity.
    pub fn leave(
        &self,
        host: &dyn CoordinatorHost,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        validate_group_id(group_id)?;
        self.check_coordinator(host, group_id)?;
        let now = now_ms();
        let limits = self.settings.classic_limits();
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        let mut persist = false;
        let results = members
            .iter()
            .map(|(member_id, instance)| {
                let (error, effects) =
                    group
                        .classic
                        .leave(member_id, instance.as_deref(), limits, now);
                persist |= effects.persist_group;
                error
            })
            .collect();
        group.classic.check_invariants();
        if persist {
            let _ = self.persist_group(host, group);
        }
        let wake = self.deadline_moved_earlier(&groups, group_id);
        drop(groups);
        if wake {
            self.wake.notify_one();
        }
        Ok(results)
    }

    // ---- offsets ----

    /// OffsetCommit. Err for the whole request (every partition gets it), else one result per
    /// partition in request order.
    /// TxnOffsetCommit: writes the offsets to the group's `__consumer_offsets` partition as a
    /// transactional batch of the producer, as Kafka does. They count only once the
    /// transaction's COMMIT marker follows them there (the coordinator writes it to the
    /// partition AddOffsetsToTxn added); until then the in-memory offsets do not change.
    pub fn append_transactional_offsets(
        &self,
        host: &dyn CoordinatorHost,
        group_id: &str,
        producer: (i64, i16),
        offsets: &[transaction::PendingOffset],
    ) -> Result<(), ResponseError> {
        validate_group_id(group_id)?;
        {
            let groups = self.lock();
            if !groups.contains_key(group_id) && groups.len() >= GROUPS_MAX {
                return Err(ResponseError::GroupMaxSizeReached);
            }
        }
        let now = now_ms();
        let encoded: Vec<(Vec<u8>, Option<Vec<u8>>)> = offsets
            .iter()
            .map(|o| {
                let value = pending_offset_value(o, now);
                (
                    records::offset_key(group_id, &o.topic, o.partition),
                    Some(records::offset_value(&value)),
                )
            })
            .collect();
        self.append_as(host, group_id, &encoded, Some(producer))
    }

    /// Whether a transactional offset for this group partition, found at load, still waits
    /// for its transaction's marker.
    pub fn has_undecided_offset(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        let undecided = self
            .undecided_offsets
            .lock()
            .expect("undecided offsets lock");
        undecided.values().flatten().any(|record| {
            matches!(record, OffsetsRecord::Offset { group, topic: t, partition: p, .. }
                if group == group_id && t == topic && *p == partition)
        })
    }

    /// The transaction of `producer_id` ended (its markers are written): on commit its offsets
    /// take effect, `staged` (what TxnOffsetCommit staged in this process, by group) and any
    /// found undecided at load; on abort they are dropped. Nothing is appended: the
    /// transactional records and the marker are in the log already.
    pub fn end_transactional_offsets(
        &self,
        producer_id: i64,
        staged: Option<&std::collections::BTreeMap<String, Vec<transaction::PendingOffset>>>,
        commit: bool,
    ) {
        let loaded = self
            .undecided_offsets
            .lock()
            .expect("undecided offsets lock")
            .remove(&producer_id);
        tracing::debug!(
            producer_id,
            commit,
            loaded = loaded.as_ref().map_or(0, Vec::len),
            staged = staged.map_or(0, |s| s.values().map(Vec::len).sum::<usize>()),
            "transactional offsets decided"
        );
        if !commit || (loaded.is_none() && staged.is_none()) {
            return;
        }
        let now = now_ms();
        let mut groups = self.lock();
        for record in loaded.into_iter().flatten() {
            apply_loaded(&mut groups, record, now);
        }
        for (group_id, offsets) in staged.into_iter().flatten() {
            let group = groups
                .entry(group_id.clone())
                .or_insert_with(|| Group::new(group_id, now));
            for o in offsets {
                group
                    .offsets
                    .put(&o.topic, o.partition, pending_offset_value(o, now));
            }
        }
    }

    /// Appends `offsets` to the group's `__consumer_offsets` partition, then applies them to
    /// the group (created if absent): the shared tail of every kind of commit.
    fn store_offsets(
        &self,
        host: &dyn CoordinatorHost,
        groups: &mut HashMap<String, Group>,
        group_id: &str,
        now: i64,
        offsets: Vec<(String, i32, OffsetValue)>,
    ) -> Result<(), ResponseError> {
        let encoded: Vec<(Vec<u8>, Option<Vec<u8>>)> = offsets
            .iter()
            .map(|(topic, partition, value)| {
                (
                    records::offset_key(group_id, topic, *partition),
                    Some(records::offset_value(value)),
                )
            })
            .collect();
        self.append(host, group_id, &encoded)?;
        let group = groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id, now));
        for (topic, partition, value) in offsets {
            group.offsets.put(&topic, partition, value);
        }
        Ok(())
    }

    pub fn commit_offsets(
        &self,
        host: &dyn CoordinatorHost,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        instance: Option<&str>,
        topics: &[(String, Vec<PartitionCommit>)],
    ) -> Result<Vec<Vec<Option<ResponseError>>>, ResponseError> {
        validate_group_id(group_id)?;
        self.check_coordinator(host, group_id)?;
        let now = now_ms();
        let image = host.image();
        let mut groups = self.lock();
        if let Some(group) = groups.get(group_id) {
            match &group.consumer {
                Some(consumer) => consumer.validate_commit(member_id, generation_id)?,
                None => validate_commit(&group.classic, generation_id, member_id, instance)?,
            }
        } else {
            // Kafka: a commit with generation -1 to an unknown group creates an empty
            // (simple) group; a generation names a group that no longer exists.
            if generation_id >= 0 {
                return Err(ResponseError::IllegalGeneration);
            }
            if groups.len() >= GROUPS_MAX {
                return Err(ResponseError::GroupMaxSizeReached);
            }
        }
        let mut results = Vec::with_capacity(topics.len());
        let mut accepted: Vec<(String, i32, OffsetValue)> = Vec::new();
        for (topic, partitions) in topics {
            let partition_count = image.topics.get(topic).map(|t| t.partition_count());
            let mut topic_results = Vec::with_capacity(partitions.len());
            for (partition, offset, leader_epoch, metadata) in partitions {
                let metadata = metadata.clone().unwrap_or_default();
                let error = if !partition_count.is_some_and(|count| (0..count).contains(partition))
                {
                    Some(ResponseError::UnknownTopicOrPartition)
                } else if metadata.len() > self.settings.offset_metadata_bytes_max {
                    Some(ResponseError::OffsetMetadataTooLarge)
                } else {
                    accepted.push((
                        topic.clone(),
                        *partition,
                        OffsetValue {
                            offset: *offset,
                            leader_epoch: *leader_epoch,
                            metadata,
                            commit_timestamp_ms: now,
                        },
                    ));
                    None
                };
                topic_results.push(error);
            }
            results.push(topic_results);
        }
        if accepted.is_empty() {
            return Ok(results);
        }
        self.store_offsets(host, &mut groups, group_id, now, accepted)?;
        Ok(results)
    }

    /// OffsetFetch for one group: (topic, [(partition, commit)]) for the partitions asked,
    /// or every committed partition when `topics` is None.
    #[allow(clippy::type_complexity)]
    /// OffsetFetch. `member` is the (member id, member epoch) an OffsetFetch v9+ names: for
    /// a KIP-848 group they must be a member's current ones, unless the fetcher names no
    /// member (an admin client or a manually assigned consumer), as in Kafka.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        member: (Option<&str>, i32),
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<(String, Vec<(i32, Option<OffsetValue>)>)>, ResponseError> {
        validate_group_id(group_id)?;
        let groups = self.lock();
        let group = groups.get(group_id);
        if let Some(consumer) = group.and_then(|g| g.consumer.as_ref()) {
            consumer.validate_offset_fetch(member.0, member.1)?;
        }
        match topics {
            Some(topics) => Ok(topics
                .into_iter()
                .map(|(topic, partitions)| {
                    let found = partitions
                        .into_iter()
                        .map(|p| {
                            let committed = group.and_then(|g| g.offsets.get(&topic, p)).cloned();
                            if committed.is_none() {
                                tracing::debug!(
                                    group_id,
                                    topic,
                                    partition = p,
                                    "OffsetFetch: no committed offset"
                                );
                            }
                            (p, committed)
                        })
                        .collect();
                    (topic, found)
                })
                .collect()),
            None => {
                let mut output: Vec<(String, Vec<(i32, Option<OffsetValue>)>)> = Vec::new();
                for (topic, partition, value) in group.iter().flat_map(|g| g.offsets.iter()) {
                    match output.last_mut() {
                        Some((last, partitions)) if last == topic => {
                            partitions.push((partition, Some(value.clone())))
                        }
                        _ => {
                            output.push((topic.to_string(), vec![(partition, Some(value.clone()))]))
                        }
                    }
                }
                Ok(output)
            }
        }
    }

    /// OffsetDelete: per partition NONE or GROUP_SUBSCRIBED_TO_TOPIC.
    pub fn delete_offsets(
        &self,
        host: &dyn CoordinatorHost,
        group_id: &str,
        topics: &[(String, Vec<i32>)],
    ) -> Result<Vec<Vec<Option<ResponseError>>>, ResponseError> {
        validate_group_id(group_id)?;
        self.check_coordinator(host, group_id)?;
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        let subscribed: Option<Vec<String>> = match (&group.consumer, group.classic.state) {
            (Some(consumer), _) => Some(consumer.subscribed_topics().into_iter().collect()),
            (None, GroupState::Empty) => Some(Vec::new()),
            (None, _) => group.classic.subscribed_topics(),
        };
        let Some(subscribed) = subscribed else {
            return Err(ResponseError::NonEmptyGroup);
        };
        let mut tombstones = Vec::new();
        let results = topics
            .iter()
            .map(|(topic, partitions)| {
                partitions
                    .iter()
                    .map(|partition| {
                        if subscribed.contains(topic) {
                            return Some(ResponseError::GroupSubscribedToTopic);
                        }
                        if group.offsets.get(topic, *partition).is_some() {
                            tombstones.push((topic.clone(), *partition));
                        }
                        None
                    })
                    .collect()
            })
            .collect();
        let encoded: Vec<_> = tombstones
            .iter()
            .map(|(topic, partition)| (records::offset_key(group_id, topic, *partition), None))
            .collect();
        self.append(host, group_id, &encoded)?;
        for (topic, partition) in tombstones {
            group.offsets.remove(&topic, partition);
        }
        Ok(results)
    }

    /// Every group for the metrics scrape: state, member count, committed offsets.
    pub fn metrics_snapshot(&self) -> Vec<crate::metrics::groups::GroupSnapshot> {
        let groups = self.lock();
        let mut snapshot: Vec<_> = groups
            .values()
            .map(|group| {
                let (_, state, _) = group.listing();
                let members = match &group.consumer {
                    Some(consumer) => consumer.members.len(),
                    None => group.classic.members.len(),
                };
                crate::metrics::groups::GroupSnapshot {
                    group: group.classic.group_id.clone(),
                    state,
                    members,
                    committed: group
                        .offsets
                        .iter()
                        .map(|(topic, partition, value)| {
                            (topic.to_string(), partition, value.offset)
                        })
                        .collect(),
                }
            })
            .collect();
        snapshot.sort_by(|a, b| a.group.cmp(&b.group));
        snapshot
    }

    // ---- administration ----

    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let groups = self.lock();
        let group = groups.get(group_id)?;
        if group.consumer.is_some() {
            return None; // "not a classic group": DescribeGroups answers as for an unknown group
        }
        let group = &group.classic;
        let protocol = group.protocol_name.clone().unwrap_or_default();
        // Kafka shows metadata and assignments only once the group is stable.
        let stable = group.state == GroupState::Stable;
        Some(GroupDescription {
            state: group.state,
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol_name: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: group
                .members
                .values()
                .map(|m| {
                    (
                        m.member_id.clone(),
                        m.group_instance_id.clone(),
                        m.client_id.clone(),
                        m.client_host.clone(),
                        if stable {
                            m.metadata(&protocol)
                        } else {
                            Bytes::new()
                        },
                        if stable {
                            m.assignment.clone()
                        } else {
                            Bytes::new()
                        },
                    )
                })
                .collect(),
        })
    }

    /// (group id, protocol type, state, group type) of every group.
    pub fn list(&self) -> Vec<(String, String, &'static str, &'static str)> {
        let groups = self.lock();
        let mut listed: Vec<_> = groups
            .values()
            .map(|g| {
                let (protocol_type, state, kind) = g.listing();
                (g.classic.group_id.clone(), protocol_type, state, kind)
            })
            .collect();
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        listed
    }

    /// DeleteGroups for one group: only an empty group can go.
    pub fn delete_group(
        &self,
        host: &dyn CoordinatorHost,
        group_id: &str,
    ) -> Result<(), ResponseError> {
        validate_group_id(group_id)?;
        self.check_coordinator(host, group_id)?;
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        if !group.has_no_members() {
            return Err(ResponseError::NonEmptyGroup);
        }
        let mut encoded: Vec<(Vec<u8>, Option<Vec<u8>>)> = group
            .offsets
            .iter()
            .map(|(topic, partition, _)| (records::offset_key(group_id, topic, partition), None))
            .collect();
        encoded.push((records::group_key(group_id), None));
        encoded.extend(consumer_tombstones(group));
        self.append(host, group_id, &encoded)?;
        if let Some(mut group) = groups.remove(group_id) {
            group.classic.state = GroupState::Dead;
            group.classic.clear(ResponseError::CoordinatorNotAvailable);
        }
        Ok(())
    }

    // ---- KIP-848 consumer groups ----

    /// ConsumerGroupHeartbeat.
    pub fn consumer_heartbeat(
        &self,
        host: &dyn CoordinatorHost,
        group_id: &str,
        request: HeartbeatRequest,
    ) -> Result<HeartbeatResult, (ResponseError, String)> {
        if !self.settings.consumer_protocol_enabled {
            return Err((
                ResponseError::UnsupportedVersion,
                "The consumer group protocol is disabled (group.coordinator.rebalance.protocols)."
                    .to_string(),
            ));
        }
        validate_group_id(group_id)
            .map_err(|e| (e, "The group id is empty or too long.".to_string()))?;
        self.check_coordinator(host, group_id)
            .map_err(|e| (e, "This broker is not the group's coordinator.".to_string()))?;
        if request.member_id.is_empty() || request.member_id.len() > NAME_BYTES_MAX {
            return Err((
                ResponseError::InvalidRequest,
                "MemberId must be a non-empty string.".into(),
            ));
        }
        if request
            .subscribed_topics
            .as_ref()
            .is_some_and(|t| t.iter().any(|name| name.len() > NAME_BYTES_MAX))
        {
            return Err((ResponseError::InvalidRequest, "Topic name too long.".into()));
        }
        let now = now_ms();
        let image = host.image();
        let partitions_of = |topic: &str| image.topics.get(topic).map(|t| t.partition_count());
        let all_topics: Vec<String> = image.topics.keys().cloned().collect();
        let mut groups = self.lock();
        if !groups.contains_key(group_id) {
            if request.member_epoch != 0 {
                return Err((
                    ResponseError::UnknownMemberId,
                    format!("Group {group_id} has no member {}.", request.member_id),
                ));
            }
            if groups.len() >= GROUPS_MAX {
                return Err((
                    ResponseError::GroupMaxSizeReached,
                    format!("The coordinator holds {GROUPS_MAX} groups."),
                ));
            }
        }
        let group = groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id, now));
        if group.consumer.is_none() {
            if !group.has_no_members() {
                return Err((
                    ResponseError::GroupIdNotFound,
                    format!("Group {group_id} is not a consumer group (it has classic members)."),
                ));
            }
            group.consumer = Some(ConsumerGroup::new(now));
        }
        let consumer = group.consumer.as_mut().expect("set above");
        let mut result = consumer.heartbeat(
            request,
            &partitions_of,
            &all_topics,
            &self.settings.consumer_limits(),
            now,
        );
        // The change is durable before the member hears of it, as in Kafka. (A refused
        // heartbeat changed nothing.)
        if result.is_ok() {
            if let Err(error) = self.persist_consumer(host, group) {
                result = Err((
                    error,
                    "The group's state could not be written to __consumer_offsets.".to_string(),
                ));
            }
        }
        let wake = self.deadline_moved_earlier(&groups, group_id);
        drop(groups);
        if wake {
            self.wake.notify_one();
        }
        result
    }

    /// ConsumerGroupDescribe of one group: Err for unknown or classic groups.
    pub fn consumer_describe<T>(
        &self,
        group_id: &str,
        describe: impl FnOnce(&ConsumerGroup) -> T,
    ) -> Result<T, (ResponseError, String)> {
        let groups = self.lock();
        match groups.get(group_id) {
            Some(Group {
                consumer: Some(consumer),
                ..
            }) => Ok(describe(consumer)),
            Some(_) => Err((
                ResponseError::GroupIdNotFound,
                format!("Group {group_id} is not a consumer group."),
            )),
            None => Err((
                ResponseError::GroupIdNotFound,
                format!("Group {group_id} not found."),
            )),
        }
    }

    // ---- timers ----

    /// Whether `group_id` now has a deadline earlier than the one the timer sleeps towards.
    /// Called with the groups lock held.
    fn deadline_moved_earlier(&self, groups: &HashMap<String, Group>, group_id: &str) -> bool {
        let deadline = groups.get(group_id).and_then(Group::next_deadline_ms);
        deadline.is_some_and(|d| d < self.timer_target_ms.load(Ordering::SeqCst))
    }

    /// The earliest deadline of all groups; remembered for [`Self::deadline_moved_earlier`].
    fn next_deadline_ms(&self) -> Option<i64> {
        let groups = self.lock();
        let next = groups.values().filter_map(Group::next_deadline_ms).min();
        self.timer_target_ms
            .store(next.unwrap_or(i64::MAX), Ordering::SeqCst);
        next
    }

    /// Fires every session, join and sync deadline that is due.
    fn expire(&self, host: &dyn CoordinatorHost, now: i64) {
        let limits = self.settings.classic_limits();
        let mut groups = self.lock();
        for group in groups.values_mut() {
            if !group.next_deadline_ms().is_some_and(|d| d <= now) {
                continue;
            }
            if let Some(consumer) = group.consumer.as_mut() {
                let expired = consumer.expire(now);
                for member_id in &expired {
                    tracing::info!(
                        group_id = group.classic.group_id,
                        member_id,
                        "consumer group member expired"
                    );
                }
                if !expired.is_empty() {
                    let _ = self.persist_consumer(host, group);
                }
            }
            let (effects, evicted) = group.classic.expire(limits, now);
            group.classic.check_invariants();
            for member_id in &evicted {
                tracing::info!(
                    group_id = group.classic.group_id,
                    member_id,
                    "member session expired"
                );
            }
            if effects.persist_group {
                let _ = self.persist_group(host, group);
            }
        }
    }

    /// offsets.retention.minutes: an empty group's offsets expire; an empty group with no
    /// offsets left is deleted (tombstoned), as Kafka's periodic cleanup does.
    fn expire_offsets(&self, host: &dyn CoordinatorHost, now: i64) {
        let retention_ms = self.settings.offsets_retention_ms;
        let mut groups = self.lock();
        let mut dead = Vec::new();
        for (group_id, group) in groups.iter_mut() {
            if !group.has_no_members() {
                continue;
            }
            let empty_since_ms = group.empty_since_ms();
            let expired = group.offsets.expire(retention_ms, empty_since_ms, now);
            let mut encoded: Vec<(Vec<u8>, Option<Vec<u8>>)> = expired
                .iter()
                .map(|(topic, partition)| (records::offset_key(group_id, topic, *partition), None))
                .collect();
            let gone = group.offsets.is_empty();
            if gone {
                encoded.push((records::group_key(group_id), None));
                encoded.extend(consumer_tombstones(group));
                dead.push(group_id.clone());
            }
            if !encoded.is_empty() {
                tracing::info!(
                    group_id,
                    offsets = expired.len(),
                    deleted = gone,
                    "expired offsets"
                );
            }
            let _ = self.append(host, group_id, &encoded);
        }
        for group_id in dead {
            groups.remove(&group_id);
        }
    }
}

/// Kafka's rules for who may commit to a classic group.
fn validate_commit(
    group: &ClassicGroup,
    generation_id: i32,
    member_id: &str,
    instance: Option<&str>,
) -> Result<(), ResponseError> {
    if group.state == GroupState::Dead {
        return Err(ResponseError::CoordinatorNotAvailable);
    }
    if generation_id < 0 && group.state == GroupState::Empty {
        // A simple consumer (manual assignment) or an admin tool.
        return Ok(());
    }
    if let Some(instance) = instance {
        if let Some(member) = group
            .members
            .values()
            .find(|m| m.group_instance_id.as_deref() == Some(instance))
        {
            if member.member_id != member_id {
                return Err(ResponseError::FencedInstanceId);
            }
        }
    }
    if !group.members.contains_key(member_id) {
        return Err(ResponseError::UnknownMemberId);
    }
    if generation_id != group.generation_id {
        return Err(ResponseError::IllegalGeneration);
    }
    if group.state == GroupState::CompletingRebalance {
        return Err(ResponseError::RebalanceInProgress);
    }
    Ok(())
}

fn pending_offset_value(offset: &transaction::PendingOffset, now: i64) -> OffsetValue {
    OffsetValue {
        offset: offset.offset,
        leader_epoch: offset.leader_epoch,
        metadata: offset.metadata.clone().unwrap_or_default(),
        commit_timestamp_ms: now,
    }
}

fn apply_loaded(groups: &mut HashMap<String, Group>, record: OffsetsRecord, now: i64) {
    match record {
        OffsetsRecord::Offset {
            group,
            topic,
            partition,
            value,
        } => match value {
            Some(value) => {
                groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(&group, now))
                    .offsets
                    .put(&topic, partition, value);
            }
            None => {
                if let Some(entry) = groups.get_mut(&group) {
                    entry.offsets.remove(&topic, partition);
                }
            }
        },
        OffsetsRecord::Group { group, value } => match value {
            Some(value) => {
                let (offsets, persisted) = groups
                    .remove(&group)
                    .map(|g| (g.offsets, g.persisted))
                    .unwrap_or_default();
                groups.insert(
                    group.clone(),
                    Group {
                        classic: ClassicGroup::from_record(&group, &value, now),
                        consumer: None,
                        offsets,
                        persisted,
                    },
                );
            }
            None => {
                groups.remove(&group);
            }
        },
        OffsetsRecord::Consumer { group, key, value } => {
            let entry = groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group, now));
            match value {
                Some(value) => entry.persisted.insert(key, value),
                None => entry.persisted.remove(&key),
            };
        }
    }
}

/// Tombstones for every consumer group record `group` has in `__consumer_offsets`.
fn consumer_tombstones(group: &Group) -> EncodedRecords {
    group
        .persisted
        .keys()
        .map(|key| {
            (
                consumer_records::encode_key(&group.classic.group_id, key),
                None,
            )
        })
        .collect()
}

/// The coordinator's timer: sleeps until the earliest deadline or a wake-up, fires what is
/// due, and runs the offset retention check at its interval. Ends at shutdown.
pub async fn run_timers(
    host: Arc<dyn CoordinatorHost>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let coordinator = host.groups();
    let check_interval_ms = coordinator.settings.offsets_retention_check_interval_ms;
    let mut next_retention_check_ms = now_ms() + check_interval_ms;
    loop {
        let now = now_ms();
        let next = coordinator
            .next_deadline_ms()
            .unwrap_or(i64::MAX)
            .min(next_retention_check_ms);
        // A floor of a few milliseconds: a deadline that fired without moving cannot spin.
        let sleep_ms = (next - now).clamp(5, 60_000) as u64;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(sleep_ms)) => {}
            _ = coordinator.wake.notified() => {}
            _ = shutdown.changed() => return,
        }
        let now = now_ms();
        // Expiring takes the groups lock, which an offset commit holds across its wait for
        // the ISR (seconds when a follower just died): wait for it with this runtime worker
        // handed off, or every worker may end up waiting and nothing serves the follower
        // fetches that commit waits for (compat/cluster/rolling.sh froze a node so).
        crate::controller::quorum::blocking(|| {
            coordinator.expire(host.as_ref(), now);
            if now >= next_retention_check_ms {
                next_retention_check_ms = now + check_interval_ms;
                coordinator.expire_offsets(host.as_ref(), now);
            }
        });
    }
}
