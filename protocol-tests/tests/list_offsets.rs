//! ListOffsets v1–v10: earliest, latest, by timestamp, max timestamp (v7+).

use dlog_protocol_tests::*;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::list_offsets_response::ListOffsetsPartitionResponse;
use kafka_protocol::messages::{ApiKey, BrokerId, ListOffsetsRequest, ListOffsetsResponse};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

fn list_offsets(
    conn: &mut Conn,
    version: i16,
    topic: &str,
    queries: &[(i32, i64)],
) -> Vec<ListOffsetsPartitionResponse> {
    let partitions = queries
        .iter()
        .map(|&(partition, timestamp)| {
            ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(timestamp)
        })
        .collect();
    let mut request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(partitions)]);
    if version >= 10 {
        request = request.with_timeout_ms(5000);
    }
    let response: ListOffsetsResponse = conn.request(ApiKey::ListOffsets, version, &request);
    assert_eq!(response.topics.len(), 1, "v{version}");
    assert_eq!(response.topics[0].name.as_str(), topic, "v{version}");
    let partitions = response.topics[0].partitions.clone();
    let indexes: Vec<i32> = partitions.iter().map(|p| p.partition_index).collect();
    let asked: Vec<i32> = queries.iter().map(|q| q.0).collect();
    assert_eq!(
        indexes, asked,
        "v{version}: one answer per partition, in order"
    );
    partitions
}

/// (error, timestamp, offset) of one query.
fn answer(conn: &mut Conn, version: i16, topic: &str, timestamp: i64) -> (i16, i64, i64) {
    let partition = &list_offsets(conn, version, topic, &[(0, timestamp)])[0];
    if version >= 4 && partition.error_code == 0 {
        assert_eq!(partition.leader_epoch, 0, "v{version}: leader epoch");
    }
    (partition.error_code, partition.timestamp, partition.offset)
}

#[test]
fn earliest_latest_and_by_timestamp_v1_to_v10() {
    let broker = Broker::start();
    broker.create_topic("times", 1);
    let base = now_ms() - 60_000;
    // offsets 0..=2 at base+0..2; 3 at base+100 (the maximum), 4 at base+50; 5 at base+20.
    broker.produce(
        "times",
        0,
        &batch_with_timestamps(&[base, base + 1, base + 2]),
    );
    broker.produce("times", 0, &batch_with_timestamps(&[base + 100, base + 50]));
    broker.produce("times", 0, &batch_with_timestamps(&[base + 20]));
    let mut conn = broker.connect();
    for version in 1..=10i16 {
        let mut cases = vec![
            (EARLIEST, (0, -1, 0)),
            (LATEST, (0, -1, 6)),
            (base - 1000, (0, base, 0)),
            (base, (0, base, 0)),
            (base + 1, (0, base + 1, 1)),
            (base + 2, (0, base + 2, 2)),
            // The first batch whose max timestamp reaches the target, then its first record
            // at or after it, in offset order (as Kafka): offset 3, not the closer offset 5.
            (base + 3, (0, base + 100, 3)),
            (base + 21, (0, base + 100, 3)),
            (base + 100, (0, base + 100, 3)),
            // After every record: no offset.
            (base + 101, (0, -1, -1)),
        ];
        if version >= 7 {
            cases.push((MAX_TIMESTAMP, (0, base + 100, 3)));
        }
        for (timestamp, expected) in cases {
            assert_eq!(
                answer(&mut conn, version, "times", timestamp),
                expected,
                "v{version} timestamp {timestamp} (base {base})"
            );
        }
        // Several partitions of one topic in one request keep their order.
        let partitions = list_offsets(&mut conn, version, "times", &[(0, LATEST), (0, EARLIEST)]);
        assert_eq!(partitions[0].offset, 6);
        assert_eq!(partitions[1].offset, 0);
    }
}

#[test]
fn empty_partition() {
    let broker = Broker::start();
    broker.create_topic("empty", 1);
    let mut conn = broker.connect();
    for version in 1..=10i16 {
        assert_eq!(
            answer(&mut conn, version, "empty", EARLIEST),
            (0, -1, 0),
            "v{version}"
        );
        assert_eq!(
            answer(&mut conn, version, "empty", LATEST),
            (0, -1, 0),
            "v{version}"
        );
        assert_eq!(
            answer(&mut conn, version, "empty", 0),
            (0, -1, -1),
            "v{version}"
        );
        if version >= 7 {
            assert_eq!(
                answer(&mut conn, version, "empty", MAX_TIMESTAMP),
                (0, -1, -1),
                "v{version}"
            );
        }
    }
}

#[test]
fn unknown_topic_or_partition() {
    let broker = Broker::start();
    broker.create_topic("present", 2);
    let mut conn = broker.connect();
    for version in 1..=10i16 {
        let partitions = list_offsets(&mut conn, version, "absent", &[(0, LATEST)]);
        assert_eq!(
            partitions[0].error_code, UNKNOWN_TOPIC_OR_PARTITION,
            "v{version}"
        );
        assert_eq!((partitions[0].timestamp, partitions[0].offset), (-1, -1));
        let partitions = list_offsets(
            &mut conn,
            version,
            "present",
            &[(1, LATEST), (2, LATEST), (0, EARLIEST)],
        );
        let errors: Vec<i16> = partitions.iter().map(|p| p.error_code).collect();
        assert_eq!(errors, [0, UNKNOWN_TOPIC_OR_PARTITION, 0], "v{version}");
    }
}
