//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local (-4, -5: the
//! same here, nothing is tiered), or the first offset whose record timestamp is at or after
//! the given time.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use crate::handlers::context::RequestContext;
use crate::node::Node;
use crate::protocol::{decode, encode_response, Request, RequestError, ResponseFrame};
use crate::replica::PartitionLog;
use crate::security::{Operation, Resource};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const EARLIEST_PENDING_UPLOAD: i64 = -5;

/// (timestamp, offset) answering `timestamp` on `log`; (-1, -1) when no record matches.
/// Consumers see the log up to the high watermark (READ_COMMITTED: the last stable offset
/// below it), so nothing above that is an answer (as Kafka).
fn lookup(
    log: &PartitionLog,
    high_watermark: i64,
    timestamp: i64,
    read_committed: bool,
) -> std::io::Result<Result<(i64, i64), ResponseError>> {
    let offsets = log.offsets();
    let visible_end = match read_committed {
        true => offsets.last_stable_offset.min(high_watermark),
        false => high_watermark,
    };
    Ok(Ok(match timestamp {
        LATEST => (-1, visible_end),
        EARLIEST | EARLIEST_LOCAL | EARLIEST_PENDING_UPLOAD => (-1, offsets.log_start_offset),
        MAX_TIMESTAMP => log
            .max_timestamp()?
            .filter(|(_, offset)| *offset < visible_end)
            .unwrap_or((-1, -1)),
        target if target >= 0 => log
            .offset_for_timestamp(target)?
            .filter(|(_, offset)| *offset < visible_end)
            .unwrap_or((-1, -1)),
        _ => return Ok(Err(ResponseError::InvalidRequest)),
    }))
}

pub fn handle(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: ListOffsetsRequest = decode(&mut request.body, version)?;
    let image = broker.image();
    let topics = body
        .topics
        .iter()
        .map(|topic| {
            // Kafka: DESCRIBE on the topic, else TOPIC_AUTHORIZATION_FAILED per partition.
            let allowed = context.authorized(Operation::Describe, Resource::Topic(topic.name.as_str()));
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let mut response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(partition.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1);
                    let led = match allowed {
                        true => broker.replicas.leader_partition(&image, topic.name.as_str(), partition.partition_index),
                        false => Err(ResponseError::TopicAuthorizationFailed),
                    };
                    let result = match &led {
                        Err(error) => Err(*error),
                        Ok(led) => lookup(&led.log, led.high_watermark(), partition.timestamp, body.isolation_level == 1).unwrap_or_else(|error| {
                            tracing::error!(topic = topic.name.as_str(), %error, "offset lookup failed");
                            Err(ResponseError::KafkaStorageError)
                        }),
                    };
                    match (result, led) {
                        (Ok((timestamp, offset)), Ok(led)) => {
                            response = response.with_timestamp(timestamp).with_offset(offset);
                            if version >= 4 {
                                response = response.with_leader_epoch(led.leader_epoch);
                            }
                        }
                        (Ok(_), Err(error)) => response = response.with_error_code(error.code()),
                        (Err(error), _) => response = response.with_error_code(error.code()),
                    }
                    response
                })
                .collect();
            ListOffsetsTopicResponse::default().with_name(topic.name.clone()).with_partitions(partitions)
        })
        .collect();
    let response = ListOffsetsResponse::default().with_topics(topics);
    Ok(encode_response(
        ApiKey::ListOffsets,
        version,
        request.header.correlation_id,
        &response,
    ))
}
