//! Broker configuration under Kafka's own property names (`server.properties`).
//!
//! Every property dlog knows is described once in [`BROKER_PROPERTIES`] (name, kind, default);
//! topic-level overrides map onto a broker default through [`TOPIC_CONFIGS`], exactly as Kafka's
//! `LogConfig` does (`segment.bytes` defaults to `log.segment.bytes`, …). Values are validated
//! when the broker starts and when a topic is created, so a bad value is refused with a message
//! instead of surfacing later as odd behaviour.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

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
const PROCESS_ROLES: &[&str] = &["broker", "controller"];
const REBALANCE_PROTOCOLS: &[&str] = &["classic", "consumer", "share", "streams"];
const CONSUMER_ASSIGNORS: &[&str] = &["uniform", "range"];
const LOG_FORMATS: &[&str] = &["text", "json"];

/// Broker properties dlog understands, with Kafka 4.x defaults.
pub const BROKER_PROPERTIES: &[Property] = &[
    property("listeners", Kind::String, "PLAINTEXT://127.0.0.1:9092"),
    property("advertised.listeners", Kind::String, ""),
    property("log.dirs", Kind::String, "./data"),
    property("log.dir", Kind::String, "./data"),
    at_least("node.id", Kind::Int, "1", 0),
    property("broker.rack", Kind::String, ""),
    at_least("broker.session.timeout.ms", Kind::Int, "9000", 1),
    at_least("broker.heartbeat.interval.ms", Kind::Int, "2000", 1),
    property(
        "process.roles",
        Kind::ChoiceList(PROCESS_ROLES),
        "broker,controller",
    ),
    // The controller quorum (KRaft). No voters: a one-voter quorum of this node.
    property("controller.quorum.voters", Kind::String, ""),
    property("controller.listener.names", Kind::String, "CONTROLLER"),
    property("cluster.id", Kind::String, ""),
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
    at_least("connections.max.idle.ms", Kind::Long, "600000", 1),
    at_least("max.connections", Kind::Int, "2147483647", 1),
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
    at_least("transactional.id.expiration.ms", Kind::Int, "604800000", 1),
    at_least(
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        Kind::Int,
        "10000",
        1,
    ),
];

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

pub fn broker_property(name: &str) -> Option<&'static Property> {
    BROKER_PROPERTIES.iter().find(|p| p.name == name)
}

pub fn topic_config(name: &str) -> Option<&'static TopicConfig> {
    TOPIC_CONFIGS.iter().find(|c| c.name == name)
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
        Kind::String => None,
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
    /// Parses Java `.properties` text: `key=value` or `key: value`, `#`/`!` comments.
    pub fn parse_text(text: &str) -> Result<Vec<(String, String)>> {
        let mut pairs = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let split_at = line
                .find(['=', ':'])
                .with_context(|| format!("line {}: expected key=value", number + 1))?;
            pairs.push((
                line[..split_at].trim().to_string(),
                line[split_at + 1..].trim().to_string(),
            ));
        }
        Ok(pairs)
    }

    /// Sets a property; unknown names are kept (and warned about), invalid values refused.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        match broker_property(name) {
            Some(property) => validate(property, value)?,
            None => tracing::warn!(property = name, "unknown property ignored"),
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

    pub fn is_explicit(&self, name: &str) -> bool {
        self.explicit.contains_key(name)
    }

    /// The value in force: explicit, else the default. Panics on a name not in the table,
    /// which is a programming error.
    pub fn get(&self, name: &str) -> &str {
        if let Some(value) = self.explicit.get(name) {
            return value;
        }
        broker_property(name)
            .unwrap_or_else(|| panic!("unknown broker property {name}"))
            .default
    }

    pub fn get_i64(&self, name: &str) -> i64 {
        self.get(name).parse().expect("validated at set")
    }

    pub fn get_bool(&self, name: &str) -> bool {
        self.get(name).eq_ignore_ascii_case("true")
    }

    /// Kafka derives some defaults from coarser properties (`log.roll.hours`, `log.retention.hours`).
    pub fn effective(&self, name: &str) -> String {
        let hours = |hours_name: &str| (self.get_i64(hours_name) * 3_600_000).to_string();
        match name {
            "log.roll.ms" if !self.is_explicit(name) => hours("log.roll.hours"),
            "log.retention.ms" if !self.is_explicit(name) => hours("log.retention.hours"),
            _ => self.get(name).to_string(),
        }
    }
}

/// The typed view of the broker configuration the server runs with.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub properties: Properties,
    pub node_id: i32,
    pub listen_address: SocketAddr,
    /// Host and port given to clients in Metadata.
    pub advertised_host: String,
    pub advertised_port: i32,
    pub data_dir: PathBuf,
    pub request_size_bytes_max: usize,
    pub connection_idle_ms_max: u64,
    pub connections_max: usize,
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

/// The `NAME://host:port` entries of a listeners list.
fn named_listeners(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| match item.split_once("://") {
            Some((name, address)) => (name.trim().to_ascii_uppercase(), address.to_string()),
            None => ("PLAINTEXT".to_string(), item.to_string()),
        })
        .collect()
}

/// `PLAINTEXT://host:port` → (host, port).
fn parse_listener(listener: &str) -> Result<(String, u16)> {
    let first = listener.split(',').next().unwrap_or_default().trim();
    let address = first
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(first);
    let (host, port) = address
        .rsplit_once(':')
        .with_context(|| format!("listener '{first}' has no port"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("listener '{first}': bad port"))?;
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

impl BrokerConfig {
    pub fn from_properties(properties: Properties) -> Result<BrokerConfig> {
        let controller_names: Vec<String> = properties
            .get("controller.listener.names")
            .split(',')
            .map(|s| s.trim().to_ascii_uppercase())
            .collect();
        let listeners = named_listeners(properties.get("listeners"));
        let controller_listener = listeners
            .iter()
            .find(|(name, _)| controller_names.contains(name))
            .map(|(_, address)| address.clone());
        let broker_listener = listeners
            .iter()
            .find(|(name, _)| !controller_names.contains(name))
            .map(|(_, address)| address.clone())
            .or_else(|| controller_listener.clone())
            .unwrap_or_else(|| "127.0.0.1:9092".to_string());
        let controller_listen_address = match &controller_listener {
            Some(address) => {
                let (host, port) = parse_listener(address)?;
                let host = if host.is_empty() {
                    "0.0.0.0".into()
                } else {
                    host
                };
                Some(tokio_resolve(&host, port)?)
            }
            None => None,
        };
        let roles_text = properties.get("process.roles").to_ascii_lowercase();
        let roles = ProcessRoles {
            broker: roles_text.contains("broker"),
            controller: roles_text.contains("controller"),
        };
        let quorum_voters = parse_quorum_voters(properties.get("controller.quorum.voters"))?;
        let node_id = properties.get_i64("node.id") as i32;
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
        }
        let (host, port) = parse_listener(&broker_listener)?;
        let bind_host = if host.is_empty() {
            "0.0.0.0".to_string()
        } else {
            host.clone()
        };
        let listen_address: SocketAddr = tokio_resolve(&bind_host, port)?;
        let (advertised_host, advertised_port) = match properties.get("advertised.listeners") {
            "" => (
                if host.is_empty() || host == "0.0.0.0" {
                    "127.0.0.1".to_string()
                } else {
                    host
                },
                port,
            ),
            advertised => {
                let listeners = named_listeners(advertised);
                let broker = listeners
                    .iter()
                    .find(|(name, _)| !controller_names.contains(name))
                    .or(listeners.first())
                    .map(|(_, address)| address.as_str())
                    .unwrap_or(advertised);
                parse_listener(broker)?
            }
        };
        let data_dir = if properties.is_explicit("log.dirs") {
            properties.get("log.dirs")
        } else {
            properties.get("log.dir")
        };
        if data_dir.contains(',') {
            bail!("log.dirs: dlog takes a single directory, got '{data_dir}'");
        }
        Ok(BrokerConfig {
            node_id,
            listen_address,
            advertised_host,
            advertised_port: i32::from(advertised_port),
            data_dir: PathBuf::from(data_dir),
            request_size_bytes_max: properties.get_i64("socket.request.max.bytes") as usize,
            connection_idle_ms_max: properties.get_i64("connections.max.idle.ms") as u64,
            connections_max: properties.get_i64("max.connections") as usize,
            auto_create_topics: properties.get_bool("auto.create.topics.enable"),
            default_partition_count: properties.get_i64("num.partitions") as i32,
            roles,
            controller_listen_address,
            quorum_voters,
            properties,
        })
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
    fn every_topic_config_has_a_broker_default() {
        for config in TOPIC_CONFIGS {
            assert!(
                broker_property(config.broker_default).is_some(),
                "{}",
                config.name
            );
        }
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
        assert_eq!(properties.get_i64("log.segment.bytes"), 1048576);
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
