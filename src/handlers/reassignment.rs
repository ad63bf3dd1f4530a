//! Moving partitions and leaders: ElectLeaders (API 43), AlterPartitionReassignments (API 45)
//! and ListPartitionReassignments (API 46). The active controller decides and commits
//! (`controller::election`, `controller::reassignment`); any other node checks the caller
//! and forwards the request to it as the same Kafka request. Kafka's checks: ALTER on the
//! cluster for the two that change metadata, DESCRIBE on the cluster for the listing.

use std::sync::Arc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ApiKey, BrokerId,
    ElectLeadersRequest, ElectLeadersResponse, ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::controller::election::{Elected, ElectionType};
use crate::controller::reassignment::{self, Reassign};
use crate::controller::ApiError;
use crate::handlers::context::RequestContext;
use crate::handlers::quorum::forward_to_controller;
use crate::handlers::Handled;
use crate::node::Node;
use crate::protocol::{decode, encode_response, Request, RequestError, ResponseFrame};
use crate::security::{Operation, Resource};

fn str_bytes(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

fn cluster_denied() -> ApiError {
    ApiError::new(
        ResponseError::ClusterAuthorizationFailed,
        "Cluster authorization failed.",
    )
}

/// Results grouped by topic, in the order topics first appear.
fn by_topic<T>(items: Vec<(String, T)>) -> Vec<(String, Vec<T>)> {
    let mut grouped: Vec<(String, Vec<T>)> = Vec::new();
    for (topic, item) in items {
        match grouped.iter_mut().find(|(name, _)| *name == topic) {
            Some((_, list)) => list.push(item),
            None => grouped.push((topic, vec![item])),
        }
    }
    grouped
}

/// ElectLeaders: ALTER on the cluster, then the active controller elects.
pub fn elect_leaders(
    broker: &Arc<Node>,
    context: &Arc<RequestContext>,
    request: Request,
) -> Result<Handled, RequestError> {
    if !context.authorized(Operation::Alter, Resource::Cluster) {
        return elect_answer(request, Err(cluster_denied())).map(Handled::Response);
    }
    forward_to_controller(broker, context, request, |b, _, r| {
        elect_here(b, r).map(Handled::Response)
    })
}

fn elect_here(broker: &Node, request: Request) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: ElectLeadersRequest = decode(&mut request.body.clone(), version)?;
    // v0 has no election type: preferred.
    let code = if version >= 1 { body.election_type } else { 0 };
    let Some(election_type) = ElectionType::from_code(code) else {
        return elect_answer(
            request,
            Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("Unknown election type {code}."),
            )),
        );
    };
    let partitions = body.topic_partitions.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|&p| (t.topic.0.to_string(), p)))
            .collect()
    });
    let outcome = broker.controller.elect_leaders(election_type, partitions);
    elect_answer(request, outcome)
}

/// The response: per partition when the controller answered, else the request-wide error
/// for every partition named (a null list names none).
fn elect_answer(
    mut request: Request,
    outcome: Result<Vec<Elected>, ApiError>,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: ElectLeadersRequest = decode(&mut request.body, version)?;
    let (error_code, results) = match outcome {
        Ok(results) => (0, results),
        Err(error) => {
            let named = body.topic_partitions.iter().flatten().flat_map(|t| {
                t.partitions.iter().map(|&partition| Elected {
                    topic: t.topic.0.to_string(),
                    partition,
                    outcome: Err(error.clone()),
                })
            });
            (error.error.code(), named.collect())
        }
    };
    let items = results
        .into_iter()
        .map(|result| {
            let mut partition = PartitionResult::default().with_partition_id(result.partition);
            if let Err(error) = result.outcome {
                partition = partition
                    .with_error_code(error.error.code())
                    .with_error_message(Some(str_bytes(error.message)));
            }
            (result.topic, partition)
        })
        .collect();
    let replica_election_results = by_topic(items)
        .into_iter()
        .map(|(topic, partitions)| {
            ReplicaElectionResult::default()
                .with_topic(TopicName(str_bytes(topic)))
                .with_partition_result(partitions)
        })
        .collect();
    let mut response =
        ElectLeadersResponse::default().with_replica_election_results(replica_election_results);
    if version >= 1 {
        response = response.with_error_code(error_code);
    }
    Ok(encode_response(
        ApiKey::ElectLeaders,
        version,
        request.header.correlation_id,
        &response,
    ))
}

/// AlterPartitionReassignments: ALTER on the cluster, then the active controller records
/// (or cancels) the reassignments.
pub fn alter_partition_reassignments(
    broker: &Arc<Node>,
    context: &Arc<RequestContext>,
    request: Request,
) -> Result<Handled, RequestError> {
    if !context.authorized(Operation::Alter, Resource::Cluster) {
        return alter_answer(request, Err(cluster_denied())).map(Handled::Response);
    }
    forward_to_controller(broker, context, request, |b, _, r| {
        alter_here(b, r).map(Handled::Response)
    })
}

fn alter_here(broker: &Node, request: Request) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: AlterPartitionReassignmentsRequest = decode(&mut request.body.clone(), version)?;
    let requests: Vec<Reassign> = body
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| Reassign {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                target: p
                    .replicas
                    .as_ref()
                    .map(|ids| ids.iter().map(|id| id.0).collect()),
            })
        })
        .collect();
    // v0 has no such field: any replication factor (Kafka's default, true).
    let allow = version < 1 || body.allow_replication_factor_change;
    let outcome = broker
        .controller
        .alter_partition_reassignments(&requests, allow);
    alter_answer(request, outcome)
}

fn alter_answer(
    mut request: Request,
    outcome: Result<Vec<Result<(), ApiError>>, ApiError>,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: AlterPartitionReassignmentsRequest = decode(&mut request.body, version)?;
    let mut response = AlterPartitionReassignmentsResponse::default();
    if version >= 1 {
        response =
            response.with_allow_replication_factor_change(body.allow_replication_factor_change);
    }
    let mut outcomes = match outcome {
        Ok(outcomes) => outcomes.into_iter(),
        Err(error) => {
            // A request-wide refusal: only the top-level error, as Kafka's error response.
            let response = response
                .with_error_code(error.error.code())
                .with_error_message(Some(str_bytes(error.message)));
            return Ok(encode_response(
                ApiKey::AlterPartitionReassignments,
                version,
                request.header.correlation_id,
                &response,
            ));
        }
    };
    let responses = body
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let result = ReassignablePartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    match outcomes.next() {
                        Some(Err(error)) => result
                            .with_error_code(error.error.code())
                            .with_error_message(Some(str_bytes(error.message))),
                        Some(Ok(())) | None => result,
                    }
                })
                .collect();
            ReassignableTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    Ok(encode_response(
        ApiKey::AlterPartitionReassignments,
        version,
        request.header.correlation_id,
        &response.with_responses(responses),
    ))
}

/// ListPartitionReassignments: DESCRIBE on the cluster, answered by the active controller
/// (a node whose image lags would show a reassignment it has not seen yet as done).
pub fn list_partition_reassignments(
    broker: &Arc<Node>,
    context: &Arc<RequestContext>,
    request: Request,
) -> Result<Handled, RequestError> {
    if !context.authorized(Operation::Describe, Resource::Cluster) {
        let version = request.version;
        let error = cluster_denied();
        let response = ListPartitionReassignmentsResponse::default()
            .with_error_code(error.error.code())
            .with_error_message(Some(str_bytes(error.message)));
        return Ok(Handled::Response(encode_response(
            ApiKey::ListPartitionReassignments,
            version,
            request.header.correlation_id,
            &response,
        )));
    }
    forward_to_controller(broker, context, request, |b, _, r| {
        list_here(b, r).map(Handled::Response)
    })
}

fn list_here(broker: &Node, mut request: Request) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: ListPartitionReassignmentsRequest = decode(&mut request.body, version)?;
    let wanted: Option<Vec<(String, Vec<i32>)>> = body.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let ongoing = reassignment::ongoing(&broker.image(), wanted.as_deref());
    let ids = |list: &[i32]| list.iter().map(|&id| BrokerId(id)).collect::<Vec<_>>();
    let items = ongoing
        .into_iter()
        .map(|o| {
            let partition = OngoingPartitionReassignment::default()
                .with_partition_index(o.partition)
                .with_replicas(ids(&o.replicas))
                .with_adding_replicas(ids(&o.adding_replicas))
                .with_removing_replicas(ids(&o.removing_replicas));
            (o.topic, partition)
        })
        .collect();
    let topics = by_topic(items)
        .into_iter()
        .map(|(name, partitions)| {
            OngoingTopicReassignment::default()
                .with_name(TopicName(str_bytes(name)))
                .with_partitions(partitions)
        })
        .collect();
    Ok(encode_response(
        ApiKey::ListPartitionReassignments,
        version,
        request.header.correlation_id,
        &ListPartitionReassignmentsResponse::default().with_topics(topics),
    ))
}
