//! Share groups' offsets (KIP-932): DescribeShareGroupOffsets, AlterShareGroupOffsets and
//! DeleteShareGroupOffsets, what `kafka-share-groups --describe / --reset-offsets /
//! --delete-offsets` sends to the group's coordinator.
//!
//! A share group's "offset" for a partition is its share-partition start offset (SPSO):
//! every record below it is done with. Kafka keeps it in `__share_group_state` through the
//! share coordinator; dlog keeps share-partitions in memory in this node's `crate::share`
//! (see its module doc), so these APIs read and change that state directly. Changing it is
//! allowed only while the group has no members, as Kafka does, so no record is held.

use kafka_protocol::messages::alter_share_group_offsets_response::{
    AlterShareGroupOffsetsResponsePartition, AlterShareGroupOffsetsResponseTopic,
};
use kafka_protocol::messages::delete_share_group_offsets_response::DeleteShareGroupOffsetsResponseTopic;
use kafka_protocol::messages::describe_share_group_offsets_response::{
    DescribeShareGroupOffsetsResponseGroup, DescribeShareGroupOffsetsResponsePartition,
    DescribeShareGroupOffsetsResponseTopic,
};
use kafka_protocol::messages::{
    AlterShareGroupOffsetsRequest, AlterShareGroupOffsetsResponse, ApiKey,
    DeleteShareGroupOffsetsRequest, DeleteShareGroupOffsetsResponse,
    DescribeShareGroupOffsetsRequest, DescribeShareGroupOffsetsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::clock::now_ms;
use crate::controller::image::MetadataImage;
use crate::handlers::context::RequestContext;
use crate::handlers::share::expire_members;
use crate::node::Node;
use crate::protocol::{decode, encode_response, Request, RequestError, ResponseFrame};
use crate::security::{Operation, Resource};
use crate::share::ShareError;

/// The start offset Kafka reports for a share-partition the group never fetched
/// (`PartitionFactory.UNINITIALIZED_START_OFFSET`).
const UNINITIALIZED_START_OFFSET: i64 = -1;

fn str_bytes(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

fn topic_name(name: &str) -> TopicName {
    TopicName(str_bytes(name.to_string()))
}

/// The group-level checks every one of the three makes, in Kafka's order: the coordinator,
/// then the ACL on the group.
fn check_group(
    broker: &Node,
    context: &RequestContext,
    group_id: &str,
    operation: Operation,
) -> Result<(), ResponseError> {
    broker.groups.check_coordinator(broker, group_id)?;
    match context.authorized(operation, Resource::Group(group_id)) {
        true => Ok(()),
        false => Err(ResponseError::GroupAuthorizationFailed),
    }
}

/// The leader epoch reported with a start offset: the partition's current one, as the
/// share-partition is (re)read under it.
fn leader_epoch(image: &MetadataImage, topic: &str, partition: i32) -> i32 {
    image
        .topics
        .get(topic)
        .and_then(|t| t.partitions.get(&partition))
        .map(|p| p.leader_epoch)
        .unwrap_or(-1)
}

fn described_partition(
    partition: i32,
    outcome: Result<(i64, i32), ResponseError>,
) -> DescribeShareGroupOffsetsResponsePartition {
    let described =
        DescribeShareGroupOffsetsResponsePartition::default().with_partition_index(partition);
    match outcome {
        Ok((start_offset, leader_epoch)) => described
            .with_start_offset(start_offset)
            .with_leader_epoch(leader_epoch),
        Err(error) => described
            .with_start_offset(UNINITIALIZED_START_OFFSET)
            .with_leader_epoch(-1)
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(error.to_string()))),
    }
}

pub fn describe_share_group_offsets(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: DescribeShareGroupOffsetsRequest = decode(&mut request.body, version)?;
    let image = broker.image();
    // A member whose session ran out no longer counts (its records were released).
    expire_members(broker, now_ms());
    let mut groups = Vec::with_capacity(body.groups.len().min(1024));
    for group in &body.groups {
        let group_id = group.group_id.as_str();
        let described =
            DescribeShareGroupOffsetsResponseGroup::default().with_group_id(group.group_id.clone());
        if let Err(error) = check_group(broker, context, group_id, Operation::Describe) {
            groups.push(
                described
                    .with_error_code(error.code())
                    .with_error_message(Some(str_bytes(error.to_string()))),
            );
            continue;
        }
        if broker.share_groups.lock().get(group_id).is_none() {
            groups.push(
                described
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(str_bytes(format!("Group {group_id} not found.")))),
            );
            continue;
        }
        let started = broker.share.start_offsets(group_id);
        let mut topics: Vec<DescribeShareGroupOffsetsResponseTopic> = Vec::new();
        match &group.topics {
            // Every share-partition the group has state for, in the topics the principal
            // may describe (Kafka leaves the others out of the answer).
            None => {
                for (topic_id, partition, start_offset) in started {
                    let Some(topic) = image.topic_by_id(&topic_id) else {
                        continue;
                    };
                    if !context.authorized(Operation::Describe, Resource::Topic(&topic.name)) {
                        continue;
                    }
                    let partition = described_partition(
                        partition,
                        Ok((start_offset, leader_epoch(&image, &topic.name, partition))),
                    );
                    match topics.last_mut() {
                        Some(t) if t.topic_id == topic_id => t.partitions.push(partition),
                        _ => topics.push(
                            DescribeShareGroupOffsetsResponseTopic::default()
                                .with_topic_name(topic_name(&topic.name))
                                .with_topic_id(topic_id)
                                .with_partitions(vec![partition]),
                        ),
                    }
                }
            }
            Some(requested) => {
                for requested_topic in requested {
                    let name = requested_topic.topic_name.as_str();
                    let found = image.topics.get(name);
                    let topic_error =
                        if !context.authorized(Operation::Describe, Resource::Topic(name)) {
                            Some(ResponseError::TopicAuthorizationFailed)
                        } else if found.is_none() {
                            Some(ResponseError::UnknownTopicOrPartition)
                        } else {
                            None
                        };
                    let topic_id = found.map(|t| t.id).unwrap_or(Uuid::nil());
                    let partitions = requested_topic
                        .partitions
                        .iter()
                        .map(|&partition| {
                            let outcome = match (topic_error, found) {
                                (Some(error), _) => Err(error),
                                (None, Some(t)) if t.partitions.contains_key(&partition) => {
                                    Ok(started
                                        .iter()
                                        .find(|s| s.0 == topic_id && s.1 == partition)
                                        .map(|s| (s.2, leader_epoch(&image, name, partition)))
                                        // Never fetched: Kafka's uninitialized answer.
                                        .unwrap_or((UNINITIALIZED_START_OFFSET, -1)))
                                }
                                _ => Err(ResponseError::UnknownTopicOrPartition),
                            };
                            described_partition(partition, outcome)
                        })
                        .collect();
                    topics.push(
                        DescribeShareGroupOffsetsResponseTopic::default()
                            .with_topic_name(requested_topic.topic_name.clone())
                            .with_topic_id(topic_id)
                            .with_partitions(partitions),
                    );
                }
            }
        }
        groups.push(described.with_topics(topics));
    }
    Ok(encode_response(
        ApiKey::DescribeShareGroupOffsets,
        version,
        request.header.correlation_id,
        &DescribeShareGroupOffsetsResponse::default().with_groups(groups),
    ))
}

/// Every requested partition answered with one group-level error (Kafka's
/// `AlterShareGroupOffsetsRequest.getErrorResponse`): the top-level code and each
/// partition's, so a client reading either sees it.
fn alter_refused(
    body: &AlterShareGroupOffsetsRequest,
    image: &MetadataImage,
    error: ResponseError,
    message: String,
) -> AlterShareGroupOffsetsResponse {
    let responses = body
        .topics
        .iter()
        .map(|topic| {
            AlterShareGroupOffsetsResponseTopic::default()
                .with_topic_name(topic.topic_name.clone())
                .with_topic_id(
                    image
                        .topics
                        .get(topic.topic_name.as_str())
                        .map(|t| t.id)
                        .unwrap_or(Uuid::nil()),
                )
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .map(|p| {
                            AlterShareGroupOffsetsResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(error.code())
                                .with_error_message(Some(str_bytes(message.clone())))
                        })
                        .collect(),
                )
        })
        .collect();
    AlterShareGroupOffsetsResponse::default()
        .with_error_code(error.code())
        .with_error_message(Some(str_bytes(message)))
        .with_responses(responses)
}

fn group_error_message(error: ResponseError, group_id: &str) -> String {
    match error {
        ResponseError::NonEmptyGroup => format!(
            "The group {group_id} has active members: its offsets can change only while it is empty."
        ),
        ResponseError::GroupIdNotFound => format!("Group {group_id} not found."),
        other => other.to_string(),
    }
}

pub fn alter_share_group_offsets(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let correlation_id = request.header.correlation_id;
    let body: AlterShareGroupOffsetsRequest = decode(&mut request.body, version)?;
    let group_id = body.group_id.to_string();
    let image = broker.image();
    let respond = |response: &AlterShareGroupOffsetsResponse| {
        Ok(encode_response(
            ApiKey::AlterShareGroupOffsets,
            version,
            correlation_id,
            response,
        ))
    };
    // Kafka: READ on the group (resetting offsets is what a consumer of it may do), READ on
    // each topic.
    if let Err(error) = check_group(broker, context, &group_id, Operation::Read) {
        let message = group_error_message(error, &group_id);
        return respond(&alter_refused(&body, &image, error, message));
    }
    expire_members(broker, now_ms());
    // Held while the offsets change, so no member joins halfway (a heartbeat takes it
    // first); nothing under it waits.
    let mut share_groups = broker.share_groups.lock();
    if let Err(error) = share_groups.check_empty(&group_id, true) {
        let message = group_error_message(error, &group_id);
        return respond(&alter_refused(&body, &image, error, message));
    }
    let mut responses = Vec::with_capacity(body.topics.len().min(1024));
    for topic in &body.topics {
        let name = topic.topic_name.as_str();
        let found = image.topics.get(name);
        let topic_error = if !context.authorized(Operation::Read, Resource::Topic(name)) {
            Some(ResponseError::TopicAuthorizationFailed)
        } else if found.is_none() {
            Some(ResponseError::UnknownTopicOrPartition)
        } else {
            None
        };
        let topic_id = found.map(|t| t.id).unwrap_or(Uuid::nil());
        let mut partitions = Vec::with_capacity(topic.partitions.len().min(1024));
        for requested in &topic.partitions {
            let partition = requested.partition_index;
            let outcome = match (topic_error, found) {
                (Some(error), _) => Err(error),
                (None, Some(t)) if !t.partitions.contains_key(&partition) => {
                    Err(ResponseError::UnknownTopicOrPartition)
                }
                (None, None) => Err(ResponseError::UnknownTopicOrPartition),
                // Kafka's tool always sends a real offset (it resolves earliest, latest, a
                // time or a shift to one first): a negative one is a bad request.
                (None, Some(_)) if requested.start_offset < 0 => Err(ResponseError::InvalidRequest),
                (None, Some(_)) => {
                    // Kept within the log: below its start the records are gone, and past its
                    // end nothing could be fetched until the log caught up (what the
                    // share-partition would do itself on its next fetch).
                    let start_offset =
                        match broker.replicas.leader_partition(&image, name, partition) {
                            Ok(led) => requested
                                .start_offset
                                .min(led.high_watermark())
                                .max(led.log.offsets().log_start_offset),
                            Err(_) => requested.start_offset,
                        };
                    broker
                        .share
                        .reset_start_offset(&(group_id.clone(), topic_id, partition), start_offset)
                        .map_err(|ShareError::TooManySharePartitions| {
                            ResponseError::UnknownServerError
                        })
                }
            };
            let answered =
                AlterShareGroupOffsetsResponsePartition::default().with_partition_index(partition);
            partitions.push(match outcome {
                Ok(()) => answered,
                Err(error) => answered
                    .with_error_code(error.code())
                    .with_error_message(Some(str_bytes(error.to_string()))),
            });
        }
        responses.push(
            AlterShareGroupOffsetsResponseTopic::default()
                .with_topic_name(topic.topic_name.clone())
                .with_topic_id(topic_id)
                .with_partitions(partitions),
        );
    }
    drop(share_groups);
    respond(&AlterShareGroupOffsetsResponse::default().with_responses(responses))
}

pub fn delete_share_group_offsets(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let correlation_id = request.header.correlation_id;
    let body: DeleteShareGroupOffsetsRequest = decode(&mut request.body, version)?;
    let group_id = body.group_id.to_string();
    let image = broker.image();
    let respond = |response: &DeleteShareGroupOffsetsResponse| {
        Ok(encode_response(
            ApiKey::DeleteShareGroupOffsets,
            version,
            correlation_id,
            response,
        ))
    };
    let refused = |error: ResponseError| {
        DeleteShareGroupOffsetsResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(group_error_message(error, &group_id))))
    };
    // Kafka: DELETE on the group, READ on each topic.
    if let Err(error) = check_group(broker, context, &group_id, Operation::Delete) {
        return respond(&refused(error));
    }
    expire_members(broker, now_ms());
    // Held while the state goes, so no member joins halfway; nothing under it waits.
    let mut share_groups = broker.share_groups.lock();
    if let Err(error) = share_groups.check_empty(&group_id, false) {
        return respond(&refused(error));
    }
    let mut responses = Vec::with_capacity(body.topics.len().min(1024));
    for topic in &body.topics {
        let name = topic.topic_name.as_str();
        let found = image.topics.get(name);
        let error = if !context.authorized(Operation::Read, Resource::Topic(name)) {
            Some(ResponseError::TopicAuthorizationFailed)
        } else if found.is_none() {
            Some(ResponseError::UnknownTopicOrPartition)
        } else {
            None
        };
        let topic_id = found.map(|t| t.id).unwrap_or(Uuid::nil());
        if error.is_none() {
            broker.share.delete_topic(&group_id, topic_id);
        }
        let answered = DeleteShareGroupOffsetsResponseTopic::default()
            .with_topic_name(topic.topic_name.clone())
            .with_topic_id(topic_id);
        responses.push(match error {
            None => answered,
            Some(error) => answered
                .with_error_code(error.code())
                .with_error_message(Some(str_bytes(error.to_string()))),
        });
    }
    drop(share_groups);
    respond(&DeleteShareGroupOffsetsResponse::default().with_responses(responses))
}
