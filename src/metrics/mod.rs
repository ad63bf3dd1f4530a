//! Metrics: every name dlog exports, in one place, with the functions that record them.
//!
//! Names follow Prometheus conventions: prefix `dlog_`, the unit in the name (`_seconds`,
//! `_bytes`, `_total` for counters). Three kinds of sources:
//!
//! - **Events** (requests, bytes produced, connections, flushes) are recorded where they
//!   happen through the `metrics` facade into the Prometheus recorder installed by
//!   [`install`]. With no metrics listener nothing is installed and every call is a no-op.
//!   Hot paths use handles registered once (per API key, per topic), so a request costs a
//!   few atomic adds and no allocation.
//! - **State** (partition offsets and sizes, disk space, process RSS/CPU/fds) is read at
//!   scrape time by [`collect`], so it costs nothing between scrapes and a deleted topic
//!   leaves no stale series.
//! - **Features landing later** (consumer groups, Raft, retention/cleaner) have their names
//!   and recording functions here already ([`groups`], [`cluster`], [`storage`]); their call
//!   sites come with those features.
//!
//! The HTTP side (`/metrics`, `/health`, `/ready`) is [`http`].

pub mod collect;
pub mod http;

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::Instant;

use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

// ------------------------------------------------------------------------------------------
// Requests (recorded in `server::dispatch`, one call per request).

/// Requests handled, by `api` (Kafka's API name, e.g. `Produce`) and `error`: `NONE` when the
/// request was answered, else the Kafka error name for which the connection was closed
/// (`UNSUPPORTED_VERSION`, `INVALID_REQUEST`). Errors inside a response (per partition) are
/// [`PARTITION_ERRORS`].
pub const REQUESTS: &str = "dlog_requests_total";
/// Request latency histogram, same labels: from the frame read to the response ready to write
/// (a long-polling Fetch includes its wait).
pub const REQUEST_DURATION: &str = "dlog_request_duration_seconds";
/// Request frame bytes received, by `api` (without the 4-byte size prefix).
pub const REQUEST_BYTES: &str = "dlog_request_bytes_total";
/// Response bytes sent, by `api` (without the 4-byte size prefix).
pub const RESPONSE_BYTES: &str = "dlog_response_bytes_total";

// ------------------------------------------------------------------------------------------
// Topics (recorded by the Produce and Fetch handlers).

/// Record-batch bytes appended, by `topic`.
pub const TOPIC_BYTES_IN: &str = "dlog_topic_bytes_in_total";
/// Records appended, by `topic` (offsets assigned).
pub const TOPIC_RECORDS_IN: &str = "dlog_topic_records_in_total";
/// Record-batch bytes sent to fetchers, by `topic`. (Records out are not counted: fetches send
/// file regions with sendfile(2) without reading the batch headers.)
pub const TOPIC_BYTES_OUT: &str = "dlog_topic_bytes_out_total";
/// Partitions of consumer fetches this node answered with records as a follower (KIP-392,
/// fetch from the closest replica).
pub const FOLLOWER_FETCHES: &str = "dlog_follower_fetches_total";
/// Record bytes those answers carried.
pub const FOLLOWER_FETCH_BYTES: &str = "dlog_follower_fetch_bytes_total";
/// Partitions of consumer fetches this node, as leader, answered with a preferred read
/// replica (its replica selector sent the consumer to a replica of its rack).
pub const PREFERRED_READ_REPLICA_ANSWERS: &str = "dlog_preferred_read_replica_answers_total";
/// Per-partition errors in Produce and Fetch responses, by `api` and `error` (Kafka's name).
pub const PARTITION_ERRORS: &str = "dlog_partition_errors_total";
/// Authorization checks refused, by `operation` and `resource` type (Kafka's names); counted
/// where handlers ask (`RequestContext::authorized`), including checks that only filter (a
/// Metadata request hiding an unauthorized topic).
pub const AUTHORIZATION_DENIALS: &str = "dlog_authorization_denials_total";
/// Throttle time given to clients over a byte-rate quota (producer_byte_rate,
/// consumer_byte_rate), in milliseconds, by `quota_type` (`produce`, `fetch`): Kafka's
/// `throttle-time` sensors, summed.
pub const QUOTA_THROTTLE_TIME_MS: &str = "dlog_quota_throttle_time_ms_total";
/// Requests answered with a throttle time, by `quota_type`.
pub const QUOTA_THROTTLED_REQUESTS: &str = "dlog_quota_throttled_requests_total";
/// Bytes of throttled replicas counted against a replication quota (KIP-73), by `side`
/// (`leader`: sent to followers; `follower`: fetched from leaders): Kafka's
/// LeaderReplication / FollowerReplication byte rates.
pub const REPLICATION_THROTTLED_BYTES: &str = "dlog_replication_throttled_bytes_total";
/// Partition reads a replication quota held back (the quota was exceeded), by `side`.
pub const REPLICATION_THROTTLED_PARTITIONS: &str = "dlog_replication_throttled_partitions_total";

// ------------------------------------------------------------------------------------------
// Partitions and disk (read at scrape time by `collect`; labels `topic`, `partition`).

/// First offset readable.
pub const PARTITION_LOG_START_OFFSET: &str = "dlog_partition_log_start_offset";
/// Offset the next appended record gets.
pub const PARTITION_LOG_END_OFFSET: &str = "dlog_partition_log_end_offset";
/// Offset below which records are committed (visible to consumers). On a single node this is
/// the log end offset; with replication (issue 5) it trails it.
pub const PARTITION_HIGH_WATERMARK: &str = "dlog_partition_high_watermark";
/// Bytes of the partition's segment files.
pub const PARTITION_SIZE_BYTES: &str = "dlog_partition_size_bytes";
/// Segments in the partition's log.
pub const PARTITION_SEGMENTS: &str = "dlog_partition_segments";
/// Partitions hosted by this broker.
pub const PARTITIONS: &str = "dlog_partitions";
/// Size and free space of the file system holding `log.dirs`.
pub const LOG_DIR_TOTAL_BYTES: &str = "dlog_log_dir_total_bytes";
pub const LOG_DIR_FREE_BYTES: &str = "dlog_log_dir_free_bytes";
/// The free space below which the broker warns (`log.dir.free.space.warn.bytes`, resolved):
/// alert on `dlog_log_dir_free_bytes < dlog_log_dir_free_warn_bytes`.
pub const LOG_DIR_FREE_WARN_BYTES: &str = "dlog_log_dir_free_warn_bytes";
/// 1 while writes are refused because the log directory is full, else 0.
pub const LOG_DIR_FULL: &str = "dlog_log_dir_full";

// ------------------------------------------------------------------------------------------
// Connections (recorded by the listener in `server`).

/// Connections open now.
pub const CONNECTIONS_OPEN: &str = "dlog_connections_open";
/// Connections accepted (and served).
pub const CONNECTIONS_ACCEPTED: &str = "dlog_connections_accepted_total";
/// Served connections that have ended.
pub const CONNECTIONS_CLOSED: &str = "dlog_connections_closed_total";
/// Connections closed at accept, by `reason` (`max_connections`).
pub const CONNECTIONS_REFUSED: &str = "dlog_connections_refused_total";
/// SASL authentications, by `listener`, `mechanism` and `result` (`success`/`failure`).
pub const AUTHENTICATIONS: &str = "dlog_authentications_total";
/// Connections closed because their SASL session expired (KIP-368), by `listener`.
pub const EXPIRED_SESSIONS_CLOSED: &str = "dlog_expired_sessions_closed_total";
/// TLS handshakes that failed or timed out, by `listener`.
pub const TLS_HANDSHAKE_FAILURES: &str = "dlog_tls_handshake_failures_total";
/// Large requests that waited for room in `queued.max.request.bytes` before being read.
pub const REQUEST_MEMORY_WAITS: &str = "dlog_request_memory_waits_total";

// ------------------------------------------------------------------------------------------
// Process and readiness (read at scrape time by `collect`).

pub const PROCESS_RESIDENT_MEMORY_BYTES: &str = "dlog_process_resident_memory_bytes";
pub const PROCESS_CPU_SECONDS: &str = "dlog_process_cpu_seconds_total";
pub const PROCESS_OPEN_FDS: &str = "dlog_process_open_fds";
pub const PROCESS_MAX_FDS: &str = "dlog_process_max_fds";
pub const PROCESS_START_TIME_SECONDS: &str = "dlog_process_start_time_seconds";
/// 1 with label `version`: the running build.
pub const BUILD_INFO: &str = "dlog_build_info";
/// 1 when `/ready` answers 200, else 0.
pub const READY: &str = "dlog_ready";

/// Every name above and in the submodules; `deploy/check.sh` checks that the dashboards and
/// alert rules use only these (a histogram's `_bucket`/`_sum`/`_count` series included).
pub const ALL: &[&str] = &[
    REQUESTS,
    REQUEST_DURATION,
    REQUEST_BYTES,
    RESPONSE_BYTES,
    TOPIC_BYTES_IN,
    TOPIC_RECORDS_IN,
    TOPIC_BYTES_OUT,
    PARTITION_ERRORS,
    AUTHORIZATION_DENIALS,
    QUOTA_THROTTLE_TIME_MS,
    QUOTA_THROTTLED_REQUESTS,
    REPLICATION_THROTTLED_BYTES,
    REPLICATION_THROTTLED_PARTITIONS,
    PARTITION_LOG_START_OFFSET,
    PARTITION_LOG_END_OFFSET,
    PARTITION_HIGH_WATERMARK,
    PARTITION_SIZE_BYTES,
    PARTITION_SEGMENTS,
    PARTITIONS,
    LOG_DIR_TOTAL_BYTES,
    LOG_DIR_FREE_BYTES,
    CONNECTIONS_OPEN,
    CONNECTIONS_ACCEPTED,
    CONNECTIONS_CLOSED,
    CONNECTIONS_REFUSED,
    AUTHENTICATIONS,
    EXPIRED_SESSIONS_CLOSED,
    TLS_HANDSHAKE_FAILURES,
    REQUEST_MEMORY_WAITS,
    PROCESS_RESIDENT_MEMORY_BYTES,
    PROCESS_CPU_SECONDS,
    PROCESS_OPEN_FDS,
    PROCESS_MAX_FDS,
    PROCESS_START_TIME_SECONDS,
    BUILD_INFO,
    READY,
    storage::FLUSH_DURATION,
    storage::FLUSHES,
    storage::RECOVERY_DURATION,
    storage::LAST_SHUTDOWN_CLEAN,
    storage::RETENTION_DELETED_SEGMENTS,
    storage::RETENTION_DELETED_BYTES,
    storage::CLEANER_RUNS,
    storage::CLEANER_CLEANED_BYTES,
    storage::CLEANER_DURATION,
    groups::LAG,
    groups::COMMITTED_OFFSET,
    groups::MEMBERS,
    groups::STATE,
    cluster::RAFT_LEADER,
    cluster::RAFT_EPOCH,
    cluster::RAFT_HIGH_WATERMARK,
    cluster::RAFT_VOTER_LAG,
    cluster::UNDER_REPLICATED_PARTITIONS,
    cluster::OFFLINE_PARTITIONS,
];

/// Latency buckets (seconds): 50 µs to 30 s, for requests (a Fetch may wait up to its
/// max wait) and fsyncs alike.
const DURATION_BUCKETS_SECONDS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0,
];

/// Installs the Prometheus recorder for the whole process and describes every family.
/// Called once at start, before any request is served; without it metrics are no-ops.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), DURATION_BUCKETS_SECONDS)?
        .install_recorder()?;
    describe();
    Ok(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(REQUESTS, "Requests handled, by Kafka API and error");
    describe_histogram!(REQUEST_DURATION, "Request latency, by Kafka API and error");
    describe_counter!(REQUEST_BYTES, "Request bytes received, by Kafka API");
    describe_counter!(RESPONSE_BYTES, "Response bytes sent, by Kafka API");
    describe_counter!(TOPIC_BYTES_IN, "Record batch bytes appended, by topic");
    describe_counter!(TOPIC_RECORDS_IN, "Records appended, by topic");
    describe_counter!(
        FOLLOWER_FETCHES,
        "Consumer fetch partitions answered with records by this node as a follower"
    );
    describe_counter!(
        FOLLOWER_FETCH_BYTES,
        "Record bytes sent to consumers by this node as a follower"
    );
    describe_counter!(
        PREFERRED_READ_REPLICA_ANSWERS,
        "Consumer fetch partitions this leader sent to a preferred read replica"
    );
    describe_counter!(
        TOPIC_BYTES_OUT,
        "Record batch bytes sent to fetchers, by topic"
    );
    describe_counter!(
        PARTITION_ERRORS,
        "Per-partition errors in Produce and Fetch responses"
    );
    describe_counter!(
        AUTHORIZATION_DENIALS,
        "Authorization checks refused, by operation and resource type"
    );
    describe_counter!(
        QUOTA_THROTTLE_TIME_MS,
        "Throttle time given to clients over a byte-rate quota (ms), by quota type"
    );
    describe_counter!(
        QUOTA_THROTTLED_REQUESTS,
        "Requests answered with a quota throttle time, by quota type"
    );
    describe_counter!(
        REPLICATION_THROTTLED_BYTES,
        "Bytes of throttled replicas counted against the replication quota, by side"
    );
    describe_counter!(
        REPLICATION_THROTTLED_PARTITIONS,
        "Partition reads held back by an exceeded replication quota, by side"
    );
    describe_gauge!(CONNECTIONS_OPEN, "Client connections open");
    describe_counter!(CONNECTIONS_ACCEPTED, "Client connections accepted");
    describe_counter!(CONNECTIONS_CLOSED, "Client connections closed");
    describe_counter!(CONNECTIONS_REFUSED, "Connections refused at accept");
    describe_counter!(
        AUTHENTICATIONS,
        "SASL authentications, by listener, mechanism and result"
    );
    describe_counter!(
        EXPIRED_SESSIONS_CLOSED,
        "Connections closed past their SASL session lifetime, by listener"
    );
    describe_counter!(
        TLS_HANDSHAKE_FAILURES,
        "TLS handshakes failed or timed out, by listener"
    );
    describe_counter!(
        REQUEST_MEMORY_WAITS,
        "Large requests that waited for room in queued.max.request.bytes"
    );
    describe_histogram!(storage::FLUSH_DURATION, "Partition log flush (fsync) time");
    describe_counter!(storage::FLUSHES, "Partition log flushes (fsyncs)");
    describe_gauge!(
        storage::RECOVERY_DURATION,
        "Time to open and recover the logs at start"
    );
    describe_gauge!(
        storage::LAST_SHUTDOWN_CLEAN,
        "1 if the previous run shut down cleanly"
    );
}

// ------------------------------------------------------------------------------------------
// Requests.

/// Handles for one API's successful requests, registered on its first request.
struct ApiHandles {
    requests: Counter,
    duration: Histogram,
    request_bytes: Counter,
    response_bytes: Counter,
}

const API_KEYS_MAX: usize = 128;
static API_HANDLES: [OnceLock<ApiHandles>; API_KEYS_MAX] =
    [const { OnceLock::new() }; API_KEYS_MAX];

/// Kafka's API name for a key (`Produce`), or `UNKNOWN` for keys outside the protocol.
fn api_name(api_key: i16) -> &'static str {
    static NAMES: OnceLock<HashMap<i16, &'static str>> = OnceLock::new();
    NAMES
        .get_or_init(|| {
            kafka_protocol::messages::ApiKey::iter()
                .map(|key| (key as i16, &*format!("{key:?}").leak()))
                .collect()
        })
        .get(&api_key)
        .copied()
        .unwrap_or("UNKNOWN")
}

fn api_handles(api_key: i16) -> Option<&'static ApiHandles> {
    let slot = API_HANDLES.get(usize::try_from(api_key).ok()?)?;
    if let Some(handles) = slot.get() {
        return Some(handles);
    }
    let name = api_name(api_key);
    if name == "UNKNOWN" {
        return None;
    }
    Some(slot.get_or_init(|| ApiHandles {
        requests: metrics::counter!(REQUESTS, "api" => name, "error" => "NONE"),
        duration: metrics::histogram!(REQUEST_DURATION, "api" => name, "error" => "NONE"),
        request_bytes: metrics::counter!(REQUEST_BYTES, "api" => name),
        response_bytes: metrics::counter!(RESPONSE_BYTES, "api" => name),
    }))
}

/// Times one request from its frame to its response; see [`REQUESTS`].
pub struct RequestTimer {
    api_key: i16,
    request_bytes: u64,
    started: Instant,
}

impl RequestTimer {
    /// `frame` is the request without its size prefix; its first two bytes are the API key.
    pub fn start(frame: &[u8]) -> RequestTimer {
        let api_key = match frame {
            [high, low, ..] => i16::from_be_bytes([*high, *low]),
            _ => -1,
        };
        RequestTimer {
            api_key,
            request_bytes: frame.len() as u64,
            started: Instant::now(),
        }
    }

    /// The request was answered with `response_bytes` (0 when no response is sent).
    pub fn answered(self, response_bytes: u64) {
        let seconds = self.started.elapsed().as_secs_f64();
        match api_handles(self.api_key) {
            Some(handles) => {
                handles.requests.increment(1);
                handles.duration.record(seconds);
                handles.request_bytes.increment(self.request_bytes);
                handles.response_bytes.increment(response_bytes);
            }
            None => self.failed_with("NONE", seconds),
        }
    }

    /// The request was refused and its connection closed; `error` is Kafka's error name.
    pub fn failed(self, error: &'static str) {
        let seconds = self.started.elapsed().as_secs_f64();
        self.failed_with(error, seconds)
    }

    fn failed_with(self, error: &'static str, seconds: f64) {
        let name = api_name(self.api_key);
        metrics::counter!(REQUESTS, "api" => name, "error" => error).increment(1);
        metrics::histogram!(REQUEST_DURATION, "api" => name, "error" => error).record(seconds);
        metrics::counter!(REQUEST_BYTES, "api" => name).increment(self.request_bytes);
    }
}

/// Kafka's name for an error code (`UNKNOWN_TOPIC_OR_PARTITION`), computed once per code.
pub fn error_name(code: i16) -> &'static str {
    static NAMES: OnceLock<RwLock<HashMap<i16, &'static str>>> = OnceLock::new();
    let names = NAMES.get_or_init(Default::default);
    if let Some(name) = names.read().expect("error names").get(&code) {
        return name;
    }
    let name: &'static str = match kafka_protocol::ResponseError::try_from_code(code) {
        Some(error) => screaming_snake(&format!("{error:?}")).leak(),
        None if code == 0 => "NONE",
        None => "UNKNOWN_SERVER_ERROR",
    };
    // Bounded: one entry per Kafka error code.
    *names
        .write()
        .expect("error names")
        .entry(code)
        .or_insert(name)
}

fn screaming_snake(camel: &str) -> String {
    let mut output = String::with_capacity(camel.len() + 8);
    for (index, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && index > 0 {
            output.push('_');
        }
        output.push(c.to_ascii_uppercase());
    }
    output
}

/// An error code in a Produce or Fetch response partition; see [`PARTITION_ERRORS`].
pub fn partition_error(api: kafka_protocol::messages::ApiKey, code: i16) {
    if code != 0 {
        metrics::counter!(PARTITION_ERRORS, "api" => api_name(api as i16), "error" => error_name(code))
            .increment(1);
    }
}

// ------------------------------------------------------------------------------------------
// Topics.

struct TopicHandles {
    bytes_in: Counter,
    records_in: Counter,
    bytes_out: Counter,
}

/// Handles per topic, so that a produce or fetch looks its topic up without allocating.
/// Bounded by the number of topics created since start.
static TOPIC_HANDLES: OnceLock<RwLock<HashMap<String, TopicHandles>>> = OnceLock::new();

fn with_topic(topic: &str, record: impl FnOnce(&TopicHandles)) {
    let topics = TOPIC_HANDLES.get_or_init(Default::default);
    if let Some(handles) = topics.read().expect("topic handles").get(topic) {
        return record(handles);
    }
    let mut topics = topics.write().expect("topic handles");
    let handles = topics.entry(topic.to_string()).or_insert_with(|| {
        let label = topic.to_string();
        TopicHandles {
            bytes_in: metrics::counter!(TOPIC_BYTES_IN, "topic" => label.clone()),
            records_in: metrics::counter!(TOPIC_RECORDS_IN, "topic" => label.clone()),
            bytes_out: metrics::counter!(TOPIC_BYTES_OUT, "topic" => label),
        }
    });
    record(handles)
}

/// A produce appended `records` records in `bytes` bytes to `topic`.
pub fn topic_produced(topic: &str, bytes: u64, records: u64) {
    with_topic(topic, |handles| {
        handles.bytes_in.increment(bytes);
        handles.records_in.increment(records);
    })
}

/// A client over its `quota_type` byte-rate quota was throttled for `throttle_ms`.
pub fn quota_throttled(quota_type: &'static str, throttle_ms: u64) {
    metrics::counter!(QUOTA_THROTTLED_REQUESTS, "quota_type" => quota_type).increment(1);
    metrics::counter!(QUOTA_THROTTLE_TIME_MS, "quota_type" => quota_type).increment(throttle_ms);
}

/// `bytes` of throttled replicas were counted against the `side` replication quota.
pub fn replication_throttled_bytes(side: &'static str, bytes: u64) {
    metrics::counter!(REPLICATION_THROTTLED_BYTES, "side" => side).increment(bytes);
}

/// A throttled partition's read was held back on the `side` replication quota.
pub fn replication_throttled_partition(side: &'static str) {
    metrics::counter!(REPLICATION_THROTTLED_PARTITIONS, "side" => side).increment(1);
}

/// A fetch response carries `bytes` record bytes of `topic`.
pub fn topic_fetched(topic: &str, bytes: u64) {
    with_topic(topic, |handles| handles.bytes_out.increment(bytes))
}

/// A consumer fetch read `bytes` record bytes from this node as a follower.
pub fn follower_fetch_served(bytes: u64) {
    metrics::counter!(FOLLOWER_FETCHES).increment(1);
    metrics::counter!(FOLLOWER_FETCH_BYTES).increment(bytes);
}

/// This leader answered a consumer's partition with a preferred read replica.
pub fn preferred_read_replica_sent() {
    metrics::counter!(PREFERRED_READ_REPLICA_ANSWERS).increment(1);
}

// ------------------------------------------------------------------------------------------
// Connections.

fn connection_handles() -> &'static (Gauge, Counter, Counter) {
    static HANDLES: OnceLock<(Gauge, Counter, Counter)> = OnceLock::new();
    HANDLES.get_or_init(|| {
        (
            metrics::gauge!(CONNECTIONS_OPEN),
            metrics::counter!(CONNECTIONS_ACCEPTED),
            metrics::counter!(CONNECTIONS_CLOSED),
        )
    })
}

/// Counts a served connection as open until dropped, then as closed.
pub struct ConnectionGuard(());

/// A connection was accepted and will be served; hold the guard while it is.
pub fn connection_accepted() -> ConnectionGuard {
    let (open, accepted, _) = connection_handles();
    open.increment(1.0);
    accepted.increment(1);
    ConnectionGuard(())
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let (open, _, closed) = connection_handles();
        open.decrement(1.0);
        closed.increment(1);
    }
}

/// A large request waited for room in the request memory pool before it was read.
pub fn request_memory_waited() {
    metrics::counter!(REQUEST_MEMORY_WAITS).increment(1);
}

/// A connection was closed at accept because `max.connections` were open.
pub fn connection_refused_max_connections() {
    metrics::counter!(CONNECTIONS_REFUSED, "reason" => "max_connections").increment(1);
}

pub fn connection_refused_creation_rate() {
    metrics::counter!(CONNECTIONS_REFUSED, "reason" => "connection_creation_rate").increment(1);
}

pub fn connection_refused_per_ip() {
    metrics::counter!(CONNECTIONS_REFUSED, "reason" => "max_connections_per_ip").increment(1);
}

/// One SASL authentication finished on `listener` with `mechanism`.
pub fn authentication(listener: &str, mechanism: &str, success: bool) {
    let result = if success { "success" } else { "failure" };
    metrics::counter!(AUTHENTICATIONS, "listener" => listener.to_string(),
        "mechanism" => mechanism.to_string(), "result" => result)
    .increment(1);
}

/// A connection was closed because its SASL session expired.
pub fn expired_session_closed(listener: &str) {
    metrics::counter!(EXPIRED_SESSIONS_CLOSED, "listener" => listener.to_string()).increment(1);
}

/// A TLS handshake failed or timed out.
pub fn tls_handshake_failed(listener: &str) {
    metrics::counter!(TLS_HANDSHAKE_FAILURES, "listener" => listener.to_string()).increment(1);
}

// ------------------------------------------------------------------------------------------

/// Storage: flushes, recovery at start, retention and the cleaner.
pub mod storage {
    use std::time::Duration;

    /// Histogram of partition log flushes (fsync of the segments past the recovery point).
    pub const FLUSH_DURATION: &str = "dlog_storage_flush_duration_seconds";
    /// Partition log flushes (each an fdatasync of the segments past the recovery point):
    /// with group commit, fewer than the produce requests that waited on them.
    pub const FLUSHES: &str = "dlog_log_flushes_total";
    /// Time the last start took to open and recover the logs and replay metadata.
    pub const RECOVERY_DURATION: &str = "dlog_storage_recovery_duration_seconds";
    /// 1 if the previous run left the clean-shutdown marker (no recovery needed), else 0.
    pub const LAST_SHUTDOWN_CLEAN: &str = "dlog_storage_last_shutdown_clean";
    /// Segments deleted by retention, by `topic` (issue 6 records it).
    pub const RETENTION_DELETED_SEGMENTS: &str = "dlog_log_retention_deleted_segments_total";
    /// Bytes deleted by retention, by `topic` (issue 6).
    pub const RETENTION_DELETED_BYTES: &str = "dlog_log_retention_deleted_bytes_total";
    /// Compaction passes (issue 6).
    pub const CLEANER_RUNS: &str = "dlog_log_cleaner_runs_total";
    /// Bytes removed by compaction (issue 6).
    pub const CLEANER_CLEANED_BYTES: &str = "dlog_log_cleaner_cleaned_bytes_total";
    /// Histogram of compaction pass durations (issue 6).
    pub const CLEANER_DURATION: &str = "dlog_log_cleaner_duration_seconds";

    /// One partition flush took `elapsed`.
    pub fn flushed(elapsed: Duration) {
        static HANDLES: std::sync::OnceLock<(metrics::Histogram, metrics::Counter)> =
            std::sync::OnceLock::new();
        let (duration, count) = HANDLES.get_or_init(|| {
            (
                metrics::histogram!(FLUSH_DURATION),
                metrics::counter!(FLUSHES),
            )
        });
        duration.record(elapsed.as_secs_f64());
        count.increment(1);
    }

    /// Logs opened and recovered at start in `elapsed`; `clean` as [`LAST_SHUTDOWN_CLEAN`].
    pub fn recovered(elapsed: Duration, clean: bool) {
        metrics::gauge!(RECOVERY_DURATION).set(elapsed.as_secs_f64());
        metrics::gauge!(LAST_SHUTDOWN_CLEAN).set(if clean { 1.0 } else { 0.0 });
    }

    /// Retention deleted `segments` segments holding `bytes` bytes of `topic`.
    pub fn retention_deleted(topic: &str, segments: u64, bytes: u64) {
        let topic = topic.to_string();
        metrics::counter!(RETENTION_DELETED_SEGMENTS, "topic" => topic.clone()).increment(segments);
        metrics::counter!(RETENTION_DELETED_BYTES, "topic" => topic).increment(bytes);
    }

    /// One compaction pass removed `cleaned_bytes` in `elapsed`.
    pub fn cleaned(cleaned_bytes: u64, elapsed: Duration) {
        metrics::counter!(CLEANER_RUNS).increment(1);
        metrics::counter!(CLEANER_CLEANED_BYTES).increment(cleaned_bytes);
        metrics::histogram!(CLEANER_DURATION).record(elapsed.as_secs_f64());
    }
}

/// Consumer groups (issue 3): names and the snapshot the group coordinator hands to the
/// scrape. Lag is computed at scrape time ([`collect::groups`](super::collect::groups)) from
/// each committed offset and the partition's current log end offset, so it grows while
/// producers append even when the group commits nothing, and costs nothing between scrapes.
///
pub mod groups {
    /// Records a consumer group is behind on a partition: log end offset − committed offset
    /// (never negative), by `group`, `topic`, `partition`.
    pub const LAG: &str = "dlog_group_lag_records";
    /// The group's committed offset, by `group`, `topic`, `partition`.
    pub const COMMITTED_OFFSET: &str = "dlog_group_committed_offset";
    /// Members of the group, by `group`.
    pub const MEMBERS: &str = "dlog_group_members";
    /// 1 for the group's current state, by `group` and `state` (Kafka's names, [`STATES`]),
    /// 0 for the others.
    pub const STATE: &str = "dlog_group_state";
    pub const STATES: &[&str] = &[
        "Empty",
        "PreparingRebalance",
        "CompletingRebalance",
        "Stable",
        "Dead",
        // KIP-848 consumer groups.
        "Assigning",
        "Reconciling",
    ];

    /// One group as the coordinator sees it at scrape time.
    #[derive(Clone, Debug, Default)]
    pub struct GroupSnapshot {
        pub group: String,
        /// One of [`STATES`].
        pub state: &'static str,
        pub members: usize,
        /// Committed offsets: (topic, partition, offset).
        pub committed: Vec<(String, i32, i64)>,
    }
}

/// Cluster and Raft (issue 5): names and recording functions; the quorum driver calls them.
pub mod cluster {
    /// Node id of the current metadata quorum leader (-1 when unknown).
    pub const RAFT_LEADER: &str = "dlog_raft_leader_id";
    /// Current Raft epoch.
    pub const RAFT_EPOCH: &str = "dlog_raft_epoch";
    /// Metadata log high watermark (committed offset).
    pub const RAFT_HIGH_WATERMARK: &str = "dlog_raft_high_watermark";
    /// On the leader: how far each voter's log end trails the leader's, by `voter`.
    pub const RAFT_VOTER_LAG: &str = "dlog_raft_voter_lag_records";
    /// Partitions led here whose ISR is smaller than their replica set.
    pub const UNDER_REPLICATED_PARTITIONS: &str = "dlog_under_replicated_partitions";
    /// Partitions with no live leader, as this node's metadata image sees them.
    pub const OFFLINE_PARTITIONS: &str = "dlog_offline_partitions";

    /// Partitions led here whose ISR is below / exactly `min.insync.replicas`.
    pub const UNDER_MIN_ISR_PARTITIONS: &str = "dlog_under_min_isr_partitions";
    pub const AT_MIN_ISR_PARTITIONS: &str = "dlog_at_min_isr_partitions";
    /// On the leader: records a follower's log end trails the leader's, by topic, partition
    /// and follower.
    pub const FOLLOWER_LAG_RECORDS: &str = "dlog_follower_lag_records";
    /// ISR changes this node (as leader) had committed: followers dropped or taken back.
    pub const ISR_SHRINKS: &str = "dlog_isr_shrinks_total";
    pub const ISR_EXPANDS: &str = "dlog_isr_expands_total";

    /// An ISR change committed: `shrink` when members left.
    pub fn record_isr_change(shrink: bool) {
        match shrink {
            true => metrics::counter!(ISR_SHRINKS).increment(1),
            false => metrics::counter!(ISR_EXPANDS).increment(1),
        }
    }

    /// Records the quorum state seen by this node.
    pub fn record_raft(leader_id: i32, epoch: i32, high_watermark: i64) {
        metrics::gauge!(RAFT_LEADER).set(f64::from(leader_id));
        metrics::gauge!(RAFT_EPOCH).set(f64::from(epoch));
        metrics::gauge!(RAFT_HIGH_WATERMARK).set(high_watermark as f64);
    }

    /// On the leader: a voter's lag in records.
    pub fn record_voter_lag(voter_id: i32, lag_records: i64) {
        metrics::gauge!(RAFT_VOTER_LAG, "voter" => voter_id.to_string()).set(lag_records as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(1), "OFFSET_OUT_OF_RANGE");
        assert_eq!(error_name(35), "UNSUPPORTED_VERSION");
    }

    #[test]
    fn api_names_are_kafkas() {
        assert_eq!(api_name(0), "Produce");
        assert_eq!(api_name(18), "ApiVersions");
        assert_eq!(api_name(-1), "UNKNOWN");
        assert_eq!(api_name(30000), "UNKNOWN");
    }

    #[test]
    fn names_are_prefixed_with_units() {
        for name in ALL {
            assert!(name.starts_with("dlog_"), "{name}");
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
        }
        let unique: std::collections::HashSet<_> = ALL.iter().collect();
        assert_eq!(unique.len(), ALL.len());
    }
}
