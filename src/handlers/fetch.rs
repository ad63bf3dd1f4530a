//! Fetch: reads partitions as segment file regions (sent with sendfile), honours the response
//! and per-partition byte limits, long-polls for `min_bytes` until `max_wait_ms` without
//! polling (woken by appends), and keeps fetch sessions (KIP-227) so that incremental fetches
//! name only what changed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::FetchRequest;
use kafka_protocol::ResponseError;

use crate::handlers::context::RequestContext;
use crate::handlers::Handled;
use crate::node::Node;
use crate::protocol::fetch_response::{
    self, FetchResult, PartitionResult, RecordsSource, TopicResult,
};
use crate::protocol::{decode, Request, RequestError, ResponseFrame};
use crate::replica::fetch_session::{Answered, PartitionKey, PartitionState};
use crate::replica::ReadablePartition;
use crate::security::{Operation, Resource};

/// Longest wait a client may ask for; bounds how long a request can occupy the broker.
const MAX_WAIT_MS_MAX: i32 = 60_000;
const READ_COMMITTED: i8 = 1;

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
    /// A follower's node id (Kafka's replica fetch): it reads up to the log end, not the
    /// high watermark, and its fetch offset is its progress. -1 for consumers.
    replica_id: i32,
    /// Topics this request may not read (Kafka: READ on the topic for a consumer,
    /// CLUSTER_ACTION on the cluster for a follower): TOPIC_AUTHORIZATION_FAILED.
    denied_topics: std::collections::HashSet<String>,
    /// A consumer's identity for its consumer_byte_rate quota; None for followers (Kafka
    /// throttles replication with replication quotas, not client quotas).
    quota_client: Option<crate::handlers::client_quotas::QuotaClient>,
    /// A consumer fetch of v11+ (KIP-392 client metadata): it may read from followers, and
    /// the leader may send it to a replica of its rack.
    from_any_replica: bool,
    /// The consumer's `client.rack` (v11+; empty when not set).
    rack_id: String,
}

fn request_partitions(
    broker: &Node,
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
                current_leader_epoch: partition.current_leader_epoch,
                last_fetched_epoch: match version >= 12 {
                    true => partition.last_fetched_epoch,
                    false => -1,
                },
                replica_log_start_offset: match version >= 5 {
                    true => partition.log_start_offset,
                    false => -1,
                },
                high_watermark: -1,
                log_start_offset: -1,
            };
            partitions.push((key, state));
        }
    }
    partitions
}

fn forgotten(broker: &Node, body: &FetchRequest, version: i16) -> Vec<PartitionKey> {
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
        keys.extend(topic.partitions.iter().map(|&partition| PartitionKey {
            topic: name.clone(),
            topic_id: id,
            partition,
        }));
    }
    keys
}

/// Applies the request to the session cache (KIP-227) and returns the plan, or a top-level
/// session error.
fn plan(
    broker: &Node,
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
        replica_id: match version >= 15 {
            true => body.replica_state.replica_id.0,
            false => body.replica_id.0,
        },
        denied_topics: Default::default(),
        quota_client: None,
        from_any_replica: false,
        rack_id: match version >= 11 {
            true => body.rack_id.to_string(),
            false => String::new(),
        },
    };
    if version < 7 {
        return Ok(base(0, false, requested));
    }
    let view = broker.replicas.fetch_sessions.update(
        body.session_id,
        body.session_epoch,
        requested,
        || forgotten(broker, body, version),
    )?;
    Ok(base(view.session_id, view.incremental, view.partitions))
}

/// What one read pass found.
struct ReadPass {
    results: Vec<(PartitionKey, PartitionResult)>,
    /// Record bytes gathered.
    total_bytes: u64,
    /// Something the fetcher must hear now, whatever `min_bytes` says: a diverging
    /// follower, a consumer sent to another replica (KIP-392), or a follower's fetch that
    /// moved the high watermark (so followers learn it without waiting for new records,
    /// and can serve consumers up to it).
    answer_now: bool,
}

/// One read pass over the plan's partitions. A follower's fetch records its progress, which
/// may move the high watermark (then waiting requests are woken).
fn read_pass(broker: &Node, plan: &FetchPlan) -> ReadPass {
    let mut remaining_bytes = plan.max_bytes;
    let mut total_bytes = 0u64;
    let mut results = Vec::with_capacity(plan.partitions.len());
    let image = broker.image();
    let follower = plan.replica_id >= 0;
    let mut high_watermark_moved = false;
    let mut answer_now = false;
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
            diverging_epoch: None,
            records: Some(RecordsSource::Memory(bytes::Bytes::new())),
        };
        // Followers and consumers before v11 read from the leader only; consumers of v11+
        // from a follower too (Kafka's `FetchParams.fetchOnlyLeader`).
        let readable = match key.topic.is_empty() {
            true => Err(ResponseError::UnknownTopicId),
            false if plan.denied_topics.contains(&key.topic) => {
                Err(ResponseError::TopicAuthorizationFailed)
            }
            false if plan.from_any_replica => {
                broker
                    .replicas
                    .readable_partition(&image, &key.topic, key.partition)
            }
            false => broker
                .replicas
                .leader_partition(&image, &key.topic, key.partition)
                .map(ReadablePartition::Leader),
        };
        let readable =
            readable.and_then(|readable| readable.check_leader_epoch(state.current_leader_epoch));
        let readable = match readable {
            Ok(readable) => readable,
            Err(error) => {
                let error = match error {
                    ResponseError::UnknownTopicId if plan.version < 13 => {
                        ResponseError::UnknownTopicOrPartition
                    }
                    other => other,
                };
                result.error_code = error.code();
                results.push((key.clone(), result));
                continue;
            }
        };
        let log = readable.log().clone();
        let offsets = log.offsets();
        let led = match &readable {
            ReadablePartition::Leader(led) => Some(led),
            ReadablePartition::Follower(_) => None,
        };
        if let (Some(led), true) = (led, follower) {
            // KIP-595: the follower's last batch is of an epoch that ends earlier here (or
            // that this log never had): it truncates before fetching on.
            if let Some(diverging) =
                led.diverging_epoch(state.last_fetched_epoch, state.fetch_offset)
            {
                result.diverging_epoch = Some(diverging);
                result.high_watermark = led.high_watermark();
                result.log_start_offset = offsets.log_start_offset;
                answer_now = true;
                results.push((key.clone(), result));
                continue;
            }
            led.replication
                .follower_log_start(plan.replica_id, state.replica_log_start_offset);
            if (offsets.log_start_offset..=offsets.log_end_offset).contains(&state.fetch_offset) {
                // The leader's own part of the high watermark is what it may acknowledge.
                let (_, moved) = led.replication.follower_fetched(
                    plan.replica_id,
                    state.fetch_offset,
                    log.acknowledgeable_end_offset(),
                    crate::clock::now_ms(),
                );
                high_watermark_moved |= moved;
            }
        }
        let high_watermark = readable.high_watermark();
        result.high_watermark = high_watermark;
        result.last_stable_offset = offsets.last_stable_offset.min(high_watermark);
        result.log_start_offset = offsets.log_start_offset;
        // KIP-392: the leader sends a consumer of another rack to an in-sync replica of its
        // own, with no records (Kafka's `findPreferredReadReplica` skips the read).
        if let (Some(led), true) = (led, plan.from_any_replica) {
            if let Some(replica) = broker.replicas.replica_selector.preferred_read_replica(
                &image,
                led,
                &plan.rack_id,
                state.fetch_offset,
                crate::clock::now_ms(),
            ) {
                result.preferred_read_replica = replica;
                answer_now = true;
                crate::metrics::preferred_read_replica_sent();
                results.push((key.clone(), result));
                continue;
            }
        }
        let partition_budget = (state.max_bytes.max(0) as u64).min(remaining_bytes);
        // KIP-74: the first batch of the first partition with data is returned even if it
        // exceeds the limits, so that a consumer always makes progress.
        let min_one_batch = total_bytes == 0;
        // Consumers read up to the high watermark (what every in-sync replica has);
        // READ_COMMITTED stops at the last stable offset and lists the aborted transactions
        // in the range, so the client can drop their records. Followers read to the log end.
        let upper_offset = match (follower, plan.read_committed) {
            (true, _) => None,
            (false, true) => Some(result.last_stable_offset),
            (false, false) => Some(high_watermark),
        };
        if plan.read_committed {
            result.aborted_transactions =
                Some(log.aborted_transactions(state.fetch_offset, result.last_stable_offset));
        }
        // KIP-73: a throttled replica out of the ISR gets no records while this leader's
        // replication rate is over its quota (its progress above still counts).
        if let (Some(led), true) = (led, follower) {
            if broker.replicas.replication_quotas.leader.holds_back(
                &key.topic,
                key.partition,
                || led.replication.isr().contains(&plan.replica_id),
                crate::replica::replication_quota::now_ms(),
            ) {
                results.push((key.clone(), result));
                continue;
            }
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
                if matches!(readable, ReadablePartition::Follower(_)) {
                    crate::metrics::follower_fetch_served(slice.length_bytes);
                }
                result.records = Some(RecordsSource::File(slice));
            }
            Ok(Ok(None)) => {}
            Ok(Err(_out_of_range)) => {
                // Decisive for a consumer (it resets to auto.offset.reset); at debug level, as a
                // client may ask again and again.
                tracing::debug!(
                    topic = key.topic,
                    partition = key.partition,
                    fetch_offset = state.fetch_offset,
                    log_start_offset = offsets.log_start_offset,
                    log_end_offset = offsets.log_end_offset,
                    follower,
                    "fetch offset out of range"
                );
                result.error_code = ResponseError::OffsetOutOfRange.code()
            }
            Err(error) => {
                tracing::error!(topic = key.topic, partition = key.partition, %error, "fetch read failed");
                result.error_code = ResponseError::KafkaStorageError.code();
            }
        }
        results.push((key.clone(), result));
    }
    if high_watermark_moved {
        // acks=all produces and consumers waiting for the high watermark.
        broker.replicas.notify_appended();
    }
    ReadPass {
        results,
        total_bytes,
        answer_now: answer_now || high_watermark_moved,
    }
}

/// The high watermarks a pass answered, per partition: a follower's waiting fetch is
/// answered once one of them moved (another follower's fetch moved it).
fn high_watermarks(pass: &ReadPass) -> Vec<i64> {
    pass.results
        .iter()
        .map(|(_, result)| result.high_watermark)
        .collect()
}

/// Builds the response, dropping unchanged partitions from incremental responses and
/// recording what the client was told in the session.
fn respond(
    broker: &Node,
    plan: &FetchPlan,
    results: Vec<(PartitionKey, PartitionResult)>,
) -> ResponseFrame {
    let included = broker.replicas.fetch_sessions.filter_answered(
        plan.session_id,
        plan.incremental,
        results,
        |result| Answered {
            has_records: matches!(&result.records, Some(RecordsSource::File(_))),
            redirected: result.preferred_read_replica >= 0,
            error_code: result.error_code,
            high_watermark: result.high_watermark,
            log_start_offset: result.log_start_offset,
        },
    );
    let mut topics: Vec<TopicResult> = Vec::new();
    let record_bytes = |result: &PartitionResult| match &result.records {
        Some(RecordsSource::File(slice)) => slice.length_bytes,
        Some(RecordsSource::Memory(bytes)) => bytes.len() as u64,
        None => 0,
    };
    // Kafka's fetch quota: the records this response would carry count against the
    // consumer's consumer_byte_rate; over it, the answer carries no records (they are taken
    // back from the rate, as nothing is sent), only the throttle time, and the connection is
    // not read from meanwhile. The next fetch reads the same offsets again.
    let mut throttle_time_ms = 0;
    if let Some(client) = &plan.quota_client {
        let bytes: u64 = included
            .iter()
            .map(|(_, result)| record_bytes(result))
            .sum();
        throttle_time_ms = client.record(broker, crate::security::quota::QuotaType::Fetch, bytes);
        if throttle_time_ms > 0 {
            client.unrecord(broker, crate::security::quota::QuotaType::Fetch, bytes);
        }
    }
    let included = if throttle_time_ms > 0 {
        Vec::new()
    } else {
        included
    };
    if plan.replica_id >= 0 {
        // KIP-73: what throttled partitions send counts against the leader's replication
        // rate, in-sync followers' too (Kafka's `sizeOfThrottledPartitions`).
        let quota = &broker.replicas.replication_quotas.leader;
        let throttled_bytes: u64 = included
            .iter()
            .filter(|(key, _)| quota.is_throttled(&key.topic, key.partition))
            .map(|(_, result)| record_bytes(result))
            .sum();
        quota.record(throttled_bytes, crate::replica::replication_quota::now_ms());
    }
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
        throttle_time_ms,
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

pub fn handle(
    broker: &Arc<Node>,
    context: &RequestContext,
    mut request: Request,
) -> Result<Handled, RequestError> {
    let version = request.version;
    let correlation_id = request.header.correlation_id;
    let body: FetchRequest = decode(&mut request.body, version)?;
    let plan = match plan(broker, &body, version, correlation_id) {
        Ok(mut plan) => {
            if context.enforces_authorization() {
                let follower_denied = plan.replica_id >= 0
                    && !context.authorized(Operation::ClusterAction, Resource::Cluster);
                let mut checked = std::collections::HashSet::new();
                for (key, _) in &plan.partitions {
                    if !key.topic.is_empty()
                        && checked.insert(key.topic.clone())
                        && (follower_denied
                            || (plan.replica_id < 0
                                && !context
                                    .authorized(Operation::Read, Resource::Topic(&key.topic))))
                    {
                        plan.denied_topics.insert(key.topic.clone());
                    }
                }
            }
            if plan.replica_id < 0 {
                plan.from_any_replica = version >= 11;
                let client = crate::handlers::client_quotas::QuotaClient::of(context, &request);
                // As Kafka: a consumer with a quota reads at most what the quota allows over
                // the measured span, so a response can pass it (min_bytes follows).
                if let Some(bytes_max) =
                    client.max_bytes_in_window(broker, crate::security::quota::QuotaType::Fetch)
                {
                    plan.max_bytes = plan.max_bytes.min(bytes_max);
                    plan.min_bytes = plan.min_bytes.min(plan.max_bytes);
                }
                plan.quota_client = Some(client);
            }
            plan
        }
        Err(error) => {
            return Ok(Handled::Response(session_error(
                version,
                correlation_id,
                error,
            )))
        }
    };
    let pass = read_pass(broker, &plan);
    let any_error = pass.results.iter().any(|(_, r)| r.error_code != 0);
    let max_wait_ms = body.max_wait_ms.clamp(0, MAX_WAIT_MS_MAX);
    if pass.total_bytes >= plan.min_bytes
        || pass.answer_now
        || any_error
        || max_wait_ms == 0
        || plan.partitions.is_empty()
    {
        return Ok(Handled::Response(respond(broker, &plan, pass.results)));
    }
    let first_high_watermarks = high_watermarks(&pass);
    let broker = broker.clone();
    let deadline = Instant::now() + Duration::from_millis(max_wait_ms as u64);
    Ok(Handled::Deferred(Box::pin(async move {
        let mut shutdown = broker.shutdown.subscribe();
        loop {
            // Register for the wake-up before reading, so an append between the read and the
            // wait is not missed.
            let notified = broker.replicas.appended();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let pass = read_pass(&broker, &plan);
            let any_error = pass.results.iter().any(|(_, r)| r.error_code != 0);
            let high_watermark_news =
                plan.replica_id >= 0 && high_watermarks(&pass) != first_high_watermarks;
            if pass.total_bytes >= plan.min_bytes
                || pass.answer_now
                || high_watermark_news
                || any_error
                || Instant::now() >= deadline
            {
                return Some(respond(&broker, &plan, pass.results));
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline.into()) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                let pass = read_pass(&broker, &plan);
                return Some(respond(&broker, &plan, pass.results));
            }
        }
    })))
}
