//! The Fetch response (v4–17), laid out by hand so that record data can stay in the segment
//! files: the response is a list of chunks, memory for the fields and file regions for the
//! records, which the connection sends with sendfile(2). Its bytes are tested against the
//! `kafka-protocol` crate's encoding of the same response.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use uuid::Uuid;

use super::{encode_response_header, Chunk, ResponseFrame};
use crate::log::partition::FileSlice;

/// First version with compact (flexible) encodings and tagged fields.
const FLEXIBLE_VERSION: i16 = 12;
/// First version that names topics by id instead of by name.
const TOPIC_ID_VERSION: i16 = 13;

#[derive(Clone, Debug)]
pub struct PartitionResult {
    pub partition_index: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// (producer id, first offset); None encodes as null.
    pub aborted_transactions: Option<Vec<(i64, i64)>>,
    pub preferred_read_replica: i32,
    /// For a follower whose log diverged (v12+): the leader's (epoch, end offset) to truncate
    /// by (KIP-595's DivergingEpoch, tagged field 0).
    pub diverging_epoch: Option<(i32, i64)>,
    pub records: Option<RecordsSource>,
}

/// Where a partition's record bytes come from.
#[derive(Clone, Debug)]
pub enum RecordsSource {
    File(FileSlice),
    Memory(Bytes),
}

impl RecordsSource {
    fn len(&self) -> u64 {
        match self {
            RecordsSource::File(slice) => slice.length_bytes,
            RecordsSource::Memory(bytes) => bytes.len() as u64,
        }
    }
}

#[derive(Clone, Debug)]
pub struct TopicResult {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: Vec<PartitionResult>,
}

#[derive(Clone, Debug, Default)]
pub struct FetchResult {
    pub throttle_time_ms: i32,
    pub error_code: i16,
    pub session_id: i32,
    pub topics: Vec<TopicResult>,
}

fn put_unsigned_varint(output: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        output.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    output.put_u8(value as u8);
}

fn put_array_length(output: &mut BytesMut, length: usize, flexible: bool) {
    if flexible {
        put_unsigned_varint(output, length as u64 + 1);
    } else {
        output.put_i32(length as i32);
    }
}

/// Encodes a Fetch response. Memory parts are gathered into as few chunks as possible; each
/// partition's records become their own chunk.
pub fn encode(version: i16, correlation_id: i32, result: &FetchResult) -> ResponseFrame {
    assert!(
        (4..=17).contains(&version),
        "fetch response v{version} is not laid out here"
    );
    let flexible = version >= FLEXIBLE_VERSION;
    let mut chunks = Vec::new();
    let mut output = BytesMut::with_capacity(256);
    encode_response_header(&mut output, ApiKey::Fetch, version, correlation_id);
    output.put_i32(result.throttle_time_ms);
    if version >= 7 {
        output.put_i16(result.error_code);
        output.put_i32(result.session_id);
    }
    put_array_length(&mut output, result.topics.len(), flexible);
    for topic in &result.topics {
        if version >= TOPIC_ID_VERSION {
            output.put_slice(topic.topic_id.as_bytes());
        } else if flexible {
            put_unsigned_varint(&mut output, topic.name.len() as u64 + 1);
            output.put_slice(topic.name.as_bytes());
        } else {
            output.put_i16(topic.name.len() as i16);
            output.put_slice(topic.name.as_bytes());
        }
        put_array_length(&mut output, topic.partitions.len(), flexible);
        for partition in &topic.partitions {
            output.put_i32(partition.partition_index);
            output.put_i16(partition.error_code);
            output.put_i64(partition.high_watermark);
            output.put_i64(partition.last_stable_offset);
            if version >= 5 {
                output.put_i64(partition.log_start_offset);
            }
            match &partition.aborted_transactions {
                None if flexible => put_unsigned_varint(&mut output, 0),
                None => output.put_i32(-1),
                Some(aborted) => {
                    put_array_length(&mut output, aborted.len(), flexible);
                    for (producer_id, first_offset) in aborted {
                        output.put_i64(*producer_id);
                        output.put_i64(*first_offset);
                        if flexible {
                            put_unsigned_varint(&mut output, 0);
                        }
                    }
                }
            }
            if version >= 11 {
                output.put_i32(partition.preferred_read_replica);
            }
            match &partition.records {
                None if flexible => put_unsigned_varint(&mut output, 0),
                None => output.put_i32(-1),
                Some(records) => {
                    if flexible {
                        put_unsigned_varint(&mut output, records.len() + 1);
                    } else {
                        output.put_i32(records.len() as i32);
                    }
                    if records.len() > 0 {
                        chunks.push(Chunk::Bytes(output.split().freeze()));
                        chunks.push(match records {
                            RecordsSource::File(slice) => Chunk::File(slice.clone()),
                            RecordsSource::Memory(bytes) => Chunk::Bytes(bytes.clone()),
                        });
                    }
                }
            }
            if flexible {
                match partition.diverging_epoch {
                    None => put_unsigned_varint(&mut output, 0), // no partition tagged fields
                    Some((epoch, end_offset)) => {
                        put_unsigned_varint(&mut output, 1); // one tagged field
                        put_unsigned_varint(&mut output, 0); // tag 0: DivergingEpoch
                        put_unsigned_varint(&mut output, 4 + 8 + 1); // its size in bytes
                        output.put_i32(epoch);
                        output.put_i64(end_offset);
                        put_unsigned_varint(&mut output, 0); // its own tagged fields
                    }
                }
            }
        }
        if flexible {
            put_unsigned_varint(&mut output, 0); // topic tagged fields
        }
    }
    if flexible {
        put_unsigned_varint(&mut output, 0); // response tagged fields
    }
    chunks.push(Chunk::Bytes(output.freeze()));
    ResponseFrame { chunks }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, FetchResponse, FetchableTopicResponse, PartitionData,
    };
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn sample(records: &[u8]) -> FetchResult {
        let partition =
            |index: i32, records: Option<RecordsSource>, aborted: Option<Vec<(i64, i64)>>| {
                PartitionResult {
                    partition_index: index,
                    error_code: 0,
                    high_watermark: 100,
                    last_stable_offset: 90,
                    log_start_offset: 3,
                    aborted_transactions: aborted,
                    preferred_read_replica: -1,
                    diverging_epoch: None,
                    records,
                }
            };
        FetchResult {
            throttle_time_ms: 0,
            error_code: 0,
            session_id: 77,
            topics: vec![TopicResult {
                name: "orders".into(),
                topic_id: Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0),
                partitions: vec![
                    partition(
                        0,
                        Some(RecordsSource::Memory(Bytes::copy_from_slice(records))),
                        Some(vec![(5, 6)]),
                    ),
                    partition(1, None, None),
                    partition(2, Some(RecordsSource::Memory(Bytes::new())), Some(vec![])),
                ],
            }],
        }
    }

    fn crate_encoding(version: i16, result: &FetchResult) -> Vec<u8> {
        let topics = result
            .topics
            .iter()
            .map(|topic| {
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| {
                        let records = p.records.as_ref().map(|r| match r {
                            RecordsSource::Memory(bytes) => bytes.clone(),
                            RecordsSource::File(_) => unreachable!(),
                        });
                        let aborted = p.aborted_transactions.as_ref().map(|list| {
                            list.iter()
                                .map(|(id, first)| {
                                    AbortedTransaction::default()
                                        .with_producer_id(kafka_protocol::messages::ProducerId(*id))
                                        .with_first_offset(*first)
                                })
                                .collect()
                        });
                        PartitionData::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(p.error_code)
                            .with_high_watermark(p.high_watermark)
                            .with_last_stable_offset(p.last_stable_offset)
                            .with_log_start_offset(p.log_start_offset)
                            .with_aborted_transactions(aborted)
                            .with_preferred_read_replica(kafka_protocol::messages::BrokerId(
                                p.preferred_read_replica,
                            ))
                            .with_diverging_epoch(
                                kafka_protocol::messages::fetch_response::EpochEndOffset::default()
                                    .with_epoch(p.diverging_epoch.map_or(-1, |d| d.0))
                                    .with_end_offset(p.diverging_epoch.map_or(-1, |d| d.1)),
                            )
                            .with_records(records)
                    })
                    .collect();
                let mut response = FetchableTopicResponse::default().with_partitions(partitions);
                if version >= TOPIC_ID_VERSION {
                    response = response.with_topic_id(topic.topic_id);
                } else {
                    response =
                        response.with_topic(TopicName(StrBytes::from_string(topic.name.clone())));
                }
                response
            })
            .collect();
        let mut body = FetchResponse::default()
            .with_throttle_time_ms(result.throttle_time_ms)
            .with_responses(topics);
        if version >= 7 {
            body = body
                .with_error_code(result.error_code)
                .with_session_id(result.session_id);
        }
        let mut output = BytesMut::new();
        encode_response_header(&mut output, ApiKey::Fetch, version, 9);
        body.encode(&mut output, version).unwrap();
        output.to_vec()
    }

    #[test]
    fn layout_matches_the_protocol_crate_for_every_version() {
        for version in 4..=17 {
            let mut result = sample(b"record-bytes");
            if version < 7 {
                result.session_id = 0;
            }
            if version >= FLEXIBLE_VERSION {
                result.topics[0].partitions[1].diverging_epoch = Some((4, 1234));
            }
            let ours = encode(version, 9, &result).to_bytes().unwrap();
            assert_eq!(
                ours.to_vec(),
                crate_encoding(version, &result),
                "fetch v{version}"
            );
        }
    }
}
