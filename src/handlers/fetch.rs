//! Fetch: reads partitions as segment file regions (sent with sendfile), honours the response
//! and per-partition byte limits, long-polls for `min_bytes` until `max_wait_ms` without
//! polling (woken by appends), and keeps fetch sessions (KIP-227) so that incremental fetches
//! name only what changed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use kafka_protocol::messages::FetchRequest;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::broker::Broker;
use crate::protocol::fetch_response::{
    self, FetchResult, PartitionResult, RecordsSource, TopicResult,
};
use crate::protocol::{decode, Request, RequestError, ResponseFrame};
use crate::server::dispatch::Handled;

/// Sessions kept at once (Kafka's `max.incremental.fetch.session.cache.slots`); the least
/// recently used is evicted beyond it.
const SESSIONS_MAX: usize = 1000;
/// Longest wait a client may ask for; bounds how long a request can occupy the broker.
const MAX_WAIT_MS_MAX: i32 = 60_000;
const READ_COMMITTED: i8 = 1;
/// Session epoch that opens a new session / closes one (KIP-227).
const INITIAL_EPOCH: i32 = 0;
const FINAL_EPOCH: i32 = -1;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct PartitionKey {
    topic: String,
    topic_id: Uuid,
    partition: i32,
}

#[derive(Clone, Copy, Debug)]
struct PartitionState {
    fetch_offset: i64,
    max_bytes: i32,
    /// What the client was last told, to decide whether an incremental response includes it.
    high_watermark: i64,
    log_start_offset: i64,
}

struct Session {
    next_epoch: i32,
    partitions: IndexMap<PartitionKey, PartitionState>,
}

#[derive(Default)]
struct SessionCache {
    sessions: HashMap<i32, Session>,
    /// Least recently used first.
    recency: VecDeque<i32>,
    last_id: i32,
}

#[derive(Default)]
pub struct FetchSessions {
    cache: Mutex<SessionCache>,
}

impl SessionCache {
    fn touch(&mut self, id: i32) {
        self.recency.retain(|&other| other != id);
        self.recency.push_back(id);
    }

    fn remove(&mut self, id: i32) {
        self.sessions.remove(&id);
        self.recency.retain(|&other| other != id);
    }

    fn insert(&mut self, partitions: IndexMap<PartitionKey, PartitionState>) -> i32 {
        while self.sessions.len() >= SESSIONS_MAX {
            let Some(oldest) = self.recency.pop_front() else {
                break;
            };
            self.sessions.remove(&oldest);
        }
        loop {
            self.last_id = self.last_id.wrapping_add(1).max(1);
            if !self.sessions.contains_key(&self.last_id) {
                break;
            }
        }
        let id = self.last_id;
        self.sessions.insert(
            id,
            Session {
                next_epoch: 1,
                partitions,
            },
        );
        self.touch(id);
        id
    }
}

/// What one fetch reads, resolved from the request and its session.
struct FetchPlan {
    version: i16,
    correlation_id: i32,
    session_id: i32,
    /// Incremental: only partitions that changed are returned.
    incremental: bool,
    partitions: Vec<(PartitionKey, PartitionState)>,
    max_bytes: u64,
    min_bytes: u64,
    read_committed: bool,
}

fn request_partitions(
    broker: &Broker,
    body: &FetchRequest,
    version: i16,
) -> Vec<(PartitionKey, PartitionState)> {
    let image = broker.image();
    let mut partitions = Vec::new();
    for topic in &body.topics {
        let (name, topic_id) = if version >= 13 {
            (
                image
                    .topic_by_id(&topic.topic_id)
                    .map(|t| t.name.clone())
                    .unwrap_or_default(),
                topic.topic_id,
            )
        } else {
            let name = topic.topic.0.to_string();
            let id = image.topics.get(&name).map(|t| t.id).unwrap_or_default();
            (name, id)
        };
        for partition in &topic.partitions {
            let key = PartitionKey {
                topic: name.clone(),
                topic_id,
                partition: partition.partition,
            };
            let state = PartitionState {
                fetch_offset: partition.fetch_offset,
                max_bytes: partition.partition_max_bytes,
                high_watermark: -1,
                log_start_offset: -1,
            };
            partitions.push((key, state));
        }
    }
    partitions
}

fn forgotten(broker: &Broker, body: &FetchRequest, version: i16) -> Vec<(String, Uuid, i32)> {
    let image = broker.image();
    let mut keys = Vec::new();
    for topic in &body.forgotten_topics_data {
        let (name, id) = if version >= 13 {
            (
                image
                    .topic_by_id(&topic.topic_id)
                    .map(|t| t.name.clone())
                    .unwrap_or_default(),
                topic.topic_id,
            )
        } else {
            let name = topic.topic.0.to_string();
            (
                name.clone(),
                image.topics.get(&name).map(|t| t.id).unwrap_or_default(),
            )
        };
        keys.extend(topic.partitions.iter().map(|&p| (name.clone(), id, p)));
    }
    keys
}

/// Applies the request to the session cache (KIP-227) and returns the plan, or a top-level
/// session error.
fn plan(
    broker: &Broker,
    body: &FetchRequest,
    version: i16,
    correlation_id: i32,
) -> Result<FetchPlan, ResponseError> {
    let requested = request_partitions(broker, body, version);
    let base = |session_id: i32,
                incremental: bool,
                partitions: Vec<(PartitionKey, PartitionState)>| FetchPlan {
        version,
        correlation_id,
        session_id,
        incremental,
        partitions,
        max_bytes: body.max_bytes.max(0) as u64,
        min_bytes: body.min_bytes.max(0) as u64,
        read_committed: body.isolation_level == READ_COMMITTED,
    };
    if version < 7 {
        return Ok(base(0, false, requested));
    }
    let mut cache = broker
        .fetch_sessions
        .cache
        .lock()
        .expect("session cache lock");
    match (body.session_id, body.session_epoch) {
        (0, FINAL_EPOCH) => Ok(base(0, false, requested)),
        (id, FINAL_EPOCH) => {
            cache.remove(id);
            Ok(base(0, false, requested))
        }
        (id, INITIAL_EPOCH) => {
            if id != 0 {
                cache.remove(id);
            }
            let partitions: IndexMap<_, _> = requested.iter().cloned().collect();
            let new_id = cache.insert(partitions);
            Ok(base(new_id, false, requested))
        }
        (id, epoch) => {
            let session = cache
                .sessions
                .get_mut(&id)
                .ok_or(ResponseError::FetchSessionIdNotFound)?;
            if session.next_epoch != epoch {
                return Err(ResponseError::InvalidFetchSessionEpoch);
            }
            session.next_epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
            for (name, topic_id, partition) in forgotten(broker, body, version) {
                session.partitions.shift_remove(&PartitionKey {
                    topic: name,
                    topic_id,
                    partition,
                });
            }
            for (key, state) in &requested {
                match session.partitions.get_mut(key) {
                    Some(existing) => {
                        existing.fetch_offset = state.fetch_offset;
                        existing.max_bytes = state.max_bytes;
                    }
                    None => {
                        session.partitions.insert(key.clone(), *state);
                    }
                }
            }
            let partitions = session
                .partitions
                .iter()
                .map(|(k, s)| (k.clone(), *s))
                .collect();
            cache.touch(id);
            Ok(base(id, true, partitions))
        }
    }
}

/// One read pass over the plan's partitions. Returns the per-partition results and the
/// record bytes gathered.
fn read_pass(broker: &Broker, plan: &FetchPlan) -> (Vec<(PartitionKey, PartitionResult)>, u64) {
    let mut remaining_bytes = plan.max_bytes;
    let mut total_bytes = 0u64;
    let mut results = Vec::with_capacity(plan.partitions.len());
    for (key, state) in &plan.partitions {
        let mut result = PartitionResult {
            partition_index: key.partition,
            error_code: 0,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            aborted_transactions: if plan.read_committed {
                Some(Vec::new())
            } else {
                None
            },
            preferred_read_replica: -1,
            records: Some(RecordsSource::Memory(bytes::Bytes::new())),
        };
        let log = if key.topic.is_empty() {
            None
        } else {
            broker.logs.get(&key.topic, key.partition)
        };
        let Some(log) = log else {
            let error = if plan.version >= 13 && key.topic.is_empty() {
                ResponseError::UnknownTopicId
            } else {
                broker.missing_partition_error(&key.topic, key.partition)
            };
            result.error_code = error.code();
            results.push((key.clone(), result));
            continue;
        };
        let offsets = log.offsets();
        result.high_watermark = offsets.log_end_offset;
        result.last_stable_offset = offsets.last_stable_offset;
        result.log_start_offset = offsets.log_start_offset;
        let partition_budget = (state.max_bytes.max(0) as u64).min(remaining_bytes);
        // KIP-74: the first batch of the first partition with data is returned even if it
        // exceeds the limits, so that a consumer always makes progress.
        let min_one_batch = total_bytes == 0;
        // READ_COMMITTED stops at the last stable offset and lists the aborted transactions
        // in the range, so the client can drop their records.
        let upper_offset = plan.read_committed.then_some(offsets.last_stable_offset);
        if plan.read_committed {
            result.aborted_transactions =
                Some(log.aborted_transactions(state.fetch_offset, offsets.last_stable_offset));
        }
        match log.read_up_to(
            state.fetch_offset,
            partition_budget,
            min_one_batch,
            upper_offset,
        ) {
            Ok(Ok(Some(slice))) => {
                total_bytes += slice.length_bytes;
                remaining_bytes = remaining_bytes.saturating_sub(slice.length_bytes);
                result.records = Some(RecordsSource::File(slice));
            }
            Ok(Ok(None)) => {}
            Ok(Err(_out_of_range)) => result.error_code = ResponseError::OffsetOutOfRange.code(),
            Err(error) => {
                tracing::error!(topic = key.topic, partition = key.partition, %error, "fetch read failed");
                result.error_code = ResponseError::KafkaStorageError.code();
            }
        }
        results.push((key.clone(), result));
    }
    (results, total_bytes)
}

/// Builds the response, dropping unchanged partitions from incremental responses and
/// recording what the client was told in the session.
fn respond(
    broker: &Broker,
    plan: &FetchPlan,
    results: Vec<(PartitionKey, PartitionResult)>,
) -> ResponseFrame {
    let mut included: Vec<(PartitionKey, PartitionResult)> = Vec::with_capacity(results.len());
    if plan.session_id != 0 {
        let mut cache = broker
            .fetch_sessions
            .cache
            .lock()
            .expect("session cache lock");
        let session = cache.sessions.get_mut(&plan.session_id);
        for (key, result) in results {
            let cached = session
                .as_ref()
                .and_then(|s| s.partitions.get(&key))
                .copied();
            let has_records = matches!(&result.records, Some(RecordsSource::File(_)));
            let changed = cached.is_none_or(|c| {
                c.high_watermark != result.high_watermark
                    || c.log_start_offset != result.log_start_offset
            });
            if !plan.incremental || has_records || result.error_code != 0 || changed {
                included.push((key, result));
            }
        }
        if let Some(session) = session {
            for (key, result) in &included {
                if let Some(state) = session.partitions.get_mut(key) {
                    state.high_watermark = result.high_watermark;
                    state.log_start_offset = result.log_start_offset;
                }
            }
        }
    } else {
        included = results;
    }
    let mut topics: Vec<TopicResult> = Vec::new();
    for (key, result) in included {
        match topics.last_mut() {
            Some(topic) if topic.name == key.topic && topic.topic_id == key.topic_id => {
                topic.partitions.push(result)
            }
            _ => topics.push(TopicResult {
                name: key.topic,
                topic_id: key.topic_id,
                partitions: vec![result],
            }),
        }
    }
    let result = FetchResult {
        throttle_time_ms: 0,
        error_code: 0,
        session_id: plan.session_id,
        topics,
    };
    for topic in &result.topics {
        let sent: u64 = topic
            .partitions
            .iter()
            .filter_map(|p| p.records.as_ref())
            .map(|r| match r {
                RecordsSource::File(slice) => slice.length_bytes,
                RecordsSource::Memory(bytes) => bytes.len() as u64,
            })
            .sum();
        if sent > 0 {
            crate::metrics::topic_fetched(&topic.name, sent);
        }
        for partition in &topic.partitions {
            crate::metrics::partition_error(
                kafka_protocol::messages::ApiKey::Fetch,
                partition.error_code,
            );
        }
    }
    fetch_response::encode(plan.version, plan.correlation_id, &result)
}

fn session_error(version: i16, correlation_id: i32, error: ResponseError) -> ResponseFrame {
    let result = FetchResult {
        error_code: error.code(),
        ..Default::default()
    };
    fetch_response::encode(version, correlation_id, &result)
}

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Handled, RequestError> {
    let version = request.version;
    let correlation_id = request.header.correlation_id;
    let body: FetchRequest = decode(&mut request.body, version)?;
    let plan = match plan(broker, &body, version, correlation_id) {
        Ok(plan) => plan,
        Err(error) => {
            return Ok(Handled::Response(session_error(
                version,
                correlation_id,
                error,
            )))
        }
    };
    let (results, total_bytes) = read_pass(broker, &plan);
    let any_error = results.iter().any(|(_, r)| r.error_code != 0);
    let max_wait_ms = body.max_wait_ms.clamp(0, MAX_WAIT_MS_MAX);
    if total_bytes >= plan.min_bytes || any_error || max_wait_ms == 0 || plan.partitions.is_empty()
    {
        return Ok(Handled::Response(respond(broker, &plan, results)));
    }
    let broker = broker.clone();
    let deadline = Instant::now() + Duration::from_millis(max_wait_ms as u64);
    Ok(Handled::Deferred(Box::pin(async move {
        let mut shutdown = broker.shutdown.subscribe();
        loop {
            // Register for the wake-up before reading, so an append between the read and the
            // wait is not missed.
            let notified = broker.data_arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (results, total_bytes) = read_pass(&broker, &plan);
            let any_error = results.iter().any(|(_, r)| r.error_code != 0);
            if total_bytes >= plan.min_bytes || any_error || Instant::now() >= deadline {
                return Some(respond(&broker, &plan, results));
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline.into()) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                let (results, _) = read_pass(&broker, &plan);
                return Some(respond(&broker, &plan, results));
            }
        }
    })))
}
