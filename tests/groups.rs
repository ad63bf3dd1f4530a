//! Consumer groups against a real `dlog` process: librdkafka group consumers with each
//! assignor, membership changes, session expiry, 100 raw-protocol members joining at once,
//! committed offsets across kill -9, static membership, and malformed group requests.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::*;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as OwnedTopic;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::consumer_protocol_subscription::ConsumerProtocolSubscription;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse,
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, ConsumerProtocolAssignment,
    DescribeGroupsRequest, DescribeGroupsResponse, GroupId, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, RequestHeader, ResponseHeader, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::ResponseError;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// Broker settings for group tests: a short initial delay keeps rebalances quick.
const FAST_GROUPS: &[&str] = &["group.initial.rebalance.delay.ms=300"];
const GROUP_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// librdkafka group consumers

/// Counts rebalance callbacks (to prove a static member's restart caused none elsewhere).
#[derive(Default, Clone)]
struct CountingContext {
    rebalances: Arc<AtomicUsize>,
}

impl ClientContext for CountingContext {}
impl ConsumerContext for CountingContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if !matches!(rebalance, Rebalance::Error(_)) {
            self.rebalances.fetch_add(1, Ordering::SeqCst);
        }
    }
}

type GroupConsumer = BaseConsumer<CountingContext>;

fn group_consumer(
    bootstrap: &str,
    group: &str,
    extra: &[(&str, &str)],
    context: CountingContext,
) -> GroupConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100")
        .set("socket.timeout.ms", "15000");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config
        .create_with_context(context)
        .expect("create group consumer")
}

fn assigned(consumer: &GroupConsumer) -> BTreeSet<(String, i32)> {
    consumer
        .assignment()
        .expect("assignment")
        .elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

/// Polls every consumer until `done` holds for their assignments (bounded).
fn poll_until(
    consumers: &[&GroupConsumer],
    what: &str,
    done: impl Fn(&[BTreeSet<(String, i32)>]) -> bool,
) -> Vec<BTreeSet<(String, i32)>> {
    let deadline = Instant::now() + GROUP_TIMEOUT;
    loop {
        for consumer in consumers {
            if let Some(Err(error)) = consumer.poll(Duration::from_millis(50)) {
                eprintln!("poll: {error}");
            }
        }
        let assignments: Vec<_> = consumers.iter().map(|c| assigned(c)).collect();
        if done(&assignments) {
            return assignments;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: gave up; assignments {assignments:?}"
        );
    }
}

fn covers_exactly_once(
    assignments: &[BTreeSet<(String, i32)>],
    topic: &str,
    partitions: i32,
) -> bool {
    let mut owners: BTreeMap<i32, usize> = BTreeMap::new();
    for assignment in assignments {
        for (t, p) in assignment {
            if t == topic {
                *owners.entry(*p).or_default() += 1;
            }
        }
    }
    owners.len() == partitions as usize && owners.values().all(|count| *count == 1)
}

async fn spread_and_shrink(assignor: &str) {
    let broker = Broker::start_with(FAST_GROUPS);
    let bootstrap = broker.bootstrap();
    let topic = format!("spread-{assignor}");
    create_topic(&bootstrap, &topic, 6, &[]).await;
    let group = format!("group-{assignor}");
    let extra = [("partition.assignment.strategy", assignor)];
    let a = group_consumer(&bootstrap, &group, &extra, CountingContext::default());
    let b = group_consumer(&bootstrap, &group, &extra, CountingContext::default());
    let c = group_consumer(&bootstrap, &group, &extra, CountingContext::default());
    for consumer in [&a, &b, &c] {
        consumer.subscribe(&[&topic]).expect("subscribe");
    }
    let spread = poll_until(
        &[&a, &b, &c],
        "3 members over 6 partitions",
        |assignments| {
            assignments.iter().all(|a| a.len() == 2) && covers_exactly_once(assignments, &topic, 6)
        },
    );
    assert_eq!(
        spread.iter().map(BTreeSet::len).collect::<Vec<_>>(),
        [2, 2, 2]
    );
    // One member leaves (close sends LeaveGroup): the other two take over every partition.
    drop(c);
    let shrunk = poll_until(&[&a, &b], "2 members after one left", |assignments| {
        covers_exactly_once(assignments, &topic, 6) && assignments.iter().all(|a| a.len() == 3)
    });
    assert_eq!(shrunk.iter().map(BTreeSet::len).sum::<usize>(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_assignor_spreads_and_rebalances() {
    spread_and_shrink("range").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roundrobin_assignor_spreads_and_rebalances() {
    spread_and_shrink("roundrobin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_assignor_spreads_and_rebalances() {
    spread_and_shrink("cooperative-sticky").await;
}

async fn produce_numbered(bootstrap: &str, topic: &str, count: usize) {
    let producer: FutureProducer = producer_config(bootstrap).create().expect("producer");
    for index in 0..count {
        let value = index.to_string();
        producer
            .send(
                FutureRecord::<(), _>::to(topic)
                    .partition(0)
                    .payload(&value),
                Duration::from_secs(20),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
    }
}

/// Consumes `count` records of partition 0 through the group; returns their values.
fn consume_in_group(consumer: &GroupConsumer, count: usize) -> Vec<i64> {
    let mut values = Vec::new();
    let deadline = Instant::now() + GROUP_TIMEOUT;
    while values.len() < count {
        assert!(Instant::now() < deadline, "consumed only {values:?}");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let text = std::str::from_utf8(message.payload().unwrap()).unwrap();
                assert_eq!(message.offset(), text.parse::<i64>().unwrap());
                values.push(message.offset());
            }
            Some(Err(error)) => eprintln!("poll: {error}"),
            None => {}
        }
    }
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_kill_9() {
    let mut broker = Broker::start_with(FAST_GROUPS);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "resume", 1, &[]).await;
    produce_numbered(&bootstrap, "resume", 100).await;
    {
        let consumer = group_consumer(&bootstrap, "resumers", &[], CountingContext::default());
        consumer.subscribe(&["resume"]).expect("subscribe");
        let first = consume_in_group(&consumer, 40);
        assert_eq!(first, (0..40).collect::<Vec<_>>());
        let mut commit = TopicPartitionList::new();
        commit
            .add_partition_offset("resume", 0, Offset::Offset(40))
            .unwrap();
        consumer
            .commit(&commit, CommitMode::Sync)
            .expect("synchronous commit");
        broker.kill9();
        // The consumer is dropped while the broker is down; it cannot leave cleanly.
    }
    broker.restart();
    let consumer = group_consumer(&bootstrap, "resumers", &[], CountingContext::default());
    let committed = consumer
        .committed_offsets(
            {
                let mut list = TopicPartitionList::new();
                list.add_partition("resume", 0);
                list
            },
            CLIENT_TIMEOUT,
        )
        .expect("OffsetFetch after restart");
    assert_eq!(
        committed.find_partition("resume", 0).unwrap().offset(),
        Offset::Offset(40)
    );
    consumer.subscribe(&["resume"]).expect("subscribe");
    let rest = consume_in_group(&consumer, 60);
    assert_eq!(rest, (40..100).collect::<Vec<_>>(), "no gap, no duplicate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_assignment_commits_with_generation_minus_one() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "manual", 2, &[]).await;
    let consumer = group_consumer(&bootstrap, "simple-group", &[], CountingContext::default());
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("manual", 0, Offset::Offset(7))
        .unwrap();
    offsets
        .add_partition_offset("manual", 1, Offset::Offset(9))
        .unwrap();
    consumer.assign(&offsets).expect("assign");
    consumer
        .commit(&offsets, CommitMode::Sync)
        .expect("commit as a non-member");
    let committed = consumer.committed(CLIENT_TIMEOUT).expect("OffsetFetch");
    assert_eq!(
        committed.find_partition("manual", 0).unwrap().offset(),
        Offset::Offset(7)
    );
    assert_eq!(
        committed.find_partition("manual", 1).unwrap().offset(),
        Offset::Offset(9)
    );
    // A partition that does not exist is refused per partition.
    let mut bad = TopicPartitionList::new();
    bad.add_partition_offset("manual", 5, Offset::Offset(1))
        .unwrap();
    assert!(consumer.commit(&bad, CommitMode::Sync).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_member_restarts_without_rebalance() {
    let broker = Broker::start_with(FAST_GROUPS);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "static", 4, &[]).await;
    let watcher = CountingContext::default();
    let a = group_consumer(
        &bootstrap,
        "statics",
        &[("group.instance.id", "a")],
        CountingContext::default(),
    );
    let b = group_consumer(
        &bootstrap,
        "statics",
        &[("group.instance.id", "b")],
        watcher.clone(),
    );
    a.subscribe(&["static"]).unwrap();
    b.subscribe(&["static"]).unwrap();
    let before = poll_until(&[&a, &b], "two static members", |assignments| {
        covers_exactly_once(assignments, "static", 4) && assignments.iter().all(|a| a.len() == 2)
    });
    // Let b settle, then note how many rebalances it has seen.
    for _ in 0..20 {
        b.poll(Duration::from_millis(50));
    }
    let rebalances_before = watcher.rebalances.load(Ordering::SeqCst);
    drop(a); // a static member leaves no LeaveGroup behind (KIP-345)
    let a = group_consumer(
        &bootstrap,
        "statics",
        &[("group.instance.id", "a")],
        CountingContext::default(),
    );
    a.subscribe(&["static"]).unwrap();
    let after = poll_until(&[&a, &b], "static member back", |assignments| {
        !assignments[0].is_empty()
    });
    assert_eq!(
        after[0], before[0],
        "the restarted member gets its partitions back"
    );
    for _ in 0..40 {
        a.poll(Duration::from_millis(25));
        b.poll(Duration::from_millis(25));
    }
    assert_eq!(assigned(&b), before[1]);
    assert_eq!(
        watcher.rebalances.load(Ordering::SeqCst),
        rebalances_before,
        "the other member saw no rebalance"
    );
}

// ---------------------------------------------------------------------------------------------
// Raw-protocol members: lightweight enough for 100 at once, and able to stop heartbeating.

struct Raw {
    stream: TcpStream,
    correlation_id: i32,
}

impl Raw {
    fn connect(broker: &Broker) -> Raw {
        let stream = TcpStream::connect(broker.addr()).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(90)))
            .unwrap();
        Raw {
            stream,
            correlation_id: 0,
        }
    }

    fn call<Q: Encodable, R: Decodable>(&mut self, api_key: ApiKey, version: i16, body: &Q) -> R {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("raw-member")));
        let mut frame = BytesMut::new();
        header
            .encode(&mut frame, api_key.request_header_version(version))
            .unwrap();
        body.encode(&mut frame, version).unwrap();
        let mut sized = BytesMut::new();
        sized.put_i32(frame.len() as i32);
        sized.put_slice(&frame);
        self.stream.write_all(&sized).expect("send");
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).expect("response size");
        let mut response = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream
            .read_exact(&mut response)
            .expect("response body");
        let mut response = Bytes::from(response);
        let header =
            ResponseHeader::decode(&mut response, api_key.response_header_version(version))
                .unwrap();
        assert_eq!(header.correlation_id, self.correlation_id);
        R::decode(&mut response, version).expect("decode response")
    }
}

fn subscription(topic: &str) -> Bytes {
    let mut bytes = BytesMut::new();
    bytes.put_i16(0);
    ConsumerProtocolSubscription::default()
        .with_topics(vec![StrBytes::from_string(topic.to_string())])
        .encode(&mut bytes, 0)
        .unwrap();
    bytes.freeze()
}

fn assignment_bytes(topic: &str, partitions: Vec<i32>) -> Bytes {
    let mut bytes = BytesMut::new();
    bytes.put_i16(0);
    ConsumerProtocolAssignment::default()
        .with_assigned_partitions(vec![AssignedTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(partitions)])
        .encode(&mut bytes, 0)
        .unwrap();
    bytes.freeze()
}

fn decode_assignment(mut bytes: Bytes) -> Vec<i32> {
    if bytes.len() < 2 {
        return Vec::new();
    }
    let version = bytes.get_i16();
    ConsumerProtocolAssignment::decode(&mut bytes, version)
        .unwrap()
        .assigned_partitions
        .into_iter()
        .flat_map(|t| t.partitions)
        .collect()
}

fn join_request(
    group: &str,
    member_id: &str,
    topic: &str,
    session_timeout_ms: i32,
) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_session_timeout_ms(session_timeout_ms)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(StrBytes::from_string(member_id.to_string()))
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(subscription(topic))])
}

/// JoinGroup v5 with the KIP-394 round trip; then SyncGroup (the leader assigns partitions
/// round-robin over the members it was given). Returns (generation, member id, assignment) or
/// the error that interrupted the round.
fn join_and_sync(
    raw: &mut Raw,
    group: &str,
    member_id: &mut String,
    topic: &str,
    partitions: i32,
    session_timeout_ms: i32,
) -> Result<(i32, Vec<i32>), i16> {
    let mut joined: JoinGroupResponse = raw.call(
        ApiKey::JoinGroup,
        5,
        &join_request(group, member_id, topic, session_timeout_ms),
    );
    if joined.error_code == ResponseError::MemberIdRequired.code() {
        *member_id = joined.member_id.to_string();
        joined = raw.call(
            ApiKey::JoinGroup,
            5,
            &join_request(group, member_id, topic, session_timeout_ms),
        );
    }
    if joined.error_code != 0 {
        return Err(joined.error_code);
    }
    *member_id = joined.member_id.to_string();
    let mut assignments = Vec::new();
    if joined.leader == joined.member_id {
        let members: Vec<String> = joined
            .members
            .iter()
            .map(|m| m.member_id.to_string())
            .collect();
        for (index, member) in members.iter().enumerate() {
            let mine: Vec<i32> = (0..partitions)
                .filter(|p| *p as usize % members.len() == index)
                .collect();
            assignments.push(
                SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string(member.clone()))
                    .with_assignment(assignment_bytes(topic, mine)),
            );
        }
    }
    let synced: SyncGroupResponse = raw.call(
        ApiKey::SyncGroup,
        3,
        &SyncGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_generation_id(joined.generation_id)
            .with_member_id(StrBytes::from_string(member_id.clone()))
            .with_assignments(assignments),
    );
    if synced.error_code != 0 {
        return Err(synced.error_code);
    }
    Ok((joined.generation_id, decode_assignment(synced.assignment)))
}

fn heartbeat(raw: &mut Raw, group: &str, generation: i32, member_id: &str) -> i16 {
    let response: HeartbeatResponse = raw.call(
        ApiKey::Heartbeat,
        3,
        &HeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_generation_id(generation)
            .with_member_id(StrBytes::from_string(member_id.to_string())),
    );
    response.error_code
}

fn describe(raw: &mut Raw, group: &str) -> (String, usize) {
    let response: DescribeGroupsResponse = raw.call(
        ApiKey::DescribeGroups,
        5,
        &DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]),
    );
    let described = &response.groups[0];
    (described.group_state.to_string(), described.members.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_members_join_at_once_and_each_partition_has_one_owner() {
    const MEMBERS: usize = 100;
    const PARTITIONS: i32 = 250;
    let broker = Broker::start_with(&["group.initial.rebalance.delay.ms=1000"]);
    create_topic(&broker.bootstrap(), "crowd", PARTITIONS, &[]).await;
    let latest: Arc<Mutex<HashMap<usize, (i32, Vec<i32>)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..MEMBERS)
        .map(|index| {
            let mut raw = Raw::connect(&broker);
            let latest = latest.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut member_id = String::new();
                'rejoin: while !stop.load(Ordering::SeqCst) {
                    let Ok((generation, partitions)) = join_and_sync(
                        &mut raw,
                        "crowd-group",
                        &mut member_id,
                        "crowd",
                        PARTITIONS,
                        30_000,
                    ) else {
                        continue;
                    };
                    latest
                        .lock()
                        .unwrap()
                        .insert(index, (generation, partitions));
                    while !stop.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(300));
                        if heartbeat(&mut raw, "crowd-group", generation, &member_id) != 0 {
                            continue 'rejoin;
                        }
                    }
                }
            })
        })
        .collect();
    let mut observer = Raw::connect(&broker);
    let deadline = Instant::now() + Duration::from_secs(120);
    let settled = loop {
        assert!(Instant::now() < deadline, "100 members never settled");
        std::thread::sleep(Duration::from_millis(500));
        let (state, members) = describe(&mut observer, "crowd-group");
        let snapshot = latest.lock().unwrap().clone();
        let generations: BTreeSet<i32> = snapshot.values().map(|(g, _)| *g).collect();
        if state == "Stable"
            && members == MEMBERS
            && snapshot.len() == MEMBERS
            && generations.len() == 1
        {
            break snapshot;
        }
    };
    stop.store(true, Ordering::SeqCst);
    for thread in threads {
        thread.join().unwrap();
    }
    let mut owners: BTreeMap<i32, usize> = BTreeMap::new();
    for (_, partitions) in settled.values() {
        for partition in partitions {
            *owners.entry(*partition).or_default() += 1;
        }
    }
    assert_eq!(owners.len(), PARTITIONS as usize, "every partition owned");
    assert!(owners.values().all(|count| *count == 1), "one owner each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_member_is_evicted_after_its_session_timeout() {
    let broker = Broker::start_with(&["group.initial.rebalance.delay.ms=0"]);
    create_topic(&broker.bootstrap(), "evict", 4, &[]).await;
    let mut quiet = Raw::connect(&broker);
    let mut quiet_id = String::new();
    // The first member joins alone; it will go silent.
    let (generation, _) =
        join_and_sync(&mut quiet, "evictors", &mut quiet_id, "evict", 4, 6000).expect("first join");
    assert_eq!(generation, 1);
    // A second member joins; the first rejoins once to let the rebalance complete.
    let loud_thread = {
        let mut loud = Raw::connect(&broker);
        std::thread::spawn(move || {
            let mut id = String::new();
            let result = join_and_sync(&mut loud, "evictors", &mut id, "evict", 4, 6000);
            (loud, id, result)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        heartbeat(&mut quiet, "evictors", generation, &quiet_id),
        ResponseError::RebalanceInProgress.code()
    );
    let (generation, mine) =
        join_and_sync(&mut quiet, "evictors", &mut quiet_id, "evict", 4, 6000).expect("rejoin");
    let (mut loud, loud_id, result) = loud_thread.join().unwrap();
    let (loud_generation, theirs) = result.expect("second member joined");
    assert_eq!(generation, loud_generation);
    assert_eq!(mine.len() + theirs.len(), 4);
    let mut observer = Raw::connect(&broker);
    assert_eq!(
        describe(&mut observer, "evictors"),
        ("Stable".to_string(), 2)
    );
    // The first member now stops heartbeating; the second keeps going until told to rejoin.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "silent member never evicted");
        std::thread::sleep(Duration::from_millis(500));
        let error = heartbeat(&mut loud, "evictors", loud_generation, &loud_id);
        if error == ResponseError::RebalanceInProgress.code() {
            break;
        }
        assert_eq!(error, 0);
    }
    let mut loud_id = loud_id;
    let (_, all) =
        join_and_sync(&mut loud, "evictors", &mut loud_id, "evict", 4, 6000).expect("rejoin alone");
    assert_eq!(all, vec![0, 1, 2, 3], "the survivor owns everything");
    assert_eq!(
        describe(&mut observer, "evictors"),
        ("Stable".to_string(), 1)
    );
    // The evicted member is fenced.
    assert_eq!(
        heartbeat(&mut quiet, "evictors", generation, &quiet_id),
        ResponseError::UnknownMemberId.code()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_group_requests_get_kafka_error_codes() {
    let broker = Broker::start_with(&["group.initial.rebalance.delay.ms=0"]);
    let mut raw = Raw::connect(&broker);
    let join = |raw: &mut Raw, request: JoinGroupRequest| -> i16 {
        let response: JoinGroupResponse = raw.call(ApiKey::JoinGroup, 5, &request);
        response.error_code
    };
    // Empty group id.
    assert_eq!(
        join(&mut raw, join_request("", "", "t", 10_000)),
        ResponseError::InvalidGroupId.code()
    );
    // Session timeouts outside group.min/max.session.timeout.ms.
    for timeout in [1, i32::MAX, -5] {
        assert_eq!(
            join(&mut raw, join_request("g", "", "t", timeout)),
            ResponseError::InvalidSessionTimeout.code()
        );
    }
    // Unknown member of an unknown group.
    assert_eq!(
        join(&mut raw, join_request("g", "nobody", "t", 10_000)),
        ResponseError::UnknownMemberId.code()
    );
    // No protocols.
    assert_eq!(
        join(
            &mut raw,
            join_request("g", "", "t", 10_000).with_protocols(vec![])
        ),
        ResponseError::InconsistentGroupProtocol.code()
    );
    // A real member, then stale generations and strangers.
    let mut member_id = String::new();
    let (generation, _) =
        join_and_sync(&mut raw, "g", &mut member_id, "t", 1, 10_000).expect("join");
    assert_eq!(
        heartbeat(&mut raw, "g", generation + 7, &member_id),
        ResponseError::IllegalGeneration.code()
    );
    assert_eq!(
        heartbeat(&mut raw, "g", generation, "stranger"),
        ResponseError::UnknownMemberId.code()
    );
    assert_eq!(
        heartbeat(&mut raw, "missing-group", 1, "x"),
        ResponseError::UnknownMemberId.code()
    );
    let synced: SyncGroupResponse = raw.call(
        ApiKey::SyncGroup,
        3,
        &SyncGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_generation_id(generation - 1)
            .with_member_id(StrBytes::from_string(member_id.clone()))
            // Garbage assignment bytes for an unknown member: ignored, never a crash.
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(StrBytes::from_static_str("ghost"))
                .with_assignment(Bytes::from_static(b"\xff\xff\xff"))]),
    );
    assert_eq!(synced.error_code, ResponseError::IllegalGeneration.code());
    // A second member with a different protocol type.
    assert_eq!(
        join(
            &mut raw,
            join_request("g", "", "t", 10_000)
                .with_protocol_type(StrBytes::from_static_str("connect"))
        ),
        ResponseError::InconsistentGroupProtocol.code()
    );
    // The broker is still serving.
    assert_eq!(heartbeat(&mut raw, "g", generation, &member_id), 0);
}

// ---------------------------------------------------------------------------------------------
// KIP-848: librdkafka with group.protocol=consumer (server-side assignment)

async fn consumer_protocol_spread_and_shrink(assignor: &str) {
    let broker = Broker::start_with(&["group.consumer.heartbeat.interval.ms=500"]);
    let bootstrap = broker.bootstrap();
    let topic = format!("kip848-{assignor}");
    create_topic(&bootstrap, &topic, 6, &[]).await;
    let group = format!("kip848-group-{assignor}");
    let extra = [
        ("group.protocol", "consumer"),
        ("group.remote.assignor", assignor),
    ];
    let consumer = |_| {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("socket.timeout.ms", "15000");
        for (key, value) in extra {
            config.set(key, value);
        }
        let consumer: GroupConsumer = config
            .create_with_context(CountingContext::default())
            .expect("create consumer");
        consumer.subscribe(&[&topic]).expect("subscribe");
        consumer
    };
    let a = consumer(0);
    let b = consumer(1);
    let c = consumer(2);
    poll_until(
        &[&a, &b, &c],
        "3 KIP-848 members over 6 partitions",
        |assignments| {
            assignments.iter().all(|a| a.len() == 2) && covers_exactly_once(assignments, &topic, 6)
        },
    );
    drop(c);
    poll_until(
        &[&a, &b],
        "2 KIP-848 members after one left",
        |assignments| {
            covers_exactly_once(assignments, &topic, 6) && assignments.iter().all(|a| a.len() == 3)
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_protocol_uniform_assignor() {
    consumer_protocol_spread_and_shrink("uniform").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_protocol_range_assignor() {
    consumer_protocol_spread_and_shrink("range").await;
}

// ---------------------------------------------------------------------------------------------
// Limits, listing and offset retention

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_max_size_and_list_groups_state_filter() {
    use kafka_protocol::messages::{ListGroupsRequest, ListGroupsResponse};
    let broker = Broker::start_with(&["group.initial.rebalance.delay.ms=0", "group.max.size=1"]);
    create_topic(&broker.bootstrap(), "capped", 2, &[]).await;
    let mut first = Raw::connect(&broker);
    let mut first_id = String::new();
    join_and_sync(
        &mut first,
        "capped-group",
        &mut first_id,
        "capped",
        2,
        10_000,
    )
    .expect("first member");
    let mut second = Raw::connect(&broker);
    let mut second_id = String::new();
    assert_eq!(
        join_and_sync(
            &mut second,
            "capped-group",
            &mut second_id,
            "capped",
            2,
            10_000
        ),
        Err(ResponseError::GroupMaxSizeReached.code())
    );
    let list = |raw: &mut Raw, states: &[&str]| -> Vec<(String, String)> {
        let response: ListGroupsResponse = raw.call(
            ApiKey::ListGroups,
            4,
            &ListGroupsRequest::default().with_states_filter(
                states
                    .iter()
                    .map(|s| StrBytes::from_string(s.to_string()))
                    .collect(),
            ),
        );
        response
            .groups
            .iter()
            .map(|g| (g.group_id.to_string(), g.group_state.to_string()))
            .collect()
    };
    assert_eq!(
        list(&mut second, &[]),
        [("capped-group".to_string(), "Stable".to_string())]
    );
    assert_eq!(list(&mut second, &["stable"]).len(), 1);
    assert!(list(&mut second, &["Empty", "Dead"]).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_of_an_empty_group_expire_after_the_retention() {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
    use kafka_protocol::messages::{
        OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    };
    let broker = Broker::start_with(&[
        "offsets.retention.minutes=1",
        "offsets.retention.check.interval.ms=1000",
    ]);
    create_topic(&broker.bootstrap(), "fleeting", 1, &[]).await;
    let mut raw = Raw::connect(&broker);
    let committed: OffsetCommitResponse = raw.call(
        ApiKey::OffsetCommit,
        8,
        &OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("fleeting-group")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("fleeting")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(5)])]),
    );
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);
    let fetch = |raw: &mut Raw| -> (Vec<i64>, usize) {
        let response: OffsetFetchResponse = raw.call(
            ApiKey::OffsetFetch,
            8,
            &OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(StrBytes::from_static_str("fleeting-group")))
                .with_topics(None)]),
        );
        let offsets = response.groups[0]
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.committed_offset))
            .collect();
        let listed: kafka_protocol::messages::ListGroupsResponse = raw.call(
            ApiKey::ListGroups,
            4,
            &kafka_protocol::messages::ListGroupsRequest::default(),
        );
        (offsets, listed.groups.len())
    };
    assert_eq!(fetch(&mut raw), (vec![5], 1));
    // Retention is one minute from the commit (the group was empty all along); the check
    // runs every second.
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let (offsets, groups) = fetch(&mut raw);
        if offsets.is_empty() {
            assert_eq!(groups, 0, "the empty group without offsets is deleted too");
            break;
        }
        assert!(Instant::now() < deadline, "offsets never expired");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_protocol_member_survives_a_broker_restart() {
    // A real KIP-848 consumer across kill -9 and restart: it carries on (its membership was
    // written to __consumer_offsets) and resumes from its committed offset.
    let mut broker = Broker::start_with(&["group.consumer.heartbeat.interval.ms=500"]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "resume848", 1, &[]).await;
    produce_numbered(&bootstrap, "resume848", 60).await;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "resumers848")
        .set("group.protocol", "consumer")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("socket.timeout.ms", "15000");
    let consumer: GroupConsumer = config
        .create_with_context(CountingContext::default())
        .expect("consumer");
    consumer.subscribe(&["resume848"]).expect("subscribe");
    assert_eq!(consume_in_group(&consumer, 30), (0..30).collect::<Vec<_>>());
    let mut commit = TopicPartitionList::new();
    commit
        .add_partition_offset("resume848", 0, Offset::Offset(30))
        .unwrap();
    consumer.commit(&commit, CommitMode::Sync).expect("commit");
    broker.kill9();
    broker.restart();
    // The same consumer carries on: it rejoins and fetches from the committed offset (its
    // position may also still be 30; either way no record is skipped or repeated).
    let rest = consume_in_group(&consumer, 30);
    assert_eq!(rest, (30..60).collect::<Vec<_>>());
    let committed = consumer.committed(CLIENT_TIMEOUT).expect("OffsetFetch");
    assert_eq!(
        committed.find_partition("resume848", 0).unwrap().offset(),
        Offset::Offset(30)
    );
}

/// One raw KIP-848 member: what it owns and its epoch, as the coordinator last told it.
struct Member848 {
    member_id: &'static str,
    epoch: i32,
    owned: BTreeMap<uuid::Uuid, BTreeSet<i32>>,
}

/// One ConsumerGroupHeartbeat of `member` reporting what it owns; adopts the assignment it
/// is given. Returns the error code.
fn heartbeat_848(raw: &mut Raw, group: &str, topic: &str, member: &mut Member848) -> i16 {
    let owned: Vec<OwnedTopic> = member
        .owned
        .iter()
        .map(|(id, partitions)| {
            OwnedTopic::default()
                .with_topic_id(*id)
                .with_partitions(partitions.iter().copied().collect())
        })
        .collect();
    let request = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_member_id(StrBytes::from_static_str(member.member_id))
        .with_member_epoch(member.epoch)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(
            (member.epoch == 0).then(|| vec![TopicName(StrBytes::from_string(topic.into()))]),
        )
        .with_topic_partitions(Some(owned));
    let response: ConsumerGroupHeartbeatResponse =
        raw.call(ApiKey::ConsumerGroupHeartbeat, 0, &request);
    if response.error_code == 0 {
        member.epoch = response.member_epoch;
        if let Some(assignment) = response.assignment {
            member.owned = assignment
                .topic_partitions
                .into_iter()
                .map(|t| (t.topic_id, t.partitions.into_iter().collect()))
                .collect();
        }
    }
    response.error_code
}

/// Heartbeats every member until they all hold the group's epoch and the partitions of
/// `topic` are split between them with none left over.
fn converge_848(raw: &mut Raw, group: &str, topic: &str, members: &mut [Member848], count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for member in members.iter_mut() {
            assert_eq!(
                heartbeat_848(raw, group, topic, member),
                0,
                "{}",
                member.member_id
            );
        }
        let held: usize = members
            .iter()
            .map(|m| m.owned.values().map(BTreeSet::len).sum::<usize>())
            .sum();
        let epochs: BTreeSet<i32> = members.iter().map(|m| m.epoch).collect();
        if held == count && epochs.len() == 1 {
            return;
        }
        assert!(Instant::now() < deadline, "the group never converged");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (member id → (epoch, assigned partitions)) as ConsumerGroupDescribe reports it.
fn describe_848(raw: &mut Raw, group: &str) -> BTreeMap<String, (i32, BTreeSet<i32>)> {
    let request = ConsumerGroupDescribeRequest::default()
        .with_group_ids(vec![GroupId(StrBytes::from_string(group.to_string()))]);
    let response: ConsumerGroupDescribeResponse =
        raw.call(ApiKey::ConsumerGroupDescribe, 0, &request);
    let described = &response.groups[0];
    assert_eq!(described.error_code, 0, "{:?}", described.error_message);
    described
        .members
        .iter()
        .map(|m| {
            let partitions = m
                .assignment
                .topic_partitions
                .iter()
                .flat_map(|t| t.partitions.iter().copied())
                .collect();
            (m.member_id.to_string(), (m.member_epoch, partitions))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_group_members_and_assignments_survive_kill_9() {
    // KIP-848 state is written to __consumer_offsets as Kafka's records: after kill -9 the
    // members go on with the epochs and partitions they had, without rejoining; a member
    // that left before the kill stays gone.
    let mut broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let (group, topic) = ("persisted848", "persisted848-topic");
    create_topic(&bootstrap, topic, 4, &[]).await;
    let mut raw = Raw::connect(&broker);
    let mut members = vec![
        Member848 {
            member_id: "member-one",
            epoch: 0,
            owned: BTreeMap::new(),
        },
        Member848 {
            member_id: "member-two",
            epoch: 0,
            owned: BTreeMap::new(),
        },
    ];
    converge_848(&mut raw, group, topic, &mut members, 4);
    let before = describe_848(&mut raw, group);
    assert_eq!(before.len(), 2);
    for member in &members {
        let (epoch, partitions) = &before[member.member_id];
        assert_eq!(*epoch, member.epoch);
        assert_eq!(
            partitions.len(),
            2,
            "the uniform assignor splits 4 partitions 2/2"
        );
    }

    // OffsetFetch v9 names the member: its current epoch is accepted, another is stale, an
    // unknown member is refused, and naming no member (an admin client) is accepted.
    let fetch_error = |raw: &mut Raw, member_id: Option<&'static str>, epoch: i32| -> i16 {
        use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
        use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};
        let request =
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(StrBytes::from_static_str("persisted848")))
                .with_member_id(member_id.map(StrBytes::from_static_str))
                .with_member_epoch(epoch)
                .with_topics(None)]);
        let response: OffsetFetchResponse = raw.call(ApiKey::OffsetFetch, 9, &request);
        response.groups[0].error_code
    };
    let epoch = members[0].epoch;
    assert_eq!(fetch_error(&mut raw, Some("member-one"), epoch), 0);
    assert_eq!(
        fetch_error(&mut raw, Some("member-one"), epoch - 1),
        ResponseError::StaleMemberEpoch.code()
    );
    assert_eq!(
        fetch_error(&mut raw, Some("member-nobody"), epoch),
        ResponseError::UnknownMemberId.code()
    );
    assert_eq!(fetch_error(&mut raw, None, -1), 0);

    broker.kill9();
    broker.restart();
    let mut raw = Raw::connect(&broker);
    // The next heartbeats carry the old epochs and are accepted as they are.
    for member in members.iter_mut() {
        let epoch = member.epoch;
        let owned = member.owned.clone();
        assert_eq!(heartbeat_848(&mut raw, group, topic, member), 0);
        assert_eq!(member.epoch, epoch, "{} kept its epoch", member.member_id);
        assert_eq!(
            member.owned, owned,
            "{} kept its partitions",
            member.member_id
        );
    }
    assert_eq!(describe_848(&mut raw, group), before);

    // member-two leaves; after another kill -9 only member-one is there, and it gets all four.
    let mut leaving = members.pop().unwrap();
    leaving.epoch = -1;
    assert_eq!(heartbeat_848(&mut raw, group, topic, &mut leaving), 0);
    broker.kill9();
    broker.restart();
    let mut raw = Raw::connect(&broker);
    converge_848(&mut raw, group, topic, &mut members, 4);
    let after = describe_848(&mut raw, group);
    assert_eq!(after.keys().collect::<Vec<_>>(), vec!["member-one"]);
    assert_eq!(after["member-one"].1, (0..4).collect());
}
