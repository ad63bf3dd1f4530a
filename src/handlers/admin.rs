//! Topic administration and cluster description: CreateTopics, DeleteTopics,
//! DescribeConfigs, DescribeCluster. Changes go through the controller (metadata log).

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, DescribeClusterRequest, DescribeClusterResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::broker::Broker;
use crate::config::{self, Kind, BROKER_PROPERTIES, TOPIC_CONFIGS};
use crate::controller::image::TopicImage;
use crate::controller::{ApiError, NewTopic};
use crate::protocol::{decode, encode_response, Request, RequestError, ResponseFrame};

/// Config sources (Kafka's `DescribeConfigsResponse.ConfigSource`).
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
/// Config resource types.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

fn str_bytes(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

/// Kafka's `ConfigType` code for a property kind.
fn config_type(kind: Kind) -> i8 {
    match kind {
        Kind::Boolean => 1,
        Kind::String | Kind::Choice(_) => 2,
        Kind::Int => 3,
        Kind::Long => 5,
        Kind::Double => 6,
        Kind::ChoiceList(_) => 7,
    }
}

/// One topic config's (value, source, synonyms: (broker name, value, source)).
struct ConfigEntry {
    name: &'static str,
    value: String,
    source: i8,
    kind: Kind,
    synonyms: Vec<(&'static str, String, i8)>,
}

fn topic_config_entries(broker: &Broker, topic: &TopicImage) -> Vec<ConfigEntry> {
    let properties = &broker.config.properties;
    TOPIC_CONFIGS
        .iter()
        .map(|c| {
            let kind = config::broker_property(c.broker_default)
                .expect("consistent table")
                .kind;
            let broker_source = if properties.is_explicit(c.broker_default) {
                SOURCE_STATIC_BROKER
            } else {
                SOURCE_DEFAULT
            };
            let broker_value = properties.effective(c.broker_default);
            let mut synonyms = Vec::new();
            let (value, source) = match topic.configs.get(c.name) {
                Some(value) => {
                    synonyms.push((c.name, value.clone(), SOURCE_DYNAMIC_TOPIC));
                    (value.clone(), SOURCE_DYNAMIC_TOPIC)
                }
                None => (broker_value.clone(), broker_source),
            };
            synonyms.push((c.broker_default, broker_value, broker_source));
            ConfigEntry {
                name: c.name,
                value,
                source,
                kind,
                synonyms,
            }
        })
        .collect()
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

pub fn create_topics(broker: &Broker, mut request: Request) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: CreateTopicsRequest = decode(&mut request.body, version)?;
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> = body
        .topics
        .iter()
        .map(|t| t.name.0.to_string())
        .filter(|name| !seen.insert(name.clone()))
        .collect();
    let topics = body
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let mut result = CreatableTopicResult::default()
                .with_name(topic.name.clone())
                .with_num_partitions(-1)
                .with_replication_factor(-1);
            let outcome = if duplicates.contains(&name) {
                Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    format!("Create topics request from client contains duplicate topic {name}."),
                ))
            } else {
                new_topic(topic)
                    .and_then(|new| broker.create_topic(&new, body.validate_only).map(|()| new))
            };
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
                        let configs = topic_config_entries(broker, topic_image)
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
                            .with_replication_factor(1)
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
    let response = CreateTopicsResponse::default().with_topics(topics);
    Ok(encode_response(
        ApiKey::CreateTopics,
        version,
        request.header.correlation_id,
        &response,
    ))
}

pub fn delete_topics(broker: &Broker, mut request: Request) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
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
            let outcome =
                resolved.and_then(|(name, id)| broker.delete_topic(&name).map(|()| (name, id)));
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
    let response = DeleteTopicsResponse::default().with_responses(responses);
    Ok(encode_response(
        ApiKey::DeleteTopics,
        version,
        request.header.correlation_id,
        &response,
    ))
}

fn broker_config_entries(broker: &Broker) -> Vec<ConfigEntry> {
    let properties = &broker.config.properties;
    BROKER_PROPERTIES
        .iter()
        .map(|p| {
            let source = if properties.is_explicit(p.name) {
                SOURCE_STATIC_BROKER
            } else {
                SOURCE_DEFAULT
            };
            let value = properties.effective(p.name);
            ConfigEntry {
                name: p.name,
                value: value.clone(),
                source,
                kind: p.kind,
                synonyms: vec![(p.name, value, source)],
            }
        })
        .collect()
}

pub fn describe_configs(
    broker: &Broker,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: DescribeConfigsRequest = decode(&mut request.body, version)?;
    let results = body
        .resources
        .iter()
        .map(|resource| {
            let name = resource.resource_name.to_string();
            let mut result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let entries = match resource.resource_type {
                RESOURCE_TOPIC => match broker.image().topics.get(&name) {
                    Some(topic) => Ok((topic_config_entries(broker, topic), false)),
                    None => Err((
                        ResponseError::UnknownTopicOrPartition,
                        format!("Topic {name} does not exist."),
                    )),
                },
                RESOURCE_BROKER if name.is_empty() || name == broker.config.node_id.to_string() => {
                    Ok((broker_config_entries(broker), true))
                }
                RESOURCE_BROKER => Err((
                    ResponseError::InvalidRequest,
                    format!("Unexpected broker id {name}."),
                )),
                other => Err((
                    ResponseError::InvalidRequest,
                    format!("Unsupported resource type {other}."),
                )),
            };
            match entries {
                Ok((entries, read_only)) => {
                    let keys: Option<HashSet<&str>> = resource
                        .configuration_keys
                        .as_ref()
                        .map(|k| k.iter().map(|s| s.as_str()).collect());
                    let configs = entries
                        .into_iter()
                        .filter(|e| keys.as_ref().is_none_or(|k| k.contains(e.name)))
                        .map(|e| {
                            let mut config = DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(e.name))
                                .with_value(Some(str_bytes(e.value)))
                                .with_read_only(read_only)
                                .with_config_source(e.source);
                            if body.include_synonyms {
                                config = config.with_synonyms(
                                    e.synonyms
                                        .into_iter()
                                        .map(|(n, v, s)| {
                                            DescribeConfigsSynonym::default()
                                                .with_name(str_bytes(n))
                                                .with_value(Some(str_bytes(v)))
                                                .with_source(s)
                                        })
                                        .collect(),
                                );
                            }
                            if version >= 3 {
                                config = config.with_config_type(config_type(e.kind));
                            }
                            config
                        })
                        .collect();
                    result = result.with_configs(configs);
                }
                Err((error, message)) => {
                    result = result
                        .with_error_code(error.code())
                        .with_error_message(Some(str_bytes(message)))
                }
            }
            result
        })
        .collect();
    let response = DescribeConfigsResponse::default().with_results(results);
    Ok(encode_response(
        ApiKey::DescribeConfigs,
        version,
        request.header.correlation_id,
        &response,
    ))
}

pub fn describe_cluster(
    broker: &Broker,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: DescribeClusterRequest = decode(&mut request.body, version)?;
    const ENDPOINT_TYPE_BROKERS: i8 = 1;
    let mut response = DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(broker.config.node_id))
        .with_cluster_authorized_operations(i32::MIN)
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(broker.config.node_id))
            .with_host(str_bytes(broker.config.advertised_host.clone()))
            .with_port(broker.config.advertised_port)]);
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
