//! Client quotas against a real `dlog` process: AlterClientQuotas and DescribeClientQuotas with
//! Kafka's validation, filter semantics and error codes, quotas surviving a restart (they are
//! metadata records), and producer_byte_rate enforced: a client over its quota gets throttle
//! times in its Produce responses and its connection is not read meanwhile, so a librdkafka
//! producer with a small quota takes seconds for what an unquota'd one sends at once.

mod common;
mod raw;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, ApiKey, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::client::ClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::statistics::Statistics;

use raw::RawClient;

const INVALID_REQUEST: i16 = 42;
const UNSUPPORTED_VERSION: i16 = 35;
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_SPECIFIED: i8 = 2;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// An entry: entity parts (type, name; None = default) and ops (key, Some(value) / None to remove).
fn entry(entity: &[(&str, Option<&str>)], ops: &[(&str, Option<f64>)]) -> EntryData {
    EntryData::default()
        .with_entity(
            entity
                .iter()
                .map(|(t, n)| {
                    EntityData::default()
                        .with_entity_type(s(t))
                        .with_entity_name(n.map(s))
                })
                .collect(),
        )
        .with_ops(
            ops.iter()
                .map(|(key, value)| {
                    OpData::default()
                        .with_key(s(key))
                        .with_value(value.unwrap_or(0.0))
                        .with_remove(value.is_none())
                })
                .collect(),
        )
}

fn alter(client: &mut RawClient, entries: Vec<EntryData>, validate_only: bool) -> Vec<i16> {
    let response: AlterClientQuotasResponse = client.call(
        ApiKey::AlterClientQuotas,
        1,
        &AlterClientQuotasRequest::default()
            .with_entries(entries)
            .with_validate_only(validate_only),
    );
    response.entries.iter().map(|e| e.error_code).collect()
}

/// Entities found (sorted "type=name" lists, `<default>` for defaults) with their values, or
/// the error code.
fn describe(
    client: &mut RawClient,
    components: &[(&str, i8, Option<&str>)],
    strict: bool,
) -> Result<Vec<(String, Vec<(String, f64)>)>, i16> {
    let response: DescribeClientQuotasResponse = client.call(
        ApiKey::DescribeClientQuotas,
        1,
        &DescribeClientQuotasRequest::default()
            .with_components(
                components
                    .iter()
                    .map(|(t, m, name)| {
                        ComponentData::default()
                            .with_entity_type(s(t))
                            .with_match_type(*m)
                            .with_match(name.map(s))
                    })
                    .collect(),
            )
            .with_strict(strict),
    );
    if response.error_code != 0 {
        return Err(response.error_code);
    }
    let mut found: Vec<(String, Vec<(String, f64)>)> = response
        .entries
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let mut parts: Vec<String> = e
                .entity
                .iter()
                .map(|p| {
                    format!(
                        "{}={}",
                        p.entity_type.as_str(),
                        p.entity_name.as_ref().map_or("<default>", |n| n.as_str())
                    )
                })
                .collect();
            parts.sort();
            let mut values: Vec<(String, f64)> = e
                .values
                .iter()
                .map(|v| (v.key.to_string(), v.value))
                .collect();
            values.sort_by(|a, b| a.0.cmp(&b.0));
            (parts.join(","), values)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

fn names(found: &[(String, Vec<(String, f64)>)]) -> Vec<&str> {
    found.iter().map(|(name, _)| name.as_str()).collect()
}

#[test]
fn quotas_are_altered_described_and_kept_as_kafka_does() {
    // A metadata snapshot every few hundred bytes: the restart reads the quotas back from a
    // snapshot (the image's JSON), not only from the log's records.
    let mut broker = Broker::start_with(&["metadata.log.max.record.bytes.between.snapshots=300"]);
    let mut client = RawClient::connect(broker.addr());
    let codes = alter(
        &mut client,
        vec![
            entry(
                &[("user", Some("alice"))],
                &[
                    ("producer_byte_rate", Some(1024.0)),
                    ("consumer_byte_rate", Some(2048.0)),
                ],
            ),
            entry(
                &[("client-id", Some("my-client"))],
                &[("producer_byte_rate", Some(4096.0))],
            ),
            entry(&[("user", None)], &[("request_percentage", Some(12.5))]),
            entry(
                &[("user", Some("alice")), ("client-id", None)],
                &[("consumer_byte_rate", Some(100.0))],
            ),
            entry(&[("ip", None)], &[("connection_creation_rate", Some(10.0))]),
        ],
        false,
    );
    assert_eq!(codes, vec![0; 5]);

    // Bad entries fail alone with INVALID_REQUEST; the good one in the same request commits.
    let codes = alter(
        &mut client,
        vec![
            entry(&[("user", Some("bob"))], &[("unknown_rate", Some(1.0))]),
            entry(
                &[("user", Some("bob")), ("ip", Some("10.0.0.1"))],
                &[("producer_byte_rate", Some(1.0))],
            ),
            entry(
                &[("user", Some("bob"))],
                &[("producer_byte_rate", Some(10.5))],
            ),
            entry(
                &[("user", Some("bob"))],
                &[("connection_creation_rate", Some(1.0))],
            ),
            entry(
                &[("ip", Some("not-an-ip"))],
                &[("connection_creation_rate", Some(1.0))],
            ),
            entry(
                &[("ip", Some("10.0.0.1"))],
                &[("producer_byte_rate", Some(1.0))],
            ),
            entry(
                &[("group", Some("g"))],
                &[("producer_byte_rate", Some(1.0))],
            ),
            entry(&[], &[("producer_byte_rate", Some(1.0))]),
            entry(
                &[("client-id", Some("good"))],
                &[("consumer_byte_rate", Some(5000.0))],
            ),
        ],
        false,
    );
    assert_eq!(
        codes,
        vec![
            INVALID_REQUEST,
            INVALID_REQUEST,
            INVALID_REQUEST,
            INVALID_REQUEST,
            INVALID_REQUEST,
            INVALID_REQUEST,
            INVALID_REQUEST,
            INVALID_REQUEST,
            0
        ]
    );
    // validate_only: accepted, not kept.
    let codes = alter(
        &mut client,
        vec![entry(
            &[("user", Some("carol"))],
            &[("producer_byte_rate", Some(1.0))],
        )],
        true,
    );
    assert_eq!(codes, vec![0]);

    let check = |client: &mut RawClient| {
        let all = describe(client, &[], false).unwrap();
        assert_eq!(
            names(&all),
            vec![
                "client-id=<default>,user=alice",
                "client-id=good",
                "client-id=my-client",
                "ip=<default>",
                "user=<default>",
                "user=alice",
            ]
        );
        let alice = &all.iter().find(|(n, _)| n == "user=alice").unwrap().1;
        assert_eq!(
            alice,
            &vec![
                ("consumer_byte_rate".to_string(), 2048.0),
                ("producer_byte_rate".to_string(), 1024.0)
            ]
        );
        // SPECIFIED: named users only; strict: no other entity type.
        let users = describe(client, &[("user", MATCH_SPECIFIED, None)], false).unwrap();
        assert_eq!(
            names(&users),
            vec!["client-id=<default>,user=alice", "user=alice"]
        );
        let users = describe(client, &[("user", MATCH_SPECIFIED, None)], true).unwrap();
        assert_eq!(names(&users), vec!["user=alice"]);
        let defaults = describe(client, &[("user", MATCH_DEFAULT, None)], true).unwrap();
        assert_eq!(names(&defaults), vec!["user=<default>"]);
        let exact = describe(
            client,
            &[("client-id", MATCH_EXACT, Some("my-client"))],
            false,
        )
        .unwrap();
        assert_eq!(names(&exact), vec!["client-id=my-client"]);
        let both = describe(
            client,
            &[
                ("user", MATCH_EXACT, Some("alice")),
                ("client-id", MATCH_DEFAULT, None),
            ],
            true,
        )
        .unwrap();
        assert_eq!(names(&both), vec!["client-id=<default>,user=alice"]);
        assert!(
            describe(client, &[("user", MATCH_EXACT, Some("nobody"))], false)
                .unwrap()
                .is_empty()
        );
    };
    check(&mut client);

    // Kafka's filter errors.
    assert_eq!(
        describe(&mut client, &[("user", MATCH_EXACT, None)], false),
        Err(INVALID_REQUEST)
    );
    assert_eq!(
        describe(&mut client, &[("user", MATCH_DEFAULT, Some("x"))], false),
        Err(INVALID_REQUEST)
    );
    assert_eq!(
        describe(
            &mut client,
            &[
                ("user", MATCH_SPECIFIED, None),
                ("user", MATCH_DEFAULT, None)
            ],
            false
        ),
        Err(INVALID_REQUEST)
    );
    assert_eq!(
        describe(
            &mut client,
            &[("ip", MATCH_SPECIFIED, None), ("user", MATCH_DEFAULT, None)],
            false
        ),
        Err(INVALID_REQUEST)
    );
    assert_eq!(
        describe(&mut client, &[("group", MATCH_SPECIFIED, None)], false),
        Err(UNSUPPORTED_VERSION)
    );
    assert_eq!(
        describe(&mut client, &[("user", 7, None)], false),
        Err(UNSUPPORTED_VERSION)
    );

    // Quotas are metadata: a restart keeps them.
    drop(client);
    broker.stop_clean();
    let snapshots = std::fs::read_dir(broker.data_dir().join("__cluster_metadata-0"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".checkpoint")
        })
        .count();
    assert!(snapshots > 0, "a metadata snapshot was taken");
    broker.restart();
    let mut client = RawClient::connect(broker.addr());
    check(&mut client);

    // Removing a key leaves the others; removing the last one removes the entity.
    let codes = alter(
        &mut client,
        vec![
            entry(&[("user", Some("alice"))], &[("consumer_byte_rate", None)]),
            entry(
                &[("client-id", Some("good"))],
                &[("consumer_byte_rate", None)],
            ),
        ],
        false,
    );
    assert_eq!(codes, vec![0, 0]);
    let all = describe(&mut client, &[], false).unwrap();
    assert!(!names(&all).contains(&"client-id=good"));
    let alice = &all.iter().find(|(n, _)| n == "user=alice").unwrap().1;
    assert_eq!(alice, &vec![("producer_byte_rate".to_string(), 1024.0)]);
}

/// One raw Produce v9 of `batch` (acks=1): (error code, throttle time ms).
fn produce(client: &mut RawClient, topic: &str, batch: &[u8]) -> (i16, i32) {
    let request = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(s(topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(bytes::Bytes::copy_from_slice(batch)))])]);
    let response: ProduceResponse = client.call(ApiKey::Produce, 9, &request);
    (
        response.responses[0].partition_responses[0].error_code,
        response.throttle_time_ms,
    )
}

fn big_batch(size_bytes: usize) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let value = random_bytes(7, size_bytes);
    dlog::record::builder::BatchBuilder::new(now)
        .record(None, Some(&value), now)
        .build()
}

#[tokio::test(flavor = "multi_thread")]
async fn producer_byte_rate_throttles_the_client_and_mutes_its_connection() {
    let metrics_port = free_port();
    let broker = Broker::start_with(&[&format!("metrics.listen=127.0.0.1:{metrics_port}")]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "quota", 1, &[]).await;
    let mut client = RawClient::connect(broker.addr());
    // The raw client's id is `raw-test`: 50 KB/s for it.
    let codes = alter(
        &mut client,
        vec![entry(
            &[("client-id", Some("raw-test"))],
            &[("producer_byte_rate", Some(50_000.0))],
        )],
        false,
    );
    assert_eq!(codes, vec![0]);
    // The rate is measured over at least 10 s: 500 KB at once is the quota, more is over.
    let batch = big_batch(100_000);
    let mut throttles = Vec::new();
    for _ in 0..6 {
        let (error, throttle_ms) = produce(&mut client, "quota", &batch);
        assert_eq!(error, 0);
        throttles.push(throttle_ms);
    }
    assert_eq!(
        &throttles[..4],
        &[0, 0, 0, 0],
        "within the quota: {throttles:?}"
    );
    let throttle_ms = throttles[5];
    // ~600 KB over 10 s is 60 KB/s, 20% over: about 2 s (Kafka's (rate - quota) / quota × window).
    assert!(
        (1_000..=11_000).contains(&throttle_ms),
        "throttles {throttles:?}"
    );
    // The connection is muted: the next request is read only once the throttle time passed.
    let started = Instant::now();
    let (_, next_throttle_ms) = produce(&mut client, "quota", &big_batch(10));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(throttle_ms as u64 / 2),
        "answered after {waited:?}, throttle was {throttle_ms} ms"
    );
    assert!(next_throttle_ms > 0, "still over the quota");
    // The throttling is counted, by quota type.
    let scrape = metrics_text(metrics_port);
    let throttled = metric_value(
        &scrape,
        "dlog_quota_throttled_requests_total{quota_type=\"produce\"}",
    );
    assert!(
        throttled >= 2.0,
        "throttled requests {throttled}:\n{scrape}"
    );
    let throttle_ms = metric_value(
        &scrape,
        "dlog_quota_throttle_time_ms_total{quota_type=\"produce\"}",
    );
    assert!(throttle_ms >= 1_000.0, "throttle time {throttle_ms}");
}

/// The metrics listener's `/metrics` text.
fn metrics_text(port: u16) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics listener");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// The value of the series `name{labels}` in a scrape (0 when absent).
fn metric_value(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Records the largest broker throttle time librdkafka's statistics report, and the
/// deliveries that failed (a panic cannot cross librdkafka's callbacks).
#[derive(Clone, Default)]
struct ThrottleSeen {
    throttle_ms_max: Arc<AtomicI64>,
    failed_deliveries: Arc<AtomicI64>,
}

impl ClientContext for ThrottleSeen {
    fn stats(&self, statistics: Statistics) {
        for broker in statistics.brokers.values() {
            if let Some(window) = &broker.throttle {
                self.throttle_ms_max.fetch_max(window.max, Ordering::SeqCst);
            }
        }
    }
}

impl ProducerContext for ThrottleSeen {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed_deliveries.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Sends `count` records of 1 KB with client id `client_id`, one small request at a time;
/// returns the time until all were acknowledged and the largest throttle time seen.
fn send(bootstrap: &str, client_id: &str, count: usize) -> (Duration, i64) {
    let context = ThrottleSeen::default();
    let producer: BaseProducer<ThrottleSeen> = producer_config(bootstrap)
        .set("client.id", client_id)
        .set("acks", "1")
        .set("batch.size", "16384")
        .set("max.in.flight", "1")
        .set("message.timeout.ms", "120000")
        .set("request.timeout.ms", "30000")
        .set("statistics.interval.ms", "100")
        .create_with_context(context.clone())
        .expect("producer");
    let value = random_bytes(3, 1000);
    let started = Instant::now();
    for i in 0..count {
        let key = i.to_string();
        loop {
            match producer.send(BaseRecord::to("quota").key(&key).payload(&value)) {
                Ok(()) => break,
                Err((_, _)) => {
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    let elapsed = started.elapsed();
    // One more statistics interval, so the last throttle is reported.
    for _ in 0..5 {
        producer.poll(Duration::from_millis(100));
    }
    assert_eq!(
        context.failed_deliveries.load(Ordering::SeqCst),
        0,
        "failed deliveries"
    );
    (elapsed, context.throttle_ms_max.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_librdkafka_producer_over_its_quota_is_slowed_down_and_others_are_not() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "quota", 1, &[]).await;
    let mut client = RawClient::connect(broker.addr());
    let codes = alter(
        &mut client,
        vec![entry(
            &[("client-id", Some("throttled"))],
            &[("producer_byte_rate", Some(50_000.0))],
        )],
        false,
    );
    assert_eq!(codes, vec![0]);
    let records = 800; // ~800 KB: 500 KB fit the first 10 s window, the rest must wait.
    let (free_elapsed, free_throttle_ms) = tokio::task::spawn_blocking({
        let bootstrap = bootstrap.clone();
        move || send(&bootstrap, "free", records)
    })
    .await
    .unwrap();
    let (throttled_elapsed, throttled_throttle_ms) =
        tokio::task::spawn_blocking(move || send(&bootstrap, "throttled", records))
            .await
            .unwrap();
    eprintln!(
        "free: {free_elapsed:?} (throttle {free_throttle_ms} ms); throttled: {throttled_elapsed:?} (throttle {throttled_throttle_ms} ms)"
    );
    assert_eq!(
        free_throttle_ms, 0,
        "a client without a quota is never throttled"
    );
    assert!(
        throttled_throttle_ms > 0,
        "the quota'd client saw throttle times"
    );
    // 300 KB beyond the burst at 50 KB/s: seconds, whatever the machine's speed.
    assert!(
        throttled_elapsed >= Duration::from_secs(4),
        "throttled producer took {throttled_elapsed:?}"
    );
    assert!(
        throttled_elapsed > free_elapsed,
        "throttled {throttled_elapsed:?}, free {free_elapsed:?}"
    );
}

/// One raw Fetch v12 (no session) of partition 0 from `offset`: (throttle ms, record bytes).
fn fetch(client: &mut RawClient, topic: &str, offset: i64) -> (i32, usize) {
    use kafka_protocol::messages::FetchResponse;
    let request = raw::consumer_fetch(topic, 0, offset);
    let response: FetchResponse = client.call(ApiKey::Fetch, 12, &request);
    assert_eq!(response.error_code, 0);
    let bytes = response
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| {
            assert_eq!(p.error_code, 0);
            p.records.as_ref().map_or(0, |r| r.len())
        })
        .sum();
    (response.throttle_time_ms, bytes)
}

#[tokio::test(flavor = "multi_thread")]
async fn consumer_byte_rate_throttles_fetches() {
    // Rates over 3 windows of 1 s (a short test): the minimum measured span is 2 s.
    let broker = Broker::start_with(&["quota.window.num=3"]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "quota", 1, &[]).await;
    let mut client = RawClient::connect(broker.addr());
    for _ in 0..4 {
        assert_eq!(produce(&mut client, "quota", &big_batch(100_000)).0, 0);
    }
    // 100 KB/s for the raw client's fetches: at most 200 KB over the 2 s minimum span.
    let codes = alter(
        &mut client,
        vec![entry(
            &[("client-id", Some("raw-test"))],
            &[("consumer_byte_rate", Some(100_000.0))],
        )],
        false,
    );
    assert_eq!(codes, vec![0]);
    let batch_bytes = big_batch(100_000).len();
    let mut offset = 0;
    let mut throttled = 0;
    let started = Instant::now();
    while offset < 4 {
        assert!(started.elapsed() < Duration::from_secs(120), "no progress");
        let (throttle_ms, bytes) = fetch(&mut client, "quota", offset);
        if throttle_ms > 0 {
            // A throttled fetch carries no records (they would pass the quota).
            assert_eq!(bytes, 0, "throttled fetch with records");
            throttled += 1;
        } else {
            // Capped at what the quota allows in its window: one 100 KB batch at a time.
            assert!(bytes > 0 && bytes <= 200_000, "fetched {bytes} bytes");
            offset += (bytes / batch_bytes).max(1) as i64;
        }
    }
    assert!(throttled > 0, "fetches over 100 KB/s must be throttled");
    // Each 200 KB response uses the whole 2 s budget: later ones wait for earlier ones to
    // leave the window.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn quota_apis_are_authorized_as_kafka_does() {
    // An authorizer and no ACL: ANONYMOUS may neither describe nor alter the cluster's configs.
    let broker = Broker::start_with(&[
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    ]);
    let mut client = RawClient::connect(broker.addr());
    const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
    let codes = alter(
        &mut client,
        vec![
            entry(
                &[("user", Some("alice"))],
                &[("producer_byte_rate", Some(1024.0))],
            ),
            entry(
                &[("client-id", None)],
                &[("consumer_byte_rate", Some(1024.0))],
            ),
        ],
        false,
    );
    assert_eq!(codes, vec![CLUSTER_AUTHORIZATION_FAILED; 2]);
    assert_eq!(
        describe(&mut client, &[], false),
        Err(CLUSTER_AUTHORIZATION_FAILED)
    );
}

/// Connections from `source` that are served (an ApiVersions answered) out of `attempts`
/// opened one after another.
fn served_connections(broker: &Broker, source: &str, attempts: i32) -> i32 {
    (0..attempts)
        .filter(|i| {
            let mut stream = connect_from(broker, source);
            api_versions_roundtrip(&mut stream, *i, Duration::from_secs(2)).is_ok()
        })
        .count() as i32
}

#[test]
fn connection_creation_rate_limits_new_connections_per_address() {
    // Two 1 s windows: a rate of 2/s lets a handful of connections in per second.
    let broker = Broker::start_with(&["quota.window.num=2", "quota.window.size.seconds=1"]);
    let mut client = RawClient::connect(broker.addr());
    let codes = alter(
        &mut client,
        vec![entry(
            &[("ip", Some("127.0.0.2"))],
            &[("connection_creation_rate", Some(2.0))],
        )],
        false,
    );
    assert_eq!(codes, vec![0]);
    // The quota reaches the broker's image with the metadata commit: wait until it bites.
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_connections(&broker, "127.0.0.2", 20) == 20 {
        assert!(Instant::now() < deadline, "the ip quota never applied");
    }
    std::thread::sleep(Duration::from_secs(3));
    let served = served_connections(&broker, "127.0.0.2", 20);
    // Some get in (the rate is not 0) and not all (the rate is far below a back-to-back
    // loop's); how many depends on how fast this machine runs the loop.
    assert!(
        (1..20).contains(&served),
        "{served} of 20 back-to-back connections from 127.0.0.2 served at 2/s"
    );
    // Another address has no quota.
    assert_eq!(served_connections(&broker, "127.0.0.3", 20), 20);
    // Removing the quota lets every connection in again.
    let codes = alter(
        &mut client,
        vec![entry(
            &[("ip", Some("127.0.0.2"))],
            &[("connection_creation_rate", None)],
        )],
        false,
    );
    assert_eq!(codes, vec![0]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_connections(&broker, "127.0.0.2", 20) < 20 {
        assert!(
            Instant::now() < deadline,
            "removing the ip quota never applied"
        );
    }
}

/// CreateTopics of `topics` (name, partitions) at `version`: each topic's error code, and the
/// response's throttle time.
fn create_topics(client: &mut RawClient, version: i16, topics: &[(&str, i32)]) -> (Vec<i16>, i32) {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(
            topics
                .iter()
                .map(|(name, partitions)| {
                    CreatableTopic::default()
                        .with_name(TopicName(s(name)))
                        .with_num_partitions(*partitions)
                        .with_replication_factor(1)
                })
                .collect(),
        );
    let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, version, &request);
    (
        response.topics.iter().map(|t| t.error_code).collect(),
        response.throttle_time_ms,
    )
}

const THROTTLING_QUOTA_EXCEEDED: i16 = 89;

/// A broker with its metrics served, and `key` = `value` set for the raw client's id.
fn broker_with_raw_client_quota(key: &str, value: f64) -> (Broker, u16) {
    let metrics_port = free_port();
    let broker = Broker::start_with(&[&format!("metrics.listen=127.0.0.1:{metrics_port}")]);
    let mut admin = RawClient::connect(broker.addr());
    let codes = alter(
        &mut admin,
        vec![entry(
            &[("client-id", Some("raw-test"))],
            &[(key, Some(value))],
        )],
        false,
    );
    assert_eq!(codes, vec![0]);
    (broker, metrics_port)
}

#[tokio::test(flavor = "multi_thread")]
async fn controller_mutation_rate_refuses_topics_beyond_the_quota() {
    // 1 partition mutation per second for the raw client: a bucket of 11 (11 windows of 1 s).
    let (broker, metrics_port) = broker_with_raw_client_quota("controller_mutation_rate", 1.0);
    // Strict (v6+): the bucket is not empty, so 20 partitions pass and take it to -9.
    let mut client = RawClient::connect(broker.addr());
    let (codes, throttle_ms) = create_topics(&mut client, 7, &[("burst", 20)]);
    assert_eq!((codes, throttle_ms), (vec![0], 0));
    // Now empty: the next topics are refused with THROTTLING_QUOTA_EXCEEDED and the time until
    // the bucket is back at zero (~9 s); an existing topic is answered as such, uncharged.
    let mut client = RawClient::connect(broker.addr());
    let (codes, throttle_ms) = create_topics(
        &mut client,
        7,
        &[("refused-a", 1), ("refused-b", 3), ("burst", 1)],
    );
    assert_eq!(
        codes,
        vec![THROTTLING_QUOTA_EXCEEDED, THROTTLING_QUOTA_EXCEEDED, 36]
    );
    assert!(
        (5_000..=9_000).contains(&throttle_ms),
        "throttle {throttle_ms} ms"
    );
    // Permissive (v5 and older): accepted, and throttled afterwards.
    let mut client = RawClient::connect(broker.addr());
    let (codes, throttle_ms) = create_topics(&mut client, 5, &[("permissive", 2)]);
    assert_eq!(codes, vec![0]);
    assert!(throttle_ms >= 5_000, "throttle {throttle_ms} ms");
    // Another client (librdkafka's admin client, its own client id) has no quota.
    create_topic(&broker.bootstrap(), "unlimited", 30, &[]).await;
    // Throttles are counted by quota type.
    let scrape = metrics_text(metrics_port);
    let throttled = metric_value(
        &scrape,
        "dlog_quota_throttled_requests_total{quota_type=\"controller_mutation\"}",
    );
    assert!(throttled >= 2.0, "throttled requests {throttled}");
}

#[test]
fn request_percentage_throttles_a_client_that_keeps_the_broker_busy() {
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
    // 0.01 % of one thread: 1 ms of handling per 10 s window.
    let (broker, metrics_port) = broker_with_raw_client_quota("request_percentage", 0.01);
    let mut client = RawClient::connect(broker.addr());
    let mut answered = 0;
    let throttle_ms = loop {
        let response: MetadataResponse = client.call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        );
        answered += 1;
        if response.throttle_time_ms > 0 || answered == 2_000 {
            break response.throttle_time_ms;
        }
    };
    // Kafka caps a request-quota throttle at one window (1 s).
    assert!(
        (1..=1_000).contains(&throttle_ms),
        "throttle {throttle_ms} ms after {answered} requests"
    );
    // The connection is muted meanwhile; the next answer is still throttled (the window
    // still holds the time spent).
    let started = Instant::now();
    let response: MetadataResponse = client.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    );
    assert!(
        started.elapsed() >= Duration::from_millis(throttle_ms as u64 / 2),
        "answered after {:?}, throttle was {throttle_ms} ms",
        started.elapsed()
    );
    assert!(response.throttle_time_ms > 0);
    // A produce answer carries it too (its throttle time is the last field of the body).
    let mut admin = RawClient::connect(broker.addr());
    create_topic_raw(&mut admin, "busy");
    let (_, produce_throttle_ms) = produce(&mut client, "busy", &big_batch(10));
    assert!(produce_throttle_ms > 0, "produce throttle");
    let scrape = metrics_text(metrics_port);
    let throttled = metric_value(
        &scrape,
        "dlog_quota_throttled_requests_total{quota_type=\"request\"}",
    );
    assert!(throttled >= 3.0, "throttled requests {throttled}");
}

/// A topic of one partition, created by the admin connection (no quota for it).
fn create_topic_raw(admin: &mut RawClient, name: &str) {
    let (codes, _) = create_topics(admin, 7, &[(name, 1)]);
    assert_eq!(codes, vec![0]);
}
