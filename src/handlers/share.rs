//! Share groups (KIP-932): ShareGroupHeartbeat and ShareGroupDescribe (membership, asked of
//! the share-group coordinator), ShareFetch and ShareAcknowledge (records, asked of the
//! share-partitions of the partitions this node leads, `crate::share`).
//!
//! ShareFetch reads whole batches from the log as Fetch does (only the 61-byte headers are
//! parsed, never the records), acquires for the member the offsets it may have, and returns
//! the batches holding them with the acquired ranges; the client delivers only records inside
//! those ranges. Acknowledgements ride on the next ShareFetch or come alone in
//! ShareAcknowledge.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::share_acknowledge_response::{
    LeaderIdAndEpoch as AckLeader, PartitionData as AckPartitionData, ShareAcknowledgeTopicResponse,
};
use kafka_protocol::messages::share_fetch_response::{
    AcquiredRecords, LeaderIdAndEpoch, PartitionData, ShareFetchableTopicResponse,
};
use kafka_protocol::messages::share_group_describe_response::{
    Assignment as DescribeAssignment, DescribedGroup, Member as DescribedMember,
    TopicPartitions as DescribeTopicPartitions,
};
use kafka_protocol::messages::share_group_heartbeat_response::{
    Assignment as HeartbeatAssignment, TopicPartitions as HeartbeatTopicPartitions,
};
use kafka_protocol::messages::{
    ApiKey, ShareAcknowledgeRequest, ShareAcknowledgeResponse, ShareFetchRequest,
    ShareFetchResponse, ShareGroupDescribeRequest, ShareGroupDescribeResponse,
    ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::clock::now_ms;
use crate::controller::image::MetadataImage;
use crate::coordinator::consumer_group::Assignment;
use crate::coordinator::share_group::ShareHeartbeat;
use crate::handlers::context::RequestContext;
use crate::handlers::Handled;
use crate::node::Node;
use crate::protocol::{decode, encode_response, Request, RequestError, ResponseFrame};
use crate::record::batch::BatchIter;
use crate::security::{Operation, Resource};
use crate::share::partition::{AcknowledgeError, AcknowledgeType};
use crate::share::session::{SessionError, TopicIdPartition, FINAL_EPOCH, INITIAL_EPOCH};
use crate::share::{AutoOffsetReset, ShareError, SharePartitionKey};

/// Longest a ShareFetch waits for records (as Fetch).
const MAX_WAIT_MS_MAX: i32 = 60_000;
/// Bytes one ShareFetch returns at most, whatever the client asks (the records are copied
/// into the response).
const RESPONSE_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Records acquired per partition per fetch when the client names no limit.
const MAX_RECORDS_DEFAULT: usize = 500;
/// How often a waiting ShareFetch re-checks without news: acquisition locks expire on the
/// clock, not on an event.
const WAIT_RECHECK_MS: u64 = 200;
/// Acknowledgement batches, and offsets per batch, one request may carry.
const ACK_BATCHES_MAX: usize = 10_000;
const ACK_RANGE_OFFSETS_MAX: i64 = 1_000_000;

fn str_bytes(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

/// Where new share-partitions start: Kafka's default for the group config
/// `share.auto.offset.reset` (group configs are not served yet, so it cannot be changed).
const AUTO_OFFSET_RESET: AutoOffsetReset = AutoOffsetReset::Latest;

// ---------------------------------------------------------------- membership

/// Members whose session ran out release what they held.
/// The topics among `topic_ids` the principal may not READ (Kafka's share-fetch and
/// acknowledge check): their partitions answer TOPIC_AUTHORIZATION_FAILED and are neither
/// acquired nor acknowledged. Unknown ids are left to the UNKNOWN_TOPIC_ID path.
fn unreadable_topics(
    context: &RequestContext,
    image: &MetadataImage,
    topic_ids: impl Iterator<Item = Uuid>,
) -> BTreeSet<Uuid> {
    if !context.enforces_authorization() {
        return BTreeSet::new();
    }
    topic_ids
        .filter(|id| {
            image
                .topic_by_id(id)
                .is_some_and(|t| !context.authorized(Operation::Read, Resource::Topic(&t.name)))
        })
        .collect()
}

pub(crate) fn expire_members(broker: &Node, now: i64) {
    let expired = broker.share_groups.lock().expire(now);
    for (group_id, member_id) in expired {
        broker.share.member_left(&group_id, &member_id);
    }
}

fn topic_partitions_by_id(image: &MetadataImage, assignment: &Assignment) -> Vec<(Uuid, Vec<i32>)> {
    assignment
        .iter()
        .filter_map(|(topic, partitions)| {
            let found = image.topics.get(topic)?;
            Some((found.id, partitions.iter().copied().collect()))
        })
        .collect()
}

pub fn share_group_heartbeat(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: ShareGroupHeartbeatRequest = decode(&mut request.body, version)?;
    let group_id = body.group_id.to_string();
    let image = broker.image();
    // Kafka: READ on the group, DESCRIBE on every subscribed topic.
    let denied_topic = body.subscribed_topic_names.as_ref().and_then(|topics| {
        topics
            .iter()
            .find(|t| !context.authorized(Operation::Describe, Resource::Topic(t.as_str())))
            .map(|t| t.to_string())
    });
    let outcome = broker
        .groups
        .check_coordinator(broker, &group_id)
        .map_err(|e| (e, "This broker is not the group's coordinator.".to_string()))
        .and_then(
            |()| match context.authorized(Operation::Read, Resource::Group(&group_id)) {
                true => Ok(()),
                false => Err((
                    ResponseError::GroupAuthorizationFailed,
                    "The group authorization failed.".to_string(),
                )),
            },
        )
        .and_then(|()| match denied_topic {
            None => Ok(()),
            Some(topic) => Err((
                ResponseError::TopicAuthorizationFailed,
                format!("Not authorized to access topics: [{topic}]"),
            )),
        })
        .and_then(|()| {
            let now = now_ms();
            expire_members(broker, now);
            let heartbeat = ShareHeartbeat {
                member_id: body.member_id.to_string(),
                member_epoch: body.member_epoch,
                rack_id: body.rack_id.as_ref().map(|s| s.to_string()),
                subscribed_topics: body
                    .subscribed_topic_names
                    .as_ref()
                    .map(|names| names.iter().map(|n| n.to_string()).collect()),
                client_id: request
                    .header
                    .client_id
                    .as_ref()
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                client_host: context.client_host(),
            };
            let partitions_of = |topic: &str| image.topics.get(topic).map(|t| t.partition_count());
            broker.share_groups.lock().heartbeat(
                &group_id,
                heartbeat,
                &partitions_of,
                &broker.share_groups.settings,
                now,
            )
        });
    let response = match outcome {
        Err((error, message)) => ShareGroupHeartbeatResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(message))),
        Ok(result) => {
            if result.member_epoch == crate::coordinator::share_group::LEAVE_EPOCH {
                broker.share.member_left(&group_id, &result.member_id);
            }
            ShareGroupHeartbeatResponse::default()
                .with_member_id(Some(str_bytes(result.member_id)))
                .with_member_epoch(result.member_epoch)
                .with_heartbeat_interval_ms(broker.share_groups.settings.heartbeat_interval_ms)
                .with_assignment(result.assignment.map(|assignment| {
                    HeartbeatAssignment::default().with_topic_partitions(
                        topic_partitions_by_id(&image, &assignment)
                            .into_iter()
                            .map(|(topic_id, partitions)| {
                                HeartbeatTopicPartitions::default()
                                    .with_topic_id(topic_id)
                                    .with_partitions(partitions)
                            })
                            .collect(),
                    )
                }))
        }
    };
    Ok(encode_response(
        ApiKey::ShareGroupHeartbeat,
        version,
        request.header.correlation_id,
        &response,
    ))
}

pub fn share_group_describe(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: ShareGroupDescribeRequest = decode(&mut request.body, version)?;
    let image = broker.image();
    expire_members(broker, now_ms());
    let mut groups = Vec::with_capacity(body.group_ids.len().min(1024));
    for group_id in &body.group_ids {
        let mut described = DescribedGroup::default()
            .with_group_id(group_id.clone())
            .with_authorized_operations(i32::MIN);
        if let Err(error) = broker.groups.check_coordinator(broker, group_id.as_str()) {
            groups.push(described.with_error_code(error.code()));
            continue;
        }
        if !context.authorized(Operation::Describe, Resource::Group(group_id.as_str())) {
            groups.push(described.with_error_code(ResponseError::GroupAuthorizationFailed.code()));
            continue;
        }
        let share_groups = broker.share_groups.lock();
        let Some(group) = share_groups.get(group_id.as_str()) else {
            groups.push(
                described
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(str_bytes(format!(
                        "Group {} not found.",
                        group_id.as_str()
                    )))),
            );
            continue;
        };
        described = described
            .with_group_state(str_bytes(group.state_name()))
            .with_group_epoch(group.group_epoch)
            .with_assignment_epoch(group.group_epoch)
            .with_assignor_name(str_bytes("simple"))
            .with_members(
                group
                    .members
                    .values()
                    .map(|member| {
                        let topic_partitions = topic_partitions_by_id(&image, &member.assignment)
                            .into_iter()
                            .map(|(topic_id, partitions)| {
                                let name = image
                                    .topic_by_id(&topic_id)
                                    .map(|t| t.name.clone())
                                    .unwrap_or_default();
                                DescribeTopicPartitions::default()
                                    .with_topic_id(topic_id)
                                    .with_topic_name(TopicName(str_bytes(name)))
                                    .with_partitions(partitions)
                            })
                            .collect();
                        DescribedMember::default()
                            .with_member_id(str_bytes(member.member_id.clone()))
                            .with_rack_id(member.rack_id.clone().map(str_bytes))
                            .with_member_epoch(member.member_epoch)
                            .with_client_id(str_bytes(member.client_id.clone()))
                            .with_client_host(str_bytes(member.client_host.clone()))
                            .with_subscribed_topic_names(
                                member
                                    .subscribed_topics
                                    .iter()
                                    .map(|t| TopicName(str_bytes(t.clone())))
                                    .collect(),
                            )
                            .with_assignment(
                                DescribeAssignment::default()
                                    .with_topic_partitions(topic_partitions),
                            )
                    })
                    .collect(),
            );
        groups.push(described);
    }
    Ok(encode_response(
        ApiKey::ShareGroupDescribe,
        version,
        request.header.correlation_id,
        &ShareGroupDescribeResponse::default().with_groups(groups),
    ))
}

// ---------------------------------------------------------------- records

fn session_error_code(error: SessionError) -> ResponseError {
    match error {
        SessionError::NotFound => ResponseError::ShareSessionNotFound,
        SessionError::InvalidEpoch => ResponseError::InvalidShareSessionEpoch,
        SessionError::LimitReached => ResponseError::ShareSessionLimitReached,
        SessionError::TooManyPartitions => ResponseError::InvalidRequest,
    }
}

/// One partition's acknowledgement batches, decoded; Err(INVALID_REQUEST) on an unknown type
/// or an oversized request.
type AckBatches = Vec<(i64, i64, Vec<AcknowledgeType>)>;

fn decode_acks<'a>(
    batches: impl ExactSizeIterator<Item = (i64, i64, &'a [i8])>,
) -> Result<AckBatches, ResponseError> {
    if batches.len() > ACK_BATCHES_MAX {
        return Err(ResponseError::InvalidRequest);
    }
    batches
        .map(|(first, last, types)| {
            if last < first || last - first >= ACK_RANGE_OFFSETS_MAX {
                return Err(ResponseError::InvalidRequest);
            }
            let types = types
                .iter()
                .map(|t| AcknowledgeType::from_wire(*t).ok_or(ResponseError::InvalidRequest))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((first, last, types))
        })
        .collect()
}

/// Applies one partition's acknowledgements: the error for the response (None = fine).
fn acknowledge(
    broker: &Node,
    image: &MetadataImage,
    group_id: &str,
    member_id: &str,
    (topic_id, partition): TopicIdPartition,
    batches: Result<AckBatches, ResponseError>,
) -> Option<ResponseError> {
    let batches = match batches {
        Ok(batches) => batches,
        Err(error) => return Some(error),
    };
    let Some(topic) = image.topic_by_id(&topic_id) else {
        return Some(ResponseError::UnknownTopicId);
    };
    if let Err(error) = broker
        .replicas
        .leader_partition(image, &topic.name, partition)
    {
        return Some(error);
    }
    let key: SharePartitionKey = (group_id.to_string(), topic_id, partition);
    match broker
        .share
        .acknowledge(&key, member_id, &batches, now_ms())
    {
        Ok(()) => None,
        Err(AcknowledgeError::InvalidRecordState) => Some(ResponseError::InvalidRecordState),
        Err(AcknowledgeError::InvalidRequest) => Some(ResponseError::InvalidRequest),
    }
}

/// What one fetch reads, resolved from the request and its session.
struct SharePlan {
    version: i16,
    correlation_id: i32,
    group_id: String,
    member_id: String,
    partitions: Vec<TopicIdPartition>,
    max_bytes: u64,
    max_records: usize,
    /// Acknowledgement outcomes of this request, reported with the partition.
    ack_errors: BTreeMap<TopicIdPartition, Option<ResponseError>>,
    /// Topics of the session the principal may not READ.
    unreadable: BTreeSet<Uuid>,
}

struct FetchedPartition {
    error: Option<ResponseError>,
    records: Option<Bytes>,
    acquired: Vec<AcquiredRecords>,
    leader: (i32, i32),
}

/// One acquisition pass over the session's partitions: reads from each share-partition's
/// fetch offset and acquires what the member may have.
fn acquire_pass(
    broker: &Node,
    plan: &SharePlan,
) -> (BTreeMap<TopicIdPartition, FetchedPartition>, usize) {
    let image = broker.image();
    let now = now_ms();
    let mut remaining_bytes = plan.max_bytes;
    let mut acquired_total = 0usize;
    let mut results = BTreeMap::new();
    for &(topic_id, partition) in &plan.partitions {
        let mut result = FetchedPartition {
            error: None,
            records: None,
            acquired: Vec::new(),
            leader: (-1, -1),
        };
        let Some(topic) = image.topic_by_id(&topic_id) else {
            result.error = Some(ResponseError::UnknownTopicId);
            results.insert((topic_id, partition), result);
            continue;
        };
        if plan.unreadable.contains(&topic_id) {
            result.error = Some(ResponseError::TopicAuthorizationFailed);
            results.insert((topic_id, partition), result);
            continue;
        }
        let led = match broker
            .replicas
            .leader_partition(&image, &topic.name, partition)
        {
            Ok(led) => led,
            Err(error) => {
                result.error = Some(error);
                results.insert((topic_id, partition), result);
                continue;
            }
        };
        result.leader = (broker.config.node_id, led.leader_epoch);
        if remaining_bytes == 0 || acquired_total >= plan.max_records {
            results.insert((topic_id, partition), result);
            continue;
        }
        let key: SharePartitionKey = (plan.group_id.clone(), topic_id, partition);
        let high_watermark = led.high_watermark();
        let log_start = led.log.offsets().log_start_offset;
        let fetch_offset =
            match broker
                .share
                .fetch_offset(&key, AUTO_OFFSET_RESET, log_start, high_watermark, now)
            {
                Ok(Some(offset)) if offset < high_watermark => offset,
                Ok(_) => {
                    results.insert((topic_id, partition), result);
                    continue;
                }
                Err(ShareError::TooManySharePartitions) => {
                    result.error = Some(ResponseError::UnknownServerError);
                    results.insert((topic_id, partition), result);
                    continue;
                }
            };
        let bytes = match led.log.read_up_to(
            fetch_offset,
            remaining_bytes,
            true,
            Some(high_watermark),
        ) {
            Ok(Ok(Some(slice))) => match slice.read_to_vec() {
                Ok(bytes) => bytes,
                Err(error) => {
                    tracing::error!(topic = topic.name, partition, %error, "share fetch read failed");
                    result.error = Some(ResponseError::KafkaStorageError);
                    results.insert((topic_id, partition), result);
                    continue;
                }
            },
            Ok(Ok(None)) | Ok(Err(_)) => {
                results.insert((topic_id, partition), result);
                continue;
            }
            Err(error) => {
                tracing::error!(topic = topic.name, partition, %error, "share fetch read failed");
                result.error = Some(ResponseError::KafkaStorageError);
                results.insert((topic_id, partition), result);
                continue;
            }
        };
        // (position, size, base offset, last offset) of each whole batch read; control
        // batches hold no records for the consumer: they are left out, and the offsets they
        // occupy end up archived as a gap.
        let batches: Vec<(usize, usize, i64, i64)> = BatchIter::new(&bytes)
            .map_while(Result::ok)
            .filter(|(_, header)| !header.is_control())
            .map(|(position, header)| {
                (
                    position,
                    header.size_bytes(),
                    header.base_offset,
                    header.last_offset(),
                )
            })
            .collect();
        let ranges: Vec<(i64, i64)> = batches.iter().map(|b| (b.2, b.3)).collect();
        let acquired = broker.share.acquire(
            &key,
            &plan.member_id,
            &ranges,
            plan.max_records - acquired_total,
            now,
        );
        if acquired.is_empty() {
            results.insert((topic_id, partition), result);
            continue;
        }
        let mut records = Vec::new();
        for &(position, size, base, last) in &batches {
            if acquired
                .iter()
                .any(|a| a.first_offset <= last && base <= a.last_offset)
            {
                records.extend_from_slice(&bytes[position..position + size]);
            }
        }
        remaining_bytes = remaining_bytes.saturating_sub(records.len() as u64);
        acquired_total += acquired
            .iter()
            .map(|a| (a.last_offset - a.first_offset + 1) as usize)
            .sum::<usize>();
        result.records = Some(Bytes::from(records));
        result.acquired = acquired
            .iter()
            .map(|a| {
                AcquiredRecords::default()
                    .with_first_offset(a.first_offset)
                    .with_last_offset(a.last_offset)
                    .with_delivery_count(a.delivery_count as i16)
            })
            .collect();
        results.insert((topic_id, partition), result);
    }
    (results, acquired_total)
}

fn respond(
    broker: &Node,
    plan: &SharePlan,
    mut fetched: BTreeMap<TopicIdPartition, FetchedPartition>,
) -> ResponseFrame {
    let mut topics: Vec<ShareFetchableTopicResponse> = Vec::new();
    let mut keys: Vec<TopicIdPartition> = fetched.keys().copied().collect();
    keys.extend(plan.ack_errors.keys().copied());
    keys.sort();
    keys.dedup();
    for key in keys {
        let result = fetched.remove(&key);
        let ack_error = plan.ack_errors.get(&key).copied();
        let code = |error: Option<ResponseError>| error.map(|e| e.code()).unwrap_or(0);
        // Partitions with nothing to say are left out, as Kafka does.
        let has_news = ack_error.is_some()
            || result
                .as_ref()
                .is_some_and(|r| r.error.is_some() || !r.acquired.is_empty());
        if !has_news {
            continue;
        }
        let result = result.unwrap_or(FetchedPartition {
            error: None,
            records: None,
            acquired: Vec::new(),
            leader: (broker.config.node_id, -1),
        });
        let partition = PartitionData::default()
            .with_partition_index(key.1)
            .with_error_code(code(result.error))
            .with_acknowledge_error_code(code(ack_error.flatten()))
            .with_current_leader(
                LeaderIdAndEpoch::default()
                    .with_leader_id(result.leader.0)
                    .with_leader_epoch(result.leader.1),
            )
            .with_records(Some(result.records.unwrap_or_default()))
            .with_acquired_records(result.acquired);
        match topics.last_mut() {
            Some(topic) if topic.topic_id == key.0 => topic.partitions.push(partition),
            _ => topics.push(
                ShareFetchableTopicResponse::default()
                    .with_topic_id(key.0)
                    .with_partitions(vec![partition]),
            ),
        }
    }
    let response = ShareFetchResponse::default()
        .with_acquisition_lock_timeout_ms(broker.share.settings().record_lock_duration_ms)
        .with_responses(topics);
    encode_response(
        ApiKey::ShareFetch,
        plan.version,
        plan.correlation_id,
        &response,
    )
}

fn fetch_error(
    version: i16,
    correlation_id: i32,
    error: ResponseError,
    message: &str,
) -> ResponseFrame {
    let response = ShareFetchResponse::default()
        .with_error_code(error.code())
        .with_error_message(Some(str_bytes(message)));
    encode_response(ApiKey::ShareFetch, version, correlation_id, &response)
}

/// The group and member a ShareFetch or ShareAcknowledge names: both must be set, and the
/// principal needs READ on the group (topic READ is checked per partition).
fn session_member(
    context: &RequestContext,
    group_id: Option<String>,
    member_id: Option<String>,
) -> Result<(String, String), (ResponseError, &'static str)> {
    let group_id = group_id.unwrap_or_default();
    let member_id = member_id.unwrap_or_default();
    if group_id.is_empty() || member_id.is_empty() {
        Err((
            ResponseError::InvalidRequest,
            "GroupId and MemberId must be set.",
        ))
    } else if !context.authorized(Operation::Read, Resource::Group(&group_id)) {
        Err((
            ResponseError::GroupAuthorizationFailed,
            "The group authorization failed.",
        ))
    } else {
        Ok((group_id, member_id))
    }
}

pub fn share_fetch(
    broker: &Arc<Node>,
    context: &RequestContext,
    mut request: Request,
) -> Result<Handled, RequestError> {
    let version = request.version;
    let correlation_id = request.header.correlation_id;
    let body: ShareFetchRequest = decode(&mut request.body, version)?;
    let refuse = |error: ResponseError, message: &str| {
        Ok(Handled::Response(fetch_error(
            version,
            correlation_id,
            error,
            message,
        )))
    };
    let (group_id, member_id) = match session_member(
        context,
        body.group_id.as_ref().map(|g| g.to_string()),
        body.member_id.as_ref().map(|m| m.to_string()),
    ) {
        Ok(ids) => ids,
        Err((error, message)) => return refuse(error, message),
    };
    let epoch = body.share_session_epoch;
    let has_acks = body.topics.iter().any(|t| {
        t.partitions
            .iter()
            .any(|p| !p.acknowledgement_batches.is_empty())
    });
    if epoch == INITIAL_EPOCH && has_acks {
        return refuse(
            ResponseError::InvalidRequest,
            "Acknowledge data present on initial fetch request.",
        );
    }
    let image = broker.image();
    let added: Vec<TopicIdPartition> = body
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.topic_id, p.partition_index))
        })
        .collect();
    let forgotten: Vec<TopicIdPartition> = body
        .forgotten_topics_data
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p)))
        .collect();
    let partitions = match broker
        .share
        .sessions()
        .update(&group_id, &member_id, epoch, &added, &forgotten)
    {
        Ok(partitions) => partitions,
        Err(error) => return refuse(session_error_code(error), "Share session error."),
    };
    let unreadable = unreadable_topics(context, &image, partitions.iter().map(|p| p.0));
    let mut ack_errors = BTreeMap::new();
    for topic in &body.topics {
        for partition in &topic.partitions {
            if partition.acknowledgement_batches.is_empty() {
                continue;
            }
            let batches = decode_acks(partition.acknowledgement_batches.iter().map(|b| {
                (
                    b.first_offset,
                    b.last_offset,
                    b.acknowledge_types.as_slice(),
                )
            }));
            let key = (topic.topic_id, partition.partition_index);
            let error = match unreadable.contains(&topic.topic_id) {
                true => Some(ResponseError::TopicAuthorizationFailed),
                false => acknowledge(broker, &image, &group_id, &member_id, key, batches),
            };
            ack_errors.insert(key, error);
        }
    }
    let mut plan = SharePlan {
        version,
        correlation_id,
        group_id,
        member_id,
        partitions,
        max_bytes: (body.max_bytes.max(0) as u64).min(RESPONSE_BYTES_MAX),
        max_records: match body.max_records {
            records if records > 0 => records as usize,
            _ => MAX_RECORDS_DEFAULT,
        },
        ack_errors,
        unreadable,
    };
    if epoch == FINAL_EPOCH {
        // The session is closed: what the member still holds goes back to the others.
        broker
            .share
            .release_member(&plan.group_id, &plan.member_id, &plan.partitions);
        plan.partitions.clear();
        return Ok(Handled::Response(respond(broker, &plan, BTreeMap::new())));
    }
    let (fetched, acquired) = acquire_pass(broker, &plan);
    let any_error = fetched.values().any(|r| r.error.is_some());
    let max_wait_ms = body.max_wait_ms.clamp(0, MAX_WAIT_MS_MAX);
    if acquired > 0 || any_error || max_wait_ms == 0 || plan.partitions.is_empty() {
        return Ok(Handled::Response(respond(broker, &plan, fetched)));
    }
    let broker = broker.clone();
    let deadline = Instant::now() + Duration::from_millis(max_wait_ms as u64);
    Ok(Handled::Deferred(Box::pin(async move {
        let mut shutdown = broker.shutdown.subscribe();
        loop {
            // Register for the wake-ups before acquiring, so news between the pass and the
            // wait is not missed.
            let appended = broker.replicas.appended();
            let released = broker.share.released();
            tokio::pin!(appended, released);
            appended.as_mut().enable();
            released.as_mut().enable();
            let (fetched, acquired) = acquire_pass(&broker, &plan);
            let any_error = fetched.values().any(|r| r.error.is_some());
            if acquired > 0 || any_error || Instant::now() >= deadline || *shutdown.borrow() {
                return Some(respond(&broker, &plan, fetched));
            }
            let recheck = (Instant::now() + Duration::from_millis(WAIT_RECHECK_MS)).min(deadline);
            tokio::select! {
                _ = appended => {}
                _ = released => {}
                _ = tokio::time::sleep_until(recheck.into()) => {}
                _ = shutdown.changed() => {}
            }
        }
    })))
}

pub fn share_acknowledge(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let correlation_id = request.header.correlation_id;
    let body: ShareAcknowledgeRequest = decode(&mut request.body, version)?;
    let refuse = |error: ResponseError, message: &str| {
        let response = ShareAcknowledgeResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(message)));
        Ok(encode_response(
            ApiKey::ShareAcknowledge,
            version,
            correlation_id,
            &response,
        ))
    };
    let (group_id, member_id) = match session_member(
        context,
        body.group_id.as_ref().map(|g| g.to_string()),
        body.member_id.as_ref().map(|m| m.to_string()),
    ) {
        Ok(ids) => ids,
        Err((error, message)) => return refuse(error, message),
    };
    let epoch = body.share_session_epoch;
    let closed = if epoch == FINAL_EPOCH {
        broker
            .share
            .sessions()
            .update(&group_id, &member_id, epoch, &[], &[])
            .map(Some)
    } else {
        broker
            .share
            .sessions()
            .acknowledge(&group_id, &member_id, epoch)
            .map(|()| None)
    };
    let closed = match closed {
        Ok(closed) => closed,
        Err(error) => return refuse(session_error_code(error), "Share session error."),
    };
    let image = broker.image();
    let unreadable = unreadable_topics(context, &image, body.topics.iter().map(|t| t.topic_id));
    let mut topics = Vec::with_capacity(body.topics.len().min(1024));
    for topic in &body.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len().min(1024));
        for partition in &topic.partitions {
            let batches = decode_acks(partition.acknowledgement_batches.iter().map(|b| {
                (
                    b.first_offset,
                    b.last_offset,
                    b.acknowledge_types.as_slice(),
                )
            }));
            let key = (topic.topic_id, partition.partition_index);
            let error = match unreadable.contains(&topic.topic_id) {
                true => Some(ResponseError::TopicAuthorizationFailed),
                false => acknowledge(broker, &image, &group_id, &member_id, key, batches),
            };
            let leader_epoch = image
                .topic_by_id(&topic.topic_id)
                .and_then(|t| {
                    broker
                        .replicas
                        .leader_partition(&image, &t.name, partition.partition_index)
                        .ok()
                })
                .map(|led| led.leader_epoch)
                .unwrap_or(-1);
            partitions.push(
                AckPartitionData::default()
                    .with_partition_index(partition.partition_index)
                    .with_error_code(error.map(|e| e.code()).unwrap_or(0))
                    .with_current_leader(
                        AckLeader::default()
                            .with_leader_id(broker.config.node_id)
                            .with_leader_epoch(leader_epoch),
                    ),
            );
        }
        topics.push(
            ShareAcknowledgeTopicResponse::default()
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions),
        );
    }
    if let Some(partitions) = closed {
        broker
            .share
            .release_member(&group_id, &member_id, &partitions);
    }
    let response = ShareAcknowledgeResponse::default().with_responses(topics);
    Ok(encode_response(
        ApiKey::ShareAcknowledge,
        version,
        correlation_id,
        &response,
    ))
}
