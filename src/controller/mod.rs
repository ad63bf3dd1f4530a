//! The controller: owner of cluster metadata. Every change is validated here, appended as
//! [`records::MetadataRecord`]s to the metadata log, and applied to the [`image::MetadataImage`].
//!
//! A commit is a proposal to the metadata quorum ([`quorum`]): the active controller
//! validates, proposes the records as one Raft entry and answers once that entry committed
//! and was applied. Every node (leader, follower, observer) applies committed entries to its
//! image in the quorum driver, which hands the resulting changes to the broker. A single node
//! is a one-voter quorum of itself: same path, no peers.
//!
//! Leadership and ISRs change only through [`partition_change`]: elections committed with
//! every change of broker liveness ([`registration`]) and ISR changes leaders ask for
//! ([`alter_partition`]).

pub mod alter_partition;
pub mod election;
pub mod image;
pub mod metadata_log;
pub mod partition_change;
pub mod peer;
pub mod placement;
pub mod quorum;
pub mod reassignment;
pub mod records;
pub mod registration;
pub mod security;
pub mod wire;

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::config::Properties;
use crate::log::log_config::LogConfig;
use crate::log::log_dir_space::LogDirSpace;

use image::MetadataImage;
use quorum::{ProposeFailure, Quorum, QuorumConfig};
use records::{ConfigResource, MetadataRecord};

pub const METADATA_TOPIC: &str = "__cluster_metadata";
/// Kafka's limit on topic name length.
pub const TOPIC_NAME_LENGTH_MAX: usize = 249;
/// Metadata records batched into one commit by [`Controller::create_topics`]; more go into
/// further commits, so one request cannot make an entry of unbounded size.
const RECORDS_PER_COMMIT_MAX: usize = 1000;
/// Partitions one CreateTopics may ask for; each partition holds open files.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;
/// How long a commit waits for the quorum before REQUEST_TIMED_OUT.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a CreateTopics commit waits when its request allows more than
/// [`COMMIT_TIMEOUT`] (its `timeout_ms`, as Kafka's controller takes it for a deadline).
pub const CREATE_TOPICS_TIMEOUT_MAX: Duration = Duration::from_secs(120);

/// A refusal with the Kafka error code and message the client sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub error: ResponseError,
    pub message: String,
}

impl ApiError {
    pub fn new(error: ResponseError, message: impl Into<String>) -> ApiError {
        ApiError {
            error,
            message: message.into(),
        }
    }
}

/// A topic to create, as CreateTopics or auto-creation asks for it.
#[derive(Clone, Debug, Default)]
pub struct NewTopic {
    pub name: String,
    /// -1: `num.partitions`.
    pub partition_count: i32,
    /// -1: `default.replication.factor`.
    pub replication_factor: i16,
    /// Explicit replica lists, partition index → brokers (replaces the two counts).
    pub assignments: BTreeMap<i32, Vec<i32>>,
    pub configs: BTreeMap<String, String>,
}

/// One config change of AlterConfigs / IncrementalAlterConfigs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigOp {
    pub name: String,
    pub change: ConfigChange,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigChange {
    Set(String),
    Delete,
    /// To a list config (e.g. `cleanup.policy`), without duplicates.
    Append(String),
    Subtract(String),
}

/// How long a forwarder waits for an active controller to be elected.
pub const ACTIVE_CONTROLLER_WAIT: Duration = Duration::from_secs(3);
/// How often it looks while waiting.
const ACTIVE_CONTROLLER_POLL: Duration = Duration::from_millis(50);

/// Where metadata changes are made right now.
pub enum ActiveController {
    /// This node is the active controller.
    Here,
    /// Another node is: its id and client.
    Peer(i32, peer::PeerClient),
    /// None is known (an election is running, or the quorum stopped).
    Unknown,
}

/// Broker configs that may change at run time, as Kafka's dynamic log configs: the broker
/// defaults of topic configs. Others need a restart.
pub fn is_dynamic_broker_config(name: &str) -> bool {
    crate::config::TOPIC_CONFIGS
        .iter()
        .any(|c| c.broker_default == name)
        || crate::config::DYNAMIC_BROKER_ONLY_CONFIGS
            .iter()
            .any(|key| key.name() == name)
}

fn is_list_config(resource: ConfigResource, name: &str) -> bool {
    match resource {
        ConfigResource::Topic => {
            name == "cleanup.policy" || crate::config::TOPIC_ONLY_CONFIGS.contains(&name)
        }
        ConfigResource::Broker => name == "log.cleanup.policy",
    }
}

pub struct Controller {
    node_id: i32,
    broker_properties: Properties,
    quorum: Quorum,
    /// Clients for forwarding to the active controller, by node id.
    peers: Mutex<BTreeMap<i32, peer::PeerClient>>,
    /// Serializes validate → append → apply, so validation sees every earlier commit.
    commit_lock: Mutex<()>,
    /// Brokers' last heartbeats, for fencing (active controller only; not replicated).
    heartbeats: Mutex<registration::HeartbeatTimes>,
    /// The log directory's space (None in tests that open a controller alone).
    space: Option<Arc<LogDirSpace>>,
}

/// Kafka's topic name rule: 1–249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), ApiError> {
    let invalid = |why: String| Err(ApiError::new(ResponseError::InvalidTopicException, why));
    if name.is_empty() || name == "." || name == ".." {
        return invalid(format!("Topic name '{name}' is illegal"));
    }
    if name.len() > TOPIC_NAME_LENGTH_MAX {
        return invalid(format!(
            "Topic name is longer than {TOPIC_NAME_LENGTH_MAX} characters"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return invalid(format!("Topic name '{name}' contains characters other than ASCII alphanumerics, '.', '_' and '-'"));
    }
    Ok(())
}

/// The record of a new partition on `replicas` (validated by placement): its live replicas
/// are the ISR and the first of them leads.
fn new_partition_record(
    image: &MetadataImage,
    topic_id: Uuid,
    partition: i32,
    replicas: &[i32],
) -> Result<MetadataRecord, ApiError> {
    let state =
        partition_change::new_partition(replicas, &|id| image.is_live(id)).ok_or_else(|| {
            ApiError::new(
                ResponseError::InvalidReplicaAssignment,
                format!("No live broker in the replica list {replicas:?}."),
            )
        })?;
    Ok(MetadataRecord::Partition {
        topic_id,
        partition,
        replicas: state.replicas,
        isr: state.isr,
        leader: state.leader,
        leader_epoch: state.leader_epoch,
        partition_epoch: state.partition_epoch,
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
    })
}

/// Where placement starts its round-robin: random, so that the leaders of single-partition
/// topics spread over the brokers.
fn placement_start() -> usize {
    Uuid::new_v4().as_u128() as usize
}

impl Controller {
    /// Opens the metadata quorum in `data_dir` (`__cluster_metadata-0`) and starts its driver.
    /// A one-voter quorum elects itself and applies its whole log before this returns; a
    /// node of a larger quorum catches up in the background. Changes applied reach the
    /// subscriber ([`Controller::subscribe`]), the replay first.
    pub fn open(
        data_dir: &Path,
        node_id: i32,
        broker_properties: Properties,
        quorum_config: QuorumConfig,
    ) -> io::Result<Controller> {
        Controller::open_with_space(data_dir, node_id, broker_properties, quorum_config, None)
    }

    /// [`Self::open`] on a log directory whose `space` is watched: the metadata log may use
    /// its reserve, and no topic or partition is created while it is full.
    pub fn open_with_space(
        data_dir: &Path,
        node_id: i32,
        broker_properties: Properties,
        quorum_config: QuorumConfig,
        space: Option<Arc<LogDirSpace>>,
    ) -> io::Result<Controller> {
        let dir = data_dir.join(format!("{METADATA_TOPIC}-0"));
        let single = quorum_config.is_single_node();
        let quorum = Quorum::open(&dir, quorum_config, space.clone())?;
        if single {
            let end = quorum.status().log_end_offset;
            if !quorum.wait_active(end, Duration::from_secs(60)) {
                return Err(io::Error::other("metadata log replay timed out"));
            }
        }
        let image = quorum.image();
        tracing::info!(
            applied_offset = image.applied_offset,
            topics = image.topics.len(),
            "replayed metadata log"
        );
        Ok(Controller {
            node_id,
            broker_properties,
            quorum,
            peers: Mutex::new(BTreeMap::new()),
            commit_lock: Mutex::new(()),
            heartbeats: Mutex::new(registration::HeartbeatTimes::default()),
            space,
        })
    }

    /// Refuses what would need new space in the log directory while it is full: a topic or
    /// partitions (their segment files), KAFKA_STORAGE_ERROR, which clients retry. Smaller
    /// metadata records still commit (into the reserve if need be).
    fn check_space(&self) -> Result<(), ApiError> {
        match &self.space {
            Some(space) => space.admit_new_files().map_err(|error| {
                ApiError::new(ResponseError::KafkaStorageError, error.to_string())
            }),
            None => Ok(()),
        }
    }

    /// Takes the commit lock. Its holder may wait seconds for the quorum, so waiting for it
    /// hands the tokio worker off first ([`quorum::blocking`]): workers blocked on this lock
    /// would otherwise starve the very tasks (quorum fetches from peers) the commit waits for.
    ///
    /// The holder then builds its records against the image. A proposal of an earlier holder
    /// that timed out may still commit; while its fate is unknown (checked here, not waited
    /// for: most holders propose nothing) the holder's commit is refused
    /// ([`Quorum::propose_and_wait`]).
    pub(crate) fn lock_commits(&self) -> std::sync::MutexGuard<'_, ()> {
        let guard = quorum::blocking(|| self.commit_lock.lock().expect("commit lock"));
        self.quorum.poll_resolved();
        guard
    }

    /// Whether metadata changes are made here: a one-voter quorum, or the active controller.
    /// Anyone else forwards them ([`Controller::call_active`]).
    pub fn is_local(&self) -> bool {
        self.quorum.config().is_single_node() || self.quorum.is_active()
    }

    /// The client for controller `id` at `address` (one per node, reused).
    /// This node's id.
    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    pub fn peer(&self, id: i32, address: &str) -> peer::PeerClient {
        let mut peers = self.peers.lock().expect("peers lock");
        let client = peers
            .entry(id)
            .or_insert_with(|| peer::PeerClient::new(address, format!("dlog-{}", self.node_id)));
        if client.address() != address {
            *client = peer::PeerClient::new(address, format!("dlog-{}", self.node_id));
        }
        client.clone()
    }

    /// Waits (at most `wait`) until the active controller is known: this node, or a peer to
    /// send to. The one way every forwarder finds the active controller.
    pub async fn active_controller(&self, wait: Duration) -> ActiveController {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self.quorum.is_active() {
                return ActiveController::Here;
            }
            match self.quorum.active_controller() {
                Some((id, Some(address))) if id != self.node_id => {
                    return ActiveController::Peer(id, self.peer(id, &address))
                }
                _ if tokio::time::Instant::now() >= deadline || self.quorum.status().stopped => {
                    return ActiveController::Unknown
                }
                _ => tokio::time::sleep(ACTIVE_CONTROLLER_POLL).await,
            }
        }
    }

    /// Sends `request` to the active controller (waiting a little for one to be elected) and
    /// returns its answer; blocks this thread, boundedly (for sync callers such as
    /// auto-topic-creation and producer-id blocks on a node that is not the controller).
    pub fn call_active<R>(&self, version: i16, request: &R) -> Result<R::Response, ApiError>
    where
        R: kafka_protocol::protocol::Request + kafka_protocol::protocol::Encodable,
        R::Response: kafka_protocol::protocol::Decodable,
    {
        let not_controller = |why: String| ApiError::new(ResponseError::NotController, why);
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| not_controller("no runtime to forward from".into()))?;
        quorum::blocking(|| {
            handle.block_on(async {
                match self.active_controller(ACTIVE_CONTROLLER_WAIT).await {
                    ActiveController::Peer(id, peer) => peer
                        .send(version, request)
                        .await
                        .map_err(|e| not_controller(format!("forwarding to controller {id}: {e}"))),
                    ActiveController::Here | ActiveController::Unknown => Err(not_controller(
                        "No other active controller is known.".into(),
                    )),
                }
            })
        })
    }

    /// CreateTopics for one topic, forwarded to the active controller; returns once this
    /// node's image has the topic (bounded).
    pub fn forward_create_topic(
        &self,
        topic: &NewTopic,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        use kafka_protocol::messages::create_topics_request::{
            CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
        };
        use kafka_protocol::messages::{BrokerId, CreateTopicsRequest, TopicName};
        use kafka_protocol::protocol::StrBytes;
        let creatable = CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.name.clone())))
            .with_num_partitions(topic.partition_count)
            .with_replication_factor(topic.replication_factor)
            .with_assignments(
                topic
                    .assignments
                    .iter()
                    .map(|(partition, replicas)| {
                        CreatableReplicaAssignment::default()
                            .with_partition_index(*partition)
                            .with_broker_ids(replicas.iter().map(|b| BrokerId(*b)).collect())
                    })
                    .collect(),
            )
            .with_configs(
                topic
                    .configs
                    .iter()
                    .map(|(name, value)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(name.clone()))
                            .with_value(Some(StrBytes::from_string(value.clone())))
                    })
                    .collect(),
            );
        let request = CreateTopicsRequest::default()
            .with_topics(vec![creatable])
            .with_timeout_ms(COMMIT_TIMEOUT.as_millis() as i32)
            .with_validate_only(validate_only);
        let response = self.call_active(7, &request)?;
        let result = response.topics.first().ok_or_else(|| {
            ApiError::new(
                ResponseError::UnknownServerError,
                "empty CreateTopics answer",
            )
        })?;
        if result.error_code != 0 {
            let error = ResponseError::try_from_code(result.error_code)
                .unwrap_or(ResponseError::UnknownServerError);
            let message = result
                .error_message
                .as_ref()
                .map_or_else(String::new, |m| m.to_string());
            return Err(ApiError::new(error, message));
        }
        if !validate_only {
            // The commit reaches this node's image a moment later: wait for it (bounded).
            quorum::blocking(|| {
                let deadline = std::time::Instant::now() + Duration::from_secs(2);
                while !self.image().topics.contains_key(&topic.name)
                    && std::time::Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
        }
        Ok(())
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.quorum.image()
    }

    pub fn quorum(&self) -> &Quorum {
        &self.quorum
    }

    /// Sets the one receiver of applied changes (see [`Quorum::subscribe`]).
    pub fn subscribe(&self, subscriber: quorum::Subscriber) {
        self.quorum.subscribe(subscriber)
    }

    pub fn broker_properties(&self) -> &Properties {
        &self.broker_properties
    }

    /// Proposes `records` as one entry (atomically) and waits until it committed and was
    /// applied (the subscriber saw the changes before this returns). Callers hold
    /// `commit_lock` from validation to here.
    fn commit(&self, records: &[MetadataRecord]) -> Result<(), ApiError> {
        self.commit_within(records, COMMIT_TIMEOUT)
    }

    /// [`Self::commit`], waiting up to `timeout`: a commit that creates many partitions is
    /// applied (their logs created here) before it returns, which takes longer than a small one.
    fn commit_within(&self, records: &[MetadataRecord], timeout: Duration) -> Result<(), ApiError> {
        assert!(!records.is_empty(), "empty metadata commit");
        let data = quorum::encode_entry_records(records);
        match self.quorum.propose_and_wait(data, timeout) {
            Ok(()) => Ok(()),
            Err(ProposeFailure::NotController { leader_id }) => Err(ApiError::new(
                ResponseError::NotController,
                format!("This node is not the active controller (leader: {leader_id:?})."),
            )),
            Err(ProposeFailure::Timeout) => Err(ApiError::new(
                ResponseError::RequestTimedOut,
                "The metadata change did not commit in time (no quorum?).",
            )),
            Err(ProposeFailure::TooLarge) => Err(ApiError::new(
                ResponseError::PolicyViolation,
                "The metadata change is too large.",
            )),
        }
    }

    /// Validates and (unless `validate_only`) creates a topic.
    pub fn create_topic(&self, topic: &NewTopic, validate_only: bool) -> Result<(), ApiError> {
        let _guard = self.lock_commits();
        let records = self.create_topic_records(topic)?;
        if validate_only {
            return Ok(());
        }
        self.commit(&records)
    }

    /// Validates and (unless `validate_only`) creates several topics, as one CreateTopics asks:
    /// their records go in as few commits (Raft entries, fsyncs) as `RECORDS_PER_COMMIT_MAX`
    /// allows. One outcome per topic; a topic that fails validation does not stop the others.
    /// Each commit waits up to `timeout` (the request's, at least [`COMMIT_TIMEOUT`]).
    pub fn create_topics(
        &self,
        topics: &[NewTopic],
        validate_only: bool,
        timeout: Duration,
    ) -> Vec<Result<(), ApiError>> {
        let timeout = timeout.clamp(COMMIT_TIMEOUT, CREATE_TOPICS_TIMEOUT_MAX);
        let _guard = self.lock_commits();
        let mut outcomes: Vec<Result<(), ApiError>> = Vec::with_capacity(topics.len());
        // Names in this request, '.' and '_' folded: two topics of one request may collide
        // with each other as well as with existing ones.
        let mut normalized_names = std::collections::HashSet::new();
        let mut pending: Vec<usize> = Vec::new();
        let mut records: Vec<MetadataRecord> = Vec::new();
        for (index, topic) in topics.iter().enumerate() {
            let outcome = match normalized_names.insert(topic.name.replace('.', "_")) {
                false => Err(ApiError::new(
                    ResponseError::InvalidTopicException,
                    format!(
                        "Topic '{}' collides with another topic of the request.",
                        topic.name
                    ),
                )),
                true => self.create_topic_records(topic),
            };
            match outcome {
                Ok(topic_records) => {
                    records.extend(topic_records);
                    pending.push(index);
                    outcomes.push(Ok(()));
                }
                Err(error) => outcomes.push(Err(error)),
            }
            let last = index + 1 == topics.len();
            if !pending.is_empty() && (records.len() >= RECORDS_PER_COMMIT_MAX || last) {
                if !validate_only {
                    if let Err(error) = self.commit_within(&records, timeout) {
                        for &done in &pending {
                            outcomes[done] = Err(error.clone());
                        }
                    }
                }
                records.clear();
                pending.clear();
            }
        }
        outcomes
    }

    fn create_topic_records(&self, topic: &NewTopic) -> Result<Vec<MetadataRecord>, ApiError> {
        validate_topic_name(&topic.name)?;
        self.check_space()?;
        let image = self.image();
        if image.topics.contains_key(&topic.name) {
            return Err(ApiError::new(
                ResponseError::TopicAlreadyExists,
                format!("Topic '{}' already exists.", topic.name),
            ));
        }
        let normalized = topic.name.replace('.', "_");
        if let Some(existing) = image
            .topics
            .keys()
            .find(|existing| existing.replace('.', "_") == normalized)
        {
            return Err(ApiError::new(
                ResponseError::InvalidTopicException,
                format!(
                    "Topic '{}' collides with existing topic: {existing}",
                    topic.name
                ),
            ));
        }
        let assignments: BTreeMap<i32, Vec<i32>> = if topic.assignments.is_empty() {
            let partition_count = match topic.partition_count {
                -1 => self
                    .broker_properties
                    .get_i64(crate::config::NUM_PARTITIONS) as i32,
                count => count,
            };
            if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partition_count) {
                return Err(ApiError::new(
                    ResponseError::InvalidPartitions,
                    format!("Number of partitions must be between 1 and {PARTITIONS_PER_TOPIC_MAX}, got {partition_count}."),
                ));
            }
            let replication_factor = match topic.replication_factor {
                -1 => self
                    .broker_properties
                    .get_i64(crate::config::DEFAULT_REPLICATION_FACTOR)
                    as i16,
                factor => factor,
            };
            placement::place(
                &image,
                partition_count as usize,
                replication_factor,
                placement_start(),
            )?
            .into_iter()
            .enumerate()
            .map(|(index, replicas)| (index as i32, replicas))
            .collect()
        } else {
            if topic.partition_count != -1 || topic.replication_factor != -1 {
                return Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    "Both numPartitions or replicationFactor and replicasAssignments were set.",
                ));
            }
            let expected: Vec<i32> = (0..topic.assignments.len() as i32).collect();
            if topic.assignments.keys().copied().collect::<Vec<_>>() != expected
                || topic.assignments.len() as i32 > PARTITIONS_PER_TOPIC_MAX
            {
                return Err(ApiError::new(
                    ResponseError::InvalidReplicaAssignment,
                    "Partitions must be numbered 0..n.",
                ));
            }
            for replicas in topic.assignments.values() {
                placement::validate_assignment(&image, replicas)?;
            }
            topic.assignments.clone()
        };
        LogConfig::validate_overrides(&topic.configs)
            .map_err(|e| ApiError::new(ResponseError::InvalidConfig, e.to_string()))?;
        let topic_id = Uuid::new_v4();
        let mut records = vec![MetadataRecord::Topic {
            name: topic.name.clone(),
            topic_id,
        }];
        for (name, value) in &topic.configs {
            records.push(MetadataRecord::Config {
                resource: ConfigResource::Topic,
                resource_name: topic.name.clone(),
                name: name.clone(),
                value: Some(value.clone()),
            });
        }
        for (partition, replicas) in assignments {
            records.push(new_partition_record(
                &image, topic_id, partition, &replicas,
            )?);
        }
        Ok(records)
    }

    /// Deletes a topic by name.
    pub fn delete_topic(&self, name: &str) -> Result<(), ApiError> {
        let _guard = self.lock_commits();
        let image = self.image();
        let topic = image.topics.get(name).ok_or_else(|| {
            ApiError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("Topic '{name}' does not exist."),
            )
        })?;
        if name.starts_with("__") {
            return Err(ApiError::new(
                ResponseError::InvalidTopicException,
                "Internal topics cannot be deleted.",
            ));
        }
        self.commit(&[MetadataRecord::RemoveTopic { topic_id: topic.id }])
    }

    /// Allocates the next block of `block_size` producer ids (Kafka's AllocateProducerIds):
    /// returns the first id of the block. The block is durable in the metadata log before any
    /// of its ids is used, so ids are never reused after a restart.
    pub fn allocate_producer_ids(&self, block_size: i64) -> Result<i64, ApiError> {
        assert!(block_size > 0, "empty producer id block");
        if !self.is_local() {
            let request = kafka_protocol::messages::AllocateProducerIdsRequest::default()
                .with_broker_id(kafka_protocol::messages::BrokerId(self.node_id))
                .with_broker_epoch(-1);
            let response = self.call_active(0, &request)?;
            if response.error_code != 0 {
                let error = ResponseError::try_from_code(response.error_code)
                    .unwrap_or(ResponseError::UnknownServerError);
                return Err(ApiError::new(error, "AllocateProducerIds failed"));
            }
            if i64::from(response.producer_id_len) != block_size {
                return Err(ApiError::new(
                    ResponseError::UnknownServerError,
                    "the controller handed out a block of another size",
                ));
            }
            return Ok(response.producer_id_start.0);
        }
        let _guard = self.lock_commits();
        let first = self.image().next_producer_id;
        let Some(next) = first.checked_add(block_size) else {
            return Err(ApiError::new(
                ResponseError::UnknownServerError,
                "producer ids exhausted",
            ));
        };
        self.commit(&[MetadataRecord::ProducerIds {
            broker_id: self.node_id,
            broker_epoch: 0,
            next_producer_id: next,
        }])?;
        Ok(first)
    }

    /// The typed log config of a topic in `image`: topic overrides over dynamic broker
    /// configs over the static ones.
    pub fn log_config(&self, image: &MetadataImage, topic: &image::TopicImage) -> LogConfig {
        LogConfig::new(&self.effective_properties(image), &topic.configs)
    }

    /// The broker properties in force: static ones with the dynamic configs of `image`.
    pub fn effective_properties(&self, image: &MetadataImage) -> Properties {
        let names = crate::config::TOPIC_CONFIGS
            .iter()
            .map(|c| c.broker_default)
            .chain(
                crate::config::DYNAMIC_BROKER_ONLY_CONFIGS
                    .iter()
                    .map(|key| key.name()),
            );
        let dynamic: Vec<(&str, &str)> = names
            .filter_map(|name| {
                image
                    .dynamic_broker_config(self.node_id, name)
                    .map(|(value, _)| (name, value))
            })
            .collect();
        self.broker_properties.with_overrides(dynamic)
    }

    /// CreatePartitions: grows `topic` to `count` partitions.
    pub fn create_partitions(
        &self,
        topic_name: &str,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let _guard = self.lock_commits();
        self.check_space()?;
        let image = self.image();
        let topic = image.topics.get(topic_name).ok_or_else(|| {
            ApiError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("This server does not host this topic-partition: {topic_name}."),
            )
        })?;
        let current = topic.partition_count();
        if count < current {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                format!("Topic currently has {current} partitions, which is higher than the requested {count}."),
            ));
        }
        if count == current {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                format!("Topic already has {current} partitions."),
            ));
        }
        if count > PARTITIONS_PER_TOPIC_MAX {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                format!(
                    "Number of partitions must be at most {PARTITIONS_PER_TOPIC_MAX}, got {count}."
                ),
            ));
        }
        let added = (count - current) as usize;
        // New partitions get the topic's replication factor: that of its first partition.
        let replication_factor = topic
            .partitions
            .get(&0)
            .map_or(1, |partition| partition.replicas.len() as i16);
        let replica_lists = match assignments {
            None => placement::place(&image, added, replication_factor, placement_start())?,
            Some(lists) => {
                if lists.len() != added {
                    return Err(ApiError::new(
                        ResponseError::InvalidReplicaAssignment,
                        format!("Increasing the number of partitions by {added} but {} assignments provided.", lists.len()),
                    ));
                }
                for replicas in &lists {
                    placement::validate_assignment(&image, replicas)?;
                }
                lists
            }
        };
        if validate_only {
            return Ok(());
        }
        let records = replica_lists
            .iter()
            .enumerate()
            .map(|(index, replicas)| {
                new_partition_record(&image, topic.id, current + index as i32, replicas)
            })
            .collect::<Result<Vec<MetadataRecord>, ApiError>>()?;
        self.commit(&records)
    }

    /// AlterConfigs (`replace_all`: every override not set by `ops` is removed) and
    /// IncrementalAlterConfigs on one resource, validated as a whole.
    pub fn alter_configs(
        &self,
        resource: ConfigResource,
        resource_name: &str,
        ops: &[ConfigOp],
        replace_all: bool,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let _guard = self.lock_commits();
        let image = self.image();
        let invalid = |message: String| ApiError::new(ResponseError::InvalidConfig, message);
        let current: BTreeMap<String, String> = match resource {
            ConfigResource::Topic => image
                .topics
                .get(resource_name)
                .ok_or_else(|| {
                    ApiError::new(
                        ResponseError::UnknownTopicOrPartition,
                        format!("Topic {resource_name} does not exist."),
                    )
                })?
                .configs
                .clone(),
            ConfigResource::Broker => {
                // Any broker's: a client sends a broker's configs to that broker, which
                // forwards them here (kafka-reassign-partitions --verify clears the
                // throttles of every broker that way).
                let is_broker_id = resource_name.parse::<i32>().is_ok_and(|id| id >= 0);
                if !resource_name.is_empty() && !is_broker_id {
                    return Err(ApiError::new(
                        ResponseError::InvalidRequest,
                        format!("Unexpected broker id {resource_name}."),
                    ));
                }
                image
                    .broker_configs
                    .get(resource_name)
                    .cloned()
                    .unwrap_or_default()
            }
        };
        let mut updated = if replace_all {
            BTreeMap::new()
        } else {
            current.clone()
        };
        let properties = self.effective_properties(&image);
        for op in ops {
            // A list op on a config without an override starts from the value in force, as
            // Kafka does (APPEND compact to the default `delete` gives `delete,compact`).
            let list_of = |map: &BTreeMap<String, String>| -> Vec<String> {
                let in_force = match resource {
                    ConfigResource::Topic => crate::config::topic_config(&op.name)
                        .map(|c| properties.effective(c.broker_default)),
                    ConfigResource::Broker => crate::config::broker_property(&op.name)
                        .map(|_| properties.effective(&op.name)),
                };
                map.get(&op.name)
                    .cloned()
                    .or(in_force)
                    .map(|v| {
                        v.split(',')
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty())
                            .collect()
                    })
                    .unwrap_or_default()
            };
            match &op.change {
                ConfigChange::Set(value) => {
                    updated.insert(op.name.clone(), value.clone());
                }
                ConfigChange::Delete => {
                    updated.remove(&op.name);
                }
                ConfigChange::Append(value) | ConfigChange::Subtract(value) => {
                    if !is_list_config(resource, &op.name) {
                        return Err(invalid(format!(
                            "Config value append/subtract is not allowed for config key {} (not a list type).",
                            op.name
                        )));
                    }
                    let mut items = list_of(&updated);
                    let given = value
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty());
                    if matches!(op.change, ConfigChange::Append(_)) {
                        for item in given {
                            if !items.contains(&item) {
                                items.push(item);
                            }
                        }
                    } else {
                        let removed: Vec<String> = given.collect();
                        items.retain(|item| !removed.contains(item));
                    }
                    updated.insert(op.name.clone(), items.join(","));
                }
            }
        }
        match resource {
            ConfigResource::Topic => {
                LogConfig::validate_overrides(&updated).map_err(|e| invalid(e.to_string()))?
            }
            ConfigResource::Broker => {
                for (name, value) in &updated {
                    if !is_dynamic_broker_config(name) {
                        return Err(invalid(format!(
                            "Cannot update these configs dynamically: Set({name})"
                        )));
                    }
                    let property = crate::config::broker_property(name)
                        .expect("dynamic configs are broker properties");
                    crate::config::validate(property, value).map_err(|e| invalid(e.to_string()))?;
                }
            }
        }
        let mut records = Vec::new();
        let names: std::collections::BTreeSet<&String> =
            current.keys().chain(updated.keys()).collect();
        for name in names {
            let after = updated.get(name);
            if current.get(name) != after {
                records.push(MetadataRecord::Config {
                    resource,
                    resource_name: resource_name.to_string(),
                    name: name.clone(),
                    value: after.cloned(),
                });
            }
        }
        if validate_only || records.is_empty() {
            return Ok(());
        }
        self.commit(&records)
    }

    /// Resigns leadership (if held) and stops the quorum driver.
    pub fn shutdown(&self) -> io::Result<()> {
        self.quorum.shutdown();
        Ok(())
    }
}
