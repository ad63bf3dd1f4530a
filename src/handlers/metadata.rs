//! Metadata: brokers (the advertised listener), cluster id, controller id, and topics with
//! ids and partitions (leader, replicas, ISR, offline replicas, leader epoch), read from the
//! metadata image. Unknown topics are auto-created when
//! `auto.create.topics.enable` and the request allow it.
//!
//! DescribeTopicPartitions (KIP-966, API 75): the same partition views, paginated by a cursor
//! so that an admin client describes any number of partitions in bounded responses.

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse,
    MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::controller::image::{MetadataImage, PartitionImage, TopicImage};
use crate::controller::{validate_topic_name, NewTopic};
use crate::handlers::context::RequestContext;
use crate::node::Node;
use crate::protocol::{decode, encode_response, Request, RequestError, ResponseFrame};
use crate::security::{Operation, Resource};

/// Kafka's "authorized operations not requested" marker.
const OPERATIONS_OMITTED: i32 = i32::MIN;

/// Topics only the coordinators write (Kafka's internal topics).
pub fn is_internal(topic: &str) -> bool {
    topic == crate::coordinator::OFFSETS_TOPIC
        || topic == crate::coordinator::transaction::TRANSACTION_STATE_TOPIC
}

/// The brokers clients may connect to: registered and not fenced, with their advertised
/// endpoint of `listener` (the one the client connected to) and rack.
pub fn live_brokers(
    image: &MetadataImage,
    listener: &str,
) -> Vec<(i32, String, i32, Option<String>)> {
    image
        .live_brokers()
        .filter_map(|b| {
            let endpoint = b.endpoint_for(listener)?;
            Some((
                b.id,
                endpoint.host.clone(),
                i32::from(endpoint.port),
                b.rack.clone(),
            ))
        })
        .collect()
}

fn broker_ids(ids: &[i32]) -> Vec<BrokerId> {
    ids.iter().map(|&id| BrokerId(id)).collect()
}

/// What tools are told about a partition (Metadata, DescribeTopicPartitions): its leader if
/// live, and the replicas on brokers that are fenced or not registered (offline replicas, as
/// `kafka-topics --describe` and `--unavailable-partitions` read them).
struct PartitionView {
    /// -1: no leader, answered as LEADER_NOT_AVAILABLE.
    leader: i32,
    offline_replicas: Vec<i32>,
}

impl PartitionView {
    fn of(image: &MetadataImage, partition: &PartitionImage) -> PartitionView {
        PartitionView {
            leader: image.live_leader(partition),
            offline_replicas: partition
                .replicas
                .iter()
                .copied()
                .filter(|id| !image.is_live(*id))
                .collect(),
        }
    }

    fn error_code(&self) -> i16 {
        match self.leader {
            -1 => ResponseError::LeaderNotAvailable.code(),
            _ => 0,
        }
    }
}

fn topic_response(
    image: &MetadataImage,
    topic: &TopicImage,
    version: i16,
) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .map(|(index, partition)| {
            let state = PartitionView::of(image, partition);
            let mut response = MetadataResponsePartition::default()
                .with_error_code(state.error_code())
                .with_partition_index(*index)
                .with_leader_id(BrokerId(state.leader))
                .with_replica_nodes(broker_ids(&partition.replicas))
                .with_isr_nodes(broker_ids(&partition.isr));
            if version >= 5 {
                response = response.with_offline_replicas(broker_ids(&state.offline_replicas));
            }
            if version >= 7 {
                response = response.with_leader_epoch(partition.leader_epoch);
            }
            response
        })
        .collect();
    let mut response = MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_is_internal(is_internal(&topic.name))
        .with_partitions(partitions);
    if version >= 10 {
        response = response.with_topic_id(topic.id);
    }
    if version >= 8 {
        response = response.with_topic_authorized_operations(OPERATIONS_OMITTED);
    }
    response
}

fn error_topic(
    name: Option<&str>,
    topic_id: Uuid,
    error: ResponseError,
    version: i16,
) -> MetadataResponseTopic {
    let mut response = MetadataResponseTopic::default()
        .with_error_code(error.code())
        .with_name(name.map(|n| TopicName(StrBytes::from_string(n.to_string()))));
    if version >= 10 {
        response = response.with_topic_id(topic_id);
    }
    if version >= 8 {
        response = response.with_topic_authorized_operations(OPERATIONS_OMITTED);
    }
    response
}

/// Looks a topic up by name, auto-creating it when allowed. As in Kafka, a topic the
/// principal may not DESCRIBE is TOPIC_AUTHORIZATION_FAILED whether it exists or not, and
/// auto-creation needs CREATE on the cluster or the topic.
fn topic_by_name(
    broker: &Node,
    context: &RequestContext,
    name: &str,
    allow_auto_create: bool,
    version: i16,
) -> MetadataResponseTopic {
    let denied = || {
        error_topic(
            Some(name),
            Uuid::nil(),
            ResponseError::TopicAuthorizationFailed,
            version,
        )
    };
    if !context.authorized(Operation::Describe, Resource::Topic(name)) {
        return denied();
    }
    let image = broker.image();
    if let Some(topic) = image.topics.get(name) {
        return topic_response(&image, topic, version);
    }
    if let Err(error) = validate_topic_name(name) {
        return error_topic(Some(name), Uuid::nil(), error.error, version);
    }
    if !(allow_auto_create && broker.config.auto_create_topics && !name.starts_with("__")) {
        return error_topic(
            Some(name),
            Uuid::nil(),
            ResponseError::UnknownTopicOrPartition,
            version,
        );
    }
    if !context.authorized(Operation::Create, Resource::Cluster)
        && !context.authorized(Operation::Create, Resource::Topic(name))
    {
        return denied();
    }
    let new_topic = NewTopic {
        name: name.to_string(),
        partition_count: -1,
        replication_factor: -1,
        ..Default::default()
    };
    match broker.create_topic(&new_topic, false) {
        Ok(())
        | Err(crate::controller::ApiError {
            error: ResponseError::TopicAlreadyExists,
            ..
        }) => match broker.image().topics.get(name) {
            Some(topic) => topic_response(&broker.image(), topic, version),
            None => error_topic(
                Some(name),
                Uuid::nil(),
                ResponseError::LeaderNotAvailable,
                version,
            ),
        },
        Err(error) => {
            tracing::warn!(
                topic = name,
                message = error.message,
                "auto topic creation failed"
            );
            error_topic(Some(name), Uuid::nil(), error.error, version)
        }
    }
}

pub fn handle(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: MetadataRequest = decode(&mut request.body, version)?;
    // Before v4 clients could not opt out of auto-creation.
    let allow_auto_create = version < 4 || body.allow_auto_topic_creation;
    let requested = match body.topics {
        // v0 sends an empty list for "all topics"; v1+ sends null.
        Some(topics) if !(version == 0 && topics.is_empty()) => Some(topics),
        _ => None,
    };
    let image = broker.image();
    let topics = match requested {
        // Every topic the principal may describe; the others are left out silently.
        None => image
            .topics
            .values()
            .filter(|t| context.authorized(Operation::Describe, Resource::Topic(&t.name)))
            .map(|t| topic_response(&image, t, version))
            .collect(),
        Some(requested) => requested
            .iter()
            .map(|wanted| match (&wanted.name, wanted.topic_id) {
                (Some(name), _) => {
                    topic_by_name(broker, context, name.as_str(), allow_auto_create, version)
                }
                (None, id) => match image.topic_by_id(&id) {
                    Some(topic)
                        if !context
                            .authorized(Operation::Describe, Resource::Topic(&topic.name)) =>
                    {
                        error_topic(None, id, ResponseError::TopicAuthorizationFailed, version)
                    }
                    Some(topic) => topic_response(&image, topic, version),
                    None => error_topic(None, id, ResponseError::UnknownTopicId, version),
                },
            })
            .collect(),
    };
    let brokers = live_brokers(&broker.image(), &context.listener)
        .into_iter()
        .map(|(id, host, port, rack)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(StrBytes::from_string(host))
                .with_port(port)
                .with_rack(rack.map(StrBytes::from_string))
        })
        .collect();
    let mut response = MetadataResponse::default()
        .with_brokers(brokers)
        .with_topics(topics);
    if version >= 1 {
        response = response.with_controller_id(BrokerId(broker.config.node_id));
    }
    if version >= 2 {
        response = response.with_cluster_id(Some(StrBytes::from_string(broker.cluster_id.clone())));
    }
    Ok(encode_response(
        ApiKey::Metadata,
        version,
        request.header.correlation_id,
        &response,
    ))
}

/// Kafka's `max.request.partition.size.limit` default: the most partitions one
/// DescribeTopicPartitions answer holds, whatever the request asks.
const DESCRIBE_PARTITIONS_PER_RESPONSE_MAX: i32 = 2000;

/// The operations a topic's `topic_authorized_operations` bit set is built from, with Kafka's
/// `AclOperation` codes.
const TOPIC_OPERATIONS: &[(Operation, u8)] = &[
    (Operation::Read, 3),
    (Operation::Write, 4),
    (Operation::Create, 5),
    (Operation::Delete, 6),
    (Operation::Alter, 7),
    (Operation::Describe, 8),
    (Operation::DescribeConfigs, 10),
    (Operation::AlterConfigs, 11),
];

fn topic_authorized_operations(context: &RequestContext, topic: &str) -> i32 {
    TOPIC_OPERATIONS
        .iter()
        .filter(|(operation, _)| context.authorized(*operation, Resource::Topic(topic)))
        .fold(0, |bits, (_, code)| bits | 1 << code)
}

fn describe_error_topic(name: &str, error: ResponseError) -> DescribeTopicPartitionsResponseTopic {
    DescribeTopicPartitionsResponseTopic::default()
        .with_error_code(error.code())
        .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
        .with_topic_authorized_operations(OPERATIONS_OMITTED)
}

/// DescribeTopicPartitions as Kafka answers it: the requested topics (all topics the principal
/// may describe when none are named) sorted by name, from the cursor's topic and partition on,
/// at most `min(response_partition_limit, 2000)` partitions, and a cursor to the first
/// partition left out. A named topic that is unknown or not describable gets its error; in
/// the all-topics form those are skipped.
pub fn describe_topic_partitions(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: DescribeTopicPartitionsRequest = decode(&mut request.body, version)?;
    let image = broker.image();
    let all_topics = body.topics.is_empty();
    let mut names: Vec<String> = match all_topics {
        true => image.topics.keys().cloned().collect(),
        false => body
            .topics
            .iter()
            .map(|t| t.name.as_str().to_string())
            .collect(),
    };
    names.sort();
    names.dedup();
    let cursor = body
        .cursor
        .as_ref()
        .map(|c| (c.topic_name.as_str().to_string(), c.partition_index));
    let invalid_cursor = cursor.as_ref().is_some_and(|(topic, partition)| {
        *partition < 0 || (!all_topics && names.binary_search(topic).is_err())
    });
    let mut response = DescribeTopicPartitionsResponse::default();
    if invalid_cursor {
        // Kafka refuses the whole request (InvalidRequestException), answered per named topic.
        response.topics = names
            .iter()
            .map(|name| describe_error_topic(name, ResponseError::InvalidRequest))
            .collect();
        return Ok(encode_response(
            ApiKey::DescribeTopicPartitions,
            version,
            request.header.correlation_id,
            &response,
        ));
    }
    let first_topic = cursor
        .as_ref()
        .map(|(topic, _)| topic.as_str())
        .unwrap_or("");
    let mut remaining = body
        .response_partition_limit
        .clamp(1, DESCRIBE_PARTITIONS_PER_RESPONSE_MAX) as usize;
    for name in names.iter().filter(|name| name.as_str() >= first_topic) {
        let authorized = context.authorized(Operation::Describe, Resource::Topic(name));
        let topic = image.topics.get(name);
        let (Some(topic), true) = (topic, authorized) else {
            if !all_topics {
                let error = match authorized {
                    false => ResponseError::TopicAuthorizationFailed,
                    true => ResponseError::UnknownTopicOrPartition,
                };
                response.topics.push(describe_error_topic(name, error));
            }
            continue;
        };
        if remaining == 0 {
            response.next_cursor = Some(
                Cursor::default()
                    .with_topic_name(TopicName(StrBytes::from_string(name.clone())))
                    .with_partition_index(0),
            );
            break;
        }
        let first_partition = match &cursor {
            Some((cursor_topic, partition)) if cursor_topic == name => *partition,
            _ => 0,
        };
        let mut described = topic.partitions.range(first_partition..).peekable();
        let mut partitions = Vec::new();
        while remaining > 0 {
            let Some((&index, partition)) = described.next() else {
                break;
            };
            let state = PartitionView::of(&image, partition);
            partitions.push(
                DescribeTopicPartitionsResponsePartition::default()
                    .with_error_code(state.error_code())
                    .with_partition_index(index)
                    .with_leader_id(BrokerId(state.leader))
                    .with_leader_epoch(partition.leader_epoch)
                    .with_replica_nodes(broker_ids(&partition.replicas))
                    .with_isr_nodes(broker_ids(&partition.isr))
                    // No eligible leader replicas (KIP-966's ELR is not enabled here).
                    .with_eligible_leader_replicas(Some(Vec::new()))
                    .with_last_known_elr(Some(Vec::new()))
                    .with_offline_replicas(broker_ids(&state.offline_replicas)),
            );
            remaining -= 1;
        }
        if let Some((&next, _)) = described.peek() {
            response.next_cursor = Some(
                Cursor::default()
                    .with_topic_name(TopicName(StrBytes::from_string(name.clone())))
                    .with_partition_index(next),
            );
        }
        response.topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
                .with_topic_id(topic.id)
                .with_is_internal(is_internal(name))
                .with_partitions(partitions)
                .with_topic_authorized_operations(topic_authorized_operations(context, name)),
        );
        if response.next_cursor.is_some() {
            break;
        }
    }
    Ok(encode_response(
        ApiKey::DescribeTopicPartitions,
        version,
        request.header.correlation_id,
        &response,
    ))
}
