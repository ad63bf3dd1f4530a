//! Controller benchmarks against any broker at `BOOTSTRAP` (dlog, a dlog cluster, or Apache
//! Kafka in KRaft mode):
//!
//! - metadata commit latency: `TOPICS` (default 1000) CreateTopics requests of one topic (one
//!   partition, RF 1) sent one after another on one connection; each answer comes after the
//!   controller committed the topic to its metadata log. Reports p50/p99/max per request and
//!   the total, i.e. "CreateTopics of 1,000 topics" one by one.
//! - batched: the same number of topics in CreateTopics requests of 100 topics each.
//!
//! Topics are named `bench-ctl-<run>-<n>` and deleted afterwards (DeleteTopics, untimed).
//! `BOOTSTRAP=127.0.0.1:9092 TOPICS=1000 cargo bench --bench controller`

mod common;

use std::time::{Duration, Instant};

use common::Raw;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

/// Topics per request in the batched phase.
const BATCH_TOPICS: usize = 100;

fn topic(name: &str) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.to_string())))
        .with_num_partitions(1)
        .with_replication_factor(1)
}

fn create(raw: &mut Raw, names: &[String]) {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(60_000)
        .with_topics(names.iter().map(|n| topic(n)).collect());
    let response: CreateTopicsResponse = raw.call(ApiKey::CreateTopics, 5, &request);
    for result in &response.topics {
        assert_eq!(
            result.error_code,
            0,
            "CreateTopics {}: error {} {:?}",
            result.name.as_str(),
            result.error_code,
            result.error_message
        );
    }
}

fn delete(raw: &mut Raw, names: &[String]) {
    for chunk in names.chunks(BATCH_TOPICS) {
        let request = DeleteTopicsRequest::default()
            .with_timeout_ms(60_000)
            .with_topics(
                chunk
                    .iter()
                    .map(|n| {
                        DeleteTopicState::default()
                            .with_name(Some(TopicName(StrBytes::from_string(n.clone()))))
                    })
                    .collect(),
            );
        let _: DeleteTopicsResponse = raw.call(ApiKey::DeleteTopics, 6, &request);
    }
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists; nothing to run without a broker.
    }
    let address = std::env::var("BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let count: usize = std::env::var("TOPICS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1000);
    let run = std::process::id();
    let mut raw = Raw::connect(&address);

    let names: Vec<String> = (0..count).map(|n| format!("bench-ctl-{run}-{n}")).collect();
    let mut latencies = Vec::with_capacity(count);
    let started = Instant::now();
    for name in &names {
        let sent = Instant::now();
        create(&mut raw, std::slice::from_ref(name));
        latencies.push(sent.elapsed());
    }
    let total = started.elapsed();
    latencies.sort();
    println!(
        "create_topics one_by_one topics={count} total_s={:.2} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        total.as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
    );
    delete(&mut raw, &names);

    let names: Vec<String> = (0..count)
        .map(|n| format!("bench-ctl-{run}-b{n}"))
        .collect();
    let started = Instant::now();
    for chunk in names.chunks(BATCH_TOPICS) {
        create(&mut raw, chunk);
    }
    println!(
        "create_topics batched_{BATCH_TOPICS} topics={count} total_s={:.2}",
        started.elapsed().as_secs_f64()
    );
    delete(&mut raw, &names);
}
