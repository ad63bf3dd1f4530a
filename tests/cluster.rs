//! A three-node cluster on loopback, with real clients: every node lists every broker,
//! partitions spread their leaders over the brokers, librdkafka produces and consumes across
//! them from any bootstrap node, and a broker that dies is fenced (its partitions lose their
//! leader) and serves its data again when it returns.

mod common;
mod raw;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{free_port, Broker, CLIENT_TIMEOUT};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

/// Session timeout of the test cluster: a dead broker is fenced this long after it stops.
const SESSION_TIMEOUT_MS: u64 = 3000;

struct Cluster {
    nodes: Vec<Broker>,
}

impl Cluster {
    /// Starts `count` combined (broker + controller) nodes, ids 1..=count.
    fn start(count: usize) -> Cluster {
        Cluster::start_with(count, &[])
    }

    /// [`Cluster::start`] with `--set key=value` for each of `settings` on every node.
    fn start_with(count: usize, settings: &[&str]) -> Cluster {
        Cluster::start_each(count, |_| settings.iter().map(|s| s.to_string()).collect())
    }

    /// [`Cluster::start`] with `--set key=value` for each of `settings_of(index)` on node
    /// `index` (0-based; its id is `index + 1`).
    fn start_each(count: usize, settings_of: impl Fn(usize) -> Vec<String>) -> Cluster {
        let ports: Vec<(u16, u16)> = (0..count).map(|_| (free_port(), free_port())).collect();
        let voters = ports
            .iter()
            .enumerate()
            .map(|(index, (_, controller))| format!("{}@127.0.0.1:{controller}", index + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes: Vec<Broker> = ports
            .iter()
            .enumerate()
            .map(|(index, (port, controller))| {
                let args = vec![
                    "--node-id".to_string(),
                    (index + 1).to_string(),
                    "--controller-listen".to_string(),
                    format!("127.0.0.1:{controller}"),
                    "--controller-quorum-voters".to_string(),
                    voters.clone(),
                    "--set".to_string(),
                    format!("broker.session.timeout.ms={SESSION_TIMEOUT_MS}"),
                    "--set".to_string(),
                    "broker.heartbeat.interval.ms=500".to_string(),
                ];
                let settings = settings_of(index)
                    .into_iter()
                    .flat_map(|s| ["--set".to_string(), s]);
                Broker::spawn_with_args(*port, args.into_iter().chain(settings).collect())
            })
            .collect();
        for node in &mut nodes {
            node.wait_listening();
        }
        Cluster { nodes }
    }

    fn bootstrap(&self, index: usize) -> String {
        self.nodes[index].bootstrap()
    }

    /// Every node's address, comma-separated.
    fn bootstrap_all(&self) -> String {
        (0..self.nodes.len())
            .map(|i| self.bootstrap(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// [`Cluster::start`], then waits until every node lists every broker.
    fn start_registered(count: usize) -> Cluster {
        let cluster = Cluster::start(count);
        cluster.wait_registered();
        cluster
    }

    /// Waits until every node lists every broker.
    fn wait_registered(&self) {
        let all: BTreeSet<i32> = (1..=self.nodes.len() as i32).collect();
        for index in 0..self.nodes.len() {
            let bootstrap = self.bootstrap(index);
            eventually(
                Duration::from_secs(20),
                || metadata(&bootstrap, None).0,
                |b| *b == all,
            );
        }
    }

    /// Creates `topic` through node `via` and waits until node `check` reports a leader for
    /// each partition: partition → leader.
    fn create_topic(
        &self,
        via: usize,
        check: usize,
        topic: &str,
        partitions: i32,
    ) -> BTreeMap<i32, i32> {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(common::create_topic(
            &self.bootstrap(via),
            topic,
            partitions,
            &[],
        ));
        let (_, leaders) = eventually(
            Duration::from_secs(5),
            || metadata(&self.bootstrap(check), Some(topic)),
            |(_, leaders)| leaders.len() == partitions as usize,
        );
        leaders
    }
}

/// Broker ids and partition leaders (partition → leader) of `topic`, as node `bootstrap`
/// reports them; nothing while it cannot answer (no broker registered yet).
fn metadata(bootstrap: &str, topic: Option<&str>) -> (BTreeSet<i32>, BTreeMap<i32, i32>) {
    let consumer = common::consumer(bootstrap);
    let Ok(metadata) = consumer.fetch_metadata(topic, CLIENT_TIMEOUT) else {
        return Default::default();
    };
    let brokers = metadata.brokers().iter().map(|b| b.id()).collect();
    let leaders = metadata
        .topics()
        .iter()
        .filter(|t| Some(t.name()) == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| (p.id(), p.leader())))
        .collect();
    (brokers, leaders)
}

/// Polls `check` until it holds (bounded by `timeout`), returning the last value it saw.
fn eventually<T: std::fmt::Debug>(
    timeout: Duration,
    mut probe: impl FnMut() -> T,
    check: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let value = probe();
        if check(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {timeout:?}: last {value:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn produce_keyed(bootstrap: &str, topic: &str, partitions: i32, count: usize, tag: &str) {
    let producer: ThreadedProducer<DefaultProducerContext> = common::producer_config(bootstrap)
        .create()
        .expect("producer");
    for index in 0..count {
        let value = format!("{tag}-{index}");
        let partition = (index as i32) % partitions;
        loop {
            match producer.send(
                BaseRecord::to(topic)
                    .partition(partition)
                    .key(&value)
                    .payload(&value),
            ) {
                Ok(()) => break,
                Err((error, _)) => {
                    // Queue full: let it drain.
                    assert!(
                        format!("{error}").contains("Queue full"),
                        "send failed: {error}"
                    );
                    producer.poll(Duration::from_millis(50));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// Values read from every partition of `topic` through a group consumer on `bootstrap`.
fn consume_values(bootstrap: &str, topic: &str, expected: usize) -> BTreeSet<String> {
    let consumer: BaseConsumer = common::consumer_config(bootstrap)
        .set("group.id", format!("cluster-{topic}-{}", free_port()))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut values = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while values.len() < expected && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("consume");
            let value = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
            assert!(values.insert(value.clone()), "duplicate {value}");
        }
    }
    values
}

#[test]
fn three_brokers_serve_partitions_led_by_each_other() {
    let mut cluster = Cluster::start_registered(3);
    let all: BTreeSet<i32> = [1, 2, 3].into();

    // Created through node 3, visible from node 1 with leaders on every broker.
    let topic = "spread";
    let leaders = cluster.create_topic(2, 0, topic, 6);
    let leading: BTreeSet<i32> = leaders.values().copied().collect();
    assert_eq!(
        leading, all,
        "leaders of 6 partitions over 3 brokers: {leaders:?}"
    );

    // Produce through node 1, consume with a group through node 2: every record once.
    produce_keyed(&cluster.bootstrap(0), topic, 6, 600, "a");
    let values = consume_values(&cluster.bootstrap(1), topic, 600);
    let expected: BTreeSet<String> = (0..600).map(|i| format!("a-{i}")).collect();
    assert_eq!(values, expected);

    // A broker killed is fenced after its session: its partitions have no leader, and
    // Metadata stops listing it. Node 1 and 2 keep serving.
    let victim = *leaders.values().find(|&&id| id != 1).unwrap();
    let victim_index = (victim - 1) as usize;
    cluster.nodes[victim_index].kill9();
    let survivor = cluster.bootstrap(if victim_index == 0 { 1 } else { 0 });
    let (brokers, leaders_after) = eventually(
        Duration::from_millis(SESSION_TIMEOUT_MS * 4),
        || metadata(&survivor, Some(topic)),
        |(brokers, _)| !brokers.contains(&victim),
    );
    assert_eq!(brokers.len(), 2);
    for (partition, leader) in &leaders_after {
        if leaders[partition] == victim {
            assert_eq!(*leader, -1, "partition {partition} of a fenced broker");
        } else {
            assert_eq!(*leader, leaders[partition]);
        }
    }

    // It returns on the same data directory, registers again and serves its data.
    cluster.nodes[victim_index].restart_nowait();
    cluster.nodes[victim_index].wait_listening();
    eventually(
        Duration::from_secs(20),
        || metadata(&survivor, Some(topic)),
        |(brokers, leaders_now)| brokers == &all && leaders_now == &leaders,
    );
    produce_keyed(&survivor, topic, 6, 60, "b");
    let values = consume_values(&cluster.bootstrap(victim_index), topic, 660);
    assert_eq!(values.len(), 660);
}

const TXN_TIMEOUT: Duration = Duration::from_secs(30);

fn transactional_producer(bootstrap: &str, id: &str) -> rdkafka::producer::BaseProducer {
    let producer: rdkafka::producer::BaseProducer = common::producer_config(bootstrap)
        .set("enable.idempotence", "true")
        .set("transactional.id", id)
        .set("transaction.timeout.ms", "60000")
        .create()
        .expect("transactional producer");
    producer
        .init_transactions(TXN_TIMEOUT)
        .expect("init_transactions");
    producer
}

/// One transaction writing `values` to every partition of `topic` (value i to partition
/// i % partitions), then committed or aborted.
fn transaction(
    producer: &rdkafka::producer::BaseProducer,
    topic: &str,
    partitions: i32,
    values: &[String],
    commit: bool,
) {
    producer.begin_transaction().expect("begin_transaction");
    for (index, value) in values.iter().enumerate() {
        producer
            .send(
                BaseRecord::<(), str>::to(topic)
                    .partition(index as i32 % partitions)
                    .payload(value),
            )
            .expect("enqueue");
    }
    producer.flush(TXN_TIMEOUT).expect("flush");
    if commit {
        producer
            .commit_transaction(TXN_TIMEOUT)
            .expect("commit_transaction");
    } else {
        producer
            .abort_transaction(TXN_TIMEOUT)
            .expect("abort_transaction");
    }
}

/// Reads every partition of `topic` from the beginning to its end (the last stable offset for
/// read_committed): the payloads, which must reach the end of every partition, none twice.
fn read_to_end(bootstrap: &str, topic: &str, partitions: i32, isolation: &str) -> BTreeSet<String> {
    let mut values = BTreeSet::new();
    for value in read_in_order(bootstrap, topic, partitions, isolation)
        .into_values()
        .flatten()
    {
        assert!(values.insert(value), "duplicate record");
    }
    values
}

fn tagged(tag: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{tag}-{i}")).collect()
}

/// A transaction spanning partitions led by every broker: the coordinator writes its own
/// partitions' markers and sends WriteTxnMarkers for the others, and the other brokers take
/// the transactional batches without the coordinator's state. read_committed sees exactly the
/// committed transactions and reaches the end of every partition (the last stable offset moved
/// past each transaction everywhere); read_uncommitted sees everything.
#[test]
fn transaction_spans_partitions_on_every_broker() {
    let cluster = Cluster::start_registered(3);
    let all: BTreeSet<i32> = [1, 2, 3].into();
    let topic = "xtxn";
    let leaders = cluster.create_topic(0, 1, topic, 6);
    let leading: BTreeSet<i32> = leaders.values().copied().collect();
    assert_eq!(leading, all, "leaders on every broker: {leaders:?}");

    let producer = transactional_producer(&cluster.bootstrap(1), "xtxn-producer");
    let first = tagged("first", 60);
    let aborted = tagged("aborted", 60);
    let third = tagged("third", 60);
    transaction(&producer, topic, 6, &first, true);
    transaction(&producer, topic, 6, &aborted, false);
    transaction(&producer, topic, 6, &third, true);

    let committed: BTreeSet<String> = first.iter().chain(&third).cloned().collect();
    for index in 0..3 {
        let seen = read_to_end(&cluster.bootstrap(index), topic, 6, "read_committed");
        assert_eq!(seen, committed, "read_committed through node {}", index + 1);
    }
    let everything: BTreeSet<String> = committed.iter().chain(&aborted).cloned().collect();
    let seen = read_to_end(&cluster.bootstrap(2), topic, 6, "read_uncommitted");
    assert_eq!(seen, everything);
}

/// The node FindCoordinator names for `key` (key type 0: group, 1: transaction).
fn coordinator_of(cluster: &Cluster, key_type: i8, key: &str) -> i32 {
    use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest, FindCoordinatorResponse};
    use kafka_protocol::protocol::StrBytes;
    eventually(
        Duration::from_secs(20),
        || {
            let mut client = raw::RawClient::connect(cluster.nodes[0].addr());
            let request = FindCoordinatorRequest::default()
                .with_key_type(key_type)
                .with_coordinator_keys(vec![StrBytes::from_string(key.to_string())]);
            let response: FindCoordinatorResponse =
                client.call(ApiKey::FindCoordinator, 4, &request);
            let coordinator = &response.coordinators[0];
            (coordinator.error_code == 0).then_some(coordinator.node_id.0)
        },
        Option::is_some,
    )
    .unwrap()
}

/// Consume-transform-produce where the group's coordinator is another broker than the
/// transaction's: TxnOffsetCommit is staged on the group coordinator, and the marker the
/// transaction coordinator sends it (WriteTxnMarkers on `__consumer_offsets`) decides the
/// offsets there. An aborted round commits neither output nor offsets.
#[test]
fn send_offsets_to_transaction_across_brokers() {
    const PER_PARTITION: i64 = 30;
    const GROUP: &str = "xctp-group";
    let cluster = Cluster::start_registered(3);
    cluster.create_topic(0, 1, "xctp-in", 3);
    cluster.create_topic(0, 1, "xctp-out", 3);
    produce_keyed(
        &cluster.bootstrap(0),
        "xctp-in",
        3,
        3 * PER_PARTITION as usize,
        "in",
    );

    let group_coordinator = coordinator_of(&cluster, 0, GROUP);
    let transactional_id = (0..100)
        .map(|n| format!("xctp-{n}"))
        .find(|id| coordinator_of(&cluster, 1, id) != group_coordinator)
        .expect("a transactional id coordinated by another broker than the group");

    let bootstrap = cluster.bootstrap(0);
    let member = || -> BaseConsumer {
        let consumer: BaseConsumer = common::consumer_config(&bootstrap)
            .set("group.id", GROUP)
            .set("isolation.level", "read_committed")
            .set("session.timeout.ms", "6000")
            .create()
            .expect("group consumer");
        consumer.subscribe(&["xctp-in"]).expect("subscribe");
        consumer
    };
    let committed_offsets = |consumer: &BaseConsumer| {
        common::group_committed_offsets(consumer, "xctp-in", 3, TXN_TIMEOUT)
    };
    let producer = transactional_producer(&cluster.bootstrap(1), &transactional_id);
    let end: BTreeMap<i32, i64> = (0..3).map(|p| (p, PER_PARTITION)).collect();
    let mut committed: BTreeMap<i32, i64> = BTreeMap::new();
    let mut consumer: Option<BaseConsumer> = None;
    let mut aborted_records = 0usize;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut round = 0usize;
    while committed != end {
        assert!(Instant::now() < deadline, "copy stuck at {committed:?}");
        let member_consumer = consumer.get_or_insert_with(member);
        let (batch_len, offsets) = common::transform_round(
            &producer,
            member_consumer,
            ("xctp-in", "xctp-out"),
            20,
            deadline,
            TXN_TIMEOUT,
        );
        if round == 1 {
            producer.abort_transaction(TXN_TIMEOUT).unwrap();
            aborted_records += batch_len;
            assert_eq!(
                committed_offsets(member_consumer),
                committed,
                "aborted round"
            );
            consumer = None;
        } else {
            producer.commit_transaction(TXN_TIMEOUT).unwrap();
            committed.extend(offsets);
            assert_eq!(
                committed_offsets(member_consumer),
                committed,
                "offsets committed by round {round}"
            );
        }
        round += 1;
    }
    assert!(aborted_records > 0);
    let expected: BTreeSet<String> = (0..3 * PER_PARTITION)
        .map(|i| format!("out-in-{i}"))
        .collect();
    assert_eq!(
        read_to_end(&cluster.bootstrap(2), "xctp-out", 3, "read_committed"),
        expected
    );
    let fresh: BaseConsumer = common::consumer_config(&cluster.bootstrap(2))
        .set("group.id", GROUP)
        .create()
        .unwrap();
    assert_eq!(committed_offsets(&fresh), end);
}

/// A transaction committed while a broker leading some of its partitions is down: EndTxn
/// answers once the decision (PrepareCommit) is durable, the coordinator keeps the
/// transaction prepared and retries the missing markers until the broker is back; the next
/// transaction waits for that (CONCURRENT_TRANSACTIONS, retried by the client).
#[test]
fn markers_for_a_dead_broker_are_retried_when_it_returns() {
    let mut cluster = Cluster::start_registered(3);
    let all: BTreeSet<i32> = [1, 2, 3].into();
    let topic = "xtxn-retry";
    let leaders = cluster.create_topic(0, 0, topic, 6);
    let transactional_id = "xtxn-retry-producer";
    let coordinator = coordinator_of(&cluster, 1, transactional_id);
    // Not the coordinator, and not node 1 (which the checks talk to).
    let victim = (2..=3).find(|id| *id != coordinator).unwrap();
    assert!(leaders.values().any(|leader| *leader == victim));
    let coordinator_index = (coordinator - 1) as usize;
    let victim_index = (victim - 1) as usize;

    let producer = transactional_producer(&cluster.bootstrap(coordinator_index), transactional_id);
    let first = tagged("first", 60);
    producer.begin_transaction().expect("begin_transaction");
    for (index, value) in first.iter().enumerate() {
        producer
            .send(
                BaseRecord::<(), str>::to(topic)
                    .partition(index as i32 % 6)
                    .payload(value),
            )
            .expect("enqueue");
    }
    producer.flush(TXN_TIMEOUT).expect("flush");
    cluster.nodes[victim_index].kill9();
    producer
        .commit_transaction(TXN_TIMEOUT)
        .expect("commit_transaction with a partition leader down");

    // Back once fenced (a node returning within its old session is refused registration).
    eventually(
        Duration::from_millis(SESSION_TIMEOUT_MS * 4),
        || metadata(&cluster.bootstrap(0), Some(topic)).0,
        |brokers| !brokers.contains(&victim),
    );
    cluster.nodes[victim_index].restart_nowait();
    cluster.nodes[victim_index].wait_listening();
    eventually(
        Duration::from_secs(30),
        || metadata(&cluster.bootstrap(0), Some(topic)),
        |(brokers, leaders_now)| brokers == &all && leaders_now == &leaders,
    );
    // read_committed ends at the last stable offset: the dead broker's partitions show the
    // transaction once the retry (every cleanup interval, 10 s) has written their markers.
    let committed: BTreeSet<String> = first.iter().cloned().collect();
    eventually(
        Duration::from_secs(40),
        || read_to_end(&cluster.bootstrap(0), topic, 6, "read_committed").len(),
        |seen| *seen == committed.len(),
    );
    assert_eq!(
        read_to_end(&cluster.bootstrap(0), topic, 6, "read_committed"),
        committed
    );

    let second = tagged("second", 60);
    transaction(&producer, topic, 6, &second, true);
    let committed: BTreeSet<String> = first.iter().chain(&second).cloned().collect();
    assert_eq!(
        read_to_end(&cluster.bootstrap(victim_index), topic, 6, "read_committed"),
        committed
    );
}

/// Partition → (leader, ISR) of `topic` as node `bootstrap` reports them.
fn replica_state(bootstrap: &str, topic: &str) -> BTreeMap<i32, (i32, Vec<i32>)> {
    assignment(bootstrap, topic)
        .into_iter()
        .map(|(partition, (leader, _, isr))| (partition, (leader, isr)))
        .collect()
}

/// Creates `topic` with one partition replicated on all three nodes and waits until it has a
/// leader and all three in its ISR: its [`replica_state`].
fn one_partition_on_every_node(cluster: &Cluster, topic: &str) -> BTreeMap<i32, (i32, Vec<i32>)> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(common::create_replicated_topic(
        &cluster.bootstrap(0),
        topic,
        1,
        3,
        &[],
    ));
    let full: Vec<i32> = vec![1, 2, 3];
    eventually(
        Duration::from_secs(20),
        || replica_state(&cluster.bootstrap(0), topic),
        |state| state.len() == 1 && state[&0].0 > 0 && state[&0].1 == full,
    )
}

/// Records which sends the brokers acknowledged.
struct Acknowledged(std::sync::Arc<std::sync::Mutex<Vec<(i32, String)>>>);

impl rdkafka::ClientContext for Acknowledged {}

impl rdkafka::producer::ProducerContext for Acknowledged {
    type DeliveryOpaque = ();
    fn delivery(
        &self,
        result: &rdkafka::message::DeliveryResult<'_>,
        _opaque: Self::DeliveryOpaque,
    ) {
        if let Ok(message) = result {
            let value = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
            self.0.lock().unwrap().push((message.partition(), value));
        }
    }
}

/// An acks=all producer thread sending "v-<n>" round-robin over `partitions` partitions of
/// `topic` until `stop`, recording each acknowledged (partition, value); returns the count sent.
fn spawn_producer(
    bootstrap: &str,
    topic: &'static str,
    partitions: usize,
    idempotent: bool,
    acknowledged: &std::sync::Arc<std::sync::Mutex<Vec<(i32, String)>>>,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    let (acknowledged, stop, bootstrap) =
        (acknowledged.clone(), stop.clone(), bootstrap.to_string());
    std::thread::spawn(move || {
        let producer: ThreadedProducer<Acknowledged> = common::producer_config(&bootstrap)
            .set(
                "enable.idempotence",
                if idempotent { "true" } else { "false" },
            )
            .set("message.timeout.ms", "60000")
            .set("retry.backoff.ms", "100")
            .create_with_context(Acknowledged(acknowledged))
            .expect("producer");
        let mut index = 0usize;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let value = format!("v-{index}");
            let record = BaseRecord::<(), str>::to(topic)
                .partition((index % partitions) as i32)
                .payload(&value);
            match producer.send(record) {
                Ok(()) => index += 1,
                Err(_) => {
                    producer.poll(Duration::from_millis(50));
                }
            }
            if index % 50 == 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        producer.flush(Duration::from_secs(60)).expect("flush");
        index
    })
}

/// Replication factor 3, min.insync.replicas 2, an idempotent acks=all producer: the leader
/// of a partition is killed with kill -9 while the producer runs. A new leader is elected
/// from the ISR, the producer carries on, and once the killed broker is back in every ISR,
/// every acknowledged record is read exactly once, in send order per partition, through
/// every node — including the one that was killed.
#[test]
fn replicated_topic_survives_the_kill_of_a_leader() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let mut cluster = Cluster::start_registered(3);
    let topic = "replicated";
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(common::create_replicated_topic(
        &cluster.bootstrap(0),
        topic,
        3,
        3,
        &[("min.insync.replicas", "2")],
    ));
    let full: Vec<i32> = vec![1, 2, 3];
    let state = eventually(
        Duration::from_secs(20),
        || replica_state(&cluster.bootstrap(0), topic),
        |state| state.len() == 3 && state.values().all(|(l, isr)| *l > 0 && *isr == full),
    );

    let bootstrap_all = cluster.bootstrap_all();
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let producing = spawn_producer(&bootstrap_all, topic, 3, true, &acknowledged, &stop);

    std::thread::sleep(Duration::from_secs(2));
    let victim = state[&0].0;
    let victim_index = (victim - 1) as usize;
    let survivor = if victim_index == 0 { 1 } else { 0 };
    cluster.nodes[victim_index].kill9();
    let after = eventually(
        Duration::from_millis(SESSION_TIMEOUT_MS * 5),
        || replica_state(&cluster.bootstrap(survivor), topic),
        |state| {
            state.len() == 3
                && state
                    .values()
                    .all(|(l, isr)| *l > 0 && *l != victim && !isr.contains(&victim))
        },
    );
    assert!(after.values().all(|(_, isr)| isr.len() == 2), "{after:?}");
    std::thread::sleep(Duration::from_secs(2));

    cluster.nodes[victim_index].restart_nowait();
    cluster.nodes[victim_index].wait_listening();
    eventually(
        Duration::from_secs(40),
        || replica_state(&cluster.bootstrap(survivor), topic),
        |state| state.len() == 3 && state.values().all(|(_, isr)| *isr == full),
    );
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let sent = producing.join().expect("producer thread");

    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 300,
        "only {} of {sent} acknowledged",
        acknowledged.len()
    );
    let mut expected: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for (partition, value) in &acknowledged {
        expected.entry(*partition).or_default().push(value.clone());
    }
    for index in 0..3 {
        let read = read_in_order(&cluster.bootstrap(index), topic, 3, "read_uncommitted");
        for (partition, values) in &read {
            let unique: BTreeSet<&String> = values.iter().collect();
            assert_eq!(
                unique.len(),
                values.len(),
                "duplicates in partition {partition} via node {}",
                index + 1
            );
            // Send order is index order within a partition.
            let numbers: Vec<usize> = values.iter().map(|v| v[2..].parse().unwrap()).collect();
            assert!(
                numbers.windows(2).all(|w| w[0] < w[1]),
                "partition {partition} out of order via node {}",
                index + 1
            );
        }
        for (partition, values) in &expected {
            let have: BTreeSet<&String> = read.get(partition).into_iter().flatten().collect();
            let lost: Vec<&String> = values.iter().filter(|v| !have.contains(v)).collect();
            assert!(
                lost.is_empty(),
                "acknowledged but lost in partition {partition} via node {}: {} of {}, e.g. {:?}",
                index + 1,
                lost.len(),
                values.len(),
                &lost[..lost.len().min(5)]
            );
        }
    }
}

/// Every partition of `topic` read from the beginning to its end through `bootstrap` at
/// `isolation`, values in offset order.
fn read_in_order(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    isolation: &str,
) -> BTreeMap<i32, Vec<String>> {
    use rdkafka::error::KafkaError;
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = common::consumer_config(bootstrap)
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
    let mut values: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut at_end = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while at_end.len() < partitions as usize {
        assert!(
            Instant::now() < deadline,
            "{topic} ({isolation}): only partitions {at_end:?} reached their end"
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(message)) => {
                at_end.remove(&message.partition());
                let value = String::from_utf8(message.payload().unwrap_or_default().to_vec());
                values
                    .entry(message.partition())
                    .or_default()
                    .push(value.unwrap());
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
            }
            Some(Err(error)) => panic!("consume {topic}: {error}"),
        }
    }
    values
}

/// SCRAM credentials and ACLs are metadata: made through any node (forwarded to the active
/// controller), seen by every node; with the StandardAuthorizer on, replication keeps working
/// once the brokers' principal (User:ANONYMOUS over PLAINTEXT) may CLUSTER_ACTION, and a DENY
/// made through one node is enforced by another.
#[test]
fn security_metadata_reaches_every_node_and_replication_keeps_working() {
    use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
    use kafka_protocol::messages::create_acls_request::AclCreation;
    use kafka_protocol::messages::{
        AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ApiKey,
        CreateAclsRequest, CreateAclsResponse, DescribeUserScramCredentialsRequest,
        DescribeUserScramCredentialsResponse,
    };
    use kafka_protocol::protocol::StrBytes;
    let cluster = Cluster::start_with(
        3,
        &[
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found=true",
        ],
    );
    cluster.wait_registered();
    let s = |text: &str| StrBytes::from_string(text.to_string());
    // A credential through node 2.
    let salt = b"sixteen-byte-slt".to_vec();
    let salted =
        pbkdf2::pbkdf2_hmac_array::<sha2::Sha256, 32>(b"alice-secret", &salt, 8192).to_vec();
    let mut node2 = raw::RawClient::connect(cluster.nodes[1].addr());
    let altered: AlterUserScramCredentialsResponse = node2.call(
        ApiKey::AlterUserScramCredentials,
        0,
        &AlterUserScramCredentialsRequest::default().with_upsertions(vec![
            ScramCredentialUpsertion::default()
                .with_name(s("alice"))
                .with_mechanism(1)
                .with_iterations(8192)
                .with_salt(salt.into())
                .with_salted_password(salted.into()),
        ]),
    );
    assert_eq!(altered.results[0].error_code, 0);
    // ACLs through node 3: the brokers may replicate; nobody may write topic "closed".
    let acl = |resource_type: i8, name: &str, operation: i8, permission: i8| {
        AclCreation::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_resource_pattern_type(3)
            .with_principal(s("User:ANONYMOUS"))
            .with_host(s("*"))
            .with_operation(operation)
            .with_permission_type(permission)
    };
    let mut node3 = raw::RawClient::connect(cluster.nodes[2].addr());
    let created: CreateAclsResponse = node3.call(
        ApiKey::CreateAcls,
        3,
        &CreateAclsRequest::default().with_creations(vec![
            acl(4, "kafka-cluster", 9, 3), // CLUSTER_ACTION on the cluster
            acl(4, "kafka-cluster", 7, 3), // ALTER (and so DESCRIBE) on the cluster
            acl(4, "kafka-cluster", 5, 3), // CREATE on the cluster
            acl(2, "closed", 4, 2),        // DENY WRITE on topic "closed"
            acl(2, "closed", 8, 3),        // DESCRIBE on it (any ACL ends "no ACL found")
        ]),
    );
    assert!(
        created.results.iter().all(|r| r.error_code == 0),
        "{created:?}"
    );
    // Every node describes the credential.
    for index in 0..3 {
        let mut client = raw::RawClient::connect(cluster.nodes[index].addr());
        eventually(
            Duration::from_secs(5),
            || {
                let described: DescribeUserScramCredentialsResponse = client.call(
                    ApiKey::DescribeUserScramCredentials,
                    0,
                    &DescribeUserScramCredentialsRequest::default().with_users(None),
                );
                described
                    .results
                    .iter()
                    .map(|r| (r.user.to_string(), r.credential_infos.len()))
                    .collect::<Vec<_>>()
            },
            |users| *users == vec![("alice".to_string(), 1)],
        );
    }
    // A topic replicated on all three nodes takes acks=all writes: followers fetch with
    // CLUSTER_ACTION.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(common::create_replicated_topic(
        &cluster.bootstrap(0),
        "open",
        3,
        3,
        &[],
    ));
    runtime.block_on(common::create_replicated_topic(
        &cluster.bootstrap(0),
        "closed",
        1,
        3,
        &[],
    ));
    produce_keyed(&cluster.bootstrap(1), "open", 3, 30, "acl");
    assert_eq!(consume_values(&cluster.bootstrap(2), "open", 30).len(), 30);
    // The DENY made through node 3 holds on node 1.
    let producer: rdkafka::producer::FutureProducer =
        common::producer_config(&cluster.bootstrap(0))
            .set("message.timeout.ms", "5000")
            .create()
            .unwrap();
    let delivered = runtime.block_on(
        producer.send(
            rdkafka::producer::FutureRecord::<(), str>::to("closed")
                .partition(0)
                .payload("v"),
            Duration::from_secs(10),
        ),
    );
    assert!(
        matches!(
            delivered,
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::error::RDKafkaErrorCode::TopicAuthorizationFailed
                ),
                _
            ))
        ),
        "{delivered:?}"
    );
}

#[test]
fn client_quotas_are_forwarded_to_the_controller_and_reach_every_node() {
    use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
    use kafka_protocol::messages::{
        AlterClientQuotasRequest, AlterClientQuotasResponse, ApiKey, DescribeClientQuotasRequest,
        DescribeClientQuotasResponse,
    };
    use kafka_protocol::protocol::StrBytes;
    let cluster = Cluster::start_registered(3);
    let s = |text: &str| StrBytes::from_string(text.to_string());
    // One quota through each node: at least two of them forward to the active controller.
    for index in 0..3 {
        let mut client = raw::RawClient::connect(cluster.nodes[index].addr());
        let user = format!("user-{index}");
        let altered: AlterClientQuotasResponse = client.call(
            ApiKey::AlterClientQuotas,
            1,
            &AlterClientQuotasRequest::default().with_entries(vec![EntryData::default()
                .with_entity(vec![EntityData::default()
                    .with_entity_type(s("user"))
                    .with_entity_name(Some(s(&user)))])
                .with_ops(vec![OpData::default()
                    .with_key(s("producer_byte_rate"))
                    .with_value(1024.0 * (index + 1) as f64)])]),
        );
        assert_eq!(
            altered.entries[0].error_code,
            0,
            "through node {}",
            index + 1
        );
    }
    // Every node describes the three.
    for index in 0..3 {
        let mut client = raw::RawClient::connect(cluster.nodes[index].addr());
        eventually(
            Duration::from_secs(10),
            || {
                let described: DescribeClientQuotasResponse = client.call(
                    ApiKey::DescribeClientQuotas,
                    1,
                    &DescribeClientQuotasRequest::default(),
                );
                let mut users: Vec<(String, f64)> = described
                    .entries
                    .unwrap_or_default()
                    .iter()
                    .map(|e| {
                        (
                            e.entity[0].entity_name.as_ref().unwrap().to_string(),
                            e.values[0].value,
                        )
                    })
                    .collect();
                users.sort_by(|a, b| a.0.cmp(&b.0));
                users
            },
            |users| {
                *users
                    == vec![
                        ("user-0".to_string(), 1024.0),
                        ("user-1".to_string(), 2048.0),
                        ("user-2".to_string(), 3072.0),
                    ]
            },
        );
    }
}

/// Partition → (leader, replicas in order, sorted ISR) of `topic` as node `bootstrap` reports
/// them.
fn assignment(bootstrap: &str, topic: &str) -> BTreeMap<i32, (i32, Vec<i32>, Vec<i32>)> {
    let consumer = common::consumer(bootstrap);
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), CLIENT_TIMEOUT) else {
        return BTreeMap::new();
    };
    metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| {
            t.partitions().iter().map(|p| {
                let mut isr = p.isr().to_vec();
                isr.sort_unstable();
                (p.id(), (p.leader(), p.replicas().to_vec(), isr))
            })
        })
        .collect()
}

/// The partitions ListPartitionReassignments reports as being reassigned, through `node`.
fn reassigning(node: std::net::SocketAddr) -> Vec<(String, i32, Vec<i32>, Vec<i32>)> {
    use kafka_protocol::messages::{
        ApiKey, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
    };
    let listed: ListPartitionReassignmentsResponse = raw::RawClient::connect(node).call(
        ApiKey::ListPartitionReassignments,
        0,
        &ListPartitionReassignmentsRequest::default().with_timeout_ms(10_000),
    );
    assert_eq!(listed.error_code, 0);
    let ids = |list: &[kafka_protocol::messages::BrokerId]| list.iter().map(|id| id.0).collect();
    listed
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.0.to_string(),
                    p.partition_index,
                    ids(&p.adding_replicas),
                    ids(&p.removing_replicas),
                )
            })
        })
        .collect()
}

/// Issue 15: replication factor 2 on brokers 1 and 2 of three, an acks=all producer running.
/// AlterPartitionReassignments (through broker 3, forwarded to the active controller) moves
/// partition 0 to [2,3] and partition 1 to [3,1]: the new replicas catch up as followers, the
/// reassignments complete (ListPartitionReassignments empties), Metadata shows the target
/// replicas on every node, the brokers that lost a replica delete its directory, and every
/// acknowledged record reads back from the new leaders. Partition 1 keeps leader 1 (it stays a
/// replica) although 3 is now its preferred replica: a preferred ElectLeaders moves it there.
/// Last, partition 1 moves off broker 1 while it is down: it deletes its copy when it starts.
#[test]
fn reassignment_moves_replicas_and_preferred_election_moves_leaders() {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use kafka_protocol::messages::{
        AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ApiKey, BrokerId,
        ElectLeadersRequest, ElectLeadersResponse, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    use rdkafka::admin::{NewTopic, TopicReplication};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let mut cluster = Cluster::start_registered(3);
    let topic = "moving";
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let before: &[&[i32]] = &[&[1, 2], &[1, 2]];
    runtime.block_on(async {
        let admin = common::admin(&cluster.bootstrap(0));
        let created = admin
            .create_topics(
                [&NewTopic::new(topic, 2, TopicReplication::Variable(before))],
                &common::admin_options(),
            )
            .await
            .expect("CreateTopics");
        assert!(created[0].is_ok(), "{created:?}");
    });
    eventually(
        Duration::from_secs(20),
        || assignment(&cluster.bootstrap(0), topic),
        |state| state.len() == 2 && state.values().all(|(l, _, isr)| *l > 0 && *isr == [1, 2]),
    );

    let bootstrap_all = cluster.bootstrap_all();
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let producing = spawn_producer(&bootstrap_all, topic, 2, false, &acknowledged, &stop);
    eventually(
        Duration::from_secs(30),
        || acknowledged.lock().unwrap().len(),
        |count| *count >= 200,
    );

    let s = |text: &str| StrBytes::from_string(text.to_string());
    let target = |partition: i32, replicas: &[i32]| {
        ReassignablePartition::default()
            .with_partition_index(partition)
            .with_replicas(Some(replicas.iter().map(|&id| BrokerId(id)).collect()))
    };
    let altered: AlterPartitionReassignmentsResponse =
        raw::RawClient::connect(cluster.nodes[2].addr()).call(
            ApiKey::AlterPartitionReassignments,
            0,
            &AlterPartitionReassignmentsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![ReassignableTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(vec![target(0, &[2, 3]), target(1, &[3, 1])])]),
        );
    assert_eq!(altered.error_code, 0, "{altered:?}");
    let codes: Vec<i16> = altered.responses[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(codes, vec![0, 0], "{altered:?}");

    eventually(
        Duration::from_secs(60),
        || reassigning(cluster.nodes[0].addr()),
        |ongoing| ongoing.is_empty(),
    );
    let expected: BTreeMap<i32, Vec<i32>> = [(0, vec![2, 3]), (1, vec![3, 1])].into();
    for index in 0..3 {
        eventually(
            Duration::from_secs(20),
            || assignment(&cluster.bootstrap(index), topic),
            |state| {
                state.len() == 2
                    && state.iter().all(|(p, (leader, replicas, isr))| {
                        let mut sorted = expected[p].clone();
                        sorted.sort_unstable();
                        *replicas == expected[p] && *isr == sorted && replicas.contains(leader)
                    })
            },
        );
    }
    // The brokers that lost a replica dropped its data; the new one holds it.
    let data_dirs: Vec<std::path::PathBuf> = cluster.nodes.iter().map(|n| n.data_dir()).collect();
    let dir = |node: usize, partition: i32| data_dirs[node].join(format!("{topic}-{partition}"));
    eventually(
        Duration::from_secs(20),
        || (dir(0, 0).exists(), dir(1, 1).exists()),
        |present| *present == (false, false),
    );
    assert!(dir(2, 0).exists() && dir(2, 1).exists());
    assert!(dir(1, 0).exists() && dir(0, 1).exists());

    // Partition 1 kept its leader, 1; its preferred replica is now 3.
    let moved = assignment(&cluster.bootstrap(0), topic);
    assert_eq!(moved[&1].0, 1, "{moved:?}");
    let elected: ElectLeadersResponse = raw::RawClient::connect(cluster.nodes[1].addr()).call(
        ApiKey::ElectLeaders,
        2,
        &ElectLeadersRequest::default()
            .with_election_type(0)
            .with_topic_partitions(None)
            .with_timeout_ms(10_000),
    );
    assert_eq!(elected.error_code, 0, "{elected:?}");
    // Every partition asked for: only those that needed an election are answered.
    let answered: Vec<(String, i32, i16)> = elected
        .replica_election_results
        .iter()
        .flat_map(|t| {
            t.partition_result
                .iter()
                .map(|p| (t.topic.0.to_string(), p.partition_id, p.error_code))
        })
        .filter(|(name, _, _)| name == topic)
        .collect();
    assert_eq!(answered, vec![(topic.to_string(), 1, 0)], "{elected:?}");
    eventually(
        Duration::from_secs(20),
        || assignment(&cluster.bootstrap(0), topic),
        |state| {
            state
                .values()
                .all(|(leader, replicas, _)| *leader == replicas[0])
        },
    );

    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let sent = producing.join().expect("producer thread");
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 200,
        "only {} of {sent} acknowledged",
        acknowledged.len()
    );
    let read = read_in_order(&cluster.bootstrap(0), topic, 2, "read_uncommitted");
    for partition in 0..2 {
        let have: BTreeSet<&String> = read.get(&partition).into_iter().flatten().collect();
        let lost: Vec<&String> = acknowledged
            .iter()
            .filter(|(p, value)| *p == partition && !have.contains(value))
            .map(|(_, value)| value)
            .collect();
        assert!(
            lost.is_empty(),
            "acknowledged but lost in partition {partition}: {} e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
    }

    // A replica moved away while its broker is down: the broker deletes the directory when it
    // starts and finds itself no longer a replica.
    cluster.nodes[0].kill9();
    // Node 1 may have been the active controller: retried until the quorum has a new one.
    eventually(
        Duration::from_secs(30),
        || {
            let altered: AlterPartitionReassignmentsResponse =
                raw::RawClient::connect(cluster.nodes[2].addr()).call(
                    ApiKey::AlterPartitionReassignments,
                    0,
                    &AlterPartitionReassignmentsRequest::default()
                        .with_timeout_ms(10_000)
                        .with_topics(vec![ReassignableTopic::default()
                            .with_name(TopicName(s(topic)))
                            .with_partitions(vec![target(1, &[3, 2])])]),
                );
            (
                altered.error_code,
                altered
                    .responses
                    .first()
                    .map(|t| t.partitions[0].error_code),
            )
        },
        |codes| *codes == (0, Some(0)),
    );
    eventually(
        Duration::from_secs(60),
        || assignment(&cluster.bootstrap(2), topic),
        |state| {
            state
                .get(&1)
                .is_some_and(|(_, replicas, _)| *replicas == [3, 2])
        },
    );
    assert!(
        dir(0, 1).exists(),
        "node 1 was down: its copy is still there"
    );
    cluster.nodes[0].restart_nowait();
    cluster.nodes[0].wait_listening();
    eventually(
        Duration::from_secs(30),
        || dir(0, 1).exists(),
        |present| !*present,
    );
    assert!(dir(1, 1).exists() && dir(2, 1).exists());
}

/// `flush.messages=1` on a replicated topic: the leaders' fsyncs go through group commit, the
/// followers fetch on only once their copies are flushed, and acks=all producers are answered
/// once the high watermark (durable on every in-sync replica) passed their records.
#[test]
fn flush_every_message_replicates_through_group_commit() {
    let cluster = Cluster::start_registered(3);
    let topic = "durable-replicated";
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(common::create_replicated_topic(
        &cluster.bootstrap(0),
        topic,
        3,
        3,
        &[("flush.messages", "1"), ("min.insync.replicas", "2")],
    ));
    eventually(
        Duration::from_secs(20),
        || replica_state(&cluster.bootstrap(1), topic),
        |state| state.len() == 3 && state.values().all(|(_, isr)| isr.len() == 3),
    );
    produce_keyed(&cluster.bootstrap(0), topic, 3, 300, "d");
    let values = consume_values(&cluster.bootstrap(2), topic, 300);
    let expected: BTreeSet<String> = (0..300).map(|i| format!("d-{i}")).collect();
    assert_eq!(values, expected);
}

/// IncrementalAlterConfigs SET of `configs` on one resource (2 = topic, 4 = broker), through
/// `node`; the resource's error code.
fn set_configs(
    node: std::net::SocketAddr,
    resource_type: i8,
    resource_name: &str,
    configs: &[(&str, &str)],
) -> i16 {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    use kafka_protocol::messages::{
        ApiKey, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    };
    use kafka_protocol::protocol::StrBytes;
    let s = |text: &str| StrBytes::from_string(text.to_string());
    let altered: IncrementalAlterConfigsResponse = raw::RawClient::connect(node).call(
        ApiKey::IncrementalAlterConfigs,
        1,
        &IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(s(resource_name))
                .with_configs(
                    configs
                        .iter()
                        .map(|(name, value)| {
                            AlterableConfig::default()
                                .with_name(s(name))
                                .with_config_operation(0)
                                .with_value(Some(s(value)))
                        })
                        .collect(),
                ),
        ]),
    );
    altered.responses[0].error_code
}

/// Issue 15, replication throttles (KIP-73): partition 0 of a topic holding ~3 MB on broker 1
/// is reassigned to [1, 3] with 200 KB/s throttles on both sides (broker 1's leader rate and
/// broker 3's follower rate, the topic's throttled replicas naming them), while a producer
/// keeps writing to another topic led by broker 1. The move completes, and takes at least
/// the time the rate implies: all but the first fetch's worth (1 MiB, fetched before any
/// byte was counted) at 200 KB/s. A throttled-replicas list that is not `partition:broker`
/// pairs is refused with INVALID_CONFIG.
#[test]
fn throttled_reassignment_is_held_to_the_replication_rate() {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use kafka_protocol::messages::{
        AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ApiKey, BrokerId,
        TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    use rdkafka::admin::{NewTopic, TopicReplication};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    const RATE_BYTES_PER_SECOND: u64 = 200_000;
    const RECORDS: usize = 3000;
    const RECORD_BYTES: usize = 1000;
    const FIRST_FETCH_BYTES_MAX: u64 = 1024 * 1024;
    const TOPIC_CONFIG: i8 = 2;
    const BROKER_CONFIG: i8 = 4;

    let cluster = Cluster::start_registered(3);
    let (topic, steady) = ("throttled", "steady");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let admin = common::admin(&cluster.bootstrap(0));
        let on_broker_1: &[&[i32]] = &[&[1]];
        let created = admin
            .create_topics(
                [
                    &NewTopic::new(topic, 1, TopicReplication::Variable(on_broker_1)),
                    &NewTopic::new(steady, 1, TopicReplication::Variable(on_broker_1)),
                ],
                &common::admin_options(),
            )
            .await
            .expect("CreateTopics");
        assert!(created.iter().all(|r| r.is_ok()), "{created:?}");
    });
    for name in [topic, steady] {
        eventually(
            Duration::from_secs(20),
            || assignment(&cluster.bootstrap(0), name),
            |state| state.get(&0).is_some_and(|(leader, _, _)| *leader == 1),
        );
    }
    let producer: ThreadedProducer<DefaultProducerContext> =
        common::producer_config(&cluster.bootstrap(0))
            .set("compression.type", "none")
            .create()
            .expect("producer");
    for index in 0..RECORDS {
        let value = common::random_bytes(index as u64, RECORD_BYTES);
        while let Err((error, _)) = producer.send(
            BaseRecord::<(), [u8]>::to(topic)
                .partition(0)
                .payload(&value),
        ) {
            assert!(format!("{error}").contains("Queue full"), "{error}");
            producer.poll(Duration::from_millis(50));
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    let log_bytes: u64 = common::segment_logs(&cluster.nodes[0].data_dir(), topic, 0)
        .iter()
        .map(|log| std::fs::metadata(log).unwrap().len())
        .sum();
    assert!(log_bytes >= (RECORDS * RECORD_BYTES) as u64, "{log_bytes}");

    let node = cluster.nodes[1].addr();
    let rate = RATE_BYTES_PER_SECOND.to_string();
    assert_eq!(
        set_configs(
            node,
            TOPIC_CONFIG,
            topic,
            &[("leader.replication.throttled.replicas", "0-1")]
        ),
        kafka_protocol::ResponseError::InvalidConfig.code(),
        "a list that is not partition:broker pairs"
    );
    type Throttle<'a> = (i8, &'a str, &'a [(&'a str, &'a str)]);
    let throttles: [Throttle; 3] = [
        (
            BROKER_CONFIG,
            "1",
            &[("leader.replication.throttled.rate", &rate)],
        ),
        (
            BROKER_CONFIG,
            "3",
            &[("follower.replication.throttled.rate", &rate)],
        ),
        (
            TOPIC_CONFIG,
            topic,
            &[
                ("leader.replication.throttled.replicas", "0:1"),
                ("follower.replication.throttled.replicas", "0:3"),
            ],
        ),
    ];
    for (resource_type, name, configs) in throttles {
        assert_eq!(set_configs(node, resource_type, name, configs), 0, "{name}");
    }

    let bootstrap_all = cluster.bootstrap_all();
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let producing = spawn_producer(&bootstrap_all, steady, 1, false, &acknowledged, &stop);
    eventually(
        Duration::from_secs(30),
        || acknowledged.lock().unwrap().len(),
        |count| *count >= 100,
    );
    // The metadata carrying the throttles reached broker 3 (its fetcher reads them).
    std::thread::sleep(Duration::from_millis(500));

    let started = Instant::now();
    let altered: AlterPartitionReassignmentsResponse = raw::RawClient::connect(node).call(
        ApiKey::AlterPartitionReassignments,
        0,
        &AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![ReassignableTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![ReassignablePartition::default()
                    .with_partition_index(0)
                    .with_replicas(Some(vec![BrokerId(1), BrokerId(3)]))])]),
    );
    assert_eq!(altered.error_code, 0, "{altered:?}");
    assert_eq!(
        altered.responses[0].partitions[0].error_code, 0,
        "{altered:?}"
    );
    let acknowledged_at_start = acknowledged.lock().unwrap().len();
    eventually(
        Duration::from_secs(120),
        || reassigning(cluster.nodes[0].addr()),
        |ongoing| ongoing.is_empty(),
    );
    let elapsed = started.elapsed();
    let acknowledged_during_move = acknowledged.lock().unwrap().len() - acknowledged_at_start;
    stop.store(true, Ordering::Relaxed);
    producing.join().expect("producer thread");

    // The controller completed the move; node 1's image follows.
    eventually(
        Duration::from_secs(10),
        || assignment(&cluster.bootstrap(0), topic),
        |state| state.get(&0).is_some_and(|(_, _, isr)| *isr == [1, 3]),
    );
    let implied = Duration::from_secs_f64(
        log_bytes.saturating_sub(FIRST_FETCH_BYTES_MAX) as f64 / RATE_BYTES_PER_SECOND as f64,
    );
    eprintln!(
        "moved {log_bytes} bytes at {RATE_BYTES_PER_SECOND} B/s in {elapsed:?} (the rate implies \
         at least {implied:?}); {acknowledged_during_move} records acknowledged meanwhile"
    );
    assert!(
        elapsed >= implied,
        "moved {log_bytes} bytes in {elapsed:?}: faster than {RATE_BYTES_PER_SECOND} B/s allows"
    );
    assert!(
        acknowledged_during_move >= 100,
        "clients were starved: {acknowledged_during_move} records acknowledged during the move"
    );
}

/// Issue 15, automatic leader balancing (`auto.leader.rebalance.enable`, on by default, here
/// checked every second): three partitions preferring brokers 1, 2 and 3; broker 1 is killed
/// and its partition's leadership moves away; once it is back in the ISR, the active
/// controller moves that leadership back to it without any ElectLeaders request. With the
/// balancing off, leadership stays where the failover left it.
#[test]
fn leaders_move_back_to_their_preferred_replicas_by_themselves() {
    for enabled in [true, false] {
        let mut cluster = Cluster::start_with(
            3,
            &[
                "leader.imbalance.check.interval.seconds=1",
                &format!("auto.leader.rebalance.enable={enabled}"),
            ],
        );
        let topic = "balanced";
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let preferred: &[&[i32]] = &[&[1, 2, 3], &[2, 3, 1], &[3, 1, 2]];
        eventually(
            Duration::from_secs(30),
            || {
                runtime.block_on(async {
                    let admin = common::admin(&cluster.bootstrap(1));
                    admin
                        .create_topics(
                            [&rdkafka::admin::NewTopic::new(
                                topic,
                                3,
                                rdkafka::admin::TopicReplication::Variable(preferred),
                            )],
                            &common::admin_options(),
                        )
                        .await
                        .map(|results| format!("{results:?}"))
                        .unwrap_or_else(|error| format!("{error}"))
                })
            },
            |outcome| outcome.contains("Ok(") || outcome.contains("AlreadyExists"),
        );
        let full = vec![1, 2, 3];
        let balanced = |state: &BTreeMap<i32, (i32, Vec<i32>, Vec<i32>)>| {
            state.len() == 3
                && state
                    .values()
                    .all(|(leader, replicas, isr)| *leader == replicas[0] && *isr == full)
        };
        eventually(
            Duration::from_secs(30),
            || assignment(&cluster.bootstrap(1), topic),
            balanced,
        );
        cluster.nodes[0].kill9();
        eventually(
            Duration::from_secs(30),
            || assignment(&cluster.bootstrap(1), topic),
            |state| state.get(&0).is_some_and(|(leader, _, _)| *leader == 2),
        );
        cluster.nodes[0].restart_nowait();
        cluster.nodes[0].wait_listening();
        if enabled {
            eventually(
                Duration::from_secs(60),
                || assignment(&cluster.bootstrap(1), topic),
                balanced,
            );
        } else {
            let state = eventually(
                Duration::from_secs(60),
                || assignment(&cluster.bootstrap(1), topic),
                |state| state.get(&0).is_some_and(|(_, _, isr)| *isr == full),
            );
            // Several balancing intervals later, leadership is still on broker 2.
            std::thread::sleep(Duration::from_secs(3));
            let later = assignment(&cluster.bootstrap(1), topic);
            assert_eq!(later[&0].0, 2, "before {state:?}, after {later:?}");
        }
    }
}

/// Transactions v2 across brokers: the partition leaders (every broker) add their partitions
/// to a transaction another broker coordinates (AddPartitionsToTxn v5 on a transactions-v2
/// Produce v12), and the group coordinator adds the offsets partition on TxnOffsetCommit v5
/// (no AddOffsetsToTxn); EndTxn v5 bumps the epoch and the markers reach every partition.
/// read_committed through every node sees exactly the committed transaction, and the group's
/// offset is the committed one.
#[test]
fn transactions_v2_add_partitions_on_remote_coordinators() {
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{
        ApiKey, TopicName, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
    };
    use kafka_protocol::protocol::StrBytes;
    const GROUP: &str = "xtv2-group";
    let cluster = Cluster::start_registered(3);
    let topic = "xtv2";
    let leaders = cluster.create_topic(0, 1, topic, 6);
    let leading: BTreeSet<i32> = leaders.values().copied().collect();
    assert_eq!(
        leading,
        [1, 2, 3].into(),
        "leaders on every broker: {leaders:?}"
    );
    let group_coordinator = coordinator_of(&cluster, 0, GROUP);
    let transactional_id = (0..100)
        .map(|n| format!("xtv2-{n}"))
        .find(|id| coordinator_of(&cluster, 1, id) != group_coordinator)
        .expect("a transactional id coordinated by another broker than the group");
    let coordinator = coordinator_of(&cluster, 1, &transactional_id);
    let node = |id: i32| cluster.nodes[(id - 1) as usize].addr();
    let id = || StrBytes::from_string(transactional_id.clone()).into();

    let mut to_coordinator = raw::RawClient::connect(node(coordinator));
    let (producer_id, epoch) = raw::init_transactional(&mut to_coordinator, &transactional_id);
    // One transaction per epoch: committed, then aborted, each writing every partition
    // through its leader (the coordinator learns of them from the leaders only).
    let mut committed = BTreeSet::new();
    for (round, commit) in [(0i16, true), (1, false)] {
        let epoch = epoch + round;
        for (partition, leader) in &leaders {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            let value = |s: i32| format!("e{epoch}-p{partition}-s{s}");
            let batch = dlog::record::builder::BatchBuilder::new(now)
                .producer(producer_id, epoch, 0)
                .transactional()
                .record(None, Some(value(0).as_bytes()), now)
                .record(None, Some(value(1).as_bytes()), now)
                .build();
            let mut client = raw::RawClient::connect(node(*leader));
            let produced =
                client.produce_version(12, Some(&transactional_id), topic, *partition, &batch);
            assert_eq!(
                produced.0, 0,
                "produce to {topic}-{partition} on broker {leader}"
            );
            if commit {
                committed.extend((0..2).map(value));
            }
        }
        if commit {
            // The group coordinator adds __consumer_offsets to the transaction itself.
            let mut to_group = raw::RawClient::connect(node(group_coordinator));
            let offsets: TxnOffsetCommitResponse = to_group.call(
                ApiKey::TxnOffsetCommit,
                5,
                &TxnOffsetCommitRequest::default()
                    .with_transactional_id(id())
                    .with_group_id(StrBytes::from_static_str(GROUP).into())
                    .with_producer_id(producer_id.into())
                    .with_producer_epoch(epoch)
                    .with_generation_id(-1)
                    .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_static_str(topic)))
                        .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(42)
                            .with_committed_leader_epoch(-1)])]),
            );
            assert_eq!(offsets.topics[0].partitions[0].error_code, 0);
        }
        assert_eq!(
            raw::end_txn_v5(
                &mut to_coordinator,
                &transactional_id,
                (producer_id, epoch),
                commit
            ),
            (0, producer_id, epoch + 1),
            "EndTxn(commit={commit}) bumps the epoch"
        );
    }
    for index in 0..3 {
        let seen = read_to_end(&cluster.bootstrap(index), topic, 6, "read_committed");
        assert_eq!(seen, committed, "read_committed through node {}", index + 1);
    }
    assert_eq!(
        read_to_end(&cluster.bootstrap(0), topic, 6, "read_uncommitted").len(),
        24
    );
    let fresh: BaseConsumer = common::consumer_config(&cluster.bootstrap(2))
        .set("group.id", GROUP)
        .create()
        .unwrap();
    let offsets = eventually(
        Duration::from_secs(15),
        || common::group_committed_offsets(&fresh, topic, 1, TXN_TIMEOUT),
        |offsets| offsets.get(&0) == Some(&42),
    );
    assert_eq!(offsets.get(&0), Some(&42));
}

/// One raw consumer Fetch (no session, no wait, READ_UNCOMMITTED) of partition 0 of `topic`
/// from `offset`, as a client in `rack` would send it: the partition's answer.
fn fetch_as_consumer(
    node: std::net::SocketAddr,
    version: i16,
    topic: &str,
    offset: i64,
    rack: &str,
) -> kafka_protocol::messages::fetch_response::PartitionData {
    fetch_as_consumer_isolated(node, version, topic, offset, rack, 0)
}

/// [`fetch_as_consumer`] with an isolation level (1: READ_COMMITTED).
fn fetch_as_consumer_isolated(
    node: std::net::SocketAddr,
    version: i16,
    topic: &str,
    offset: i64,
    rack: &str,
    isolation_level: i8,
) -> kafka_protocol::messages::fetch_response::PartitionData {
    use kafka_protocol::messages::{ApiKey, FetchResponse};
    use kafka_protocol::protocol::StrBytes;
    let request = raw::consumer_fetch(topic, 0, offset)
        .with_isolation_level(isolation_level)
        .with_rack_id(StrBytes::from_string(rack.to_string()));
    let mut client = raw::RawClient::connect(node);
    let response: FetchResponse = client.call(ApiKey::Fetch, version, &request);
    assert_eq!(response.error_code, 0);
    response.responses[0].partitions[0].clone()
}

/// The offsets the record batches of a fetch answer hold: (first, last + 1); (-1, -1) for none.
fn batch_offsets(records: &[u8]) -> (i64, i64) {
    const HEADER_BYTES: usize = 61;
    let (mut first, mut end) = (-1, -1);
    let mut position = 0;
    while position + HEADER_BYTES <= records.len() {
        let batch = &records[position..];
        let base_offset = i64::from_be_bytes(batch[0..8].try_into().unwrap());
        let length = i32::from_be_bytes(batch[8..12].try_into().unwrap()) as usize;
        let last_offset_delta = i32::from_be_bytes(batch[23..27].try_into().unwrap());
        if first < 0 {
            first = base_offset;
        }
        end = base_offset + i64::from(last_offset_delta) + 1;
        position += 12 + length;
    }
    (first, end)
}

/// KIP-392: with Kafka's RackAwareReplicaSelector, the leader sends a consumer of another
/// rack to the in-sync replica of its rack (preferred_read_replica, no records); that
/// follower answers records up to its high watermark, an offset beyond its log with
/// OFFSET_OUT_OF_RANGE, and a Fetch older than v11 (no client metadata) with
/// NOT_LEADER_OR_FOLLOWER. A consumer of the leader's rack, or of a rack with no replica,
/// reads from the leader.
#[test]
fn rack_aware_selector_sends_consumers_to_the_follower_of_their_rack() {
    const RECORDS: usize = 200;
    let cluster = Cluster::start_each(3, |index| {
        vec![
            format!("broker.rack=rack-{}", index + 1),
            "replica.selector.class=org.apache.kafka.common.replica.RackAwareReplicaSelector"
                .to_string(),
        ]
    });
    cluster.wait_registered();
    let topic = "closest";
    let state = one_partition_on_every_node(&cluster, topic);
    produce_keyed(&cluster.bootstrap_all(), topic, 1, RECORDS, "near");
    let leader = state[&0].0;
    let follower = if leader == 1 { 2 } else { 1 };
    let leader_addr = cluster.nodes[(leader - 1) as usize].addr();
    let follower_addr = cluster.nodes[(follower - 1) as usize].addr();
    let rack_of = |id: i32| format!("rack-{id}");

    // The follower's copy is complete and it knows the high watermark (it learns it from
    // its next fetch answer); the leader has seen the follower's log end.
    let answer = eventually(
        Duration::from_secs(10),
        || fetch_as_consumer(follower_addr, 12, topic, 0, &rack_of(follower)),
        |answer| answer.high_watermark == RECORDS as i64,
    );
    assert_eq!(answer.error_code, 0);
    assert_eq!(answer.preferred_read_replica, -1);
    assert_eq!(
        batch_offsets(answer.records.as_deref().unwrap_or_default()),
        (0, RECORDS as i64),
        "the follower serves every record below its high watermark"
    );

    // The leader sends the follower's rack to the follower, with no records.
    let redirect = fetch_as_consumer(leader_addr, 12, topic, 0, &rack_of(follower));
    assert_eq!(redirect.error_code, 0);
    assert_eq!(redirect.preferred_read_replica, follower);
    assert_eq!(redirect.high_watermark, RECORDS as i64);
    assert!(redirect.records.as_ref().is_none_or(|r| r.is_empty()));
    // Also for an offset in the middle and at the log end (the follower holds them).
    let redirect = fetch_as_consumer(leader_addr, 12, topic, RECORDS as i64, &rack_of(follower));
    assert_eq!(redirect.preferred_read_replica, follower);

    // The leader's own rack, a rack with no replica, no rack, and a Fetch before v11 (no
    // client metadata): the leader serves the records itself.
    for (version, rack) in [
        (12, rack_of(leader)),
        (12, "rack-elsewhere".to_string()),
        (12, String::new()),
        (10, rack_of(follower)),
    ] {
        let answer = fetch_as_consumer(leader_addr, version, topic, 0, &rack);
        assert_eq!(answer.error_code, 0, "v{version} rack {rack:?}");
        assert_eq!(
            answer.preferred_read_replica, -1,
            "v{version} rack {rack:?}"
        );
        assert_eq!(
            batch_offsets(answer.records.as_deref().unwrap_or_default()),
            (0, RECORDS as i64),
            "v{version} rack {rack:?}"
        );
    }

    // An offset beyond the follower's log: OFFSET_OUT_OF_RANGE (the client goes back to the
    // leader); a consumer without client metadata (v10) may not read from a follower.
    let beyond = fetch_as_consumer(follower_addr, 12, topic, RECORDS as i64 + 10, "");
    assert_eq!(beyond.error_code, 1, "OFFSET_OUT_OF_RANGE");
    let old = fetch_as_consumer(follower_addr, 10, topic, 0, &rack_of(follower));
    assert_eq!(old.error_code, 6, "NOT_LEADER_OR_FOLLOWER");

    // READ_COMMITTED on the follower stops at its last stable offset: the records of an open
    // transaction are held back (READ_UNCOMMITTED reads them up to the high watermark) until
    // its commit marker is replicated.
    const OPEN: i64 = 10;
    let committed_end = RECORDS as i64;
    let producer = transactional_producer(&cluster.bootstrap_all(), "closest-txn");
    producer.begin_transaction().expect("begin_transaction");
    for index in 0..OPEN {
        let value = format!("open-{index}");
        producer
            .send(
                BaseRecord::<(), str>::to(topic)
                    .partition(0)
                    .payload(&value),
            )
            .expect("enqueue");
    }
    producer.flush(TXN_TIMEOUT).expect("flush");
    let rack = rack_of(follower);
    let uncommitted = eventually(
        Duration::from_secs(10),
        || fetch_as_consumer(follower_addr, 12, topic, 0, &rack),
        |answer| answer.high_watermark == committed_end + OPEN,
    );
    assert_eq!(
        batch_offsets(uncommitted.records.as_deref().unwrap_or_default()).1,
        committed_end + OPEN
    );
    let held = fetch_as_consumer_isolated(follower_addr, 12, topic, 0, &rack, 1);
    assert_eq!(held.error_code, 0);
    assert_eq!(held.last_stable_offset, committed_end);
    assert_eq!(
        batch_offsets(held.records.as_deref().unwrap_or_default()),
        (0, committed_end),
        "READ_COMMITTED on the follower stops at the open transaction"
    );
    producer
        .commit_transaction(TXN_TIMEOUT)
        .expect("commit_transaction");
    // The records and the commit marker.
    let end = committed_end + OPEN + 1;
    let released = eventually(
        Duration::from_secs(10),
        || fetch_as_consumer_isolated(follower_addr, 12, topic, 0, &rack, 1),
        |answer| answer.last_stable_offset == end,
    );
    assert_eq!(
        batch_offsets(released.records.as_deref().unwrap_or_default()),
        (0, end)
    );
    assert_eq!(
        released.aborted_transactions.as_ref().map(Vec::len),
        Some(0)
    );
}

/// `replica.selector.class` takes only the class Kafka ships: anything else stops the start
/// with a message naming it.
#[test]
fn an_unknown_replica_selector_class_is_refused_at_start() {
    let mut broker = Broker::spawn_with_args(
        free_port(),
        vec![
            "--set".to_string(),
            "replica.selector.class=com.example.NearestSelector".to_string(),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while broker.is_running() {
        assert!(Instant::now() < deadline, "the broker kept running");
        std::thread::sleep(Duration::from_millis(100));
    }
    let stderr = broker.stderr_tail(20);
    assert!(
        stderr.contains("replica.selector.class=com.example.NearestSelector is not supported"),
        "{stderr}"
    );
}

/// A transaction marker is answered for once it is on the in-sync replicas, as Kafka appends
/// markers with acks=all: WriteTxnMarkers to a leader whose followers are paused (still in the
/// ISR) gets REQUEST_TIMED_OUT, not success for a marker only the leader holds — the marker a
/// failover loses, after which the producer's next marker decides the aborted records too
/// (chaos soak seed 5411: an aborted transaction read committed after its leader's kill -9).
/// Once the followers are back, the coordinator's retry is answered.
#[test]
fn transaction_markers_wait_for_the_isr() {
    let cluster = Cluster::start_with(3, &["replica.lag.time.max.ms=60000"]);
    cluster.wait_registered();
    let topic = "markers-isr";
    let state = one_partition_on_every_node(&cluster, topic);
    let leader = state[&0].0;
    let followers: Vec<usize> = (0..3).filter(|i| *i as i32 + 1 != leader).collect();
    let mut client = raw::RawClient::connect(cluster.nodes[(leader - 1) as usize].addr());
    let mut marker_error = || raw::write_marker(&mut client, topic, 4242, 0, 0, false);
    // With every replica running, answered (once the leader has taken up the partition).
    eventually(Duration::from_secs(20), &mut marker_error, |error| {
        *error == 0
    });

    for &index in &followers {
        cluster.nodes[index].pause(true);
    }
    let unreplicated = marker_error();
    for &index in &followers {
        cluster.nodes[index].pause(false);
    }
    assert_eq!(
        unreplicated,
        kafka_protocol::ResponseError::RequestTimedOut.code(),
        "a marker on the leader only"
    );
    eventually(Duration::from_secs(20), &mut marker_error, |error| {
        *error == 0
    });
}
