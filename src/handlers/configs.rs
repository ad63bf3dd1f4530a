//! Config APIs: DescribeConfigs (values, sources, synonyms), AlterConfigs (replace every
//! override of a resource) and IncrementalAlterConfigs (set, delete, append, subtract), for
//! topics and brokers. Changes go through the controller (metadata log) and apply to the
//! running logs without a restart.

use std::collections::HashSet;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, ApiKey, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::config::{self, Kind, BROKER_PROPERTIES, TOPIC_CONFIGS};
use crate::controller::image::{MetadataImage, TopicImage};
use crate::controller::records::ConfigResource;
use crate::controller::{is_dynamic_broker_config, ApiError, ConfigChange, ConfigOp};
use crate::handlers::context::RequestContext;
use crate::node::Node;
use crate::protocol::{decode, encode_response, Request, RequestError, ResponseFrame};
use crate::security::{Operation, Resource};

/// Config sources (Kafka's `DescribeConfigsResponse.ConfigSource`).
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_DYNAMIC_BROKER: i8 = 2;
const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
/// Config resource types.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

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
        Kind::ChoiceList(_) | Kind::List => 7,
    }
}

/// One config's value in force, its source, and every level that sets it (synonyms, most
/// specific first, as Kafka lists them).
pub struct ConfigEntry {
    pub name: &'static str,
    pub value: String,
    pub source: i8,
    kind: Kind,
    read_only: bool,
    synonyms: Vec<(&'static str, String, i8)>,
}

/// The levels of a broker property, most specific first: this node's dynamic value, the
/// cluster-wide dynamic default, the static (file or flag) value, the built-in default.
fn broker_levels(
    broker: &Node,
    image: &MetadataImage,
    name: &'static str,
) -> Vec<(&'static str, String, i8)> {
    let mut levels = Vec::new();
    let node = broker.config.node_id.to_string();
    for (resource_name, source) in [
        (node.as_str(), SOURCE_DYNAMIC_BROKER),
        ("", SOURCE_DYNAMIC_DEFAULT_BROKER),
    ] {
        if let Some(value) = image
            .broker_configs
            .get(resource_name)
            .and_then(|c| c.get(name))
        {
            levels.push((name, value.clone(), source));
        }
    }
    let properties = &broker.config.properties;
    let source = if properties.is_explicit(name) {
        SOURCE_STATIC_BROKER
    } else {
        SOURCE_DEFAULT
    };
    levels.push((name, properties.effective(name), source));
    levels
}

pub fn topic_config_entries(
    broker: &Node,
    image: &MetadataImage,
    topic: &TopicImage,
) -> Vec<ConfigEntry> {
    TOPIC_CONFIGS
        .iter()
        .map(|c| {
            let kind = config::broker_property(c.broker_default)
                .expect("consistent table")
                .kind;
            let mut synonyms = Vec::new();
            if let Some(value) = topic.configs.get(c.name) {
                synonyms.push((c.name, value.clone(), SOURCE_DYNAMIC_TOPIC));
            }
            synonyms.extend(broker_levels(broker, image, c.broker_default));
            let (_, value, source) = synonyms[0].clone();
            ConfigEntry {
                name: c.name,
                value,
                source,
                kind,
                read_only: false,
                synonyms,
            }
        })
        .chain(config::TOPIC_ONLY_CONFIGS.iter().map(|&name| {
            // No broker level: the override, else Kafka's built-in default (empty).
            let synonym = match topic.configs.get(name) {
                Some(value) => (name, value.clone(), SOURCE_DYNAMIC_TOPIC),
                None => (name, String::new(), SOURCE_DEFAULT),
            };
            ConfigEntry {
                name,
                value: synonym.1.clone(),
                source: synonym.2,
                kind: Kind::List,
                read_only: false,
                synonyms: vec![synonym],
            }
        }))
        .collect()
}

fn broker_config_entries(broker: &Node, image: &MetadataImage) -> Vec<ConfigEntry> {
    BROKER_PROPERTIES
        .iter()
        .map(|p| {
            let synonyms = broker_levels(broker, image, p.name);
            let (_, value, source) = synonyms[0].clone();
            ConfigEntry {
                name: p.name,
                value,
                source,
                kind: p.kind,
                read_only: !is_dynamic_broker_config(p.name),
                synonyms,
            }
        })
        .collect()
}

pub fn describe_configs(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: DescribeConfigsRequest = decode(&mut request.body, version)?;
    let image = broker.image();
    let results = body
        .resources
        .iter()
        .map(|resource| {
            let name = resource.resource_name.to_string();
            let mut result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let entries = match resource.resource_type {
                _ if !config_authorized(
                    context,
                    Operation::DescribeConfigs,
                    resource.resource_type,
                    &name,
                ) =>
                {
                    let error = denied(resource.resource_type);
                    Err((error.error, error.message))
                }
                RESOURCE_TOPIC => match image.topics.get(&name) {
                    Some(topic) => Ok(topic_config_entries(broker, &image, topic)),
                    None => Err((
                        ResponseError::UnknownTopicOrPartition,
                        format!("Topic {name} does not exist."),
                    )),
                },
                RESOURCE_BROKER if name.is_empty() || name == broker.config.node_id.to_string() => {
                    Ok(broker_config_entries(broker, &image))
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
                Ok(entries) => {
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
                                .with_read_only(e.read_only)
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

fn resource_of(resource_type: i8) -> Result<ConfigResource, ApiError> {
    match resource_type {
        RESOURCE_TOPIC => Ok(ConfigResource::Topic),
        RESOURCE_BROKER => Ok(ConfigResource::Broker),
        other => Err(ApiError::new(
            ResponseError::InvalidRequest,
            format!("Unsupported resource type {other}."),
        )),
    }
}

/// Applies one resource's changes through the controller (the commit reaches the logs through
/// the metadata subscription).
/// Kafka's config checks: `operation` (DESCRIBE_CONFIGS or ALTER_CONFIGS) on the topic, or
/// on the cluster for broker configs.
fn config_authorized(
    context: &RequestContext,
    operation: Operation,
    resource_type: i8,
    resource_name: &str,
) -> bool {
    match resource_type {
        RESOURCE_TOPIC => context.authorized(operation, Resource::Topic(resource_name)),
        _ => context.authorized(operation, Resource::Cluster),
    }
}

/// Whether every resource of an AlterConfigs may be altered (before forwarding it).
pub fn alter_configs_authorized(_: &Node, context: &RequestContext, request: &Request) -> bool {
    let Ok(body) = decode::<AlterConfigsRequest>(&mut request.body.clone(), request.version) else {
        return true;
    };
    body.resources.iter().all(|r| {
        config_authorized(
            context,
            Operation::AlterConfigs,
            r.resource_type,
            r.resource_name.as_str(),
        )
    })
}

/// Whether every resource of an IncrementalAlterConfigs may be altered (before forwarding).
pub fn incremental_alter_configs_authorized(
    _: &Node,
    context: &RequestContext,
    request: &Request,
) -> bool {
    let Ok(body) =
        decode::<IncrementalAlterConfigsRequest>(&mut request.body.clone(), request.version)
    else {
        return true;
    };
    body.resources.iter().all(|r| {
        config_authorized(
            context,
            Operation::AlterConfigs,
            r.resource_type,
            r.resource_name.as_str(),
        )
    })
}

fn denied(resource_type: i8) -> ApiError {
    match resource_type {
        RESOURCE_TOPIC => ApiError::new(
            ResponseError::TopicAuthorizationFailed,
            "Topic authorization failed.",
        ),
        _ => ApiError::new(
            ResponseError::ClusterAuthorizationFailed,
            "Cluster authorization failed.",
        ),
    }
}

fn alter(
    broker: &Node,
    context: &RequestContext,
    resource_type: i8,
    resource_name: &str,
    ops: Result<Vec<ConfigOp>, ApiError>,
    replace_all: bool,
    validate_only: bool,
) -> Result<(), ApiError> {
    if !config_authorized(
        context,
        Operation::AlterConfigs,
        resource_type,
        resource_name,
    ) {
        return Err(denied(resource_type));
    }
    let resource = resource_of(resource_type)?;
    broker
        .controller
        .alter_configs(resource, resource_name, &ops?, replace_all, validate_only)
}

/// A config value the operation needs: null is INVALID_REQUEST.
fn required_value(name: &StrBytes, value: &Option<StrBytes>) -> Result<String, ApiError> {
    value.as_ref().map(|v| v.to_string()).ok_or_else(|| {
        ApiError::new(
            ResponseError::InvalidRequest,
            format!("Null value not supported for config {}", name.as_str()),
        )
    })
}

/// (error code, message) of an outcome, as the alter responses carry them.
fn outcome(result: Result<(), ApiError>) -> (i16, Option<StrBytes>) {
    match result {
        Ok(()) => (0, None),
        Err(error) => (error.error.code(), Some(str_bytes(error.message))),
    }
}

pub fn alter_configs(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: AlterConfigsRequest = decode(&mut request.body, version)?;
    let responses = body
        .resources
        .iter()
        .map(|resource| {
            let ops = resource
                .configs
                .iter()
                .map(|c| {
                    Ok(ConfigOp {
                        name: c.name.to_string(),
                        change: ConfigChange::Set(required_value(&c.name, &c.value)?),
                    })
                })
                .collect();
            let (error_code, error_message) = outcome(alter(
                broker,
                context,
                resource.resource_type,
                resource.resource_name.as_str(),
                ops,
                true,
                body.validate_only,
            ));
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(error_code)
                .with_error_message(error_message)
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone())
        })
        .collect();
    let response = AlterConfigsResponse::default().with_responses(responses);
    Ok(encode_response(
        ApiKey::AlterConfigs,
        version,
        request.header.correlation_id,
        &response,
    ))
}

pub fn incremental_alter_configs(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: IncrementalAlterConfigsRequest = decode(&mut request.body, version)?;
    let responses = body
        .resources
        .iter()
        .map(|resource| {
            let ops = resource
                .configs
                .iter()
                .map(|c| {
                    let name = c.name.to_string();
                    let value = || required_value(&c.name, &c.value);
                    let change = match c.config_operation {
                        OP_SET => ConfigChange::Set(value()?),
                        OP_DELETE => ConfigChange::Delete,
                        OP_APPEND => ConfigChange::Append(value()?),
                        OP_SUBTRACT => ConfigChange::Subtract(value()?),
                        other => {
                            return Err(ApiError::new(
                                ResponseError::InvalidRequest,
                                format!("Unknown config operation {other}"),
                            ))
                        }
                    };
                    Ok(ConfigOp { name, change })
                })
                .collect();
            let (error_code, error_message) = outcome(alter(
                broker,
                context,
                resource.resource_type,
                resource.resource_name.as_str(),
                ops,
                false,
                body.validate_only,
            ));
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(error_code)
                .with_error_message(error_message)
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone())
        })
        .collect();
    let response = IncrementalAlterConfigsResponse::default().with_responses(responses);
    Ok(encode_response(
        ApiKey::IncrementalAlterConfigs,
        version,
        request.header.correlation_id,
        &response,
    ))
}
