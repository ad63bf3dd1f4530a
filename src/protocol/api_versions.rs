//! The APIs and versions dlog serves: the single source for ApiVersions responses, for
//! request admission, and for the dispatch table's coverage test.
//!
//! Floors follow Kafka 4.x (KIP-896). Produce is advertised from v0, as Kafka 4 does, because
//! older librdkafka disables compression when Produce v0 is absent; v0–2 are then refused at
//! request time (UNSUPPORTED_VERSION per partition).

use kafka_protocol::messages::ApiKey;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionRange {
    pub min: i16,
    pub max: i16,
}

const fn range(min: i16, max: i16) -> VersionRange {
    VersionRange { min, max }
}

/// (api, versions served). Keep in step with `server::dispatch`.
pub const SUPPORTED: &[(ApiKey, VersionRange)] = &[
    (ApiKey::Produce, range(0, 12)),
    (ApiKey::Fetch, range(4, 17)),
    (ApiKey::ListOffsets, range(1, 10)),
    (ApiKey::OffsetForLeaderEpoch, range(2, 4)),
    (ApiKey::Metadata, range(0, 13)),
    (ApiKey::DescribeTopicPartitions, range(0, 0)),
    (ApiKey::ApiVersions, range(0, 4)),
    (ApiKey::CreateTopics, range(2, 7)),
    (ApiKey::DeleteTopics, range(1, 6)),
    (ApiKey::DescribeConfigs, range(1, 4)),
    (ApiKey::DescribeCluster, range(0, 1)),
    (ApiKey::FindCoordinator, range(0, 6)),
    (ApiKey::DeleteRecords, range(0, 2)),
    (ApiKey::CreatePartitions, range(0, 3)),
    (ApiKey::AlterConfigs, range(0, 2)),
    (ApiKey::IncrementalAlterConfigs, range(0, 1)),
    (ApiKey::DescribeLogDirs, range(1, 4)),
    (ApiKey::OffsetCommit, range(2, 9)),
    (ApiKey::OffsetFetch, range(1, 9)),
    (ApiKey::JoinGroup, range(2, 9)),
    (ApiKey::Heartbeat, range(0, 4)),
    (ApiKey::LeaveGroup, range(0, 5)),
    (ApiKey::SyncGroup, range(0, 5)),
    (ApiKey::DescribeGroups, range(0, 6)),
    (ApiKey::ListGroups, range(0, 5)),
    (ApiKey::DeleteGroups, range(0, 2)),
    (ApiKey::OffsetDelete, range(0, 0)),
    (ApiKey::ConsumerGroupHeartbeat, range(0, 1)),
    (ApiKey::ConsumerGroupDescribe, range(0, 1)),
    // Share groups (KIP-932): v1 is the first stable version (v0 was Kafka 4.0's preview).
    (ApiKey::ShareGroupHeartbeat, range(1, 1)),
    (ApiKey::ShareGroupDescribe, range(1, 1)),
    (ApiKey::ShareFetch, range(1, 1)),
    (ApiKey::ShareAcknowledge, range(1, 1)),
    // v0 only: what kafka-protocol 0.18 has (v1, KIP-1226, adds the lag).
    (ApiKey::DescribeShareGroupOffsets, range(0, 0)),
    (ApiKey::AlterShareGroupOffsets, range(0, 0)),
    (ApiKey::DeleteShareGroupOffsets, range(0, 0)),
    (ApiKey::InitProducerId, range(0, 5)),
    (ApiKey::AddPartitionsToTxn, range(0, 5)),
    (ApiKey::AddOffsetsToTxn, range(0, 4)),
    (ApiKey::EndTxn, range(0, 5)),
    (ApiKey::TxnOffsetCommit, range(0, 5)),
    (ApiKey::WriteTxnMarkers, range(1, 1)),
    (ApiKey::DescribeTransactions, range(0, 0)),
    (ApiKey::DescribeProducers, range(0, 0)),
    (ApiKey::ListTransactions, range(0, 1)),
    (ApiKey::DescribeQuorum, range(0, 2)),
    (ApiKey::DescribeAcls, range(1, 3)),
    (ApiKey::CreateAcls, range(1, 3)),
    (ApiKey::DeleteAcls, range(1, 3)),
    (ApiKey::DescribeUserScramCredentials, range(0, 0)),
    (ApiKey::AlterUserScramCredentials, range(0, 0)),
    (ApiKey::DescribeClientQuotas, range(0, 1)),
    (ApiKey::AlterClientQuotas, range(0, 1)),
    (ApiKey::ElectLeaders, range(0, 2)),
    (ApiKey::AlterPartitionReassignments, range(0, 1)),
    (ApiKey::ListPartitionReassignments, range(0, 0)),
    // Answered by the connection's authenticator (`server::authenticator`), not a handler.
    (ApiKey::SaslHandshake, range(0, 1)),
    (ApiKey::SaslAuthenticate, range(0, 2)),
];

/// What the controller listener serves (`controller.listener.names`): the quorum RPCs,
/// DescribeQuorum, and the requests brokers forward to the active controller.
pub const CONTROLLER_SUPPORTED: &[(ApiKey, VersionRange)] = &[
    (ApiKey::ApiVersions, range(0, 4)),
    (ApiKey::Vote, range(0, 2)),
    (ApiKey::BeginQuorumEpoch, range(0, 1)),
    (ApiKey::EndQuorumEpoch, range(0, 1)),
    (ApiKey::DescribeQuorum, range(0, 2)),
    (ApiKey::DescribeCluster, range(0, 1)),
    (ApiKey::Fetch, range(12, 17)),
    (ApiKey::FetchSnapshot, range(0, 1)),
    (ApiKey::CreateTopics, range(2, 7)),
    (ApiKey::DeleteTopics, range(1, 6)),
    (ApiKey::CreatePartitions, range(0, 3)),
    (ApiKey::AlterConfigs, range(0, 2)),
    (ApiKey::IncrementalAlterConfigs, range(0, 1)),
    (ApiKey::AllocateProducerIds, range(0, 0)),
    (ApiKey::AlterPartition, range(2, 3)),
    (ApiKey::BrokerRegistration, range(0, 4)),
    (ApiKey::BrokerHeartbeat, range(0, 1)),
    (ApiKey::CreateAcls, range(1, 3)),
    (ApiKey::DeleteAcls, range(1, 3)),
    (ApiKey::AlterUserScramCredentials, range(0, 0)),
    (ApiKey::AlterClientQuotas, range(0, 1)),
    (ApiKey::ElectLeaders, range(0, 2)),
    (ApiKey::AlterPartitionReassignments, range(0, 1)),
    (ApiKey::ListPartitionReassignments, range(0, 0)),
];

pub fn controller_supported(api_key: ApiKey) -> Option<VersionRange> {
    CONTROLLER_SUPPORTED
        .iter()
        .find(|(key, _)| *key == api_key)
        .map(|(_, versions)| *versions)
}

/// Produce versions below this are advertised but refused.
pub const PRODUCE_VERSION_MIN_ACCEPTED: i16 = 3;

pub fn supported(api_key: ApiKey) -> Option<VersionRange> {
    SUPPORTED
        .iter()
        .find(|(key, _)| *key == api_key)
        .map(|(_, versions)| *versions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_versions_are_within_what_the_codec_knows() {
        for (api_key, versions) in SUPPORTED {
            let codec = api_key.valid_versions();
            let floor = if *api_key == ApiKey::Produce {
                PRODUCE_VERSION_MIN_ACCEPTED
            } else {
                versions.min
            };
            assert!(
                codec.min <= floor && versions.max <= codec.max,
                "{api_key:?}"
            );
        }
    }
}
