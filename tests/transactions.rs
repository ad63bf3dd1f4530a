//! Transactions against a real `dlog` process with librdkafka's transactional producer:
//! commit/abort mixes as read_committed and read_uncommitted consumers see them, fencing of a
//! zombie by a second producer with the same transactional.id, open transactions invisible to
//! read_committed, coordinator timeouts, and recovery after kill -9.

mod common;
mod raw;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

fn transactional_producer(bootstrap: &str, id: &str, extra: &[(&str, &str)]) -> BaseProducer {
    let mut config = producer_config(bootstrap);
    config
        .set("enable.idempotence", "true")
        .set("transactional.id", id)
        .set("transaction.timeout.ms", "60000");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    let producer: BaseProducer = config.create().expect("transactional producer");
    producer
        .init_transactions(TIMEOUT)
        .expect("init_transactions");
    producer
}

/// librdkafka requires socket and message timeouts within the transaction timeout.
fn short_timeouts(transaction_timeout_ms: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("transaction.timeout.ms", transaction_timeout_ms),
        ("socket.timeout.ms", "1500"),
        ("request.timeout.ms", "1500"),
        ("message.timeout.ms", "1500"),
    ]
}

fn send(producer: &BaseProducer, topic: &str, partition: i32, values: &[String]) {
    for value in values {
        producer
            .send(
                BaseRecord::<(), str>::to(topic)
                    .partition(partition)
                    .payload(value),
            )
            .expect("enqueue");
    }
    producer.flush(TIMEOUT).expect("flush");
}

fn values(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

/// Reads every partition from the beginning to its end (the last stable offset for
/// read_committed) and returns the payloads per partition.
fn read_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    isolation: &str,
) -> BTreeMap<i32, Vec<String>> {
    let consumer: BaseConsumer = consumer_config(bootstrap)
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut out: BTreeMap<i32, Vec<String>> = (0..partitions).map(|p| (p, Vec::new())).collect();
    let mut at_end = std::collections::BTreeSet::new();
    let deadline = Instant::now() + TIMEOUT;
    while at_end.len() < partitions as usize {
        assert!(Instant::now() < deadline, "{topic}: did not reach the end");
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(message)) => {
                at_end.remove(&message.partition());
                out.get_mut(&message.partition()).unwrap().push(
                    String::from_utf8(message.payload().unwrap_or_default().to_vec()).unwrap(),
                );
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
            }
            Some(Err(error)) => panic!("consume {topic}: {error}"),
        }
    }
    out
}

/// ListOffsets latest with READ_COMMITTED (the last stable offset) and READ_UNCOMMITTED.
fn end_offsets(broker: &Broker, topic: &str, partition: i32) -> (i64, i64) {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, ListOffsetsResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let mut client = raw::RawClient::connect(broker.addr());
    let mut latest = |isolation_level: i8| {
        let request = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_isolation_level(isolation_level)
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_timestamp(-1)])]);
        let response: ListOffsetsResponse = client.call(ApiKey::ListOffsets, 7, &request);
        let partition = &response.topics[0].partitions[0];
        assert_eq!(partition.error_code, 0);
        partition.offset
    };
    (latest(1), latest(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_and_abort_mix_by_isolation_level() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "mix", 2, &[]).await;
    let producer = transactional_producer(&bootstrap, "mix-txn", &[]);
    let plain = future_free_producer(&bootstrap);
    for (round, commit) in [(0, true), (1, false), (2, true), (3, false), (4, true)] {
        producer.begin_transaction().unwrap();
        for partition in 0..2 {
            send(
                &producer,
                "mix",
                partition,
                &values(&format!("t{round}-p{partition}"), 5),
            );
        }
        // A non-transactional record in between, visible to everyone.
        send(&plain, "mix", 0, &[format!("plain-{round}")]);
        if commit {
            producer.commit_transaction(TIMEOUT).unwrap();
        } else {
            producer.abort_transaction(TIMEOUT).unwrap();
        }
    }
    let committed = read_all(&bootstrap, "mix", 2, "read_committed");
    let uncommitted = read_all(&bootstrap, "mix", 2, "read_uncommitted");
    for partition in 0..2 {
        let expect_committed: Vec<String> = (0..5)
            .flat_map(|round| {
                let mut v = Vec::new();
                if round % 2 == 0 {
                    v.extend(values(&format!("t{round}-p{partition}"), 5));
                }
                if partition == 0 {
                    v.push(format!("plain-{round}"));
                }
                v
            })
            .collect();
        assert_eq!(
            committed[&partition], expect_committed,
            "read_committed p{partition}"
        );
        let expect_all: usize = 25 + if partition == 0 { 5 } else { 0 };
        assert_eq!(
            uncommitted[&partition].len(),
            expect_all,
            "read_uncommitted sees aborted records too: {:?}",
            uncommitted[&partition]
        );
    }
    let (stable, end) = end_offsets(&broker, "mix", 0);
    assert_eq!(stable, end, "no open transaction: the LSO is the log end");
}

fn future_free_producer(bootstrap: &str) -> BaseProducer {
    producer_config(bootstrap).create().expect("producer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_producer_fences_the_first() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "fence", 1, &[]).await;
    let zombie = transactional_producer(&bootstrap, "fenced-id", &[]);
    zombie.begin_transaction().unwrap();
    send(&zombie, "fence", 0, &values("zombie", 3));

    let successor = transactional_producer(&bootstrap, "fenced-id", &[]);
    // The zombie's open transaction was aborted when the successor initialized.
    let error = zombie
        .commit_transaction(TIMEOUT)
        .expect_err("the fenced producer cannot commit");
    let code = match &error {
        KafkaError::Transaction(e) => e.code(),
        other => panic!("unexpected error {other}"),
    };
    assert!(
        matches!(
            code,
            RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::Fenced
        ),
        "fenced with {code:?} ({error})"
    );
    successor.begin_transaction().unwrap();
    send(&successor, "fence", 0, &values("successor", 2));
    successor.commit_transaction(TIMEOUT).unwrap();
    let committed = read_all(&bootstrap, "fence", 1, "read_committed");
    assert_eq!(committed[&0], values("successor", 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_transaction_is_invisible_until_commit() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "open", 1, &[]).await;
    let plain = future_free_producer(&bootstrap);
    send(&plain, "open", 0, &values("before", 2));
    let producer = transactional_producer(&bootstrap, "open-id", &[]);
    producer.begin_transaction().unwrap();
    send(&producer, "open", 0, &values("pending", 3));
    // A later non-transactional record is held back too: it lies above the LSO.
    send(&plain, "open", 0, &values("after", 1));
    assert_eq!(end_offsets(&broker, "open", 0), (2, 6));
    assert_eq!(
        read_all(&bootstrap, "open", 1, "read_committed")[&0],
        values("before", 2)
    );
    assert_eq!(
        read_all(&bootstrap, "open", 1, "read_uncommitted")[&0].len(),
        6
    );
    producer.commit_transaction(TIMEOUT).unwrap();
    let mut expected = values("before", 2);
    expected.extend(values("pending", 3));
    expected.extend(values("after", 1));
    assert_eq!(
        read_all(&bootstrap, "open", 1, "read_committed")[&0],
        expected
    );
    assert_eq!(end_offsets(&broker, "open", 0), (7, 7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_transaction_is_aborted_and_lso_advances() {
    let broker =
        Broker::start_with(&["transaction.abort.timed.out.transaction.cleanup.interval.ms=200"]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "slow", 1, &[]).await;
    let producer = transactional_producer(&bootstrap, "slow-id", &short_timeouts("2000"));
    producer.begin_transaction().unwrap();
    send(&producer, "slow", 0, &values("doomed", 4));
    assert_eq!(end_offsets(&broker, "slow", 0), (0, 4));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (stable, end) = end_offsets(&broker, "slow", 0);
        if stable == end && end == 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "LSO stuck at {stable} (end {end}) after the timeout"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(read_all(&bootstrap, "slow", 1, "read_committed")[&0].is_empty());
    assert!(
        producer.commit_transaction(TIMEOUT).is_err(),
        "the timed-out transaction cannot be committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_survive_kill9() {
    let mut broker = Broker::start_with(&[
        "transaction.abort.timed.out.transaction.cleanup.interval.ms=200",
        "log.segment.bytes=4096",
    ]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "durable", 1, &[]).await;
    let producer = transactional_producer(&bootstrap, "durable-id", &[]);
    for round in 0..6 {
        producer.begin_transaction().unwrap();
        send(&producer, "durable", 0, &values(&format!("r{round}"), 20));
        if round % 2 == 0 {
            producer.commit_transaction(TIMEOUT).unwrap();
        } else {
            producer.abort_transaction(TIMEOUT).unwrap();
        }
    }
    // One transaction left open at the crash: the restarted coordinator aborts it on timeout.
    let open = transactional_producer(&bootstrap, "open-at-crash", &short_timeouts("3000"));
    open.begin_transaction().unwrap();
    send(&open, "durable", 0, &values("open", 5));
    drop(producer);
    broker.kill9();
    broker.restart();
    wait_for_topic(&bootstrap, "durable", 1);
    let expected: Vec<String> = [0, 2, 4]
        .iter()
        .flat_map(|round| values(&format!("r{round}"), 20))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (stable, end) = end_offsets(&broker, "durable", 0);
        if stable == end {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "LSO stuck at {stable} of {end} after restart"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        read_all(&bootstrap, "durable", 1, "read_committed")[&0],
        expected
    );
    drop(open);
    // The same id can be used again after the restart, and commits still work.
    let again = transactional_producer(&bootstrap, "durable-id", &[]);
    again.begin_transaction().unwrap();
    send(&again, "durable", 0, &values("after-restart", 3));
    again.commit_transaction(TIMEOUT).unwrap();
    let mut expected = expected;
    expected.extend(values("after-restart", 3));
    assert_eq!(
        read_all(&bootstrap, "durable", 1, "read_committed")[&0],
        expected
    );
}
