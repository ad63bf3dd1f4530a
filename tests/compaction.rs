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
use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
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

/// Waits (bounded) until a segment of partition 0 of `topic` is being rewritten (a `.cleaned`
/// file exists), kills the broker with SIGKILL, restarts it and checks that no half-done
/// swap remains. Returns the new bootstrap address.
fn kill_mid_clean_and_restart(broker: &mut Broker, topic: &str) -> String {
    let dir = broker.data_dir().join(format!("{topic}-0"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut saw_cleaning = false;
    while Instant::now() < deadline && !saw_cleaning {
        saw_cleaning = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().ends_with(".cleaned"));
        std::thread::sleep(Duration::from_millis(10));
    }
    broker.kill9();
    eprintln!("{topic}: killed while a .cleaned file existed: {saw_cleaning}");
    broker.restart();
    let bootstrap = broker.bootstrap();
    wait_for_topic(&bootstrap, topic, 1);
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap") || n.ends_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "half-done cleaning left {leftovers:?}"
    );
    bootstrap
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
    let bootstrap = kill_mid_clean_and_restart(&mut broker, "crash-clean");
    let cleaned_end = first_dirty_offset(&broker.data_dir(), "crash-clean").unwrap_or(0);
    check_against_model(&bootstrap, "crash-clean", &produced, cleaned_end, true);
    // And cleaning resumes after the restart.
    let end = *produced.keys().last().unwrap();
    let cleaned_end = wait_for_cleaning(&broker.data_dir(), "crash-clean", end / 2);
    check_against_model(&bootstrap, "crash-clean", &produced, cleaned_end, true);
}

// ---------------------------------------------------------------------------------------------
// Transactional data

/// What a transactional workload left: the committed view (offset → key, value; plain and
/// committed transactional records) and the values of aborted records.
#[derive(Default)]
struct TxnModel {
    committed: BTreeMap<i64, (String, String)>,
    aborted_values: std::collections::BTreeSet<String>,
    /// Markers written: one per transaction per partition (every transaction here writes).
    commits: usize,
    aborts: usize,
    /// Offset after the last transactional record or marker (the filler starts there).
    txn_end: i64,
}

fn transactional_producer(bootstrap: &str, id: &str) -> FutureProducer {
    let producer: FutureProducer = producer_config(bootstrap)
        .set("enable.idempotence", "true")
        .set("transactional.id", id)
        .set("transaction.timeout.ms", "60000")
        .set("linger.ms", "2")
        .create()
        .expect("transactional producer");
    producer
        .init_transactions(CLIENT_TIMEOUT)
        .expect("init_transactions");
    producer
}

/// Sends `records` without waiting; the caller flushes.
fn send_keyed(
    producer: &FutureProducer,
    topic: &str,
    records: &[(String, String)],
) -> Vec<rdkafka::producer::DeliveryFuture> {
    records
        .iter()
        .map(|(key, value)| {
            producer
                .send_result(FutureRecord::to(topic).partition(0).key(key).payload(value))
                .unwrap_or_else(|(e, _)| panic!("enqueue: {e}"))
        })
        .collect()
}

async fn offsets_of(futures: Vec<rdkafka::producer::DeliveryFuture>) -> Vec<i64> {
    let mut offsets = Vec::with_capacity(futures.len());
    for future in futures {
        let delivery = future.await.expect("delivery future");
        offsets.push(
            delivery
                .unwrap_or_else(|(e, _)| panic!("produce: {e}"))
                .offset,
        );
    }
    offsets
}

/// Two transactional producers with interleaved transactions over 12 repeated keys (one of
/// them, `only-aborted`, only ever written by aborted transactions), one committing while the
/// other aborts in turn, plus plain keyed records in between; then `filler_count` plain
/// records with unique keys, so that all of it lies in sealed segments.
async fn produce_transactional(
    bootstrap: &str,
    topic: &str,
    rounds: usize,
    filler_count: usize,
) -> TxnModel {
    let first = transactional_producer(bootstrap, &format!("{topic}-first"));
    let second = transactional_producer(bootstrap, &format!("{topic}-second"));
    let plain: FutureProducer = producer_config(bootstrap).create().expect("producer");
    let mut model = TxnModel::default();
    let pad = "p".repeat(40);
    for round in 0..rounds {
        first.begin_transaction().unwrap();
        second.begin_transaction().unwrap();
        let mut pending = Vec::new();
        for (index, producer) in [&first, &second].into_iter().enumerate() {
            // The first commits on even rounds, the second on odd ones.
            let commit = (round + index) % 2 == 0;
            let tag = if commit { "commit" } else { "abort" };
            let mut records: Vec<(String, String)> = (0..6)
                .map(|i| {
                    let key = format!("k{}", (round * 7 + index * 3 + i) % 12);
                    (key, format!("{tag}-r{round}-p{index}-{i}-{pad}"))
                })
                .collect();
            if !commit {
                records.push(("only-aborted".into(), format!("abort-r{round}-only")));
            }
            let futures = send_keyed(producer, topic, &records);
            pending.push((commit, records, futures));
        }
        // A plain record between the transactions' data and their markers.
        let plain_record = vec![(format!("k{}", round % 12), format!("plain-r{round}"))];
        let plain_futures = send_keyed(&plain, topic, &plain_record);
        for (record, offset) in plain_record
            .into_iter()
            .zip(offsets_of(plain_futures).await)
        {
            model.committed.insert(offset, record);
        }
        for ((commit, records, futures), producer) in pending.into_iter().zip([&first, &second]) {
            producer.flush(CLIENT_TIMEOUT).expect("flush");
            let offsets = offsets_of(futures).await;
            if commit {
                for (offset, record) in offsets.into_iter().zip(records) {
                    model.committed.insert(offset, record);
                }
            } else {
                model
                    .aborted_values
                    .extend(records.into_iter().map(|(_, v)| v));
            }
        }
        for (index, producer) in [&first, &second].into_iter().enumerate() {
            if (round + index) % 2 == 0 {
                producer.commit_transaction(CLIENT_TIMEOUT).unwrap();
                model.commits += 1;
            } else {
                producer.abort_transaction(CLIENT_TIMEOUT).unwrap();
                model.aborts += 1;
            }
        }
    }
    let (_, high) = consumer(bootstrap)
        .fetch_watermarks(topic, 0, CLIENT_TIMEOUT)
        .expect("watermarks");
    model.txn_end = high;
    let filler: Vec<(String, String)> = (0..filler_count)
        .map(|i| (format!("filler-{i}"), format!("filler-{i}-{pad}")))
        .collect();
    for (offset, record) in offsets_of(send_keyed(&plain, topic, &filler))
        .await
        .into_iter()
        .zip(filler)
    {
        model.committed.insert(offset, record);
    }
    model
}

/// What both isolation levels read, against the model. Always: offsets increase, every record
/// is the one produced at its offset, every key's latest committed value is there at its
/// offset, and READ_COMMITTED sees no aborted value. Once `cleaned` (the cleaner checkpoint
/// passed `model.txn_end`): both see exactly the latest committed value per key and nothing
/// else (filler keys are unique, so all of them stay). Keys starting with `ignored` (records
/// written after the model) are skipped.
fn check_txn_model(
    bootstrap: &str,
    topic: &str,
    model: &TxnModel,
    cleaned: bool,
    ignored: Option<&str>,
) {
    let mut latest: BTreeMap<&str, (i64, &str)> = BTreeMap::new();
    for (offset, (key, value)) in &model.committed {
        latest.insert(key, (*offset, value));
    }
    let expected: BTreeMap<i64, (&str, &str)> = latest
        .iter()
        .map(|(key, (offset, value))| (*offset, (*key, *value)))
        .collect();
    assert!(!latest.contains_key("only-aborted"));
    for isolation in ["read_committed", "read_uncommitted"] {
        let consumer: rdkafka::consumer::BaseConsumer = consumer_config(bootstrap)
            .set("isolation.level", isolation)
            .create()
            .expect("consumer");
        let consumed = consume_all_with(consumer, topic, 1).remove(&0).unwrap();
        let mut previous = -1;
        let mut seen: BTreeMap<i64, (&str, &str)> = BTreeMap::new();
        for message in &consumed {
            let offset = message.offset();
            assert!(offset > previous, "{isolation}: {offset} after {previous}");
            previous = offset;
            let key = message.key().unwrap_or_default();
            if ignored.is_some_and(|prefix| key.starts_with(prefix.as_bytes())) {
                continue;
            }
            let value = String::from_utf8(message.payload().unwrap_or_default().to_vec()).unwrap();
            if model.aborted_values.contains(&value) {
                assert!(
                    !cleaned && isolation == "read_uncommitted",
                    "{isolation}: aborted value {value} at {offset}"
                );
                continue;
            }
            let (key, expected_value) = model
                .committed
                .get(&offset)
                .unwrap_or_else(|| panic!("{isolation}: {offset} holds no committed record"));
            assert_eq!(
                message.key(),
                Some(key.as_bytes()),
                "{isolation}: key at {offset}"
            );
            assert_eq!(&value, expected_value, "{isolation}: value at {offset}");
            seen.insert(offset, (key.as_str(), expected_value.as_str()));
        }
        if cleaned {
            assert_eq!(
                seen, expected,
                "{isolation}: not exactly the latest committed value per key"
            );
        } else if let Some((offset, record)) = expected.iter().find(|(o, _)| !seen.contains_key(o))
        {
            panic!("{isolation}: latest committed {record:?} at {offset} missing");
        }
    }
}

/// Transaction markers in the partition's segment files: (commits, aborts).
fn markers_on_disk(data_dir: &Path, topic: &str) -> (usize, usize) {
    let (mut commits, mut aborts) = (0, 0);
    for log in segment_logs(data_dir, topic, 0) {
        let bytes = std::fs::read(&log).unwrap();
        let mut position = 0usize;
        while position + 61 <= bytes.len() {
            let length = i32::from_be_bytes(bytes[position + 8..position + 12].try_into().unwrap());
            let attributes =
                i16::from_be_bytes(bytes[position + 21..position + 23].try_into().unwrap());
            if attributes & 0x20 != 0 {
                // One uncompressed control record: length, attributes, timestamp delta and
                // offset delta (one byte each here), key length, then key = version, type.
                let record = &bytes[position + 61..];
                let key_at = 5;
                match i16::from_be_bytes([record[key_at + 2], record[key_at + 3]]) {
                    0 => aborts += 1,
                    1 => commits += 1,
                    other => panic!("control type {other}"),
                }
            }
            position += 12 + length as usize;
        }
    }
    (commits, aborts)
}

/// A compacted topic of small segments, markers removable at once, filled by
/// [`produce_transactional`] (16 rounds, 60 filler records).
async fn transactional_topic(bootstrap: &str, topic: &str) -> TxnModel {
    create_topic(
        bootstrap,
        topic,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "3000"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "0"),
        ],
    )
    .await;
    produce_transactional(bootstrap, topic, 16, 60).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_with_transactions_keeps_committed_values_and_drops_aborted_ones() {
    let broker = Broker::start_with(CLEANER_SETTINGS);
    let bootstrap = broker.bootstrap();
    let topic = "compacted-txn";
    let model = transactional_topic(&bootstrap, topic).await;
    wait_for_cleaning(&broker.data_dir(), topic, model.txn_end);
    check_txn_model(&bootstrap, topic, &model, true, Some("more-"));

    // Markers go in a later pass (their data went in this one): more dirty data starts one.
    // Every ABORT marker goes; a COMMIT marker stays while a record of its transaction does.
    let plain: FutureProducer = producer_config(&bootstrap).create().expect("producer");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut round = 0;
    let (commits, aborts) = loop {
        let (commits, aborts) = markers_on_disk(&broker.data_dir(), topic);
        if aborts == 0 && commits < model.commits {
            break (commits, aborts);
        }
        assert!(
            Instant::now() < deadline,
            "markers remain: {commits} commits, {aborts} aborts"
        );
        let more: Vec<(String, String)> = (0..20)
            .map(|i| (format!("more-{round}-{i}"), "x".repeat(100)))
            .collect();
        offsets_of(send_keyed(&plain, topic, &more)).await;
        round += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    eprintln!(
        "markers written: {} commits, {} aborts; after cleaning: {commits} commits, {aborts} aborts",
        model.commits, model.aborts
    );
    let index_bytes: u64 = std::fs::read_dir(broker.data_dir().join(format!("{topic}-0")))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txnindex"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(
        index_bytes, 0,
        "aborted-transaction entries outlived their markers"
    );
    // Without markers or index entries, both isolation levels still read the same thing
    // (the model's filler was extended by `more-*` records, which the check ignores).
    check_txn_model(&bootstrap, topic, &model, true, Some("more-"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_transactional_cleaning_leaves_a_consistent_log() {
    // A slow cleaner (throttled reads) so that the kill lands in the middle of a pass.
    let mut broker = Broker::start_with(&[
        "log.cleaner.backoff.ms=200",
        "log.cleaner.io.max.bytes.per.second=20000",
    ]);
    let bootstrap = broker.bootstrap();
    let topic = "crash-clean-txn";
    let model = transactional_topic(&bootstrap, topic).await;
    let bootstrap = kill_mid_clean_and_restart(&mut broker, topic);
    // Whatever the kill interrupted, the log is consistent ...
    check_txn_model(&bootstrap, topic, &model, false, None);
    // ... and cleaning resumes to the same end state.
    wait_for_cleaning(&broker.data_dir(), topic, model.txn_end);
    check_txn_model(&bootstrap, topic, &model, true, None);
}
