//! Micro-benchmarks of the broker's hot paths (criterion; `cargo bench --bench hot_paths`).
//!
//! - `batch_validation`: `BatchIter` + `validate_produced` (header parse + CRC32C, no record
//!   decoding) over a 1 MiB buffer of 16 KiB batches, and over one 16 KiB batch of 100-byte
//!   records. Throughput in bytes.
//! - `offset_index`: `OffsetIndex::lookup` for random targets in an index of 100k entries.
//! - `partition_append`: `PartitionLog::append` of one 16 KiB batch into a log in a temp dir
//!   (default topic config: no fsync per append, so this measures the page-cache write path).
//! - `cleaner`: one compaction pass (`log::cleaner::clean`) over a 16 MiB log of 1 MiB
//!   segments holding 100-byte values under 1,000 keys (uncompressed and lz4). Throughput in
//!   bytes read; building the log is not timed.
//!
//! Sample sizes and measurement times are kept small so the whole run stays well under two
//! minutes on a 2-core VM; every group warms up first (first-touch memory is slow there).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use dlog::config::Properties;
use dlog::log::cleaner::{clean, CleanerSettings};
use dlog::log::log_config::LogConfig;
use dlog::log::offset_index::OffsetIndex;
use dlog::log::partition::{Checkpoints, PartitionLog};
use dlog::record::batch::{self, BatchIter};
use dlog::record::builder::BatchBuilder;
use dlog::record::codec::Codec;

const BATCH_SIZE_BYTES: usize = 16 * 1024;
const BUFFER_SIZE_BYTES: usize = 1024 * 1024;
const INDEX_ENTRIES: usize = 100_000;
const LOOKUPS_PER_ITERATION: usize = 1_024;
/// The append bench starts a fresh log once this much has been written, so a long run does not
/// fill the disk (reopening is not timed).
const APPEND_LOG_BYTES_MAX: usize = 256 * 1024 * 1024;

/// One uncompressed batch of `value_size_bytes` records, as close to (not above)
/// `target_size_bytes` as whole records allow.
fn batch_of(target_size_bytes: usize, value_size_bytes: usize, timestamp_ms: i64) -> Vec<u8> {
    let build = |count: usize| {
        (0..count)
            .fold(BatchBuilder::new(timestamp_ms), |builder, i| {
                builder.record(None, Some(&vec![i as u8; value_size_bytes]), timestamp_ms)
            })
            .build()
    };
    // Record sizes grow by a byte once offset deltas need two varint bytes: search upward.
    let mut count = 1;
    while build(count + 1).len() <= target_size_bytes {
        count += 1;
    }
    build(count)
}

/// Sums record counts so the validation result is used; panics on an invalid batch.
fn validate_all(bytes: &[u8]) -> i64 {
    let mut records = 0i64;
    for item in BatchIter::new(bytes) {
        let (_, header) = item.expect("valid batch");
        batch::validate_produced(&header).expect("valid produced batch");
        records += i64::from(header.records_count);
    }
    records
}

fn batch_validation(c: &mut Criterion) {
    let now_ms = dlog::clock::now_ms();
    // 16 KiB batches of 1000-byte records, concatenated up to 1 MiB.
    let big_batch = batch_of(BATCH_SIZE_BYTES, 1000, now_ms);
    let mut buffer = Vec::with_capacity(BUFFER_SIZE_BYTES);
    while buffer.len() + big_batch.len() <= BUFFER_SIZE_BYTES {
        buffer.extend_from_slice(&big_batch);
    }
    // One 16 KiB batch of 100-byte records (the producer's default batch.size).
    let small_records = batch_of(BATCH_SIZE_BYTES, 100, now_ms);
    assert!(validate_all(&buffer) > 0 && validate_all(&small_records) > 0);

    let mut group = c.benchmark_group("batch_validation");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Bytes(buffer.len() as u64));
    group.bench_function("1MiB_of_16KiB_batches", |b| {
        b.iter(|| validate_all(black_box(&buffer)))
    });
    group.throughput(Throughput::Bytes(small_records.len() as u64));
    group.bench_function("one_16KiB_batch_of_100B_records", |b| {
        b.iter(|| validate_all(black_box(&small_records)))
    });
    group.finish();
}

/// xorshift64*: deterministic, dependency-free pseudo-random targets.
fn pseudo_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

fn offset_index(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let base_offset = 1_000_000i64;
    let path = dir.path().join("00000000000001000000.index");
    let mut index = OffsetIndex::open(&path, base_offset, INDEX_ENTRIES * 8).expect("open index");
    // One entry per ~4 KiB of log, as with index.interval.bytes=4096 and ~40-record batches.
    const OFFSETS_PER_ENTRY: i64 = 40;
    for i in 0..INDEX_ENTRIES as i64 {
        index.append(base_offset + i * OFFSETS_PER_ENTRY, (i * 4096) as u32);
    }
    assert!(index.is_full());
    let span = INDEX_ENTRIES as u64 * OFFSETS_PER_ENTRY as u64;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let targets: Vec<i64> = (0..LOOKUPS_PER_ITERATION)
        .map(|_| base_offset + (pseudo_random(&mut state) % span) as i64)
        .collect();

    let mut group = c.benchmark_group("offset_index");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(LOOKUPS_PER_ITERATION as u64));
    group.bench_function("lookup_random_100k_entries_x1024", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for &target in black_box(&targets) {
                let (offset, position) = index.lookup(target);
                sum = sum.wrapping_add(offset as u64 ^ u64::from(position));
            }
            sum
        })
    });
    group.finish();
}

fn open_log(dir: &Path) -> PartitionLog {
    let config = Arc::new(LogConfig::new(&Properties::default(), &BTreeMap::new()));
    PartitionLog::open(dir, "bench", 0, config, Checkpoints::default(), true).expect("open log")
}

fn partition_append(c: &mut Criterion) {
    let now_ms = dlog::clock::now_ms();
    let batch = batch_of(BATCH_SIZE_BYTES, 1000, now_ms);
    let appends_per_log = APPEND_LOG_BYTES_MAX / batch.len();

    let mut group = c.benchmark_group("partition_append");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("append_16KiB_batch_page_cache", |b| {
        b.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            let mut remaining = iterations;
            while remaining > 0 {
                let dir = tempfile::tempdir().expect("temp dir");
                let log = open_log(dir.path());
                let chunk = remaining.min(appends_per_log as u64);
                let start = Instant::now();
                for _ in 0..chunk {
                    black_box(log.append(black_box(&batch), now_ms).expect("append"));
                }
                elapsed += start.elapsed();
                remaining -= chunk;
                // Dropping the log and the directory (unlink of page-cache pages) is not timed.
            }
            elapsed
        })
    });
    group.finish();
}

/// A compacted log of `total_bytes` in 1 MiB segments: batches of 50 keyed 100-byte records,
/// keys cycling through `keys`.
fn compacted_log(
    dir: &Path,
    total_bytes: usize,
    keys: usize,
    codec: Codec,
    now_ms: i64,
) -> PartitionLog {
    let overrides: BTreeMap<String, String> =
        [("cleanup.policy", "compact"), ("segment.bytes", "1048576")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let config = Arc::new(LogConfig::new(&Properties::default(), &overrides));
    let log = PartitionLog::open(
        dir,
        "bench-compacted",
        0,
        config,
        Checkpoints::default(),
        true,
    )
    .expect("open log");
    let value = [7u8; 100];
    let mut written = 0usize;
    let mut next_key = 0usize;
    while written < total_bytes {
        let mut builder = BatchBuilder::new(now_ms).codec(codec);
        for _ in 0..50 {
            let key = format!("key-{}", next_key % keys);
            next_key += 1;
            builder = builder.record(Some(key.as_bytes()), Some(&value), now_ms);
        }
        let batch = builder.build();
        written += batch.len();
        log.append(&batch, now_ms).expect("append");
    }
    log.flush(now_ms).expect("flush");
    log
}

fn cleaner(c: &mut Criterion) {
    const LOG_BYTES: usize = 16 * 1024 * 1024;
    let settings = CleanerSettings {
        enabled: true,
        backoff_ms: 15_000,
        dedupe_buffer_bytes: 128 * 1024 * 1024,
        io_bytes_per_second_max: f64::INFINITY,
        threads: 1,
    };
    let mut group = c.benchmark_group("cleaner");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    for (name, codec) in [("none", Codec::None), ("lz4", Codec::Lz4)] {
        let now_ms = dlog::clock::now_ms();
        let probe_dir = tempfile::tempdir().expect("temp dir");
        let probe = compacted_log(probe_dir.path(), LOG_BYTES, 1_000, codec, now_ms);
        let sealed_bytes: u64 = probe.sealed_segments().iter().map(|s| s.size_bytes).sum();
        group.throughput(Throughput::Bytes(sealed_bytes));
        group.bench_function(format!("clean_16MiB_1000_keys_{name}"), |b| {
            b.iter_custom(|iterations| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iterations {
                    let dir = tempfile::tempdir().expect("temp dir");
                    let log = compacted_log(dir.path(), LOG_BYTES, 1_000, codec, now_ms);
                    let start = Instant::now();
                    let (stats, retired) = clean(&log, 0, now_ms + 1, settings)
                        .expect("clean")
                        .expect("cleanable");
                    elapsed += start.elapsed();
                    assert!(stats.records_removed > 0);
                    drop(retired);
                }
                elapsed
            })
        });
    }
    group.finish();
}

/// `batch` stamped with a producer id, epoch 0 and `first_sequence`, CRC recomputed.
fn stamped(batch: &[u8], producer_id: i64, first_sequence: i32) -> Vec<u8> {
    let mut batch = batch.to_vec();
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&0i16.to_be_bytes());
    batch[53..57].copy_from_slice(&first_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// Idempotent versus plain appends of the same 16 KiB batches (issue 4 asks idempotence to
/// cost < 5%): the producer-state check and update are the only difference. Batches are built
/// untimed, 512 at a time.
fn idempotent_append(c: &mut Criterion) {
    const BATCHES_PER_ROUND: usize = 512;
    let now_ms = dlog::clock::now_ms();
    let batch = batch_of(BATCH_SIZE_BYTES, 1000, now_ms);
    let records_per_batch = i32::from_be_bytes(batch[57..61].try_into().unwrap());
    let appends_per_log = APPEND_LOG_BYTES_MAX / batch.len();
    let mut group = c.benchmark_group("idempotent_append");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Bytes(batch.len() as u64));
    for idempotent in [false, true] {
        let name = if idempotent {
            "idempotent_16KiB_batch"
        } else {
            "plain_16KiB_batch"
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                let mut elapsed = Duration::ZERO;
                let mut remaining = iterations;
                while remaining > 0 {
                    let dir = tempfile::tempdir().expect("temp dir");
                    let log = open_log(dir.path());
                    let mut sequence = 0i32;
                    let mut in_log = 0usize;
                    while remaining > 0 && in_log < appends_per_log {
                        let round = (remaining as usize).min(BATCHES_PER_ROUND);
                        let batches: Vec<Vec<u8>> = (0..round)
                            .map(|i| {
                                if idempotent {
                                    stamped(&batch, 7, sequence + i as i32 * records_per_batch)
                                } else {
                                    batch.clone()
                                }
                            })
                            .collect();
                        sequence += round as i32 * records_per_batch;
                        let start = Instant::now();
                        for batch in &batches {
                            black_box(log.append(black_box(batch), now_ms).expect("append"));
                        }
                        elapsed += start.elapsed();
                        remaining -= round as u64;
                        in_log += round;
                    }
                }
                elapsed
            })
        });
    }
    group.finish();
}

/// What metrics cost a request with the Prometheus recorder installed (as under
/// `--metrics-listen`): the dispatch timer (a counter, a histogram sample, two byte counters)
/// and the per-topic produce counters. Histogram samples are folded into their buckets by the
/// recorder's upkeep (untimed here, every 100k iterations; in dlog every 5 s and at scrape).
/// Runs last: the recorder is process-wide once installed.
fn metrics_recording(c: &mut Criterion) {
    let prometheus = dlog::metrics::install().expect("install the Prometheus recorder");
    // A Produce v9 request header: api key 0, version 9, correlation id, client id.
    let mut frame = vec![0u8, 0, 0, 9, 0, 0, 0, 1, 0, 4];
    frame.extend_from_slice(b"perf");
    frame.resize(16 * 1024, 0);
    let mut group = c.benchmark_group("metrics_recording");
    group.throughput(Throughput::Elements(1));
    let chunk = 100_000u64;
    group.bench_function("request_timer_start_and_answered", |b| {
        b.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            let mut remaining = iterations;
            while remaining > 0 {
                let count = remaining.min(chunk);
                let start = Instant::now();
                for _ in 0..count {
                    let timer = dlog::metrics::RequestTimer::start(black_box(&frame));
                    timer.answered(black_box(64));
                }
                elapsed += start.elapsed();
                remaining -= count;
                prometheus.run_upkeep();
            }
            elapsed
        })
    });
    group.bench_function("topic_produced", |b| {
        b.iter(|| dlog::metrics::topic_produced(black_box("orders"), black_box(16 * 1024), 100))
    });
    group.bench_function("render_recorder", |b| {
        b.iter(|| black_box(prometheus.render()))
    });
    group.finish();
}

criterion_group!(
    benches,
    batch_validation,
    offset_index,
    partition_append,
    cleaner,
    idempotent_append,
    metrics_recording
);
criterion_main!(benches);
