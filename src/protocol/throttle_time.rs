//! Setting `throttle_time_ms` in a response already encoded. The request quota
//! (`request_percentage`) is measured around the handler, so its throttle time is known only
//! once the handler encoded its response; Kafka answers the larger of that and the handler's
//! own throttle time (a byte rate's, a mutation quota's), and so does this.
//!
//! Most responses carry `throttle_time_ms` as the first field of their body; OffsetDelete has
//! its error code first; Produce and ApiVersions have it after variable-length fields, so those
//! (small) responses are decoded and encoded again.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, ProduceResponse, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::{Chunk, ResponseFrame};

/// Where a response body holds its `throttle_time_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Position {
    /// At this byte offset from the start of the body.
    At(usize),
    /// After variable-length fields: decode and encode again.
    Reencode,
}

/// The field's place in `api_key`'s response at `version`; None when it has none.
fn position(api_key: ApiKey, version: i16) -> Option<Position> {
    use ApiKey::*;
    let first = Some(Position::At(0));
    match api_key {
        Produce => Some(Position::Reencode),
        ApiVersions if version >= 1 => Some(Position::Reencode),
        OffsetDelete => Some(Position::At(2)),
        DescribeGroups | FindCoordinator | Heartbeat | LeaveGroup | ListGroups | SyncGroup
            if version >= 1 =>
        {
            first
        }
        JoinGroup | ListOffsets if version >= 2 => first,
        Metadata | OffsetCommit | OffsetFetch if version >= 3 => first,
        Fetch
        | OffsetForLeaderEpoch
        | CreateTopics
        | DeleteTopics
        | DeleteRecords
        | InitProducerId
        | AddPartitionsToTxn
        | AddOffsetsToTxn
        | EndTxn
        | TxnOffsetCommit
        | DescribeAcls
        | CreateAcls
        | DeleteAcls
        | DescribeConfigs
        | AlterConfigs
        | AlterReplicaLogDirs
        | DescribeLogDirs
        | CreatePartitions
        | DeleteGroups
        | ElectLeaders
        | IncrementalAlterConfigs
        | AlterPartitionReassignments
        | ListPartitionReassignments
        | DescribeClientQuotas
        | AlterClientQuotas
        | DescribeUserScramCredentials
        | AlterUserScramCredentials
        | DescribeCluster
        | DescribeProducers
        | DescribeTransactions
        | ListTransactions
        | ConsumerGroupHeartbeat
        | ConsumerGroupDescribe
        | DescribeTopicPartitions
        | ShareGroupHeartbeat
        | ShareGroupDescribe
        | ShareFetch
        | ShareAcknowledge
        | DescribeShareGroupOffsets
        | AlterShareGroupOffsets
        | DeleteShareGroupOffsets => first,
        _ => None,
    }
}

/// Raises the `throttle_time_ms` of `frame` (a response to `api_key` at `version`) to
/// `throttle_ms` when it is lower. A response without the field, or one this cannot read,
/// is left as it is (the connection's mute still holds the client back).
pub fn raise(frame: &mut ResponseFrame, api_key: ApiKey, version: i16, throttle_ms: i32) {
    if throttle_ms <= 0 {
        return;
    }
    let Some(position) = position(api_key, version) else {
        return;
    };
    let Some(Chunk::Bytes(first)) = frame.chunks.first() else {
        return;
    };
    let mut reader = first.clone();
    let header_version = api_key.response_header_version(version);
    if ResponseHeader::decode(&mut reader, header_version).is_err() {
        return;
    }
    let header_bytes = first.len() - reader.remaining();
    match position {
        Position::At(offset) => {
            let at = header_bytes + offset;
            let Some(field) = first.get(at..at + 4) else {
                return;
            };
            let current = i32::from_be_bytes(field.try_into().expect("four bytes"));
            if current >= throttle_ms {
                return;
            }
            let mut patched = BytesMut::from(&first[..]);
            patched[at..at + 4].copy_from_slice(&throttle_ms.to_be_bytes());
            frame.chunks[0] = Chunk::Bytes(patched.freeze());
        }
        Position::Reencode => {
            if frame.chunks.len() != 1 {
                return;
            }
            let header = first.slice(..header_bytes);
            let body = match api_key {
                ApiKey::Produce => reencode::<ProduceResponse>(
                    reader,
                    version,
                    |r| &mut r.throttle_time_ms,
                    throttle_ms,
                ),
                _ => reencode::<ApiVersionsResponse>(
                    reader,
                    version,
                    |r| &mut r.throttle_time_ms,
                    throttle_ms,
                ),
            };
            let Some(body) = body else {
                return;
            };
            let mut output = BytesMut::with_capacity(header.len() + body.len());
            output.extend_from_slice(&header);
            output.extend_from_slice(&body);
            frame.chunks[0] = Chunk::Bytes(output.freeze());
        }
    }
}

/// `body` decoded as `T`, its throttle time raised to `throttle_ms`, encoded again.
fn reencode<T: Decodable + Encodable>(
    mut body: Bytes,
    version: i16,
    field: impl Fn(&mut T) -> &mut i32,
    throttle_ms: i32,
) -> Option<Bytes> {
    let mut response = T::decode(&mut body, version).ok()?;
    let current = field(&mut response);
    *current = (*current).max(throttle_ms);
    let mut output = BytesMut::new();
    response.encode(&mut output, version).ok()?;
    Some(output.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::api_versions;
    use crate::protocol::encode_response;
    use kafka_protocol::messages::*;

    /// Patches a default response of every served version and reads it back with the crate's
    /// decoder: the table above matches the crate's schemas. A version has the field when
    /// setting it changes the encoding (the oracle is the crate, not the table).
    fn check<T: Default + Decodable + Encodable>(api_key: ApiKey, field: fn(&mut T) -> &mut i32) {
        let range = api_versions::supported(api_key).expect("served");
        for version in range.min..=range.max {
            // Versions advertised but refused at request time (Produce v0–v2) have no layout.
            if T::default().encode(&mut BytesMut::new(), version).is_err() {
                continue;
            }
            let mut with_field = T::default();
            *field(&mut with_field) = 1234;
            let has_field = encode_response(api_key, version, 7, &with_field)
                .to_bytes()
                .unwrap()
                != encode_response(api_key, version, 7, &T::default())
                    .to_bytes()
                    .unwrap();
            let mut frame = encode_response(api_key, version, 7, &T::default());
            let before = frame.to_bytes().unwrap();
            raise(&mut frame, api_key, version, 1234);
            let mut bytes = frame.to_bytes().unwrap();
            if !has_field {
                assert_eq!(bytes, before, "{api_key:?} v{version} has no throttle time");
                continue;
            }
            let header =
                ResponseHeader::decode(&mut bytes, api_key.response_header_version(version))
                    .unwrap();
            assert_eq!(header.correlation_id, 7);
            let mut response = T::decode(&mut bytes, version).unwrap();
            assert_eq!(*field(&mut response), 1234, "{api_key:?} v{version}");
            assert!(!bytes.has_remaining(), "{api_key:?} v{version}");
            // Never lowered.
            raise(&mut frame, api_key, version, 10);
            let mut bytes = frame.to_bytes().unwrap();
            ResponseHeader::decode(&mut bytes, api_key.response_header_version(version)).unwrap();
            assert_eq!(*field(&mut T::decode(&mut bytes, version).unwrap()), 1234);
        }
    }

    macro_rules! check_all {
        ($($api:ident => $response:ty),* $(,)?) => {
            $(check::<$response>(ApiKey::$api, |r| &mut r.throttle_time_ms);)*
        };
    }

    #[test]
    fn throttle_time_lands_in_the_field() {
        check_all!(
            Produce => ProduceResponse,
            Fetch => FetchResponse,
            Metadata => MetadataResponse,
            OffsetCommit => OffsetCommitResponse,
            OffsetFetch => OffsetFetchResponse,
            FindCoordinator => FindCoordinatorResponse,
            JoinGroup => JoinGroupResponse,
            Heartbeat => HeartbeatResponse,
            SyncGroup => SyncGroupResponse,
            ListOffsets => ListOffsetsResponse,
            CreateTopics => CreateTopicsResponse,
            DeleteTopics => DeleteTopicsResponse,
            CreatePartitions => CreatePartitionsResponse,
            OffsetDelete => OffsetDeleteResponse,
            DescribeConfigs => DescribeConfigsResponse,
            InitProducerId => InitProducerIdResponse,
            DescribeClientQuotas => DescribeClientQuotasResponse,
            DescribeCluster => DescribeClusterResponse,
            ConsumerGroupHeartbeat => ConsumerGroupHeartbeatResponse,
        );
    }

    #[test]
    fn versions_without_the_field_are_left_alone() {
        // Metadata v0–v2 has no throttle time: the frame is unchanged.
        let range = api_versions::supported(ApiKey::Metadata).unwrap();
        if range.min < 3 {
            let mut frame =
                encode_response(ApiKey::Metadata, range.min, 7, &MetadataResponse::default());
            let before = frame.to_bytes().unwrap();
            raise(&mut frame, ApiKey::Metadata, range.min, 1234);
            assert_eq!(frame.to_bytes().unwrap(), before);
        }
    }
}
