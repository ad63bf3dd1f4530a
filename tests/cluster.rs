//! A three-node cluster on loopback, with real clients: every node lists every broker,
//! partitions spread their leaders over the brokers, librdkafka produces and consumes across
//! them from any bootstrap node, and a broker that dies is fenced (its partitions lose their
//! leader) and serves its data again when it returns.

mod common;

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
                Broker::spawn_with_args(*port, args)
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
    let mut cluster = Cluster::start(3);
    let all: BTreeSet<i32> = [1, 2, 3].into();
    for index in 0..3 {
        let bootstrap = cluster.bootstrap(index);
        eventually(
            Duration::from_secs(20),
            || metadata(&bootstrap, None).0,
            |b| *b == all,
        );
    }

    // Created through node 3, visible from node 1 with leaders on every broker.
    let topic = "spread";
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(common::create_topic(&cluster.bootstrap(2), topic, 6, &[]));
    let (_, leaders) = eventually(
        Duration::from_secs(5),
        || metadata(&cluster.bootstrap(0), Some(topic)),
        |(_, leaders)| leaders.len() == 6,
    );
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
