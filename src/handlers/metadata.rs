//! Metadata: brokers (the advertised listener), cluster id, controller id, and topics with
//! ids and partitions (leader, replicas, ISR, offline replicas, leader epoch), read from the
//! metadata image. Unknown topics are auto-created when
//! `auto.create.topics.enable` and the request allow it.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{ApiKey, BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::controller::image::{MetadataImage, PartitionImage, TopicImage};
use crate::controller::{validate_topic_name, NewTopic};
use crate::handlers::context::RequestContext;
use crate::node::Node;
use crate::protocol::{decode, encode_response, Request, RequestError, ResponseFrame};

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

/// Looks a topic up by name, auto-creating it when allowed.
fn topic_by_name(
    broker: &Node,
    name: &str,
    allow_auto_create: bool,
    version: i16,
) -> MetadataResponseTopic {
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
        None => image
            .topics
            .values()
            .map(|t| topic_response(&image, t, version))
            .collect(),
        Some(requested) => requested
            .iter()
            .map(|wanted| match (&wanted.name, wanted.topic_id) {
                (Some(name), _) => topic_by_name(broker, name.as_str(), allow_auto_create, version),
                (None, id) => match image.topic_by_id(&id) {
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
