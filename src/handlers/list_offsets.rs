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

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const EARLIEST_PENDING_UPLOAD: i64 = -5;

/// (timestamp, offset) answering `timestamp` on `log`; (-1, -1) when no record matches.
fn lookup(
    log: &PartitionLog,
    timestamp: i64,
    read_committed: bool,
) -> std::io::Result<Result<(i64, i64), ResponseError>> {
    let offsets = log.offsets();
    Ok(Ok(match timestamp {
        // READ_COMMITTED consumers see the log up to the last stable offset.
        LATEST if read_committed => (-1, offsets.last_stable_offset),
        LATEST => (-1, offsets.log_end_offset),
        EARLIEST | EARLIEST_LOCAL | EARLIEST_PENDING_UPLOAD => (-1, offsets.log_start_offset),
        // Under READ_COMMITTED a record at or above the last stable offset is not fetchable
        // yet, so it is not an answer (as Kafka).
        MAX_TIMESTAMP => log
            .max_timestamp()?
            .filter(|(_, offset)| !read_committed || *offset < offsets.last_stable_offset)
            .unwrap_or((-1, -1)),
        target if target >= 0 => log
            .offset_for_timestamp(target)?
            .filter(|(_, offset)| !read_committed || *offset < offsets.last_stable_offset)
            .unwrap_or((-1, -1)),
        _ => return Ok(Err(ResponseError::InvalidRequest)),
    }))
}

pub fn handle(
    broker: &Node,
    _context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: ListOffsetsRequest = decode(&mut request.body, version)?;
    let image = broker.image();
    let topics = body
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let mut response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(partition.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1);
                    let result = match broker.replicas.leader_log(&image, topic.name.as_str(), partition.partition_index) {
                        Err(error) => Err(error),
                        Ok(log) => lookup(&log, partition.timestamp, body.isolation_level == 1).unwrap_or_else(|error| {
                            tracing::error!(topic = topic.name.as_str(), %error, "offset lookup failed");
                            Err(ResponseError::KafkaStorageError)
                        }),
                    };
                    match result {
                        Ok((timestamp, offset)) => {
                            response = response.with_timestamp(timestamp).with_offset(offset);
                            if version >= 4 {
                                response = response.with_leader_epoch(0);
                            }
                        }
                        Err(error) => response = response.with_error_code(error.code()),
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
