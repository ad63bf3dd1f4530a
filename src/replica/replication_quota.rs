//! Replication quotas (KIP-73, Kafka's `ReplicationQuotaManager`): caps on the bytes per
//! second a broker spends replicating *throttled* replicas, so that a partition reassignment
//! does not starve clients.
//!
//! Two quotas per broker, one per side of a replica fetch:
//! - the leader side (`leader.replication.throttled.rate`): a leader answering a follower's
//!   Fetch leaves out the records of a throttled partition while the rate is exceeded —
//!   only if that follower is not in the ISR, so throttling never holds back an in-sync
//!   replica (nor the high watermark);
//! - the follower side (`follower.replication.throttled.rate`): the replica fetcher leaves a
//!   throttled partition out of its Fetch while the rate is exceeded, again only while this
//!   replica is out of the ISR.
//!
//! Which partitions are throttled comes from the topic configs
//! `leader.replication.throttled.replicas` and `follower.replication.throttled.replicas`:
//! `partition:broker` pairs naming this broker (or `*`, every replica of the topic).
//! `kafka-reassign-partitions --throttle` sets them (leader: the current replicas, follower:
//! the ones being added) and the rates, and `--verify` removes them once the move is done.
//!
//! As in Kafka, the check comes before the bytes are known and the bytes of throttled
//! partitions are recorded after (in-sync followers' included), so one fetch may pass the
//! rate by up to a fetch's size (`replica.fetch.max.bytes` per partition); the measured rate
//! then stays over the quota until the excess has been paid back. The rate is Kafka's
//! SimpleRate over `replication.quota.window.num` windows of
//! `replication.quota.window.size.seconds`.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, RwLock};

use crate::config::{
    Properties, ThrottledReplicas, FOLLOWER_REPLICATION_THROTTLED_RATE,
    FOLLOWER_REPLICATION_THROTTLED_REPLICAS, LEADER_REPLICATION_THROTTLED_RATE,
    LEADER_REPLICATION_THROTTLED_REPLICAS, REPLICATION_QUOTA_WINDOW_NUM,
    REPLICATION_QUOTA_WINDOW_SIZE_SECONDS,
};
use crate::controller::image::MetadataImage;
use crate::security::quota::{QuotaSettings, Sensor};

/// Milliseconds on a monotonic clock (since the first call): rates are measured on it, so a
/// wall-clock step does not free or freeze replication.
pub fn now_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// Which side of replication a quota caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Leader,
    Follower,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Leader => "leader",
            Side::Follower => "follower",
        }
    }
}

/// The throttled partitions of one topic on this broker: None = every partition (`*`).
type ThrottledPartitions = Option<BTreeSet<i32>>;

/// One side's quota: its rate, the partitions it applies to and the measured rate.
pub struct ReplicationQuota {
    side: Side,
    settings: QuotaSettings,
    /// Bytes per second allowed; None = unthrottled (Kafka's default, Long.MAX_VALUE).
    rate_bytes_per_second: RwLock<Option<u64>>,
    /// Topic → throttled partitions, from the topic configs naming this broker. Bounded by
    /// the topics of the image.
    throttled: RwLock<HashMap<String, ThrottledPartitions>>,
    sensor: Mutex<Sensor>,
}

impl ReplicationQuota {
    pub fn new(side: Side, settings: QuotaSettings) -> ReplicationQuota {
        ReplicationQuota {
            side,
            settings,
            rate_bytes_per_second: RwLock::new(None),
            throttled: RwLock::new(HashMap::new()),
            sensor: Mutex::new(Sensor::new(&settings, 0)),
        }
    }

    /// Kafka's `isThrottled`: whether this broker's replica of the partition is listed.
    pub fn is_throttled(&self, topic: &str, partition: i32) -> bool {
        let throttled = self.throttled.read().expect("throttled lock");
        match throttled.get(topic) {
            None => false,
            Some(None) => true,
            Some(Some(partitions)) => partitions.contains(&partition),
        }
    }

    /// Kafka's `isQuotaExceeded`: the measured rate is over the configured one (never
    /// with no rate set).
    pub fn is_exceeded(&self, now_ms: u64) -> bool {
        let Some(rate) = *self.rate_bytes_per_second.read().expect("rate lock") else {
            return false;
        };
        let measured = self
            .sensor
            .lock()
            .expect("sensor lock")
            .simple_rate_per_second(&self.settings, now_ms);
        measured > rate as f64
    }

    /// Whether a throttled partition's bytes are held back now: throttled here, the
    /// replica concerned out of the ISR, and the rate exceeded (Kafka's
    /// `shouldLeaderThrottle` / `shouldFollowerThrottle`). Counted in the metrics.
    /// `in_sync` is asked only for a throttled partition.
    pub fn holds_back(
        &self,
        topic: &str,
        partition: i32,
        in_sync: impl FnOnce() -> bool,
        now_ms: u64,
    ) -> bool {
        let held = self.is_throttled(topic, partition) && !in_sync() && self.is_exceeded(now_ms);
        if held {
            crate::metrics::replication_throttled_partition(self.side.label());
        }
        held
    }

    /// Counts `bytes` of throttled partitions against the rate.
    pub fn record(&self, bytes: u64, now_ms: u64) {
        if bytes == 0 {
            return;
        }
        self.sensor
            .lock()
            .expect("sensor lock")
            .record(&self.settings, bytes as f64, now_ms);
        crate::metrics::replication_throttled_bytes(self.side.label(), bytes);
    }

    /// Takes this side's rate and throttled partitions from `properties` (the broker
    /// properties in force, dynamic ones included) and the topic configs of `image`.
    fn update(&self, node_id: i32, image: &MetadataImage, properties: &Properties) {
        let (rate_key, replicas_config) = match self.side {
            Side::Leader => (
                LEADER_REPLICATION_THROTTLED_RATE,
                LEADER_REPLICATION_THROTTLED_REPLICAS,
            ),
            Side::Follower => (
                FOLLOWER_REPLICATION_THROTTLED_RATE,
                FOLLOWER_REPLICATION_THROTTLED_REPLICAS,
            ),
        };
        let rate = properties.get_i64(rate_key);
        *self.rate_bytes_per_second.write().expect("rate lock") =
            (0..i64::MAX).contains(&rate).then_some(rate as u64);
        let mut throttled = HashMap::new();
        for topic in image.topics.values() {
            let Some(value) = topic.configs.get(replicas_config) else {
                continue;
            };
            // Validated when it was set; a value that no longer parses throttles nothing.
            let Ok(replicas) = ThrottledReplicas::parse(replicas_config, value) else {
                continue;
            };
            let partitions = replicas.partitions_on(node_id);
            if partitions.as_ref().is_none_or(|p| !p.is_empty()) {
                throttled.insert(topic.name.clone(), partitions);
            }
        }
        *self.throttled.write().expect("throttled lock") = throttled;
    }
}

/// Both sides' quotas of this broker.
pub struct ReplicationQuotas {
    pub leader: ReplicationQuota,
    pub follower: ReplicationQuota,
}

impl ReplicationQuotas {
    pub fn new(settings: QuotaSettings) -> ReplicationQuotas {
        ReplicationQuotas {
            leader: ReplicationQuota::new(Side::Leader, settings),
            follower: ReplicationQuota::new(Side::Follower, settings),
        }
    }

    /// How the rates are measured: `replication.quota.window.*` (static, as in Kafka).
    pub fn settings(properties: &Properties) -> QuotaSettings {
        QuotaSettings {
            window_count: properties
                .get_i64(REPLICATION_QUOTA_WINDOW_NUM)
                .clamp(1, 1000) as usize,
            window_size_ms: (properties
                .get_i64(REPLICATION_QUOTA_WINDOW_SIZE_SECONDS)
                .clamp(1, 3600)
                * 1000) as u64,
            // One sensor per side: the bounds on client sensors do not apply.
            sensors_max: 1,
            sensor_idle_ms_max: u64::MAX,
            // No token bucket on the replication side.
            mutation_burst_seconds: 0.0,
        }
    }

    /// Applies the rates and throttled replicas in force after a metadata change.
    pub fn update(&self, node_id: i32, image: &MetadataImage, properties: &Properties) {
        self.leader.update(node_id, image, properties);
        self.follower.update(node_id, image, properties);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::image::TopicImage;

    fn settings() -> QuotaSettings {
        ReplicationQuotas::settings(&Properties::default())
    }

    fn image_with(topic: &str, config: &str, value: &str) -> MetadataImage {
        let mut image = MetadataImage::default();
        let mut topic_image = TopicImage {
            name: topic.to_string(),
            id: Default::default(),
            partitions: Default::default(),
            configs: Default::default(),
        };
        topic_image
            .configs
            .insert(config.to_string(), value.to_string());
        image.topics.insert(topic.to_string(), topic_image);
        image
    }

    fn with_rate(key: crate::config::Key, rate: u64) -> Properties {
        let mut properties = Properties::default();
        properties.set(key.name(), &rate.to_string()).unwrap();
        properties
    }

    #[test]
    fn throttled_replica_lists_parse_like_kafka() {
        let parse = |v: &str| ThrottledReplicas::parse("x", v);
        assert_eq!(parse(" * ").unwrap(), ThrottledReplicas::All);
        assert_eq!(parse("").unwrap(), ThrottledReplicas::Listed(vec![]));
        assert_eq!(
            parse("0:1, 1:2,0:3").unwrap(),
            ThrottledReplicas::Listed(vec![(0, 1), (1, 2), (0, 3)])
        );
        for bad in ["0", "a:1", "0:b", "-1:2", "0:1:2", "*,0:1", "0 : 1x"] {
            let error = parse(bad).unwrap_err().to_string();
            assert!(error.contains("[partitionId]:[brokerId]"), "{bad}: {error}");
        }
        assert_eq!(
            parse("0:1,1:2,2:1").unwrap().partitions_on(1),
            Some([0, 2].into())
        );
        assert_eq!(ThrottledReplicas::All.partitions_on(7), None);
    }

    #[test]
    fn only_partitions_naming_this_broker_are_throttled() {
        let quotas = ReplicationQuotas::new(settings());
        let image = image_with("t", LEADER_REPLICATION_THROTTLED_REPLICAS, "0:1,1:2,2:1");
        quotas.update(1, &image, &Properties::default());
        assert!(quotas.leader.is_throttled("t", 0));
        assert!(!quotas.leader.is_throttled("t", 1));
        assert!(quotas.leader.is_throttled("t", 2));
        assert!(!quotas.leader.is_throttled("other", 0));
        assert!(
            !quotas.follower.is_throttled("t", 0),
            "the leader list only"
        );
        let image = image_with("t", FOLLOWER_REPLICATION_THROTTLED_REPLICAS, "*");
        quotas.update(1, &image, &Properties::default());
        assert!(quotas.follower.is_throttled("t", 9));
        assert!(
            !quotas.leader.is_throttled("t", 0),
            "removed with the config"
        );
    }

    #[test]
    fn the_rate_holds_back_out_of_sync_replicas_only_once_exceeded() {
        let quotas = ReplicationQuotas::new(settings());
        let image = image_with("t", LEADER_REPLICATION_THROTTLED_REPLICAS, "*");
        // No rate configured: never exceeded, whatever is recorded.
        quotas.update(1, &image, &Properties::default());
        quotas.leader.record(1 << 30, 1_000);
        assert!(!quotas.leader.holds_back("t", 0, || false, 1_000));

        let quotas = ReplicationQuotas::new(settings());
        quotas.update(
            1,
            &image,
            &with_rate(LEADER_REPLICATION_THROTTLED_RATE, 1000),
        );
        let start_ms = 1_000_000;
        assert!(!quotas.leader.holds_back("t", 0, || false, start_ms));
        // 5000 bytes at once: over one window, 5000 B/s > 1000 B/s.
        quotas.leader.record(5000, start_ms);
        assert!(quotas.leader.holds_back("t", 0, || false, start_ms + 10));
        assert!(
            !quotas.leader.holds_back("t", 0, || true, start_ms + 10),
            "an in-sync follower is never held back"
        );
        assert!(!quotas.follower.holds_back("t", 0, || false, start_ms + 10));
        // Paid back once the 5000 bytes spread over more than 5 s.
        assert!(quotas.leader.is_exceeded(start_ms + 4_900));
        assert!(!quotas.leader.is_exceeded(start_ms + 5_100));
    }

    #[test]
    fn a_steady_sender_is_held_to_the_rate() {
        // A fetcher that sends 10 KB whenever the quota allows, checked every 10 ms, for
        // 30 s against 100 KB/s: it sends about 3 MB, never much more than the rate allows.
        let quotas = ReplicationQuotas::new(settings());
        let image = image_with("t", FOLLOWER_REPLICATION_THROTTLED_REPLICAS, "*");
        quotas.update(
            1,
            &image,
            &with_rate(FOLLOWER_REPLICATION_THROTTLED_RATE, 100_000),
        );
        let mut sent = 0u64;
        let start_ms = 5_000_000u64;
        for step in 0..3000u64 {
            let now_ms = start_ms + step * 10;
            if !quotas.follower.holds_back("t", 0, || false, now_ms) {
                quotas.follower.record(10_000, now_ms);
                sent += 10_000;
            }
        }
        assert!(
            (2_900_000..=3_100_000).contains(&sent),
            "sent {sent} bytes in 30 s at 100 KB/s"
        );
    }
}
