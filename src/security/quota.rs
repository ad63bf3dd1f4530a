//! Kafka's client quotas: what is configured (entities and their quota values, held in the
//! metadata image, changed by AlterClientQuotas through `ClientQuota` records) and how the
//! broker measures and enforces them: byte rates (Kafka's ClientQuotaManager), request time
//! (ClientRequestQuotaManager) and partition mutations (KIP-599's ControllerMutationQuotaManager,
//! a token bucket).
//!
//! An entity is a set of (entity type, name) pairs where a name of None is the type's default
//! (`--entity-default`). Users and client ids combine; ip stands alone. The quota that applies
//! to a request is the most specific entity matching the request's user and client id, in
//! Kafka's order (`/config/users/<user>/clients/<client-id>` first, `clients/<default>` last).
//! Rates are measured over `quota.window.num` samples of `quota.window.size.seconds`; a client
//! over its quota is answered with a throttle time and its connection is not read from for
//! that long (KIP-219), so a misbehaving client cannot push past its rate.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

pub const ENTITY_USER: &str = "user";
pub const ENTITY_CLIENT_ID: &str = "client-id";
pub const ENTITY_IP: &str = "ip";

pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";
pub const CONNECTION_CREATION_RATE: &str = "connection_creation_rate";

/// Whether a quota key takes whole numbers (Kafka's LONG / INT config types).
fn key_is_integral(key: &str) -> Option<bool> {
    match key {
        PRODUCER_BYTE_RATE | CONSUMER_BYTE_RATE | CONNECTION_CREATION_RATE => Some(true),
        REQUEST_PERCENTAGE | CONTROLLER_MUTATION_RATE => Some(false),
        _ => None,
    }
}

/// A quota entity: (entity type, name; None = the type's default), sorted by type, each
/// type at most once.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QuotaEntity(Vec<(String, Option<String>)>);

impl QuotaEntity {
    /// Kafka's checks of an entity to alter: no type twice, known types only, no empty name,
    /// user and client id together or ip alone, an ip entity's name an IP address (Kafka also
    /// resolves host names there; a name is refused here, the broker does no DNS lookups).
    pub fn new(mut parts: Vec<(String, Option<String>)>) -> Result<QuotaEntity, String> {
        if parts.is_empty() {
            return Err("Invalid empty client quota entity".to_string());
        }
        parts.sort();
        for pair in parts.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(format!(
                    "Invalid client quota entity, duplicate entity entry {}",
                    pair[0].0
                ));
            }
        }
        let has = |t: &str| parts.iter().any(|(entity_type, _)| entity_type == t);
        for (entity_type, name) in &parts {
            if name.as_ref().is_some_and(|n| n.is_empty()) {
                return Err(format!("Empty {entity_type} not supported"));
            }
            match entity_type.as_str() {
                ENTITY_USER | ENTITY_CLIENT_ID => {}
                ENTITY_IP => {
                    if let Some(name) = name {
                        if name.parse::<IpAddr>().is_err() {
                            return Err(format!("{name} is not a valid IP or resolvable host."));
                        }
                    }
                }
                other => return Err(format!("Unhandled client quota entity type: {other}")),
            }
        }
        if has(ENTITY_IP) && parts.len() > 1 {
            return Err("Invalid quota entity combination, IP entity should not be combined with User or ClientId entities.".to_string());
        }
        Ok(QuotaEntity(parts))
    }

    /// The entity of a user and/or client id: Some(None) is that type's default.
    fn of(user: Option<Option<&str>>, client_id: Option<Option<&str>>) -> QuotaEntity {
        let mut parts = Vec::with_capacity(2);
        // Sorted by type: "client-id" < "user".
        if let Some(name) = client_id {
            parts.push((ENTITY_CLIENT_ID.to_string(), name.map(str::to_string)));
        }
        if let Some(name) = user {
            parts.push((ENTITY_USER.to_string(), name.map(str::to_string)));
        }
        QuotaEntity(parts)
    }

    pub fn parts(&self) -> &[(String, Option<String>)] {
        &self.0
    }

    /// The name of `entity_type` in this entity: None if absent, Some(None) its default.
    pub fn get(&self, entity_type: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(t, _)| t == entity_type)
            .map(|(_, name)| name.as_deref())
    }

    /// Kafka's check of a value for `key` on this entity.
    pub fn validate(&self, key: &str, value: f64) -> Result<(), String> {
        let ip = self.get(ENTITY_IP).is_some();
        let valid_key = if ip {
            key == CONNECTION_CREATION_RATE
        } else {
            key != CONNECTION_CREATION_RATE && key_is_integral(key).is_some()
        };
        if !valid_key {
            return Err(format!("Invalid configuration key {key}"));
        }
        if !value.is_finite() {
            return Err(format!("Configuration {key} must be a finite number"));
        }
        if key_is_integral(key) == Some(true) && (value - value.round()).abs() > 1e-6 {
            return Err(format!("Configuration {key} must be a Long value"));
        }
        Ok(())
    }
}

/// A quota value as metadata records carry it. Values are finite (AlterClientQuotas refuses
/// others), so equality is total.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QuotaValue(pub f64);

impl Eq for QuotaValue {}

/// Every configured quota, by entity then key. Serialized as a list (JSON maps need string
/// keys), so the image's snapshot carries it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientQuotas {
    entries: BTreeMap<QuotaEntity, BTreeMap<String, f64>>,
}

impl Serialize for ClientQuotas {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.entries.iter())
    }
}

impl<'de> Deserialize<'de> for ClientQuotas {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries: Vec<(QuotaEntity, BTreeMap<String, f64>)> = Vec::deserialize(deserializer)?;
        Ok(ClientQuotas {
            entries: entries.into_iter().collect(),
        })
    }
}

/// Which rate something counts against: a request's bytes, the time spent handling a
/// request, partitions created or deleted, or a new connection from an address (KIP-612's
/// per-IP `connection_creation_rate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuotaType {
    Produce,
    Fetch,
    Request,
    ControllerMutation,
    ConnectionCreation,
}

impl QuotaType {
    pub fn key(self) -> &'static str {
        match self {
            QuotaType::Produce => PRODUCER_BYTE_RATE,
            QuotaType::Fetch => CONSUMER_BYTE_RATE,
            QuotaType::Request => REQUEST_PERCENTAGE,
            QuotaType::ControllerMutation => CONTROLLER_MUTATION_RATE,
            QuotaType::ConnectionCreation => CONNECTION_CREATION_RATE,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            QuotaType::Produce => "produce",
            QuotaType::Fetch => "fetch",
            QuotaType::Request => "request",
            QuotaType::ControllerMutation => "controller_mutation",
            QuotaType::ConnectionCreation => "connection_creation",
        }
    }
}

/// The quota applying to a request and the group it is shared by: Kafka's metric tags (the
/// user and client id the matched entity names, with a default standing for the request's
/// own name; "" for a type the entity does not have).
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedQuota {
    /// The quota's value: bytes/s, percent of one thread, or partition mutations/s.
    pub bound_per_second: f64,
    pub user: String,
    pub client_id: String,
}

impl ClientQuotas {
    /// Sets (`Some`) or removes (`None`) `key` of `entity`; an entity left with no key goes.
    pub fn apply(&mut self, entity: &QuotaEntity, key: &str, value: Option<f64>) {
        match value {
            Some(value) => {
                self.entries
                    .entry(entity.clone())
                    .or_default()
                    .insert(key.to_string(), value);
            }
            None => {
                if let Some(values) = self.entries.get_mut(entity) {
                    values.remove(key);
                    if values.is_empty() {
                        self.entries.remove(entity);
                    }
                }
            }
        }
    }

    pub fn get(&self, entity: &QuotaEntity) -> Option<&BTreeMap<String, f64>> {
        self.entries.get(entity)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&QuotaEntity, &BTreeMap<String, f64>)> {
        self.entries.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The connection creation rate (connections/s) for `ip`: its own entity's, else the ip
    /// default's, as Kafka's ConnectionQuotas looks them up.
    pub fn connection_rate(&self, ip: IpAddr) -> Option<f64> {
        if self.entries.is_empty() {
            return None;
        }
        let rate_of = |name: Option<String>| {
            let entity = QuotaEntity(vec![(ENTITY_IP.to_string(), name)]);
            self.entries
                .get(&entity)?
                .get(CONNECTION_CREATION_RATE)
                .copied()
        };
        rate_of(Some(ip.to_string())).or_else(|| rate_of(None))
    }

    /// Kafka's DefaultQuotaCallback: the first entity in precedence order that sets `quota`'s
    /// key, for `user` and `client_id`.
    pub fn resolve(&self, quota: QuotaType, user: &str, client_id: &str) -> Option<ResolvedQuota> {
        if self.entries.is_empty() {
            return None;
        }
        let (u, c) = (Some(user), Some(client_id));
        let default = None;
        // (user part, client-id part) in Kafka's precedence.
        let order: [(Option<Option<&str>>, Option<Option<&str>>); 8] = [
            (Some(u), Some(c)),
            (Some(u), Some(default)),
            (Some(u), None),
            (Some(default), Some(c)),
            (Some(default), Some(default)),
            (Some(default), None),
            (None, Some(c)),
            (None, Some(default)),
        ];
        order.into_iter().find_map(|(user_part, client_part)| {
            let entity = QuotaEntity::of(user_part, client_part);
            let value = *self.entries.get(&entity)?.get(quota.key())?;
            Some(ResolvedQuota {
                bound_per_second: value,
                user: if user_part.is_some() {
                    user.to_string()
                } else {
                    String::new()
                },
                client_id: if client_part.is_some() {
                    client_id.to_string()
                } else {
                    String::new()
                },
            })
        })
    }
}

/// What a describe filter asks for: Kafka's DescribeClientQuotas components and `strict`.
pub enum MatchType {
    /// The entity names exactly this (Some) or is the default (None).
    Exact(Option<String>),
    /// Any non-default name.
    Specified,
}

impl ClientQuotas {
    /// Kafka's filter semantics: every component must match; with `strict`, the entity has
    /// no other type.
    pub fn describe<'a>(
        &'a self,
        components: &'a [(String, MatchType)],
        strict: bool,
    ) -> impl Iterator<Item = (&'a QuotaEntity, &'a BTreeMap<String, f64>)> + 'a {
        self.entries.iter().filter(move |(entity, _)| {
            if strict && entity.parts().len() != components.len() {
                return false;
            }
            components.iter().all(|(entity_type, match_type)| {
                match (entity.get(entity_type), match_type) {
                    (None, _) => false,
                    (Some(name), MatchType::Exact(wanted)) => name == wanted.as_deref(),
                    (Some(name), MatchType::Specified) => name.is_some(),
                }
            })
        })
    }
}

/// How rates are measured (Kafka's `quota.window.num`, `quota.window.size.seconds`).
#[derive(Clone, Copy, Debug)]
pub struct QuotaSettings {
    pub window_count: usize,
    pub window_size_ms: u64,
    /// Most sensors kept; beyond it idle ones are dropped first, then the least recent.
    pub sensors_max: usize,
    /// A sensor not recorded to for this long is dropped (Kafka: one hour).
    pub sensor_idle_ms_max: u64,
    /// The controller mutation token bucket holds this many seconds of its rate (Kafka:
    /// `controller.quota.window.num` × `controller.quota.window.size.seconds`).
    pub mutation_burst_seconds: f64,
}

impl QuotaSettings {
    pub fn from_properties(properties: &crate::config::Properties) -> QuotaSettings {
        QuotaSettings {
            window_count: properties
                .get_i64(crate::config::QUOTA_WINDOW_NUM)
                .clamp(2, 1000) as usize,
            window_size_ms: (properties
                .get_i64(crate::config::QUOTA_WINDOW_SIZE_SECONDS)
                .clamp(1, 3600)
                * 1000) as u64,
            sensors_max: SENSORS_MAX,
            sensor_idle_ms_max: SENSOR_IDLE_MS_MAX,
            mutation_burst_seconds: (properties
                .get_i64(crate::config::CONTROLLER_QUOTA_WINDOW_NUM)
                .clamp(1, 1000)
                * properties
                    .get_i64(crate::config::CONTROLLER_QUOTA_WINDOW_SIZE_SECONDS)
                    .clamp(1, 3600)) as f64,
        }
    }
}

/// Bound on the sensors kept (one per quota type and (user, client id) group measured).
const SENSORS_MAX: usize = 10_000;
/// Kafka's inactive sensor expiration: one hour.
const SENSOR_IDLE_MS_MAX: u64 = 3_600_000;

#[derive(Clone, Copy, Debug)]
struct Sample {
    start_ms: u64,
    bytes: f64,
}

/// Kafka's Rate over a SampledStat: the last `window_count` samples of `window_size_ms` each.
/// Also the replication quotas' sensor (`replica::replication_quota`).
#[derive(Debug)]
pub struct Sensor {
    samples: VecDeque<Sample>,
    last_record_ms: u64,
}

impl Sensor {
    pub fn new(settings: &QuotaSettings, now_ms: u64) -> Sensor {
        Sensor {
            samples: VecDeque::with_capacity(settings.window_count),
            last_record_ms: now_ms,
        }
    }

    /// Kafka's SimpleRate (the replication quotas' rate): over the time since the oldest
    /// sample still measured, but at least one window, so a quiet sensor's first bytes
    /// count over one window and the rate is exact once the samples span the whole period.
    pub fn simple_rate_per_second(&mut self, settings: &QuotaSettings, now_ms: u64) -> f64 {
        self.purge(settings, now_ms);
        let oldest = self.samples.front().map_or(now_ms, |s| s.start_ms);
        let window_ms = now_ms
            .saturating_sub(oldest)
            .max(settings.window_size_ms)
            .max(1);
        let total: f64 = self.samples.iter().map(|s| s.bytes).sum();
        total * 1000.0 / window_ms as f64
    }

    pub fn record(&mut self, settings: &QuotaSettings, bytes: f64, now_ms: u64) {
        self.purge(settings, now_ms);
        let start_new = self
            .samples
            .back()
            .is_none_or(|s| now_ms >= s.start_ms + settings.window_size_ms);
        if start_new {
            self.samples.push_back(Sample {
                start_ms: now_ms,
                bytes: 0.0,
            });
            while self.samples.len() > settings.window_count {
                self.samples.pop_front();
            }
        }
        self.samples.back_mut().expect("a current sample").bytes += bytes;
        self.last_record_ms = now_ms;
    }

    /// Samples older than the whole measured span count no more.
    fn purge(&mut self, settings: &QuotaSettings, now_ms: u64) {
        let span_ms = settings.window_size_ms * settings.window_count as u64;
        while self
            .samples
            .front()
            .is_some_and(|s| now_ms.saturating_sub(s.start_ms) >= span_ms)
        {
            self.samples.pop_front();
        }
    }

    /// Kafka's Rate.windowSize: the time since the oldest sample, but never less than
    /// `window_count - 1` full windows (a new client's first bytes are not a burst rate).
    fn window_ms(&self, settings: &QuotaSettings, now_ms: u64) -> u64 {
        let oldest = self.samples.front().map_or(now_ms, |s| s.start_ms);
        let elapsed_ms = now_ms.saturating_sub(oldest);
        let full_windows = elapsed_ms / settings.window_size_ms;
        let min_full_windows = settings.window_count as u64 - 1;
        if full_windows < min_full_windows {
            elapsed_ms + (min_full_windows - full_windows) * settings.window_size_ms
        } else {
            elapsed_ms
        }
    }

    fn rate_per_second(&self, settings: &QuotaSettings, now_ms: u64) -> (f64, u64) {
        let window_ms = self.window_ms(settings, now_ms).max(1);
        let total: f64 = self.samples.iter().map(|s| s.bytes).sum();
        (total * 1000.0 / window_ms as f64, window_ms)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SensorKey {
    quota: QuotaType,
    user: String,
    client_id: String,
}

/// The byte-rate sensors of the client groups that have a quota (Kafka's
/// ClientQuotaManager), bounded: `sensors_max` at most, idle ones dropped.
pub struct QuotaManager {
    settings: QuotaSettings,
    sensors: Mutex<HashMap<SensorKey, Sensor>>,
    /// Controller mutation token buckets, bounded as the sensors are.
    buckets: Mutex<HashMap<SensorKey, TokenBucket>>,
}

/// Kafka's TokenBucket: refilled at the quota's rate up to `burst` tokens, one taken per
/// partition created or deleted; below zero the quota is exhausted.
#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    last_update_ms: u64,
}

impl TokenBucket {
    fn refill(&mut self, rate_per_second: f64, burst: f64, now_ms: u64) {
        let elapsed_ms = now_ms.saturating_sub(self.last_update_ms);
        self.tokens = (self.tokens + rate_per_second * elapsed_ms as f64 / 1000.0).min(burst);
        self.last_update_ms = self.last_update_ms.max(now_ms);
    }

    /// The time until the bucket is back at zero (Kafka's `-tokens / rate × 1000`); with a
    /// rate of 0 it never is: one hour, as a bound.
    fn throttle_ms(&self, rate_per_second: f64) -> u64 {
        if self.tokens >= 0.0 {
            return 0;
        }
        if rate_per_second <= 0.0 {
            return SENSOR_IDLE_MS_MAX;
        }
        ((-self.tokens / rate_per_second * 1000.0).round() as u64).min(SENSOR_IDLE_MS_MAX)
    }
}

/// One request's controller mutation quota (Kafka's ControllerMutationQuota): the bucket it
/// charges (None without a quota), strict or permissive, and the throttle time its charges
/// led to, for the response.
#[derive(Debug)]
pub struct ControllerMutationQuota {
    bucket: Option<(SensorKey, f64)>,
    strict: bool,
    throttle_ms: u64,
}

impl ControllerMutationQuota {
    /// The throttle time for the response: set by a strict refusal or a permissive charge
    /// that emptied the bucket, else 0.
    pub fn throttle_ms(&self) -> u64 {
        self.throttle_ms
    }
}

impl QuotaManager {
    pub fn new(settings: QuotaSettings) -> QuotaManager {
        assert!(
            settings.window_count >= 2 && settings.window_size_ms > 0 && settings.sensors_max > 0
        );
        QuotaManager {
            settings,
            sensors: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Records `bytes` against the quota that applies to (`user`, `client_id`) and returns
    /// the throttle time in milliseconds: 0 within the quota (or with no quota), else Kafka's
    /// `(observed - quota) / quota × window`. Unlike Kafka's byte-rate quotas (whose throttle
    /// is unbounded) it is capped at the measured span (`window_count × window_size_ms`), as
    /// Kafka bounds its request quota: one huge request then mutes its connection for at most
    /// 11 s rather than past the client's request timeout; its bytes stay in the samples, so
    /// the next requests are throttled on and the rate still converges to the quota.
    pub fn record(
        &self,
        quotas: &ClientQuotas,
        quota: QuotaType,
        user: &str,
        client_id: &str,
        bytes: u64,
        now_ms: u64,
    ) -> u64 {
        let Some((key, bound)) = Self::sensor_key(quotas, quota, user, client_id) else {
            return 0;
        };
        let throttle_ms_max = self.settings.window_size_ms * self.settings.window_count as u64;
        self.record_into(key, bound, bytes as f64, now_ms, throttle_ms_max)
    }

    /// Kafka's ClientRequestQuotaManager: records `handling_ns` of request handling against
    /// the `request_percentage` that applies to (`user`, `client_id`) and returns the
    /// throttle time in milliseconds.
    ///
    /// The quota is a percentage of one thread's time: Kafka records each request's network
    /// and I/O thread nanoseconds as `nanos × 100 / 1e9` and compares the per-second rate of
    /// that sum with the quota, so 100 is one whole thread, 200 two, whatever the thread pool
    /// sizes. dlog has no fixed I/O and network pools (requests run on the runtime's workers
    /// and the blocking pool), so the faithful equivalent is the same unit of time: the wall
    /// time the request spent being handled on whichever thread ran it, measured around
    /// dispatch (waits for a deferred response excluded, as Kafka excludes purgatory time).
    /// As Kafka, one throttle is at most one window (`quota.window.size.seconds`).
    pub fn record_request_time(
        &self,
        quotas: &ClientQuotas,
        user: &str,
        client_id: &str,
        handling_ns: u64,
        now_ms: u64,
    ) -> u64 {
        let Some((key, bound)) = Self::sensor_key(quotas, QuotaType::Request, user, client_id)
        else {
            return 0;
        };
        let percent_seconds = handling_ns as f64 * 100.0 / 1e9;
        self.record_into(
            key,
            bound,
            percent_seconds,
            now_ms,
            self.settings.window_size_ms,
        )
    }

    /// Records a new connection from `ip` against its `connection_creation_rate`: true when
    /// it may open. A refused connection is taken back out of the rate (as Kafka does), so
    /// an address retrying in a loop is let in again as soon as its earlier ones age out.
    pub fn record_connection(&self, quotas: &ClientQuotas, ip: IpAddr, now_ms: u64) -> bool {
        let Some(bound) = quotas.connection_rate(ip) else {
            return true;
        };
        let key = SensorKey {
            quota: QuotaType::ConnectionCreation,
            user: String::new(),
            client_id: ip.to_string(),
        };
        let throttle_ms_max = self.settings.window_size_ms * self.settings.window_count as u64;
        if self.record_into(key.clone(), bound, 1.0, now_ms, throttle_ms_max) == 0 {
            return true;
        }
        let mut sensors = self.sensors.lock().expect("quota sensors lock");
        if let Some(sensor) = sensors.get_mut(&key) {
            sensor.record(&self.settings, -1.0, now_ms);
        }
        false
    }

    /// Records `amount` into the sensor `key` with bound `bound` (per second) and returns the
    /// throttle time in milliseconds, at most `throttle_ms_max`.
    fn record_into(
        &self,
        key: SensorKey,
        bound: f64,
        amount: f64,
        now_ms: u64,
        throttle_ms_max: u64,
    ) -> u64 {
        let settings = &self.settings;
        let mut sensors = self.sensors.lock().expect("quota sensors lock");
        if !sensors.contains_key(&key) && sensors.len() >= settings.sensors_max {
            self.evict(&mut sensors, now_ms);
        }
        let sensor = sensors
            .entry(key)
            .or_insert_with(|| Sensor::new(settings, now_ms));
        sensor.record(settings, amount, now_ms);
        let (rate, window_ms) = sensor.rate_per_second(settings, now_ms);
        if rate <= bound {
            return 0;
        }
        if bound <= 0.0 {
            // Kafka accepts a quota of 0 (nothing may pass): its throttle is unbounded.
            return throttle_ms_max;
        }
        let throttle_ms = ((rate - bound) / bound * window_ms as f64).round() as u64;
        throttle_ms.min(throttle_ms_max)
    }

    /// The sensor `quota` of (`user`, `client_id`) records into — the quota entity that applies,
    /// so clients sharing a default entity share one sensor — and its bound in bytes/s.
    fn sensor_key(
        quotas: &ClientQuotas,
        quota: QuotaType,
        user: &str,
        client_id: &str,
    ) -> Option<(SensorKey, f64)> {
        let resolved = quotas.resolve(quota, user, client_id)?;
        let key = SensorKey {
            quota,
            user: resolved.user,
            client_id: resolved.client_id,
        };
        Some((key, resolved.bound_per_second))
    }

    /// Takes back `bytes` recorded now (a throttled fetch answers no data, as Kafka's
    /// `unrecordQuotaSensor`).
    pub fn unrecord(
        &self,
        quotas: &ClientQuotas,
        quota: QuotaType,
        user: &str,
        client_id: &str,
        bytes: u64,
        now_ms: u64,
    ) {
        let Some((key, _)) = Self::sensor_key(quotas, quota, user, client_id) else {
            return;
        };
        let mut sensors = self.sensors.lock().expect("quota sensors lock");
        if let Some(sensor) = sensors.get_mut(&key) {
            sensor.record(&self.settings, -(bytes as f64), now_ms);
        }
    }

    /// Kafka's `getMaxValueInQuotaWindow`: the most bytes the quota allows over the shortest
    /// measured span, which caps a consumer's fetch so one response can pass the quota (a
    /// larger one would be throttled and taken back forever). None without a quota.
    pub fn max_bytes_in_window(
        &self,
        quotas: &ClientQuotas,
        quota: QuotaType,
        user: &str,
        client_id: &str,
    ) -> Option<u64> {
        let resolved = quotas.resolve(quota, user, client_id)?;
        let span_ms = (self.settings.window_count as u64 - 1) * self.settings.window_size_ms;
        Some((resolved.bound_per_second.max(0.0) * span_ms as f64 / 1000.0) as u64)
    }

    /// The controller mutation quota of one request from (`user`, `client_id`): `strict` for
    /// the request versions that may refuse topics (KIP-599), permissive for older ones.
    pub fn mutation_quota(
        &self,
        quotas: &ClientQuotas,
        user: &str,
        client_id: &str,
        strict: bool,
    ) -> ControllerMutationQuota {
        ControllerMutationQuota {
            bucket: Self::sensor_key(quotas, QuotaType::ControllerMutation, user, client_id),
            strict,
            throttle_ms: 0,
        }
    }

    /// Kafka's `applyPartitionChangeQuota`: charges `partitions` created or deleted to the
    /// request's bucket. A strict quota refuses (Err with the throttle time in ms) when the
    /// bucket is already empty, and otherwise lets the charge take it below zero; a
    /// permissive one always charges and takes a throttle time once it is below zero.
    pub fn record_mutation(
        &self,
        quota: &mut ControllerMutationQuota,
        partitions: u32,
        now_ms: u64,
    ) -> Result<(), u64> {
        let Some((key, bound)) = &quota.bucket else {
            return Ok(());
        };
        let mut buckets = self.buckets.lock().expect("quota buckets lock");
        if !buckets.contains_key(key) && buckets.len() >= self.settings.sensors_max {
            let idle_ms_max = self.settings.sensor_idle_ms_max;
            buckets.retain(|_, b| now_ms.saturating_sub(b.last_update_ms) < idle_ms_max);
            if buckets.len() >= self.settings.sensors_max {
                // Full buckets first: dropping one forgets nothing (a new bucket starts full).
                let victim = buckets
                    .iter()
                    .max_by(|a, b| a.1.tokens.total_cmp(&b.1.tokens))
                    .map(|(k, _)| k.clone());
                if let Some(victim) = victim {
                    buckets.remove(&victim);
                }
            }
        }
        let burst = bound.max(0.0) * self.settings.mutation_burst_seconds;
        let bucket = buckets.entry(key.clone()).or_insert(TokenBucket {
            tokens: burst,
            last_update_ms: now_ms,
        });
        bucket.refill(*bound, burst, now_ms);
        if quota.strict && bucket.tokens < 0.0 {
            let throttle_ms = bucket.throttle_ms(*bound);
            quota.throttle_ms = throttle_ms;
            return Err(throttle_ms);
        }
        bucket.tokens = (bucket.tokens - partitions as f64).min(burst);
        if !quota.strict && bucket.tokens < 0.0 {
            quota.throttle_ms = bucket.throttle_ms(*bound);
        }
        Ok(())
    }

    /// Gives back `partitions` charged for a change that then failed (dlog charges before
    /// the controller's own checks; Kafka charges after them).
    pub fn unrecord_mutation(&self, quota: &ControllerMutationQuota, partitions: u32) {
        let Some((key, _)) = &quota.bucket else {
            return;
        };
        let mut buckets = self.buckets.lock().expect("quota buckets lock");
        if let Some(bucket) = buckets.get_mut(key) {
            // Never above the burst the next refill allows; a lower value is refilled later.
            bucket.tokens += partitions as f64;
        }
    }

    pub fn sensor_count(&self) -> usize {
        self.sensors.lock().expect("quota sensors lock").len()
    }

    /// Makes room for one sensor: drops the idle ones, else the least recently recorded.
    fn evict(&self, sensors: &mut HashMap<SensorKey, Sensor>, now_ms: u64) {
        let idle_ms_max = self.settings.sensor_idle_ms_max;
        sensors.retain(|_, s| now_ms.saturating_sub(s.last_record_ms) < idle_ms_max);
        if sensors.len() >= self.settings.sensors_max {
            let oldest = sensors
                .iter()
                .min_by_key(|(_, s)| s.last_record_ms)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                sensors.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(parts: &[(&str, Option<&str>)]) -> QuotaEntity {
        QuotaEntity::new(
            parts
                .iter()
                .map(|(t, n)| (t.to_string(), n.map(str::to_string)))
                .collect(),
        )
        .unwrap()
    }

    fn settings() -> QuotaSettings {
        QuotaSettings {
            window_count: 11,
            window_size_ms: 1000,
            sensors_max: 3,
            sensor_idle_ms_max: 3_600_000,
            mutation_burst_seconds: 11.0,
        }
    }

    #[test]
    fn entities_are_validated_as_kafka_does() {
        let parts = |p: &[(&str, Option<&str>)]| {
            QuotaEntity::new(
                p.iter()
                    .map(|(t, n)| (t.to_string(), n.map(str::to_string)))
                    .collect(),
            )
        };
        assert!(parts(&[]).is_err());
        assert!(parts(&[("user", Some("a")), ("user", Some("b"))]).is_err());
        assert!(parts(&[("group", Some("a"))]).is_err());
        assert!(parts(&[("ip", Some("not-an-ip"))]).is_err());
        assert!(parts(&[("ip", Some("10.0.0.1")), ("user", Some("a"))]).is_err());
        assert!(parts(&[("ip", None)]).is_ok());
        let both = parts(&[("user", Some("a")), ("client-id", None)]).unwrap();
        assert_eq!(both.get("client-id"), Some(None));
        assert!(both.validate(PRODUCER_BYTE_RATE, 1024.0).is_ok());
        assert!(both.validate(PRODUCER_BYTE_RATE, 10.5).is_err());
        assert!(both.validate(REQUEST_PERCENTAGE, 10.5).is_ok());
        assert!(both.validate(CONNECTION_CREATION_RATE, 10.0).is_err());
        assert!(both.validate("unknown", 10.0).is_err());
        let ip = parts(&[("ip", None)]).unwrap();
        assert!(ip.validate(CONNECTION_CREATION_RATE, 10.0).is_ok());
        assert!(ip.validate(PRODUCER_BYTE_RATE, 10.0).is_err());
    }

    #[test]
    fn precedence_follows_kafka() {
        let mut quotas = ClientQuotas::default();
        let levels: [(&[(&str, Option<&str>)], f64); 8] = [
            (&[("client-id", None)], 8.0),
            (&[("client-id", Some("c"))], 7.0),
            (&[("user", None)], 6.0),
            (&[("user", None), ("client-id", None)], 5.0),
            (&[("user", None), ("client-id", Some("c"))], 4.0),
            (&[("user", Some("u"))], 3.0),
            (&[("user", Some("u")), ("client-id", None)], 2.0),
            (&[("user", Some("u")), ("client-id", Some("c"))], 1.0),
        ];
        for (parts, value) in levels.iter() {
            quotas.apply(&entity(parts), PRODUCER_BYTE_RATE, Some(*value));
        }
        // Remove the most specific one at a time: the next level takes over.
        for expected in 1..=8 {
            let resolved = quotas.resolve(QuotaType::Produce, "u", "c").unwrap();
            assert_eq!(resolved.bound_per_second, expected as f64);
            let (parts, _) = levels[8 - expected];
            quotas.apply(&entity(parts), PRODUCER_BYTE_RATE, None);
        }
        assert!(quotas.resolve(QuotaType::Produce, "u", "c").is_none());
        assert!(quotas.is_empty());
    }

    #[test]
    fn defaults_group_by_the_real_names() {
        let mut quotas = ClientQuotas::default();
        quotas.apply(&entity(&[("user", None)]), CONSUMER_BYTE_RATE, Some(10.0));
        let resolved = quotas.resolve(QuotaType::Fetch, "alice", "c1").unwrap();
        assert_eq!(
            (resolved.user.as_str(), resolved.client_id.as_str()),
            ("alice", "")
        );
        assert!(quotas.resolve(QuotaType::Produce, "alice", "c1").is_none());
    }

    #[test]
    fn describe_filters() {
        let mut quotas = ClientQuotas::default();
        quotas.apply(
            &entity(&[("user", Some("a"))]),
            PRODUCER_BYTE_RATE,
            Some(1.0),
        );
        quotas.apply(&entity(&[("user", None)]), PRODUCER_BYTE_RATE, Some(2.0));
        quotas.apply(
            &entity(&[("user", Some("a")), ("client-id", Some("c"))]),
            PRODUCER_BYTE_RATE,
            Some(3.0),
        );
        let count = |components: Vec<(String, MatchType)>, strict| {
            quotas.describe(&components, strict).count()
        };
        assert_eq!(count(vec![], false), 3);
        assert_eq!(count(vec![], true), 0);
        assert_eq!(count(vec![("user".into(), MatchType::Specified)], false), 2);
        assert_eq!(count(vec![("user".into(), MatchType::Specified)], true), 1);
        assert_eq!(
            count(vec![("user".into(), MatchType::Exact(None))], false),
            1
        );
        assert_eq!(
            count(
                vec![("user".into(), MatchType::Exact(Some("a".into())))],
                false
            ),
            2
        );
        assert_eq!(
            count(vec![("client-id".into(), MatchType::Specified)], false),
            1
        );
    }

    #[test]
    fn throttle_time_is_kafkas() {
        let mut quotas = ClientQuotas::default();
        quotas.apply(
            &entity(&[("client-id", Some("c"))]),
            PRODUCER_BYTE_RATE,
            Some(1000.0),
        );
        let manager = QuotaManager::new(settings());
        // 10 s minimum window: 10 000 bytes at once is exactly the quota.
        assert_eq!(
            manager.record(&quotas, QuotaType::Produce, "u", "c", 10_000, 0),
            0
        );
        // 20 000 bytes over a 10 s window: 2000 B/s, one quota over: throttle one window.
        assert_eq!(
            manager.record(&quotas, QuotaType::Produce, "u", "c", 10_000, 0),
            10_000
        );
        // Another client id has no quota.
        assert_eq!(
            manager.record(&quotas, QuotaType::Produce, "u", "d", 1 << 30, 0),
            0
        );
        // After the whole span the samples are gone.
        assert_eq!(
            manager.record(&quotas, QuotaType::Produce, "u", "c", 100, 20_000),
            0
        );
        // The cap: at most the measured span.
        assert_eq!(
            manager.record(&quotas, QuotaType::Produce, "u", "c", 1 << 30, 20_000),
            11_000
        );
    }

    #[test]
    fn request_time_is_a_percentage_of_one_thread() {
        let mut quotas = ClientQuotas::default();
        quotas.apply(
            &entity(&[("user", Some("u"))]),
            REQUEST_PERCENTAGE,
            Some(10.0),
        );
        let manager = QuotaManager::new(settings());
        let second_ns = 1_000_000_000;
        // 10 % of one thread over the 10 s minimum window: 1 s of handling is the quota.
        assert_eq!(
            manager.record_request_time(&quotas, "u", "c", second_ns, 0),
            0
        );
        // 2 s: twice the quota, throttled one window — Kafka's cap for the request quota.
        assert_eq!(
            manager.record_request_time(&quotas, "u", "c", second_ns, 0),
            1_000
        );
        // Slightly over: (observed - quota) / quota × window.
        let manager = QuotaManager::new(settings());
        let throttle_ms =
            manager.record_request_time(&quotas, "u", "c", second_ns + second_ns / 20, 0);
        assert_eq!(throttle_ms, 500);
        // Another user has no request quota; a byte-rate quota does not make one.
        assert_eq!(
            manager.record_request_time(&quotas, "v", "c", 100 * second_ns, 0),
            0
        );
    }

    #[test]
    fn mutation_quota_is_kafkas_token_bucket() {
        let mut quotas = ClientQuotas::default();
        quotas.apply(
            &entity(&[("client-id", Some("c"))]),
            CONTROLLER_MUTATION_RATE,
            Some(2.0),
        );
        let manager = QuotaManager::new(settings());
        // Burst: 11 s × 2/s = 22 tokens. A strict quota lets a charge take the bucket below
        // zero as long as it was not already below.
        let mut strict = manager.mutation_quota(&quotas, "u", "c", true);
        assert_eq!(manager.record_mutation(&mut strict, 30, 0), Ok(()));
        assert_eq!(strict.throttle_ms(), 0);
        // -8 tokens: refused, throttled until the bucket is back at 0 (4 s at 2/s).
        assert_eq!(manager.record_mutation(&mut strict, 1, 0), Err(4_000));
        assert_eq!(strict.throttle_ms(), 4_000);
        // 1 s later: -6 tokens, 3 s to go.
        let mut strict = manager.mutation_quota(&quotas, "u", "c", true);
        assert_eq!(manager.record_mutation(&mut strict, 1, 1_000), Err(3_000));
        // 4 s after the charge it is at 0: accepted again.
        assert_eq!(manager.record_mutation(&mut strict, 1, 4_000), Ok(()));
        // Permissive: always accepted, throttled once below zero (-1 - 2 = -3 tokens).
        let mut permissive = manager.mutation_quota(&quotas, "u", "c", false);
        assert_eq!(manager.record_mutation(&mut permissive, 2, 4_000), Ok(()));
        assert_eq!(permissive.throttle_ms(), 1_500);
        // A change that failed gives its partitions back.
        manager.unrecord_mutation(&permissive, 2);
        let mut strict = manager.mutation_quota(&quotas, "u", "c", true);
        assert_eq!(manager.record_mutation(&mut strict, 1, 4_500), Ok(()));
        // No quota for another client: unbounded.
        let mut other = manager.mutation_quota(&quotas, "u", "d", true);
        assert_eq!(manager.record_mutation(&mut other, 1_000_000, 0), Ok(()));
        assert_eq!(other.throttle_ms(), 0);
    }

    #[test]
    fn sensors_are_bounded() {
        let mut quotas = ClientQuotas::default();
        quotas.apply(
            &entity(&[("client-id", None)]),
            PRODUCER_BYTE_RATE,
            Some(1000.0),
        );
        let manager = QuotaManager::new(settings());
        for i in 0..10u64 {
            manager.record(&quotas, QuotaType::Produce, "u", &format!("c{i}"), 1, i);
            assert!(manager.sensor_count() <= 3);
        }
    }

    #[test]
    fn quotas_serialize_as_a_list() {
        let mut quotas = ClientQuotas::default();
        quotas.apply(
            &entity(&[("user", None), ("client-id", Some("c"))]),
            PRODUCER_BYTE_RATE,
            Some(1.0),
        );
        let json = serde_json::to_string(&quotas).unwrap();
        let back: ClientQuotas = serde_json::from_str(&json).unwrap();
        assert_eq!(back, quotas);
    }
}
