//! The metrics listener against a real `dlog` process: traffic from rdkafka moves the counters
//! as it should (scraped and parsed from the Prometheus text format), `/health` and `/ready`
//! answer as documented (including 503 while a large log is recovered), malformed HTTP does
//! not break the listener, and `log.format=json` writes one JSON object per line.

mod common;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

// ---------------------------------------------------------------------------------------------
// HTTP and exposition helpers

/// A broker with a metrics listener on its own free port.
fn start_with_metrics(settings: &[&str]) -> (Broker, SocketAddr) {
    let port = free_port();
    let listen = format!("metrics.listen=127.0.0.1:{port}");
    let mut all = vec![listen.as_str()];
    all.extend_from_slice(settings);
    let broker = Broker::start_with(&all);
    (broker, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// One raw exchange: sends `request`, returns everything the server sends back.
fn exchange(address: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(request)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(response)
}

/// GET `path`: (status code, body).
fn get(address: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: dlog\r\nAccept: */*\r\n\r\n");
    let response = exchange(address, request.as_bytes())?;
    let text = String::from_utf8(response).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("status line in {head:?}"));
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .parse()
        .unwrap();
    assert_eq!(body.len(), length, "body length matches Content-Length");
    Ok((status, body.to_string()))
}

/// Samples of one scrape: (name, labels) → value.
#[derive(Debug)]
struct Scrape {
    samples: BTreeMap<(String, BTreeMap<String, String>), f64>,
    text: String,
}

impl Scrape {
    /// The sum of every sample of `name` whose labels include all of `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, v)| v)
            .sum()
    }

    fn has(&self, name: &str) -> bool {
        self.samples.keys().any(|(n, _)| n == name)
    }
}

/// Parses the Prometheus text format strictly enough to catch what a scraper would refuse:
/// every sample belongs to a family declared once by a TYPE line, label values are quoted,
/// values parse as numbers, and no (name, labels) repeats.
fn parse_exposition(text: &str) -> Scrape {
    let mut samples = BTreeMap::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "family {name} declared twice"
            );
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let mut labels = BTreeMap::new();
                // Label values in dlog's output hold no commas or escaped quotes except where
                // a topic name would, and test topics have none.
                for pair in body.split(',').filter(|p| !p.is_empty()) {
                    let (key, quoted) = pair.split_once('=').expect("label key=value");
                    let value = quoted
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or_else(|| panic!("quoted label value in {line:?}"));
                    labels.insert(key.to_string(), value.to_string());
                }
                (name.to_string(), labels)
            }
        };
        assert!(name.starts_with("dlog_"), "unprefixed metric {name}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| types.get(*base).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(&name);
        assert!(
            types.contains_key(family),
            "sample {name} without a TYPE line"
        );
        assert!(
            samples.insert((name.clone(), labels), value).is_none(),
            "duplicate sample {line:?}"
        );
    }
    Scrape {
        samples,
        text: text.to_string(),
    }
}

fn scrape(address: SocketAddr) -> Scrape {
    let (status, body) = get(address, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200, "{body}");
    parse_exposition(&body)
}

/// Scrapes until `done` holds for the scrape (bounded): counters recorded just after a
/// response was sent may lag the client by a moment.
fn scrape_until(address: SocketAddr, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    loop {
        let scrape = scrape(address);
        if done(&scrape) {
            return scrape;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never held; last scrape:\n{}",
            scrape.text
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------
// Counters follow the traffic

const RECORDS: usize = 2000;
const VALUE_BYTES: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_follow_produce_and_fetch_traffic() {
    let (broker, metrics) = start_with_metrics(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "traffic", 1, &[]).await;

    let producer: FutureProducer = producer_config(&bootstrap)
        .set("compression.type", "none")
        .create()
        .expect("producer");
    let value = vec![b'v'; VALUE_BYTES];
    let mut deliveries = Vec::with_capacity(RECORDS);
    for _ in 0..RECORDS {
        let record: FutureRecord<'_, (), [u8]> =
            FutureRecord::to("traffic").partition(0).payload(&value[..]);
        deliveries.push(producer.send(record, Duration::from_secs(30)));
    }
    for delivery in deliveries {
        delivery.await.expect("delivered");
    }

    let after_produce = scrape_until(metrics, "records in = RECORDS", |s| {
        s.sum("dlog_topic_records_in_total", &[("topic", "traffic")]) == RECORDS as f64
    });
    let bytes_in = after_produce.sum("dlog_topic_bytes_in_total", &[("topic", "traffic")]);
    let payload = (RECORDS * VALUE_BYTES) as f64;
    // Batches add a 61-byte header each and a few bytes per record (no compression): at
    // worst, one batch per record.
    let overhead_max = (RECORDS * (61 + 16)) as f64;
    assert!(
        bytes_in >= payload && bytes_in <= payload + overhead_max,
        "bytes in {bytes_in} vs payload {payload}"
    );
    let partition = [("topic", "traffic"), ("partition", "0")];
    assert_eq!(
        after_produce.sum("dlog_partition_size_bytes", &partition),
        bytes_in,
        "every byte produced is in the segment"
    );
    assert_eq!(
        after_produce.sum("dlog_partition_log_end_offset", &partition),
        RECORDS as f64
    );
    assert_eq!(
        after_produce.sum("dlog_partition_high_watermark", &partition),
        RECORDS as f64
    );
    assert_eq!(
        after_produce.sum("dlog_partition_log_start_offset", &partition),
        0.0
    );
    assert_eq!(
        after_produce.sum("dlog_partition_segments", &partition),
        1.0
    );
    let produce = [("api", "Produce"), ("error", "NONE")];
    let produce_requests = after_produce.sum("dlog_requests_total", &produce);
    assert!(produce_requests >= 1.0, "{}", after_produce.text);
    assert!(produce_requests <= RECORDS as f64);
    assert_eq!(
        after_produce.sum("dlog_request_duration_seconds_count", &produce),
        produce_requests,
        "one latency sample per request"
    );
    assert_eq!(
        after_produce.sum(
            "dlog_request_duration_seconds_bucket",
            &[("api", "Produce"), ("error", "NONE"), ("le", "+Inf")]
        ),
        produce_requests
    );
    assert!(after_produce.sum("dlog_request_bytes_total", &[("api", "Produce")]) > bytes_in);
    assert!(after_produce.sum("dlog_response_bytes_total", &[("api", "Produce")]) > 0.0);
    assert!(after_produce.sum("dlog_requests_total", &[("api", "CreateTopics")]) >= 1.0);
    assert!(after_produce.sum("dlog_requests_total", &[("api", "Metadata")]) >= 1.0);
    assert_eq!(
        after_produce.sum("dlog_partition_errors_total", &[("api", "Produce")]),
        0.0
    );

    // Consume everything back: bytes out covers every byte in at least once.
    let consumed = consume_all(&bootstrap, "traffic", 1);
    assert_eq!(consumed[&0].len(), RECORDS);
    let after_fetch = scrape_until(metrics, "bytes out >= bytes in", |s| {
        s.sum("dlog_topic_bytes_out_total", &[("topic", "traffic")]) >= bytes_in
    });
    assert!(
        after_fetch.sum(
            "dlog_requests_total",
            &[("api", "Fetch"), ("error", "NONE")]
        ) >= 1.0
    );
    assert!(after_fetch.sum("dlog_response_bytes_total", &[("api", "Fetch")]) >= bytes_in);

    // A fetch past the end is answered per partition with OFFSET_OUT_OF_RANGE.
    let consumer = consumer_config(&bootstrap)
        .set("auto.offset.reset", "error")
        .create::<rdkafka::consumer::BaseConsumer>()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("traffic", 0, Offset::Offset(RECORDS as i64 + 1000))
        .unwrap();
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(Err(_)) = consumer.poll(Duration::from_millis(200)) {
            break;
        }
    }
    drop(consumer);
    scrape_until(metrics, "a Fetch OFFSET_OUT_OF_RANGE counted", |s| {
        s.sum(
            "dlog_partition_errors_total",
            &[("api", "Fetch"), ("error", "OFFSET_OUT_OF_RANGE")],
        ) >= 1.0
    });

    // A request the broker refuses (Produce v99) closes the connection and is counted so.
    let mut kafka = TcpStream::connect(broker.addr()).expect("connect");
    let mut frame = Vec::new();
    frame.extend_from_slice(&0i16.to_be_bytes()); // Produce
    frame.extend_from_slice(&99i16.to_be_bytes()); // version
    frame.extend_from_slice(&7i32.to_be_bytes()); // correlation id
    frame.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    kafka
        .write_all(&(frame.len() as i32).to_be_bytes())
        .unwrap();
    kafka.write_all(&frame).unwrap();
    kafka
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = kafka.read_to_end(&mut rest);
    let last = scrape_until(metrics, "an UNSUPPORTED_VERSION request counted", |s| {
        s.sum(
            "dlog_requests_total",
            &[("api", "Produce"), ("error", "UNSUPPORTED_VERSION")],
        ) == 1.0
    });

    // Connections, process and disk families are there and plausible.
    assert!(last.sum("dlog_connections_accepted_total", &[]) >= 3.0);
    assert!(last.sum("dlog_connections_closed_total", &[]) >= 1.0);
    assert!(last.sum("dlog_connections_open", &[]) >= 0.0);
    assert!(
        last.sum("dlog_connections_accepted_total", &[])
            - last.sum("dlog_connections_closed_total", &[])
            == last.sum("dlog_connections_open", &[])
    );
    assert!(last.sum("dlog_process_resident_memory_bytes", &[]) > 1e6);
    assert!(last.sum("dlog_process_open_fds", &[]) > 3.0);
    assert!(last.sum("dlog_process_max_fds", &[]) > 0.0);
    assert!(last.has("dlog_process_cpu_seconds_total"));
    assert!(last.sum("dlog_process_start_time_seconds", &[]) > 1.6e9);
    assert!(last.sum("dlog_log_dir_free_bytes", &[]) > 0.0);
    assert!(last.sum("dlog_log_dir_total_bytes", &[]) >= last.sum("dlog_log_dir_free_bytes", &[]));
    assert_eq!(last.sum("dlog_ready", &[]), 1.0);
    // Every partition the broker hosts: the test topic, plus `__consumer_offsets` once a
    // client with a group.id has asked for a coordinator.
    let hosted: usize = common::consumer(&bootstrap)
        .fetch_metadata(None, CLIENT_TIMEOUT)
        .expect("metadata")
        .topics()
        .iter()
        .map(|t| t.partitions().len())
        .sum();
    assert_eq!(last.sum("dlog_partitions", &[]), hosted as f64);
    assert_eq!(last.sum("dlog_storage_last_shutdown_clean", &[]), 0.0);
    assert!(last.has("dlog_storage_recovery_duration_seconds"));
}

/// Issue 7's "lag = end offset − committed", through a real consumer group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_lag_is_end_offset_minus_committed() {
    let (broker, metrics) = start_with_metrics(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "lagged", 1, &[]).await;
    let producer: FutureProducer = producer_config(&bootstrap).create().expect("producer");
    let produce = |count: usize| {
        let producer = producer.clone();
        async move {
            for index in 0..count {
                let value = format!("record {index}");
                let record: FutureRecord<'_, (), str> =
                    FutureRecord::to("lagged").partition(0).payload(&value);
                producer
                    .send(record, Duration::from_secs(30))
                    .await
                    .expect("delivered");
            }
        }
    };
    produce(100).await;

    let consumer = consumer_config(&bootstrap)
        .set("group.id", "lag-group")
        .create::<rdkafka::consumer::BaseConsumer>()
        .expect("consumer");
    let mut committed = TopicPartitionList::new();
    committed
        .add_partition_offset("lagged", 0, Offset::Offset(40))
        .unwrap();
    consumer
        .commit(&committed, rdkafka::consumer::CommitMode::Sync)
        .expect("commit offset 40");
    let group = [
        ("group", "lag-group"),
        ("topic", "lagged"),
        ("partition", "0"),
    ];
    scrape_until(metrics, "lag 60 at committed 40", |s| {
        s.sum("dlog_group_committed_offset", &group) == 40.0
            && s.sum("dlog_group_lag_records", &group) == 60.0
    });
    // Lag grows with appends even when the group commits nothing.
    produce(10).await;
    scrape_until(metrics, "lag 70 after 10 more records", |s| {
        s.sum("dlog_group_lag_records", &group) == 70.0
    });
}

// ---------------------------------------------------------------------------------------------
// Health and readiness

#[test]
fn health_and_ready_answer_when_serving() {
    let (mut broker, metrics) = start_with_metrics(&[]);
    assert_eq!(get(metrics, "/health").unwrap(), (200, "ok\n".to_string()));
    assert_eq!(
        get(metrics, "/ready").unwrap(),
        (200, "ready\n".to_string())
    );
    assert_eq!(get(metrics, "/ready?verbose=1").unwrap().0, 200);
    assert_eq!(get(metrics, "/nope").unwrap().0, 404);
    broker.stop_clean();
    assert!(
        get(metrics, "/health").is_err(),
        "the listener goes away with the process"
    );
}

/// Batches appended straight into the segment file (offsets from `base_offset` on), so that
/// the next unclean start has `count` batches to validate and index.
fn append_batches(segment: &std::path::Path, base_offset: i64, count: usize) {
    let batch = dlog::record::builder::BatchBuilder::new(1_700_000_000_000)
        .record(None, Some(b"recover me"), 1_700_000_000_000)
        .build();
    let mut bytes = Vec::with_capacity(batch.len() * count);
    for index in 0..count {
        let start = bytes.len();
        bytes.extend_from_slice(&batch);
        // The base offset is outside the CRC: rewriting it keeps the batch valid.
        bytes[start..start + 8].copy_from_slice(&(base_offset + index as i64).to_be_bytes());
    }
    let mut file = OpenOptions::new()
        .append(true)
        .open(segment)
        .expect("open segment");
    file.write_all(&bytes).expect("append batches");
}

/// Not ready while a large log is recovered after an unclean stop; live all along; ready once
/// recovered, with the recovery time and every recovered record reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_recovery_finishes() {
    const BATCHES: usize = 1_000_000;
    let (mut broker, metrics) = start_with_metrics(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "big", 1, &[]).await;
    broker.stop_clean();

    append_batches(
        &broker.data_dir().join("big-0/00000000000000000000.log"),
        0,
        BATCHES,
    );
    // As after a crash: every segment past the recovery point (here: all) is validated.
    std::fs::remove_file(broker.data_dir().join(CLEAN_SHUTDOWN_FILE)).unwrap();

    // Watch /health and /ready from another thread while the broker starts.
    let seen: Arc<Mutex<Vec<(u16, u16)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (seen, stop) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let ready = get(metrics, "/ready").map(|r| r.0).unwrap_or(0);
                let health = get(metrics, "/health").map(|r| r.0).unwrap_or(0);
                seen.lock().unwrap().push((ready, health));
                if ready == 200 {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    broker.restart(); // returns once the Kafka port accepts, i.e. after recovery
    let final_ready = get(metrics, "/ready").unwrap();
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(final_ready.0, 200, "ready once the Kafka listener is up");
    let first_ready = seen
        .iter()
        .position(|(ready, _)| *ready == 200)
        .unwrap_or(seen.len());
    let recovering: Vec<_> = seen[..first_ready]
        .iter()
        .filter(|(ready, _)| *ready != 0)
        .collect();
    assert!(
        !recovering.is_empty()
            && recovering
                .iter()
                .all(|(ready, health)| *ready == 503 && *health == 200),
        "expected 503 from /ready and 200 from /health during recovery, saw {seen:?}"
    );
    let (code, body) = get(metrics, "/ready").unwrap();
    assert_eq!((code, body.as_str()), (200, "ready\n"));

    let after = scrape(metrics);
    let partition = [("topic", "big"), ("partition", "0")];
    assert_eq!(
        after.sum("dlog_partition_log_end_offset", &partition),
        BATCHES as f64,
        "every appended batch recovered"
    );
    assert_eq!(after.sum("dlog_storage_last_shutdown_clean", &[]), 0.0);
    let recovery_seconds = after.sum("dlog_storage_recovery_duration_seconds", &[]);
    assert!(recovery_seconds > 0.0);
    eprintln!(
        "recovered {BATCHES} batches in {recovery_seconds:.3} s; /ready said 503 {} times",
        recovering.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Bad HTTP

#[test]
fn malformed_http_does_not_break_the_listener() {
    let (mut broker, metrics) = start_with_metrics(&[]);
    let status_of = |response: Vec<u8>| -> String {
        String::from_utf8_lossy(&response)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("garbage line", b"garbage\r\n\r\n".to_vec(), "400"),
        (
            "binary",
            vec![0xff, 0x00, 0xfe, b'\r', b'\n', b'\r', b'\n'],
            "400",
        ),
        ("no version", b"GET /metrics\r\n\r\n".to_vec(), "400"),
        (
            "relative target",
            b"GET metrics HTTP/1.1\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "POST",
            b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc".to_vec(),
            "405",
        ),
        (
            "HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "huge head",
            {
                let mut head = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
                head.extend(std::iter::repeat(b'a').take(64 * 1024));
                head.extend_from_slice(b"\r\n\r\n");
                head
            },
            "400",
        ),
    ];
    for (name, request, expected) in cases {
        match exchange(metrics, &request) {
            Ok(response) => {
                let status = status_of(response);
                assert!(status.contains(expected), "{name}: got {status:?}");
            }
            // The server may close while a large request is still being sent (reset).
            Err(error) => assert_eq!(name, "huge head", "{name}: {error}"),
        }
    }

    // Clients that connect and send nothing, or half a request, hold no one else up.
    let mut idle: Vec<TcpStream> = (0..10)
        .map(|_| TcpStream::connect(metrics).expect("connect"))
        .collect();
    idle[0].write_all(b"GET /metr").unwrap();
    assert_eq!(get(metrics, "/health").unwrap().0, 200);
    assert_eq!(scrape(metrics).sum("dlog_ready", &[]), 1.0);
    // And they are timed out and closed by the server (bounded wait).
    let mut stream = idle.pop().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("server closes an idle connection");
    assert!(status_of(response).contains("408"));

    // Many connections at once: over the cap some are closed at accept; none crash it.
    let burst: Vec<_> = (0..200)
        .filter_map(|_| TcpStream::connect(metrics).ok())
        .collect();
    drop(burst);
    drop(idle);
    // Connections over the cap are closed at accept until the others end: retry, bounded.
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    loop {
        match get(metrics, "/ready") {
            Ok((status, _)) => {
                assert_eq!(status, 200);
                break;
            }
            Err(error) => assert!(Instant::now() < deadline, "listener stuck: {error}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(broker.is_running());
    broker.stop_clean();
}

// ---------------------------------------------------------------------------------------------
// Logs

#[test]
fn json_logs_are_one_object_per_line() {
    let (mut broker, _metrics) = start_with_metrics(&["log.format=json"]);
    broker.stop_clean();
    let log = broker.stderr_tail(100);
    let lines: Vec<&str> = log.lines().filter(|l| !l.starts_with("--- run")).collect();
    assert!(lines.len() >= 3, "{log}");
    for line in &lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            value.get("level").is_some() && value.get("timestamp").is_some(),
            "{line}"
        );
    }
    assert!(lines.iter().any(|l| l.contains("dlog listening")));
}
