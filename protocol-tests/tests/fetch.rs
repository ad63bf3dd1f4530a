//! Fetch v4–v17: record bytes as produced, offsets out of range, long polls, fetch sessions.

use std::time::{Duration, Instant};

use dlog_protocol_tests::*;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse};
use uuid::Uuid;

const OFFSET_OUT_OF_RANGE: i16 = 1;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
const INVALID_FETCH_SESSION_EPOCH: i16 = 71;
const UNKNOWN_TOPIC_ID: i16 = 100;

#[derive(Clone)]
struct Topic {
    name: String,
    id: Uuid,
}

impl Topic {
    fn create(broker: &Broker, name: &str, partitions: i32) -> Topic {
        broker.create_topic(name, partitions);
        Topic {
            name: name.to_string(),
            id: broker.topic_id(name),
        }
    }

    /// The request's topic entry: by name before v13, by id from v13.
    fn fetch_topic(&self, version: i16, partitions: &[(i32, i64)]) -> FetchTopic {
        let partitions = partitions
            .iter()
            .map(|&(partition, offset)| {
                FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)
            })
            .collect();
        let topic = FetchTopic::default().with_partitions(partitions);
        if version >= 13 {
            topic.with_topic_id(self.id)
        } else {
            topic.with_topic(topic_name(&self.name))
        }
    }
}

fn fetch_request(version: i16, topic: &Topic, partitions: &[(i32, i64)]) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_topics(vec![topic.fetch_topic(version, partitions)])
}

/// The response's data for (topic, partition), checking the topic is named as the version
/// requires.
fn partition_data<'a>(
    response: &'a FetchResponse,
    version: i16,
    topic: &Topic,
    partition: i32,
) -> &'a PartitionData {
    let entry = response
        .responses
        .iter()
        .find(|t| {
            if version >= 13 {
                t.topic_id == topic.id
            } else {
                t.topic.as_str() == topic.name
            }
        })
        .unwrap_or_else(|| panic!("v{version}: {} missing from {response:?}", topic.name));
    if version >= 13 {
        assert_eq!(
            entry.topic.as_str(),
            "",
            "v{version}: names are not sent from v13"
        );
    } else {
        assert_eq!(
            entry.topic_id,
            Uuid::nil(),
            "v{version}: ids are not sent before v13"
        );
    }
    entry
        .partitions
        .iter()
        .find(|p| p.partition_index == partition)
        .unwrap_or_else(|| panic!("v{version}: partition {partition} missing"))
}

fn records_of(data: &PartitionData) -> Vec<u8> {
    data.records
        .as_ref()
        .map(|r| r.to_vec())
        .unwrap_or_default()
}

#[test]
fn records_come_back_byte_for_byte_v4_to_v17() {
    let broker = Broker::start();
    let topic = Topic::create(&broker, "bytes", 1);
    let now = now_ms();
    let produced = [
        batch(3, now),
        batch_with_codec(2, now + 1, Codec::Gzip),
        batch_with_codec(4, now + 2, Codec::Zstd),
    ];
    let mut base_offsets = Vec::new();
    for records in &produced {
        base_offsets.push(broker.produce("bytes", 0, records));
    }
    assert_eq!(base_offsets, [0, 3, 5]);
    let mut conn = broker.connect();
    for version in 4..=17i16 {
        let response: FetchResponse = conn.request(
            ApiKey::Fetch,
            version,
            &fetch_request(version, &topic, &[(0, 0)]),
        );
        assert_eq!(response.error_code, 0, "v{version}");
        assert_eq!(response.throttle_time_ms, 0, "v{version}");
        if version >= 7 {
            assert_eq!(response.session_id, 0, "v{version}: sessionless");
        }
        let data = partition_data(&response, version, &topic, 0);
        assert_eq!(data.error_code, 0, "v{version}");
        assert_eq!(data.high_watermark, 9, "v{version}");
        assert_eq!(data.last_stable_offset, 9, "v{version}");
        if version >= 5 {
            assert_eq!(data.log_start_offset, 0, "v{version}");
        }
        if version >= 11 {
            assert_eq!(data.preferred_read_replica.0, -1, "v{version}");
        }
        let batches = split_batches(&records_of(data));
        assert_eq!(batches.len(), 3, "v{version}");
        for (i, (base_offset, bytes)) in batches.iter().enumerate() {
            assert_eq!(*base_offset, base_offsets[i], "v{version} batch {i}");
            assert_eq!(
                with_base_offset_zero(bytes),
                produced[i],
                "v{version} batch {i}: bytes differ from what was produced"
            );
        }
    }
}

#[test]
fn fetch_from_inside_a_batch_and_from_the_end() {
    let broker = Broker::start();
    let topic = Topic::create(&broker, "positions", 1);
    let now = now_ms();
    broker.produce("positions", 0, &batch(3, now));
    broker.produce("positions", 0, &batch(2, now));
    let mut conn = broker.connect();
    for version in [4i16, 11, 12, 13, 17] {
        // Offset 1 lies inside the first batch: the whole batch is returned (the client skips).
        let response: FetchResponse = conn.request(
            ApiKey::Fetch,
            version,
            &fetch_request(version, &topic, &[(0, 1)]),
        );
        let offsets: Vec<i64> =
            split_batches(&records_of(partition_data(&response, version, &topic, 0)))
                .iter()
                .map(|(base, _)| *base)
                .collect();
        assert_eq!(offsets, [0, 3], "v{version}");
        // Offset 3 starts the second batch.
        let response: FetchResponse = conn.request(
            ApiKey::Fetch,
            version,
            &fetch_request(version, &topic, &[(0, 3)]),
        );
        let offsets: Vec<i64> =
            split_batches(&records_of(partition_data(&response, version, &topic, 0)))
                .iter()
                .map(|(base, _)| *base)
                .collect();
        assert_eq!(offsets, [3], "v{version}");
        // The log end offset: no error, no records.
        let mut request = fetch_request(version, &topic, &[(0, 5)]);
        request.min_bytes = 0;
        let response: FetchResponse = conn.request(ApiKey::Fetch, version, &request);
        let data = partition_data(&response, version, &topic, 0);
        assert_eq!(data.error_code, 0, "v{version}");
        assert_eq!(data.high_watermark, 5, "v{version}");
        assert!(records_of(data).is_empty(), "v{version}");
    }
}

#[test]
fn offsets_outside_the_log_are_out_of_range() {
    let broker = Broker::start();
    let topic = Topic::create(&broker, "range", 1);
    broker.produce("range", 0, &batch(3, now_ms()));
    let mut conn = broker.connect();
    for version in 4..=17i16 {
        for offset in [4i64, 1000, i64::MAX, -1, i64::MIN] {
            let response: FetchResponse = conn.request(
                ApiKey::Fetch,
                version,
                &fetch_request(version, &topic, &[(0, offset)]),
            );
            assert_eq!(response.error_code, 0, "v{version}");
            let data = partition_data(&response, version, &topic, 0);
            assert_eq!(
                data.error_code, OFFSET_OUT_OF_RANGE,
                "v{version} offset {offset}"
            );
            assert!(records_of(data).is_empty(), "v{version} offset {offset}");
        }
    }
}

#[test]
fn unknown_topics_and_partitions() {
    let broker = Broker::start();
    let known = Topic::create(&broker, "known", 1);
    let unknown = Topic {
        name: "unknown".into(),
        id: Uuid::from_u128(42),
    };
    let mut conn = broker.connect();
    for version in 4..=17i16 {
        let response: FetchResponse = conn.request(
            ApiKey::Fetch,
            version,
            &fetch_request(version, &unknown, &[(0, 0)]),
        );
        let expected = if version >= 13 {
            UNKNOWN_TOPIC_ID
        } else {
            UNKNOWN_TOPIC_OR_PARTITION
        };
        assert_eq!(
            partition_data(&response, version, &unknown, 0).error_code,
            expected,
            "v{version}"
        );
        let response: FetchResponse = conn.request(
            ApiKey::Fetch,
            version,
            &fetch_request(version, &known, &[(5, 0)]),
        );
        assert_eq!(
            partition_data(&response, version, &known, 5).error_code,
            UNKNOWN_TOPIC_OR_PARTITION,
            "v{version}: partition 5 of a 1-partition topic"
        );
    }
}

#[test]
fn the_first_batch_is_returned_even_above_the_byte_limits() {
    let broker = Broker::start();
    let topic = Topic::create(&broker, "limits", 1);
    let now = now_ms();
    let first = batch(10, now);
    broker.produce("limits", 0, &first);
    broker.produce("limits", 0, &batch(10, now));
    let mut conn = broker.connect();
    for version in [4i16, 9, 13, 17] {
        // partition_max_bytes of 1 byte, then max_bytes of 1 byte: one whole batch (KIP-74).
        let mut request = fetch_request(version, &topic, &[(0, 0)]);
        request.topics[0].partitions[0].partition_max_bytes = 1;
        let response: FetchResponse = conn.request(ApiKey::Fetch, version, &request);
        let batches = split_batches(&records_of(partition_data(&response, version, &topic, 0)));
        assert_eq!(batches.len(), 1, "v{version} partition_max_bytes=1");
        assert_eq!(batches[0].1, first, "v{version}");

        let mut request = fetch_request(version, &topic, &[(0, 0)]);
        request.max_bytes = 1;
        let response: FetchResponse = conn.request(ApiKey::Fetch, version, &request);
        let batches = split_batches(&records_of(partition_data(&response, version, &topic, 0)));
        assert_eq!(batches.len(), 1, "v{version} max_bytes=1");
    }
}

#[test]
fn long_poll_on_an_empty_partition_waits_about_max_wait() {
    let broker = Broker::start();
    let topic = Topic::create(&broker, "idle", 1);
    let mut conn = broker.connect();
    for version in [4i16, 12, 17] {
        let mut request = fetch_request(version, &topic, &[(0, 0)]);
        request.max_wait_ms = 400;
        request.min_bytes = 1;
        let started = Instant::now();
        let response: FetchResponse = conn.request(ApiKey::Fetch, version, &request);
        let waited = started.elapsed();
        let data = partition_data(&response, version, &topic, 0);
        assert_eq!(data.error_code, 0, "v{version}");
        assert!(records_of(data).is_empty(), "v{version}");
        assert!(
            waited >= Duration::from_millis(350),
            "v{version}: answered after {waited:?}, before max_wait_ms=400"
        );
        assert!(
            waited < Duration::from_secs(5),
            "v{version}: answered after {waited:?}, long after max_wait_ms=400"
        );
    }
}

#[test]
fn long_poll_returns_early_when_data_arrives() {
    let broker = Broker::start();
    let topic = Topic::create(&broker, "wakeup", 1);
    let mut conn = broker.connect();
    for (round, version) in [4i16, 12, 17].into_iter().enumerate() {
        let offset = round as i64 * 2;
        let mut request = fetch_request(version, &topic, &[(0, offset)]);
        request.max_wait_ms = 8000;
        request.min_bytes = 1;
        let correlation_id = conn.send(ApiKey::Fetch, version, &request);
        let started = Instant::now();
        // Give the fetch time to park, then produce on another connection.
        std::thread::sleep(Duration::from_millis(150));
        let records = batch(2, now_ms());
        assert_eq!(broker.produce("wakeup", 0, &records), offset);
        let response: FetchResponse = conn.receive_response(ApiKey::Fetch, version, correlation_id);
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_secs(4),
            "v{version}: long poll took {waited:?} although data arrived after 150 ms"
        );
        let data = partition_data(&response, version, &topic, 0);
        let batches = split_batches(&records_of(data));
        assert_eq!(batches.len(), 1, "v{version}");
        assert_eq!(batches[0].0, offset);
        assert_eq!(with_base_offset_zero(&batches[0].1), records);
    }
}

#[test]
fn min_bytes_waits_for_enough_data() {
    let broker = Broker::start();
    let topic = Topic::create(&broker, "min-bytes", 1);
    let small = batch(1, now_ms());
    broker.produce("min-bytes", 0, &small);
    let mut conn = broker.connect();
    // One small batch is below min_bytes: the fetch waits the full max_wait, then returns it.
    let mut request = fetch_request(12, &topic, &[(0, 0)]);
    request.min_bytes = 100_000;
    request.max_wait_ms = 300;
    let started = Instant::now();
    let response: FetchResponse = conn.request(ApiKey::Fetch, 12, &request);
    assert!(started.elapsed() >= Duration::from_millis(250));
    let batches = split_batches(&records_of(partition_data(&response, 12, &topic, 0)));
    assert_eq!(batches.len(), 1);
}

/// A fetch with session fields (v7+).
fn session_request(
    version: i16,
    topic: &Topic,
    session_id: i32,
    epoch: i32,
    partitions: &[(i32, i64)],
) -> FetchRequest {
    let mut request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_session_id(session_id)
        .with_session_epoch(epoch);
    if !partitions.is_empty() {
        request.topics = vec![topic.fetch_topic(version, partitions)];
    }
    request
}

fn partition_count(response: &FetchResponse) -> usize {
    response.responses.iter().map(|t| t.partitions.len()).sum()
}

#[test]
fn fetch_sessions_v7_to_v17() {
    let broker = Broker::start();
    let topic = Topic::create(&broker, "sessions", 2);
    broker.produce("sessions", 0, &batch(3, now_ms()));
    let mut conn = broker.connect();
    let mut seen_ids = Vec::new();
    let mut partition_1_end = 0i64;
    for version in 7..=17i16 {
        let log_end = broker.produce("sessions", 0, &batch(1, now_ms())) + 1;
        // Epoch 0, id 0: a full fetch that opens a session, positioned at the log end.
        let response: FetchResponse = conn.request(
            ApiKey::Fetch,
            version,
            &session_request(version, &topic, 0, 0, &[(0, log_end), (1, partition_1_end)]),
        );
        assert_eq!(response.error_code, 0, "v{version}");
        let session_id = response.session_id;
        assert_ne!(session_id, 0, "v{version}: a session was created");
        assert!(!seen_ids.contains(&session_id), "v{version}: fresh id");
        seen_ids.push(session_id);
        assert_eq!(partition_count(&response), 2, "v{version}: full response");
        assert_eq!(
            partition_data(&response, version, &topic, 0).high_watermark,
            log_end
        );

        // Epoch 1, nothing changed: an incremental response with no partitions.
        let response: FetchResponse = conn.request(
            ApiKey::Fetch,
            version,
            &session_request(version, &topic, session_id, 1, &[]),
        );
        assert_eq!(response.error_code, 0, "v{version}");
        assert_eq!(response.session_id, session_id, "v{version}");
        assert_eq!(
            partition_count(&response),
            0,
            "v{version}: unchanged partitions are left out: {response:?}"
        );

        // New data on partition 0: epoch 2 returns only that partition, with the batch.
        let records = batch(2, now_ms());
        assert_eq!(broker.produce("sessions", 0, &records), log_end);
        let response: FetchResponse = conn.request(
            ApiKey::Fetch,
            version,
            &session_request(version, &topic, session_id, 2, &[]),
        );
        assert_eq!(response.error_code, 0, "v{version}");
        assert_eq!(partition_count(&response), 1, "v{version}: {response:?}");
        let data = partition_data(&response, version, &topic, 0);
        assert_eq!(data.high_watermark, log_end + 2, "v{version}");
        let batches = split_batches(&records_of(data));
        assert_eq!(batches.len(), 1, "v{version}");
        assert_eq!(with_base_offset_zero(&batches[0].1), records);

        // The client moves past the batch and forgets partition 1 (epoch 3).
        let mut request = session_request(version, &topic, session_id, 3, &[(0, log_end + 2)]);
        let forgotten = ForgottenTopic::default().with_partitions(vec![1]);
        request.forgotten_topics_data = vec![if version >= 13 {
            forgotten.with_topic_id(topic.id)
        } else {
            forgotten.with_topic(topic_name(&topic.name))
        }];
        let response: FetchResponse = conn.request(ApiKey::Fetch, version, &request);
        assert_eq!(response.error_code, 0, "v{version}");
        assert_eq!(
            partition_count(&response),
            0,
            "v{version}: a new fetch offset alone changes nothing to report: {response:?}"
        );
        // Data on the forgotten partition is not reported (epoch 4).
        broker.produce("sessions", 1, &batch(1, now_ms()));
        partition_1_end += 1;
        let response: FetchResponse = conn.request(
            ApiKey::Fetch,
            version,
            &session_request(version, &topic, session_id, 4, &[]),
        );
        assert_eq!(response.error_code, 0, "v{version}");
        assert_eq!(
            partition_count(&response),
            0,
            "v{version}: forgotten partition 1 is not returned: {response:?}"
        );

        // A repeated epoch (4 again; 5 expected): INVALID_FETCH_SESSION_EPOCH.
        let response: FetchResponse = conn.request(
            ApiKey::Fetch,
            version,
            &session_request(version, &topic, session_id, 4, &[]),
        );
        assert_eq!(
            response.error_code, INVALID_FETCH_SESSION_EPOCH,
            "v{version}"
        );
        assert_eq!(partition_count(&response), 0, "v{version}");
        // A skipped epoch too.
        let response: FetchResponse = conn.request(
            ApiKey::Fetch,
            version,
            &session_request(version, &topic, session_id, 9, &[]),
        );
        assert_eq!(
            response.error_code, INVALID_FETCH_SESSION_EPOCH,
            "v{version}"
        );
        // The session survives the bad epochs: epoch 5 works.
        let response: FetchResponse = conn.request(
            ApiKey::Fetch,
            version,
            &session_request(version, &topic, session_id, 5, &[]),
        );
        assert_eq!(response.error_code, 0, "v{version}");
        assert_eq!(response.session_id, session_id, "v{version}");

        // An id the broker never issued: FETCH_SESSION_ID_NOT_FOUND.
        let response: FetchResponse = conn.request(
            ApiKey::Fetch,
            version,
            &session_request(version, &topic, 0x7fff_0000 + i32::from(version), 1, &[]),
        );
        assert_eq!(
            response.error_code, FETCH_SESSION_ID_NOT_FOUND,
            "v{version}"
        );

        // Epoch -1 closes the session (a sessionless full fetch); the id is then unknown.
        let response: FetchResponse = conn.request(
            ApiKey::Fetch,
            version,
            &session_request(version, &topic, session_id, -1, &[(0, 0)]),
        );
        assert_eq!(response.error_code, 0, "v{version}");
        assert_eq!(response.session_id, 0, "v{version}");
        assert_eq!(partition_count(&response), 1, "v{version}");
        let response: FetchResponse = conn.request(
            ApiKey::Fetch,
            version,
            &session_request(version, &topic, session_id, 6, &[]),
        );
        assert_eq!(
            response.error_code, FETCH_SESSION_ID_NOT_FOUND,
            "v{version}"
        );
    }
}
