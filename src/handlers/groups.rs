//! Consumer-group APIs: FindCoordinator, the classic membership protocol (JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup), committed offsets (OffsetCommit, OffsetFetch,
//! OffsetDelete) and group administration (DescribeGroups, ListGroups, DeleteGroups).
//! Each decodes its request, calls the group coordinator (`crate::coordinator`) and encodes
//! the answer at the request's version. JoinGroup and SyncGroup may wait for other members:
//! they answer through `Handled::Deferred`.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::ResponseError;

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as DescribeAssignment, DescribedGroup as ConsumerDescribedGroup,
    Member as ConsumerDescribedMember, TopicPartitions as DescribeTopicPartitions,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment as HeartbeatAssignment, TopicPartitions as HeartbeatTopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse,
};
use uuid::Uuid;

use crate::controller::image::MetadataImage;
use crate::coordinator::consumer_group::{
    regex_pattern, Assignment, HeartbeatRequest as ConsumerHeartbeat,
};
use crate::coordinator::group::{GroupState, JoinRequest, JoinResult, Reply, SyncResult};
use crate::coordinator::records::OffsetValue;
use crate::coordinator::transaction::TRANSACTION_STATE_TOPIC;
use crate::handlers::context::RequestContext;
use crate::handlers::Handled;
use crate::node::Node;
use crate::protocol::{decode, encode_response, Request, RequestError, ResponseFrame};
use crate::security::{Operation, Resource};

/// First version that looks up a batch of keys.
const BATCHED_VERSION: i16 = 4;
/// FindCoordinator key types.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;
/// Kafka's "authorized operations not requested" marker.
const OPERATIONS_OMITTED: i32 = i32::MIN;

fn code(error: Option<ResponseError>) -> i16 {
    error.map_or(0, |e| e.code())
}

fn str_bytes(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

/// Kafka's group check: `operation` on the group, else GROUP_AUTHORIZATION_FAILED.
fn group_allowed(
    context: &RequestContext,
    operation: Operation,
    group: &str,
) -> Result<(), ResponseError> {
    match context.authorized(operation, Resource::Group(group)) {
        true => Ok(()),
        false => Err(ResponseError::GroupAuthorizationFailed),
    }
}

fn respond<T: Encodable>(request: &Request, api_key: ApiKey, body: &T) -> ResponseFrame {
    encode_response(
        api_key,
        request.version,
        request.header.correlation_id,
        body,
    )
}

/// Where a key's coordinator is: the live leader of the key's partition of the
/// coordinator's internal topic (created on first use), as Kafka places coordinators.
fn coordinator_for(
    broker: &Node,
    context: &RequestContext,
    key_type: i8,
    key: &str,
) -> (Option<ResponseError>, &'static str, BrokerId, StrBytes, i32) {
    let unavailable = |error: ResponseError, message| {
        (Some(error), message, BrokerId(-1), StrBytes::default(), -1)
    };
    // Kafka: DESCRIBE on the group or the transactional id the key names.
    match key_type {
        KEY_TYPE_GROUP if !context.authorized(Operation::Describe, Resource::Group(key)) => {
            return unavailable(
                ResponseError::GroupAuthorizationFailed,
                "Not authorized to access the group.",
            )
        }
        KEY_TYPE_TRANSACTION
            if !context.authorized(Operation::Describe, Resource::TransactionalId(key)) =>
        {
            return unavailable(
                ResponseError::TransactionalIdAuthorizationFailed,
                "Transactional Id authorization failed.",
            )
        }
        _ => {}
    }
    let (topic, partition) = match key_type {
        KEY_TYPE_GROUP => match broker.groups.ensure_offsets_topic(broker) {
            Ok(count) => (
                crate::coordinator::OFFSETS_TOPIC,
                crate::coordinator::records::partition_for(key, count),
            ),
            Err(error) => return unavailable(error, "The coordinator is not available."),
        },
        KEY_TYPE_TRANSACTION if key.is_empty() => {
            return unavailable(
                ResponseError::InvalidRequest,
                "A transactional id must not be empty.",
            )
        }
        KEY_TYPE_TRANSACTION => match broker.transactions.ensure_ready(broker) {
            Ok(()) => (
                TRANSACTION_STATE_TOPIC,
                broker.transactions.state_partition(key),
            ),
            Err(error) => return unavailable(error.error, "The coordinator is not available."),
        },
        _ => {
            return unavailable(
                ResponseError::InvalidRequest,
                "Unknown coordinator key type.",
            )
        }
    };
    let image = broker.image();
    let leader = image
        .topics
        .get(topic)
        .and_then(|t| t.partitions.get(&partition))
        .map_or(-1, |p| image.live_leader(p));
    let endpoint = image
        .brokers
        .get(&leader)
        .and_then(|b| b.endpoint_for(&context.listener).cloned());
    match endpoint {
        Some(endpoint) => (
            None,
            "",
            BrokerId(leader),
            str_bytes(endpoint.host),
            i32::from(endpoint.port),
        ),
        None => unavailable(
            ResponseError::CoordinatorNotAvailable,
            "The coordinator is not available.",
        ),
    }
}

pub fn find_coordinator(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: FindCoordinatorRequest = decode(&mut request.body, version)?;
    let key_type = if version >= 1 {
        body.key_type
    } else {
        KEY_TYPE_GROUP
    };
    let mut response = FindCoordinatorResponse::default();
    if version >= BATCHED_VERSION {
        let coordinators = body
            .coordinator_keys
            .iter()
            .map(|key| {
                let (error, message, node_id, host, port) =
                    coordinator_for(broker, context, key_type, key.as_str());
                Coordinator::default()
                    .with_key(key.clone())
                    .with_node_id(node_id)
                    .with_host(host)
                    .with_port(port)
                    .with_error_code(code(error))
                    .with_error_message(error.map(|_| StrBytes::from_static_str(message)))
            })
            .collect();
        response = response.with_coordinators(coordinators);
    } else {
        let (error, message, node_id, host, port) =
            coordinator_for(broker, context, key_type, body.key.as_str());
        response = response
            .with_error_code(code(error))
            .with_node_id(node_id)
            .with_host(host)
            .with_port(port);
        if version >= 1 {
            response =
                response.with_error_message(error.map(|_| StrBytes::from_static_str(message)));
        }
    }
    Ok(respond(&request, ApiKey::FindCoordinator, &response))
}

fn join_response(result: JoinResult, version: i16) -> JoinGroupResponse {
    // Before v7 the protocol name is not nullable.
    let protocol_name = match (result.protocol_name, version >= 7) {
        (Some(name), _) => Some(str_bytes(name)),
        (None, true) => None,
        (None, false) => Some(StrBytes::default()),
    };
    JoinGroupResponse::default()
        .with_error_code(code(result.error))
        .with_generation_id(result.generation_id)
        .with_protocol_type(result.protocol_type.map(str_bytes))
        .with_protocol_name(protocol_name)
        .with_leader(str_bytes(result.leader))
        .with_skip_assignment(result.skip_assignment && version >= 9)
        .with_member_id(str_bytes(result.member_id))
        .with_members(
            result
                .members
                .into_iter()
                .map(|(member_id, instance, metadata)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(member_id))
                        .with_group_instance_id(instance.filter(|_| version >= 5).map(str_bytes))
                        .with_metadata(metadata)
                })
                .collect(),
        )
}

/// Turns a coordinator reply into a response now or a deferred one.
fn reply_with<T: Send + 'static, B: Encodable + Send + 'static>(
    request: &Request,
    api_key: ApiKey,
    reply: Reply<T>,
    on_drop: T,
    to_body: impl Fn(T) -> B + Send + 'static,
) -> Handled {
    match reply {
        Reply::Now(result) => Handled::Response(respond(request, api_key, &to_body(result))),
        Reply::Wait(receiver) => {
            let version = request.version;
            let correlation_id = request.header.correlation_id;
            Handled::Deferred(Box::pin(async move {
                // A dropped sender means the member was removed without an answer.
                let result = receiver.await.unwrap_or(on_drop);
                Some(encode_response(
                    api_key,
                    version,
                    correlation_id,
                    &to_body(result),
                ))
            }))
        }
    }
}

pub fn join_group(
    broker: &Arc<Node>,
    context: &RequestContext,
    mut request: Request,
) -> Result<Handled, RequestError> {
    let version = request.version;
    let body: JoinGroupRequest = decode(&mut request.body, version)?;
    if let Err(error) = group_allowed(context, Operation::Read, body.group_id.as_str()) {
        let result = JoinResult::error(error, body.member_id.as_str());
        return Ok(Handled::Response(respond(
            &request,
            ApiKey::JoinGroup,
            &join_response(result, version),
        )));
    }
    let join = JoinRequest {
        member_id: body.member_id.to_string(),
        group_instance_id: body.group_instance_id.map(|s| s.to_string()),
        client_id: request
            .header
            .client_id
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default(),
        client_host: context.client_host(),
        session_timeout_ms: body.session_timeout_ms,
        // v0 has no rebalance timeout: it is the session timeout.
        rebalance_timeout_ms: if version >= 1 {
            body.rebalance_timeout_ms
        } else {
            body.session_timeout_ms
        },
        protocol_type: body.protocol_type.to_string(),
        protocols: body
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let member_id = join.member_id.clone();
    let reply = broker
        .groups
        .join(broker.as_ref(), body.group_id.as_str(), join);
    Ok(reply_with(
        &request,
        ApiKey::JoinGroup,
        reply,
        JoinResult::error(ResponseError::UnknownMemberId, &member_id),
        move |result| join_response(result, version),
    ))
}

fn sync_response(result: SyncResult) -> SyncGroupResponse {
    SyncGroupResponse::default()
        .with_error_code(code(result.error))
        .with_protocol_type(result.protocol_type.map(str_bytes))
        .with_protocol_name(result.protocol_name.map(str_bytes))
        .with_assignment(result.assignment)
}

pub fn sync_group(
    broker: &Arc<Node>,
    context: &RequestContext,
    mut request: Request,
) -> Result<Handled, RequestError> {
    let version = request.version;
    let body: SyncGroupRequest = decode(&mut request.body, version)?;
    if let Err(error) = group_allowed(context, Operation::Read, body.group_id.as_str()) {
        return Ok(Handled::Response(respond(
            &request,
            ApiKey::SyncGroup,
            &sync_response(SyncResult::error(error)),
        )));
    }
    let assignments: Vec<(String, Bytes)> = body
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    let reply = broker.groups.sync(
        broker.as_ref(),
        body.group_id.as_str(),
        body.generation_id,
        body.member_id.as_str(),
        body.group_instance_id.as_deref(),
        body.protocol_type.as_deref(),
        body.protocol_name.as_deref(),
        assignments,
    );
    Ok(reply_with(
        &request,
        ApiKey::SyncGroup,
        reply,
        SyncResult::error(ResponseError::UnknownMemberId),
        sync_response,
    ))
}

pub fn heartbeat(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let body: HeartbeatRequest = decode(&mut request.body, request.version)?;
    let error = match group_allowed(context, Operation::Read, body.group_id.as_str()) {
        Err(error) => Some(error),
        Ok(()) => broker.groups.heartbeat(
            body.group_id.as_str(),
            body.generation_id,
            body.member_id.as_str(),
            body.group_instance_id.as_deref(),
        ),
    };
    let response = HeartbeatResponse::default().with_error_code(code(error));
    Ok(respond(&request, ApiKey::Heartbeat, &response))
}

pub fn leave_group(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: LeaveGroupRequest = decode(&mut request.body, version)?;
    let identities: Vec<(String, Option<String>)> = if version >= 3 {
        body.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(body.member_id.to_string(), None)]
    };
    let response =
        match group_allowed(context, Operation::Read, body.group_id.as_str()).and_then(|()| {
            broker
                .groups
                .leave(broker, body.group_id.as_str(), &identities)
        }) {
            Err(error) => LeaveGroupResponse::default().with_error_code(error.code()),
            Ok(results) if version < 3 => {
                LeaveGroupResponse::default().with_error_code(code(results[0]))
            }
            Ok(results) => LeaveGroupResponse::default().with_members(
                identities
                    .into_iter()
                    .zip(results)
                    .map(|((member_id, instance), error)| {
                        MemberResponse::default()
                            .with_member_id(str_bytes(member_id))
                            .with_group_instance_id(instance.map(str_bytes))
                            .with_error_code(code(error))
                    })
                    .collect(),
            ),
        };
    Ok(respond(&request, ApiKey::LeaveGroup, &response))
}

pub fn offset_commit(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: OffsetCommitRequest = decode(&mut request.body, version)?;
    let topics: Vec<(String, Vec<(i32, i64, i32, Option<String>)>)> = body
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    (
                        p.partition_index,
                        p.committed_offset,
                        if version >= 6 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        p.committed_metadata.as_ref().map(|m| m.to_string()),
                    )
                })
                .collect();
            (topic.name.to_string(), partitions)
        })
        .collect();
    // Kafka: READ on the group (else every partition fails), READ on each topic (else its
    // partitions fail with TOPIC_AUTHORIZATION_FAILED and only the others are committed).
    let topic_allowed: Vec<bool> = topics
        .iter()
        .map(|(name, _)| context.authorized(Operation::Read, Resource::Topic(name)))
        .collect();
    let allowed_topics: Vec<_> = topics
        .iter()
        .zip(&topic_allowed)
        .filter(|(_, allowed)| **allowed)
        .map(|(topic, _)| topic.clone())
        .collect();
    let outcome = group_allowed(context, Operation::Read, body.group_id.as_str()).and_then(|()| {
        broker.groups.commit_offsets(
            broker,
            body.group_id.as_str(),
            body.generation_id_or_member_epoch,
            body.member_id.as_str(),
            body.group_instance_id.as_deref(),
            &allowed_topics,
        )
    });
    let mut allowed_index = 0usize;
    let response_topics = topics
        .iter()
        .zip(topic_allowed)
        .map(|((name, partitions), allowed)| {
            let topic_index = allowed_index;
            if allowed {
                allowed_index += 1;
            }
            let partitions = partitions
                .iter()
                .enumerate()
                .map(|(partition_index, (partition, ..))| {
                    let error = match &outcome {
                        Err(error) => Some(*error),
                        Ok(_) if !allowed => Some(ResponseError::TopicAuthorizationFailed),
                        Ok(results) => results[topic_index][partition_index],
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(*partition)
                        .with_error_code(code(error))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(TopicName(str_bytes(name.clone())))
                .with_partitions(partitions)
        })
        .collect();
    let response = OffsetCommitResponse::default().with_topics(response_topics);
    Ok(respond(&request, ApiKey::OffsetCommit, &response))
}

type FetchedTopics = Vec<(String, Vec<(i32, Option<OffsetValue>)>)>;

/// The committed offsets of topics the principal may DESCRIBE (Kafka leaves the others out).
fn describable(context: &RequestContext, fetched: FetchedTopics) -> FetchedTopics {
    fetched
        .into_iter()
        .filter(|(name, _)| context.authorized(Operation::Describe, Resource::Topic(name)))
        .collect()
}

/// (offset, leader epoch, metadata, error code) of one partition in an OffsetFetch answer;
/// an `unstable` partition (see [`unstable`]) has no offset and UNSTABLE_OFFSET_COMMIT.
fn fetched_partition(value: Option<OffsetValue>, unstable: bool) -> (i64, i32, StrBytes, i16) {
    match value {
        _ if unstable => (
            -1,
            -1,
            StrBytes::default(),
            code(Some(ResponseError::UnstableOffsetCommit)),
        ),
        Some(v) => (v.offset, v.leader_epoch, str_bytes(v.metadata), 0),
        None => (-1, -1, StrBytes::default(), 0),
    }
}

/// KIP-447: with `require_stable` (read_committed consumers ask for it), a partition whose
/// offset an unfinished transaction has written answers UNSTABLE_OFFSET_COMMIT, without an
/// offset, and the client retries: else a new member could start from the offset that the
/// transaction is about to replace, and process those records twice.
fn unstable(broker: &Node, require_stable: bool, group: &str, topic: &str, partition: i32) -> bool {
    let unstable = require_stable
        && (broker
            .transactions
            .has_staged_offset(group, topic, partition)
            || broker.groups.has_undecided_offset(group, topic, partition));
    if unstable {
        tracing::debug!(
            group,
            topic,
            partition,
            "OffsetFetch: unstable offset commit"
        );
    }
    unstable
}

pub fn offset_fetch(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: OffsetFetchRequest = decode(&mut request.body, version)?;
    let mut response = OffsetFetchResponse::default();
    if version >= 8 {
        let groups = body
            .groups
            .into_iter()
            .map(|group| {
                let topics = group.topics.map(|topics| {
                    topics
                        .into_iter()
                        .map(|t| (t.name.to_string(), t.partition_indexes))
                        .collect()
                });
                let require_stable = body.require_stable;
                let group_id = group.group_id.to_string();
                let result = group_allowed(context, Operation::Describe, &group_id)
                    .and_then(|()| {
                        broker
                            .groups
                            .check_coordinator(broker, group.group_id.as_str())
                    })
                    .and_then(|()| {
                        broker.groups.fetch_offsets(
                            group.group_id.as_str(),
                            (group.member_id.as_deref(), group.member_epoch),
                            topics,
                        )
                    })
                    .map(|fetched| describable(context, fetched));
                let (error, fetched): (Option<ResponseError>, FetchedTopics) = match result {
                    Ok(fetched) => (None, fetched),
                    Err(error) => (Some(error), Vec::new()),
                };
                OffsetFetchResponseGroup::default()
                    .with_group_id(group.group_id)
                    .with_error_code(code(error))
                    .with_topics(
                        fetched
                            .into_iter()
                            .map(|(name, partitions)| {
                                let partitions = partitions
                                    .into_iter()
                                    .map(|(p, value)| {
                                        let unstable =
                                            unstable(broker, require_stable, &group_id, &name, p);
                                        let (offset, epoch, metadata, error) =
                                            fetched_partition(value, unstable);
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(epoch)
                                            .with_metadata(Some(metadata))
                                            .with_error_code(error)
                                    })
                                    .collect();
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(str_bytes(name)))
                                    .with_partitions(partitions)
                            })
                            .collect(),
                    )
            })
            .collect();
        response = response.with_groups(groups);
    } else {
        let topics = body.topics.map(|topics| {
            topics
                .into_iter()
                .map(|t| (t.name.to_string(), t.partition_indexes))
                .collect()
        });
        let (error, fetched): (Option<ResponseError>, FetchedTopics) =
            match group_allowed(context, Operation::Describe, body.group_id.as_str())
                .and_then(|()| {
                    broker
                        .groups
                        .check_coordinator(broker, body.group_id.as_str())
                })
                .and_then(|()| {
                    broker
                        .groups
                        .fetch_offsets(body.group_id.as_str(), (None, -1), topics)
                })
                .map(|fetched| describable(context, fetched))
            {
                Ok(fetched) => (None, fetched),
                Err(error) => (Some(error), Vec::new()),
            };
        response = response
            .with_error_code(if version >= 2 { code(error) } else { 0 })
            .with_topics(
                fetched
                    .into_iter()
                    .map(|(name, partitions)| {
                        OffsetFetchResponseTopic::default()
                            .with_name(TopicName(str_bytes(name.clone())))
                            .with_partitions(
                                partitions
                                    .into_iter()
                                    .map(|(p, value)| {
                                        let group = body.group_id.as_str();
                                        let unstable =
                                            unstable(broker, body.require_stable, group, &name, p);
                                        let (offset, epoch, metadata, partition_error) =
                                            fetched_partition(value, unstable);
                                        OffsetFetchResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(epoch)
                                            .with_metadata(Some(metadata))
                                            .with_error_code(match partition_error {
                                                0 if version < 2 => code(error),
                                                other => other,
                                            })
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
    }
    Ok(respond(&request, ApiKey::OffsetFetch, &response))
}

pub fn offset_delete(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let body: OffsetDeleteRequest = decode(&mut request.body, request.version)?;
    let topics: Vec<(String, Vec<i32>)> = body
        .topics
        .iter()
        .map(|t| {
            (
                t.name.to_string(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    let response =
        match group_allowed(context, Operation::Delete, body.group_id.as_str()).and_then(|()| {
            broker
                .groups
                .delete_offsets(broker, body.group_id.as_str(), &topics)
        }) {
            Err(error) => OffsetDeleteResponse::default().with_error_code(error.code()),
            Ok(results) => OffsetDeleteResponse::default().with_topics(
                topics
                    .into_iter()
                    .zip(results)
                    .map(|((name, partitions), errors)| {
                        OffsetDeleteResponseTopic::default()
                            .with_name(TopicName(str_bytes(name)))
                            .with_partitions(
                                partitions
                                    .into_iter()
                                    .zip(errors)
                                    .map(|(p, error)| {
                                        OffsetDeleteResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_error_code(code(error))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        };
    Ok(respond(&request, ApiKey::OffsetDelete, &response))
}

pub fn describe_groups(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: DescribeGroupsRequest = decode(&mut request.body, version)?;
    let groups = body
        .groups
        .into_iter()
        .map(|group_id| {
            let described = DescribedGroup::default()
                .with_group_id(group_id.clone())
                .with_authorized_operations(OPERATIONS_OMITTED);
            if group_allowed(context, Operation::Describe, group_id.as_str()).is_err() {
                return described.with_error_code(ResponseError::GroupAuthorizationFailed.code());
            }
            match broker.groups.describe(group_id.as_str()) {
                None if version >= 6 => described
                    .with_group_state(str_bytes(GroupState::Dead.name()))
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(str_bytes(format!(
                        "Group {} not found.",
                        group_id.as_str()
                    )))),
                None => described.with_group_state(str_bytes(GroupState::Dead.name())),
                Some(description) => described
                    .with_group_state(str_bytes(description.state.name()))
                    .with_protocol_type(str_bytes(description.protocol_type))
                    .with_protocol_data(str_bytes(description.protocol_name))
                    .with_members(
                        description
                            .members
                            .into_iter()
                            .map(
                                |(member_id, instance, client_id, host, metadata, assignment)| {
                                    DescribedGroupMember::default()
                                        .with_member_id(str_bytes(member_id))
                                        .with_group_instance_id(
                                            instance.filter(|_| version >= 4).map(str_bytes),
                                        )
                                        .with_client_id(str_bytes(client_id))
                                        .with_client_host(str_bytes(host))
                                        .with_member_metadata(metadata)
                                        .with_member_assignment(assignment)
                                },
                            )
                            .collect(),
                    ),
            }
        })
        .collect();
    let response = DescribeGroupsResponse::default().with_groups(groups);
    Ok(respond(&request, ApiKey::DescribeGroups, &response))
}

pub fn list_groups(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: ListGroupsRequest = decode(&mut request.body, version)?;
    let states: Vec<String> = body
        .states_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let types: Vec<String> = body
        .types_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    // Kafka: DESCRIBE on the cluster lists every group, else those the principal may
    // DESCRIBE.
    let all_groups = context.authorized(Operation::Describe, Resource::Cluster);
    // Share groups live in their own coordinator (`coordinator::share_group`), listed as
    // Kafka lists them: protocol type and group type "share".
    let share_groups: Vec<(String, String, &'static str, &'static str)> = {
        let share_groups = broker.share_groups.lock();
        share_groups
            .group_ids()
            .into_iter()
            .filter_map(|group_id| {
                let state = share_groups.get(&group_id)?.state_name();
                Some((group_id, "share".to_string(), state, "share"))
            })
            .collect()
    };
    let groups = broker
        .groups
        .list()
        .into_iter()
        .chain(
            share_groups
                .into_iter()
                .filter(|(group_id, ..)| broker.groups.check_coordinator(broker, group_id).is_ok()),
        )
        .filter(|(group_id, ..)| {
            all_groups || context.authorized(Operation::Describe, Resource::Group(group_id))
        })
        .filter(|(_, _, state, _)| {
            states.is_empty() || states.contains(&state.to_ascii_lowercase())
        })
        .filter(|(_, _, _, kind)| types.is_empty() || types.iter().any(|t| t == kind))
        .map(|(group_id, protocol_type, state, kind)| {
            ListedGroup::default()
                .with_group_id(GroupId(str_bytes(group_id)))
                .with_protocol_type(str_bytes(protocol_type))
                .with_group_state(str_bytes(state))
                .with_group_type(StrBytes::from_static_str(kind))
        })
        .collect();
    let response = ListGroupsResponse::default().with_groups(groups);
    Ok(respond(&request, ApiKey::ListGroups, &response))
}

pub fn delete_groups(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let body: DeleteGroupsRequest = decode(&mut request.body, request.version)?;
    let results = body
        .groups_names
        .into_iter()
        .map(|group_id| {
            let error = group_allowed(context, Operation::Delete, group_id.as_str())
                .and_then(|()| broker.groups.delete_group(broker, group_id.as_str()))
                .err();
            DeletableGroupResult::default()
                .with_group_id(group_id)
                .with_error_code(code(error))
        })
        .collect();
    let response = DeleteGroupsResponse::default().with_results(results);
    Ok(respond(&request, ApiKey::DeleteGroups, &response))
}

fn assignment_ids(image: &MetadataImage, assignment: &Assignment) -> Vec<(Uuid, String, Vec<i32>)> {
    assignment
        .iter()
        .filter_map(|(topic, partitions)| {
            let id = image.topics.get(topic)?.id;
            Some((id, topic.clone(), partitions.iter().copied().collect()))
        })
        .collect()
}

pub fn consumer_group_heartbeat(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: ConsumerGroupHeartbeatRequest = decode(&mut request.body, version)?;
    let image = broker.image();
    // v0: the coordinator names a joining member; v1 (KIP-1082): the client does.
    let member_id = if body.member_id.is_empty() && body.member_epoch == 0 && version == 0 {
        uuid::Uuid::new_v4().to_string()
    } else {
        body.member_id.to_string()
    };
    let owned = body.topic_partitions.as_ref().map(|topics| {
        let mut owned = Assignment::new();
        for topic in topics {
            if let Some(found) = image.topic_by_id(&topic.topic_id) {
                owned
                    .entry(found.name.clone())
                    .or_default()
                    .extend(topic.partitions.iter().copied());
            }
        }
        owned
    });
    let subscribed_topics = body
        .subscribed_topic_names
        .as_ref()
        .map(|names| names.iter().map(|n| n.to_string()).collect());
    let heartbeat = ConsumerHeartbeat {
        member_id,
        member_epoch: body.member_epoch,
        instance_id: body.instance_id.as_ref().map(|s| s.to_string()),
        rack_id: body.rack_id.as_ref().map(|s| s.to_string()),
        client_id: request
            .header
            .client_id
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default(),
        client_host: context.client_host(),
        rebalance_timeout_ms: body.rebalance_timeout_ms,
        subscribed_topics,
        subscribed_regex: body.subscribed_topic_regex.as_ref().map(|s| s.to_string()),
        server_assignor: body.server_assignor.as_ref().map(|s| s.to_string()),
        owned,
    };
    // Kafka: READ on the group, DESCRIBE on every subscribed topic.
    let denied_topic = heartbeat
        .subscribed_topics
        .as_ref()
        .and_then(|topics: &Vec<String>| {
            topics
                .iter()
                .find(|t| !context.authorized(Operation::Describe, Resource::Topic(t)))
                .cloned()
        });
    let outcome = if group_allowed(context, Operation::Read, body.group_id.as_str()).is_err() {
        Err((
            ResponseError::GroupAuthorizationFailed,
            "The group authorization failed.".to_string(),
        ))
    } else if let Some(topic) = denied_topic {
        Err((
            ResponseError::TopicAuthorizationFailed,
            format!("Not authorized to access topics: [{topic}]"),
        ))
    } else {
        broker
            .groups
            .consumer_heartbeat(broker, body.group_id.as_str(), heartbeat)
    };
    let response = match outcome {
        Err((error, message)) => ConsumerGroupHeartbeatResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(message))),
        Ok(result) => ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(str_bytes(result.member_id)))
            .with_member_epoch(result.member_epoch)
            .with_heartbeat_interval_ms(broker.groups.settings().consumer_heartbeat_interval_ms)
            .with_assignment(result.assignment.map(|assignment| {
                HeartbeatAssignment::default().with_topic_partitions(
                    assignment_ids(&image, &assignment)
                        .into_iter()
                        .map(|(id, _, partitions)| {
                            HeartbeatTopicPartitions::default()
                                .with_topic_id(id)
                                .with_partitions(partitions)
                        })
                        .collect(),
                )
            })),
    };
    Ok(respond(&request, ApiKey::ConsumerGroupHeartbeat, &response))
}

fn describe_assignment(image: &MetadataImage, assignment: &Assignment) -> DescribeAssignment {
    DescribeAssignment::default().with_topic_partitions(
        assignment_ids(image, assignment)
            .into_iter()
            .map(|(id, name, partitions)| {
                DescribeTopicPartitions::default()
                    .with_topic_id(id)
                    .with_topic_name(TopicName(str_bytes(name)))
                    .with_partitions(partitions)
            })
            .collect(),
    )
}

pub fn consumer_group_describe(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let body: ConsumerGroupDescribeRequest = decode(&mut request.body, request.version)?;
    let image = broker.image();
    let groups = body
        .group_ids
        .into_iter()
        .map(|group_id| {
            let described = ConsumerDescribedGroup::default()
                .with_group_id(group_id.clone())
                .with_authorized_operations(OPERATIONS_OMITTED);
            if group_allowed(context, Operation::Describe, group_id.as_str()).is_err() {
                return described.with_error_code(ResponseError::GroupAuthorizationFailed.code());
            }
            let outcome = broker.groups.consumer_describe(group_id.as_str(), |group| {
                let members = group
                    .members
                    .values()
                    .map(|m| {
                        let target = group.target.get(&m.member_id).cloned().unwrap_or_default();
                        ConsumerDescribedMember::default()
                            .with_member_id(str_bytes(m.member_id.clone()))
                            .with_instance_id(m.instance_id.clone().map(str_bytes))
                            .with_rack_id(m.rack_id.clone().map(str_bytes))
                            .with_member_epoch(m.member_epoch)
                            .with_client_id(str_bytes(m.client_id.clone()))
                            .with_client_host(str_bytes(m.client_host.clone()))
                            .with_subscribed_topic_regex(
                                m.subscribed_regex
                                    .as_ref()
                                    .map(|r| str_bytes(regex_pattern(r))),
                            )
                            .with_subscribed_topic_names(
                                m.subscribed_topics
                                    .iter()
                                    .map(|t| TopicName(str_bytes(t.clone())))
                                    .collect(),
                            )
                            .with_assignment(describe_assignment(&image, &m.assigned))
                            .with_target_assignment(describe_assignment(&image, &target))
                            .with_member_type(-1)
                    })
                    .collect();
                described
                    .clone()
                    .with_group_state(StrBytes::from_static_str(group.state_name()))
                    .with_group_epoch(group.group_epoch)
                    .with_assignment_epoch(group.assignment_epoch)
                    .with_assignor_name(str_bytes(group.assignor_name.clone()))
                    .with_members(members)
            });
            match outcome {
                Ok(described) => described,
                Err((error, message)) => described
                    .with_error_code(error.code())
                    .with_error_message(Some(str_bytes(message))),
            }
        })
        .collect();
    let response = ConsumerGroupDescribeResponse::default().with_groups(groups);
    Ok(respond(&request, ApiKey::ConsumerGroupDescribe, &response))
}
