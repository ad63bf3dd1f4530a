//! The node: configuration, metadata (controller and image), partition logs, and the state
//! handlers share. Built once at start; handlers receive `&Broker`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use kafka_protocol::ResponseError;
use tokio::sync::{watch, Notify};

use crate::clock::now_ms;
use crate::config::BrokerConfig;
use crate::controller::image::{Change, MetadataImage};
use crate::controller::quorum::QuorumConfig;
use crate::controller::{ApiError, Controller, NewTopic};
use crate::coordinator::producer_ids::ProducerIdManager;
use crate::coordinator::transaction::{TransactionCoordinator, TRANSACTION_STATE_TOPIC};
use crate::coordinator::GroupCoordinator;
use crate::handlers::fetch::FetchSessions;
use crate::log::cleaner::CleanerSettings;
use crate::log::LogManager;

/// The quorum driver's clock: Raft timeouts are counted in these.
pub const QUORUM_TICK_MS: u64 = 50;

pub struct Broker {
    pub config: BrokerConfig,
    pub cluster_id: String,
    pub controller: Controller,
    pub logs: LogManager,
    /// Woken after every append, so that long-polling fetches re-check without polling.
    pub data_arrived: Notify,
    pub fetch_sessions: FetchSessions,
    /// Consumer groups and committed offsets (`__consumer_offsets`).
    pub groups: GroupCoordinator,
    /// Hands out producer ids (InitProducerId) from blocks the controller allocates.
    pub producer_ids: ProducerIdManager,
    /// Transactional ids and their transactions (`__transaction_state`).
    pub transactions: TransactionCoordinator,
    /// Flips to true when the node begins shutting down.
    pub shutdown: watch::Sender<bool>,
    /// Registration with the controller and heartbeats.
    pub lifecycle: crate::lifecycle::BrokerLifecycle,
}

/// The cluster id the configuration asks for: `cluster.id`, else one derived from the voter
/// set (so that nodes started with the same `controller.quorum.voters` agree), else none (a
/// single node makes up its own on first start).
pub fn configured_cluster_id(config: &BrokerConfig) -> Option<String> {
    let explicit = config.properties.get("cluster.id").trim();
    if !explicit.is_empty() {
        return Some(explicit.to_string());
    }
    if config.quorum_voters.is_empty() {
        return None;
    }
    let mut voters: Vec<String> = config
        .quorum_voters
        .iter()
        .map(|(id, address)| format!("{id}@{address}"))
        .collect();
    voters.sort();
    let text = format!("dlog-cluster:{}", voters.join(","));
    // FNV-1a, twice with different offsets: 16 stable bytes.
    let fnv = |basis: u64| {
        text.bytes().fold(basis, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    let mut bytes = fnv(0xcbf2_9ce4_8422_2325).to_be_bytes().to_vec();
    bytes.extend_from_slice(&fnv(0x6c62_272e_07bb_0142).to_be_bytes());
    Some(base64_url(&bytes))
}

/// Reads `meta.properties` (Kafka's format), creating it on first start with `wanted` or a
/// new random cluster id. A stored id that differs from `wanted` is an error: this data
/// belongs to another cluster.
fn load_or_create_cluster_id(
    data_dir: &Path,
    node_id: i32,
    wanted: Option<String>,
) -> Result<String> {
    let path = data_dir.join("meta.properties");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let stored_node_id = text
            .lines()
            .find_map(|l| l.strip_prefix("node.id="))
            .map(str::trim);
        if let Some(stored) = stored_node_id {
            if stored != node_id.to_string() {
                anyhow::bail!(
                    "{} belongs to node.id {stored}, this node is {node_id}",
                    path.display()
                );
            }
        }
        let stored = text
            .lines()
            .find_map(|line| {
                line.strip_prefix("cluster.id=")
                    .map(|id| id.trim().to_string())
            })
            .with_context(|| format!("{} has no cluster.id", path.display()))?;
        if let Some(wanted) = wanted.filter(|w| *w != stored) {
            anyhow::bail!(
                "{} has cluster.id {stored}, but this node is configured for cluster {wanted} \
                 (INCONSISTENT_CLUSTER_ID)",
                path.display()
            );
        }
        return Ok(stored);
    }
    // Kafka's cluster ids are 16 random bytes in URL-safe base64 without padding (22 chars).
    let cluster_id = wanted.unwrap_or_else(|| base64_url(uuid::Uuid::new_v4().as_bytes()));
    let text = format!("#dlog\nversion=1\ncluster.id={cluster_id}\nnode.id={node_id}\n");
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(cluster_id)
}

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut output = String::new();
    for group in bytes.chunks(3) {
        let value = group
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for index in 0..=group.len() {
            output.push(ALPHABET[((value >> (18 - 6 * index)) & 0x3f) as usize] as char);
        }
    }
    output
}

impl Broker {
    /// Opens storage, replays metadata and opens every partition log.
    pub fn open(config: BrokerConfig) -> Result<Arc<Broker>> {
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let cluster_id =
            load_or_create_cluster_id(&data_dir, config.node_id, configured_cluster_id(&config))?;
        let logs = LogManager::open(&data_dir).context("opening log directory")?;
        let properties = &config.properties;
        let quorum_config = QuorumConfig {
            node_id: config.node_id,
            voters: config.quorum_voters.clone(),
            cluster_id: cluster_id.clone(),
            tick_ms: QUORUM_TICK_MS,
            election_timeout_ms: properties.get_i64("controller.quorum.election.timeout.ms") as u64,
            fetch_timeout_ms: properties.get_i64("controller.quorum.fetch.timeout.ms") as u64,
            snapshot_interval_bytes: properties
                .get_i64("metadata.log.max.record.bytes.between.snapshots")
                as u64,
        };
        let controller = Controller::open(
            &data_dir,
            config.node_id,
            config.properties.clone(),
            quorum_config,
        )
        .context("opening metadata log")?;
        let (shutdown, _) = watch::channel(false);
        let properties = config.properties.clone();
        let broker = Arc::new(Broker {
            config,
            cluster_id,
            controller,
            logs,
            data_arrived: Notify::new(),
            fetch_sessions: FetchSessions::default(),
            groups: GroupCoordinator::new(&properties),
            producer_ids: ProducerIdManager::default(),
            transactions: TransactionCoordinator::default(),
            shutdown,
            lifecycle: Default::default(),
        });
        // Every change applied to the image (the replay now, commits from anywhere later)
        // opens or deletes this node's logs. A controller-only node holds no partitions.
        if broker.config.roles.broker {
            let weak = Arc::downgrade(&broker);
            let failed: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
            let first_failure = failed.clone();
            // The replay is delivered on this thread, inside `subscribe`.
            broker.controller.subscribe(Box::new(move |changes| {
                let Some(broker) = weak.upgrade() else { return };
                if let Err(error) = broker.publish(changes) {
                    tracing::error!(%error, "applying metadata changes to the logs failed");
                    first_failure
                        .lock()
                        .expect("failure slot")
                        .get_or_insert(error.to_string());
                }
            }));
            let failure = failed.lock().expect("failure slot").take();
            if let Some(error) = failure {
                anyhow::bail!("opening partition logs: {error}");
            }
        } else {
            // A controller-only node keeps the image and no partitions.
            broker.controller.subscribe(Box::new(|_| {}));
        }
        // A one-node cluster registers (and is unfenced) before its listener opens, so its
        // first Metadata lists it; nodes of a larger quorum register in `run_lifecycle`.
        if broker.config.roles.broker && broker.controller.is_local() {
            broker
                .register_and_heartbeat(false)
                .map_err(|e| anyhow::anyhow!("registering broker: {}", e.message))?;
        }
        broker
            .groups
            .load(&broker)
            .context("loading consumer groups from __consumer_offsets")?;
        // Transactions a crash left prepared are completed now; open ones time out later.
        if broker.image().topics.contains_key(TRANSACTION_STATE_TOPIC) {
            broker
                .transactions
                .ensure_ready(&broker)
                .map_err(|e| anyhow::anyhow!("loading transaction state: {}", e.message))?;
        }
        Ok(broker)
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.controller.image()
    }

    /// Why a partition has no log here: it exists on another broker (NOT_LEADER_OR_FOLLOWER,
    /// so the client refreshes metadata and goes there) or it does not exist at all.
    pub fn missing_partition_error(&self, topic: &str, partition: i32) -> ResponseError {
        let exists = self
            .image()
            .topics
            .get(topic)
            .is_some_and(|t| t.partitions.contains_key(&partition));
        match exists {
            true => ResponseError::NotLeaderOrFollower,
            false => ResponseError::UnknownTopicOrPartition,
        }
    }

    /// Applies metadata changes to local storage: opens logs of new or grown topics (with
    /// their current config), deletes logs of removed ones.
    pub fn publish(&self, changes: &[Change]) -> std::io::Result<()> {
        let image = self.image();
        let mut done = std::collections::HashSet::new();
        // Opens the logs of the topic's partitions hosted here (or of new ones) with its
        // current effective config.
        let node_id = self.config.node_id;
        let open = |topic: &crate::controller::image::TopicImage| {
            let config = Arc::new(self.controller.log_config(&image, topic));
            let hosted: Vec<i32> = topic
                .partitions
                .iter()
                .filter(|(_, partition)| partition.replicas.contains(&node_id))
                .map(|(index, _)| *index)
                .collect();
            self.logs
                .ensure_topic(&topic.name, &topic.id.to_string(), &hosted, config)
        };
        for change in changes {
            match change {
                Change::BrokerConfigChanged => {
                    for topic in image.topics.values() {
                        if done.insert(topic.name.clone()) {
                            open(topic)?;
                        }
                    }
                }
                Change::TopicChanged(name) if done.insert(name.clone()) => {
                    if let Some(topic) = image.topics.get(name) {
                        open(topic)?;
                    }
                }
                Change::TopicRemoved(name) => {
                    done.remove(name);
                    self.logs.delete_topic(name)?;
                }
                Change::TopicChanged(_) | Change::BrokersChanged => {}
            }
        }
        Ok(())
    }

    /// Creates a topic through the controller and opens its logs.
    pub fn create_topic(&self, topic: &NewTopic, validate_only: bool) -> Result<(), ApiError> {
        if !self.controller.is_local() {
            // Auto-creation (Metadata, groups, transactions) on a node that is not the active
            // controller: ask the controller; the commit comes back through the metadata log.
            return self.controller.forward_create_topic(topic, validate_only);
        }
        let changes = self.controller.create_topic(topic, validate_only)?;
        self.publish(&changes).map_err(|e| {
            ApiError::new(
                kafka_protocol::ResponseError::KafkaStorageError,
                e.to_string(),
            )
        })
    }

    /// Creates several topics through the controller, batched into few metadata commits
    /// (forwarded one by one when this node is not the active controller).
    pub fn create_topics(
        &self,
        topics: &[NewTopic],
        validate_only: bool,
    ) -> Vec<Result<(), ApiError>> {
        if !self.controller.is_local() {
            return topics
                .iter()
                .map(|topic| self.create_topic(topic, validate_only))
                .collect();
        }
        self.controller.create_topics(topics, validate_only)
    }

    pub fn delete_topic(&self, name: &str) -> Result<(), ApiError> {
        let changes = self.controller.delete_topic(name)?;
        self.publish(&changes).map_err(|e| {
            ApiError::new(
                kafka_protocol::ResponseError::KafkaStorageError,
                e.to_string(),
            )
        })
    }

    /// Periodic maintenance, once a second until shutdown: flush policy, retention, deletion
    /// of retired segments, checkpoints.
    pub async fn run_maintenance(self: Arc<Broker>) {
        let cleaner = tokio::spawn(self.clone().run_cleaner());
        self.clone().run_log_maintenance().await;
        // The cleaner finishes the log it is on before the logs are closed.
        let _ = cleaner.await;
    }

    async fn run_log_maintenance(self: Arc<Broker>) {
        let mut shutdown = self.shutdown.subscribe();
        let checkpoint_interval_ms = self
            .config
            .properties
            .get_i64("log.flush.offset.checkpoint.interval.ms")
            .max(1000);
        let retention_check_interval_ms = self
            .config
            .properties
            .get_i64("log.retention.check.interval.ms");
        let mut last_checkpoint_ms = now_ms();
        let mut last_retention_check_ms = now_ms();
        let producer_expiration_ms = self.config.properties.get_i64("producer.id.expiration.ms");
        let producer_expiration_check_ms = self
            .config
            .properties
            .get_i64("producer.id.expiration.check.interval.ms");
        let mut last_producer_expiration_ms = now_ms();
        let transaction_check_ms = self
            .config
            .properties
            .get_i64("transaction.abort.timed.out.transaction.cleanup.interval.ms");
        let mut last_transaction_check_ms = now_ms();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
            let now = now_ms();
            for log in self.logs.all() {
                if let Err(error) = log.maybe_flush(now) {
                    tracing::error!(topic = log.topic(), partition = log.partition(), %error, "flush failed");
                }
            }
            if now - last_retention_check_ms >= retention_check_interval_ms {
                last_retention_check_ms = now;
                if let Err(error) = self.logs.enforce_retention(now) {
                    tracing::error!(%error, "retention failed");
                }
            }
            if let Err(error) = self.logs.delete_retired(now) {
                tracing::error!(%error, "deleting retired segments failed");
            }
            if now - last_transaction_check_ms >= transaction_check_ms {
                last_transaction_check_ms = now;
                self.transactions.abort_timed_out(&self, now);
                self.transactions.abort_hanging(&self);
            }
            if now - last_producer_expiration_ms >= producer_expiration_check_ms {
                last_producer_expiration_ms = now;
                for log in self.logs.all() {
                    let expired = log.expire_producers(now, producer_expiration_ms);
                    if expired > 0 {
                        tracing::debug!(
                            topic = log.topic(),
                            partition = log.partition(),
                            expired,
                            "expired producer ids"
                        );
                    }
                }
            }
            if now - last_checkpoint_ms >= checkpoint_interval_ms {
                last_checkpoint_ms = now;
                if let Err(error) = self.logs.flush_and_checkpoint(now) {
                    tracing::error!(%error, "writing checkpoints failed");
                }
            }
        }
    }

    /// The log cleaner (compaction): a pass over the compacted logs every
    /// `log.cleaner.backoff.ms`, on blocking threads, until shutdown. One pass runs at a time
    /// and cleans up to `log.cleaner.threads` logs in parallel; the dedupe buffer is split
    /// across the threads as Kafka splits it, and the io limit is shared by them.
    async fn run_cleaner(self: Arc<Broker>) {
        let properties = &self.config.properties;
        let threads = properties.get_i64("log.cleaner.threads");
        if !properties.get_bool("log.cleaner.enable") || threads == 0 {
            return;
        }
        let settings = CleanerSettings {
            dedupe_buffer_bytes: properties.get_i64("log.cleaner.dedupe.buffer.size") as u64
                / threads as u64,
            io_bytes_per_second_max: properties
                .get("log.cleaner.io.max.bytes.per.second")
                .parse()
                .expect("validated"),
            threads: threads as usize,
        };
        let backoff =
            Duration::from_millis(properties.get_i64("log.cleaner.backoff.ms").max(100) as u64);
        let mut shutdown = self.shutdown.subscribe();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            let broker = self.clone();
            let pass =
                tokio::task::spawn_blocking(move || broker.logs.clean_logs(now_ms(), settings))
                    .await;
            match pass {
                Ok(cleaned) => {
                    for (topic, partition, stats) in cleaned {
                        tracing::info!(
                            topic,
                            partition,
                            records_removed = stats.records_removed,
                            segments_rewritten = stats.segments_rewritten,
                            bytes_read = stats.bytes_read,
                            bytes_written = stats.bytes_written,
                            first_dirty_offset = stats.first_dirty_offset,
                            "cleaned log"
                        );
                    }
                }
                Err(error) => tracing::error!(%error, "log cleaner pass panicked"),
            }
        }
    }

    /// Clean shutdown of storage: flush, checkpoints, clean-shutdown marker.
    pub fn close(&self) -> std::io::Result<()> {
        self.controller.shutdown()?;
        self.logs.shutdown(now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_look_like_kafkas() {
        let id = base64_url(&[0xff; 16]);
        assert_eq!(id.len(), 22);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }
}
