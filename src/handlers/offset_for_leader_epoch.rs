//! OffsetForLeaderEpoch (KIP-101, KIP-320): for each partition, the end offset of the largest
//! leader epoch at or below the one asked for, from the leader's epoch cache. Consumers use
//! it to detect that their position was truncated after a leader change; a follower may use
//! it to find where its log diverged (dlog's own followers use Fetch's DivergingEpoch).

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{ApiKey, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use kafka_protocol::ResponseError;

use crate::handlers::context::RequestContext;
use crate::node::Node;
use crate::protocol::{decode, encode_response, Request, RequestError, ResponseFrame};
use crate::security::{Operation, Resource};

pub fn handle(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: OffsetForLeaderEpochRequest = decode(&mut request.body, version)?;
    let image = broker.image();
    // Kafka: a follower (replica_id >= 0) needs CLUSTER_ACTION, a client DESCRIBE on the topic.
    let follower = body.replica_id.0 >= 0;
    let cluster_action =
        follower && context.authorized(Operation::ClusterAction, Resource::Cluster);
    let topics =
        body.topics
            .iter()
            .map(|topic| {
                let allowed = match follower {
                    true => cluster_action,
                    false => context
                        .authorized(Operation::Describe, Resource::Topic(topic.topic.as_str())),
                };
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|asked| {
                        let answer = EpochEndOffset::default()
                            .with_partition(asked.partition)
                            .with_leader_epoch(-1)
                            .with_end_offset(-1);
                        if !allowed {
                            return answer
                                .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                        }
                        let led = broker
                            .replicas
                            .leader_partition(&image, topic.topic.as_str(), asked.partition)
                            .and_then(|led| led.check_leader_epoch(asked.current_leader_epoch));
                        let led = match led {
                            Ok(led) => led,
                            Err(error) => return answer.with_error_code(error.code()),
                        };
                        let (epoch, end_offset) =
                            led.log.end_offset_for_leader_epoch(asked.leader_epoch);
                        if end_offset < 0 && !follower {
                            // A consumer answered "no such epoch" resets to auto.offset.reset
                            // (debug level: a client may ask again and again).
                            tracing::debug!(
                                topic = topic.topic.as_str(),
                                partition = asked.partition,
                                leader_epoch = asked.leader_epoch,
                                "OffsetForLeaderEpoch: epoch unknown to the leader"
                            );
                        }
                        answer.with_leader_epoch(epoch).with_end_offset(end_offset)
                    })
                    .collect();
                OffsetForLeaderTopicResult::default()
                    .with_topic(topic.topic.clone())
                    .with_partitions(partitions)
            })
            .collect();
    let response = OffsetForLeaderEpochResponse::default().with_topics(topics);
    Ok(encode_response(
        ApiKey::OffsetForLeaderEpoch,
        version,
        request.header.correlation_id,
        &response,
    ))
}
