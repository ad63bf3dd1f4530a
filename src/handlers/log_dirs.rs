//! Log-level administration: DeleteRecords (move a partition's log start offset) and
//! DescribeLogDirs (the log directory with each partition's size).

use std::collections::BTreeMap;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{
    ApiKey, DeleteRecordsRequest, DeleteRecordsResponse, DescribeLogDirsRequest,
    DescribeLogDirsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::clock::now_ms;
use crate::handlers::context::RequestContext;
use crate::node::Node;
use crate::protocol::{decode, encode_response, Request, RequestError, ResponseFrame};
use crate::security::{Operation, Resource};

/// DeleteRecords' offset meaning "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

pub fn delete_records(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: DeleteRecordsRequest = decode(&mut request.body, version)?;
    let now = now_ms();
    let image = broker.image();
    let topics = body
        .topics
        .iter()
        .map(|topic| {
            // Kafka: DELETE on the topic.
            let allowed = context.authorized(Operation::Delete, Resource::Topic(topic.name.as_str()));
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(partition.partition_index)
                        .with_low_watermark(-1);
                    if !allowed {
                        return result
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    let mut result = result;
                    let led = match broker.replicas.leader_partition(
                        &image,
                        topic.name.as_str(),
                        partition.partition_index,
                    ) {
                        Ok(led) => led,
                        Err(error) => return result.with_error_code(error.code()),
                    };
                    let log = &led.log;
                    // As Kafka: records may be deleted up to the high watermark, not past it
                    // (followers learn the new log start from their fetches).
                    let high_watermark = led.high_watermark();
                    let offset = match partition.offset {
                        HIGH_WATERMARK => high_watermark,
                        offset if offset > high_watermark => {
                            return result.with_error_code(ResponseError::OffsetOutOfRange.code())
                        }
                        offset => offset,
                    };
                    match broker.replicas.logs().delete_records(log, offset, now) {
                        Ok(Ok(low_watermark)) => result.low_watermark = low_watermark,
                        Ok(Err(_)) => {
                            result.error_code = ResponseError::OffsetOutOfRange.code();
                        }
                        Err(error) => {
                            tracing::error!(topic = topic.name.as_str(), %error, "delete records failed");
                            result.error_code = ResponseError::KafkaStorageError.code();
                        }
                    }
                    result
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    let response = DeleteRecordsResponse::default().with_topics(topics);
    Ok(encode_response(
        ApiKey::DeleteRecords,
        version,
        request.header.correlation_id,
        &response,
    ))
}

/// (total, usable) bytes of the file system holding `dir`; (-1, -1) when unknown.
fn file_system_bytes(dir: &std::path::Path) -> (i64, i64) {
    match nix::sys::statvfs::statvfs(dir) {
        Ok(stat) => {
            let fragment = stat.fragment_size() as i64;
            (
                stat.blocks() as i64 * fragment,
                stat.blocks_available() as i64 * fragment,
            )
        }
        Err(_) => (-1, -1),
    }
}

pub fn describe_log_dirs(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: DescribeLogDirsRequest = decode(&mut request.body, version)?;
    // Kafka: DESCRIBE on the cluster, else CLUSTER_AUTHORIZATION_FAILED and no directories.
    if !context.authorized(Operation::Describe, Resource::Cluster) {
        let response = DescribeLogDirsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
        return Ok(encode_response(
            ApiKey::DescribeLogDirs,
            version,
            request.header.correlation_id,
            &response,
        ));
    }
    // None asks for every partition; otherwise only the listed ones.
    let wanted: Option<BTreeMap<String, Vec<i32>>> = body.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| (t.topic.to_string(), t.partitions.clone()))
            .collect()
    });
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for log in broker.replicas.logs().all() {
        let selected = wanted.as_ref().is_none_or(|wanted| {
            wanted
                .get(log.topic())
                .is_some_and(|partitions| partitions.contains(&log.partition()))
        });
        if selected {
            by_topic.entry(log.topic().to_string()).or_default().push(
                DescribeLogDirsPartition::default()
                    .with_partition_index(log.partition())
                    .with_partition_size(log.size_bytes() as i64)
                    .with_offset_lag(0)
                    .with_is_future_key(false),
            );
        }
    }
    let topics = by_topic
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            DescribeLogDirsTopic::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(partitions)
        })
        .collect();
    let data_dir = broker.replicas.logs().data_dir();
    let (total_bytes, usable_bytes) = file_system_bytes(data_dir);
    let mut result = DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from_string(data_dir.display().to_string()))
        .with_topics(topics);
    if version >= 4 {
        result = result
            .with_total_bytes(total_bytes)
            .with_usable_bytes(usable_bytes);
    }
    let response = DescribeLogDirsResponse::default().with_results(vec![result]);
    Ok(encode_response(
        ApiKey::DescribeLogDirs,
        version,
        request.header.correlation_id,
        &response,
    ))
}
