//! The quorum RPCs on the wire: `raft::messages` ↔ `kafka_protocol::messages`, one function
//! per direction. Requests carry the cluster id and the one metadata partition
//! (`__cluster_metadata`-0, topic id `AAAAAAAAAAAAAAAAAAAAAQ` in Fetch); responses get their
//! "echo" fields from the request they answer.

use bytes::Bytes;
use kafka_protocol::messages::{self as kafka, BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::metadata_log::{decode_entries, encode_entry};
use super::METADATA_TOPIC;
use crate::raft::{self, ErrorCode, NodeId, Offset};

/// Kafka's fixed topic id of `__cluster_metadata`.
pub const METADATA_TOPIC_ID: Uuid = Uuid::from_u128(1);

pub const VOTE_VERSION: i16 = 2;
pub const BEGIN_QUORUM_EPOCH_VERSION: i16 = 1;
pub const END_QUORUM_EPOCH_VERSION: i16 = 1;
pub const FETCH_VERSION: i16 = 17;
pub const FETCH_SNAPSHOT_VERSION: i16 = 1;

/// INCONSISTENT_CLUSTER_ID.
pub const INCONSISTENT_CLUSTER_ID: i16 = 104;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const INVALID_REQUEST: i16 = 42;

fn error_from_code(code: i16) -> ErrorCode {
    match code {
        0 => ErrorCode::None,
        6 => ErrorCode::NotLeaderOrFollower,
        74 => ErrorCode::FencedLeaderEpoch,
        75 => ErrorCode::UnknownLeaderEpoch,
        94 => ErrorCode::InconsistentVoterSet,
        98 => ErrorCode::SnapshotNotFound,
        99 => ErrorCode::PositionOutOfRange,
        _ => ErrorCode::InvalidRequest,
    }
}

fn leader(id: Option<NodeId>) -> BrokerId {
    BrokerId(id.unwrap_or(-1))
}

fn leader_from(id: BrokerId) -> Option<NodeId> {
    (id.0 >= 0).then_some(id.0)
}

fn topic_name() -> TopicName {
    TopicName(StrBytes::from_static_str(METADATA_TOPIC))
}

fn cluster(cluster_id: &str) -> Option<StrBytes> {
    Some(StrBytes::from_string(cluster_id.to_string()))
}

/// Whether a request's cluster id is acceptable: absent, or ours.
pub fn cluster_matches(request_cluster_id: &Option<StrBytes>, ours: &str) -> bool {
    request_cluster_id
        .as_ref()
        .is_none_or(|id| id.as_str() == ours)
}

fn is_metadata_partition(name: &TopicName, partition: i32) -> bool {
    name.0.as_str() == METADATA_TOPIC && partition == 0
}

/// The one item of a request's one-element array, or INVALID_REQUEST.
fn only<T>(items: &[T]) -> Result<&T, i16> {
    match items {
        [item] => Ok(item),
        _ => Err(INVALID_REQUEST),
    }
}

// ---- Vote -------------------------------------------------------------------------------

pub fn vote_request(r: &raft::VoteRequest, cluster_id: &str, to: NodeId) -> kafka::VoteRequest {
    kafka::VoteRequest::default()
        .with_cluster_id(cluster(cluster_id))
        .with_voter_id(BrokerId(to))
        .with_topics(vec![kafka::vote_request::TopicData::default()
            .with_topic_name(topic_name())
            .with_partitions(vec![kafka::vote_request::PartitionData::default(
            )
            .with_partition_index(0)
            .with_replica_epoch(r.candidate_epoch)
            .with_replica_id(BrokerId(r.candidate_id))
            .with_last_offset_epoch(r.last_offset_epoch)
            .with_last_offset(r.last_offset)
            .with_pre_vote(r.pre_vote)])])
}

/// The raft request of a Vote, or the error code for the whole request.
pub fn from_vote_request(k: &kafka::VoteRequest) -> Result<raft::VoteRequest, i16> {
    let topic = only(&k.topics)?;
    let p = only(&topic.partitions)?;
    if !is_metadata_partition(&topic.topic_name, p.partition_index) {
        return Err(UNKNOWN_TOPIC_OR_PARTITION);
    }
    Ok(raft::VoteRequest {
        candidate_epoch: p.replica_epoch,
        candidate_id: p.replica_id.0,
        last_offset_epoch: p.last_offset_epoch,
        last_offset: p.last_offset,
        pre_vote: p.pre_vote,
    })
}

pub fn vote_response(r: &raft::VoteResponse) -> kafka::VoteResponse {
    kafka::VoteResponse::default().with_topics(vec![kafka::vote_response::TopicData::default()
        .with_topic_name(topic_name())
        .with_partitions(vec![kafka::vote_response::PartitionData::default()
            .with_partition_index(0)
            .with_error_code(r.error.kafka_code())
            .with_leader_id(leader(r.leader_id))
            .with_leader_epoch(r.leader_epoch)
            .with_vote_granted(r.vote_granted)])])
}

pub fn vote_error_response(code: i16) -> kafka::VoteResponse {
    kafka::VoteResponse::default().with_error_code(code)
}

pub fn from_vote_response(k: &kafka::VoteResponse, pre_vote: bool) -> Option<raft::VoteResponse> {
    let p = k.topics.first()?.partitions.first()?;
    if k.error_code != 0 {
        return None;
    }
    Some(raft::VoteResponse {
        error: error_from_code(p.error_code),
        leader_id: leader_from(p.leader_id),
        leader_epoch: p.leader_epoch,
        vote_granted: p.vote_granted,
        pre_vote,
    })
}

// ---- BeginQuorumEpoch ---------------------------------------------------------------------

pub fn begin_quorum_epoch_request(
    r: &raft::BeginQuorumEpochRequest,
    cluster_id: &str,
    to: NodeId,
) -> kafka::BeginQuorumEpochRequest {
    kafka::BeginQuorumEpochRequest::default()
        .with_cluster_id(cluster(cluster_id))
        .with_voter_id(BrokerId(to))
        .with_topics(vec![kafka::begin_quorum_epoch_request::TopicData::default(
        )
        .with_topic_name(topic_name())
        .with_partitions(vec![
            kafka::begin_quorum_epoch_request::PartitionData::default()
                .with_partition_index(0)
                .with_leader_id(BrokerId(r.leader_id))
                .with_leader_epoch(r.leader_epoch),
        ])])
}

pub fn from_begin_quorum_epoch_request(
    k: &kafka::BeginQuorumEpochRequest,
) -> Result<raft::BeginQuorumEpochRequest, i16> {
    let topic = only(&k.topics)?;
    let p = only(&topic.partitions)?;
    if !is_metadata_partition(&topic.topic_name, p.partition_index) {
        return Err(UNKNOWN_TOPIC_OR_PARTITION);
    }
    Ok(raft::BeginQuorumEpochRequest {
        leader_id: p.leader_id.0,
        leader_epoch: p.leader_epoch,
    })
}

pub fn begin_quorum_epoch_response(
    r: &raft::BeginQuorumEpochResponse,
) -> kafka::BeginQuorumEpochResponse {
    kafka::BeginQuorumEpochResponse::default().with_topics(vec![
        kafka::begin_quorum_epoch_response::TopicData::default()
            .with_topic_name(topic_name())
            .with_partitions(vec![
                kafka::begin_quorum_epoch_response::PartitionData::default()
                    .with_partition_index(0)
                    .with_error_code(r.error.kafka_code())
                    .with_leader_id(leader(r.leader_id))
                    .with_leader_epoch(r.leader_epoch),
            ]),
    ])
}

pub fn from_begin_quorum_epoch_response(
    k: &kafka::BeginQuorumEpochResponse,
) -> Option<raft::BeginQuorumEpochResponse> {
    let p = k.topics.first()?.partitions.first()?;
    Some(raft::BeginQuorumEpochResponse {
        error: error_from_code(p.error_code),
        leader_id: leader_from(p.leader_id),
        leader_epoch: p.leader_epoch,
    })
}

// ---- EndQuorumEpoch -----------------------------------------------------------------------

pub fn end_quorum_epoch_request(
    r: &raft::EndQuorumEpochRequest,
    cluster_id: &str,
) -> kafka::EndQuorumEpochRequest {
    kafka::EndQuorumEpochRequest::default()
        .with_cluster_id(cluster(cluster_id))
        .with_topics(vec![kafka::end_quorum_epoch_request::TopicData::default()
            .with_topic_name(topic_name())
            .with_partitions(vec![
                kafka::end_quorum_epoch_request::PartitionData::default()
                    .with_partition_index(0)
                    .with_leader_id(BrokerId(r.leader_id))
                    .with_leader_epoch(r.leader_epoch)
                    .with_preferred_candidates(
                        r.preferred_successors
                            .iter()
                            .map(|id| {
                                kafka::end_quorum_epoch_request::ReplicaInfo::default()
                                    .with_candidate_id(BrokerId(*id))
                            })
                            .collect(),
                    ),
            ])])
}

pub fn from_end_quorum_epoch_request(
    k: &kafka::EndQuorumEpochRequest,
) -> Result<raft::EndQuorumEpochRequest, i16> {
    let topic = only(&k.topics)?;
    let p = only(&topic.partitions)?;
    if !is_metadata_partition(&topic.topic_name, p.partition_index) {
        return Err(UNKNOWN_TOPIC_OR_PARTITION);
    }
    let mut preferred_successors: Vec<NodeId> = p
        .preferred_candidates
        .iter()
        .map(|c| c.candidate_id.0)
        .collect();
    preferred_successors.extend(p.preferred_successors.iter().copied());
    preferred_successors.truncate(64);
    Ok(raft::EndQuorumEpochRequest {
        leader_id: p.leader_id.0,
        leader_epoch: p.leader_epoch,
        preferred_successors,
    })
}

pub fn end_quorum_epoch_response(
    r: &raft::EndQuorumEpochResponse,
) -> kafka::EndQuorumEpochResponse {
    kafka::EndQuorumEpochResponse::default().with_topics(vec![
        kafka::end_quorum_epoch_response::TopicData::default()
            .with_topic_name(topic_name())
            .with_partitions(vec![
                kafka::end_quorum_epoch_response::PartitionData::default()
                    .with_partition_index(0)
                    .with_error_code(r.error.kafka_code())
                    .with_leader_id(leader(r.leader_id))
                    .with_leader_epoch(r.leader_epoch),
            ]),
    ])
}

pub fn from_end_quorum_epoch_response(
    k: &kafka::EndQuorumEpochResponse,
) -> Option<raft::EndQuorumEpochResponse> {
    let p = k.topics.first()?.partitions.first()?;
    Some(raft::EndQuorumEpochResponse {
        error: error_from_code(p.error_code),
        leader_id: leader_from(p.leader_id),
        leader_epoch: p.leader_epoch,
    })
}

// ---- Fetch --------------------------------------------------------------------------------

pub fn fetch_request(
    r: &raft::FetchRequest,
    cluster_id: &str,
    tick_ms: u64,
) -> kafka::FetchRequest {
    kafka::FetchRequest::default()
        .with_cluster_id(cluster(cluster_id))
        .with_replica_state(
            kafka::fetch_request::ReplicaState::default()
                .with_replica_id(BrokerId(r.replica_id))
                .with_replica_epoch(-1),
        )
        .with_max_wait_ms((u64::from(r.max_wait_ticks) * tick_ms).min(i32::MAX as u64) as i32)
        .with_min_bytes(0)
        .with_max_bytes(r.max_bytes)
        .with_session_epoch(-1)
        .with_topics(vec![kafka::fetch_request::FetchTopic::default()
            .with_topic_id(METADATA_TOPIC_ID)
            .with_topic(topic_name())
            .with_partitions(vec![
                kafka::fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(r.current_leader_epoch)
                    .with_fetch_offset(r.fetch_offset)
                    .with_last_fetched_epoch(r.last_fetched_epoch)
                    .with_log_start_offset(r.log_start_offset)
                    .with_partition_max_bytes(r.max_bytes),
            ])])
}

/// Whether a Fetch asks for the metadata partition (and so goes to the quorum).
pub fn is_metadata_fetch(k: &kafka::FetchRequest) -> bool {
    k.topics
        .iter()
        .any(|t| t.topic_id == METADATA_TOPIC_ID || t.topic.0.as_str() == METADATA_TOPIC)
}

pub fn from_fetch_request(
    k: &kafka::FetchRequest,
    version: i16,
    tick_ms: u64,
) -> Result<raft::FetchRequest, i16> {
    let topic = only(&k.topics)?;
    let p = only(&topic.partitions)?;
    if p.partition != 0 {
        return Err(UNKNOWN_TOPIC_OR_PARTITION);
    }
    let replica_id = if version >= 15 {
        k.replica_state.replica_id.0
    } else {
        k.replica_id.0
    };
    Ok(raft::FetchRequest {
        replica_id,
        current_leader_epoch: p.current_leader_epoch,
        fetch_offset: p.fetch_offset,
        last_fetched_epoch: p.last_fetched_epoch,
        log_start_offset: p.log_start_offset,
        max_wait_ticks: (k.max_wait_ms.max(0) as u64 / tick_ms.max(1)).min(1000) as u32,
        max_bytes: p.partition_max_bytes,
    })
}

pub fn fetch_response(r: &raft::FetchResponse, now_ms: i64) -> kafka::FetchResponse {
    let mut records = Vec::new();
    for (index, entry) in r.records.iter().enumerate() {
        records.extend_from_slice(&encode_entry(
            r.fetch_offset + index as Offset,
            entry,
            now_ms,
        ));
    }
    let mut partition = kafka::fetch_response::PartitionData::default()
        .with_partition_index(0)
        .with_error_code(r.error.kafka_code())
        .with_high_watermark(r.high_watermark)
        .with_last_stable_offset(r.high_watermark)
        .with_log_start_offset(r.log_start_offset)
        .with_current_leader(
            kafka::fetch_response::LeaderIdAndEpoch::default()
                .with_leader_id(leader(r.current_leader.leader_id))
                .with_leader_epoch(r.current_leader.leader_epoch),
        )
        .with_records(Some(Bytes::from(records)));
    if let Some(d) = r.diverging_epoch {
        partition = partition.with_diverging_epoch(
            kafka::fetch_response::EpochEndOffset::default()
                .with_epoch(d.epoch)
                .with_end_offset(d.end_offset),
        );
    }
    if let Some(s) = r.snapshot_id {
        partition = partition.with_snapshot_id(
            kafka::fetch_response::SnapshotId::default()
                .with_end_offset(s.end_offset)
                .with_epoch(s.epoch),
        );
    }
    kafka::FetchResponse::default().with_responses(vec![
        kafka::fetch_response::FetchableTopicResponse::default()
            .with_topic_id(METADATA_TOPIC_ID)
            .with_topic(topic_name())
            .with_partitions(vec![partition]),
    ])
}

pub fn fetch_error_response(code: i16) -> kafka::FetchResponse {
    kafka::FetchResponse::default().with_error_code(code)
}

pub fn from_fetch_response(
    k: &kafka::FetchResponse,
    request: &raft::FetchRequest,
) -> Option<raft::FetchResponse> {
    let p = k.responses.first()?.partitions.first()?;
    if k.error_code != 0 {
        return None;
    }
    let mut records = Vec::new();
    if let Some(bytes) = &p.records {
        let (decoded, _) = decode_entries(bytes);
        for (index, (offset, _, entry)) in decoded.into_iter().enumerate() {
            if offset != request.fetch_offset + index as Offset {
                tracing::warn!(offset, "metadata fetch response out of order; dropped");
                return None;
            }
            records.push(entry);
        }
    }
    let diverging_epoch = (p.diverging_epoch.epoch >= 0).then_some(raft::EpochEndOffset {
        epoch: p.diverging_epoch.epoch,
        end_offset: p.diverging_epoch.end_offset,
    });
    let snapshot_id =
        (p.snapshot_id.end_offset >= 0 && p.snapshot_id.epoch >= 0).then_some(raft::SnapshotId {
            end_offset: p.snapshot_id.end_offset,
            epoch: p.snapshot_id.epoch,
        });
    Some(raft::FetchResponse {
        error: error_from_code(p.error_code),
        high_watermark: p.high_watermark,
        log_start_offset: p.log_start_offset,
        diverging_epoch,
        current_leader: raft::LeaderIdAndEpoch {
            leader_id: leader_from(p.current_leader.leader_id),
            leader_epoch: p.current_leader.leader_epoch,
        },
        snapshot_id,
        records,
        fetch_offset: request.fetch_offset,
        last_fetched_epoch: request.last_fetched_epoch,
    })
}

// ---- FetchSnapshot ------------------------------------------------------------------------

pub fn fetch_snapshot_request(
    r: &raft::FetchSnapshotRequest,
    cluster_id: &str,
) -> kafka::FetchSnapshotRequest {
    kafka::FetchSnapshotRequest::default()
        .with_cluster_id(cluster(cluster_id))
        .with_replica_id(BrokerId(r.replica_id))
        .with_max_bytes(r.max_bytes)
        .with_topics(vec![kafka::fetch_snapshot_request::TopicSnapshot::default(
        )
        .with_name(topic_name())
        .with_partitions(vec![
            kafka::fetch_snapshot_request::PartitionSnapshot::default()
                .with_partition(0)
                .with_current_leader_epoch(r.current_leader_epoch)
                .with_snapshot_id(
                    kafka::fetch_snapshot_request::SnapshotId::default()
                        .with_end_offset(r.snapshot_id.end_offset)
                        .with_epoch(r.snapshot_id.epoch),
                )
                .with_position(r.position),
        ])])
}

pub fn from_fetch_snapshot_request(
    k: &kafka::FetchSnapshotRequest,
) -> Result<raft::FetchSnapshotRequest, i16> {
    let topic = only(&k.topics)?;
    let p = only(&topic.partitions)?;
    if !is_metadata_partition(&topic.name, p.partition) {
        return Err(UNKNOWN_TOPIC_OR_PARTITION);
    }
    Ok(raft::FetchSnapshotRequest {
        replica_id: k.replica_id.0,
        current_leader_epoch: p.current_leader_epoch,
        snapshot_id: raft::SnapshotId {
            end_offset: p.snapshot_id.end_offset,
            epoch: p.snapshot_id.epoch,
        },
        position: p.position,
        max_bytes: k.max_bytes,
    })
}

pub fn fetch_snapshot_response(r: &raft::FetchSnapshotResponse) -> kafka::FetchSnapshotResponse {
    kafka::FetchSnapshotResponse::default().with_topics(vec![
        kafka::fetch_snapshot_response::TopicSnapshot::default()
            .with_name(topic_name())
            .with_partitions(vec![
                kafka::fetch_snapshot_response::PartitionSnapshot::default()
                    .with_index(0)
                    .with_error_code(r.error.kafka_code())
                    .with_snapshot_id(
                        kafka::fetch_snapshot_response::SnapshotId::default()
                            .with_end_offset(r.snapshot_id.end_offset)
                            .with_epoch(r.snapshot_id.epoch),
                    )
                    .with_current_leader(
                        kafka::fetch_snapshot_response::LeaderIdAndEpoch::default()
                            .with_leader_id(leader(r.current_leader.leader_id))
                            .with_leader_epoch(r.current_leader.leader_epoch),
                    )
                    .with_size(r.size)
                    .with_position(r.position)
                    .with_unaligned_records(r.unaligned_records.clone()),
            ]),
    ])
}

pub fn fetch_snapshot_error_response(code: i16) -> kafka::FetchSnapshotResponse {
    kafka::FetchSnapshotResponse::default().with_error_code(code)
}

pub fn from_fetch_snapshot_response(
    k: &kafka::FetchSnapshotResponse,
) -> Option<raft::FetchSnapshotResponse> {
    let p = k.topics.first()?.partitions.first()?;
    if k.error_code != 0 {
        return None;
    }
    Some(raft::FetchSnapshotResponse {
        error: error_from_code(p.error_code),
        snapshot_id: raft::SnapshotId {
            end_offset: p.snapshot_id.end_offset,
            epoch: p.snapshot_id.epoch,
        },
        current_leader: raft::LeaderIdAndEpoch {
            leader_id: leader_from(p.current_leader.leader_id),
            leader_epoch: p.current_leader.leader_epoch,
        },
        size: p.size,
        position: p.position,
        unaligned_records: p.unaligned_records.clone(),
    })
}
