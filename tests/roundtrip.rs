//! Produce/consume round trips with librdkafka (rdkafka crate) against a real `dlog` process,
//! for every codec, plus the produce-side limits and the admin/offset APIs around them.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, Timestamp, TopicPartitionList};

const PARTITIONS: i32 = 16;
const BIG_VALUE_BYTES: usize = 1_000_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

type HeaderList = Vec<(String, Option<Vec<u8>>)>;

fn header_list(message: &impl Message) -> HeaderList {
    match message.headers() {
        None => Vec::new(),
        Some(headers) => headers
            .iter()
            .map(|h| (h.key.to_string(), h.value.map(|v| v.to_vec())))
            .collect(),
    }
}

/// One record as produced, with where it was acknowledged.
#[derive(Clone, Debug)]
struct Expected {
    partition: i32,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: HeaderList,
    timestamp: Option<i64>,
    offset: i64,
}

fn producer(bootstrap: &str, codec: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut config = producer_config(bootstrap);
    config
        .set("compression.type", codec)
        .set("message.max.bytes", "1048588");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config.create().expect("create producer")
}

/// Builds the record mix: keys and no keys, headers (with null values and repeated keys),
/// empty values, null values, explicit timestamps, and one ~1 MB incompressible value.
fn record_mix(count: usize) -> Vec<Expected> {
    let base_ts = now_ms() - 60_000;
    let mut records = Vec::new();
    for i in 0..count {
        let key = if i % 7 == 0 {
            None
        } else {
            Some(format!("key-{i}").into_bytes())
        };
        let value = match i % 10 {
            0 => Some(Vec::new()),
            1 => None,
            2 => Some(random_bytes(i as u64, 3000)),
            _ => Some(format!("value-{i}-{}", "x".repeat(i % 50)).into_bytes()),
        };
        let headers = if i % 3 == 0 {
            vec![
                ("h-plain".to_string(), Some(format!("hv-{i}").into_bytes())),
                ("h-null".to_string(), None),
                ("h-empty".to_string(), Some(Vec::new())),
                ("h-plain".to_string(), Some(b"repeated key".to_vec())),
            ]
        } else {
            Vec::new()
        };
        let timestamp = if i % 4 == 0 {
            Some(base_ts + i as i64)
        } else {
            None
        };
        records.push(Expected {
            partition: (i as i32) % PARTITIONS,
            key,
            value,
            headers,
            timestamp,
            offset: -1,
        });
    }
    // The big one goes in the middle of partition 5's sequence.
    records.insert(
        count / 2,
        Expected {
            partition: 5,
            key: Some(b"big".to_vec()),
            value: Some(random_bytes(0xB16, BIG_VALUE_BYTES)),
            headers: vec![(
                "size".into(),
                Some(BIG_VALUE_BYTES.to_string().into_bytes()),
            )],
            timestamp: None,
            offset: -1,
        },
    );
    records
}

/// Sends every record (all in flight at once), then records each acknowledged offset.
async fn produce_all(producer: &FutureProducer, topic: &str, records: &mut [Expected]) -> Vec<i64> {
    let mut futures = Vec::new();
    for record in records.iter() {
        let mut headers = OwnedHeaders::new();
        for (key, value) in &record.headers {
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        let mut future_record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(topic).partition(record.partition);
        if let Some(key) = &record.key {
            future_record = future_record.key(key.as_slice());
        }
        if let Some(value) = &record.value {
            future_record = future_record.payload(value.as_slice());
        }
        if !record.headers.is_empty() {
            future_record = future_record.headers(headers);
        }
        if let Some(ts) = record.timestamp {
            future_record = future_record.timestamp(ts);
        }
        let future = producer
            .send_result(future_record)
            .map_err(|(e, _)| e)
            .expect("enqueue");
        futures.push(future);
    }
    let mut timestamps = Vec::new();
    for (record, future) in records.iter_mut().zip(futures) {
        let delivery = tokio::time::timeout(Duration::from_secs(60), future)
            .await
            .expect("delivery timed out")
            .expect("delivery canceled")
            .map_err(|(e, _)| e)
            .unwrap_or_else(|e| panic!("produce to partition {} failed: {e}", record.partition));
        assert_eq!(delivery.partition, record.partition);
        record.offset = delivery.offset;
        timestamps.push(delivery.timestamp.to_millis().unwrap_or(-1));
    }
    timestamps
}

async fn roundtrip(codec: &str) {
    roundtrip_with(codec, &[], &[]).await;
}

/// Produces the record mix with `codec`, reads it back with a consumer configured with
/// `consumer_settings` from a broker started with `broker_settings`, and compares everything.
async fn roundtrip_with(codec: &str, broker_settings: &[&str], consumer_settings: &[(&str, &str)]) {
    let broker = Broker::start_with(broker_settings);
    let bootstrap = broker.bootstrap();
    let topic = format!("roundtrip-{codec}");
    create_topic(&bootstrap, &topic, PARTITIONS, &[]).await;

    let producer = producer(&bootstrap, codec, &[]);
    let mut records = record_mix(800);
    let delivered_ts = produce_all(&producer, &topic, &mut records).await;

    // Acked offsets: per partition, in send order, exactly 0..n.
    let mut per_partition: BTreeMap<i32, Vec<(Expected, i64)>> = BTreeMap::new();
    for (record, ts) in records.iter().zip(&delivered_ts) {
        per_partition
            .entry(record.partition)
            .or_default()
            .push((record.clone(), *ts));
    }
    for (partition, list) in &per_partition {
        let offsets: Vec<i64> = list.iter().map(|(r, _)| r.offset).collect();
        let want: Vec<i64> = (0..list.len() as i64).collect();
        assert_eq!(
            offsets, want,
            "{codec}: partition {partition} acked offsets not 0..n in send order"
        );
    }

    let mut consumer_config = consumer_config(&bootstrap);
    for (key, value) in consumer_settings {
        consumer_config.set(*key, *value);
    }
    let consumer = consumer_config.create().expect("consumer");
    let consumed = consume_all_with(consumer, &topic, PARTITIONS);
    for partition in 0..PARTITIONS {
        let expected = per_partition.get(&partition).cloned().unwrap_or_default();
        let got = &consumed[&partition];
        assert_eq!(
            got.len(),
            expected.len(),
            "{codec}: partition {partition} record count"
        );
        for (message, (want, delivered_ts)) in got.iter().zip(&expected) {
            let at = format!("{codec}: {topic}-{partition}@{}", want.offset);
            assert_eq!(message.partition(), partition, "{at}: partition");
            assert_eq!(message.offset(), want.offset, "{at}: offset");
            assert_eq!(message.key(), want.key.as_deref(), "{at}: key");
            match (&want.value, message.payload()) {
                (Some(w), Some(g)) => {
                    assert!(
                        w.as_slice() == g,
                        "{at}: value differs ({} bytes expected, {} got)",
                        w.len(),
                        g.len()
                    )
                }
                (w, g) => assert_eq!(g, w.as_deref(), "{at}: value (null vs empty)"),
            }
            assert_eq!(header_list(message), want.headers, "{at}: headers");
            match message.timestamp() {
                Timestamp::CreateTime(ts) => {
                    if let Some(explicit) = want.timestamp {
                        assert_eq!(ts, explicit, "{at}: explicit timestamp");
                    }
                    assert_eq!(ts, *delivered_ts, "{at}: timestamp vs delivery report");
                }
                other => panic!("{at}: timestamp {other:?}, expected CreateTime"),
            }
        }
    }
    let (low, high) = watermarks(&bootstrap, &topic, 5);
    assert_eq!((low, high), (0, per_partition[&5].len() as i64));

    // With compression.type=producer the batches are stored with the client's codec.
    // (librdkafka sends a batch uncompressed when compression would not shrink it.)
    // Note: librdkafka only uses LZ4 if the broker advertises FindCoordinator
    // (RD_KAFKA_FEATURE_LZ4 in rdkafka_feature.c); otherwise it silently sends uncompressed.
    let codec_id = ["none", "gzip", "snappy", "lz4", "zstd"]
        .iter()
        .position(|c| *c == codec)
        .unwrap() as u8;
    let mut stored = BTreeMap::<u8, usize>::new();
    for partition in 0..PARTITIONS {
        for log in segment_logs(&broker.data_dir(), &topic, partition) {
            for id in batch_codecs(&log) {
                *stored.entry(id).or_default() += 1;
            }
        }
    }
    assert!(
        stored.keys().all(|id| *id == codec_id || *id == 0),
        "{codec}: stored batch codecs {stored:?}"
    );
    assert!(
        stored.get(&codec_id).copied().unwrap_or(0) > 0,
        "{codec}: no batch stored with codec {codec_id}: {stored:?}"
    );
}

/// Small fetch limits and small segments: the broker must still return whole batches (at
/// least one per partition even when larger than the limit, KIP-74) across segment boundaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roundtrip_small_fetches_small_segments() {
    roundtrip_with(
        "zstd",
        &["log.segment.bytes=16384", "log.index.interval.bytes=256"],
        &[
            ("fetch.message.max.bytes", "1024"),
            ("message.max.bytes", "2048"),
            ("fetch.max.bytes", "4096"),
        ],
    )
    .await;
}

/// Fetching from any offset, including the middle of a compressed batch and the start of a
/// segment, yields exactly that offset first; an offset past the end is OFFSET_OUT_OF_RANGE
/// (the client then resets to earliest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_from_any_offset() {
    let broker = Broker::start_with(&["log.segment.bytes=8192", "log.index.interval.bytes=512"]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "seek", 1, &[]).await;
    let producer = producer(&bootstrap, "zstd", &[]);
    const COUNT: usize = 600;
    let values: Vec<Vec<u8>> = (0..COUNT)
        .map(|i| {
            let mut v = format!("seek-{i}-").into_bytes();
            v.extend(random_bytes(i as u64, i % 90));
            v
        })
        .collect();
    // Waves of 1..=37 records: batches of many sizes.
    let mut next = 0;
    let mut wave = 1;
    while next < COUNT {
        let end = (next + wave).min(COUNT);
        let mut futures = Vec::new();
        for value in &values[next..end] {
            let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to("seek")
                .partition(0)
                .payload(value.as_slice());
            futures.push(
                producer
                    .send_result(record)
                    .map_err(|(e, _)| e)
                    .expect("enqueue"),
            );
        }
        for (i, future) in futures.into_iter().enumerate() {
            let delivery = tokio::time::timeout(Duration::from_secs(30), future)
                .await
                .expect("timeout")
                .expect("canceled")
                .map_err(|(e, _)| e)
                .expect("produce");
            assert_eq!(delivery.offset, (next + i) as i64);
        }
        next = end;
        wave = wave % 37 + 1;
    }
    assert!(
        segment_logs(&broker.data_dir(), "seek", 0).len() > 3,
        "expected segment rolls"
    );

    let consumer = consumer(&bootstrap);
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("seek", 0, Offset::Offset(0))
        .unwrap();
    consumer.assign(&assignment).expect("assign");
    let first_message = |expected_first: usize, context: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "{context}: nothing fetched"
            );
            match consumer.poll(Duration::from_millis(200)) {
                None => continue,
                Some(Err(e)) => panic!("{context}: {e}"),
                Some(Ok(message)) => {
                    assert_eq!(
                        message.offset(),
                        expected_first as i64,
                        "{context}: first offset"
                    );
                    assert!(
                        message.payload() == Some(values[expected_first].as_slice()),
                        "{context}: payload"
                    );
                    return;
                }
            }
        }
    };
    first_message(0, "start");
    let mut positions: Vec<usize> = (0..COUNT).step_by(13).collect();
    positions.push(COUNT - 1);
    for position in positions.into_iter().rev() {
        consumer
            .seek("seek", 0, Offset::Offset(position as i64), CLIENT_TIMEOUT)
            .unwrap_or_else(|e| panic!("seek {position}: {e}"));
        first_message(position, &format!("seek to {position}"));
    }
    consumer
        .seek("seek", 0, Offset::Offset(10_000), CLIENT_TIMEOUT)
        .expect("seek past end");
    first_message(0, "seek past the end (auto.offset.reset=earliest)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roundtrip_none() {
    roundtrip("none").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roundtrip_gzip() {
    roundtrip("gzip").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roundtrip_snappy() {
    roundtrip("snappy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roundtrip_lz4() {
    roundtrip("lz4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roundtrip_zstd() {
    roundtrip("zstd").await;
}

/// Produces one record and returns the broker's verdict.
async fn produce_one(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    value: &[u8],
) -> Result<(i32, i64), KafkaError> {
    let record: FutureRecord<'_, [u8], [u8]> =
        FutureRecord::to(topic).partition(partition).payload(value);
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map(|d| (d.partition, d.offset))
        .map_err(|(e, _)| e)
}

fn error_code(error: &KafkaError) -> Option<RDKafkaErrorCode> {
    error.rdkafka_error_code()
}

/// A batch above the broker's `message.max.bytes` (1048588 by default) is refused with
/// MESSAGE_TOO_LARGE, and the broker keeps accepting normal records afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_too_large_is_refused() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "big", 1, &[]).await;
    // The client limit is raised well above the broker's so that the broker decides.
    let producer = producer(
        &bootstrap,
        "none",
        &[("message.max.bytes", "8000000"), ("batch.size", "8000000")],
    );
    let too_big = random_bytes(7, 1_100_000);
    let error = produce_one(&producer, "big", 0, &too_big)
        .await
        .expect_err("a 1.1 MB batch must be refused by a broker with message.max.bytes=1048588");
    assert_eq!(
        error_code(&error),
        Some(RDKafkaErrorCode::MessageSizeTooLarge),
        "{error}"
    );

    let (_, offset) = produce_one(&producer, "big", 0, b"small")
        .await
        .expect("small record");
    assert_eq!(offset, 0, "the refused batch must not take an offset");

    // The limit is on the batch as stored (compressed): 3 MB of zeros compress to a few KB.
    let compressed = producer_for_zeros(&bootstrap);
    let zeros = vec![0u8; 3_000_000];
    let (_, offset) = produce_one(&compressed, "big", 0, &zeros)
        .await
        .expect("a zstd batch far below the limit once compressed must be accepted");
    assert_eq!(offset, 1);
    let consumed = consume_all(&bootstrap, "big", 1);
    let values: Vec<usize> = consumed[&0]
        .iter()
        .map(|m| m.payload().map(|p| p.len()).unwrap_or(0))
        .collect();
    assert_eq!(values, vec![5, 3_000_000]);
    assert!(consumed[&0][1].payload().unwrap().iter().all(|b| *b == 0));
}

/// The limit is inclusive and counts the whole batch as stored, log overhead (offset and
/// length, 12 bytes) included, as Kafka's `RecordBatch.sizeInBytes()` does: with one record,
/// no key, no headers, and a value of V bytes (2^20 <= 2V < 2^21), the batch is 61 + V + 11 bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_max_bytes_boundary_is_exact() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "edge", 1, &[]).await;
    let producer = producer(
        &bootstrap,
        "none",
        &[
            ("message.max.bytes", "8000000"),
            ("batch.size", "8000000"),
            ("linger.ms", "0"),
        ],
    );
    const LIMIT: usize = 1_048_588;
    let at_limit = random_bytes(1, LIMIT - 72);
    let over_limit = random_bytes(2, LIMIT - 71);
    let (_, offset) = produce_one(&producer, "edge", 0, &at_limit)
        .await
        .expect("a batch of exactly message.max.bytes must be accepted");
    assert_eq!(offset, 0);
    let stored = batch_codecs(&segment_logs(&broker.data_dir(), "edge", 0)[0]);
    assert_eq!(stored.len(), 1);
    assert_eq!(
        std::fs::metadata(&segment_logs(&broker.data_dir(), "edge", 0)[0])
            .unwrap()
            .len(),
        LIMIT as u64,
        "batch size arithmetic of this test"
    );
    let error = produce_one(&producer, "edge", 0, &over_limit)
        .await
        .expect_err("a batch one byte over message.max.bytes must be refused");
    assert_eq!(
        error_code(&error),
        Some(RDKafkaErrorCode::MessageSizeTooLarge),
        "{error}"
    );
}

fn producer_for_zeros(bootstrap: &str) -> FutureProducer {
    producer(
        bootstrap,
        "zstd",
        &[("message.max.bytes", "8000000"), ("batch.size", "8000000")],
    )
}

/// A topic's `max.message.bytes` override is enforced for that topic only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_max_message_bytes_override() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    create_topic(
        &bootstrap,
        "small-limit",
        1,
        &[("max.message.bytes", "1024")],
    )
    .await;
    create_topic(&bootstrap, "default-limit", 1, &[]).await;
    let producer = producer(&bootstrap, "none", &[]);
    let value = random_bytes(9, 2000);

    let error = produce_one(&producer, "small-limit", 0, &value)
        .await
        .expect_err("2000-byte record on a topic with max.message.bytes=1024");
    assert_eq!(
        error_code(&error),
        Some(RDKafkaErrorCode::MessageSizeTooLarge),
        "{error}"
    );
    assert_eq!(
        produce_one(&producer, "small-limit", 0, b"fits")
            .await
            .expect("small record"),
        (0, 0)
    );
    assert_eq!(
        produce_one(&producer, "default-limit", 0, &value)
            .await
            .expect("default topic"),
        (0, 0)
    );
}

/// `message.timestamp.type=LogAppendTime`: the broker stamps records with its own clock, in the
/// produce response and in what consumers read; CreateTime topics keep the client's timestamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_append_time_topic() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    create_topic(
        &bootstrap,
        "append-time",
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    )
    .await;
    let producer = producer(&bootstrap, "zstd", &[]);
    let client_ts = 1_000_000_000_000i64; // 2001: far from now.
    let before = now_ms();
    let mut delivered = Vec::new();
    // Two waves of 5 in flight together: compressed batches holding several records.
    for wave in 0..2 {
        let mut futures = Vec::new();
        for i in 0..5 {
            let payload = format!("r{wave}-{i} {}", "compressible ".repeat(20));
            let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to("append-time")
                .partition(0)
                .payload(payload.as_bytes())
                .timestamp(client_ts + i);
            futures.push(
                producer
                    .send_result(record)
                    .map_err(|(e, _)| e)
                    .expect("enqueue"),
            );
        }
        for future in futures {
            let delivery = tokio::time::timeout(Duration::from_secs(30), future)
                .await
                .expect("timeout")
                .expect("canceled")
                .map_err(|(e, _)| e)
                .expect("produce");
            delivered.push(delivery.timestamp);
        }
    }
    let after = now_ms();
    let in_range = |ts: i64| ts >= before - 1000 && ts <= after + 1000;

    let consumed = consume_all(&bootstrap, "append-time", 1);
    assert_eq!(consumed[&0].len(), 10);
    for message in &consumed[&0] {
        match message.timestamp() {
            Timestamp::LogAppendTime(ts) => assert!(
                in_range(ts),
                "offset {}: log append time {ts} outside [{before}, {after}]",
                message.offset()
            ),
            other => panic!(
                "offset {}: timestamp {other:?}, expected LogAppendTime",
                message.offset()
            ),
        }
    }
    // ProduceResponse.log_append_time_ms is what librdkafka reports in the delivery report.
    for (i, ts) in delivered.iter().enumerate() {
        match ts {
            Timestamp::LogAppendTime(ts) => assert!(in_range(*ts), "delivery {i}: {ts}"),
            other => panic!(
                "delivery {i}: timestamp {other:?}; expected LogAppendTime from the produce response's log_append_time_ms"
            ),
        }
    }
}

/// CreateTopics with validate_only creates nothing; invalid names, partition counts and
/// replication factors get Kafka's error codes; a duplicate gets TOPIC_ALREADY_EXISTS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_topics_validation() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let admin = admin(&bootstrap);
    let validate_only = admin_options().validate_only(true);

    let topic = NewTopic::new("validated", 3, TopicReplication::Fixed(1));
    let results = admin
        .create_topics([&topic], &validate_only)
        .await
        .expect("CreateTopics validate_only");
    assert_eq!(results.len(), 1);
    results[0]
        .clone()
        .expect("validate_only on a valid topic succeeds");
    std::thread::sleep(Duration::from_millis(500));
    let metadata = consumer(&bootstrap)
        .fetch_metadata(None, CLIENT_TIMEOUT)
        .expect("metadata");
    assert!(
        metadata.topics().iter().all(|t| t.name() != "validated"),
        "validate_only created the topic"
    );
    // Creating it for real still works (it did not exist), and a second time is refused.
    let results = admin
        .create_topics([&topic], &admin_options())
        .await
        .expect("create");
    results[0].clone().expect("create after validate_only");
    let results = admin
        .create_topics([&topic], &admin_options())
        .await
        .expect("create again");
    assert_eq!(
        results[0].clone().expect_err("duplicate create").1,
        RDKafkaErrorCode::TopicAlreadyExists
    );

    let long_name = "x".repeat(250);
    for name in [
        "bad name",
        "a/b",
        "..",
        ".",
        "topic!",
        "caf\u{e9}",
        long_name.as_str(),
    ] {
        for options in [&validate_only, &admin_options()] {
            let bad = NewTopic::new(name, 1, TopicReplication::Fixed(1));
            let results = admin
                .create_topics([&bad], options)
                .await
                .expect("CreateTopics request");
            assert_eq!(
                results[0].clone().expect_err("invalid name accepted"),
                (name.to_string(), RDKafkaErrorCode::InvalidTopic),
                "topic name {name:?}"
            );
        }
    }
    let zero = NewTopic::new("zero-partitions", 0, TopicReplication::Fixed(1));
    let results = admin
        .create_topics([&zero], &admin_options())
        .await
        .expect("request");
    assert_eq!(
        results[0].clone().expect_err("0 partitions accepted").1,
        RDKafkaErrorCode::InvalidPartitions
    );
    let rf3 = NewTopic::new("rf-three", 1, TopicReplication::Fixed(3));
    let results = admin
        .create_topics([&rf3], &admin_options())
        .await
        .expect("request");
    assert_eq!(
        results[0]
            .clone()
            .expect_err("RF 3 on one broker accepted")
            .1,
        RDKafkaErrorCode::InvalidReplicationFactor
    );
    let metadata = consumer(&bootstrap)
        .fetch_metadata(None, CLIENT_TIMEOUT)
        .expect("metadata");
    let names: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
    assert!(
        names
            .iter()
            .all(|n| *n == "validated" || n.starts_with("__")),
        "unexpected topics {names:?}"
    );
}

/// DeleteTopics removes the topic from metadata; deleting again is UNKNOWN_TOPIC_OR_PARTITION;
/// re-creating the name starts empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_topics() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "doomed", 3, &[]).await;
    create_topic(&bootstrap, "survivor", 1, &[]).await;
    let producer = producer(&bootstrap, "none", &[]);
    for partition in 0..3 {
        produce_one(&producer, "doomed", partition, b"old data")
            .await
            .expect("produce");
    }
    produce_one(&producer, "survivor", 0, b"keep me")
        .await
        .expect("produce");

    let admin = admin(&bootstrap);
    let results = admin
        .delete_topics(&["doomed"], &admin_options())
        .await
        .expect("DeleteTopics");
    assert_eq!(results, vec![Ok("doomed".to_string())]);

    let consumer = consumer(&bootstrap);
    let deadline = std::time::Instant::now() + CLIENT_TIMEOUT;
    loop {
        let metadata = consumer
            .fetch_metadata(None, CLIENT_TIMEOUT)
            .expect("metadata");
        let names: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
        assert!(names.contains(&"survivor"), "survivor vanished: {names:?}");
        if !names.contains(&"doomed") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "deleted topic still in metadata"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let results = admin
        .delete_topics(&["doomed"], &admin_options())
        .await
        .expect("DeleteTopics again");
    assert_eq!(
        results,
        vec![Err((
            "doomed".to_string(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))]
    );

    create_topic(&bootstrap, "doomed", 2, &[]).await;
    for partition in 0..2 {
        assert_eq!(
            watermarks(&bootstrap, "doomed", partition),
            (0, 0),
            "re-created topic shows old data in partition {partition}"
        );
    }
    let consumed = consume_all(&bootstrap, "survivor", 1);
    assert_eq!(consumed[&0].len(), 1);
    assert_eq!(consumed[&0][0].payload(), Some(&b"keep me"[..]));
}

/// ListOffsets by timestamp (offsets_for_times) and the watermarks (earliest/latest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_for_times_and_watermarks() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "times", 3, &[]).await;
    // linger 0 and one record at a time: one batch per record.
    let producer = producer(&bootstrap, "none", &[("linger.ms", "0")]);
    let t0 = now_ms() - 100_000;
    // Partition 0: increasing timestamps t0, t0+1000, ... t0+9000.
    // Partition 1: out of order: offset i has t0 + ORDER[i] * 1000.
    const ORDER: [i64; 6] = [0, 5, 1, 4, 2, 3];
    for i in 0..10i64 {
        let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to("times")
            .partition(0)
            .payload(&b"p0"[..])
            .timestamp(t0 + i * 1000);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    for step in ORDER {
        let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to("times")
            .partition(1)
            .payload(&b"p1"[..])
            .timestamp(t0 + step * 1000);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    assert_eq!(watermarks(&bootstrap, "times", 0), (0, 10));
    assert_eq!(watermarks(&bootstrap, "times", 1), (0, 6));
    assert_eq!(watermarks(&bootstrap, "times", 2), (0, 0));

    let consumer = consumer(&bootstrap);
    let lookup = |partition: i32, ts: i64| -> Offset {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset("times", partition, Offset::Offset(ts))
            .unwrap();
        let result = consumer
            .offsets_for_times(list, CLIENT_TIMEOUT)
            .unwrap_or_else(|e| panic!("offsets_for_times p{partition} ts {ts}: {e}"));
        let element = result
            .find_partition("times", partition)
            .expect("partition in result");
        assert!(
            element.error().is_ok(),
            "p{partition} ts {ts}: {:?}",
            element.error()
        );
        element.offset()
    };
    // The earliest offset whose timestamp is >= the target; past the largest: none (-1 = End).
    assert_eq!(lookup(0, t0 - 50_000), Offset::Offset(0));
    assert_eq!(lookup(0, t0), Offset::Offset(0));
    assert_eq!(lookup(0, t0 + 1), Offset::Offset(1));
    assert_eq!(lookup(0, t0 + 2500), Offset::Offset(3));
    assert_eq!(lookup(0, t0 + 9000), Offset::Offset(9));
    assert_eq!(lookup(0, t0 + 9001), Offset::End);
    // Out of order: first offset with timestamp >= target.
    assert_eq!(lookup(1, t0 + 500), Offset::Offset(1)); // offset 1 has t0+5000
    assert_eq!(lookup(1, t0 + 3500), Offset::Offset(1));
    assert_eq!(lookup(1, t0 + 5000), Offset::Offset(1));
    assert_eq!(lookup(1, t0 + 5001), Offset::End);
    assert_eq!(lookup(1, t0), Offset::Offset(0));
    // Empty partition.
    assert_eq!(lookup(2, t0), Offset::End);
}
