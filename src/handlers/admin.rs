//! Topic administration and cluster description: CreateTopics, DeleteTopics,
//! CreatePartitions, DescribeCluster. Changes go through the controller (metadata log).

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, DescribeClusterRequest,
    DescribeClusterResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::controller::image::TopicImage;
use crate::controller::{ApiError, NewTopic};
use crate::handlers::client_quotas::QuotaClient;
use crate::handlers::configs::topic_config_entries;
use crate::handlers::context::RequestContext;
use crate::node::Node;
use crate::protocol::{decode, encode_response, Request, RequestError, ResponseFrame};
use crate::security::{Operation, Resource};

fn str_bytes(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

/// Whether every topic of a CreateTopics may be created (before forwarding it).
pub fn create_topics_authorized(_: &Node, context: &RequestContext, request: &Request) -> bool {
    let Ok(body) = decode::<CreateTopicsRequest>(&mut request.body.clone(), request.version) else {
        return true;
    };
    context.authorized(Operation::Create, Resource::Cluster)
        || body
            .topics
            .iter()
            .all(|t| context.authorized(Operation::Create, Resource::Topic(t.name.as_str())))
}

/// Whether every topic of a DeleteTopics may be deleted (before forwarding it).
pub fn delete_topics_authorized(
    broker: &Node,
    context: &RequestContext,
    request: &Request,
) -> bool {
    let Ok(body) = decode::<DeleteTopicsRequest>(&mut request.body.clone(), request.version) else {
        return true;
    };
    let image = broker.image();
    let by_name = body.topic_names.iter().map(|n| Some(n.0.to_string()));
    let by_state = body.topics.iter().map(|t| match &t.name {
        Some(name) => Some(name.0.to_string()),
        None => image.topic_by_id(&t.topic_id).map(|t| t.name.clone()),
    });
    by_name
        .chain(by_state)
        .flatten()
        .all(|name| context.authorized(Operation::Delete, Resource::Topic(&name)))
}

/// Whether every topic of a CreatePartitions may be altered (before forwarding it).
pub fn create_partitions_authorized(_: &Node, context: &RequestContext, request: &Request) -> bool {
    let Ok(body) = decode::<CreatePartitionsRequest>(&mut request.body.clone(), request.version)
    else {
        return true;
    };
    body.topics
        .iter()
        .all(|t| context.authorized(Operation::Alter, Resource::Topic(t.name.as_str())))
}

fn topic_denied() -> ApiError {
    ApiError::new(
        ResponseError::TopicAuthorizationFailed,
        "Authorization failed.",
    )
}

fn new_topic(
    topic: &kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> Result<NewTopic, ApiError> {
    let mut configs = BTreeMap::new();
    for config in &topic.configs {
        let value = config.value.as_ref().ok_or_else(|| {
            ApiError::new(
                ResponseError::InvalidConfig,
                format!(
                    "Null value not supported for topic config {}",
                    config.name.as_str()
                ),
            )
        })?;
        configs.insert(config.name.to_string(), value.to_string());
    }
    let assignments = topic
        .assignments
        .iter()
        .map(|a| {
            (
                a.partition_index,
                a.broker_ids.iter().map(|id| id.0).collect(),
            )
        })
        .collect();
    Ok(NewTopic {
        name: topic.name.0.to_string(),
        partition_count: topic.num_partitions,
        replication_factor: topic.replication_factor,
        assignments,
        configs,
    })
}

pub fn create_topics(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let quota_client = QuotaClient::of(context, &request);
    let body: CreateTopicsRequest = decode(&mut request.body, version)?;
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> = body
        .topics
        .iter()
        .map(|t| t.name.0.to_string())
        .filter(|name| !seen.insert(name.clone()))
        .collect();
    let cluster_create = context.authorized(Operation::Create, Resource::Cluster);
    let parsed: Vec<Result<NewTopic, ApiError>> = body
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            if duplicates.contains(&name) {
                return Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    format!("Create topics request from client contains duplicate topic {name}."),
                ));
            }
            // Kafka: CREATE on the cluster, or on the topic.
            if !cluster_create && !context.authorized(Operation::Create, Resource::Topic(&name)) {
                return Err(topic_denied());
            }
            new_topic(topic)
        })
        .collect();
    // KIP-599: each valid topic's partitions are charged to the client's controller mutation
    // quota, strictly from v6 (a topic beyond it is refused), permissively before. Kafka
    // charges once the controller's checks passed: an existing topic is left to answer
    // TOPIC_ALREADY_EXISTS uncharged, and a topic the controller then refuses is given back.
    let mut mutation = quota_client.mutation_quota(broker, version >= 6);
    let mut charged_partitions: Vec<u32> = vec![0; parsed.len()];
    let parsed: Vec<Result<NewTopic, ApiError>> = {
        let image = broker.image();
        parsed
            .into_iter()
            .zip(charged_partitions.iter_mut())
            .map(|(parsed, charged)| {
                let new = parsed?;
                if image.topics.contains_key(&new.name) {
                    return Ok(new);
                }
                let partitions = match new.partition_count {
                    -1 if new.assignments.is_empty() => broker.config.default_partition_count,
                    -1 => new.assignments.len() as i32,
                    count => count,
                }
                .max(0) as u32;
                quota_client.record_mutation(broker, &mut mutation, partitions)?;
                *charged = partitions;
                Ok(new)
            })
            .collect()
    };
    // All valid topics of the request in one go (one metadata commit for many topics).
    let valid: Vec<NewTopic> = parsed
        .iter()
        .filter_map(|p| p.as_ref().ok().cloned())
        .collect();
    // The request's timeout bounds the wait (Kafka's controller takes it for a deadline).
    let timeout = std::time::Duration::from_millis(body.timeout_ms.max(0) as u64);
    let mut created = broker
        .create_topics(&valid, body.validate_only, timeout)
        .into_iter();
    let outcomes: Vec<Result<NewTopic, ApiError>> = parsed
        .into_iter()
        .zip(charged_partitions)
        .map(|(parsed, charged)| {
            let new = parsed?;
            let outcome = created.next().expect("one outcome per valid topic");
            if outcome.is_err() && charged > 0 {
                broker.quotas.unrecord_mutation(&mutation, charged);
            }
            outcome.map(|()| new)
        })
        .collect();
    let topics = body
        .topics
        .iter()
        .zip(outcomes)
        .map(|(topic, outcome)| {
            let name = topic.name.0.to_string();
            let mut result = CreatableTopicResult::default()
                .with_name(topic.name.clone())
                .with_num_partitions(-1)
                .with_replication_factor(-1);
            match outcome {
                Ok(new) => {
                    let image = broker.image();
                    let created = image.topics.get(&name);
                    if version >= 7 {
                        result = result.with_topic_id(created.map_or(Uuid::nil(), |t| t.id));
                    }
                    if version >= 5 {
                        // validate_only leaves no topic behind; report what it would have been.
                        let preview = TopicImage {
                            name: name.clone(),
                            id: Uuid::nil(),
                            partitions: BTreeMap::new(),
                            configs: new.configs.clone(),
                        };
                        let topic_image = created.unwrap_or(&preview);
                        let partitions = match (created, new.partition_count) {
                            (Some(t), _) => t.partition_count(),
                            (None, -1) => broker.config.default_partition_count,
                            (None, count) => count.max(new.assignments.len() as i32),
                        };
                        let replication_factor = match (created, new.replication_factor) {
                            (Some(t), _) => {
                                t.partitions.get(&0).map_or(-1, |p| p.replicas.len() as i16)
                            }
                            (None, -1) => new.assignments.get(&0).map_or_else(
                                || {
                                    broker
                                        .config
                                        .properties
                                        .get_i64(crate::config::DEFAULT_REPLICATION_FACTOR)
                                        as i16
                                },
                                |replicas| replicas.len() as i16,
                            ),
                            (None, factor) => factor,
                        };
                        let configs = topic_config_entries(broker, &image, topic_image)
                            .into_iter()
                            .map(|e| {
                                CreatableTopicConfigs::default()
                                    .with_name(str_bytes(e.name))
                                    .with_value(Some(str_bytes(e.value)))
                                    .with_config_source(e.source)
                            })
                            .collect();
                        result = result
                            .with_num_partitions(partitions)
                            .with_replication_factor(replication_factor)
                            .with_configs(Some(configs));
                    }
                }
                Err(error) => {
                    result = result.with_error_code(error.error.code());
                    if version >= 1 {
                        result = result.with_error_message(Some(str_bytes(error.message)));
                    }
                }
            }
            result
        })
        .collect();
    let response = CreateTopicsResponse::default()
        .with_throttle_time_ms(quota_client.mutation_throttle_ms(&mutation))
        .with_topics(topics);
    Ok(encode_response(
        ApiKey::CreateTopics,
        version,
        request.header.correlation_id,
        &response,
    ))
}

pub fn delete_topics(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let quota_client = QuotaClient::of(context, &request);
    // KIP-599: a deleted topic's partitions count against the mutation quota, strictly
    // from v5.
    let mut mutation = quota_client.mutation_quota(broker, version >= 5);
    let body: DeleteTopicsRequest = decode(&mut request.body, version)?;
    // v6 names topics by name or id in `topics`; earlier versions by name in `topic_names`.
    let wanted: Vec<(Option<String>, Uuid)> = if version >= 6 {
        body.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        body.topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    let responses = wanted
        .into_iter()
        .map(|(name, id)| {
            let image = broker.image();
            let resolved = match &name {
                Some(name) => Ok((
                    name.clone(),
                    image.topics.get(name).map_or(Uuid::nil(), |t| t.id),
                )),
                None => image
                    .topic_by_id(&id)
                    .map(|t| (t.name.clone(), t.id))
                    .ok_or_else(|| {
                        ApiError::new(
                            ResponseError::UnknownTopicId,
                            format!("Topic id {id} does not exist."),
                        )
                    }),
            };
            // Kafka: DELETE on the topic.
            let resolved = resolved.and_then(|(name, id)| {
                match context.authorized(Operation::Delete, Resource::Topic(&name)) {
                    true => Ok((name, id)),
                    false => Err(topic_denied()),
                }
            });
            let outcome = resolved.and_then(|(name, id)| {
                let partitions = image
                    .topics
                    .get(&name)
                    .map_or(0, |t| t.partition_count().max(0) as u32);
                quota_client.record_mutation(broker, &mut mutation, partitions)?;
                let deleted = broker.delete_topic(&name);
                if deleted.is_err() {
                    broker.quotas.unrecord_mutation(&mutation, partitions);
                }
                deleted.map(|()| (name, id))
            });
            let mut result = DeletableTopicResult::default();
            match outcome {
                Ok((name, topic_id)) => {
                    result = result.with_name(Some(TopicName(str_bytes(name))));
                    if version >= 6 {
                        result = result.with_topic_id(topic_id);
                    }
                }
                Err(error) => {
                    result = result
                        .with_name(name.map(|n| TopicName(str_bytes(n))))
                        .with_error_code(error.error.code());
                    if version >= 6 {
                        result = result.with_topic_id(id);
                    }
                    if version >= 5 {
                        result = result.with_error_message(Some(str_bytes(error.message)));
                    }
                }
            }
            result
        })
        .collect();
    let response = DeleteTopicsResponse::default()
        .with_throttle_time_ms(quota_client.mutation_throttle_ms(&mutation))
        .with_responses(responses);
    Ok(encode_response(
        ApiKey::DeleteTopics,
        version,
        request.header.correlation_id,
        &response,
    ))
}

pub fn create_partitions(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let quota_client = QuotaClient::of(context, &request);
    // KIP-599: the partitions added count against the mutation quota, strictly from v3.
    let mut mutation = quota_client.mutation_quota(broker, version >= 3);
    let body: CreatePartitionsRequest = decode(&mut request.body, version)?;
    let mut seen = HashSet::new();
    let results = body
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let outcome = if !seen.insert(name.clone()) {
                Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    "Duplicate topic in request.",
                ))
            } else if !context.authorized(Operation::Alter, Resource::Topic(&name)) {
                // Kafka: ALTER on the topic.
                Err(topic_denied())
            } else {
                let assignments = topic.assignments.as_ref().map(|lists| {
                    lists
                        .iter()
                        .map(|a| a.broker_ids.iter().map(|id| id.0).collect())
                        .collect()
                });
                let added = broker
                    .image()
                    .topics
                    .get(&name)
                    .map_or(0, |t| (topic.count - t.partition_count()).max(0) as u32);
                quota_client
                    .record_mutation(broker, &mut mutation, added)
                    .and_then(|()| {
                        let created = broker.controller.create_partitions(
                            &name,
                            topic.count,
                            assignments,
                            body.validate_only,
                        );
                        if created.is_err() {
                            broker.quotas.unrecord_mutation(&mutation, added);
                        }
                        created
                    })
            };
            let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
            match outcome {
                Ok(()) => result,
                Err(error) => result
                    .with_error_code(error.error.code())
                    .with_error_message(Some(str_bytes(error.message))),
            }
        })
        .collect();
    let response = CreatePartitionsResponse::default()
        .with_throttle_time_ms(quota_client.mutation_throttle_ms(&mutation))
        .with_results(results);
    Ok(encode_response(
        ApiKey::CreatePartitions,
        version,
        request.header.correlation_id,
        &response,
    ))
}

pub fn describe_cluster(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: DescribeClusterRequest = decode(&mut request.body, version)?;
    const ENDPOINT_TYPE_BROKERS: i8 = 1;
    let mut response = DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(broker.config.node_id))
        .with_cluster_authorized_operations(i32::MIN)
        .with_brokers(
            crate::handlers::metadata::live_brokers(&broker.image(), &context.listener)
                .into_iter()
                .map(|(id, host, port, rack)| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(id))
                        .with_host(str_bytes(host))
                        .with_port(port)
                        .with_rack(rack.map(str_bytes))
                })
                .collect(),
        );
    if version >= 1 {
        if body.endpoint_type != ENDPOINT_TYPE_BROKERS {
            response = response
                .with_error_code(ResponseError::UnsupportedEndpointType.code())
                .with_error_message(Some(str_bytes("Only broker endpoints are served.")))
                .with_brokers(Vec::new());
        }
        response = response.with_endpoint_type(ENDPOINT_TYPE_BROKERS);
    }
    Ok(encode_response(
        ApiKey::DescribeCluster,
        version,
        request.header.correlation_id,
        &response,
    ))
}
