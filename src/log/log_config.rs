//! The typed, effective configuration of one topic's logs: topic overrides over broker defaults.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::config::{self, Properties, TOPIC_CONFIGS};

#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub segment_index_bytes: usize,
    pub index_interval_bytes: u64,
    pub max_message_bytes: usize,
    pub log_append_time: bool,
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
    pub flush_messages: i64,
    pub flush_ms: i64,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub compact: bool,
    /// `cleanup.policy` holds `delete` (retention applies).
    pub delete: bool,
    pub file_delete_delay_ms: i64,
    pub delete_retention_ms: i64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    /// `producer` or a codec name.
    pub compression_type: String,
    /// In-sync replicas an acks=all produce needs (`min.insync.replicas`).
    pub min_insync_replicas: usize,
}

impl LogConfig {
    /// The value of every topic config in force: the override if set, else the broker default.
    pub fn effective_values(
        broker: &Properties,
        overrides: &BTreeMap<String, String>,
    ) -> BTreeMap<&'static str, String> {
        TOPIC_CONFIGS
            .iter()
            .map(|c| {
                (
                    c.name,
                    overrides
                        .get(c.name)
                        .cloned()
                        .unwrap_or_else(|| broker.effective(c.broker_default)),
                )
            })
            .collect()
    }

    /// Checks topic overrides: known names, values of the right kind.
    pub fn validate_overrides(overrides: &BTreeMap<String, String>) -> Result<()> {
        for (name, value) in overrides {
            if config::TOPIC_ONLY_CONFIGS.contains(&name.as_str()) {
                config::ThrottledReplicas::parse(name, value)?;
                continue;
            }
            let topic = config::topic_config(name)
                .ok_or_else(|| anyhow::anyhow!("unknown topic config {name}"))?;
            let property =
                config::broker_property(topic.broker_default).expect("table is consistent");
            config::validate(property, value).map_err(|e| {
                anyhow::anyhow!("{}", e.to_string().replacen(topic.broker_default, name, 1))
            })?;
        }
        Ok(())
    }

    pub fn new(broker: &Properties, overrides: &BTreeMap<String, String>) -> LogConfig {
        let values = Self::effective_values(broker, overrides);
        let long = |name: &str| values[name].parse::<i64>().expect("validated");
        LogConfig {
            segment_bytes: long("segment.bytes") as u64,
            segment_ms: long("segment.ms"),
            segment_index_bytes: long("segment.index.bytes") as usize,
            index_interval_bytes: long("index.interval.bytes") as u64,
            max_message_bytes: long("max.message.bytes") as usize,
            log_append_time: values["message.timestamp.type"].eq_ignore_ascii_case("LogAppendTime"),
            timestamp_before_max_ms: long("message.timestamp.before.max.ms"),
            timestamp_after_max_ms: long("message.timestamp.after.max.ms"),
            flush_messages: long("flush.messages"),
            flush_ms: long("flush.ms"),
            retention_ms: long("retention.ms"),
            retention_bytes: long("retention.bytes"),
            compact: values["cleanup.policy"].contains("compact"),
            delete: values["cleanup.policy"].contains("delete"),
            file_delete_delay_ms: long("file.delete.delay.ms"),
            delete_retention_ms: long("delete.retention.ms"),
            min_compaction_lag_ms: long("min.compaction.lag.ms"),
            max_compaction_lag_ms: long("max.compaction.lag.ms"),
            min_cleanable_dirty_ratio: values["min.cleanable.dirty.ratio"]
                .parse()
                .expect("validated"),
            compression_type: values["compression.type"].to_ascii_lowercase(),
            min_insync_replicas: long("min.insync.replicas").max(1) as usize,
        }
    }
}
