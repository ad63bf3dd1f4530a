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
    // And after a clean restart (state from the shutdown snapshot and the .txnindex files).
    drop(again);
    broker.stop_clean();
    broker.restart();
    wait_for_topic(&bootstrap, "durable", 1);
    assert_eq!(
        read_all(&bootstrap, "durable", 1, "read_committed")[&0],
        expected
    );
    let (stable, end) = end_offsets(&broker, "durable", 0);
    assert_eq!(stable, end);
}

/// Bad transactional input over the raw protocol: each request gets Kafka's error code and
/// nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_bad_transactional_input_gets_kafka_errors() {
    use kafka_protocol::messages::add_partitions_to_txn_request::{
        AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
    };
    use kafka_protocol::messages::{
        AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, DescribeTransactionsRequest,
        DescribeTransactionsResponse, EndTxnRequest, EndTxnResponse, InitProducerIdRequest,
        InitProducerIdResponse, ListTransactionsRequest, ListTransactionsResponse, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    const INVALID_RECORD: i16 = 87;
    const INVALID_TXN_STATE: i16 = 48;
    const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
    const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
    const PRODUCER_FENCED: i16 = 90;
    const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;

    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "bad", 1, &[]).await;
    let mut client = raw::RawClient::connect(broker.addr());
    let id = || StrBytes::from_static_str("bad-id").into();
    let init = |client: &mut raw::RawClient, timeout_ms: i32| -> InitProducerIdResponse {
        client.call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(id()))
                .with_transaction_timeout_ms(timeout_ms),
        )
    };
    assert_eq!(init(&mut client, 0).error_code, INVALID_TRANSACTION_TIMEOUT);
    assert_eq!(
        init(&mut client, 10_000_000).error_code,
        INVALID_TRANSACTION_TIMEOUT
    );
    let initialized = init(&mut client, 60_000);
    assert_eq!(initialized.error_code, 0);
    let (producer_id, epoch) = (initialized.producer_id.0, initialized.producer_epoch);

    // A transactional batch before AddPartitionsToTxn, and a control batch from a client.
    let batch = raw::producer_batch(producer_id, epoch, 0, 2, true);
    assert_eq!(
        client
            .produce_transactional(Some("bad-id"), "bad", 0, &batch)
            .0,
        INVALID_TXN_STATE
    );
    let marker = dlog::record::control::marker_batch(producer_id, epoch, 0, true, 0);
    assert_eq!(client.produce("bad", 0, &marker).0, INVALID_RECORD);

    let add = |client: &mut raw::RawClient, pid: i64, epoch: i16, topic: &str| -> i16 {
        let response: AddPartitionsToTxnResponse = client.call(
            ApiKey::AddPartitionsToTxn,
            3,
            &AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(id())
                .with_v3_and_below_producer_id(pid.into())
                .with_v3_and_below_producer_epoch(epoch)
                .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![0])]),
        );
        response.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
    };
    assert_eq!(
        add(&mut client, producer_id, epoch + 1, "bad"),
        PRODUCER_FENCED
    );
    assert_eq!(
        add(&mut client, producer_id + 1, epoch, "bad"),
        INVALID_PRODUCER_ID_MAPPING
    );
    assert_eq!(
        add(&mut client, producer_id, epoch, "missing"),
        UNKNOWN_TOPIC_OR_PARTITION
    );
    assert_eq!(watermarks(&bootstrap, "bad", 0).1, 0, "nothing stored");
    assert_eq!(add(&mut client, producer_id, epoch, "bad"), 0);
    assert_eq!(
        client.produce_transactional(Some("bad-id"), "bad", 0, &batch),
        (0, 0)
    );
    // The same producer may not write outside its open transaction.
    let plain = raw::producer_batch(producer_id, epoch, 2, 1, false);
    assert_eq!(client.produce("bad", 0, &plain).0, INVALID_TXN_STATE);

    // Verification form (v4+): a partition outside the transaction.
    let verify: AddPartitionsToTxnResponse = client.call(
        ApiKey::AddPartitionsToTxn,
        4,
        &AddPartitionsToTxnRequest::default().with_transactions(vec![
            AddPartitionsToTxnTransaction::default()
                .with_transactional_id(id())
                .with_producer_id(producer_id.into())
                .with_producer_epoch(epoch)
                .with_verify_only(true)
                .with_topics(vec![AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("bad")))
                    .with_partitions(vec![0, 7])]),
        ]),
    );
    let results = &verify.results_by_transaction[0].topic_results[0].results_by_partition;
    assert_eq!(
        results
            .iter()
            .map(|r| r.partition_error_code)
            .collect::<Vec<_>>(),
        vec![0, INVALID_TXN_STATE]
    );

    let end = |client: &mut raw::RawClient, epoch: i16, commit: bool| -> i16 {
        let response: EndTxnResponse = client.call(
            ApiKey::EndTxn,
            3,
            &EndTxnRequest::default()
                .with_transactional_id(id())
                .with_producer_id(producer_id.into())
                .with_producer_epoch(epoch)
                .with_committed(commit),
        );
        response.error_code
    };
    assert_eq!(end(&mut client, epoch - 1, true), PRODUCER_FENCED);
    assert_eq!(end(&mut client, epoch, true), 0);
    assert_eq!(
        end(&mut client, epoch, true),
        0,
        "a retried commit succeeds"
    );
    assert_eq!(end(&mut client, epoch, false), INVALID_TXN_STATE);
    assert_eq!(
        end_offsets(&broker, "bad", 0),
        (3, 3),
        "2 records and a marker"
    );

    let described: DescribeTransactionsResponse = client.call(
        ApiKey::DescribeTransactions,
        0,
        &DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![id(), StrBytes::from_static_str("nope").into()]),
    );
    assert_eq!(described.transaction_states[0].error_code, 0);
    assert_eq!(
        described.transaction_states[0].transaction_state.as_str(),
        "CompleteCommit"
    );
    assert_eq!(described.transaction_states[0].producer_id.0, producer_id);
    assert_eq!(
        described.transaction_states[1].error_code,
        TRANSACTIONAL_ID_NOT_FOUND
    );
    let listed: ListTransactionsResponse = client.call(
        ApiKey::ListTransactions,
        1,
        &ListTransactionsRequest::default(),
    );
    assert_eq!(listed.error_code, 0);
    assert!(listed
        .transaction_states
        .iter()
        .any(|t| t.transactional_id.as_str() == "bad-id"));
}

/// A transaction open in a partition that the coordinator has no record of (its state was
/// lost) is aborted, so it cannot pin the last stable offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_transaction_without_coordinator_state_is_aborted() {
    let mut broker =
        Broker::start_with(&["transaction.abort.timed.out.transaction.cleanup.interval.ms=200"]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "hang", 1, &[]).await;
    let producer = transactional_producer(&bootstrap, "hang-id", &[]);
    producer.begin_transaction().unwrap();
    send(&producer, "hang", 0, &values("lost", 3));
    drop(producer);
    broker.kill9();
    // Lose the coordinator's state: empty every __transaction_state partition.
    for entry in std::fs::read_dir(broker.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("__transaction_state-") {
            std::fs::remove_dir_all(&path).unwrap();
            std::fs::create_dir(&path).unwrap();
        }
    }
    broker.restart();
    wait_for_topic(&bootstrap, "hang", 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (stable, end) = end_offsets(&broker, "hang", 0);
        if stable == end && end == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "LSO pinned at {stable} (end {end})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(read_all(&bootstrap, "hang", 1, "read_committed")[&0].is_empty());
}

/// Consume-transform-produce with `send_offsets_to_transaction` (librdkafka): a group member
/// reads the input read_committed, writes each record transformed to the output and commits
/// its input offsets in the same transaction. Some rounds abort, after which the member is
/// replaced and the group resumes from its committed offsets. The output read_committed is
/// exactly the transformed input, the group's offsets end at the input's end, and an aborted
/// round leaves neither its output visible nor its offsets committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_transform_produce_with_send_offsets() {
    const PER_PARTITION: usize = 60;
    const BATCH: usize = 25;
    const GROUP: &str = "ctp-group";
    let broker = Broker::start_with(&["group.initial.rebalance.delay.ms=0"]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "ctp-in", 2, &[]).await;
    create_topic(&bootstrap, "ctp-out", 2, &[]).await;
    let plain = future_free_producer(&bootstrap);
    for partition in 0..2 {
        send(
            &plain,
            "ctp-in",
            partition,
            &values(&format!("in-p{partition}"), PER_PARTITION),
        );
    }
    let member = || -> BaseConsumer {
        let consumer: BaseConsumer = consumer_config(&bootstrap)
            .set("group.id", GROUP)
            .set("isolation.level", "read_committed")
            .set("session.timeout.ms", "6000")
            .create()
            .expect("group consumer");
        consumer.subscribe(&["ctp-in"]).expect("subscribe");
        consumer
    };
    let committed_offsets =
        |consumer: &BaseConsumer| common::group_committed_offsets(consumer, "ctp-in", 2, TIMEOUT);
    let producer = transactional_producer(&bootstrap, "ctp-id", &[]);
    let mut consumer: Option<BaseConsumer> = None;
    // Offsets committed so far through transactions: partition → next offset to read.
    let mut committed: BTreeMap<i32, i64> = BTreeMap::new();
    let end: BTreeMap<i32, i64> = (0..2).map(|p| (p, PER_PARTITION as i64)).collect();
    let abort_rounds = [0usize, 3];
    let mut aborted_records = 0usize;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut round = 0usize;
    while committed != end {
        assert!(
            Instant::now() < deadline,
            "copy did not finish: committed {committed:?}"
        );
        let member_consumer = consumer.get_or_insert_with(member);
        let (batch_len, offsets) = common::transform_round(
            &producer,
            member_consumer,
            ("ctp-in", "ctp-out"),
            BATCH,
            deadline,
            TIMEOUT,
        );
        if abort_rounds.contains(&round) {
            producer.abort_transaction(TIMEOUT).unwrap();
            aborted_records += batch_len;
            assert_eq!(
                committed_offsets(member_consumer),
                committed,
                "an aborted round commits no offsets (round {round})"
            );
            // Rewind: a new member resumes from the group's committed offsets.
            consumer = None;
        } else {
            producer.commit_transaction(TIMEOUT).unwrap();
            committed.extend(offsets);
            assert_eq!(
                committed_offsets(member_consumer),
                committed,
                "offsets committed by the transaction (round {round})"
            );
        }
        round += 1;
    }
    assert!(aborted_records > 0);
    let output = read_all(&bootstrap, "ctp-out", 2, "read_committed");
    for partition in 0..2 {
        let expected: Vec<String> = values(&format!("in-p{partition}"), PER_PARTITION)
            .iter()
            .map(|v| format!("out-{v}"))
            .collect();
        assert_eq!(output[&partition], expected, "ctp-out p{partition}");
    }
    let uncommitted: usize = read_all(&bootstrap, "ctp-out", 2, "read_uncommitted")
        .values()
        .map(Vec::len)
        .sum();
    assert_eq!(
        uncommitted,
        2 * PER_PARTITION + aborted_records,
        "the aborted rounds' records are in the log, hidden from read_committed"
    );
    let fresh = consumer_config(&bootstrap)
        .set("group.id", GROUP)
        .create::<BaseConsumer>()
        .unwrap();
    assert_eq!(committed_offsets(&fresh), end);
}

/// Offsets committed through transactions live in `__consumer_offsets` as transactional
/// records decided by the transaction's marker: after kill -9 a committed transaction's offsets
/// are back, and those of a transaction open at the crash never count (it is aborted on
/// timeout after the restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_offsets_survive_kill9() {
    const GROUP: &str = "tos-group";
    let mut broker =
        Broker::start_with(&["transaction.abort.timed.out.transaction.cleanup.interval.ms=200"]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "tos-in", 1, &[]).await;
    create_topic(&bootstrap, "tos-out", 1, &[]).await;
    // assign() mode: the group metadata carries generation -1, as for a simple consumer.
    let consumer: BaseConsumer = consumer_config(&bootstrap)
        .set("group.id", GROUP)
        .create()
        .unwrap();
    let group_metadata = consumer.group_metadata().expect("group metadata");
    let offsets = |offset: i64| {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset("tos-in", 0, Offset::Offset(offset))
            .unwrap();
        list
    };
    let committed = |bootstrap: &str| -> Offset {
        let consumer: BaseConsumer = consumer_config(bootstrap)
            .set("group.id", GROUP)
            .create()
            .unwrap();
        let mut list = TopicPartitionList::new();
        list.add_partition("tos-in", 0);
        let committed = consumer.committed_offsets(list, TIMEOUT).unwrap();
        committed.elements()[0].offset()
    };
    let done = transactional_producer(&bootstrap, "tos-done", &[]);
    done.begin_transaction().unwrap();
    send(&done, "tos-out", 0, &values("done", 2));
    done.send_offsets_to_transaction(&offsets(5), &group_metadata, TIMEOUT)
        .unwrap();
    done.commit_transaction(TIMEOUT).unwrap();
    assert_eq!(committed(&bootstrap), Offset::Offset(5));
    let open = transactional_producer(&bootstrap, "tos-open", &short_timeouts("3000"));
    open.begin_transaction().unwrap();
    send(&open, "tos-out", 0, &values("open", 2));
    open.send_offsets_to_transaction(&offsets(9), &group_metadata, TIMEOUT)
        .unwrap();
    // While the transaction is open: require_stable=false reads the last committed offset;
    // require_stable=true (what read_committed consumers send) gets UNSTABLE_OFFSET_COMMIT.
    let addr = broker.addr();
    let fetch = |require_stable: bool| -> (i16, i64) {
        use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
        use kafka_protocol::messages::{
            ApiKey, OffsetFetchRequest, OffsetFetchResponse, TopicName,
        };
        use kafka_protocol::protocol::StrBytes;
        let mut client = raw::RawClient::connect(addr);
        let response: OffsetFetchResponse = client.call(
            ApiKey::OffsetFetch,
            7,
            &OffsetFetchRequest::default()
                .with_group_id(StrBytes::from_static_str(GROUP).into())
                .with_require_stable(require_stable)
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("tos-in")))
                    .with_partition_indexes(vec![0])])),
        );
        let partition = &response.topics[0].partitions[0];
        (partition.error_code, partition.committed_offset)
    };
    const UNSTABLE_OFFSET_COMMIT: i16 = 88;
    assert_eq!(
        fetch(false),
        (0, 5),
        "offsets of an open transaction do not count"
    );
    assert_eq!(fetch(true), (UNSTABLE_OFFSET_COMMIT, -1));
    drop((done, open, consumer));
    broker.kill9();
    broker.restart();
    wait_for_topic(&bootstrap, "tos-out", 1);
    assert_eq!(committed(&bootstrap), Offset::Offset(5), "after kill -9");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (stable, end) = end_offsets(&broker, "tos-out", 0);
        if stable == end {
            break;
        }
        assert!(Instant::now() < deadline, "LSO stuck at {stable} of {end}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        committed(&bootstrap),
        Offset::Offset(5),
        "the open transaction was aborted, its offsets with it"
    );
    assert_eq!(fetch(true), (0, 5), "stable again");
    broker.stop_clean();
    broker.restart();
    wait_for_topic(&bootstrap, "tos-out", 1);
    assert_eq!(
        committed(&bootstrap),
        Offset::Offset(5),
        "after a clean restart"
    );
}

/// Transactions v2 (KIP-890 part 2) over the wire, as a Kafka 4 client speaks it once the
/// broker finalizes `transaction.version=2`: Produce v12 adds its partition to the transaction
/// (no AddPartitionsToTxn), EndTxn v5 bumps the epoch and returns it, a retried EndTxn with
/// the epoch before the bump gets the same answer, a stale epoch is fenced in Produce and
/// EndTxn, and the state (TransactionLogValue v1) survives kill -9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_v2_epoch_bump_implicit_add_and_fencing() {
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    use kafka_protocol::messages::{
        ApiKey, ApiVersionsRequest, ApiVersionsResponse, DescribeProducersRequest,
        DescribeProducersResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
        TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    const INVALID_TXN_STATE: i16 = 48;
    const INVALID_PRODUCER_EPOCH: i16 = 47;
    const PRODUCER_FENCED: i16 = 90;

    let mut broker = Broker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "tv2", 2, &[]).await;
    let mut client = raw::RawClient::connect(broker.addr());

    let versions: ApiVersionsResponse =
        client.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    let finalized = versions
        .finalized_features
        .iter()
        .find(|f| f.name.as_str() == "transaction.version")
        .map(|f| f.max_version_level);
    assert_eq!(finalized, Some(2), "transaction.version finalized at 2");
    let end_txn_max = versions
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::EndTxn as i16)
        .map(|k| k.max_version);
    assert_eq!(end_txn_max, Some(5));

    let id = || StrBytes::from_static_str("tv2-id").into();
    let (producer_id, epoch) = raw::init_transactional(&mut client, "tv2-id");

    // Produce v11 (a transactions-v1 client) still needs AddPartitionsToTxn first.
    let first = raw::producer_batch(producer_id, epoch, 0, 2, true);
    assert_eq!(
        client
            .produce_version(11, Some("tv2-id"), "tv2", 0, &first)
            .0,
        INVALID_TXN_STATE
    );
    // Produce v12 adds the partitions itself.
    assert_eq!(
        client.produce_version(12, Some("tv2-id"), "tv2", 0, &first),
        (0, 0)
    );
    let other = raw::producer_batch(producer_id, epoch, 0, 1, true);
    assert_eq!(
        client
            .produce_version(12, Some("tv2-id"), "tv2", 1, &other)
            .0,
        0
    );
    let describe = |client: &mut raw::RawClient| {
        let described: DescribeTransactionsResponse = client.call(
            ApiKey::DescribeTransactions,
            0,
            &DescribeTransactionsRequest::default().with_transactional_ids(vec![id()]),
        );
        let state = &described.transaction_states[0];
        (
            state.transaction_state.to_string(),
            state.producer_epoch,
            state
                .topics
                .iter()
                .map(|t| t.partitions.len())
                .sum::<usize>(),
        )
    };
    assert_eq!(describe(&mut client), ("Ongoing".to_string(), epoch, 2));

    let end = |client: &mut raw::RawClient, epoch: i16, commit: bool| {
        raw::end_txn_v5(client, "tv2-id", (producer_id, epoch), commit)
    };
    assert_eq!(
        end(&mut client, epoch, true),
        (0, producer_id, epoch + 1),
        "commit bumps the epoch"
    );
    assert_eq!(
        end(&mut client, epoch, true),
        (0, producer_id, epoch + 1),
        "a retried commit gets the same answer"
    );
    assert_eq!(end(&mut client, epoch, false).0, INVALID_TXN_STATE);
    // Kafka 4's table for a completed transaction: a commit at the current epoch has nothing
    // to commit (an abort would be legal: the empty abort of transactions v2).
    assert_eq!(
        end(&mut client, epoch + 1, true).0,
        INVALID_TXN_STATE,
        "no transaction is open at the new epoch"
    );
    assert_eq!(
        end(&mut client, epoch + 2, false).0,
        PRODUCER_FENCED,
        "an epoch the coordinator never gave out"
    );
    // The zombie's late batch of the committed transaction (old epoch) is fenced.
    let late = raw::producer_batch(producer_id, epoch, 2, 1, true);
    assert_eq!(
        client
            .produce_version(12, Some("tv2-id"), "tv2", 0, &late)
            .0,
        INVALID_PRODUCER_EPOCH
    );

    // The next transaction at the bumped epoch starts its sequences over; it is aborted.
    let second = raw::producer_batch(producer_id, epoch + 1, 0, 3, true);
    assert_eq!(
        client
            .produce_version(12, Some("tv2-id"), "tv2", 0, &second)
            .0,
        0
    );
    assert_eq!(
        end(&mut client, epoch + 1, false),
        (0, producer_id, epoch + 2)
    );
    // Partition 0: 2 committed, a marker, 3 aborted, a marker; read_committed sees 2.
    assert_eq!(end_offsets(&broker, "tv2", 0), (7, 7));
    let committed = read_all(&bootstrap, "tv2", 2, "read_committed");
    assert_eq!(committed[&0].len(), 2);
    assert_eq!(committed[&1].len(), 1);

    // The markers carried the bumped epochs: the partition's producer state says so.
    let producers: DescribeProducersResponse = client.call(
        ApiKey::DescribeProducers,
        0,
        &DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
            .with_name(TopicName(StrBytes::from_static_str("tv2")))
            .with_partition_indexes(vec![0])]),
    );
    let state = &producers.topics[0].partitions[0];
    assert_eq!(state.error_code, 0);
    assert_eq!(
        state.active_producers[0].producer_epoch,
        i32::from(epoch + 2)
    );

    // kill -9: the coordinator's state (TransactionLogValue v1) replays, and with it the
    // transactions-v2 rules (a retried abort with the epoch before the bump is answered).
    broker.kill9();
    broker.restart();
    let mut client = raw::RawClient::connect(broker.addr());
    assert_eq!(
        describe(&mut client),
        ("CompleteAbort".to_string(), epoch + 2, 0)
    );
    assert_eq!(
        end(&mut client, epoch + 1, false),
        (0, producer_id, epoch + 2)
    );
    let third = raw::producer_batch(producer_id, epoch + 2, 0, 1, true);
    assert_eq!(
        client
            .produce_version(12, Some("tv2-id"), "tv2", 1, &third)
            .0,
        0
    );
    assert_eq!(
        end(&mut client, epoch + 2, true),
        (0, producer_id, epoch + 3)
    );
    let committed = read_all(&bootstrap, "tv2", 2, "read_committed");
    assert_eq!(committed[&1].len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_of_an_older_coordinator_or_producer_epoch_are_refused() {
    // Kafka's fencing of zombie coordinators: once a partition took a marker from coordinator
    // epoch 5, a marker from epoch 4 is refused (TRANSACTION_COORDINATOR_FENCED) — it may be
    // from a coordinator that lost its shard and decided the transaction the other way — and
    // so is one for an older producer epoch (INVALID_PRODUCER_EPOCH), which would otherwise end
    // the producer's next transaction.
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "marker-fencing", 1, &[]).await;
    let mut client = raw::RawClient::connect(broker.addr());
    let mut marker = |producer_epoch: i16, coordinator_epoch: i32| {
        raw::write_marker(
            &mut client,
            "marker-fencing",
            4343,
            producer_epoch,
            coordinator_epoch,
            true,
        )
    };
    assert_eq!(marker(3, 5), 0, "the first marker is taken");
    assert_eq!(marker(3, 5), 0, "a retried marker is taken again");
    assert_eq!(
        marker(3, 4),
        kafka_protocol::ResponseError::TransactionCoordinatorFenced.code()
    );
    assert_eq!(
        marker(2, 5),
        kafka_protocol::ResponseError::InvalidProducerEpoch.code()
    );
    assert_eq!(marker(4, 6), 0, "a newer coordinator and epoch are taken");
    assert_eq!(
        marker(4, 5),
        kafka_protocol::ResponseError::TransactionCoordinatorFenced.code()
    );
    assert_eq!(
        watermarks(&bootstrap, "marker-fencing", 0).1,
        3,
        "only the three markers taken are in the log"
    );
}

/// Kafka appends transaction markers with acks=all, so `min.insync.replicas` holds for them as
/// for a client's produce: with fewer replicas in sync (here a topic asking for 2 on a single
/// node) WriteTxnMarkers answers NOT_ENOUGH_REPLICAS and writes nothing, and the coordinator
/// writes the marker again later. A marker answered for while only the leader holds it is
/// lost with the leader's unsynced data, and the producer's next marker would decide the
/// aborted records too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_keep_min_insync_replicas() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    create_topic(
        &bootstrap,
        "marker-min-isr",
        1,
        &[("min.insync.replicas", "2")],
    )
    .await;
    create_topic(&bootstrap, "marker-one", 1, &[]).await;
    let marker_error = |topic: &'static str| {
        raw::write_marker(
            &mut raw::RawClient::connect(broker.addr()),
            topic,
            4242,
            0,
            0,
            false,
        )
    };
    assert_eq!(
        marker_error("marker-min-isr"),
        kafka_protocol::ResponseError::NotEnoughReplicas.code()
    );
    assert_eq!(
        watermarks(&bootstrap, "marker-min-isr", 0).1,
        0,
        "nothing written"
    );
    assert_eq!(
        marker_error("marker-one"),
        0,
        "min.insync.replicas 1 is met"
    );
    assert_eq!(
        watermarks(&bootstrap, "marker-one", 0).1,
        1,
        "the marker is written"
    );
}
