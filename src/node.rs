//! The node: wiring only. Builds the owners of state (controller, replica layer,
//! coordinators) once at start, connects the metadata image to the replica layer and the
//! replica layer's leadership changes to the coordinator shards, implements the coordinators'
//! port ([`CoordinatorHost`]), and runs the periodic tasks. Handlers receive `&Node` and ask
//! its owners.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;

use crate::clock::now_ms;
use crate::config::BrokerConfig;
use crate::controller::image::{Change, MetadataImage};
use crate::controller::quorum::QuorumConfig;
use crate::controller::{ApiError, Controller, NewTopic};
use crate::coordinator::loader::{ShardChange, ShardLoader};
use crate::coordinator::producer_ids::ProducerIdManager;
use crate::coordinator::runtime::{self, CoordinatorHost, OpenTransaction, WriteError};
use crate::coordinator::transaction::{
    TransactionCoordinator, TransactionSettings, ADD_PARTITIONS_TO_TXN_BROKER_VERSION,
    WRITE_TXN_MARKERS_VERSION,
};
use crate::coordinator::GroupCoordinator;
use crate::log::cleaner::CleanerSettings;
use crate::log::log_dir_space::SpaceSettings;
use crate::log::LogManager;
use crate::replica::fetcher::{AddressOf, Fetchers};
use crate::replica::{IsrChange, LeadershipChange, ReplicaManager};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, WriteTxnMarkersRequest,
    WriteTxnMarkersResponse,
};

/// The quorum driver's clock: Raft timeouts are counted in these.
pub const QUORUM_TICK_MS: u64 = 50;
/// How long a coordinator write waits for the in-sync replicas before it fails (the client
/// retries with COORDINATOR_NOT_AVAILABLE).
pub const COORDINATOR_REPLICATION_TIMEOUT: Duration = Duration::from_secs(5);
/// How often replication looks for fetchers to start and ISR changes to ask for.
const REPLICATION_TICK: Duration = Duration::from_millis(100);

/// How long a starting node waits for the coordinator shards its replay queued.
const SHARD_LOADS_AT_START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Node {
    /// This node itself, for the tasks it spawns.
    this: std::sync::Weak<Node>,
    pub config: BrokerConfig,
    pub cluster_id: String,
    pub controller: Controller,
    /// Every hosted partition: its role, leader epoch, log, and the requests waiting on it.
    pub replicas: Arc<ReplicaManager>,
    /// One replica fetcher per leader this node follows partitions of.
    fetchers: Fetchers,
    /// Consumer groups and committed offsets (`__consumer_offsets`).
    pub groups: GroupCoordinator,
    /// Share groups' membership (KIP-932), in memory.
    pub share_groups: crate::coordinator::share_group::ShareGroupCoordinator,
    /// Share-partitions and share sessions of the partitions led here, in memory.
    pub share: crate::share::ShareManager,
    /// Hands out producer ids (InitProducerId) from blocks the controller allocates.
    pub producer_ids: ProducerIdManager,
    /// Transactional ids and their transactions (`__transaction_state`).
    pub transactions: TransactionCoordinator,
    /// Loads and unloads the coordinators' shards on its own thread, off the metadata path.
    shard_loader: Arc<ShardLoader>,
    /// Flips to true when the node begins shutting down.
    pub shutdown: watch::Sender<bool>,
    /// Registration with the controller and heartbeats.
    pub lifecycle: crate::lifecycle::BrokerLifecycle,
    /// What client connections may do (`authorizer.class.name`): every handler asks it
    /// through its request context.
    pub authorizer: Arc<dyn crate::security::Authorizer>,
    /// Byte-rate sensors of the clients with a quota (Produce and Fetch record into them).
    pub quotas: crate::security::quota::QuotaManager,
    /// The bytes of large requests being read or handled, across all connections
    /// (`queued.max.request.bytes`).
    pub request_memory: crate::server::request_memory::RequestMemory,
    /// Open connections per client address, across listeners (`max.connections.per.ip`).
    pub connection_quotas: Arc<crate::server::connection_quotas::ConnectionQuotas>,
}

/// The authorizer `authorizer.class.name` asks for: none (everything allowed), or Kafka's
/// StandardAuthorizer over the ACLs of the metadata image. Any other class is refused, so a
/// broker never starts open when the operator asked for protection.
fn build_authorizer(
    properties: &crate::config::Properties,
    quorum: crate::controller::quorum::Quorum,
) -> Result<Arc<dyn crate::security::Authorizer>> {
    use crate::security::acl::{StandardAuthorizer, STANDARD_AUTHORIZER_CLASS};
    let class = properties.get(crate::config::AUTHORIZER_CLASS_NAME).trim();
    if class.is_empty() {
        return Ok(Arc::new(crate::security::AllowAll));
    }
    if class != STANDARD_AUTHORIZER_CLASS {
        anyhow::bail!(
            "authorizer.class.name={class} is not supported (only {STANDARD_AUTHORIZER_CLASS})"
        );
    }
    let allow_if_no_acl = properties
        .get(crate::config::ALLOW_EVERYONE_IF_NO_ACL_FOUND)
        .trim()
        .eq_ignore_ascii_case("true");
    Ok(Arc::new(StandardAuthorizer::new(
        properties.get(crate::config::SUPER_USERS),
        allow_if_no_acl,
        Box::new(move || quorum.image().acls.clone()),
    )))
}

/// The cluster id the configuration asks for: `cluster.id`, else one derived from the voter
/// set (so that nodes started with the same `controller.quorum.voters` agree), else none (a
/// single node makes up its own on first start).
pub fn configured_cluster_id(config: &BrokerConfig) -> Option<String> {
    let explicit = config.properties.get(crate::config::CLUSTER_ID).trim();
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
    // Durably, before anything else is written: a node that lost power right after its first
    // start must find its identity again (a torn or missing file stops the next start).
    let temporary = path.with_extension("tmp");
    (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        std::io::Write::write_all(&mut file, text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        crate::log::checkpoint::sync_dir(data_dir)
    })()
    .with_context(|| format!("writing {}", path.display()))?;
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

impl Node {
    /// Opens storage, replays metadata and opens every partition log.
    pub fn open(config: BrokerConfig) -> Result<Arc<Node>> {
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        // The log directory first: it takes the directory's lock before anything is written.
        let space_settings = SpaceSettings::from_properties(&config.properties);
        let logs = LogManager::open_with_space(&data_dir, space_settings)
            .context("opening log directory")?;
        let cluster_id =
            load_or_create_cluster_id(&data_dir, config.node_id, configured_cluster_id(&config))?;
        let quorum_config = QuorumConfig::from_config(&config, cluster_id.clone(), QUORUM_TICK_MS);
        let controller = Controller::open_with_space(
            &data_dir,
            config.node_id,
            config.properties.clone(),
            quorum_config,
            Some(logs.space().clone()),
        )
        .context("opening metadata log")?;
        let authorizer = build_authorizer(&config.properties, controller.quorum().clone())?;
        let (shutdown, _) = watch::channel(false);
        let properties = config.properties.clone();
        let node_id = config.node_id;
        let replicas = ReplicaManager::new(node_id, logs)
            .context("reading replication-offset-checkpoint")?
            .with_replication_quota_settings(&properties)
            .with_replica_selector(&properties)
            .map_err(anyhow::Error::msg)?;
        let request_memory =
            crate::server::request_memory::RequestMemory::new(config.queued_request_bytes_max);
        let connection_quotas = Arc::new(crate::server::connection_quotas::ConnectionQuotas::new(
            config.connections_per_ip_max,
            &config.connections_per_ip_overrides,
        ));
        let broker = Arc::new_cyclic(|this| Node {
            this: this.clone(),
            config,
            cluster_id,
            controller,
            replicas: Arc::new(replicas),
            fetchers: Fetchers::default(),
            groups: GroupCoordinator::new(&properties),
            share_groups: crate::coordinator::share_group::ShareGroupCoordinator::new(
                crate::coordinator::share_group::ShareGroupSettings::from_properties(&properties),
            ),
            share: crate::share::ShareManager::new(crate::share::ShareSettings::from_properties(
                &properties,
            )),
            producer_ids: ProducerIdManager::default(),
            transactions: TransactionCoordinator::new(TransactionSettings::from_properties(
                &properties,
            )),
            shard_loader: Arc::default(),
            request_memory,
            connection_quotas,
            shutdown,
            lifecycle: Default::default(),
            authorizer,
            quotas: crate::security::quota::QuotaManager::new(
                crate::security::quota::QuotaSettings::from_properties(&properties),
            ),
        });
        // Every change applied to the image (the replay now, commits from anywhere later)
        // opens or deletes this node's logs. A controller-only node holds no partitions.
        if broker.config.roles.broker {
            broker.spawn_shard_loader()?;
            let weak = Arc::downgrade(&broker);
            let failed: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
            let first_failure = failed.clone();
            // The replay is delivered on this thread, inside `subscribe`.
            broker.controller.subscribe(Box::new(move |image, changes| {
                let Some(broker) = weak.upgrade() else { return };
                if let Err(error) = broker.publish(image, changes) {
                    // A partition that could not be opened for lack of space marks the log
                    // directory full: no further topic is created until space is back.
                    broker.replicas.logs().space().write_failed(&error);
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
            broker.controller.subscribe(Box::new(|_, _| {}));
        }
        // A one-node cluster registers (and is unfenced) before its listener opens, so its
        // first Metadata lists it; nodes of a larger quorum register in `run_lifecycle`.
        if broker.config.roles.broker && broker.controller.is_local() {
            broker
                .register_and_heartbeat(false)
                .map_err(|e| anyhow::anyhow!("registering broker: {}", e.message))?;
        }
        // The replay queued the coordinator shards of the partitions led here: loaded before
        // the listener opens, as the first requests expect. Transactions a crash left prepared
        // are completed now (a node of a larger quorum does it once it has caught up: see
        // `complete_prepared_if_running`); open ones time out later.
        if !broker.shard_loader.wait_idle(SHARD_LOADS_AT_START_TIMEOUT) {
            tracing::warn!("coordinator shards still loading as the node starts");
        }
        broker.complete_prepared_if_running();
        Ok(broker)
    }

    pub(crate) fn this(&self) -> Option<Arc<Node>> {
        self.this.upgrade()
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.controller.image()
    }

    /// Applies metadata changes (before readers see `image`): the replica layer opens, leads,
    /// follows or deletes hosted partitions, and the coordinator shards of internal partitions
    /// whose leadership here began or ended are loaded or unloaded.
    fn publish(&self, image: &MetadataImage, changes: &[Change]) -> std::io::Result<()> {
        let leadership = self.replicas.apply(image, changes, |topic| {
            Arc::new(self.controller.log_config(image, topic))
        })?;
        // The throttle rates are dynamic broker configs and the throttled replicas topic
        // configs: either may have changed.
        let configs_changed = changes.iter().any(|change| {
            matches!(
                change,
                Change::BrokerConfigChanged | Change::TopicChanged(_) | Change::TopicRemoved(_)
            )
        });
        if configs_changed {
            self.replicas.replication_quotas.update(
                self.config.node_id,
                image,
                &self.controller.effective_properties(image),
            );
        }
        self.leadership_changed(image, &leadership);
        Ok(())
    }

    /// Queues the coordinator shards of internal partitions whose leadership here began or
    /// ended for the shard loader (the metadata path never waits for a coordinator's lock).
    fn leadership_changed(&self, image: &MetadataImage, changes: &[LeadershipChange]) {
        let shard_changes: Vec<ShardChange> = changes
            .iter()
            .filter_map(|change| {
                ShardChange::new(image, &change.topic, change.partition, change.led)
            })
            .collect();
        if !shard_changes.is_empty() {
            self.shard_loader.enqueue(shard_changes);
        }
    }

    /// Starts the shard loader's thread; it ends when the node is dropped.
    fn spawn_shard_loader(&self) -> Result<()> {
        let loader = self.shard_loader.clone();
        let node = self.this.clone();
        let runtime = tokio::runtime::Handle::try_current().ok();
        std::thread::Builder::new()
            .name("shard-loader".to_string())
            .spawn(move || {
                while let Some(changes) = loader.next() {
                    let Some(node) = node.upgrade() else { break };
                    for change in &changes {
                        runtime::apply_shard_change(node.as_ref(), &node.transactions, change);
                    }
                    loader.applied(changes.len());
                    let transaction_shard_loaded = changes.iter().any(|change| {
                        change.led
                            && change.topic
                                == crate::coordinator::transaction::TRANSACTION_STATE_TOPIC
                    });
                    if transaction_shard_loaded && node.lifecycle.is_running() {
                        // Leadership arrived while running: what the previous leader left
                        // prepared is completed (it may send markers to other brokers, so not
                        // on this thread, which other shards wait for).
                        match &runtime {
                            Some(runtime) => {
                                runtime.spawn_blocking(move || node.complete_prepared_if_running());
                            }
                            None => node.complete_prepared_if_running(),
                        }
                    }
                }
            })
            .context("starting the shard loader thread")?;
        Ok(())
    }

    /// Completes the transactions the loaded shards hold prepared, once this node runs:
    /// caught up with the metadata quorum and unfenced. Before that, a restarted node applies
    /// the metadata log's history on its way to the present, and may lead a transaction
    /// state partition for a moment in a state long gone, a transaction prepared there
    /// included: completing it would send the markers of a transaction another coordinator
    /// finished since, and a late COMMIT marker decides the producer's next transaction in
    /// that partition (chaos soak seed 5628: an aborted record read committed). The
    /// transition to running calls this again. Transaction timeouts wait likewise.
    pub fn complete_prepared_if_running(&self) {
        if self.lifecycle.is_running() {
            self.transactions.complete_prepared(self);
        }
    }

    /// Creates a topic through the controller and opens its logs.
    pub fn create_topic(&self, topic: &NewTopic, validate_only: bool) -> Result<(), ApiError> {
        if !self.controller.is_local() {
            // Auto-creation (Metadata, groups, transactions) on a node that is not the active
            // controller: ask the controller; the commit comes back through the metadata log.
            return self.controller.forward_create_topic(topic, validate_only);
        }
        // The commit reaches the replica layer through the metadata subscription.
        self.controller.create_topic(topic, validate_only)
    }

    /// Creates several topics through the controller, batched into few metadata commits
    /// (forwarded one by one when this node is not the active controller).
    pub fn create_topics(
        &self,
        topics: &[NewTopic],
        validate_only: bool,
        timeout: std::time::Duration,
    ) -> Vec<Result<(), ApiError>> {
        if !self.controller.is_local() {
            return topics
                .iter()
                .map(|topic| self.create_topic(topic, validate_only))
                .collect();
        }
        self.controller
            .create_topics(topics, validate_only, timeout)
    }

    pub fn delete_topic(&self, name: &str) -> Result<(), ApiError> {
        self.controller.delete_topic(name)
    }

    /// Replication until shutdown: starts the replica fetchers the assignment needs, and as
    /// leader asks the controller to shrink or expand ISRs (AlterPartition), one change per
    /// partition at a time, off the runtime workers.
    pub async fn run_replication(self: Arc<Node>) {
        let mut shutdown = self.shutdown.subscribe();
        let this = Arc::downgrade(&self);
        let address_of: AddressOf = Arc::new(move |broker_id| {
            let node = this.upgrade()?;
            let image = node.image();
            let endpoint = image.brokers.get(&broker_id)?.client_endpoint()?.clone();
            Some(format!("{}:{}", endpoint.host, endpoint.port))
        });
        let lag_max_ms = self
            .config
            .properties
            .get_i64(crate::config::REPLICA_LAG_TIME_MAX_MS)
            .max(1);
        let mut tick = tokio::time::interval(REPLICATION_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            self.fetchers.ensure(&self.replicas, &address_of, &shutdown);
            let now = now_ms();
            let image = self.image();
            for (topic, partition, led) in self.replicas.led_with_followers() {
                let leader_end = led.log.offsets().log_end_offset;
                let Some(change) =
                    led.replication
                        .isr_change_due(leader_end, lag_max_ms, now, |id| image.is_live(id))
                else {
                    continue;
                };
                let node = self.clone();
                tokio::task::spawn_blocking(move || {
                    node.alter_isr(&topic, partition, &led.replication, change)
                });
            }
        }
    }

    /// Asks the controller for an ISR change (blocking: on the blocking pool).
    fn alter_isr(
        &self,
        topic: &str,
        partition: i32,
        replication: &crate::replica::Replication,
        change: IsrChange,
    ) {
        // At shutdown the runtime this call would block on is going away (block_on then
        // panics on its timers): the change is left to the next leader or the next start.
        if *self.shutdown.borrow() {
            replication.isr_change_failed(now_ms());
            return;
        }
        tracing::info!(
            topic,
            partition,
            new_isr = ?change.new_isr,
            "asking the controller to change the ISR"
        );
        let shrink = change.new_isr.len() < replication.isr_len();
        let request = crate::controller::alter_partition::AlterPartition {
            broker_id: self.config.node_id,
            broker_epoch: self.lifecycle.epoch(),
            changes: vec![crate::controller::alter_partition::IsrChange {
                topic: topic.to_string(),
                partition,
                leader_epoch: change.leader_epoch,
                partition_epoch: change.partition_epoch,
                new_isr: change.new_isr,
                new_isr_broker_epochs: Vec::new(),
            }],
        };
        let refused = match self.controller.alter_partition(&request) {
            Err(error) => Some(error),
            Ok(mut outcomes) => outcomes.pop().and_then(Result::err),
        };
        // Accepted: the image brings the new ISR (and clears the change in flight).
        match refused {
            Some(error) => {
                tracing::warn!(
                    topic,
                    partition,
                    message = error.message,
                    "ISR change refused"
                );
                replication.isr_change_failed(now_ms());
            }
            None => crate::metrics::cluster::record_isr_change(shrink),
        }
    }

    /// Periodic maintenance, once a second until shutdown: flush policy, retention, deletion
    /// of retired segments, checkpoints.
    pub async fn run_maintenance(self: Arc<Node>) {
        let cleaner = tokio::spawn(self.clone().run_cleaner());
        self.clone().run_log_maintenance().await;
        // The cleaner finishes the log it is on before the logs are closed.
        let _ = cleaner.await;
    }

    async fn run_log_maintenance(self: Arc<Node>) {
        let mut shutdown = self.shutdown.subscribe();
        let settings = crate::config::MaintenanceSettings::from_properties(&self.config.properties);
        let checkpoint_interval_ms = settings.checkpoint_interval_ms;
        let retention_check_interval_ms = settings.retention_check_interval_ms;
        let mut last_checkpoint_ms = now_ms();
        let mut last_retention_check_ms = now_ms();
        let producer_expiration_ms = settings.producer_id_expiration_ms;
        let producer_expiration_check_ms = settings.producer_id_expiration_check_interval_ms;
        let mut last_producer_expiration_ms = now_ms();
        let transaction_check_ms = settings.transaction_abort_check_interval_ms;
        let mut last_transaction_check_ms = now_ms();
        let leader_balance = crate::controller::election::LeaderBalanceSettings::from_properties(
            &self.config.properties,
        );
        let mut last_leader_balance_ms = now_ms();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
            let now = now_ms();
            // The low-space warning, and writes admitted again once space is back (a write
            // finds that out itself too; this also allocates the reserve again when idle).
            self.replicas.logs().space().tick();
            for log in self.replicas.logs().all() {
                if let Err(error) = log.maybe_flush(now) {
                    tracing::error!(topic = log.topic(), partition = log.partition(), %error, "flush failed");
                }
            }
            if now - last_retention_check_ms >= retention_check_interval_ms {
                last_retention_check_ms = now;
                if let Err(error) = self.replicas.logs().enforce_retention(now) {
                    tracing::error!(%error, "retention failed");
                }
            }
            if let Err(error) = self.replicas.logs().delete_retired(now) {
                tracing::error!(%error, "deleting retired segments failed");
            }
            if now - last_transaction_check_ms >= transaction_check_ms {
                last_transaction_check_ms = now;
                // Completing a transaction writes fsynced records and may send markers to
                // other brokers: on the blocking pool, not on a runtime worker.
                let node = self.clone();
                let checked = tokio::task::spawn_blocking(move || {
                    // Not while catching up: see `complete_prepared_if_running`.
                    if node.lifecycle.is_running() {
                        node.transactions.abort_timed_out(node.as_ref(), now);
                        node.transactions.abort_hanging(node.as_ref());
                    }
                })
                .await;
                if let Err(error) = checked {
                    tracing::error!(%error, "transaction timeout check panicked");
                }
            }
            if leader_balance.enabled
                && now - last_leader_balance_ms >= leader_balance.check_interval_ms
            {
                last_leader_balance_ms = now;
                // The active controller moves leaders back to their preferred replicas; the
                // elections commit through the quorum (a wait): on the blocking pool.
                if self.controller.is_local() {
                    let node = self.clone();
                    let percentage = leader_balance.imbalance_percentage_max;
                    let balanced = tokio::task::spawn_blocking(move || {
                        node.controller.balance_leaders(percentage)
                    })
                    .await;
                    match balanced {
                        Ok(0) => {}
                        Ok(moved) => {
                            tracing::info!(moved, "leaders moved back to their preferred replicas")
                        }
                        Err(error) => tracing::error!(%error, "leader balancing panicked"),
                    }
                }
            }
            if now - last_producer_expiration_ms >= producer_expiration_check_ms {
                last_producer_expiration_ms = now;
                for log in self.replicas.logs().all() {
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
                if let Err(error) = self.replicas.logs().flush_and_checkpoint(now) {
                    tracing::error!(%error, "writing checkpoints failed");
                }
                if let Err(error) = self.replicas.checkpoint_high_watermarks() {
                    tracing::error!(%error, "writing the high watermark checkpoint failed");
                }
            }
        }
    }

    /// The log cleaner (compaction): a pass over the compacted logs every
    /// `log.cleaner.backoff.ms`, on blocking threads, until shutdown. One pass runs at a time
    /// and cleans up to `log.cleaner.threads` logs in parallel; the dedupe buffer is split
    /// across the threads as Kafka splits it, and the io limit is shared by them.
    async fn run_cleaner(self: Arc<Node>) {
        let settings = CleanerSettings::from_properties(&self.config.properties);
        if !settings.enabled {
            return;
        }
        let backoff = Duration::from_millis(settings.backoff_ms);
        let mut shutdown = self.shutdown.subscribe();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            let broker = self.clone();
            let pass = tokio::task::spawn_blocking(move || {
                broker.replicas.logs().clean_logs(now_ms(), settings)
            })
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
        self.replicas.checkpoint_high_watermarks()?;
        self.replicas.logs().shutdown(now_ms())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shard_loader.stop();
    }
}

/// The coordinators' port: what they may do on this node, and nothing more.
impl CoordinatorHost for Node {
    fn node_id(&self) -> i32 {
        self.config.node_id
    }

    fn image(&self) -> Arc<MetadataImage> {
        self.controller.image()
    }

    fn leads(&self, topic: &str, partition: i32) -> bool {
        self.replicas.is_leader(topic, partition)
    }

    fn append(
        &self,
        topic: &str,
        partition: i32,
        batch: &[u8],
        durable: bool,
    ) -> Result<(), WriteError> {
        let led = self.led_partition(topic, partition)?;
        refuse_under_min_isr(topic, partition, &led)?;
        let now = now_ms();
        let storage = |e: &dyn std::fmt::Display| WriteError::Storage(e.to_string());
        let appended = led
            .log
            .append_trusted(batch, now)
            .map_err(|e| storage(&e))?;
        // A flush `flush.messages` owes is done here rather than by the flusher: coordinators
        // answer from this thread (a blocking one), as they did when the append fsynced.
        if durable || led.log.acknowledgeable_end_offset() <= appended.last_offset {
            led.log.flush(now).map_err(|e| storage(&e))?;
        }
        self.replicas.notify_appended();
        self.wait_in_sync(
            topic,
            partition,
            &led,
            appended.last_offset + 1,
            COORDINATOR_REPLICATION_TIMEOUT,
        )
    }

    fn read_all(&self, topic: &str, partition: i32) -> Result<Vec<u8>, WriteError> {
        let log = self.led_log(topic, partition)?;
        log.read_all_from(log.offsets().log_start_offset)
            .map_err(|e| WriteError::Storage(e.to_string()))
    }

    fn write_marker(
        &self,
        topic: &str,
        partition: i32,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
    ) -> Result<(), WriteError> {
        let led = self.led_partition(topic, partition)?;
        refuse_under_min_isr(topic, partition, &led)?;
        let log = &led.log;
        let now = now_ms();
        let written = log
            .append_marker(producer_id, producer_epoch, coordinator_epoch, commit, now)
            .and_then(|offset| {
                // As a coordinator append: a flush `flush.messages` owes is done before the
                // marker counts as written.
                if log.acknowledgeable_end_offset() <= offset {
                    log.flush(now)?;
                }
                Ok(offset)
            });
        self.replicas.notify_appended();
        let offset = written.map_err(|e| WriteError::Storage(e.to_string()))?;
        self.wait_in_sync(
            topic,
            partition,
            &led,
            offset + 1,
            COORDINATOR_REPLICATION_TIMEOUT,
        )
    }

    fn open_transactions(&self) -> Vec<OpenTransaction> {
        let mut open = Vec::new();
        for log in self.replicas.led_logs() {
            for (producer_id, first_offset) in log.ongoing_transactions() {
                let Some((producer_epoch, coordinator_epoch)) = log.with_producers(|p| {
                    p.producer(producer_id)
                        .map(|e| (e.epoch, e.coordinator_epoch))
                }) else {
                    continue;
                };
                open.push(OpenTransaction {
                    topic: log.topic().to_string(),
                    partition: log.partition(),
                    producer_id,
                    producer_epoch,
                    coordinator_epoch,
                    first_offset,
                });
            }
        }
        open
    }

    /// The coordinators create their internal topics here: each with its own replication
    /// factor (`offsets.topic.replication.factor`, `transaction.state.log.replication.factor`),
    /// lowered to the live brokers when fewer are registered, so that a one- or two-node
    /// cluster still gets its coordinators (a Kafka single-node setup lowers it by config).
    fn create_topic(&self, topic: &NewTopic) -> Result<(), ApiError> {
        let key = match topic.name.as_str() {
            crate::coordinator::OFFSETS_TOPIC => crate::config::OFFSETS_TOPIC_REPLICATION_FACTOR,
            crate::coordinator::transaction::TRANSACTION_STATE_TOPIC => {
                crate::config::TRANSACTION_STATE_LOG_REPLICATION_FACTOR
            }
            _ => return Node::create_topic(self, topic, false),
        };
        let configured = self.config.properties.get_i64(key);
        let live = self.image().live_brokers().count() as i64;
        let replication_factor = configured.min(live).clamp(1, i64::from(i16::MAX)) as i16;
        let topic = NewTopic {
            replication_factor,
            ..topic.clone()
        };
        Node::create_topic(self, &topic, false)?;
        // The shards of the partitions led here load as the creation applies: the coordinator
        // that asked answers once they are loaded, as when loading was on the metadata path.
        self.shard_loader.wait_idle(COORDINATOR_REPLICATION_TIMEOUT);
        Ok(())
    }

    fn next_producer_id(&self) -> Result<i64, ApiError> {
        self.producer_ids.next_producer_id(&self.controller)
    }

    fn groups(&self) -> &GroupCoordinator {
        &self.groups
    }

    fn send_markers(
        &self,
        leader: i32,
        address: &str,
        request: &WriteTxnMarkersRequest,
    ) -> Result<WriteTxnMarkersResponse, String> {
        self.send_to_broker(leader, address, WRITE_TXN_MARKERS_VERSION, request)
    }

    fn send_add_partitions(
        &self,
        coordinator: i32,
        address: &str,
        request: &AddPartitionsToTxnRequest,
    ) -> Result<AddPartitionsToTxnResponse, String> {
        self.send_to_broker(
            coordinator,
            address,
            ADD_PARTITIONS_TO_TXN_BROKER_VERSION,
            request,
        )
    }
}

impl Node {
    /// Sends a coordinator's request to broker `id` at `address` and waits for its answer,
    /// blocking this thread with its runtime worker handed off (bounded by the peer client's
    /// request timeout).
    fn send_to_broker<R>(
        &self,
        id: i32,
        address: &str,
        version: i16,
        request: &R,
    ) -> Result<R::Response, String>
    where
        R: kafka_protocol::protocol::Request + kafka_protocol::protocol::Encodable,
        R::Response: kafka_protocol::protocol::Decodable,
    {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| "no runtime to send a request to another broker from".to_string())?;
        let peer = self.controller.peer(id, address);
        crate::controller::quorum::blocking(|| handle.block_on(peer.send(version, request)))
            .map_err(|e| e.to_string())
    }
}

impl Node {
    /// A partition this node leads, for the coordinators' writes.
    fn led_partition(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<crate::replica::LedPartition, WriteError> {
        self.replicas
            .leader_partition(&self.image(), topic, partition)
            .map_err(|_| WriteError::NotLeader(topic.to_string(), partition))
    }

    /// Waits (at most `timeout`) until the in-sync replicas of a partition this node leads
    /// hold everything below `end_offset`. Kafka's coordinators and
    /// its WriteTxnMarkers append with acks=all: what they answer for survives a failover. A
    /// transaction marker only on the leader is lost with it, and the producer's next marker
    /// in that partition then decides the aborted records too (chaos soak seed 5411: an
    /// aborted transaction read committed after its partition's leader was killed).
    pub fn wait_in_sync(
        &self,
        topic: &str,
        partition: i32,
        led: &crate::replica::LedPartition,
        end_offset: i64,
        timeout: Duration,
    ) -> Result<(), WriteError> {
        if led.replication.isr_len() <= 1 {
            return Ok(());
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return Ok(());
        };
        let replicated = crate::controller::quorum::blocking(|| {
            handle.block_on(
                self.replicas
                    .wait_replicated(topic, partition, led, end_offset, timeout),
            )
        });
        match replicated {
            true => Ok(()),
            false => Err(WriteError::Storage(format!(
                "{topic}-{partition}: not replicated to the ISR within {timeout:?}"
            ))),
        }
    }

    /// The log of a partition this node leads.
    fn led_log(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Arc<crate::replica::PartitionLog>, WriteError> {
        self.led_partition(topic, partition).map(|led| led.log)
    }
}

/// Kafka's coordinators and markers append with acks=all, so `min.insync.replicas` holds for
/// them as for a client: with fewer replicas in sync nothing is written, and the coordinator
/// answers COORDINATOR_NOT_AVAILABLE or keeps the transaction prepared for its retry. A write
/// answered for while only the leader holds it is lost with the leader's unsynced data.
fn refuse_under_min_isr(
    topic: &str,
    partition: i32,
    led: &crate::replica::LedPartition,
) -> Result<(), WriteError> {
    match led.under_min_isr() {
        false => Ok(()),
        true => Err(WriteError::Storage(format!(
            "{topic}-{partition}: NOT_ENOUGH_REPLICAS: ISR {:?} is below min.insync.replicas {}",
            led.replication.isr(),
            led.log.config().min_insync_replicas
        ))),
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

/// Where the SASL server finds SCRAM credentials: the replicated metadata image.
impl crate::security::CredentialStore for Node {
    fn scram(
        &self,
        user: &str,
        mechanism: crate::security::ScramMechanism,
    ) -> Option<crate::security::ScramCredential> {
        self.controller.scram(user, mechanism)
    }
}
