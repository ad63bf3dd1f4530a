//! Idempotent produce against a real `dlog` process: librdkafka with enable.idempotence=true
//! across kill -9 and restarts (no duplicates, no gaps, order kept), and raw-protocol checks
//! that a retried batch keeps its offsets and a sequence gap is refused.

mod common;
mod raw;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use raw::{producer_batch, RawClient};
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_RECORD: i16 = 87;

struct Counting {
    acked: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.acked.fetch_add(1, Ordering::SeqCst),
            Err((error, _)) => {
                eprintln!("delivery failed: {error}");
                self.failed.fetch_add(1, Ordering::SeqCst)
            }
        };
    }
}

/// Values are `<partition>:<n>` with n counting up per partition from 0, so the consumed log of
/// each partition must read exactly 0, 1, 2, … : any duplicate, gap or reordering shows.
#[test]
fn idempotent_producer_survives_kill9_without_duplicates_or_gaps() {
    const TOPIC: &str = "idem";
    const PARTITIONS: i32 = 3;
    let mut broker = Broker::start_with(&["log.segment.bytes=65536"]);
    let bootstrap = broker.bootstrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(create_topic(&bootstrap, TOPIC, PARTITIONS, &[]));

    let acked = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let producer_thread = {
        let (acked, failed, stop, bootstrap) = (
            acked.clone(),
            failed.clone(),
            stop.clone(),
            bootstrap.clone(),
        );
        std::thread::spawn(move || {
            let mut config = producer_config(&bootstrap);
            config
                .set("enable.idempotence", "true")
                .set("linger.ms", "2")
                .set("message.timeout.ms", "120000")
                .set("request.timeout.ms", "3000")
                .set("retry.backoff.ms", "50")
                .set("reconnect.backoff.max.ms", "200")
                .set("queue.buffering.max.messages", "20000");
            let producer: BaseProducer<Counting> = config
                .create_with_context(Counting { acked, failed })
                .expect("producer");
            let mut next: Vec<u64> = vec![0; PARTITIONS as usize];
            let mut sent = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let partition = (sent % PARTITIONS as u64) as i32;
                let value = format!("{partition}:{}", next[partition as usize]);
                let record: BaseRecord<'_, (), str> =
                    BaseRecord::to(TOPIC).partition(partition).payload(&value);
                match producer.send(record) {
                    Ok(()) => {
                        next[partition as usize] += 1;
                        sent += 1;
                    }
                    Err((error, _)) => {
                        assert_eq!(
                            error,
                            KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
                        );
                        producer.poll(Duration::from_millis(5));
                    }
                }
                producer.poll(Duration::ZERO);
                if sent.is_multiple_of(20) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            producer
                .flush(Duration::from_secs(120))
                .expect("flush after the last restart");
            next
        })
    };

    let wait_for_acks = |target: usize| {
        let deadline = Instant::now() + Duration::from_secs(90);
        while acked.load(Ordering::SeqCst) < target {
            assert!(
                Instant::now() < deadline,
                "only {} acks ({} failed)",
                acked.load(Ordering::SeqCst),
                failed.load(Ordering::SeqCst)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    for cycle in 0..3usize {
        wait_for_acks(acked.load(Ordering::SeqCst) + 3000);
        broker.kill9();
        std::thread::sleep(Duration::from_millis(300 + 150 * cycle as u64));
        broker.restart();
    }
    wait_for_acks(acked.load(Ordering::SeqCst) + 2000);
    // A clean restart too: the state then comes from the shutdown snapshot.
    broker.stop_clean();
    broker.restart();
    wait_for_acks(acked.load(Ordering::SeqCst) + 2000);
    stop.store(true, Ordering::SeqCst);
    let sent_per_partition = producer_thread.join().expect("producer thread");
    assert_eq!(failed.load(Ordering::SeqCst), 0, "no delivery may fail");

    let consumed = consume_all(&bootstrap, TOPIC, PARTITIONS);
    for partition in 0..PARTITIONS {
        let values: Vec<String> = consumed[&partition]
            .iter()
            .map(|m| String::from_utf8(m.payload().unwrap().to_vec()).unwrap())
            .collect();
        let sent = sent_per_partition[partition as usize];
        assert_eq!(
            values.len() as u64,
            sent,
            "partition {partition}: {} records stored, {sent} sent",
            values.len()
        );
        for (n, value) in values.iter().enumerate() {
            assert_eq!(
                value,
                &format!("{partition}:{n}"),
                "partition {partition} at offset {n}: duplicate, gap or reorder"
            );
        }
    }
    let snapshots = std::fs::read_dir(broker.data_dir().join(format!("{TOPIC}-0")))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".snapshot")
        })
        .count();
    assert!(snapshots > 0, "segment rolls write producer snapshots");
}

fn log_end_offset(bootstrap: &str, topic: &str) -> i64 {
    watermarks(bootstrap, topic, 0).1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_retries_sequences_and_epochs() {
    let mut broker = Broker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "raw", 1, &[]).await;
    let mut client = RawClient::connect(broker.addr());
    let (producer_id, epoch) = client.init_producer_id();
    assert!(producer_id >= 0);
    assert_eq!(epoch, 0);
    let (other_id, _) = client.init_producer_id();
    assert_ne!(
        other_id, producer_id,
        "producer ids are never handed out twice"
    );

    let first = producer_batch(producer_id, epoch, 0, 3, false);
    assert_eq!(client.produce("raw", 0, &first), (0, 0));
    // The exact same batch again (a retry): the original offset, nothing appended.
    assert_eq!(client.produce("raw", 0, &first), (0, 0));
    assert_eq!(log_end_offset(&bootstrap, "raw"), 3);
    let second = producer_batch(producer_id, epoch, 3, 2, false);
    assert_eq!(client.produce("raw", 0, &second), (0, 3));
    assert_eq!(client.produce("raw", 0, &first), (0, 0));
    // A gap in the sequence.
    let gap = producer_batch(producer_id, epoch, 10, 1, false);
    assert_eq!(
        client.produce("raw", 0, &gap).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    // A new epoch must start at sequence 0, and then the old epoch is fenced.
    let bumped_late = producer_batch(producer_id, epoch + 1, 5, 1, false);
    assert_eq!(
        client.produce("raw", 0, &bumped_late).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    let bumped = producer_batch(producer_id, epoch + 1, 0, 1, false);
    assert_eq!(client.produce("raw", 0, &bumped), (0, 5));
    let stale = producer_batch(producer_id, epoch, 5, 1, false);
    assert_eq!(client.produce("raw", 0, &stale).0, INVALID_PRODUCER_EPOCH);
    // A transactional batch without a producer id.
    let orphan = producer_batch(-1, -1, -1, 1, true);
    assert_eq!(client.produce("raw", 0, &orphan).0, INVALID_RECORD);
    // Two sequenced batches in one partition's records (Kafka allows one batch).
    let two = [
        producer_batch(producer_id, epoch + 1, 1, 1, false),
        producer_batch(producer_id, epoch + 1, 2, 1, false),
    ]
    .concat();
    assert_eq!(client.produce("raw", 0, &two).0, INVALID_RECORD);
    assert_eq!(log_end_offset(&bootstrap, "raw"), 6);

    // After kill -9 the state is rebuilt from the log: the last batch is still a duplicate and
    // the sequence continues.
    drop(client);
    broker.kill9();
    broker.restart();
    wait_for_topic(&bootstrap, "raw", 1);
    let mut client = RawClient::connect(broker.addr());
    assert_eq!(client.produce("raw", 0, &bumped), (0, 5));
    assert_eq!(client.produce("raw", 0, &second).0, INVALID_PRODUCER_EPOCH);
    let next = producer_batch(producer_id, epoch + 1, 1, 4, false);
    assert_eq!(client.produce("raw", 0, &next), (0, 6));
    // After a clean restart, from the snapshot.
    drop(client);
    broker.stop_clean();
    broker.restart();
    wait_for_topic(&bootstrap, "raw", 1);
    let mut client = RawClient::connect(broker.addr());
    assert_eq!(client.produce("raw", 0, &next), (0, 6));
    let gap = producer_batch(producer_id, epoch + 1, 6, 1, false);
    assert_eq!(
        client.produce("raw", 0, &gap).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    let (after_restart_id, _) = client.init_producer_id();
    assert!(
        after_restart_id > other_id,
        "ids after a restart come from a new block: {after_restart_id} <= {other_id}"
    );
    assert_eq!(log_end_offset(&bootstrap, "raw"), 10);
}

/// `producer.id.expiration.ms`: a producer idle longer than that is forgotten, after which it
/// may resume at any sequence (as a producer the partition never saw).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_producers_expire() {
    let broker = Broker::start_with(&[
        "producer.id.expiration.ms=1000",
        "producer.id.expiration.check.interval.ms=500",
    ]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "expiry", 1, &[]).await;
    let mut client = RawClient::connect(broker.addr());
    let (producer_id, epoch) = client.init_producer_id();
    let first = producer_batch(producer_id, epoch, 0, 2, false);
    assert_eq!(client.produce("expiry", 0, &first), (0, 0));
    let gap = producer_batch(producer_id, epoch, 7, 1, false);
    assert_eq!(
        client.produce("expiry", 0, &gap).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let (error, offset) = client.produce("expiry", 0, &gap);
        if error == 0 {
            assert_eq!(offset, 2);
            break;
        }
        assert_eq!(error, OUT_OF_ORDER_SEQUENCE_NUMBER);
        assert!(Instant::now() < deadline, "producer never expired");
    }
}
