//! Broker configuration under Kafka's own property names (`server.properties`).
//!
//! Every property dlog knows is described once in [`BROKER_PROPERTIES`] (name, kind, default);
//! topic-level overrides map onto a broker default through [`TOPIC_CONFIGS`], exactly as Kafka's
//! `LogConfig` does (`segment.bytes` defaults to `log.segment.bytes`, …). Values are validated
//! when the broker starts and when a topic is created, so a bad value is refused with a message
//! instead of surfacing later as odd behaviour.
//!
//! Code reads a property through a [`Key`] constant declared below the table
//! (`properties.get_i64(LOG_CLEANER_THREADS)`), never by a string: each constant is resolved
//! against [`BROKER_PROPERTIES`] at compile time, so a misspelled name, or a name without a
//! default in the table, does not compile. Each owner builds its typed settings from the
//! properties once, in one constructor (`CleanerSettings::from_properties`,
//! [`MaintenanceSettings::from_properties`], `coordinator::Settings::from_properties`,
//! `TransactionSettings::from_properties`, `QuorumConfig::from_config`, `LogConfig::new`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

pub mod listeners;
pub use listeners::{ListenerConfig, SecurityProtocol};

/// What a property's value must parse as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int,
    Long,
    Double,
    Boolean,
    String,
    /// One of a fixed set of words (case-insensitive for Kafka's enums).
    Choice(&'static [&'static str]),
    /// A comma-separated list of the given choices.
    ChoiceList(&'static [&'static str]),
    /// A comma-separated list checked by its config's own rule (Kafka's LIST type).
    List,
}

pub struct Property {
    pub name: &'static str,
    pub kind: Kind,
    pub default: &'static str,
    /// Smallest value allowed for numeric kinds.
    pub min: Option<i64>,
}

const fn property(name: &'static str, kind: Kind, default: &'static str) -> Property {
    Property {
        name,
        kind,
        default,
        min: None,
    }
}

const fn at_least(name: &'static str, kind: Kind, default: &'static str, min: i64) -> Property {
    Property {
        name,
        kind,
        default,
        min: Some(min),
    }
}

const TIMESTAMP_TYPES: &[&str] = &["CreateTime", "LogAppendTime"];
const COMPRESSION_TYPES: &[&str] = &["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"];
const CLEANUP_POLICIES: &[&str] = &["delete", "compact"];
const PROCESS_ROLE_NAMES: &[&str] = &["broker", "controller"];
const REBALANCE_PROTOCOLS: &[&str] = &["classic", "consumer", "share", "streams"];
const CONSUMER_ASSIGNORS: &[&str] = &["uniform", "range"];
const LOG_FORMATS: &[&str] = &["text", "json"];
const SSL_CLIENT_AUTH: &[&str] = &["required", "requested", "none"];

/// Broker properties dlog understands, with Kafka 4.x defaults.
pub const BROKER_PROPERTIES: &[Property] = &[
    property("listeners", Kind::String, "PLAINTEXT://127.0.0.1:9092"),
    property("advertised.listeners", Kind::String, ""),
    property("log.dirs", Kind::String, "./data"),
    property("log.dir", Kind::String, "./data"),
    // dlog's own (Kafka has no disk-full handling): `log::log_dir_space`.
    at_least("log.dir.free.space.warn.bytes", Kind::Long, "-1", -1),
    at_least("log.dir.reserve.bytes", Kind::Long, "8388608", 0),
    at_least("node.id", Kind::Int, "1", 0),
    property("broker.rack", Kind::String, ""),
    property("replica.selector.class", Kind::String, ""),
    at_least("broker.session.timeout.ms", Kind::Int, "9000", 1),
    at_least("replica.lag.time.max.ms", Kind::Long, "30000", 1),
    at_least("broker.heartbeat.interval.ms", Kind::Int, "2000", 1),
    property(
        "process.roles",
        Kind::ChoiceList(PROCESS_ROLE_NAMES),
        "broker,controller",
    ),
    // The controller quorum (KRaft). No voters: a one-voter quorum of this node.
    property("controller.quorum.voters", Kind::String, ""),
    property("controller.listener.names", Kind::String, "CONTROLLER"),
    property("cluster.id", Kind::String, ""),
    // Authorization (`security::acl`): empty class name = no authorizer, everything allowed.
    property("authorizer.class.name", Kind::String, ""),
    property("super.users", Kind::String, ""),
    property("allow.everyone.if.no.acl.found", Kind::Boolean, "false"),
    // Client quotas (`security::quota`): rates measured over this many windows of this size.
    at_least("quota.window.num", Kind::Int, "11", 2),
    at_least("quota.window.size.seconds", Kind::Int, "1", 1),
    // KIP-599's controller mutation quota: its token bucket holds num × size × rate tokens.
    at_least("controller.quota.window.num", Kind::Int, "11", 1),
    at_least("controller.quota.window.size.seconds", Kind::Int, "1", 1),
    // Replication quotas (KIP-73, `replica::replication_quota`): dynamic per broker (or as the
    // cluster default), bytes per second of throttled replicas' traffic; the defaults are
    // Kafka's, Long.MAX_VALUE = unthrottled. Measured over the windows below (static).
    at_least(
        "leader.replication.throttled.rate",
        Kind::Long,
        "9223372036854775807",
        0,
    ),
    at_least(
        "follower.replication.throttled.rate",
        Kind::Long,
        "9223372036854775807",
        0,
    ),
    // Automatic preferred-leader balancing by the active controller (`controller::election`).
    property("auto.leader.rebalance.enable", Kind::Boolean, "true"),
    at_least(
        "leader.imbalance.check.interval.seconds",
        Kind::Long,
        "300",
        1,
    ),
    at_least("leader.imbalance.per.broker.percentage", Kind::Int, "10", 0),
    at_least("replication.quota.window.num", Kind::Int, "11", 1),
    at_least("replication.quota.window.size.seconds", Kind::Int, "1", 1),
    at_least(
        "controller.quorum.election.timeout.ms",
        Kind::Int,
        "1000",
        100,
    ),
    at_least("controller.quorum.fetch.timeout.ms", Kind::Int, "2000", 100),
    at_least(
        "metadata.log.max.record.bytes.between.snapshots",
        Kind::Long,
        "20971520",
        1,
    ),
    at_least("socket.request.max.bytes", Kind::Int, "104857600", 1),
    // Kafka's default is -1 (unbounded); dlog bounds the bytes of large requests being read
    // or handled at once by default. -1 (or 0) = unbounded, as in Kafka.
    at_least("queued.max.request.bytes", Kind::Long, "268435456", -1),
    at_least("connections.max.idle.ms", Kind::Long, "600000", 1),
    at_least("max.connections", Kind::Int, "2147483647", 1),
    // Connections per client address (`server::connection_quotas`); overrides are
    // `host:count` pairs, comma-separated.
    at_least("max.connections.per.ip", Kind::Int, "2147483647", 0),
    property("max.connections.per.ip.overrides", Kind::String, ""),
    at_least("message.max.bytes", Kind::Int, "1048588", 0),
    at_least("log.segment.bytes", Kind::Int, "1073741824", 14),
    at_least("log.roll.ms", Kind::Long, "604800000", 1),
    at_least("log.roll.hours", Kind::Int, "168", 1),
    at_least("log.index.interval.bytes", Kind::Int, "4096", 0),
    at_least("log.index.size.max.bytes", Kind::Int, "10485760", 4),
    at_least("num.partitions", Kind::Int, "1", 1),
    at_least("default.replication.factor", Kind::Int, "1", 1),
    property("auto.create.topics.enable", Kind::Boolean, "true"),
    property("delete.topic.enable", Kind::Boolean, "true"),
    property(
        "log.message.timestamp.type",
        Kind::Choice(TIMESTAMP_TYPES),
        "CreateTime",
    ),
    at_least(
        "log.message.timestamp.before.max.ms",
        Kind::Long,
        "9223372036854775807",
        0,
    ),
    at_least(
        "log.message.timestamp.after.max.ms",
        Kind::Long,
        "3600000",
        0,
    ),
    at_least(
        "log.flush.interval.messages",
        Kind::Long,
        "9223372036854775807",
        1,
    ),
    at_least(
        "log.flush.interval.ms",
        Kind::Long,
        "9223372036854775807",
        0,
    ),
    at_least(
        "log.flush.offset.checkpoint.interval.ms",
        Kind::Int,
        "60000",
        0,
    ),
    property("log.retention.ms", Kind::Long, "604800000"),
    at_least("log.retention.hours", Kind::Int, "168", 0),
    property("log.retention.bytes", Kind::Long, "-1"),
    at_least("log.retention.check.interval.ms", Kind::Long, "300000", 1),
    property(
        "log.cleanup.policy",
        Kind::ChoiceList(CLEANUP_POLICIES),
        "delete",
    ),
    property(
        "compression.type",
        Kind::Choice(COMPRESSION_TYPES),
        "producer",
    ),
    at_least("min.insync.replicas", Kind::Int, "1", 1),
    at_least("log.cleaner.delete.retention.ms", Kind::Long, "86400000", 0),
    property("log.cleaner.min.cleanable.ratio", Kind::Double, "0.5"),
    at_least("log.cleaner.min.compaction.lag.ms", Kind::Long, "0", 0),
    at_least(
        "log.cleaner.max.compaction.lag.ms",
        Kind::Long,
        "9223372036854775807",
        1,
    ),
    at_least("log.segment.delete.delay.ms", Kind::Long, "60000", 0),
    property("log.cleaner.enable", Kind::Boolean, "true"),
    at_least("log.cleaner.threads", Kind::Int, "1", 0),
    at_least(
        "log.cleaner.dedupe.buffer.size",
        Kind::Long,
        "134217728",
        1048576,
    ),
    property(
        "log.cleaner.io.max.bytes.per.second",
        Kind::Double,
        "1.7976931348623157E308",
    ),
    at_least("log.cleaner.backoff.ms", Kind::Long, "15000", 0),
    property("unclean.leader.election.enable", Kind::Boolean, "false"),
    at_least("offsets.topic.num.partitions", Kind::Int, "50", 1),
    at_least("offsets.topic.replication.factor", Kind::Int, "3", 1),
    at_least("offsets.topic.segment.bytes", Kind::Int, "104857600", 14),
    at_least("offsets.retention.minutes", Kind::Int, "10080", 1),
    at_least(
        "offsets.retention.check.interval.ms",
        Kind::Long,
        "600000",
        1,
    ),
    at_least("offset.metadata.max.bytes", Kind::Int, "4096", 0),
    at_least("group.initial.rebalance.delay.ms", Kind::Int, "3000", 0),
    at_least("group.min.session.timeout.ms", Kind::Int, "6000", 0),
    at_least("group.max.session.timeout.ms", Kind::Int, "1800000", 0),
    at_least("group.max.size", Kind::Int, "2147483647", 1),
    property(
        "group.coordinator.rebalance.protocols",
        Kind::ChoiceList(REBALANCE_PROTOCOLS),
        "classic,consumer",
    ),
    at_least("group.consumer.session.timeout.ms", Kind::Int, "45000", 1),
    at_least(
        "group.consumer.min.session.timeout.ms",
        Kind::Int,
        "45000",
        1,
    ),
    at_least(
        "group.consumer.max.session.timeout.ms",
        Kind::Int,
        "60000",
        1,
    ),
    at_least("group.consumer.heartbeat.interval.ms", Kind::Int, "5000", 1),
    // Share groups (KIP-932), with Kafka's defaults and floors.
    at_least(
        "group.share.record.lock.duration.ms",
        Kind::Int,
        "30000",
        1000,
    ),
    at_least("group.share.delivery.count.limit", Kind::Int, "5", 2),
    at_least(
        "group.share.partition.max.record.locks",
        Kind::Int,
        "2000",
        100,
    ),
    at_least("group.share.session.timeout.ms", Kind::Int, "45000", 1),
    at_least("group.share.heartbeat.interval.ms", Kind::Int, "5000", 1),
    at_least("group.share.max.size", Kind::Int, "200", 1),
    at_least(
        "group.consumer.min.heartbeat.interval.ms",
        Kind::Int,
        "5000",
        1,
    ),
    at_least(
        "group.consumer.max.heartbeat.interval.ms",
        Kind::Int,
        "15000",
        1,
    ),
    at_least("group.consumer.max.size", Kind::Int, "2147483647", 1),
    property(
        "group.consumer.assignors",
        Kind::ChoiceList(CONSUMER_ASSIGNORS),
        "uniform,range",
    ),
    // Listeners and security (issue 14). Kafka's defaults: GSSAPI and JKS, which dlog does
    // not serve, so a SASL or SSL listener must name PLAIN/SCRAM and PEM (fail closed).
    property("listener.security.protocol.map", Kind::String, ""),
    property("inter.broker.listener.name", Kind::String, ""),
    property("security.inter.broker.protocol", Kind::String, "PLAINTEXT"),
    property("sasl.enabled.mechanisms", Kind::String, "GSSAPI"),
    property(
        "sasl.mechanism.inter.broker.protocol",
        Kind::String,
        "GSSAPI",
    ),
    property("sasl.jaas.config", Kind::String, ""),
    at_least("sasl.server.max.receive.size", Kind::Int, "524288", 1),
    at_least("connections.max.reauth.ms", Kind::Long, "0", 0),
    // SASL/OAUTHBEARER (`security::sasl::oauthbearer`). The validator is chosen per listener
    // and mechanism (`listener.name.<l>.oauthbearer.sasl.server.callback.handler.class`);
    // these configure Kafka's secured one (KIP-768), with Kafka's defaults.
    property("sasl.server.callback.handler.class", Kind::String, ""),
    property("sasl.oauthbearer.jwks.endpoint.url", Kind::String, ""),
    at_least(
        "sasl.oauthbearer.jwks.endpoint.refresh.ms",
        Kind::Long,
        "3600000",
        1,
    ),
    at_least(
        "sasl.oauthbearer.jwks.endpoint.retry.backoff.ms",
        Kind::Long,
        "100",
        0,
    ),
    at_least(
        "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms",
        Kind::Long,
        "10000",
        0,
    ),
    property("sasl.oauthbearer.expected.audience", Kind::List, ""),
    property("sasl.oauthbearer.expected.issuer", Kind::String, ""),
    at_least("sasl.oauthbearer.clock.skew.seconds", Kind::Int, "30", 0),
    property("sasl.oauthbearer.scope.claim.name", Kind::String, "scope"),
    property("sasl.oauthbearer.sub.claim.name", Kind::String, "sub"),
    property(
        "sasl.oauthbearer.jwt.validator.class",
        Kind::String,
        "org.apache.kafka.common.security.oauthbearer.DefaultJwtValidator",
    ),
    property("ssl.keystore.type", Kind::String, "JKS"),
    property("ssl.keystore.location", Kind::String, ""),
    property("ssl.keystore.password", Kind::String, ""),
    property("ssl.keystore.certificate.chain", Kind::String, ""),
    property("ssl.keystore.key", Kind::String, ""),
    property("ssl.key.password", Kind::String, ""),
    property("ssl.truststore.type", Kind::String, "JKS"),
    property("ssl.truststore.location", Kind::String, ""),
    property("ssl.truststore.password", Kind::String, ""),
    property("ssl.truststore.certificates", Kind::String, ""),
    property("ssl.client.auth", Kind::Choice(SSL_CLIENT_AUTH), "none"),
    property("ssl.principal.mapping.rules", Kind::String, "DEFAULT"),
    // Used by a broker's own clients to check a peer's host name; accepted, not used.
    property(
        "ssl.endpoint.identification.algorithm",
        Kind::String,
        "https",
    ),
    // dlog's own: observability (README "Metrics, health and logs").
    property("metrics.listen", Kind::String, ""),
    property("log.level", Kind::String, "info"),
    property("log.format", Kind::Choice(LOG_FORMATS), "text"),
    // Idempotent producers and transactions (issue 4).
    at_least("producer.id.expiration.ms", Kind::Int, "86400000", 1),
    at_least(
        "producer.id.expiration.check.interval.ms",
        Kind::Int,
        "600000",
        1,
    ),
    at_least("transaction.max.timeout.ms", Kind::Int, "900000", 1),
    at_least("transaction.state.log.num.partitions", Kind::Int, "50", 1),
    at_least(
        "transaction.state.log.replication.factor",
        Kind::Int,
        "3",
        1,
    ),
    at_least("transactional.id.expiration.ms", Kind::Int, "604800000", 1),
    at_least(
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        Kind::Int,
        "10000",
        1,
    ),
];

/// A broker property the code reads: an index into [`BROKER_PROPERTIES`], made only by the
/// constants below, each checked against the table when the crate compiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key(usize);

impl Key {
    pub fn name(self) -> &'static str {
        BROKER_PROPERTIES[self.0].name
    }

    pub fn property(self) -> &'static Property {
        &BROKER_PROPERTIES[self.0]
    }
}

const fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut index = 0;
    while index < a.len() {
        if a[index] != b[index] {
            return false;
        }
        index += 1;
    }
    true
}

/// The key of `name` in [`BROKER_PROPERTIES`]. Evaluated at compile time for the constants
/// below: a name missing from the table fails the build ("evaluation panicked: NAME").
const fn key(name: &'static str) -> Key {
    let mut index = 0;
    while index < BROKER_PROPERTIES.len() {
        if same_name(BROKER_PROPERTIES[index].name, name) {
            return Key(index);
        }
        index += 1;
    }
    panic!("{}", name)
}

// The node: listeners, identity, roles (`BrokerConfig`, main, lifecycle).
pub const LISTENERS: Key = key("listeners");
pub const ADVERTISED_LISTENERS: Key = key("advertised.listeners");
pub const LOG_DIRS: Key = key("log.dirs");
pub const LOG_DIR: Key = key("log.dir");
// Space in the log directory (`log::log_dir_space::SpaceSettings`).
pub const LOG_DIR_FREE_SPACE_WARN_BYTES: Key = key("log.dir.free.space.warn.bytes");
pub const LOG_DIR_RESERVE_BYTES: Key = key("log.dir.reserve.bytes");
pub const NODE_ID: Key = key("node.id");
pub const BROKER_RACK: Key = key("broker.rack");
pub const REPLICA_SELECTOR_CLASS: Key = key("replica.selector.class");
pub const BROKER_SESSION_TIMEOUT_MS: Key = key("broker.session.timeout.ms");
/// A follower that has not caught up for this long leaves the ISR.
pub const REPLICA_LAG_TIME_MAX_MS: Key = key("replica.lag.time.max.ms");
pub const BROKER_HEARTBEAT_INTERVAL_MS: Key = key("broker.heartbeat.interval.ms");
pub const PROCESS_ROLES: Key = key("process.roles");
pub const CONTROLLER_QUORUM_VOTERS: Key = key("controller.quorum.voters");
pub const CONTROLLER_LISTENER_NAMES: Key = key("controller.listener.names");
pub const CLUSTER_ID: Key = key("cluster.id");
// Authorization (`Node::open` builds the authorizer).
pub const AUTHORIZER_CLASS_NAME: Key = key("authorizer.class.name");
pub const SUPER_USERS: Key = key("super.users");
pub const ALLOW_EVERYONE_IF_NO_ACL_FOUND: Key = key("allow.everyone.if.no.acl.found");
// Client quotas (`security::quota::QuotaSettings`).
pub const QUOTA_WINDOW_NUM: Key = key("quota.window.num");
pub const QUOTA_WINDOW_SIZE_SECONDS: Key = key("quota.window.size.seconds");
pub const CONTROLLER_QUOTA_WINDOW_NUM: Key = key("controller.quota.window.num");
pub const CONTROLLER_QUOTA_WINDOW_SIZE_SECONDS: Key = key("controller.quota.window.size.seconds");
// Automatic preferred-leader balancing (`controller::election::LeaderBalanceSettings`).
pub const AUTO_LEADER_REBALANCE_ENABLE: Key = key("auto.leader.rebalance.enable");
pub const LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS: Key =
    key("leader.imbalance.check.interval.seconds");
pub const LEADER_IMBALANCE_PER_BROKER_PERCENTAGE: Key =
    key("leader.imbalance.per.broker.percentage");
// Replication quotas (`replica::replication_quota`).
pub const LEADER_REPLICATION_THROTTLED_RATE: Key = key("leader.replication.throttled.rate");
pub const FOLLOWER_REPLICATION_THROTTLED_RATE: Key = key("follower.replication.throttled.rate");
pub const REPLICATION_QUOTA_WINDOW_NUM: Key = key("replication.quota.window.num");
pub const REPLICATION_QUOTA_WINDOW_SIZE_SECONDS: Key = key("replication.quota.window.size.seconds");
pub const SOCKET_REQUEST_MAX_BYTES: Key = key("socket.request.max.bytes");
pub const QUEUED_MAX_REQUEST_BYTES: Key = key("queued.max.request.bytes");
pub const CONNECTIONS_MAX_IDLE_MS: Key = key("connections.max.idle.ms");
pub const MAX_CONNECTIONS: Key = key("max.connections");
pub const MAX_CONNECTIONS_PER_IP: Key = key("max.connections.per.ip");
pub const MAX_CONNECTIONS_PER_IP_OVERRIDES: Key = key("max.connections.per.ip.overrides");
pub const AUTO_CREATE_TOPICS_ENABLE: Key = key("auto.create.topics.enable");
pub const NUM_PARTITIONS: Key = key("num.partitions");
pub const DEFAULT_REPLICATION_FACTOR: Key = key("default.replication.factor");
// Partition placement and elections (`controller::placement`, `controller::partition_change`);
// internal topics ask for their own factor (lowered to the live brokers, `Node::create_topic`).
pub const OFFSETS_TOPIC_REPLICATION_FACTOR: Key = key("offsets.topic.replication.factor");
pub const TRANSACTION_STATE_LOG_REPLICATION_FACTOR: Key =
    key("transaction.state.log.replication.factor");
pub const UNCLEAN_LEADER_ELECTION_ENABLE: Key = key("unclean.leader.election.enable");
pub const METRICS_LISTEN: Key = key("metrics.listen");
// Listeners and security (`config::listeners`, `security::settings`).
pub const LISTENER_SECURITY_PROTOCOL_MAP: Key = key("listener.security.protocol.map");
pub const INTER_BROKER_LISTENER_NAME: Key = key("inter.broker.listener.name");
pub const SECURITY_INTER_BROKER_PROTOCOL: Key = key("security.inter.broker.protocol");
pub const SASL_ENABLED_MECHANISMS: Key = key("sasl.enabled.mechanisms");
pub const SASL_MECHANISM_INTER_BROKER_PROTOCOL: Key = key("sasl.mechanism.inter.broker.protocol");
pub const SASL_JAAS_CONFIG: Key = key("sasl.jaas.config");
pub const SASL_SERVER_MAX_RECEIVE_SIZE: Key = key("sasl.server.max.receive.size");
pub const CONNECTIONS_MAX_REAUTH_MS: Key = key("connections.max.reauth.ms");
pub const SASL_SERVER_CALLBACK_HANDLER_CLASS: Key = key("sasl.server.callback.handler.class");
pub const SASL_OAUTHBEARER_JWKS_ENDPOINT_URL: Key = key("sasl.oauthbearer.jwks.endpoint.url");
pub const SASL_OAUTHBEARER_JWKS_ENDPOINT_REFRESH_MS: Key =
    key("sasl.oauthbearer.jwks.endpoint.refresh.ms");
pub const SASL_OAUTHBEARER_JWKS_ENDPOINT_RETRY_BACKOFF_MS: Key =
    key("sasl.oauthbearer.jwks.endpoint.retry.backoff.ms");
pub const SASL_OAUTHBEARER_JWKS_ENDPOINT_RETRY_BACKOFF_MAX_MS: Key =
    key("sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms");
pub const SASL_OAUTHBEARER_EXPECTED_AUDIENCE: Key = key("sasl.oauthbearer.expected.audience");
pub const SASL_OAUTHBEARER_EXPECTED_ISSUER: Key = key("sasl.oauthbearer.expected.issuer");
pub const SASL_OAUTHBEARER_CLOCK_SKEW_SECONDS: Key = key("sasl.oauthbearer.clock.skew.seconds");
pub const SASL_OAUTHBEARER_SCOPE_CLAIM_NAME: Key = key("sasl.oauthbearer.scope.claim.name");
pub const SASL_OAUTHBEARER_SUB_CLAIM_NAME: Key = key("sasl.oauthbearer.sub.claim.name");
pub const SASL_OAUTHBEARER_JWT_VALIDATOR_CLASS: Key = key("sasl.oauthbearer.jwt.validator.class");
pub const SSL_KEYSTORE_TYPE: Key = key("ssl.keystore.type");
pub const SSL_KEYSTORE_LOCATION: Key = key("ssl.keystore.location");
pub const SSL_KEYSTORE_PASSWORD: Key = key("ssl.keystore.password");
pub const SSL_KEYSTORE_CERTIFICATE_CHAIN: Key = key("ssl.keystore.certificate.chain");
pub const SSL_KEYSTORE_KEY: Key = key("ssl.keystore.key");
pub const SSL_KEY_PASSWORD: Key = key("ssl.key.password");
pub const SSL_TRUSTSTORE_TYPE: Key = key("ssl.truststore.type");
pub const SSL_TRUSTSTORE_LOCATION: Key = key("ssl.truststore.location");
pub const SSL_TRUSTSTORE_PASSWORD: Key = key("ssl.truststore.password");
pub const SSL_TRUSTSTORE_CERTIFICATES: Key = key("ssl.truststore.certificates");
pub const SSL_CLIENT_AUTH_KEY: Key = key("ssl.client.auth");
pub const SSL_PRINCIPAL_MAPPING_RULES: Key = key("ssl.principal.mapping.rules");
pub const LOG_LEVEL: Key = key("log.level");
pub const LOG_FORMAT: Key = key("log.format");
// The metadata quorum (`QuorumConfig`).
pub const CONTROLLER_QUORUM_ELECTION_TIMEOUT_MS: Key = key("controller.quorum.election.timeout.ms");
pub const CONTROLLER_QUORUM_FETCH_TIMEOUT_MS: Key = key("controller.quorum.fetch.timeout.ms");
pub const METADATA_LOG_MAX_RECORD_BYTES_BETWEEN_SNAPSHOTS: Key =
    key("metadata.log.max.record.bytes.between.snapshots");
// Log defaults derived from coarser properties (`Properties::effective`).
pub const LOG_SEGMENT_BYTES: Key = key("log.segment.bytes");
pub const LOG_ROLL_MS: Key = key("log.roll.ms");
pub const LOG_ROLL_HOURS: Key = key("log.roll.hours");
pub const LOG_RETENTION_MS: Key = key("log.retention.ms");
pub const LOG_RETENTION_HOURS: Key = key("log.retention.hours");
// Periodic log tasks (`MaintenanceSettings`).
pub const LOG_FLUSH_OFFSET_CHECKPOINT_INTERVAL_MS: Key =
    key("log.flush.offset.checkpoint.interval.ms");
pub const LOG_RETENTION_CHECK_INTERVAL_MS: Key = key("log.retention.check.interval.ms");
pub const PRODUCER_ID_EXPIRATION_MS: Key = key("producer.id.expiration.ms");
pub const PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS: Key =
    key("producer.id.expiration.check.interval.ms");
pub const TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS: Key =
    key("transaction.abort.timed.out.transaction.cleanup.interval.ms");
// The log cleaner (`log::cleaner::CleanerSettings`).
pub const LOG_CLEANER_ENABLE: Key = key("log.cleaner.enable");
pub const LOG_CLEANER_THREADS: Key = key("log.cleaner.threads");
pub const LOG_CLEANER_DEDUPE_BUFFER_SIZE: Key = key("log.cleaner.dedupe.buffer.size");
pub const LOG_CLEANER_IO_MAX_BYTES_PER_SECOND: Key = key("log.cleaner.io.max.bytes.per.second");
pub const LOG_CLEANER_BACKOFF_MS: Key = key("log.cleaner.backoff.ms");
// The group coordinator (`coordinator::Settings`).
pub const GROUP_MIN_SESSION_TIMEOUT_MS: Key = key("group.min.session.timeout.ms");
pub const GROUP_MAX_SESSION_TIMEOUT_MS: Key = key("group.max.session.timeout.ms");
pub const GROUP_INITIAL_REBALANCE_DELAY_MS: Key = key("group.initial.rebalance.delay.ms");
pub const GROUP_MAX_SIZE: Key = key("group.max.size");
pub const OFFSETS_TOPIC_NUM_PARTITIONS: Key = key("offsets.topic.num.partitions");
pub const OFFSETS_TOPIC_SEGMENT_BYTES: Key = key("offsets.topic.segment.bytes");
pub const OFFSET_METADATA_MAX_BYTES: Key = key("offset.metadata.max.bytes");
pub const OFFSETS_RETENTION_MINUTES: Key = key("offsets.retention.minutes");
pub const OFFSETS_RETENTION_CHECK_INTERVAL_MS: Key = key("offsets.retention.check.interval.ms");
pub const GROUP_CONSUMER_SESSION_TIMEOUT_MS: Key = key("group.consumer.session.timeout.ms");
pub const GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS: Key = key("group.consumer.heartbeat.interval.ms");
pub const GROUP_CONSUMER_MAX_SIZE: Key = key("group.consumer.max.size");
pub const GROUP_COORDINATOR_REBALANCE_PROTOCOLS: Key = key("group.coordinator.rebalance.protocols");
pub const GROUP_CONSUMER_ASSIGNORS: Key = key("group.consumer.assignors");
// Share groups (`share::ShareSettings`, `coordinator::share_group::ShareGroupSettings`).
pub const GROUP_SHARE_RECORD_LOCK_DURATION_MS: Key = key("group.share.record.lock.duration.ms");
pub const GROUP_SHARE_DELIVERY_COUNT_LIMIT: Key = key("group.share.delivery.count.limit");
pub const GROUP_SHARE_PARTITION_MAX_RECORD_LOCKS: Key =
    key("group.share.partition.max.record.locks");
pub const GROUP_SHARE_SESSION_TIMEOUT_MS: Key = key("group.share.session.timeout.ms");
pub const GROUP_SHARE_HEARTBEAT_INTERVAL_MS: Key = key("group.share.heartbeat.interval.ms");
pub const GROUP_SHARE_MAX_SIZE: Key = key("group.share.max.size");
// The transaction coordinator (`coordinator::transaction::TransactionSettings`).
pub const TRANSACTION_STATE_LOG_NUM_PARTITIONS: Key = key("transaction.state.log.num.partitions");
pub const TRANSACTION_MAX_TIMEOUT_MS: Key = key("transaction.max.timeout.ms");
pub const TRANSACTIONAL_ID_EXPIRATION_MS: Key = key("transactional.id.expiration.ms");

/// A topic-level config: its name, the broker property that supplies its default, and its kind.
pub struct TopicConfig {
    pub name: &'static str,
    pub broker_default: &'static str,
}

/// Topic configs Kafka 4.x reports for every topic, with the broker property behind each.
pub const TOPIC_CONFIGS: &[TopicConfig] = &[
    TopicConfig {
        name: "cleanup.policy",
        broker_default: "log.cleanup.policy",
    },
    TopicConfig {
        name: "compression.type",
        broker_default: "compression.type",
    },
    TopicConfig {
        name: "delete.retention.ms",
        broker_default: "log.cleaner.delete.retention.ms",
    },
    TopicConfig {
        name: "file.delete.delay.ms",
        broker_default: "log.segment.delete.delay.ms",
    },
    TopicConfig {
        name: "flush.messages",
        broker_default: "log.flush.interval.messages",
    },
    TopicConfig {
        name: "flush.ms",
        broker_default: "log.flush.interval.ms",
    },
    TopicConfig {
        name: "index.interval.bytes",
        broker_default: "log.index.interval.bytes",
    },
    TopicConfig {
        name: "max.compaction.lag.ms",
        broker_default: "log.cleaner.max.compaction.lag.ms",
    },
    TopicConfig {
        name: "max.message.bytes",
        broker_default: "message.max.bytes",
    },
    TopicConfig {
        name: "message.timestamp.after.max.ms",
        broker_default: "log.message.timestamp.after.max.ms",
    },
    TopicConfig {
        name: "message.timestamp.before.max.ms",
        broker_default: "log.message.timestamp.before.max.ms",
    },
    TopicConfig {
        name: "message.timestamp.type",
        broker_default: "log.message.timestamp.type",
    },
    TopicConfig {
        name: "min.cleanable.dirty.ratio",
        broker_default: "log.cleaner.min.cleanable.ratio",
    },
    TopicConfig {
        name: "min.compaction.lag.ms",
        broker_default: "log.cleaner.min.compaction.lag.ms",
    },
    TopicConfig {
        name: "min.insync.replicas",
        broker_default: "min.insync.replicas",
    },
    TopicConfig {
        name: "retention.bytes",
        broker_default: "log.retention.bytes",
    },
    TopicConfig {
        name: "retention.ms",
        broker_default: "log.retention.ms",
    },
    TopicConfig {
        name: "segment.bytes",
        broker_default: "log.segment.bytes",
    },
    TopicConfig {
        name: "segment.index.bytes",
        broker_default: "log.index.size.max.bytes",
    },
    TopicConfig {
        name: "segment.ms",
        broker_default: "log.roll.ms",
    },
    TopicConfig {
        name: "unclean.leader.election.enable",
        broker_default: "unclean.leader.election.enable",
    },
];

/// Broker configs that change at run time without being the default of a topic config:
/// the replication throttle rates (Kafka's `DynamicConfig.Broker`).
pub const DYNAMIC_BROKER_ONLY_CONFIGS: &[Key] = &[
    LEADER_REPLICATION_THROTTLED_RATE,
    FOLLOWER_REPLICATION_THROTTLED_RATE,
];

/// Topic configs without a broker default: which replicas of the topic the replication
/// quotas throttle (KIP-73), as `partition:broker` pairs or `*`; empty by default.
pub const LEADER_REPLICATION_THROTTLED_REPLICAS: &str = "leader.replication.throttled.replicas";
pub const FOLLOWER_REPLICATION_THROTTLED_REPLICAS: &str = "follower.replication.throttled.replicas";
pub const TOPIC_ONLY_CONFIGS: &[&str] = &[
    LEADER_REPLICATION_THROTTLED_REPLICAS,
    FOLLOWER_REPLICATION_THROTTLED_REPLICAS,
];

/// A `*.replication.throttled.replicas` value: every replica of the topic, or these
/// (partition, broker) pairs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ThrottledReplicas {
    All,
    Listed(Vec<(i32, i32)>),
}

impl ThrottledReplicas {
    /// Kafka's `ThrottledReplicaListValidator`: `*`, or `partition:broker` pairs separated
    /// by commas (whitespace around them allowed), both non-negative integers; empty is
    /// no replica.
    pub fn parse(name: &str, value: &str) -> Result<ThrottledReplicas> {
        if value.trim() == "*" {
            return Ok(ThrottledReplicas::All);
        }
        let invalid = || {
            anyhow::anyhow!(
                "Invalid value {value} for configuration {name}: must be the literal '*' or a list of replicas in the following format: [partitionId]:[brokerId],[partitionId]:[brokerId],..."
            )
        };
        let mut pairs = Vec::new();
        for item in value.split(',').map(str::trim) {
            if item.is_empty() {
                continue;
            }
            let (partition, broker) = item.split_once(':').ok_or_else(invalid)?;
            let number = |text: &str| -> Result<i32> {
                match text.trim() {
                    t if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
                        t.parse().map_err(|_| invalid())
                    }
                    _ => Err(invalid()),
                }
            };
            pairs.push((number(partition)?, number(broker)?));
        }
        Ok(ThrottledReplicas::Listed(pairs))
    }

    /// The partitions of the topic whose replica on `broker` is throttled; None = all.
    pub fn partitions_on(&self, broker: i32) -> Option<std::collections::BTreeSet<i32>> {
        match self {
            ThrottledReplicas::All => None,
            ThrottledReplicas::Listed(pairs) => Some(
                pairs
                    .iter()
                    .filter(|(_, b)| *b == broker)
                    .map(|(p, _)| *p)
                    .collect(),
            ),
        }
    }
}

pub fn broker_property(name: &str) -> Option<&'static Property> {
    BROKER_PROPERTIES.iter().find(|p| p.name == name)
}

pub fn topic_config(name: &str) -> Option<&'static TopicConfig> {
    TOPIC_CONFIGS.iter().find(|c| c.name == name)
}

/// What a `listener.name.<listener>.…` property overrides.
enum ListenerOverride {
    Property(&'static Property),
    /// `listener.name.<listener>.<mechanism>.sasl.jaas.config` or
    /// `listener.name.<listener>.<mechanism>.sasl.server.callback.handler.class`
    MechanismSetting,
}

fn listener_override(name: &str) -> Option<ListenerOverride> {
    let rest = name.strip_prefix("listener.name.")?;
    let (_listener, suffix) = rest.split_once('.')?;
    if let Some(property) = broker_property(suffix).filter(|p| is_security_setting(p.name)) {
        return Some(ListenerOverride::Property(property));
    }
    let (_mechanism, suffix) = suffix.split_once('.')?;
    [SASL_JAAS_CONFIG, SASL_SERVER_CALLBACK_HANDLER_CLASS]
        .iter()
        .any(|key| key.name() == suffix)
        .then_some(ListenerOverride::MechanismSetting)
}

/// Properties that configure authentication or encryption.
fn is_security_setting(name: &str) -> bool {
    ["ssl.", "sasl.", "security.", "listener.name."]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        || name == CONNECTIONS_MAX_REAUTH_MS.name()
}

/// Checks `value` against `property`'s kind; the error names the property.
pub fn validate(property: &Property, value: &str) -> Result<()> {
    let value = value.trim();
    let numeric = match property.kind {
        Kind::Int => Some(value.parse::<i32>().map(i64::from).ok()),
        Kind::Long => Some(value.parse::<i64>().ok()),
        Kind::Double => {
            value
                .parse::<f64>()
                .with_context(|| format!("{}: '{value}' is not a number", property.name))?;
            None
        }
        Kind::Boolean => {
            if !value.eq_ignore_ascii_case("true") && !value.eq_ignore_ascii_case("false") {
                bail!("{}: '{value}' is not true or false", property.name);
            }
            None
        }
        Kind::String | Kind::List => None,
        Kind::Choice(choices) => {
            if !choices.iter().any(|c| c.eq_ignore_ascii_case(value)) {
                bail!(
                    "{}: '{value}' is not one of {}",
                    property.name,
                    choices.join(", ")
                );
            }
            None
        }
        Kind::ChoiceList(choices) => {
            for item in value.split(',').map(str::trim) {
                if !choices.iter().any(|c| c.eq_ignore_ascii_case(item)) {
                    bail!(
                        "{}: '{item}' is not one of {}",
                        property.name,
                        choices.join(", ")
                    );
                }
            }
            None
        }
    };
    if let Some(parsed) = numeric {
        let Some(number) = parsed else {
            bail!(
                "{}: '{value}' is not a valid {:?}",
                property.name,
                property.kind
            );
        };
        if let Some(min) = property.min {
            if number < min {
                bail!("{}: {number} is below the minimum {min}", property.name);
            }
        }
    }
    Ok(())
}

/// Broker properties as given (file, then `--set`), validated; lookups fall back to defaults.
#[derive(Clone, Debug, Default)]
pub struct Properties {
    explicit: BTreeMap<String, String>,
}

impl Properties {
    /// Parses Java `.properties` text with `java.util.Properties`' rules, as Kafka reads
    /// `server.properties`: `key=value`, `key: value` or `key value`, `#`/`!` comments,
    /// backslash escapes (`\n`, `\uXXXX`, …) and line continuations — inline PEM keys and
    /// certificates can only be written that way.
    pub fn parse_text(text: &str) -> Result<Vec<(String, String)>> {
        let mut pairs = Vec::new();
        java_properties::PropertiesIter::new_with_encoding(text.as_bytes(), encoding_rs::UTF_8)
            .read_into(|key, value| pairs.push((key, value.trim().to_string())))
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        Ok(pairs)
    }

    /// Sets a property; unknown names are kept (and warned about), invalid values refused.
    /// An unknown security setting is refused instead (fail closed): ignoring `ssl.*` or
    /// `sasl.*` could leave open what the operator meant to protect.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        match broker_property(name) {
            Some(property) => validate(property, value)?,
            None => match listener_override(name) {
                Some(ListenerOverride::Property(property)) => validate(property, value)?,
                Some(ListenerOverride::MechanismSetting) => {}
                None if is_security_setting(name) => {
                    bail!("{name}: a security setting dlog does not support; refusing to start")
                }
                None => tracing::warn!(property = name, "unknown property ignored"),
            },
        }
        self.explicit
            .insert(name.to_string(), value.trim().to_string());
        Ok(())
    }

    /// These properties with `overrides` (already validated) in force: dynamic broker configs
    /// over the static ones.
    pub fn with_overrides<'a>(
        &self,
        overrides: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Properties {
        let mut properties = self.clone();
        for (name, value) in overrides {
            properties
                .explicit
                .insert(name.to_string(), value.to_string());
        }
        properties
    }

    /// The value of `key` for listener `listener`: Kafka's listener-prefixed override
    /// (`listener.name.<lower-case name>.<key>`), else the broker-wide value.
    pub fn get_for_listener(&self, listener: &str, key: Key) -> &str {
        let prefixed = format!(
            "listener.name.{}.{}",
            listener.to_ascii_lowercase(),
            key.name()
        );
        match self.explicit.get(&prefixed) {
            Some(value) => value,
            None => self.get(key),
        }
    }

    /// An explicitly set property by its full name (listener- and mechanism-prefixed names
    /// that are not in the table, e.g. `listener.name.sasl_plaintext.plain.sasl.jaas.config`).
    pub fn get_explicit(&self, name: &str) -> Option<&str> {
        self.explicit.get(name).map(String::as_str)
    }

    pub fn is_explicit(&self, name: &str) -> bool {
        self.explicit.contains_key(name)
    }

    /// The value in force: explicit, else the default.
    pub fn get(&self, key: Key) -> &str {
        match self.explicit.get(key.name()) {
            Some(value) => value,
            None => key.property().default,
        }
    }

    pub fn get_i64(&self, key: Key) -> i64 {
        self.get(key).parse().expect("validated at set")
    }

    pub fn get_f64(&self, key: Key) -> f64 {
        self.get(key).parse().expect("validated at set")
    }

    pub fn get_bool(&self, key: Key) -> bool {
        self.get(key).eq_ignore_ascii_case("true")
    }

    /// The value in force of a property named at run time (DescribeConfigs, the broker
    /// defaults of topic configs). Kafka derives some defaults from coarser properties
    /// (`log.roll.hours`, `log.retention.hours`). Panics on a name not in the table, which is
    /// a programming error.
    pub fn effective(&self, name: &str) -> String {
        let hours = |hours_key: Key| (self.get_i64(hours_key) * 3_600_000).to_string();
        if !self.is_explicit(name) {
            if name == LOG_ROLL_MS.name() {
                return hours(LOG_ROLL_HOURS);
            }
            if name == LOG_RETENTION_MS.name() {
                return hours(LOG_RETENTION_HOURS);
            }
        }
        match self.explicit.get(name) {
            Some(value) => value.clone(),
            None => broker_property(name)
                .unwrap_or_else(|| panic!("unknown broker property {name}"))
                .default
                .to_string(),
        }
    }
}

/// The typed view of the broker configuration the server runs with.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub properties: Properties,
    pub node_id: i32,
    /// Every listener of `listeners`, the controller's included.
    pub listeners: Vec<ListenerConfig>,
    /// The listener other brokers reach this one on (registered first).
    pub inter_broker_listener: Option<String>,
    /// The inter-broker listener's bind address.
    pub listen_address: SocketAddr,
    /// Host and port of the inter-broker listener, as other brokers are told.
    pub advertised_host: String,
    pub advertised_port: i32,
    pub data_dir: PathBuf,
    pub request_size_bytes_max: usize,
    /// `queued.max.request.bytes`: None = unbounded.
    pub queued_request_bytes_max: Option<usize>,
    pub connection_idle_ms_max: u64,
    pub connections_max: usize,
    /// `max.connections.per.ip`, and its overrides by client address.
    pub connections_per_ip_max: usize,
    pub connections_per_ip_overrides: Vec<(std::net::IpAddr, usize)>,
    pub auto_create_topics: bool,
    pub default_partition_count: i32,
    /// `process.roles`.
    pub roles: ProcessRoles,
    /// The listener named in `controller.listener.names`, if any.
    pub controller_listen_address: Option<SocketAddr>,
    /// `controller.quorum.voters`: (node id, host:port); empty for a one-voter quorum.
    pub quorum_voters: Vec<(i32, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessRoles {
    pub broker: bool,
    pub controller: bool,
}

/// `controller.quorum.voters`: `1@host:port,2@host:port`.
pub fn parse_quorum_voters(text: &str) -> Result<Vec<(i32, String)>> {
    let mut voters: Vec<(i32, String)> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, address) = item
            .split_once('@')
            .with_context(|| format!("controller.quorum.voters: '{item}' is not ID@HOST:PORT"))?;
        let id: i32 = id
            .trim()
            .parse()
            .with_context(|| format!("controller.quorum.voters: bad node id in '{item}'"))?;
        let (host, port) = parse_listener(address)?;
        if id < 0 || voters.iter().any(|(v, _)| *v == id) {
            bail!("controller.quorum.voters: node id {id} negative or repeated");
        }
        voters.push((id, format!("{host}:{port}")));
    }
    Ok(voters)
}

use listeners::parse_listener;

/// `max.connections.per.ip.overrides`: `host:count` pairs, comma-separated; a host name is
/// resolved once, at start, to every address it has (as Kafka resolves it with
/// `InetAddress.getByName`). An IPv6 address is written bare (`::1:5`: the count follows the
/// last colon).
fn parse_connection_overrides(text: &str) -> Result<Vec<(std::net::IpAddr, usize)>> {
    use std::net::ToSocketAddrs;
    let mut overrides = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((host, count)) = entry.rsplit_once(':') else {
            bail!("max.connections.per.ip.overrides: '{entry}' is not host:count");
        };
        let count: usize = count
            .trim()
            .parse()
            .with_context(|| format!("max.connections.per.ip.overrides: '{entry}': bad count"))?;
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        let addresses: Vec<std::net::IpAddr> = match host.parse() {
            Ok(ip) => vec![ip],
            Err(_) => (host, 0)
                .to_socket_addrs()
                .with_context(|| {
                    format!("max.connections.per.ip.overrides: cannot resolve '{host}'")
                })?
                .map(|a| a.ip())
                .collect(),
        };
        overrides.extend(addresses.into_iter().map(|ip| (ip, count)));
    }
    Ok(overrides)
}

impl BrokerConfig {
    pub fn from_properties(properties: Properties) -> Result<BrokerConfig> {
        let listeners = listeners::listeners(&properties)?;
        let controller_listen_address = listeners
            .iter()
            .find(|l| l.controller)
            .map(|l| l.bind_address);
        let inter_broker = listeners::inter_broker_listener(&properties, &listeners)?
            .or_else(|| listeners.iter().find(|l| l.controller))
            .cloned();
        let (listen_address, advertised_host, advertised_port) = match &inter_broker {
            Some(listener) => (
                listener.bind_address,
                listener.advertised_host.clone(),
                listener.advertised_port,
            ),
            None => (
                tokio_resolve("127.0.0.1", 9092)?,
                "127.0.0.1".to_string(),
                9092,
            ),
        };
        let roles_text = properties.get(PROCESS_ROLES).to_ascii_lowercase();
        let roles = ProcessRoles {
            broker: roles_text.contains("broker"),
            controller: roles_text.contains("controller"),
        };
        let quorum_voters = parse_quorum_voters(properties.get(CONTROLLER_QUORUM_VOTERS))?;
        let node_id = properties.get_i64(NODE_ID) as i32;
        if !quorum_voters.is_empty() {
            let is_voter = quorum_voters.iter().any(|(id, _)| *id == node_id);
            if roles.controller && !is_voter {
                bail!("process.roles has controller but node.id {node_id} is not in controller.quorum.voters");
            }
            if !roles.controller && is_voter {
                bail!("node.id {node_id} is a voter in controller.quorum.voters but process.roles lacks controller");
            }
            if roles.controller && controller_listen_address.is_none() {
                bail!("a controller in a quorum needs a controller listener (listeners=CONTROLLER://HOST:PORT or --controller-listen)");
            }
            // Fail closed: the brokers' own client (replica fetchers, forwarding, markers)
            // speaks PLAINTEXT only, so a secured inter-broker listener would leave a cluster
            // unable to replicate.
            if let Some(listener) = inter_broker
                .as_ref()
                .filter(|l| l.protocol != SecurityProtocol::Plaintext)
            {
                bail!(
                    "{}: the inter-broker listener {} is {}; in a cluster it must be PLAINTEXT (secured inter-broker traffic is not supported yet)",
                    INTER_BROKER_LISTENER_NAME.name(),
                    listener.name,
                    listener.protocol.name()
                );
            }
        }
        let data_dir = if properties.is_explicit(LOG_DIRS.name()) {
            properties.get(LOG_DIRS)
        } else {
            properties.get(LOG_DIR)
        };
        if data_dir.contains(',') {
            bail!("log.dirs: dlog takes a single directory, got '{data_dir}'");
        }
        Ok(BrokerConfig {
            node_id,
            listeners,
            inter_broker_listener: inter_broker.map(|l| l.name),
            listen_address,
            advertised_host,
            advertised_port: i32::from(advertised_port),
            data_dir: PathBuf::from(data_dir),
            request_size_bytes_max: properties.get_i64(SOCKET_REQUEST_MAX_BYTES) as usize,
            queued_request_bytes_max: match properties.get_i64(QUEUED_MAX_REQUEST_BYTES) {
                bytes if bytes > 0 => Some(bytes as usize),
                _ => None,
            },
            connection_idle_ms_max: properties.get_i64(CONNECTIONS_MAX_IDLE_MS) as u64,
            connections_max: properties.get_i64(MAX_CONNECTIONS) as usize,
            connections_per_ip_max: properties.get_i64(MAX_CONNECTIONS_PER_IP) as usize,
            connections_per_ip_overrides: parse_connection_overrides(
                properties.get(MAX_CONNECTIONS_PER_IP_OVERRIDES),
            )?,
            auto_create_topics: properties.get_bool(AUTO_CREATE_TOPICS_ENABLE),
            default_partition_count: properties.get_i64(NUM_PARTITIONS) as i32,
            roles,
            controller_listen_address,
            quorum_voters,
            properties,
        })
    }
}

/// The node's periodic log tasks (flush checkpoints, retention, producer id expiration, timed
/// out transactions), read once when they start. None of these properties is a dynamic
/// broker config, so the static properties are the ones in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaintenanceSettings {
    /// `log.flush.offset.checkpoint.interval.ms`, at least a second.
    pub checkpoint_interval_ms: i64,
    /// `log.retention.check.interval.ms`
    pub retention_check_interval_ms: i64,
    /// `producer.id.expiration.ms`: a producer id idle this long is forgotten.
    pub producer_id_expiration_ms: i64,
    /// `producer.id.expiration.check.interval.ms`
    pub producer_id_expiration_check_interval_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`
    pub transaction_abort_check_interval_ms: i64,
}

impl MaintenanceSettings {
    pub fn from_properties(properties: &Properties) -> MaintenanceSettings {
        MaintenanceSettings {
            checkpoint_interval_ms: properties
                .get_i64(LOG_FLUSH_OFFSET_CHECKPOINT_INTERVAL_MS)
                .max(1000),
            retention_check_interval_ms: properties.get_i64(LOG_RETENTION_CHECK_INTERVAL_MS),
            producer_id_expiration_ms: properties.get_i64(PRODUCER_ID_EXPIRATION_MS),
            producer_id_expiration_check_interval_ms: properties
                .get_i64(PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS),
            transaction_abort_check_interval_ms: properties
                .get_i64(TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS),
        }
    }
}

fn tokio_resolve(host: &str, port: u16) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve listener host '{host}'"))?
        .next()
        .with_context(|| format!("listener host '{host}' has no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_overrides_parse_addresses_names_and_ipv6() {
        let parsed = parse_connection_overrides(" 127.0.0.2:2, [::1]:3,localhost:5 ").unwrap();
        assert!(parsed.contains(&("127.0.0.2".parse().unwrap(), 2)));
        assert!(parsed.contains(&("::1".parse().unwrap(), 3)));
        assert!(
            parsed.contains(&("127.0.0.1".parse().unwrap(), 5)),
            "{parsed:?}"
        );
        assert!(parse_connection_overrides("").unwrap().is_empty());
        assert!(parse_connection_overrides("127.0.0.2").is_err());
        assert!(parse_connection_overrides("127.0.0.2:many").is_err());
    }

    #[test]
    fn every_topic_config_has_a_broker_default() {
        for config in TOPIC_CONFIGS {
            assert!(
                broker_property(config.broker_default).is_some(),
                "{}",
                config.name
            );
        }
    }

    /// [`key`] takes the first entry of a name: a second one would be silently shadowed.
    #[test]
    fn broker_property_names_are_unique() {
        let mut names = std::collections::BTreeSet::new();
        for property in BROKER_PROPERTIES {
            assert!(names.insert(property.name), "{} twice", property.name);
        }
    }

    /// A key names its own entry of the table, and an unset property reads as its default.
    /// (A name missing from the table does not compile: see [`key`].)
    #[test]
    fn keys_resolve_to_their_properties() {
        let defaults = Properties::default();
        for (key, name, default) in [
            (LISTENERS, "listeners", "PLAINTEXT://127.0.0.1:9092"),
            (LOG_CLEANER_THREADS, "log.cleaner.threads", "1"),
            (
                TRANSACTIONAL_ID_EXPIRATION_MS,
                "transactional.id.expiration.ms",
                "604800000",
            ),
        ] {
            assert_eq!(key.name(), name);
            assert_eq!(key.property().default, default);
            assert_eq!(defaults.get(key), default);
        }
        let mut properties = Properties::default();
        properties.set("log.cleaner.threads", "3").unwrap();
        assert_eq!(properties.get_i64(LOG_CLEANER_THREADS), 3);
    }

    /// Settings built once from the static properties must not read a dynamic broker config
    /// (the broker default of a topic config): those reach the logs through `LogConfig`,
    /// rebuilt from the image's dynamic configs when they change.
    #[test]
    fn settings_read_once_are_not_dynamic() {
        let read_once = [
            LOG_FLUSH_OFFSET_CHECKPOINT_INTERVAL_MS,
            LOG_RETENTION_CHECK_INTERVAL_MS,
            PRODUCER_ID_EXPIRATION_MS,
            PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS,
            TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS,
            LOG_CLEANER_ENABLE,
            LOG_CLEANER_THREADS,
            LOG_CLEANER_DEDUPE_BUFFER_SIZE,
            LOG_CLEANER_IO_MAX_BYTES_PER_SECOND,
            LOG_CLEANER_BACKOFF_MS,
            GROUP_MIN_SESSION_TIMEOUT_MS,
            GROUP_MAX_SESSION_TIMEOUT_MS,
            GROUP_INITIAL_REBALANCE_DELAY_MS,
            GROUP_MAX_SIZE,
            OFFSETS_TOPIC_NUM_PARTITIONS,
            OFFSETS_TOPIC_SEGMENT_BYTES,
            OFFSET_METADATA_MAX_BYTES,
            OFFSETS_RETENTION_MINUTES,
            OFFSETS_RETENTION_CHECK_INTERVAL_MS,
            GROUP_CONSUMER_SESSION_TIMEOUT_MS,
            GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS,
            GROUP_CONSUMER_MAX_SIZE,
            GROUP_COORDINATOR_REBALANCE_PROTOCOLS,
            GROUP_CONSUMER_ASSIGNORS,
            GROUP_SHARE_RECORD_LOCK_DURATION_MS,
            GROUP_SHARE_DELIVERY_COUNT_LIMIT,
            GROUP_SHARE_PARTITION_MAX_RECORD_LOCKS,
            GROUP_SHARE_SESSION_TIMEOUT_MS,
            GROUP_SHARE_HEARTBEAT_INTERVAL_MS,
            GROUP_SHARE_MAX_SIZE,
            TRANSACTION_STATE_LOG_NUM_PARTITIONS,
            TRANSACTION_MAX_TIMEOUT_MS,
            TRANSACTIONAL_ID_EXPIRATION_MS,
            CONTROLLER_QUORUM_ELECTION_TIMEOUT_MS,
            CONTROLLER_QUORUM_FETCH_TIMEOUT_MS,
            METADATA_LOG_MAX_RECORD_BYTES_BETWEEN_SNAPSHOTS,
            BROKER_SESSION_TIMEOUT_MS,
            BROKER_HEARTBEAT_INTERVAL_MS,
            NUM_PARTITIONS,
            DEFAULT_REPLICATION_FACTOR,
        ];
        for key in read_once {
            assert!(
                !TOPIC_CONFIGS.iter().any(|c| c.broker_default == key.name()),
                "{} is dynamic",
                key.name()
            );
        }
    }

    #[test]
    fn maintenance_settings_keep_kafka_defaults() {
        assert_eq!(
            MaintenanceSettings::from_properties(&Properties::default()),
            MaintenanceSettings {
                checkpoint_interval_ms: 60_000,
                retention_check_interval_ms: 300_000,
                producer_id_expiration_ms: 86_400_000,
                producer_id_expiration_check_interval_ms: 600_000,
                transaction_abort_check_interval_ms: 10_000,
            }
        );
        let mut properties = Properties::default();
        properties
            .set("log.flush.offset.checkpoint.interval.ms", "10")
            .unwrap();
        assert_eq!(
            MaintenanceSettings::from_properties(&properties).checkpoint_interval_ms,
            1000
        );
    }

    #[test]
    fn invalid_values_are_refused() {
        let mut properties = Properties::default();
        assert!(properties.set("log.segment.bytes", "abc").is_err());
        assert!(properties.set("log.segment.bytes", "1").is_err());
        assert!(properties
            .set("log.message.timestamp.type", "Whenever")
            .is_err());
        properties.set("log.segment.bytes", "1048576").unwrap();
        assert_eq!(properties.get_i64(LOG_SEGMENT_BYTES), 1048576);
    }

    #[test]
    fn properties_text_parses() {
        let pairs =
            Properties::parse_text("# comment\nlog.dirs=/tmp/x\nnum.partitions : 3\n").unwrap();
        assert_eq!(
            pairs,
            vec![
                ("log.dirs".into(), "/tmp/x".into()),
                ("num.partitions".into(), "3".into())
            ]
        );
    }

    #[test]
    fn properties_text_follows_java_escapes_and_continuations() {
        // As Kafka's server.properties carries an inline PEM: escaped newlines, or a value
        // continued over lines ending in a backslash.
        let text = "ssl.keystore.key=-----BEGIN KEY-----\\nAAAA\\n-----END KEY-----\n\
                    sasl.jaas.config=org.Module required \\\n    user_a=\"x\";\n\
                    ! a comment\n\
                    unicode.name=caf\\u00e9\n";
        let pairs = Properties::parse_text(text).unwrap();
        assert_eq!(
            pairs,
            vec![
                (
                    "ssl.keystore.key".into(),
                    "-----BEGIN KEY-----\nAAAA\n-----END KEY-----".into()
                ),
                (
                    "sasl.jaas.config".into(),
                    "org.Module required user_a=\"x\";".into()
                ),
                ("unicode.name".into(), "caf\u{e9}".into()),
            ]
        );
    }

    #[test]
    fn quorum_voters_parse() {
        assert_eq!(
            parse_quorum_voters("1@127.0.0.1:19093, 2@localhost:29093").unwrap(),
            vec![(1, "127.0.0.1:19093".into()), (2, "localhost:29093".into())]
        );
        assert!(parse_quorum_voters("1@127.0.0.1:1,1@127.0.0.1:2").is_err());
        assert!(parse_quorum_voters("x@127.0.0.1:1").is_err());
        assert!(parse_quorum_voters("").unwrap().is_empty());
    }

    #[test]
    fn listener_parses() {
        assert_eq!(
            parse_listener("PLAINTEXT://127.0.0.1:9092").unwrap(),
            ("127.0.0.1".into(), 9092)
        );
        assert_eq!(
            parse_listener("127.0.0.1:19092").unwrap(),
            ("127.0.0.1".into(), 19092)
        );
    }
}
