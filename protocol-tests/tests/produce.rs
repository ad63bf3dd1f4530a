//! Produce v3–v12 (and v0–v2, refused per partition): offsets, batch validation errors,
//! unknown topics, acks=0.

use bytes::Bytes;
use dlog_protocol_tests::*;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, ListOffsetsRequest,
    ListOffsetsResponse, ProduceRequest, ProduceResponse,
};

const CORRUPT_MESSAGE: i16 = 2;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const MESSAGE_TOO_LARGE: i16 = 10;
const INVALID_TIMESTAMP: i16 = 32;
const INVALID_REQUIRED_ACKS: i16 = 21;
const UNSUPPORTED_VERSION: i16 = 35;
const INVALID_RECORD: i16 = 87;

fn log_end_offset(broker: &Broker, topic: &str, partition: i32) -> i64 {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(-1)])]);
    let response: ListOffsetsResponse = broker.connect().request(ApiKey::ListOffsets, 5, &request);
    let partition = &response.topics[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    partition.offset
}

/// The single partition response of a one-partition produce.
fn only_partition(
    response: &ProduceResponse,
) -> &kafka_protocol::messages::produce_response::PartitionProduceResponse {
    assert_eq!(response.responses.len(), 1);
    assert_eq!(response.responses[0].partition_responses.len(), 1);
    &response.responses[0].partition_responses[0]
}

#[test]
fn valid_batches_get_consecutive_offsets_v3_to_v12() {
    let broker = Broker::start();
    broker.create_topic("offsets", 1);
    let mut conn = broker.connect();
    let mut expected_offset = 0i64;
    for version in 3..=12i16 {
        let count = 1 + i32::from(version % 4);
        let records = batch(count, now_ms());
        let response: ProduceResponse = conn.request(
            ApiKey::Produce,
            version,
            &produce_request("offsets", 0, -1, &records),
        );
        assert_eq!(response.responses[0].name.as_str(), "offsets", "v{version}");
        let partition = only_partition(&response);
        assert_eq!(partition.index, 0, "v{version}");
        assert_eq!(
            partition.error_code, 0,
            "v{version}: {:?}",
            partition.error_message
        );
        assert_eq!(partition.base_offset, expected_offset, "v{version}");
        assert_eq!(
            partition.log_append_time_ms, -1,
            "v{version}: CreateTime topic"
        );
        if version >= 5 {
            assert_eq!(partition.log_start_offset, 0, "v{version}");
        }
        if version >= 8 {
            assert_eq!(partition.error_message, None, "v{version}");
            assert!(partition.record_errors.is_empty(), "v{version}");
        }
        assert_eq!(response.throttle_time_ms, 0);
        expected_offset += i64::from(count);
    }
    assert_eq!(log_end_offset(&broker, "offsets", 0), expected_offset);
}

#[test]
fn several_batches_and_partitions_in_one_request() {
    let broker = Broker::start();
    broker.create_topic("multi", 2);
    let now = now_ms();
    let two_batches = [batch(2, now), batch(3, now)].concat();
    let request = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name("multi"))
            .with_partition_data(vec![
                PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(Bytes::from(two_batches))),
                PartitionProduceData::default()
                    .with_index(1)
                    .with_records(Some(Bytes::from(batch(4, now)))),
                PartitionProduceData::default()
                    .with_index(7)
                    .with_records(Some(Bytes::from(batch(1, now)))),
            ])]);
    let response: ProduceResponse = broker.connect().request(ApiKey::Produce, 9, &request);
    let partitions = &response.responses[0].partition_responses;
    let summary: Vec<(i32, i16, i64)> = partitions
        .iter()
        .map(|p| (p.index, p.error_code, p.base_offset))
        .collect();
    assert_eq!(
        summary,
        [(0, 0, 0), (1, 0, 0), (7, UNKNOWN_TOPIC_OR_PARTITION, -1)]
    );
    assert_eq!(log_end_offset(&broker, "multi", 0), 5);
    assert_eq!(log_end_offset(&broker, "multi", 1), 4);
}

/// Produces `records` at every version 3..=12 and expects `error_code` on the partition,
/// with nothing appended.
fn expect_refused(broker: &Broker, topic: &str, records: &[u8], error_code: i16, what: &str) {
    let mut conn = broker.connect();
    for version in 3..=12i16 {
        let response: ProduceResponse = conn.request(
            ApiKey::Produce,
            version,
            &produce_request(topic, 0, -1, records),
        );
        let partition = only_partition(&response);
        assert_eq!(partition.error_code, error_code, "{what}, v{version}");
        assert_eq!(partition.base_offset, -1, "{what}, v{version}");
        if version >= 8 {
            assert!(
                partition.error_message.is_some(),
                "{what}, v{version}: message"
            );
        }
    }
    assert_eq!(
        log_end_offset(broker, topic, 0),
        0,
        "{what}: nothing appended"
    );
}

#[test]
fn corrupt_crc_is_corrupt_message() {
    let broker = Broker::start();
    broker.create_topic("crc", 1);
    let mut records = batch(3, now_ms());
    let last = records.len() - 1;
    records[last] ^= 0x55;
    expect_refused(
        &broker,
        "crc",
        &records,
        CORRUPT_MESSAGE,
        "flipped record byte",
    );
    let mut records = batch(3, now_ms());
    records[17] ^= 0x01;
    expect_refused(
        &broker,
        "crc",
        &records,
        CORRUPT_MESSAGE,
        "flipped CRC byte",
    );
}

#[test]
fn truncated_batch_is_corrupt_message() {
    let broker = Broker::start();
    broker.create_topic("truncated", 1);
    let records = batch(3, now_ms());
    expect_refused(
        &broker,
        "truncated",
        &records[..records.len() - 5],
        CORRUPT_MESSAGE,
        "batch shorter than its length",
    );
    expect_refused(
        &broker,
        "truncated",
        &records[..40],
        CORRUPT_MESSAGE,
        "partial header",
    );
    // A valid batch followed by a torn one: nothing is appended.
    let torn = [records.clone(), records[..30].to_vec()].concat();
    expect_refused(
        &broker,
        "truncated",
        &torn,
        CORRUPT_MESSAGE,
        "valid then torn",
    );
}

#[test]
fn bad_magic_is_invalid_record() {
    let broker = Broker::start();
    broker.create_topic("magic", 1);
    for magic in [0u8, 1, 3, 0xff] {
        // Magic is outside the CRC (which covers attributes onwards).
        let mut records = batch(2, now_ms());
        records[16] = magic;
        expect_refused(
            &broker,
            "magic",
            &records,
            INVALID_RECORD,
            &format!("magic {magic}"),
        );
    }
}

#[test]
fn invalid_record_count_is_invalid_record() {
    let broker = Broker::start();
    broker.create_topic("count", 1);
    for (count, what) in [
        (0i32, "zero records"),
        (-1, "negative count"),
        (2, "count below last offset delta + 1"),
        (9, "count above last offset delta + 1"),
    ] {
        let mut records = batch(3, now_ms());
        records[57..61].copy_from_slice(&count.to_be_bytes());
        fix_crc(&mut records);
        expect_refused(&broker, "count", &records, INVALID_RECORD, what);
    }
    // No batch at all.
    expect_refused(&broker, "count", &[], INVALID_RECORD, "empty records");
}

#[test]
fn unknown_topic_is_error_3_and_not_created() {
    let broker = Broker::start();
    let mut conn = broker.connect();
    for version in 3..=12i16 {
        let response: ProduceResponse = conn.request(
            ApiKey::Produce,
            version,
            &produce_request("no-such-topic", 0, 1, &batch(1, now_ms())),
        );
        assert_eq!(
            only_partition(&response).error_code,
            UNKNOWN_TOPIC_OR_PARTITION,
            "v{version}"
        );
    }
    // Unknown partition of an existing topic.
    broker.create_topic("one-partition", 1);
    let response: ProduceResponse = conn.request(
        ApiKey::Produce,
        9,
        &produce_request("one-partition", 1, 1, &batch(1, now_ms())),
    );
    assert_eq!(
        only_partition(&response).error_code,
        UNKNOWN_TOPIC_OR_PARTITION
    );
}

#[test]
fn invalid_acks_is_error_21() {
    let broker = Broker::start();
    broker.create_topic("acks", 1);
    let response: ProduceResponse = broker.connect().request(
        ApiKey::Produce,
        9,
        &produce_request("acks", 0, 2, &batch(1, now_ms())),
    );
    assert_eq!(only_partition(&response).error_code, INVALID_REQUIRED_ACKS);
    assert_eq!(log_end_offset(&broker, "acks", 0), 0);
}

#[test]
fn acks_0_gets_no_response_and_the_next_request_is_answered_in_order() {
    let broker = Broker::start();
    broker.create_topic("fire-and-forget", 1);
    let mut conn = broker.connect();
    for version in [3i16, 7, 9, 12] {
        let produce_id = conn.send(
            ApiKey::Produce,
            version,
            &produce_request("fire-and-forget", 0, 0, &batch(2, now_ms())),
        );
        let next_id = conn.send(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
        assert_eq!(next_id, produce_id + 1);
        // The first frame back answers the ApiVersions request: nothing for the produce.
        let response: ApiVersionsResponse = conn.receive_response(ApiKey::ApiVersions, 0, next_id);
        assert_eq!(response.error_code, 0);
    }
    assert_eq!(log_end_offset(&broker, "fire-and-forget", 0), 8);
}

#[test]
fn acks_0_failure_closes_the_connection() {
    // The client gets no response to learn of the error from, so the broker closes the
    // connection (as Kafka does).
    let mut broker = Broker::start();
    let mut conn = broker.connect();
    conn.send(
        ApiKey::Produce,
        9,
        &produce_request("no-such-topic", 0, 0, &batch(1, now_ms())),
    );
    conn.expect_closed("acks=0 produce to an unknown topic");
    broker.assert_alive();
}

#[test]
fn versions_0_to_2_are_refused_per_partition() {
    let broker = Broker::start();
    broker.create_topic("legacy", 2);
    let mut conn = broker.connect();
    for version in 0..=2i16 {
        let request = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(topic_name("legacy"))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(Bytes::from(batch(1, now_ms())))),
                        PartitionProduceData::default()
                            .with_index(1)
                            .with_records(Some(Bytes::from(batch(1, now_ms())))),
                    ]),
                TopicProduceData::default()
                    .with_name(topic_name("other"))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(3)
                        .with_records(None)]),
            ]);
        let correlation_id = conn.next_correlation_id();
        conn.send_frame(&raw_request_frame(
            ApiKey::Produce,
            version,
            correlation_id,
            &legacy_produce_body(&request),
        ));
        let mut frame = conn.receive_frame();
        // Produce v0–2 responses use header v0: the correlation id only.
        assert_eq!(correlation_id_of(&frame), correlation_id, "v{version}");
        let body = frame.split_off(4);
        let (topics, throttle_time_ms) = decode_legacy_produce_response(version, body);
        let expected_partition = |index| LegacyProducePartition {
            index,
            error_code: UNSUPPORTED_VERSION,
            base_offset: -1,
            log_append_time_ms: (version >= 2).then_some(-1),
        };
        assert_eq!(
            topics,
            [
                (
                    "legacy".to_string(),
                    vec![expected_partition(0), expected_partition(1)]
                ),
                ("other".to_string(), vec![expected_partition(3)]),
            ],
            "v{version}"
        );
        assert_eq!(throttle_time_ms, (version >= 1).then_some(0), "v{version}");
    }
    assert_eq!(log_end_offset(&broker, "legacy", 0), 0);
    assert_eq!(log_end_offset(&broker, "legacy", 1), 0);
}

#[test]
fn compressed_batches_are_accepted() {
    let broker = Broker::start();
    broker.create_topic("codecs", 1);
    let mut conn = broker.connect();
    let mut expected_offset = 0;
    for codec in [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ] {
        let response: ProduceResponse = conn.request(
            ApiKey::Produce,
            10,
            &produce_request("codecs", 0, -1, &batch_with_codec(5, now_ms(), codec)),
        );
        let partition = only_partition(&response);
        assert_eq!(partition.error_code, 0, "{codec:?}");
        assert_eq!(partition.base_offset, expected_offset, "{codec:?}");
        expected_offset += 5;
    }
    // An unknown codec (attributes & 7 == 5) is refused.
    let mut records = batch(1, now_ms());
    records[22] |= 5;
    fix_crc(&mut records);
    let response: ProduceResponse = conn.request(
        ApiKey::Produce,
        10,
        &produce_request("codecs", 0, -1, &records),
    );
    assert_eq!(only_partition(&response).error_code, INVALID_RECORD);
}

#[test]
fn batch_above_message_max_bytes_is_message_too_large() {
    let broker = Broker::start_with(&["message.max.bytes=1000"]);
    broker.create_topic("large", 1);
    let mut records = BatchBuilder::new(now_ms());
    records = records.record(None, Some(&[7u8; 2000]), now_ms());
    let records = records.build();
    assert!(records.len() > 1000);
    expect_refused(
        &broker,
        "large",
        &records,
        MESSAGE_TOO_LARGE,
        "2 kB batch, 1000-byte limit",
    );
    // Just under the limit is fine.
    let small = BatchBuilder::new(now_ms())
        .record(None, Some(&[7u8; 800]), now_ms())
        .build();
    assert!(small.len() <= 1000);
    assert_eq!(broker.produce("large", 0, &small), 0);
}

#[test]
fn timestamps_out_of_range_are_invalid_timestamp() {
    // log.message.timestamp.after.max.ms defaults to one hour (Kafka 4).
    let broker = Broker::start_with(&["log.message.timestamp.before.max.ms=86400000"]);
    broker.create_topic("clock", 1);
    let two_hours_ahead = batch(1, now_ms() + 2 * 3_600_000);
    expect_refused(
        &broker,
        "clock",
        &two_hours_ahead,
        INVALID_TIMESTAMP,
        "2 h in the future",
    );
    let two_days_ago = batch(1, now_ms() - 2 * 86_400_000);
    expect_refused(
        &broker,
        "clock",
        &two_days_ago,
        INVALID_TIMESTAMP,
        "2 days old",
    );
    assert_eq!(broker.produce("clock", 0, &batch(1, now_ms() - 60_000)), 0);
}
