//! Consumer-group benchmarks against any broker at `BOOTSTRAP` (dlog or Apache Kafka):
//!
//! - rebalance time: N raw-protocol members (JoinGroup v5 / SyncGroup v3, heartbeats every
//!   50 ms) form a stable group; then one more member joins, and the time from its JoinGroup
//!   to the last member's SyncGroup answer of the new generation is measured (5 rounds,
//!   median). The initial-delay path of an empty group is not measured (it is a fixed wait).
//! - OffsetCommit throughput: one connection committing one partition in a loop for 5 s
//!   (simple commits, generation -1), requests per second.
//!
//! `BOOTSTRAP=127.0.0.1:9092 MEMBERS=10,100 cargo bench --bench groups`
//! The broker needs a topic `bench-groups` (created here through CreateTopics if absent).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use bytes::Bytes;
use common::Raw;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, OffsetCommitRequest, OffsetCommitResponse, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

const TOPIC: &str = "bench-groups";
const PARTITIONS: i32 = 100;
const ROUNDS: usize = 5;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn join_request(group: &str, member_id: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(text(member_id))
        .with_protocol_type(text("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(text("range"))
            .with_metadata(Bytes::from_static(
                b"\x00\x00\x00\x00\x00\x01\x00\x0cbench-groups\xff\xff\xff\xff",
            ))])
}

/// One member: join + sync, then heartbeats until told to rejoin. Records each generation
/// it completes, with when.
fn member_loop(
    address: String,
    group: String,
    index: usize,
    state: Arc<Mutex<HashMap<usize, (i32, Instant)>>>,
    stop: Arc<AtomicBool>,
) {
    let mut raw = Raw::connect(&address);
    let mut member_id = String::new();
    'rejoin: while !stop.load(Ordering::SeqCst) {
        let mut joined: JoinGroupResponse =
            raw.call(ApiKey::JoinGroup, 5, &join_request(&group, &member_id));
        if joined.error_code == 79 {
            member_id = joined.member_id.to_string();
            joined = raw.call(ApiKey::JoinGroup, 5, &join_request(&group, &member_id));
        }
        if joined.error_code != 0 {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        member_id = joined.member_id.to_string();
        let assignments = if joined.leader == joined.member_id {
            joined
                .members
                .iter()
                .map(|m| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(m.member_id.clone())
                        .with_assignment(Bytes::from_static(b"\x00\x00"))
                })
                .collect()
        } else {
            Vec::new()
        };
        let synced: SyncGroupResponse = raw.call(
            ApiKey::SyncGroup,
            3,
            &SyncGroupRequest::default()
                .with_group_id(GroupId(text(&group)))
                .with_generation_id(joined.generation_id)
                .with_member_id(text(&member_id))
                .with_assignments(assignments),
        );
        if synced.error_code != 0 {
            continue;
        }
        state
            .lock()
            .unwrap()
            .insert(index, (joined.generation_id, Instant::now()));
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
            let beat: HeartbeatResponse = raw.call(
                ApiKey::Heartbeat,
                3,
                &HeartbeatRequest::default()
                    .with_group_id(GroupId(text(&group)))
                    .with_generation_id(joined.generation_id)
                    .with_member_id(text(&member_id)),
            );
            if beat.error_code != 0 {
                continue 'rejoin;
            }
        }
    }
}

fn settled(
    state: &Mutex<HashMap<usize, (i32, Instant)>>,
    members: usize,
    above: i32,
) -> Option<(i32, Instant)> {
    let state = state.lock().unwrap();
    if state.len() < members {
        return None;
    }
    let generation = state.values().map(|(g, _)| *g).min()?;
    if generation <= above || state.values().any(|(g, _)| *g != generation) {
        return None;
    }
    state
        .values()
        .map(|(_, at)| *at)
        .max()
        .map(|at| (generation, at))
}

fn wait_settled(
    state: &Mutex<HashMap<usize, (i32, Instant)>>,
    members: usize,
    above: i32,
) -> (i32, Instant) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(found) = settled(state, members, above) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{members} members never settled above generation {above}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn rebalance_ms(address: &str, members: usize) -> f64 {
    let group = format!("bench-{members}-{}", std::process::id());
    let state: Arc<Mutex<HashMap<usize, (i32, Instant)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let spawn = |index: usize| {
        let (address, group, state, stop) = (
            address.to_string(),
            group.clone(),
            state.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || member_loop(address, group, index, state, stop))
    };
    let mut threads: Vec<_> = (0..members).map(spawn).collect();
    let (mut generation, _) = wait_settled(&state, members, 0);
    let mut samples = Vec::new();
    for round in 0..ROUNDS {
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        threads.push(spawn(members + round));
        let (next, done) = wait_settled(&state, members + round + 1, generation);
        generation = next;
        samples.push(done.duration_since(started).as_secs_f64() * 1000.0);
    }
    stop.store(true, Ordering::SeqCst);
    for thread in threads {
        let _ = thread.join();
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

fn commits_per_second(address: &str) -> f64 {
    let mut raw = Raw::connect(address);
    let request = |offset: i64| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(text("bench-commits")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(text(TOPIC)))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)])])
    };
    for offset in 0..500 {
        let _: OffsetCommitResponse = raw.call(ApiKey::OffsetCommit, 8, &request(offset));
    }
    let started = Instant::now();
    let mut count = 0i64;
    while started.elapsed() < Duration::from_secs(5) {
        let response: OffsetCommitResponse = raw.call(ApiKey::OffsetCommit, 8, &request(count));
        assert_eq!(
            response.topics[0].partitions[0].error_code, 0,
            "commit failed"
        );
        count += 1;
    }
    count as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return; // `cargo test --benches` smoke: nothing to do without a broker
    }
    let Ok(address) = std::env::var("BOOTSTRAP") else {
        eprintln!("groups bench: set BOOTSTRAP=host:port of the broker to measure");
        return;
    };
    let mut raw = Raw::connect(&address);
    let _: CreateTopicsResponse = raw.call(
        ApiKey::CreateTopics,
        5,
        &CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(text(TOPIC)))
                .with_num_partitions(PARTITIONS)
                .with_replication_factor(1)])
            .with_timeout_ms(30_000),
    );
    // Kafka answers COORDINATOR_NOT_AVAILABLE while it creates __consumer_offsets: retry.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found: FindCoordinatorResponse = raw.call(
            ApiKey::FindCoordinator,
            3,
            &FindCoordinatorRequest::default().with_key(text("bench")),
        );
        if found.error_code == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "FindCoordinator: {}",
            found.error_code
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let sizes: Vec<usize> = std::env::var("MEMBERS")
        .unwrap_or_else(|_| "10,100".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    for members in sizes {
        println!(
            "rebalance_ms members={members} median_of_{ROUNDS}={:.1}",
            rebalance_ms(&address, members)
        );
    }
    println!(
        "offset_commits_per_second sequential_one_partition={:.0}",
        commits_per_second(&address)
    );
}
