//! Durability against a real `dlog` process: clean restarts, kill -9 in the middle of a
//! produce stream (acknowledged records must survive with their offsets), and torn or corrupt
//! segment tails that recovery must cut off.

mod common;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::client::ClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, FutureProducer, FutureRecord, Producer,
    ProducerContext,
};
use rdkafka::Offset;

// ---------------------------------------------------------------------------------------------
// Helpers

async fn produce_sequential(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    payloads: &[Vec<u8>],
) -> Vec<i64> {
    let mut offsets = Vec::new();
    for payload in payloads {
        let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
            .partition(partition)
            .key(&b"k"[..])
            .payload(payload.as_slice());
        let delivery = producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
        assert_eq!(delivery.partition, partition);
        offsets.push(delivery.offset);
    }
    offsets
}

fn future_producer(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut config = producer_config(bootstrap);
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config.create().expect("producer")
}

/// Asserts a partition's consumed offsets are exactly 0..n (a non-compacted log has no gaps).
fn assert_dense(topic: &str, partition: i32, messages: &[OwnedMessage]) {
    for (i, message) in messages.iter().enumerate() {
        assert_eq!(
            message.offset(),
            i as i64,
            "{topic}-{partition}: offsets not dense at index {i}"
        );
    }
}

fn payload(message: &OwnedMessage) -> Vec<u8> {
    message.payload().unwrap_or_default().to_vec()
}

// ---------------------------------------------------------------------------------------------
// (a) clean restart

async fn await_acks(
    futures: &mut Vec<(i32, rdkafka::producer::DeliveryFuture)>,
    acked: &mut BTreeMap<i32, Vec<i64>>,
) {
    for (partition, future) in futures.drain(..) {
        let delivery = tokio::time::timeout(Duration::from_secs(60), future)
            .await
            .expect("delivery timeout")
            .expect("canceled")
            .map_err(|(e, _)| e)
            .expect("produce");
        assert_eq!(delivery.partition, partition);
        acked.entry(partition).or_default().push(delivery.offset);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_restart_keeps_everything_and_continues_offsets() {
    let mut broker = Broker::start_with(&["log.segment.bytes=100000"]);
    let bootstrap = broker.bootstrap();
    const PARTITIONS: i32 = 4;
    create_topic(&bootstrap, "clean", PARTITIONS, &[]).await;

    let producer = future_producer(&bootstrap, &[("compression.type", "gzip")]);
    let mut expected: BTreeMap<i32, Vec<Vec<u8>>> = BTreeMap::new();
    let mut futures = Vec::new();
    let mut acked: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for i in 0..4000u64 {
        // Waves of 400, so the records land in many batches and segments roll.
        if i % 400 == 0 {
            await_acks(&mut futures, &mut acked).await;
        }
        let partition = (i % PARTITIONS as u64) as i32;
        let mut value = format!("clean-{i}-").into_bytes();
        value.extend(random_bytes(i, (i % 300) as usize));
        expected.entry(partition).or_default().push(value.clone());
        let record: FutureRecord<'_, [u8], Vec<u8>> = FutureRecord::to("clean")
            .partition(partition)
            .payload(&value);
        futures.push((
            partition,
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        ));
    }
    await_acks(&mut futures, &mut acked).await;
    for (partition, offsets) in &acked {
        assert_eq!(
            offsets,
            &(0..offsets.len() as i64).collect::<Vec<_>>(),
            "partition {partition} acked offsets"
        );
    }
    drop(producer);
    assert!(
        segment_logs(&broker.data_dir(), "clean", 0).len() > 1,
        "expected segment rolls with log.segment.bytes=100000"
    );

    broker.stop_clean();
    broker.restart();
    wait_for_topic(&bootstrap, "clean", PARTITIONS);

    let consumed = consume_all(&bootstrap, "clean", PARTITIONS);
    for partition in 0..PARTITIONS {
        let got = &consumed[&partition];
        assert_dense("clean", partition, got);
        let got: Vec<Vec<u8>> = got.iter().map(payload).collect();
        assert!(
            got == expected[&partition],
            "partition {partition}: {} records after restart, {} produced (or contents differ)",
            got.len(),
            expected[&partition].len()
        );
        assert_eq!(
            watermarks(&bootstrap, "clean", partition),
            (0, expected[&partition].len() as i64)
        );
    }

    // New records continue right after the old ones.
    let producer = future_producer(&bootstrap, &[]);
    for partition in 0..PARTITIONS {
        let next = expected[&partition].len() as i64;
        let offsets =
            produce_sequential(&producer, "clean", partition, &[b"after restart".to_vec()]).await;
        assert_eq!(
            offsets,
            vec![next],
            "partition {partition}: offset after restart"
        );
    }

    // A second clean cycle without new writes changes nothing.
    drop(producer);
    broker.stop_clean();
    broker.restart();
    let consumed = consume_all(&bootstrap, "clean", PARTITIONS);
    for partition in 0..PARTITIONS {
        let got = &consumed[&partition];
        assert_eq!(got.len(), expected[&partition].len() + 1);
        assert_dense("clean", partition, got);
        assert_eq!(got.last().unwrap().payload(), Some(&b"after restart"[..]));
    }
}

/// Acknowledged metadata changes (CreateTopics with configs, DeleteTopics) survive kill -9,
/// and topic config overrides are still enforced after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_keeps_acknowledged_topic_changes() {
    let mut broker = Broker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "kept", 3, &[("max.message.bytes", "1024")]).await;
    create_topic(&bootstrap, "removed", 2, &[]).await;
    let results = admin(&bootstrap)
        .delete_topics(&["removed"], &admin_options())
        .await
        .expect("DeleteTopics");
    assert_eq!(results, vec![Ok("removed".to_string())]);
    create_topic(&bootstrap, "last", 1, &[]).await;
    broker.kill9();
    broker.restart();

    wait_for_topic(&bootstrap, "kept", 3);
    wait_for_topic(&bootstrap, "last", 1);
    let metadata = consumer(&bootstrap)
        .fetch_metadata(None, CLIENT_TIMEOUT)
        .expect("metadata");
    assert!(
        metadata.topics().iter().all(|t| t.name() != "removed"),
        "a deleted topic came back after kill -9"
    );
    let producer = future_producer(&bootstrap, &[]);
    let big: FutureRecord<'_, [u8], [u8]> = FutureRecord::to("kept")
        .partition(0)
        .payload(&[7u8; 2000][..]);
    let error = producer
        .send(big, Duration::from_secs(10))
        .await
        .map(|d| d.offset)
        .map_err(|(e, _)| e)
        .expect_err("max.message.bytes=1024 lost across the restart");
    assert_eq!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge),
        "{error}"
    );
    assert_eq!(
        produce_sequential(&producer, "kept", 2, &[b"fits".to_vec()]).await,
        vec![0]
    );
}

// ---------------------------------------------------------------------------------------------
// (b) kill -9 in the middle of a produce stream

/// Every acknowledged record: (partition, offset, payload).
type Acked = Arc<Mutex<Vec<(i32, i64, Vec<u8>)>>>;

struct RecordingContext {
    acked: Acked,
    acked_count: Arc<AtomicUsize>,
    failed_count: Arc<AtomicUsize>,
}

impl ClientContext for RecordingContext {}

impl ProducerContext for RecordingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) => {
                self.acked.lock().unwrap().push((
                    message.partition(),
                    message.offset(),
                    message.payload().unwrap_or_default().to_vec(),
                ));
                self.acked_count.fetch_add(1, Ordering::SeqCst);
            }
            Err(_) => {
                self.failed_count.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// Produces continuously to all partitions until `stop`, then waits (bounded) for the
/// outstanding deliveries to resolve one way or the other.
fn produce_until_stopped(
    bootstrap: String,
    topic: &'static str,
    partitions: i32,
    codec: &'static str,
    cycle: usize,
    stop: Arc<AtomicBool>,
    context: RecordingContext,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut config = producer_config(&bootstrap);
        config
            .set("compression.type", codec)
            .set("linger.ms", "2")
            .set("message.timeout.ms", "3000")
            .set("request.timeout.ms", "2000")
            .set("queue.buffering.max.messages", "20000")
            .set("reconnect.backoff.max.ms", "200");
        let producer: BaseProducer<RecordingContext> =
            config.create_with_context(context).expect("producer");
        let mut sequence = 0u64;
        while !stop.load(Ordering::SeqCst) {
            sequence += 1;
            let partition = (sequence % partitions as u64) as i32;
            let mut value = format!("cycle{cycle}-seq{sequence}-").into_bytes();
            value.extend(random_bytes(
                sequence * 31 + cycle as u64,
                50 + (sequence % 250) as usize,
            ));
            let key = sequence.to_be_bytes();
            let record = BaseRecord::to(topic)
                .partition(partition)
                .key(&key[..])
                .payload(&value);
            if let Err((error, _)) = producer.send(record) {
                assert_eq!(
                    error,
                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                    "send"
                );
                producer.poll(Duration::from_millis(5));
            }
            producer.poll(Duration::ZERO);
            if sequence % 10 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        // The broker is dead: outstanding messages fail after message.timeout.ms.
        let deadline = Instant::now() + Duration::from_secs(15);
        while producer.in_flight_count() > 0 && Instant::now() < deadline {
            producer.poll(Duration::from_millis(100));
        }
        // Anything left is purged (reported as failed, so treated as unacknowledged).
        sequence
    })
}

/// Checks every acknowledged record is at its offset with its payload, and offsets are dense.
fn verify_acked(broker: &Broker, topic: &str, partitions: i32, acked: &Acked) -> usize {
    let consumed = consume_all(&broker.bootstrap(), topic, partitions);
    for partition in 0..partitions {
        assert_dense(topic, partition, &consumed[&partition]);
    }
    let acked = acked.lock().unwrap();
    for (partition, offset, value) in acked.iter() {
        let messages = &consumed[partition];
        let Some(message) = messages.get(*offset as usize) else {
            panic!(
                "acked record {topic}-{partition}@{offset} ({}) lost: partition now ends at {}",
                String::from_utf8_lossy(&value[..value.len().min(24)]),
                messages.len()
            );
        };
        assert!(
            message.payload().unwrap_or_default() == value.as_slice(),
            "acked record {topic}-{partition}@{offset}: expected {:?}, found {:?}",
            String::from_utf8_lossy(&value[..value.len().min(24)]),
            String::from_utf8_lossy(
                &message.payload().unwrap_or_default()
                    [..24.min(message.payload().map(|p| p.len()).unwrap_or(0))]
            ),
        );
    }
    acked.len()
}

fn kill9_mid_produce(settings: &[&str], codec: &'static str, cycles: usize) {
    const TOPIC: &str = "crashy";
    const PARTITIONS: i32 = 4;
    let mut broker = Broker::start_with(settings);
    let bootstrap = broker.bootstrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(create_topic(&bootstrap, TOPIC, PARTITIONS, &[]));

    let acked: Acked = Arc::new(Mutex::new(Vec::new()));
    for cycle in 0..cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let acked_count = Arc::new(AtomicUsize::new(0));
        let failed_count = Arc::new(AtomicUsize::new(0));
        let producer = produce_until_stopped(
            bootstrap.clone(),
            TOPIC,
            PARTITIONS,
            codec,
            cycle,
            stop.clone(),
            RecordingContext {
                acked: acked.clone(),
                acked_count: acked_count.clone(),
                failed_count: failed_count.clone(),
            },
        );
        // Let a good number of records through, then kill while the stream is running.
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked_count.load(Ordering::SeqCst) < 3000 {
            assert!(
                Instant::now() < deadline,
                "cycle {cycle}: only {} acks in 60 s ({} failed)",
                acked_count.load(Ordering::SeqCst),
                failed_count.load(Ordering::SeqCst)
            );
            assert!(!producer.is_finished(), "producer thread died");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(50 + 97 * cycle as u64 % 200));
        broker.kill9();
        let acked_at_kill = acked_count.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::SeqCst);
        let sent = producer.join().expect("producer thread panicked");
        eprintln!(
            "cycle {cycle}: sent {sent}, acked {} ({} when killed), failed {}",
            acked_count.load(Ordering::SeqCst),
            acked_at_kill,
            failed_count.load(Ordering::SeqCst)
        );

        broker.restart();
        wait_for_topic(&bootstrap, TOPIC, PARTITIONS);
        let total = verify_acked(&broker, TOPIC, PARTITIONS, &acked);
        eprintln!("cycle {cycle}: all {total} acked records present after restart");
    }
    let segments = segment_logs(&broker.data_dir(), TOPIC, 0).len();
    eprintln!("partition 0 has {segments} segments");
    if settings.iter().any(|s| s.starts_with("log.segment.bytes=")) {
        assert!(
            segments > 3,
            "expected many segment rolls, found {segments} segments"
        );
    }
    broker.stop_clean();
    broker.restart();
    verify_acked(&broker, TOPIC, PARTITIONS, &acked);
}

#[test]
fn kill9_mid_produce_default_segments() {
    kill9_mid_produce(&[], "none", 3);
}

#[test]
fn kill9_mid_produce_small_segments() {
    kill9_mid_produce(&["log.segment.bytes=65536"], "snappy", 3);
}

// ---------------------------------------------------------------------------------------------
// (c) torn and corrupt tails

const TAIL_TOPIC: &str = "tail";
const TAIL_RECORDS: usize = 60;

fn tail_value(i: usize) -> Vec<u8> {
    let mut value = format!("tail-{i}-").into_bytes();
    value.extend(random_bytes(i as u64 + 1000, 80));
    value
}

/// Produces TAIL_RECORDS records one batch each (linger 0, awaited one at a time) to a topic
/// with tiny segments, stops cleanly, and returns the broker and the active segment's path.
async fn tail_setup() -> (Broker, PathBuf) {
    // An index entry for every batch, so stale entries past a cut would be noticed.
    let mut broker = Broker::start_with(&["log.segment.bytes=2048", "log.index.interval.bytes=1"]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, TAIL_TOPIC, 1, &[]).await;
    let producer = future_producer(&bootstrap, &[("linger.ms", "0")]);
    let values: Vec<Vec<u8>> = (0..TAIL_RECORDS).map(tail_value).collect();
    let offsets = produce_sequential(&producer, TAIL_TOPIC, 0, &values).await;
    assert_eq!(offsets, (0..TAIL_RECORDS as i64).collect::<Vec<_>>());
    drop(producer);
    broker.stop_clean();
    let logs = segment_logs(&broker.data_dir(), TAIL_TOPIC, 0);
    assert!(
        logs.len() > 1,
        "expected several segments with log.segment.bytes=2048"
    );
    let active = logs.last().unwrap().clone();
    let size = std::fs::metadata(&active).unwrap().len();
    assert!(size > 0, "active segment {} is empty", active.display());
    (broker, active)
}

/// Restarts after an "unclean" stop and checks: the first `intact` records are there, the log
/// ends right after them, and a new record is accepted at the next offset and readable.
async fn restart_and_check(broker: &mut Broker, intact: usize) {
    std::fs::remove_file(broker.data_dir().join(CLEAN_SHUTDOWN_FILE))
        .expect("remove clean shutdown marker");
    broker.restart();
    let bootstrap = broker.bootstrap();
    wait_for_topic(&bootstrap, TAIL_TOPIC, 1);
    assert_eq!(
        watermarks(&bootstrap, TAIL_TOPIC, 0),
        (0, intact as i64),
        "log end after recovery"
    );
    let consumed = consume_all(&bootstrap, TAIL_TOPIC, 1);
    let got: Vec<Vec<u8>> = consumed[&0].iter().map(payload).collect();
    assert_eq!(got.len(), intact);
    for (i, value) in got.iter().enumerate() {
        assert!(*value == tail_value(i), "record {i} damaged after recovery");
    }
    assert_dense(TAIL_TOPIC, 0, &consumed[&0]);

    let producer = future_producer(&bootstrap, &[("linger.ms", "0")]);
    let offsets = produce_sequential(
        &producer,
        TAIL_TOPIC,
        0,
        &[b"new-1".to_vec(), b"new-2".to_vec()],
    )
    .await;
    assert_eq!(offsets, vec![intact as i64, intact as i64 + 1]);
    let consumed = consume_all(&bootstrap, TAIL_TOPIC, 1);
    assert_eq!(consumed[&0].len(), intact + 2);
    assert_dense(TAIL_TOPIC, 0, &consumed[&0]);
    assert_eq!(consumed[&0][intact].payload(), Some(&b"new-1"[..]));
    assert_eq!(consumed[&0][intact + 1].payload(), Some(&b"new-2"[..]));

    // Fetches that start at the cut (offset index lookups) see the new records.
    for offset in [intact - 1, intact, intact + 1] {
        let message = first_at(&bootstrap, TAIL_TOPIC, 0, offset as i64);
        assert_eq!(message.offset(), offset as i64, "fetch at {offset}");
        assert_eq!(
            payload(&message),
            payload(&consumed[&0][offset]),
            "fetch at {offset}"
        );
    }

    // The time index agrees with the recovered log.
    let ts = |i: usize| consumed[&0][i].timestamp().to_millis().expect("timestamp");
    assert_eq!(
        offset_for_time(&bootstrap, TAIL_TOPIC, 0, 0),
        Offset::Offset(0)
    );
    assert_eq!(
        offset_for_time(&bootstrap, TAIL_TOPIC, 0, ts(intact - 1) + 1),
        Offset::Offset(intact as i64),
        "first record after recovery by timestamp"
    );
    assert_eq!(
        offset_for_time(&bootstrap, TAIL_TOPIC, 0, ts(intact + 1) + 1),
        Offset::End
    );

    // And it survives another clean cycle.
    drop(producer);
    broker.stop_clean();
    broker.restart();
    assert_eq!(
        watermarks(&bootstrap, TAIL_TOPIC, 0),
        (0, intact as i64 + 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_truncated_last_batch_is_dropped() {
    let (mut broker, active) = tail_setup().await;
    let size = std::fs::metadata(&active).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&active)
        .unwrap()
        .set_len(size - 7)
        .unwrap();
    // The last batch (offset TAIL_RECORDS-1) is torn; everything before it must survive.
    restart_and_check(&mut broker, TAIL_RECORDS - 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_garbage_appended_is_cut() {
    let (mut broker, active) = tail_setup().await;
    let mut file = OpenOptions::new().append(true).open(&active).unwrap();
    file.write_all(&random_bytes(0xDEAD, 1000)).unwrap();
    drop(file);
    restart_and_check(&mut broker, TAIL_RECORDS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_zeroes_appended_are_cut() {
    // What a preallocated or partly written file looks like after a power cut.
    let (mut broker, active) = tail_setup().await;
    let mut file = OpenOptions::new().append(true).open(&active).unwrap();
    file.write_all(&[0u8; 4096]).unwrap();
    drop(file);
    restart_and_check(&mut broker, TAIL_RECORDS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_partial_batch_header_is_cut() {
    // The start of a plausible next batch: a base offset and a length far past the file end.
    let (mut broker, active) = tail_setup().await;
    let mut file = OpenOptions::new().append(true).open(&active).unwrap();
    let mut header = (TAIL_RECORDS as i64).to_be_bytes().to_vec();
    header.extend_from_slice(&500i32.to_be_bytes());
    header.extend_from_slice(&[0, 0, 0, 0, 2]); // leader epoch 0, magic 2
    file.write_all(&header).unwrap();
    drop(file);
    restart_and_check(&mut broker, TAIL_RECORDS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_last_batch_crc_is_cut() {
    let (mut broker, active) = tail_setup().await;
    // Flip a byte in the last batch's records (inside the CRC-covered area, near the end).
    let size = std::fs::metadata(&active).unwrap().len();
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&active)
        .unwrap();
    let position = size - 10;
    let mut byte = [0u8; 1];
    file.seek(SeekFrom::Start(position)).unwrap();
    std::io::Read::read_exact(&mut file, &mut byte).unwrap();
    file.seek(SeekFrom::Start(position)).unwrap();
    file.write_all(&[byte[0] ^ 0xFF]).unwrap();
    drop(file);
    restart_and_check(&mut broker, TAIL_RECORDS - 1).await;
}

// ---------------------------------------------------------------------------------------------
// (d) group commit: with `log.flush.interval.messages=1` every acknowledged record was fsynced,
// and requests that wait together share an fsync.

/// The sum of the samples whose line starts with `prefix` in the broker's `/metrics`.
fn metric_sum(address: std::net::SocketAddr, prefix: &str) -> f64 {
    use std::io::{Read, Write as _};
    let mut stream = std::net::TcpStream::connect(address).expect("connect to /metrics");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: dlog\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read /metrics");
    text.lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_every_message_acknowledges_concurrent_producers_with_shared_fsyncs() {
    const TOPIC: &str = "durable";
    const PRODUCERS: usize = 8;
    const RECORDS_PER_PRODUCER: usize = 100;
    let metrics_port = free_port();
    let metrics_listen = format!("metrics.listen=127.0.0.1:{metrics_port}");
    let mut broker = Broker::start_with(&[&metrics_listen, "log.flush.interval.messages=1"]);
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], metrics_port));
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, TOPIC, 1, &[]).await;
    let flushes_before = metric_sum(metrics, "dlog_log_flushes_total");

    // Producers at linger.ms=0, half acks=all and half acks=1, each sending one record at a
    // time: every record is its own request, and the producers' requests arrive together.
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let acks = if producer % 2 == 0 { "all" } else { "1" };
            let producer_handle =
                future_producer(&bootstrap, &[("linger.ms", "0"), ("acks", acks)]);
            tokio::spawn(async move {
                let mut acked = Vec::with_capacity(RECORDS_PER_PRODUCER);
                for i in 0..RECORDS_PER_PRODUCER {
                    let value = format!("p{producer}-r{i}").into_bytes();
                    let record: FutureRecord<'_, [u8], [u8]> =
                        FutureRecord::to(TOPIC).partition(0).payload(&value);
                    let delivered = producer_handle
                        .send(record, Duration::from_secs(30))
                        .await
                        .map_err(|(e, _)| e)
                        .expect("acknowledged");
                    acked.push((delivered.offset, value));
                }
                acked
            })
        })
        .collect();
    let mut acked: Vec<(i64, Vec<u8>)> = Vec::new();
    for producer in producers {
        acked.extend(producer.await.expect("producer task"));
    }
    assert_eq!(acked.len(), PRODUCERS * RECORDS_PER_PRODUCER);

    let produce_requests = metric_sum(metrics, "dlog_requests_total{api=\"Produce\"");
    let flushes = metric_sum(metrics, "dlog_log_flushes_total") - flushes_before;
    eprintln!("{produce_requests} produce requests, {flushes} flushes");
    assert!(flushes >= 1.0, "the records were flushed");
    assert!(
        flushes < produce_requests,
        "{flushes} flushes for {produce_requests} produce requests: none shared"
    );

    // Every acknowledged record is there after kill -9, at its offset.
    broker.kill9();
    broker.restart();
    wait_for_topic(&bootstrap, TOPIC, 1);
    let consumed = consume_all(&bootstrap, TOPIC, 1);
    assert_dense(TOPIC, 0, &consumed[&0]);
    assert_eq!(consumed[&0].len(), acked.len());
    for (offset, value) in &acked {
        assert_eq!(
            payload(&consumed[&0][*offset as usize]),
            *value,
            "@{offset}"
        );
    }
}

#[test]
fn kill9_mid_produce_flush_every_message() {
    kill9_mid_produce(&["log.flush.interval.messages=1"], "none", 2);
}
