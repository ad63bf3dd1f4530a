//! Log compaction against a real `dlog` process, checked against a model of what was
//! produced: after cleaning, every consumed record is the one produced at its offset, offsets
//! increase, every key's latest value is present at its original offset, no superseded record
//! remains below the cleaner checkpoint, and tombstones go once `delete.retention.ms` has
//! passed — with every codec, and across a kill -9 in the middle of cleaning.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

/// What was produced at one offset: (key, value; None is a tombstone).
type Produced = BTreeMap<i64, (String, Option<Vec<u8>>)>;

const CLEANER_SETTINGS: &[&str] = &["log.cleaner.backoff.ms=200"];

async fn produce_keyed(
    bootstrap: &str,
    topic: &str,
    codec: &str,
    count: usize,
    keys: u64,
    seed: u64,
    produced: &mut Produced,
) {
    let producer: FutureProducer = producer_config(bootstrap)
        .set("compression.type", codec)
        .set("linger.ms", "2")
        .create()
        .expect("producer");
    let mut state = seed | 1;
    let mut pending = Vec::new();
    for i in 0..count {
        // xorshift: a deterministic key sequence with repeats.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let key = format!("key-{}", state % keys);
        let value = (state % 10 != 0).then(|| {
            format!("value-{seed}-{i}-{}", "x".repeat((state % 50) as usize)).into_bytes()
        });
        let producer = producer.clone();
        let topic = topic.to_string();
        pending.push(tokio::spawn(async move {
            let mut record = FutureRecord::to(&topic).partition(0).key(&key);
            if let Some(value) = &value {
                record = record.payload(value);
            }
            let offset = producer
                .send(record, CLIENT_TIMEOUT)
                .await
                .unwrap_or_else(|(e, _)| panic!("produce: {e}"))
                .offset;
            (offset, key, value)
        }));
        if pending.len() >= 50 {
            for handle in pending.drain(..) {
                let (offset, key, value) = handle.await.unwrap();
                produced.insert(offset, (key, value));
            }
        }
    }
    for handle in pending {
        let (offset, key, value) = handle.await.unwrap();
        produced.insert(offset, (key, value));
    }
}

/// The cleaner checkpoint of partition 0 of `topic`: offsets below it are deduplicated.
fn first_dirty_offset(data_dir: &Path, topic: &str) -> Option<i64> {
    let text = std::fs::read_to_string(data_dir.join("cleaner-offset-checkpoint")).ok()?;
    text.lines().skip(2).find_map(|line| {
        let mut fields = line.split_whitespace();
        (fields.next()? == topic && fields.next()? == "0").then(|| fields.next()?.parse().ok())?
    })
}

fn wait_for_cleaning(data_dir: &Path, topic: &str, at_least: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(offset) = first_dirty_offset(data_dir, topic) {
            if offset >= at_least {
                return offset;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the cleaner did not reach offset {at_least}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Checks the consumed log against the model. `cleaned_end`: the cleaner checkpoint;
/// `tombstones_expired`: whether tombstones below it must be gone.
fn check_against_model(
    bootstrap: &str,
    topic: &str,
    produced: &Produced,
    cleaned_end: i64,
    tombstones_expired: bool,
) -> usize {
    let consumed = consume_all(bootstrap, topic, 1).remove(&0).unwrap();
    let mut previous = -1;
    for message in &consumed {
        let offset = message.offset();
        assert!(
            offset > previous,
            "offsets must increase: {offset} after {previous}"
        );
        previous = offset;
        let (key, value) = produced
            .get(&offset)
            .unwrap_or_else(|| panic!("offset {offset} was never produced"));
        assert_eq!(message.key(), Some(key.as_bytes()), "key at {offset}");
        assert_eq!(
            message.payload().map(<[u8]>::to_vec),
            *value,
            "value at {offset}"
        );
        if offset < cleaned_end {
            let superseded = produced
                .range(offset + 1..cleaned_end)
                .any(|(_, (k, _))| k == key);
            assert!(
                !superseded,
                "{key} at {offset} is superseded below {cleaned_end}"
            );
            if tombstones_expired {
                assert!(
                    value.is_some(),
                    "expired tombstone of {key} kept at {offset}"
                );
            }
        }
    }
    // Every key's latest record is present at its offset (unless it is an expired tombstone).
    let mut latest: BTreeMap<&str, i64> = BTreeMap::new();
    for (offset, (key, _)) in produced {
        latest.insert(key, *offset);
    }
    let consumed_offsets: std::collections::BTreeSet<i64> =
        consumed.iter().map(|m| m.offset()).collect();
    for (key, offset) in latest {
        let is_tombstone = produced[&offset].1.is_none();
        if !(is_tombstone && tombstones_expired && offset < cleaned_end) {
            assert!(
                consumed_offsets.contains(&offset),
                "latest record of {key} (offset {offset}) missing"
            );
        }
    }
    consumed.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_the_latest_value_per_key_with_every_codec() {
    let broker = Broker::start_with(CLEANER_SETTINGS);
    let bootstrap = broker.bootstrap();
    for (index, codec) in ["none", "gzip", "snappy", "lz4", "zstd"]
        .into_iter()
        .enumerate()
    {
        let topic = format!("compacted-{codec}");
        create_topic(
            &bootstrap,
            &topic,
            1,
            &[
                ("cleanup.policy", "compact"),
                ("segment.bytes", "6000"),
                ("min.cleanable.dirty.ratio", "0.01"),
                ("delete.retention.ms", "0"),
            ],
        )
        .await;
        let mut produced = Produced::new();
        produce_keyed(
            &bootstrap,
            &topic,
            codec,
            1500,
            40,
            7 + index as u64,
            &mut produced,
        )
        .await;
        let end = *produced.keys().last().unwrap();
        let cleaned_end = wait_for_cleaning(&broker.data_dir(), &topic, end / 2);
        let kept = check_against_model(&bootstrap, &topic, &produced, cleaned_end, true);
        assert!(
            kept < produced.len(),
            "{codec}: nothing was removed ({kept} records)"
        );
        eprintln!(
            "{codec}: {} produced, {kept} after cleaning up to {cleaned_end}",
            produced.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_stay_until_delete_retention_passes() {
    let broker = Broker::start_with(CLEANER_SETTINGS);
    let bootstrap = broker.bootstrap();
    create_topic(
        &bootstrap,
        "tombstones",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "6000"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    )
    .await;
    let mut produced = Produced::new();
    produce_keyed(&bootstrap, "tombstones", "lz4", 1000, 30, 99, &mut produced).await;
    let end = *produced.keys().last().unwrap();
    let cleaned_end = wait_for_cleaning(&broker.data_dir(), "tombstones", end / 2);
    // delete.retention.ms is a day: the latest tombstones of keys remain visible.
    check_against_model(&bootstrap, "tombstones", &produced, cleaned_end, false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_cleaning_leaves_a_consistent_log() {
    // A slow cleaner (throttled reads) so that the kill lands in the middle of a pass.
    let mut broker = Broker::start_with(&[
        "log.cleaner.backoff.ms=200",
        "log.cleaner.io.max.bytes.per.second=150000",
    ]);
    let bootstrap = broker.bootstrap();
    create_topic(
        &bootstrap,
        "crash-clean",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "8000"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "0"),
        ],
    )
    .await;
    let mut produced = Produced::new();
    produce_keyed(
        &bootstrap,
        "crash-clean",
        "gzip",
        3000,
        50,
        3,
        &mut produced,
    )
    .await;
    // Kill while segments are being rewritten: a .cleaned file exists, or soon will.
    let dir = broker.data_dir().join("crash-clean-0");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut saw_cleaning = false;
    while Instant::now() < deadline {
        let cleaning = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().ends_with(".cleaned"));
        if cleaning {
            saw_cleaning = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    broker.kill9();
    eprintln!("killed while a .cleaned file existed: {saw_cleaning}");
    broker.restart();
    let bootstrap = broker.bootstrap();
    wait_for_topic(&bootstrap, "crash-clean", 1);
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "half-done cleaning left {leftovers:?}"
    );
    let cleaned_end = first_dirty_offset(&broker.data_dir(), "crash-clean").unwrap_or(0);
    check_against_model(&bootstrap, "crash-clean", &produced, cleaned_end, true);
    // And cleaning resumes after the restart.
    let end = *produced.keys().last().unwrap();
    let cleaned_end = wait_for_cleaning(&broker.data_dir(), "crash-clean", end / 2);
    check_against_model(&bootstrap, "crash-clean", &produced, cleaned_end, true);
}
