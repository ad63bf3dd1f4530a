//! Produce: validates each partition's batches (header and CRC only, no record decoding),
//! appends them with offsets assigned in place, and answers per partition. acks=0 gets no
//! response (an error then closes the connection, so the client notices, as in Kafka).
//! acks=1 is answered after the leader's append; acks=all once the high watermark passed the
//! appended batches (every in-sync replica has them): a deferred response woken by follower
//! fetches, never a blocked worker. acks=all needs `min.insync.replicas` in-sync replicas
//! before the append (NOT_ENOUGH_REPLICAS) and still when the batch is committed
//! (NOT_ENOUGH_REPLICAS_AFTER_APPEND). When `flush.messages` owes a flush of the appended
//! batches, acks=1 and acks=all are answered only once the log's flusher made them durable
//! (group commit: the fsync is shared by every request that waited on it, and runs on the
//! flusher thread, not here).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::clock::now_ms;
use crate::controller::image::MetadataImage;
use crate::controller::validate_topic_name;
use crate::coordinator::transaction::{
    PRODUCE_VERSION_V2, TRANSACTION_VERSION_EPOCH_BUMP, TRANSACTION_VERSION_FINALIZED,
};
use crate::handlers::context::RequestContext;
use crate::handlers::Handled;
use crate::node::Node;
use crate::protocol::api_versions::PRODUCE_VERSION_MIN_ACCEPTED;
use crate::protocol::{
    decode, encode_response, encode_response_header, Chunk, Request, RequestError, ResponseFrame,
};
use crate::record::batch::BatchHeader;
use crate::replica::{AppendError, LedPartition, ProducerError, Role};
use crate::security::{Operation, Resource};

struct PartitionOutcome {
    index: i32,
    error: Option<(ResponseError, String)>,
    base_offset: i64,
    log_append_time_ms: i64,
    log_start_offset: i64,
    /// What the answer waits for, if anything.
    awaiting: Option<Awaiting>,
}

struct Awaiting {
    /// The offset after the appended batches.
    committed_end: i64,
    led: LedPartition,
    /// acks=all: the high watermark must reach `committed_end` (which includes the leader's
    /// flush); acks=1: only the leader's flush (its acknowledgeable end).
    replicated: bool,
}

/// Longest acks=all wait a request may ask for (its `timeout_ms`), bounding how long a
/// produce can occupy the broker.
const ACKS_ALL_WAIT_MS_MAX: i32 = 300_000;

fn failed(index: i32, error: ResponseError, message: String) -> PartitionOutcome {
    PartitionOutcome {
        index,
        error: Some((error, message)),
        base_offset: -1,
        log_append_time_ms: -1,
        log_start_offset: -1,
        awaiting: None,
    }
}

fn append_error_code(error: &AppendError) -> ResponseError {
    match error {
        AppendError::Corrupt(_) => ResponseError::CorruptMessage,
        AppendError::InvalidRecord(_) => ResponseError::InvalidRecord,
        AppendError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        AppendError::InvalidTimestamp { .. } => ResponseError::InvalidTimestamp,
        AppendError::Producer(ProducerError::InvalidEpoch { .. }) => {
            ResponseError::InvalidProducerEpoch
        }
        AppendError::Producer(ProducerError::OutOfOrder { .. }) => {
            ResponseError::OutOfOrderSequenceNumber
        }
        AppendError::Producer(ProducerError::Invalid(_)) => ResponseError::InvalidRecord,
        AppendError::Producer(ProducerError::InvalidTxnState) => ResponseError::InvalidTxnState,
        AppendError::Producer(ProducerError::CoordinatorFenced { .. }) => {
            ResponseError::TransactionCoordinatorFenced
        }
        AppendError::VerificationVoided => ResponseError::InvalidTxnState,
        // Only followers append copies; a client's batches get offsets assigned.
        AppendError::NotContiguous { .. } => ResponseError::UnknownServerError,
        AppendError::Io(_) => ResponseError::KafkaStorageError,
    }
}

/// Transactions v2 (Produce v12+ with `transaction.version` 2 finalized): the partition
/// joins the producer's transaction before its batch is appended, through the transaction
/// coordinator (in process or on another broker), as Kafka's `AddPartitionsToTxnManager`
/// does. Skipped when the partition already is in the transaction. The error is the one the
/// produce answers: the coordinator's being busy or away becomes NOT_ENOUGH_REPLICAS, which
/// every client retries.
fn add_to_transaction(
    broker: &Node,
    led: &LedPartition,
    transactional_id: &str,
    header: &BatchHeader,
    topic: &str,
    partition: i32,
) -> Result<(), ResponseError> {
    let (producer_id, epoch) = (header.producer_id, header.producer_epoch);
    let already = if broker.transactions.coordinates(transactional_id) {
        broker
            .transactions
            .try_verify(Some(transactional_id), producer_id, epoch, topic, partition)
            == Some(Ok(()))
    } else {
        // The coordinator is elsewhere: this partition's own producer state says whether the
        // producer's transaction (at this epoch) already wrote here.
        led.log.with_producers(|producers| {
            producers.producer(producer_id).is_some_and(|entry| {
                entry.epoch == epoch && entry.current_txn_first_offset.is_some()
            })
        })
    };
    if already {
        return Ok(());
    }
    let partitions = [(topic.to_string(), partition)];
    // The coordinator's lock may be held across a replicated write, and a remote coordinator
    // is a network round trip: wait with this runtime worker handed off.
    let added = crate::controller::quorum::blocking(|| {
        broker.transactions.add_implicitly(
            broker,
            transactional_id,
            producer_id,
            epoch,
            &partitions,
        )
    });
    added.map_err(|error| match error {
        ResponseError::ConcurrentTransactions
        | ResponseError::CoordinatorNotAvailable
        | ResponseError::NotCoordinator
        | ResponseError::CoordinatorLoadInProgress => ResponseError::NotEnoughReplicas,
        ResponseError::ProducerFenced => ResponseError::InvalidProducerEpoch,
        other => other,
    })
}

#[allow(clippy::too_many_arguments)]
fn append_partition(
    broker: &Node,
    image: &MetadataImage,
    version: i16,
    transactional_id: Option<&str>,
    topic: &str,
    index: i32,
    records: Option<&Bytes>,
    acks: i16,
    now: i64,
) -> PartitionOutcome {
    if crate::handlers::metadata::is_internal(topic) {
        // Only the coordinators write internal topics (Kafka: "Cannot append to internal
        // topic"); a client record in __consumer_offsets would be replayed as a commit.
        return failed(
            index,
            ResponseError::InvalidTopicException,
            format!("Cannot append to internal topic {topic}"),
        );
    }
    let led = match broker.replicas.leader_partition(image, topic, index) {
        Ok(led) => led,
        Err(error) => {
            let error = match validate_topic_name(topic) {
                Err(_) => ResponseError::InvalidTopicException,
                Ok(()) => error,
            };
            return failed(index, error, format!("{topic}-{index} is not led here"));
        }
    };
    let log = &led.log;
    if acks == -1 && led.under_min_isr() {
        let min_insync_replicas = log.config().min_insync_replicas;
        return failed(
            index,
            ResponseError::NotEnoughReplicas,
            format!(
                "The size of the current ISR {:?} is insufficient to satisfy the min.isr requirement of {min_insync_replicas} for partition {topic}-{index}",
                led.replication.isr()
            ),
        );
    }
    let records = records.map(|r| &r[..]).unwrap_or_default();
    // Transactional batches are appended only while the partition is in the producer's open
    // transaction (the coordinator is in this process: KIP-890 part 1's verification without
    // the round trip), so a late or stray batch cannot open a transaction nobody will end.
    let (first, batch_count, any_producer) = scan_headers(records);
    if batch_count > 1 && any_producer {
        // As Kafka (ProduceRequest v3+ allows one batch per partition): producer state and
        // transaction verification reason about one batch per partition and producer.
        return failed(
            index,
            ResponseError::InvalidRecord,
            "idempotent or transactional records must be sent as one batch per partition".into(),
        );
    }
    let transactional =
        first.filter(|h| h.is_transactional() && !h.is_control() && h.producer_id >= 0);
    let adds_partitions = version >= PRODUCE_VERSION_V2
        && TRANSACTION_VERSION_FINALIZED >= TRANSACTION_VERSION_EPOCH_BUMP;
    if let (Some(header), Some(id), true) = (transactional, transactional_id, adds_partitions) {
        if let Err(error) = add_to_transaction(broker, &led, id, &header, topic, index) {
            return failed(
                index,
                error,
                format!("{topic}-{index} could not join the producer's transaction"),
            );
        }
    }
    // Another broker coordinates the transaction: no state here to verify against (Kafka
    // before KIP-890); the partition's last stable offset and that coordinator's timeout
    // bound a stray batch.
    let coordinated_here = transactional_id.is_none_or(|id| broker.transactions.coordinates(id));
    let appended = match transactional.filter(|_| coordinated_here) {
        Some(header) => {
            // The guard first: a marker written after it voids the append below.
            let guard = log.begin_verification(header.producer_id, now);
            let verify = || {
                broker.transactions.verify(
                    transactional_id,
                    header.producer_id,
                    header.producer_epoch,
                    topic,
                    index,
                )
            };
            // The coordinator's lock may be held across a replicated write for seconds:
            // wait for it with this runtime worker handed off (see `try_verify`).
            let verified = broker
                .transactions
                .try_verify(
                    transactional_id,
                    header.producer_id,
                    header.producer_epoch,
                    topic,
                    index,
                )
                .unwrap_or_else(|| crate::controller::quorum::blocking(verify));
            match verified {
                Ok(()) => log.append_verified(records, now, guard),
                // Refused before the log: the coordinator's error, not a storage error.
                Err(error) => {
                    return failed(
                        index,
                        error,
                        "the partition is not in an open transaction of this producer".into(),
                    )
                }
            }
        }
        None => log.append(records, now),
    };
    match appended {
        Ok(result) => {
            let record_count = (result.last_offset - result.base_offset + 1) as u64;
            crate::metrics::topic_produced(topic, records.len() as u64, record_count);
            let committed_end = result.last_offset + 1;
            let waits = match acks {
                -1 => led.high_watermark() < committed_end,
                1 => log.acknowledgeable_end_offset() < committed_end,
                _ => false,
            };
            PartitionOutcome {
                index,
                error: None,
                base_offset: result.base_offset,
                log_append_time_ms: result.log_append_time_ms,
                log_start_offset: result.log_start_offset,
                awaiting: waits.then(|| Awaiting {
                    committed_end,
                    led: led.clone(),
                    replicated: acks == -1,
                }),
            }
        }
        Err(error) => {
            match &error {
                // A full log directory was logged once when it filled (log::log_dir_space);
                // every refused produce meanwhile would flood the log.
                AppendError::Io(io)
                    if matches!(
                        io.kind(),
                        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                    ) =>
                {
                    tracing::debug!(topic, partition = index, %io, "append refused: no space")
                }
                AppendError::Io(io) => {
                    tracing::error!(topic, partition = index, %io, "append failed")
                }
                _ => {}
            }
            failed(index, append_error_code(&error), error.to_string())
        }
    }
}

/// The first batch header, the number of batches and whether any batch carries a producer id,
/// from the headers alone (the log validates lengths and CRCs afterwards).
fn scan_headers(records: &[u8]) -> (Option<BatchHeader>, usize, bool) {
    let first = BatchHeader::parse(records).ok();
    let mut position = 0usize;
    let mut count = 0usize;
    let mut any_producer = false;
    while let Ok(header) = BatchHeader::parse(&records[position.min(records.len())..]) {
        count += 1;
        any_producer |= header.producer_id >= 0;
        if header.batch_length <= 0 {
            break;
        }
        position = position.saturating_add(header.size_bytes());
        if position >= records.len() {
            break;
        }
    }
    (first, count, any_producer)
}

pub fn handle(
    broker: &Arc<Node>,
    context: &RequestContext,
    mut request: Request,
) -> Result<Handled, RequestError> {
    let version = request.version;
    if version < PRODUCE_VERSION_MIN_ACCEPTED {
        return refuse_old_version(request).map(Handled::Response);
    }
    let body: ProduceRequest = decode(&mut request.body, version)?;
    let now = now_ms();
    let image = broker.image();
    let acks_valid = matches!(body.acks, -1..=1);
    // Kafka's checks: a transactional produce needs WRITE on its transactional id (else every
    // partition fails with TRANSACTIONAL_ID_AUTHORIZATION_FAILED), each topic WRITE.
    let transactional_denied = body.transactional_id.as_ref().is_some_and(|id| {
        !context.authorized(Operation::Write, Resource::TransactionalId(id.as_str()))
    });
    let mut topics: Vec<(StrBytes, Vec<PartitionOutcome>)> =
        Vec::with_capacity(body.topic_data.len());
    for topic in &body.topic_data {
        let name = topic.name.as_str();
        let topic_allowed = context.authorized(Operation::Write, Resource::Topic(name));
        let outcomes = topic
            .partition_data
            .iter()
            .map(|partition| {
                if !acks_valid {
                    return failed(
                        partition.index,
                        ResponseError::InvalidRequiredAcks,
                        format!("acks must be -1, 0 or 1, got {}", body.acks),
                    );
                }
                if transactional_denied {
                    return failed(
                        partition.index,
                        ResponseError::TransactionalIdAuthorizationFailed,
                        "Transactional Id authorization failed.".to_string(),
                    );
                }
                if !topic_allowed {
                    return failed(
                        partition.index,
                        ResponseError::TopicAuthorizationFailed,
                        format!("Not authorized to access topics: [{name}]"),
                    );
                }
                append_partition(
                    broker,
                    &image,
                    version,
                    body.transactional_id.as_ref().map(|id| id.as_str()),
                    name,
                    partition.index,
                    partition.records.as_ref(),
                    body.acks,
                    now,
                )
            })
            .collect();
        topics.push((topic.name.0.clone(), outcomes));
    }
    broker.replicas.notify_appended();
    // Kafka's produce quota: the request's record bytes count against the client's
    // producer_byte_rate whatever became of them; over it, the response says how long the
    // client should wait and the connection is not read from meanwhile (also with acks=0).
    let record_bytes: u64 = body
        .topic_data
        .iter()
        .flat_map(|t| &t.partition_data)
        .map(|p| p.records.as_ref().map_or(0, |r| r.len() as u64))
        .sum();
    let throttle_time_ms = crate::handlers::client_quotas::QuotaClient::of(context, &request)
        .record(
            broker,
            crate::security::quota::QuotaType::Produce,
            record_bytes,
        );
    for outcome in topics.iter().flat_map(|(_, p)| p) {
        if let Some((error, _)) = &outcome.error {
            crate::metrics::partition_error(ApiKey::Produce, error.code());
        }
    }
    if body.acks == 0 {
        let any_error = topics
            .iter()
            .flat_map(|(_, p)| p)
            .any(|p| p.error.is_some());
        return if any_error {
            Err(RequestError::Malformed("acks=0 produce failed".into()))
        } else {
            Ok(Handled::NoResponse)
        };
    }
    let correlation_id = request.header.correlation_id;
    let waiting = topics
        .iter()
        .flat_map(|(_, p)| p)
        .any(|p| p.awaiting.is_some());
    if !waiting {
        return Ok(Handled::Response(encode(
            version,
            correlation_id,
            throttle_time_ms,
            topics,
        )));
    }
    let broker = broker.clone();
    let wait_ms = body.timeout_ms.clamp(0, ACKS_ALL_WAIT_MS_MAX);
    let deadline = Instant::now() + Duration::from_millis(wait_ms as u64);
    Ok(Handled::Deferred(Box::pin(async move {
        let mut shutdown = broker.shutdown.subscribe();
        loop {
            // Register before checking, so a follower fetch or a flush in between is not
            // missed.
            let appended = broker.replicas.appended();
            tokio::pin!(appended);
            appended.as_mut().enable();
            let flushed = broker.replicas.flushed();
            tokio::pin!(flushed);
            flushed.as_mut().enable();
            let timed_out = Instant::now() >= deadline || *shutdown.borrow();
            let mut pending = false;
            // While every pending outcome waits for its leader's flush, only the flusher can
            // move it: other appends (each one wakes every waiter) are not waited on.
            let mut flush_only = true;
            for (name, outcomes) in topics.iter_mut() {
                for outcome in outcomes.iter_mut() {
                    let settled = settle(&broker, name.as_str(), outcome, timed_out);
                    pending |= !settled;
                    flush_only &= settled || outcome.awaits_flush();
                }
            }
            if !pending {
                return Some(encode(version, correlation_id, throttle_time_ms, topics));
            }
            let notified = async {
                match flush_only {
                    true => flushed.await,
                    false => appended.await,
                }
            };
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline.into()) => {}
                _ = shutdown.changed() => {}
            }
        }
    })))
}

/// Settles a waiting outcome if it can be: committed (acks=all: the high watermark passed it,
/// with enough in-sync replicas; acks=1: the leader flushed it), leadership lost, the flush
/// failed, or timed out. Returns whether it is settled.
fn settle(broker: &Node, topic: &str, outcome: &mut PartitionOutcome, timed_out: bool) -> bool {
    let Some(Awaiting {
        committed_end,
        led,
        replicated,
    }) = &outcome.awaiting
    else {
        return true;
    };
    let still_leader =
        broker.replicas.role(topic, outcome.index) == Some((Role::Leader, led.leader_epoch));
    let error = if !still_leader {
        Some(ResponseError::NotLeaderOrFollower)
    } else if led.log.flush_failed() {
        Some(ResponseError::KafkaStorageError)
    } else if !replicated {
        if led.log.acknowledgeable_end_offset() >= *committed_end {
            None
        } else if timed_out {
            Some(ResponseError::RequestTimedOut)
        } else {
            return false;
        }
    } else if led.high_watermark() >= *committed_end {
        led.under_min_isr()
            .then_some(ResponseError::NotEnoughReplicasAfterAppend)
    } else if timed_out {
        Some(ResponseError::RequestTimedOut)
    } else {
        return false;
    };
    outcome.awaiting = None;
    if let Some(error) = error {
        crate::metrics::partition_error(ApiKey::Produce, error.code());
        outcome.error = Some((
            error,
            format!(
                "{topic}-{}: the batch was not made durable or acknowledged by the in-sync replicas",
                outcome.index
            ),
        ));
        outcome.base_offset = -1;
    }
    true
}

impl PartitionOutcome {
    /// Whether the answer waits for the leader's flush of the appended records.
    fn awaits_flush(&self) -> bool {
        self.awaiting.as_ref().is_some_and(|awaiting| {
            awaiting.led.log.acknowledgeable_end_offset() < awaiting.committed_end
        })
    }
}

fn encode(
    version: i16,
    correlation_id: i32,
    throttle_time_ms: i32,
    topics: Vec<(StrBytes, Vec<PartitionOutcome>)>,
) -> ResponseFrame {
    let responses = topics
        .into_iter()
        .map(|(name, outcomes)| {
            let partitions = outcomes
                .into_iter()
                .map(|outcome| {
                    let mut response = PartitionProduceResponse::default()
                        .with_index(outcome.index)
                        .with_base_offset(outcome.base_offset)
                        .with_log_append_time_ms(outcome.log_append_time_ms)
                        .with_log_start_offset(outcome.log_start_offset);
                    if let Some((error, message)) = outcome.error {
                        response = response.with_error_code(error.code());
                        if version >= 8 {
                            response =
                                response.with_error_message(Some(StrBytes::from_string(message)));
                        }
                    }
                    response
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(kafka_protocol::messages::TopicName(name))
                .with_partition_responses(partitions)
        })
        .collect();
    let response = ProduceResponse::default()
        .with_responses(responses)
        .with_throttle_time_ms(throttle_time_ms);
    encode_response(ApiKey::Produce, version, correlation_id, &response)
}

/// Produce v0–2 (message formats before v2) is advertised but refused, as Kafka 4 does: every
/// partition gets UNSUPPORTED_VERSION. The request body is v3's without the transactional id,
/// and the response is laid out by hand (the codec starts at v3).
fn refuse_old_version(request: Request) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let mut as_v3 = BytesMut::with_capacity(request.body.len() + 2);
    as_v3.put_i16(-1); // null transactional id
    as_v3.put_slice(&request.body);
    let body: ProduceRequest = decode(&mut as_v3.freeze(), 3)?;
    if body.acks == 0 {
        return Err(RequestError::UnsupportedVersion {
            api_key: ApiKey::Produce,
            version,
        });
    }
    let mut output = BytesMut::new();
    encode_response_header(
        &mut output,
        ApiKey::Produce,
        version,
        request.header.correlation_id,
    );
    output.put_i32(body.topic_data.len() as i32);
    for topic in &body.topic_data {
        output.put_i16(topic.name.len() as i16);
        output.put_slice(topic.name.as_bytes());
        output.put_i32(topic.partition_data.len() as i32);
        for partition in &topic.partition_data {
            output.put_i32(partition.index);
            output.put_i16(ResponseError::UnsupportedVersion.code());
            output.put_i64(-1); // base offset
            if version >= 2 {
                output.put_i64(-1); // log append time
            }
        }
    }
    if version >= 1 {
        output.put_i32(0); // throttle time
    }
    Ok(ResponseFrame {
        chunks: vec![Chunk::Bytes(output.freeze())],
    })
}
