//! The KIP-848 consumer group records of `__consumer_offsets`, in Kafka's own schemas (its
//! `group-coordinator` message definitions), so a restarted or new coordinator gets the group's
//! members, epochs and assignments back and members carry on with their epochs:
//!
//! ```text
//! key (int16 record type, then non-flexible strings)  value (int16 version 0, flexible)
//! 3 ConsumerGroupMetadataKey: group                    Epoch int32
//! 4 ConsumerGroupPartitionMetadataKey: group           Topics [TopicId uuid, TopicName string,
//!                                                        NumPartitions int32, PartitionMetadata []]
//! 5 ConsumerGroupMemberMetadataKey: group, member      InstanceId string?, RackId string?,
//!                                                        ClientId, ClientHost, SubscribedTopicNames
//!                                                        []string, SubscribedTopicRegex string?,
//!                                                        RebalanceTimeoutMs int32, ServerAssignor string?
//! 6 ConsumerGroupTargetAssignmentMetadataKey: group    AssignmentEpoch int32
//! 7 ConsumerGroupTargetAssignmentMemberKey: group, member  TopicPartitions [TopicId, Partitions []int32]
//! 8 ConsumerGroupCurrentMemberAssignmentKey: group, member  MemberEpoch int32, PreviousMemberEpoch
//!                                                        int32, State int8, AssignedPartitions
//!                                                        [TopicId, Partitions], PartitionsPendingRevocation
//! ```
//!
//! Flexible values use compact strings and arrays (unsigned varint length + 1, 0 for null) and
//! end every struct with tagged fields; we write none and skip any we read (newer Kafka
//! versions add some, e.g. the metadata hash).

use bytes::BufMut;
use uuid::Uuid;

use super::records::{put_string, DecodeResult, OffsetsRecord, Reader};

/// Partitions one topic entry may list on load: a corrupt count cannot allocate more.
const ARRAY_LENGTH_MAX: usize = 1 << 20;
const VALUE_VERSION: i16 = 0;

/// Which record of a consumer group (the key's record type and its member id).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConsumerKey {
    Metadata,
    PartitionMetadata,
    MemberMetadata(String),
    TargetAssignmentMetadata,
    TargetAssignmentMember(String),
    CurrentMemberAssignment(String),
}

/// Partitions by topic id, as the assignment records carry them (sorted: deterministic bytes).
pub type TopicPartitions = Vec<(Uuid, Vec<i32>)>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberMetadata {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentAssignment {
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    /// Kafka's MemberState: 0 stable, 1 unrevoked partitions, 2 unreleased partitions.
    pub state: i8,
    pub assigned: TopicPartitions,
    pub pending_revocation: TopicPartitions,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsumerValue {
    Metadata {
        epoch: i32,
    },
    /// (topic id, name, partition count) of every subscribed topic when the target was computed.
    PartitionMetadata(Vec<(Uuid, String, i32)>),
    MemberMetadata(MemberMetadata),
    TargetAssignmentMetadata {
        assignment_epoch: i32,
    },
    TargetAssignmentMember(TopicPartitions),
    CurrentMemberAssignment(CurrentAssignment),
}

impl ConsumerKey {
    fn record_type(&self) -> i16 {
        match self {
            ConsumerKey::Metadata => 3,
            ConsumerKey::PartitionMetadata => 4,
            ConsumerKey::MemberMetadata(_) => 5,
            ConsumerKey::TargetAssignmentMetadata => 6,
            ConsumerKey::TargetAssignmentMember(_) => 7,
            ConsumerKey::CurrentMemberAssignment(_) => 8,
        }
    }

    fn member_id(&self) -> Option<&str> {
        match self {
            ConsumerKey::MemberMetadata(member)
            | ConsumerKey::TargetAssignmentMember(member)
            | ConsumerKey::CurrentMemberAssignment(member) => Some(member),
            _ => None,
        }
    }
}

pub fn encode_key(group: &str, key: &ConsumerKey) -> Vec<u8> {
    let mut output = Vec::with_capacity(8 + group.len());
    output.put_i16(key.record_type());
    put_string(&mut output, group);
    if let Some(member) = key.member_id() {
        put_string(&mut output, member);
    }
    output
}

pub(super) fn put_uvarint(output: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        output.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    output.put_u8(value as u8);
}

fn put_compact_string(output: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(text) => {
            put_uvarint(output, text.len() as u64 + 1);
            output.put_slice(text.as_bytes());
        }
        None => put_uvarint(output, 0),
    }
}

fn put_length(output: &mut Vec<u8>, length: usize) {
    put_uvarint(output, length as u64 + 1);
}

/// No tagged fields.
fn put_no_tags(output: &mut Vec<u8>) {
    put_uvarint(output, 0);
}

fn put_topic_partitions(output: &mut Vec<u8>, topics: &TopicPartitions) {
    put_length(output, topics.len());
    for (topic_id, partitions) in topics {
        output.put_slice(topic_id.as_bytes());
        put_length(output, partitions.len());
        for partition in partitions {
            output.put_i32(*partition);
        }
        put_no_tags(output);
    }
}

pub fn encode_value(value: &ConsumerValue) -> Vec<u8> {
    let mut output = Vec::with_capacity(64);
    output.put_i16(VALUE_VERSION);
    match value {
        ConsumerValue::Metadata { epoch } => output.put_i32(*epoch),
        ConsumerValue::PartitionMetadata(topics) => {
            put_length(&mut output, topics.len());
            for (topic_id, name, partition_count) in topics {
                output.put_slice(topic_id.as_bytes());
                put_compact_string(&mut output, Some(name));
                output.put_i32(*partition_count);
                // PartitionMetadata (racks): unused since Kafka 4.0, written empty.
                put_length(&mut output, 0);
                put_no_tags(&mut output);
            }
        }
        ConsumerValue::MemberMetadata(member) => {
            put_compact_string(&mut output, member.instance_id.as_deref());
            put_compact_string(&mut output, member.rack_id.as_deref());
            put_compact_string(&mut output, Some(&member.client_id));
            put_compact_string(&mut output, Some(&member.client_host));
            put_length(&mut output, member.subscribed_topic_names.len());
            for name in &member.subscribed_topic_names {
                put_compact_string(&mut output, Some(name));
            }
            put_compact_string(&mut output, member.subscribed_topic_regex.as_deref());
            output.put_i32(member.rebalance_timeout_ms);
            put_compact_string(&mut output, member.server_assignor.as_deref());
        }
        ConsumerValue::TargetAssignmentMetadata { assignment_epoch } => {
            output.put_i32(*assignment_epoch)
        }
        ConsumerValue::TargetAssignmentMember(topics) => put_topic_partitions(&mut output, topics),
        ConsumerValue::CurrentMemberAssignment(current) => {
            output.put_i32(current.member_epoch);
            output.put_i32(current.previous_member_epoch);
            output.put_i8(current.state);
            put_topic_partitions(&mut output, &current.assigned);
            put_topic_partitions(&mut output, &current.pending_revocation);
        }
    }
    put_no_tags(&mut output);
    output
}

impl Reader<'_> {
    fn uvarint(&mut self) -> DecodeResult<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            self.need(1)?;
            let byte = self.bytes[0];
            self.bytes = &self.bytes[1..];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    /// A compact array's length; None for a null array.
    fn compact_length(&mut self) -> DecodeResult<Option<usize>> {
        match self.uvarint()? {
            0 => Ok(None),
            n if (n - 1) as usize > ARRAY_LENGTH_MAX => Err(format!("array of {} entries", n - 1)),
            n => Ok(Some((n - 1) as usize)),
        }
    }

    fn compact_nullable_string(&mut self) -> DecodeResult<Option<String>> {
        let Some(length) = self.compact_length()? else {
            return Ok(None);
        };
        self.need(length)?;
        let text = String::from_utf8(self.bytes[..length].to_vec()).map_err(|e| e.to_string())?;
        self.bytes = &self.bytes[length..];
        Ok(Some(text))
    }

    fn compact_string(&mut self) -> DecodeResult<String> {
        self.compact_nullable_string()?
            .ok_or_else(|| "null where a string is required".to_string())
    }

    fn uuid(&mut self) -> DecodeResult<Uuid> {
        self.need(16)?;
        let id = Uuid::from_slice(&self.bytes[..16]).map_err(|e| e.to_string())?;
        self.bytes = &self.bytes[16..];
        Ok(id)
    }

    fn i8(&mut self) -> DecodeResult<i8> {
        self.need(1)?;
        let value = self.bytes[0] as i8;
        self.bytes = &self.bytes[1..];
        Ok(value)
    }

    /// Skips a struct's tagged fields (fields of newer versions this broker does not use).
    fn skip_tags(&mut self) -> DecodeResult<()> {
        let count = self.uvarint()?;
        for _ in 0..count {
            self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.need(size)?;
            self.bytes = &self.bytes[size..];
        }
        Ok(())
    }

    fn topic_partitions(&mut self) -> DecodeResult<TopicPartitions> {
        let count = self.compact_length()?.unwrap_or(0);
        let mut topics = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            let topic_id = self.uuid()?;
            let length = self.compact_length()?.unwrap_or(0);
            let mut partitions = Vec::with_capacity(length.min(1024));
            for _ in 0..length {
                partitions.push(self.i32()?);
            }
            self.skip_tags()?;
            topics.push((topic_id, partitions));
        }
        Ok(topics)
    }
}

fn decode_value(key: &ConsumerKey, bytes: &[u8]) -> DecodeResult<ConsumerValue> {
    let mut reader = Reader { bytes };
    let version = reader.i16()?;
    if version != VALUE_VERSION {
        return Err(format!("consumer group record value version {version}"));
    }
    let value = match key {
        ConsumerKey::Metadata => ConsumerValue::Metadata {
            epoch: reader.i32()?,
        },
        ConsumerKey::PartitionMetadata => {
            let count = reader.compact_length()?.unwrap_or(0);
            let mut topics = Vec::with_capacity(count.min(1024));
            for _ in 0..count {
                let topic_id = reader.uuid()?;
                let name = reader.compact_string()?;
                let partition_count = reader.i32()?;
                for _ in 0..reader.compact_length()?.unwrap_or(0) {
                    reader.i32()?;
                    for _ in 0..reader.compact_length()?.unwrap_or(0) {
                        reader.compact_string()?;
                    }
                    reader.skip_tags()?;
                }
                reader.skip_tags()?;
                topics.push((topic_id, name, partition_count));
            }
            ConsumerValue::PartitionMetadata(topics)
        }
        ConsumerKey::MemberMetadata(_) => {
            let instance_id = reader.compact_nullable_string()?;
            let rack_id = reader.compact_nullable_string()?;
            let client_id = reader.compact_string()?;
            let client_host = reader.compact_string()?;
            let count = reader.compact_length()?.unwrap_or(0);
            let mut subscribed_topic_names = Vec::with_capacity(count.min(1024));
            for _ in 0..count {
                subscribed_topic_names.push(reader.compact_string()?);
            }
            ConsumerValue::MemberMetadata(MemberMetadata {
                instance_id,
                rack_id,
                client_id,
                client_host,
                subscribed_topic_names,
                subscribed_topic_regex: reader.compact_nullable_string()?,
                rebalance_timeout_ms: reader.i32()?,
                server_assignor: reader.compact_nullable_string()?,
            })
        }
        ConsumerKey::TargetAssignmentMetadata => ConsumerValue::TargetAssignmentMetadata {
            assignment_epoch: reader.i32()?,
        },
        ConsumerKey::TargetAssignmentMember(_) => {
            ConsumerValue::TargetAssignmentMember(reader.topic_partitions()?)
        }
        ConsumerKey::CurrentMemberAssignment(_) => {
            ConsumerValue::CurrentMemberAssignment(CurrentAssignment {
                member_epoch: reader.i32()?,
                previous_member_epoch: reader.i32()?,
                state: reader.i8()?,
                assigned: reader.topic_partitions()?,
                pending_revocation: reader.topic_partitions()?,
            })
        }
    };
    reader.skip_tags()?;
    Ok(value)
}

/// Decodes a record of type `record_type` whose key's type was already read; Ok(None) for
/// the types of other group kinds.
pub(super) fn decode(
    record_type: i16,
    mut key_reader: Reader<'_>,
    value: Option<&[u8]>,
) -> DecodeResult<Option<OffsetsRecord>> {
    if !(3..=8).contains(&record_type) {
        return Ok(None);
    }
    let group = key_reader.string()?;
    let key = match record_type {
        3 => ConsumerKey::Metadata,
        4 => ConsumerKey::PartitionMetadata,
        5 => ConsumerKey::MemberMetadata(key_reader.string()?),
        6 => ConsumerKey::TargetAssignmentMetadata,
        7 => ConsumerKey::TargetAssignmentMember(key_reader.string()?),
        _ => ConsumerKey::CurrentMemberAssignment(key_reader.string()?),
    };
    let value = value.map(|bytes| decode_value(&key, bytes)).transpose()?;
    Ok(Some(OffsetsRecord::Consumer { group, key, value }))
}

#[cfg(test)]
mod tests {
    use super::super::records;
    use super::*;

    fn roundtrip(key: ConsumerKey, value: ConsumerValue) {
        let key_bytes = encode_key("g", &key);
        let value_bytes = encode_value(&value);
        let decoded = records::decode(&key_bytes, Some(&value_bytes)).expect("decodes");
        assert_eq!(
            decoded,
            Some(OffsetsRecord::Consumer {
                group: "g".into(),
                key: key.clone(),
                value: Some(value),
            })
        );
        let tombstone = records::decode(&key_bytes, None).expect("decodes");
        assert_eq!(
            tombstone,
            Some(OffsetsRecord::Consumer {
                group: "g".into(),
                key,
                value: None,
            })
        );
    }

    #[test]
    fn every_record_type_roundtrips() {
        let topic = Uuid::from_u128(7);
        roundtrip(ConsumerKey::Metadata, ConsumerValue::Metadata { epoch: 5 });
        roundtrip(
            ConsumerKey::PartitionMetadata,
            ConsumerValue::PartitionMetadata(vec![(topic, "t".into(), 3)]),
        );
        roundtrip(
            ConsumerKey::MemberMetadata("m".into()),
            ConsumerValue::MemberMetadata(MemberMetadata {
                instance_id: None,
                rack_id: Some("r1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                subscribed_topic_names: vec!["t".into(), "u".into()],
                subscribed_topic_regex: Some("x.*".into()),
                rebalance_timeout_ms: 30_000,
                server_assignor: Some("uniform".into()),
            }),
        );
        roundtrip(
            ConsumerKey::TargetAssignmentMetadata,
            ConsumerValue::TargetAssignmentMetadata {
                assignment_epoch: 5,
            },
        );
        roundtrip(
            ConsumerKey::TargetAssignmentMember("m".into()),
            ConsumerValue::TargetAssignmentMember(vec![(topic, vec![0, 2])]),
        );
        roundtrip(
            ConsumerKey::CurrentMemberAssignment("m".into()),
            ConsumerValue::CurrentMemberAssignment(CurrentAssignment {
                member_epoch: 5,
                previous_member_epoch: 4,
                state: 1,
                assigned: vec![(topic, vec![0])],
                pending_revocation: vec![(topic, vec![2])],
            }),
        );
    }

    #[test]
    fn known_bytes_of_kafkas_schema() {
        // ConsumerGroupMetadataValue v0 {Epoch=1}: version, int32, no tagged fields.
        assert_eq!(
            encode_value(&ConsumerValue::Metadata { epoch: 1 }),
            [0, 0, 0, 0, 0, 1, 0]
        );
        // ConsumerGroupMetadataKey: record type 3, int16-length string.
        assert_eq!(
            encode_key("ab", &ConsumerKey::Metadata),
            [0, 3, 0, 2, b'a', b'b']
        );
    }

    #[test]
    fn tagged_fields_of_newer_versions_are_skipped() {
        // Epoch=1, then one tagged field (tag 0, 8 bytes: Kafka 4.1's metadata hash).
        let mut bytes = vec![0, 0, 0, 0, 0, 1, 1, 0, 8];
        bytes.extend_from_slice(&[9; 8]);
        let key = encode_key("g", &ConsumerKey::Metadata);
        assert_eq!(
            records::decode(&key, Some(&bytes)).expect("decodes"),
            Some(OffsetsRecord::Consumer {
                group: "g".into(),
                key: ConsumerKey::Metadata,
                value: Some(ConsumerValue::Metadata { epoch: 1 }),
            })
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let key = encode_key("g", &ConsumerKey::CurrentMemberAssignment("m".into()));
        for value in [
            &[][..],
            &[0, 0, 1][..],
            &[0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0xff][..],
        ] {
            assert!(records::decode(&key, Some(value)).is_err());
        }
        let huge = [
            0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0xff, 0xff, 0xff, 0xff, 0x0f,
        ];
        assert!(records::decode(&key, Some(&huge)).is_err());
        assert!(records::decode(&[0, 5, 0, 1, b'g'], None).is_err());
    }
}
