//! Producer-id and transaction APIs: InitProducerId (idempotent and transactional),
//! AddPartitionsToTxn (client form v0–3 and the broker verification form v4+),
//! AddOffsetsToTxn, EndTxn, TxnOffsetCommit, and the transaction side of FindCoordinator.
//! The state machine is [`crate::coordinator::transaction`].

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, ApiKey, EndTxnRequest, EndTxnResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProducerId, TopicName, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
    WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::controller::ApiError;
use crate::coordinator::transaction::{
    PendingOffset, ADD_PARTITIONS_TO_TXN_BROKER_VERSION, END_TXN_VERSION_V2,
    MARKER_PARTITIONS_PER_REQUEST_MAX, TRANSACTION_VERSION_EPOCH_BUMP,
    TRANSACTION_VERSION_FINALIZED, TXN_OFFSET_COMMIT_VERSION_V2,
};
use crate::coordinator::OFFSETS_TOPIC;
use crate::handlers::context::RequestContext;
use crate::node::Node;
use crate::protocol::{decode, encode_response, Request, RequestError, ResponseFrame};
use crate::replica::{AppendError, ProducerError};
use crate::security::{Operation, Resource};

/// FindCoordinator key type of a transactional id.
pub const COORDINATOR_KEY_TYPE_TRANSACTION: i8 = 1;
/// Partitions one AddPartitionsToTxn may name (bounds the work of one request).
const PARTITIONS_PER_REQUEST_MAX: usize = 10_000;

/// InitProducerId. Without a transactional id: a fresh producer id at epoch 0, as Kafka does
/// for idempotent producers. With one: the coordinator bumps the epoch (fencing).
pub fn init_producer_id(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: InitProducerIdRequest = decode(&mut request.body, version)?;
    let mut response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let result: Result<(i64, i16), ApiError> = match body
        .transactional_id
        .as_ref()
        .map(|id| id.as_str())
    {
        Some("") => Err(ApiError::new(
            ResponseError::InvalidRequest,
            "empty transactional id",
        )),
        // Kafka: WRITE on the transactional id; an idempotent producer needs IDEMPOTENT_WRITE
        // on the cluster or WRITE on some topic (KIP-679).
        Some(id) if !context.authorized(Operation::Write, Resource::TransactionalId(id)) => {
            Err(txn_denied())
        }
        None if !context.authorized(Operation::IdempotentWrite, Resource::Cluster)
            && !context.authorized_any(Operation::Write, Resource::Topic("")) =>
        {
            Err(ApiError::new(
                ResponseError::ClusterAuthorizationFailed,
                "Cluster authorization failed.",
            ))
        }
        Some(id) => {
            let expected =
                (body.producer_id.0 >= 0).then_some((body.producer_id.0, body.producer_epoch));
            broker
                .transactions
                .init_producer_id(broker, id, body.transaction_timeout_ms, expected)
        }
        None => broker
            .producer_ids
            .next_producer_id(&broker.controller)
            .map(|id| (id, 0)),
    };
    match result {
        Ok((id, epoch)) => {
            response = response
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(epoch);
        }
        Err(error) => {
            tracing::debug!(message = error.message, "InitProducerId refused");
            response = response.with_error_code(error.error.code());
        }
    }
    Ok(encode_response(
        ApiKey::InitProducerId,
        version,
        request.header.correlation_id,
        &response,
    ))
}

fn txn_denied() -> ApiError {
    ApiError::new(
        ResponseError::TransactionalIdAuthorizationFailed,
        "Transactional Id authorization failed.",
    )
}

/// Kafka's AddPartitionsToTxn / TxnOffsetCommit topic check: partitions of topics without
/// `operation` fail with TOPIC_AUTHORIZATION_FAILED, and then the others are not attempted.
fn denied_partitions(
    context: &RequestContext,
    operation: Operation,
    partitions: &[(String, i32)],
) -> Vec<((String, i32), ResponseError)> {
    let denied: Vec<&(String, i32)> = partitions
        .iter()
        .filter(|(topic, _)| !context.authorized(operation, Resource::Topic(topic)))
        .collect();
    if denied.is_empty() {
        return Vec::new();
    }
    partitions
        .iter()
        .map(|p| {
            let error = match denied.contains(&p) {
                true => ResponseError::TopicAuthorizationFailed,
                false => ResponseError::OperationNotAttempted,
            };
            (p.clone(), error)
        })
        .collect()
}

fn partitions_of(topics: &[AddPartitionsToTxnTopic]) -> Vec<(String, i32)> {
    topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), *p)))
        .collect()
}

/// Per-topic results: `errors` for the listed partitions, `default` for the others.
fn topic_results(
    topics: &[AddPartitionsToTxnTopic],
    errors: &[((String, i32), ResponseError)],
    default: i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    topics
        .iter()
        .map(|topic| {
            let results = topic
                .partitions
                .iter()
                .map(|partition| {
                    let code = errors
                        .iter()
                        .find(|((t, p), _)| t.as_str() == topic.name.as_str() && p == partition)
                        .map_or(default, |(_, e)| e.code());
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(*partition)
                        .with_partition_error_code(code)
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(topic.name.clone())
                .with_results_by_partition(results)
        })
        .collect()
}

pub fn add_partitions_to_txn(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: AddPartitionsToTxnRequest = decode(&mut request.body, version)?;
    let mut response = AddPartitionsToTxnResponse::default();
    if version <= 3 {
        let partitions = partitions_of(&body.v3_and_below_topics);
        let transactional_id = body.v3_and_below_transactional_id.as_str();
        let denied = denied_partitions(context, Operation::Write, &partitions);
        let outcome = if partitions.len() > PARTITIONS_PER_REQUEST_MAX {
            Err(ApiError::new(
                ResponseError::InvalidRequest,
                "too many partitions",
            ))
        } else if !context.authorized(
            Operation::Write,
            Resource::TransactionalId(transactional_id),
        ) {
            Err(txn_denied())
        } else if !denied.is_empty() {
            Ok(denied)
        } else {
            broker.transactions.add_partitions(
                broker,
                body.v3_and_below_transactional_id.as_str(),
                body.v3_and_below_producer_id.0,
                body.v3_and_below_producer_epoch,
                &partitions,
                0,
            )
        };
        let results = match outcome {
            Ok(errors) => topic_results(&body.v3_and_below_topics, &errors, 0),
            Err(error) => topic_results(
                &body.v3_and_below_topics,
                &[],
                legacy_code(version, error.error),
            ),
        };
        response = response.with_results_by_topic_v3_and_below(results);
    } else if !context.authorized(Operation::ClusterAction, Resource::Cluster) {
        // v4+ is sent by brokers verifying a transaction (KIP-890): CLUSTER_ACTION.
        response = response.with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    } else {
        let mut results = Vec::with_capacity(body.transactions.len());
        for txn in &body.transactions {
            let partitions = partitions_of(&txn.topics);
            let outcome = if partitions.len() > PARTITIONS_PER_REQUEST_MAX {
                Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    "too many partitions",
                ))
            } else if txn.verify_only {
                broker.transactions.verify_partitions(
                    broker,
                    txn.transactional_id.as_str(),
                    txn.producer_id.0,
                    txn.producer_epoch,
                    &partitions,
                )
            } else {
                // v5 is what a partition leader sends for a transactions-v2 produce.
                let client_transaction_version = if version >= ADD_PARTITIONS_TO_TXN_BROKER_VERSION
                {
                    TRANSACTION_VERSION_EPOCH_BUMP
                } else {
                    0
                };
                broker.transactions.add_partitions(
                    broker,
                    txn.transactional_id.as_str(),
                    txn.producer_id.0,
                    txn.producer_epoch,
                    &partitions,
                    client_transaction_version,
                )
            };
            let topic_results = match outcome {
                Ok(errors) => topic_results(&txn.topics, &errors, 0),
                Err(error) => topic_results(&txn.topics, &[], error.error.code()),
            };
            results.push(
                AddPartitionsToTxnResult::default()
                    .with_transactional_id(txn.transactional_id.clone())
                    .with_topic_results(topic_results),
            );
        }
        response = response.with_results_by_transaction(results);
    }
    Ok(encode_response(
        ApiKey::AddPartitionsToTxn,
        version,
        request.header.correlation_id,
        &response,
    ))
}

/// Before v2 of the transaction APIs (KIP-588) clients do not know PRODUCER_FENCED; Kafka
/// answers them INVALID_PRODUCER_EPOCH instead.
/// What AddOffsetsToTxn and TxnOffsetCommit both need first, in Kafka's order: WRITE on the
/// transactional id, then READ on the group.
fn authorize_txn_group(
    context: &RequestContext,
    transactional_id: &str,
    group_id: &str,
) -> Result<(), ApiError> {
    if !context.authorized(
        Operation::Write,
        Resource::TransactionalId(transactional_id),
    ) {
        Err(txn_denied())
    } else if !context.authorized(Operation::Read, Resource::Group(group_id)) {
        Err(ApiError::new(
            ResponseError::GroupAuthorizationFailed,
            "Group authorization failed.",
        ))
    } else {
        Ok(())
    }
}

fn legacy_code(version: i16, error: ResponseError) -> i16 {
    if error == ResponseError::ProducerFenced && version < 2 {
        ResponseError::InvalidProducerEpoch.code()
    } else {
        error.code()
    }
}

pub fn add_offsets_to_txn(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: AddOffsetsToTxnRequest = decode(&mut request.body, version)?;
    let mut response = AddOffsetsToTxnResponse::default();
    let outcome = if let Err(error) = authorize_txn_group(
        context,
        body.transactional_id.as_str(),
        body.group_id.as_str(),
    ) {
        Err(error)
    } else {
        broker.transactions.add_offsets(
            broker,
            body.transactional_id.as_str(),
            (body.producer_id.0, body.producer_epoch),
            body.group_id.as_str(),
            false,
        )
    };
    if let Err(error) = outcome {
        response = response.with_error_code(legacy_code(version, error.error));
    }
    Ok(encode_response(
        ApiKey::AddOffsetsToTxn,
        version,
        request.header.correlation_id,
        &response,
    ))
}

pub fn end_txn(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: EndTxnRequest = decode(&mut request.body, version)?;
    let mut response = EndTxnResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let outcome = if !context.authorized(
        Operation::Write,
        Resource::TransactionalId(body.transactional_id.as_str()),
    ) {
        Err(txn_denied())
    } else {
        broker.transactions.end_transaction(
            broker,
            body.transactional_id.as_str(),
            body.producer_id.0,
            body.producer_epoch,
            body.committed,
            // v5+ (transactions v2): the epoch is bumped and returned.
            version >= END_TXN_VERSION_V2,
        )
    };
    match outcome {
        Ok((producer_id, producer_epoch)) => {
            response = response
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(producer_epoch);
        }
        Err(error) => {
            tracing::debug!(message = error.message, "EndTxn refused");
            response = response.with_error_code(legacy_code(version, error.error));
        }
    }
    Ok(encode_response(
        ApiKey::EndTxn,
        version,
        request.header.correlation_id,
        &response,
    ))
}

/// TxnOffsetCommit: offsets written to `__consumer_offsets` in the transaction and staged,
/// visible to the group once it commits (`GroupCoordinator::end_transactional_offsets`).
pub fn txn_offset_commit(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: TxnOffsetCommitRequest = decode(&mut request.body, version)?;
    let offsets: Vec<PendingOffset> = body
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|p| PendingOffset {
                topic: topic.name.0.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            })
        })
        .collect();
    // Kafka: WRITE on the transactional id, READ on the group, READ on each topic (the
    // partitions of a denied topic fail, and then none is committed).
    let partitions: Vec<(String, i32)> = offsets
        .iter()
        .map(|o| (o.topic.clone(), o.partition))
        .collect();
    let denied = denied_partitions(context, Operation::Read, &partitions);
    let outcome = if let Err(error) = authorize_txn_group(
        context,
        body.transactional_id.as_str(),
        body.group_id.as_str(),
    ) {
        Err(error)
    } else if !denied.is_empty() {
        Ok(())
    } else {
        // v5+ (transactions v2): no AddOffsetsToTxn came first.
        let implicit = version >= TXN_OFFSET_COMMIT_VERSION_V2
            && TRANSACTION_VERSION_FINALIZED >= TRANSACTION_VERSION_EPOCH_BUMP;
        let added = if implicit {
            broker.transactions.add_offsets(
                broker,
                body.transactional_id.as_str(),
                (body.producer_id.0, body.producer_epoch),
                body.group_id.as_str(),
                true,
            )
        } else {
            Ok(())
        };
        added.and_then(|()| {
            broker.transactions.stage_offsets(
                broker,
                body.transactional_id.as_str(),
                body.producer_id.0,
                body.producer_epoch,
                body.group_id.as_str(),
                offsets,
            )
        })
    };
    let code = match outcome {
        Ok(()) => 0,
        Err(error) => legacy_code(version, error.error),
    };
    let code_of = |topic: &str, partition: i32| {
        denied
            .iter()
            .find(|((t, p), _)| t == topic && *p == partition)
            .map_or(code, |(_, error)| error.code())
    };
    let topics = body
        .topics
        .iter()
        .map(|topic| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(TopicName(topic.name.0.clone()))
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .map(|p| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code_of(topic.name.as_str(), p.partition_index))
                        })
                        .collect(),
                )
        })
        .collect();
    let response = TxnOffsetCommitResponse::default().with_topics(topics);
    Ok(encode_response(
        ApiKey::TxnOffsetCommit,
        version,
        request.header.correlation_id,
        &response,
    ))
}

/// DescribeTransactions: the coordinator's view of each transactional id.
pub fn describe_transactions(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
    use kafka_protocol::messages::{DescribeTransactionsRequest, DescribeTransactionsResponse};
    let version = request.version;
    let body: DescribeTransactionsRequest = decode(&mut request.body, version)?;
    let ready = broker.transactions.ensure_ready(broker);
    let states = body
        .transactional_ids
        .iter()
        .map(|id| {
            let state = TransactionState::default()
                .with_transactional_id(id.clone())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1);
            if !context.authorized(Operation::Describe, Resource::TransactionalId(id.as_str())) {
                return state
                    .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
            }
            if let Err(error) = &ready {
                return state.with_error_code(error.error.code());
            }
            let Some(txn) = broker.transactions.transaction(id.as_str()) else {
                return state.with_error_code(ResponseError::TransactionalIdNotFound.code());
            };
            let mut by_topic: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
            for (topic, partition) in &txn.partitions {
                by_topic.entry(topic).or_default().push(*partition);
            }
            let topics = by_topic
                .into_iter()
                .map(|(topic, partitions)| {
                    TopicData::default()
                        .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(partitions)
                })
                .collect();
            state
                .with_transaction_state(StrBytes::from_static_str(txn.state.name()))
                .with_transaction_timeout_ms(txn.timeout_ms)
                .with_transaction_start_time_ms(txn.start_ms)
                .with_producer_id(ProducerId(txn.producer_id))
                .with_producer_epoch(txn.producer_epoch)
                .with_topics(topics)
        })
        .collect();
    let response = DescribeTransactionsResponse::default().with_transaction_states(states);
    Ok(encode_response(
        ApiKey::DescribeTransactions,
        version,
        request.header.correlation_id,
        &response,
    ))
}

/// ListTransactions, filtered by state, producer id and (v1) minimum running time.
pub fn list_transactions(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    use kafka_protocol::messages::list_transactions_response::TransactionState;
    use kafka_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse};
    const STATES: &[&str] = &[
        "Empty",
        "Ongoing",
        "PrepareCommit",
        "PrepareAbort",
        "CompleteCommit",
        "CompleteAbort",
        "Dead",
        "PrepareEpochFence",
    ];
    let version = request.version;
    let body: ListTransactionsRequest = decode(&mut request.body, version)?;
    let mut response = ListTransactionsResponse::default();
    if let Err(error) = broker.transactions.ensure_ready(broker) {
        response = response.with_error_code(error.error.code());
    } else {
        let unknown: Vec<StrBytes> = body
            .state_filters
            .iter()
            .filter(|s| !STATES.contains(&s.as_str()))
            .cloned()
            .collect();
        let now = crate::clock::now_ms();
        let states = broker
            .transactions
            .transactions()
            .into_iter()
            .filter(|t| {
                context.authorized(
                    Operation::Describe,
                    Resource::TransactionalId(&t.transactional_id),
                )
            })
            .filter(|t| {
                body.state_filters.is_empty()
                    || body
                        .state_filters
                        .iter()
                        .any(|s| s.as_str() == t.state.name())
            })
            .filter(|t| {
                body.producer_id_filters.is_empty()
                    || body
                        .producer_id_filters
                        .iter()
                        .any(|p| p.0 == t.producer_id)
            })
            .filter(|t| {
                body.duration_filter < 0
                    || (t.state == crate::coordinator::transaction::TxnState::Ongoing
                        && now - t.start_ms >= body.duration_filter)
            })
            .map(|t| {
                TransactionState::default()
                    .with_transactional_id(StrBytes::from_string(t.transactional_id).into())
                    .with_producer_id(ProducerId(t.producer_id))
                    .with_transaction_state(StrBytes::from_static_str(t.state.name()))
            })
            .collect();
        response = response
            .with_unknown_state_filters(unknown)
            .with_transaction_states(states);
    }
    Ok(encode_response(
        ApiKey::ListTransactions,
        version,
        request.header.correlation_id,
        &response,
    ))
}

/// Producers listed per partition in one DescribeProducers response, at most; the partition
/// map itself is bounded by `PRODUCERS_PER_PARTITION_MAX`.
const DESCRIBED_PRODUCERS_PER_PARTITION_MAX: usize = 10_000;

/// DescribeProducers: each partition's active producers (what `kafka-transactions
/// find-hanging` reads).
pub fn describe_producers(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    use kafka_protocol::messages::describe_producers_response::{
        PartitionResponse, ProducerState, TopicResponse,
    };
    use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse};
    let version = request.version;
    let body: DescribeProducersRequest = decode(&mut request.body, version)?;
    let image = broker.image();
    let topics = body
        .topics
        .iter()
        .map(|topic| {
            let allowed = context.authorized(Operation::Read, Resource::Topic(topic.name.as_str()));
            let partitions = topic
                .partition_indexes
                .iter()
                .map(|&index| {
                    let response = PartitionResponse::default().with_partition_index(index);
                    if !allowed {
                        return response
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    let log = match broker
                        .replicas
                        .leader_log(&image, topic.name.as_str(), index)
                    {
                        Ok(log) => log,
                        Err(error) => return response.with_error_code(error.code()),
                    };
                    let active = log.with_producers(|state| {
                        state
                            .producers()
                            .take(DESCRIBED_PRODUCERS_PER_PARTITION_MAX)
                            .map(|(id, entry)| {
                                ProducerState::default()
                                    .with_producer_id(ProducerId(id))
                                    .with_producer_epoch(i32::from(entry.epoch))
                                    .with_last_sequence(entry.last_sequence())
                                    .with_last_timestamp(entry.last_timestamp_ms)
                                    .with_coordinator_epoch(entry.coordinator_epoch)
                                    .with_current_txn_start_offset(
                                        entry.current_txn_first_offset.unwrap_or(-1),
                                    )
                            })
                            .collect()
                    });
                    response.with_active_producers(active)
                })
                .collect();
            TopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    let response = DescribeProducersResponse::default().with_topics(topics);
    Ok(encode_response(
        ApiKey::DescribeProducers,
        version,
        request.header.correlation_id,
        &response,
    ))
}

/// WriteTxnMarkers (sent by the transaction coordinator of another broker): appends each
/// marker's COMMIT/ABORT control batch to the listed partitions hosted here, as the
/// coordinator does for its own; a marker on `__consumer_offsets` also decides the offsets
/// TxnOffsetCommit staged here for the producer.
pub fn write_txn_markers(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    use kafka_protocol::messages::write_txn_markers_response::{
        WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
    };
    let version = request.version;
    let body: WriteTxnMarkersRequest = decode(&mut request.body, version)?;
    let partition_count: usize = body
        .markers
        .iter()
        .flat_map(|m| m.topics.iter())
        .map(|t| t.partition_indexes.len())
        .sum();
    let too_many = partition_count > MARKER_PARTITIONS_PER_REQUEST_MAX;
    // Inter-broker: CLUSTER_ACTION, else every partition fails (Kafka).
    let cluster_denied = !context.authorized(Operation::ClusterAction, Resource::Cluster);
    let now = crate::clock::now_ms();
    // Markers are answered for once on the in-sync replicas (Kafka appends them with
    // acks=all); one deadline bounds the waits of the whole request.
    let deadline = std::time::Instant::now() + crate::node::COORDINATOR_REPLICATION_TIMEOUT;
    let image = broker.image();
    let mut results = Vec::with_capacity(body.markers.len());
    for marker in &body.markers {
        let producer_id = marker.producer_id.0;
        let mut offsets_marked = false;
        let mut topics = Vec::with_capacity(marker.topics.len());
        for topic in &marker.topics {
            let name = topic.name.as_str();
            let partitions = topic
                .partition_indexes
                .iter()
                .map(|&index| {
                    let led = broker.replicas.leader_partition(&image, name, index);
                    let error = if cluster_denied {
                        Some(ResponseError::ClusterAuthorizationFailed)
                    } else if too_many {
                        Some(ResponseError::InvalidRequest)
                    } else if let Ok(led) = led {
                        if led.under_min_isr() {
                            // Kafka appends markers with acks=all: NOT_ENOUGH_REPLICAS, and the
                            // coordinator writes it again later.
                            return WritableTxnMarkerPartitionResult::default()
                                .with_partition_index(index)
                                .with_error_code(ResponseError::NotEnoughReplicas.code());
                        }
                        match led.log.append_marker(
                            producer_id,
                            marker.producer_epoch,
                            marker.coordinator_epoch,
                            marker.transaction_result,
                            now,
                        ) {
                            Ok(offset) => {
                                broker.replicas.notify_appended();
                                let left = deadline.saturating_duration_since(std::time::Instant::now());
                                match broker.wait_in_sync(name, index, &led, offset + 1, left) {
                                    Ok(()) => {
                                        offsets_marked |= name == OFFSETS_TOPIC;
                                        None
                                    }
                                    // The coordinator writes it again (a second marker
                                    // for the same producer changes nothing).
                                    Err(error) => {
                                        tracing::warn!(topic = name, partition = index, %error, "transaction marker not on the ISR in time");
                                        Some(ResponseError::RequestTimedOut)
                                    }
                                }
                            }
                            Err(AppendError::Producer(ProducerError::InvalidEpoch { .. })) => {
                                Some(ResponseError::InvalidProducerEpoch)
                            }
                            Err(AppendError::Producer(error @ ProducerError::CoordinatorFenced { .. })) => {
                                tracing::info!(topic = name, partition = index, producer_id, %error, "transaction marker of a fenced coordinator refused");
                                Some(ResponseError::TransactionCoordinatorFenced)
                            }
                            Err(error) => {
                                tracing::error!(topic = name, partition = index, %error, "writing a transaction marker failed");
                                Some(ResponseError::KafkaStorageError)
                            }
                        }
                    } else {
                        led.err()
                    };
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(index)
                        .with_error_code(error.map_or(0, |e| e.code()))
                })
                .collect();
            topics.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(topic.name.clone())
                    .with_partitions(partitions),
            );
        }
        if offsets_marked {
            let staged = broker.transactions.take_staged_offsets(producer_id);
            broker.groups.end_transactional_offsets(
                producer_id,
                staged.as_ref(),
                marker.transaction_result,
            );
        }
        results.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(marker.producer_id)
                .with_topics(topics),
        );
    }
    Ok(encode_response(
        ApiKey::WriteTxnMarkers,
        version,
        request.header.correlation_id,
        &WriteTxnMarkersResponse::default().with_markers(results),
    ))
}
