//! The records of `__consumer_offsets`, in Kafka's own key/value schemas, so that the topic's
//! bytes mean the same thing to dlog and to Kafka's tools:
//!
//! ```text
//! OffsetCommitKey   v1: group string, topic string, partition int32
//! OffsetCommitValue v3: offset int64, leader_epoch int32, metadata string, commit_timestamp int64
//! GroupMetadataKey  v2: group string
//! GroupMetadataValue v3: protocol_type string, generation int32, protocol string?, leader string?,
//!                       current_state_timestamp int64, members [member_id, group_instance_id?,
//!                       client_id, client_host, rebalance_timeout int32, session_timeout int32,
//!                       subscription bytes, assignment bytes]
//! ```
//!
//! Each key and value starts with its int16 schema version. A null value is a tombstone.
//! Decoding also accepts the older value versions Kafka wrote (offset v0–v3, group v0–v3), so a
//! topic that began under an older layout still loads.

use bytes::{Buf, BufMut, Bytes};

use super::consumer_records::{self, ConsumerKey, ConsumerValue};

/// Key versions 0 and 1 are offset commits; 2 is group metadata (Kafka's numbering).
const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
const GROUP_METADATA_KEY_VERSION: i16 = 2;
const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
const GROUP_METADATA_VALUE_VERSION: i16 = 3;
/// Members one group metadata record may list on load: a corrupt count cannot allocate more.
const MEMBERS_PER_RECORD_MAX: usize = 100_000;

/// Kafka's `Utils.abs(groupId.hashCode()) % partitions`: Java's String hash over UTF-16 units.
pub fn partition_for(group_id: &str, partition_count: i32) -> i32 {
    assert!(partition_count > 0, "__consumer_offsets has partitions");
    super::transaction::java_hash_abs(group_id) % partition_count
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub current_state_timestamp_ms: i64,
    pub members: Vec<MemberValue>,
}

/// One decoded record of `__consumer_offsets`; `None` values are tombstones.
#[derive(Debug, PartialEq, Eq)]
pub enum OffsetsRecord {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<OffsetValue>,
    },
    Group {
        group: String,
        value: Option<GroupValue>,
    },
    /// A KIP-848 consumer group record (key versions 3–8).
    Consumer {
        group: String,
        key: ConsumerKey,
        value: Option<ConsumerValue>,
    },
}

impl OffsetsRecord {
    /// The group the record belongs to (what picks its `__consumer_offsets` partition).
    pub fn group_id(&self) -> &str {
        match self {
            OffsetsRecord::Offset { group, .. }
            | OffsetsRecord::Group { group, .. }
            | OffsetsRecord::Consumer { group, .. } => group,
        }
    }
}

pub(super) fn put_string(output: &mut Vec<u8>, value: &str) {
    let length = i16::try_from(value.len()).expect("strings here are bounded below 32 KiB");
    output.put_i16(length);
    output.put_slice(value.as_bytes());
}

fn put_nullable_string(output: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(value) => put_string(output, value),
        None => output.put_i16(-1),
    }
}

fn put_bytes(output: &mut Vec<u8>, value: &[u8]) {
    output.put_i32(value.len() as i32);
    output.put_slice(value);
}

pub fn offset_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut output = Vec::with_capacity(10 + group.len() + topic.len());
    output.put_i16(OFFSET_COMMIT_KEY_VERSION);
    put_string(&mut output, group);
    put_string(&mut output, topic);
    output.put_i32(partition);
    output
}

pub fn offset_value(value: &OffsetValue) -> Vec<u8> {
    let mut output = Vec::with_capacity(26 + value.metadata.len());
    output.put_i16(OFFSET_COMMIT_VALUE_VERSION);
    output.put_i64(value.offset);
    output.put_i32(value.leader_epoch);
    put_string(&mut output, &value.metadata);
    output.put_i64(value.commit_timestamp_ms);
    output
}

pub fn group_key(group: &str) -> Vec<u8> {
    let mut output = Vec::with_capacity(4 + group.len());
    output.put_i16(GROUP_METADATA_KEY_VERSION);
    put_string(&mut output, group);
    output
}

pub fn group_value(value: &GroupValue) -> Vec<u8> {
    let mut output = Vec::with_capacity(64);
    output.put_i16(GROUP_METADATA_VALUE_VERSION);
    put_string(&mut output, &value.protocol_type);
    output.put_i32(value.generation);
    put_nullable_string(&mut output, value.protocol.as_deref());
    put_nullable_string(&mut output, value.leader.as_deref());
    output.put_i64(value.current_state_timestamp_ms);
    output.put_i32(value.members.len() as i32);
    for member in &value.members {
        put_string(&mut output, &member.member_id);
        put_nullable_string(&mut output, member.group_instance_id.as_deref());
        put_string(&mut output, &member.client_id);
        put_string(&mut output, &member.client_host);
        output.put_i32(member.rebalance_timeout_ms);
        output.put_i32(member.session_timeout_ms);
        put_bytes(&mut output, &member.subscription);
        put_bytes(&mut output, &member.assignment);
    }
    output
}

/// A bounds-checked reader over a record key or value.
pub(super) struct Reader<'a> {
    pub(super) bytes: &'a [u8],
}

pub(super) type DecodeResult<T> = Result<T, String>;

impl Reader<'_> {
    pub(super) fn need(&self, count: usize) -> DecodeResult<()> {
        if self.bytes.remaining() < count {
            return Err(format!(
                "truncated: need {count} bytes, {} left",
                self.bytes.len()
            ));
        }
        Ok(())
    }
    pub(super) fn i16(&mut self) -> DecodeResult<i16> {
        self.need(2)?;
        Ok(self.bytes.get_i16())
    }
    pub(super) fn i32(&mut self) -> DecodeResult<i32> {
        self.need(4)?;
        Ok(self.bytes.get_i32())
    }
    pub(super) fn i64(&mut self) -> DecodeResult<i64> {
        self.need(8)?;
        Ok(self.bytes.get_i64())
    }
    pub(super) fn nullable_string(&mut self) -> DecodeResult<Option<String>> {
        let length = self.i16()?;
        if length < 0 {
            return Ok(None);
        }
        let length = length as usize;
        self.need(length)?;
        let text = String::from_utf8(self.bytes[..length].to_vec()).map_err(|e| e.to_string())?;
        self.bytes.advance(length);
        Ok(Some(text))
    }
    pub(super) fn string(&mut self) -> DecodeResult<String> {
        self.nullable_string()?
            .ok_or_else(|| "null where a string is required".to_string())
    }
    pub(super) fn bytes(&mut self) -> DecodeResult<Bytes> {
        let length = self.i32()?;
        if length < 0 {
            return Ok(Bytes::new());
        }
        let length = length as usize;
        self.need(length)?;
        let value = Bytes::copy_from_slice(&self.bytes[..length]);
        self.bytes.advance(length);
        Ok(value)
    }
}

fn decode_offset_value(bytes: &[u8]) -> DecodeResult<OffsetValue> {
    let mut reader = Reader { bytes };
    let version = reader.i16()?;
    let offset = reader.i64()?;
    let leader_epoch = if version >= 3 { reader.i32()? } else { -1 };
    let metadata = reader.string()?;
    let commit_timestamp_ms = reader.i64()?;
    match version {
        0..=3 => {}
        other => return Err(format!("offset commit value version {other}")),
    }
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    })
}

fn decode_group_value(bytes: &[u8]) -> DecodeResult<GroupValue> {
    let mut reader = Reader { bytes };
    let version = reader.i16()?;
    if !(0..=3).contains(&version) {
        return Err(format!("group metadata value version {version}"));
    }
    let protocol_type = reader.string()?;
    let generation = reader.i32()?;
    let protocol = reader.nullable_string()?;
    let leader = reader.nullable_string()?;
    let current_state_timestamp_ms = if version >= 2 { reader.i64()? } else { -1 };
    let count = reader.i32()?;
    if count < 0 || count as usize > MEMBERS_PER_RECORD_MAX {
        return Err(format!("member count {count}"));
    }
    let mut members = Vec::new();
    for _ in 0..count {
        let member_id = reader.string()?;
        let group_instance_id = if version >= 3 {
            reader.nullable_string()?
        } else {
            None
        };
        let client_id = reader.string()?;
        let client_host = reader.string()?;
        let rebalance_timeout_ms = if version >= 1 { reader.i32()? } else { -1 };
        let session_timeout_ms = reader.i32()?;
        let rebalance_timeout_ms = if version >= 1 {
            rebalance_timeout_ms
        } else {
            session_timeout_ms
        };
        let subscription = reader.bytes()?;
        let assignment = reader.bytes()?;
        members.push(MemberValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp_ms,
        members,
    })
}

/// Decodes one record. Ok(None) for key versions this broker does not keep (share groups,
/// streams groups, regular expressions): they are skipped, as Kafka skips unknown types.
pub fn decode(key: &[u8], value: Option<&[u8]>) -> DecodeResult<Option<OffsetsRecord>> {
    let mut reader = Reader { bytes: key };
    match reader.i16()? {
        0 | 1 => {
            let group = reader.string()?;
            let topic = reader.string()?;
            let partition = reader.i32()?;
            let value = value.map(decode_offset_value).transpose()?;
            Ok(Some(OffsetsRecord::Offset {
                group,
                topic,
                partition,
                value,
            }))
        }
        2 => {
            let group = reader.string()?;
            let value = value.map(decode_group_value).transpose()?;
            Ok(Some(OffsetsRecord::Group { group, value }))
        }
        record_type => consumer_records::decode(record_type, reader, value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_follow_javas_string_hash() {
        // "abc".hashCode() == 96354 in Java; 96354 % 50 == 4.
        assert_eq!(partition_for("abc", 50), 4);
        assert_eq!(partition_for("", 50), 0);
        for group in [
            "g",
            "group-1",
            "ünïcode",
            "a-much-longer-consumer-group-name",
        ] {
            assert!((0..50).contains(&partition_for(group, 50)));
        }
    }

    #[test]
    fn offset_records_roundtrip() {
        let value = OffsetValue {
            offset: 42,
            leader_epoch: 3,
            metadata: "meta".into(),
            commit_timestamp_ms: 1234,
        };
        let key = offset_key("g", "t", 7);
        let encoded = offset_value(&value);
        assert_eq!(
            decode(&key, Some(&encoded)).unwrap(),
            Some(OffsetsRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 7,
                value: Some(value)
            })
        );
        assert!(matches!(
            decode(&key, None).unwrap(),
            Some(OffsetsRecord::Offset { value: None, .. })
        ));
    }

    #[test]
    fn group_records_roundtrip() {
        let value = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            current_state_timestamp_ms: 99,
            members: vec![MemberValue {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300000,
                session_timeout_ms: 45000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        let encoded = group_value(&value);
        assert_eq!(
            decode(&group_key("g"), Some(&encoded)).unwrap(),
            Some(OffsetsRecord::Group {
                group: "g".into(),
                value: Some(value)
            })
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            &b"\x00"[..],
            &b"\x00\x01\x7f\xff"[..],
            &b"\x00\x02\x00\x01g"[..],
        ] {
            let _ = decode(bytes, Some(b"\x00\x03\xff\xff\xff\xff"));
        }
        let mut value = vec![0, 3, 0, 1, b'c', 0, 0, 0, 1, 255, 255, 255, 255];
        value.extend_from_slice(&0i64.to_be_bytes());
        value.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode(&group_key("g"), Some(&value)).is_err());
    }
}
