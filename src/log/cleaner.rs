//! Log compaction (`cleanup.policy=compact`): keeps the latest record of every key, with its
//! original offset, in the sealed segments of a log.
//!
//! One pass over a log, as Kafka's LogCleaner does it:
//! 1. The dirty section starts at the log's cleaner checkpoint (`first_dirty`); it ends at
//!    the active segment, or earlier at the first segment younger than
//!    `min.compaction.lag.ms`, at the first segment reaching the last stable offset (an
//!    undecided transaction's data is never touched), or where the key map is full
//!    (`log.cleaner.dedupe.buffer.size`).
//! 2. A key map (key → latest offset) is built over the dirty section. Records of aborted
//!    transactions are not in it: they must never supersede a committed value.
//! 3. Every sealed segment up to the end of the dirty section is rewritten without the
//!    records a later one supersedes and without tombstones older than
//!    `delete.retention.ms`; batches keep their codec (re-compressed), base offset and
//!    producer fields (committed transactional batches keep their transactional flag).
//! 4. Transactions, as Kafka's cleaner handles them ([`CleanedTransactions`]): batches of
//!    aborted transactions (the partition's aborted-transaction index says which) are
//!    dropped whole. A COMMIT or ABORT marker stays while any batch of its transaction was
//!    still in the log at the start of the pass, and until it is older than
//!    `delete.retention.ms`; then it goes, and an ABORT marker's `.txnindex` entry with it.
//!    So a READ_COMMITTED reader never meets aborted data without its index entry and
//!    marker, nor an index entry without its marker.
//! 5. Each rewritten segment replaces the old one through a crash-safe swap
//!    ([`PartitionLog::replace_sealed_segment`]); the active segment is never touched.
//!
//! Reads are throttled to `log.cleaner.io.max.bytes.per.second`, one budget shared by every
//! log cleaned at once ([`IoThrottle`]).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::{self, Properties};
use crate::record::batch::BatchHeader;
use crate::record::{control, recompress, records};

use super::partition::{PartitionLog, SealedSegment, CLEANED_SUFFIX};
use super::producer_state::AbortedTxn;
use super::segment::{file_stem, RetiredSegment, Segment};

/// Broker-wide cleaner settings, read once from the broker properties (none of them is a
/// dynamic broker config).
#[derive(Clone, Copy, Debug)]
pub struct CleanerSettings {
    /// `log.cleaner.enable` and at least one thread: whether the cleaner runs at all.
    pub enabled: bool,
    /// Pause between passes (`log.cleaner.backoff.ms`), at least 100 ms.
    pub backoff_ms: u64,
    /// Key map budget of one cleaning thread (Kafka splits the buffer across the threads).
    pub dedupe_buffer_bytes: u64,
    /// Read rate of all cleaning threads together.
    pub io_bytes_per_second_max: f64,
    /// Logs cleaned at once (`log.cleaner.threads`), at least 1.
    pub threads: usize,
}

impl CleanerSettings {
    pub fn from_properties(properties: &Properties) -> CleanerSettings {
        let threads = properties.get_i64(config::LOG_CLEANER_THREADS);
        let threads_at_least_one = threads.max(1) as u64;
        CleanerSettings {
            enabled: properties.get_bool(config::LOG_CLEANER_ENABLE) && threads > 0,
            backoff_ms: properties.get_i64(config::LOG_CLEANER_BACKOFF_MS).max(100) as u64,
            dedupe_buffer_bytes: properties.get_i64(config::LOG_CLEANER_DEDUPE_BUFFER_SIZE) as u64
                / threads_at_least_one,
            io_bytes_per_second_max: properties
                .get_f64(config::LOG_CLEANER_IO_MAX_BYTES_PER_SECOND),
            threads: threads_at_least_one as usize,
        }
    }
}

/// What one pass did, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleanStats {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_removed: u64,
    pub segments_rewritten: u64,
    /// Bytes the rewritten segments shrank by.
    pub bytes_removed: u64,
    /// The new cleaner checkpoint: everything below has been deduplicated.
    pub first_dirty_offset: i64,
}

/// Memory charged per key map entry beyond the key bytes (offset, hash table overhead).
const KEY_ENTRY_OVERHEAD_BYTES: u64 = 48;

/// Keeps the cleaner below a byte rate by sleeping; shared by the threads of a pass. Credit
/// left over from an idle stretch is capped at [`THROTTLE_WINDOW`]'s worth, so a pause does
/// not buy a burst.
pub struct IoThrottle {
    bytes_per_second_max: f64,
    /// Start of the current window and the bytes accounted in it.
    window: Mutex<(Instant, u64)>,
}

const THROTTLE_WINDOW: Duration = Duration::from_secs(1);
/// Longest single sleep, so a shutdown is never held up for long.
const THROTTLE_SLEEP_MAX: Duration = Duration::from_secs(10);

impl IoThrottle {
    pub fn new(bytes_per_second_max: f64) -> IoThrottle {
        IoThrottle {
            bytes_per_second_max,
            window: Mutex::new((Instant::now(), 0)),
        }
    }

    fn unlimited(&self) -> bool {
        !self.bytes_per_second_max.is_finite() || self.bytes_per_second_max <= 0.0
    }

    /// Records `bytes` read and sleeps (without holding the lock) until the rate allows them.
    pub fn account(&self, bytes: u64) {
        if self.unlimited() {
            return;
        }
        let wait = {
            let mut window = self.window.lock().expect("throttle lock");
            window.1 += bytes;
            let due = Duration::from_secs_f64(window.1 as f64 / self.bytes_per_second_max);
            let elapsed = window.0.elapsed();
            if due > elapsed {
                due - elapsed
            } else {
                if elapsed >= THROTTLE_WINDOW {
                    *window = (Instant::now(), 0);
                }
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            std::thread::sleep(wait.min(THROTTLE_SLEEP_MAX));
        }
    }
}

/// Every whole batch of a sealed segment, in order: (header, batch bytes).
fn batches(
    segment: &SealedSegment,
    throttle: &IoThrottle,
) -> io::Result<Vec<(BatchHeader, Vec<u8>)>> {
    let mut output = Vec::new();
    let mut position = 0u64;
    while let Some(header) = Segment::read_header(&segment.file, position, segment.size_bytes)? {
        let size = header.size_bytes();
        if header.batch_length <= 0 || position + size as u64 > segment.size_bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "segment {} has a bad batch at {position}",
                    segment.base_offset
                ),
            ));
        }
        let mut bytes = vec![0u8; size];
        segment.file.read_exact_at(&mut bytes, position)?;
        throttle.account(size as u64);
        output.push((header, bytes));
        position += size as u64;
    }
    Ok(output)
}

fn invalid(error: anyhow::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

/// The partition's aborted transactions by producer id: which transactional batches are
/// aborted data.
struct AbortedIndex {
    by_producer: HashMap<i64, Vec<AbortedTxn>>,
}

impl AbortedIndex {
    fn new(aborted: Vec<AbortedTxn>) -> AbortedIndex {
        let mut by_producer: HashMap<i64, Vec<AbortedTxn>> = HashMap::new();
        for txn in aborted {
            by_producer.entry(txn.producer_id).or_default().push(txn);
        }
        AbortedIndex { by_producer }
    }

    /// The aborted transaction a data batch belongs to, if any. A producer has at most one
    /// transaction open per partition, so its aborted ones never overlap.
    fn transaction_of(&self, header: &BatchHeader) -> Option<&AbortedTxn> {
        if !header.is_transactional() || header.is_control() {
            return None;
        }
        self.by_producer
            .get(&header.producer_id)?
            .iter()
            .find(|t| t.first_offset <= header.base_offset && header.last_offset() <= t.last_offset)
    }
}

/// Transaction state along one rewrite pass, oldest segment first (Kafka's
/// `CleanedTransactionMetadata`): which transactions still had data in the log when the pass
/// began, so that their markers stay.
struct CleanedTransactions<'a> {
    aborted: &'a AbortedIndex,
    /// Marker offsets of aborted transactions whose data this pass met (and drops).
    aborted_with_data: HashSet<i64>,
    /// Producers whose current (committed) transaction this pass met a batch of.
    committed_with_data: HashSet<i64>,
}

/// What to do with one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BatchFate {
    /// Drop the whole batch: aborted data, or a marker no longer needed.
    Drop,
    /// Keep the control batch as it is.
    KeepWhole,
    /// A data batch: filter its records by key and tombstone age.
    Compact,
}

impl<'a> CleanedTransactions<'a> {
    fn new(aborted: &'a AbortedIndex) -> CleanedTransactions<'a> {
        CleanedTransactions {
            aborted,
            aborted_with_data: HashSet::new(),
            committed_with_data: HashSet::new(),
        }
    }

    /// Called for every batch of the pass in log order. `marker_expired`: the batch is older
    /// than `delete.retention.ms`.
    fn on_batch(&mut self, header: &BatchHeader, bytes: &[u8], marker_expired: bool) -> BatchFate {
        if header.is_control() {
            let had_data = match control::is_commit(bytes, header) {
                Some(true) => self.committed_with_data.remove(&header.producer_id),
                Some(false) => {
                    // An ABORT whose transaction left no index entry still ends the producer's
                    // transaction: keep it while any of its batches were met.
                    let aborted = self.aborted_with_data.remove(&header.base_offset);
                    self.committed_with_data.remove(&header.producer_id) || aborted
                }
                // Not a transaction marker: not ours to remove.
                None => return BatchFate::KeepWhole,
            };
            return if had_data || !marker_expired {
                BatchFate::KeepWhole
            } else {
                BatchFate::Drop
            };
        }
        if let Some(txn) = self.aborted.transaction_of(header) {
            self.aborted_with_data.insert(txn.last_offset);
            return BatchFate::Drop;
        }
        if header.is_transactional() {
            self.committed_with_data.insert(header.producer_id);
        }
        BatchFate::Compact
    }
}

/// One cleaning pass over `log` from `first_dirty_offset`, at full speed. Returns None when
/// there is nothing cleanable (no sealed segment past the checkpoint, or all too young or
/// not yet stable).
pub fn clean(
    log: &PartitionLog,
    first_dirty_offset: i64,
    now_ms: i64,
    settings: CleanerSettings,
) -> io::Result<Option<(CleanStats, Vec<RetiredSegment>)>> {
    let throttle = IoThrottle::new(settings.io_bytes_per_second_max);
    clean_throttled(log, first_dirty_offset, now_ms, settings, &throttle)
}

/// [`clean`] with reads charged to `throttle`, which other passes may share.
pub fn clean_throttled(
    log: &PartitionLog,
    first_dirty_offset: i64,
    now_ms: i64,
    settings: CleanerSettings,
    throttle: &IoThrottle,
) -> io::Result<Option<(CleanStats, Vec<RetiredSegment>)>> {
    let config = log.config();
    // The last stable offset and the aborted transactions below it, read together: every
    // transaction with data below that offset is decided, and the aborted ones are listed.
    let (last_stable_offset, aborted) = log.stable_view();
    let aborted = AbortedIndex::new(aborted);
    let sealed = log.sealed_segments();
    // The dirty, cleanable segments: past the checkpoint, old enough, wholly stable.
    let dirty: Vec<&SealedSegment> = sealed
        .iter()
        .filter(|s| s.next_offset > first_dirty_offset)
        .take_while(|s| {
            now_ms - s.max_timestamp_ms >= config.min_compaction_lag_ms
                && s.next_offset <= last_stable_offset
        })
        .collect();
    if dirty.is_empty() {
        return Ok(None);
    }
    // Key map over the dirty section, bounded by the dedupe buffer: stop at a segment
    // boundary once full (the rest waits for the next pass), but take at least one segment.
    let mut latest: HashMap<Vec<u8>, i64> = HashMap::new();
    let mut map_bytes = 0u64;
    let mut end_offset = first_dirty_offset;
    let mut stats = CleanStats::default();
    for segment in &dirty {
        let mut segment_map: Vec<(Vec<u8>, i64)> = Vec::new();
        let mut segment_bytes = 0u64;
        for (header, bytes) in batches(segment, throttle)? {
            stats.bytes_read += bytes.len() as u64;
            if header.is_control() || aborted.transaction_of(&header).is_some() {
                continue;
            }
            let section = records::records_section(&bytes, &header).map_err(invalid)?;
            for record in records::decode(&section, &header).map_err(invalid)? {
                if record.offset < first_dirty_offset {
                    continue;
                }
                if let Some(key) = record.key {
                    segment_bytes += key.len() as u64 + KEY_ENTRY_OVERHEAD_BYTES;
                    segment_map.push((key.to_vec(), record.offset));
                }
            }
        }
        if map_bytes + segment_bytes > settings.dedupe_buffer_bytes
            && end_offset > first_dirty_offset
        {
            break;
        }
        map_bytes += segment_bytes;
        for (key, offset) in segment_map {
            latest.insert(key, offset);
        }
        end_offset = segment.next_offset;
    }
    assert!(end_offset > first_dirty_offset && end_offset <= last_stable_offset);
    let delete_horizon_ms = now_ms - config.delete_retention_ms;
    let mut transactions = CleanedTransactions::new(&aborted);
    let mut retired = Vec::new();
    for segment in sealed.iter().filter(|s| s.next_offset <= end_offset) {
        let mut output: Vec<u8> = Vec::with_capacity(segment.size_bytes as usize);
        let mut removed_here = 0u64;
        // ABORT markers dropped from this segment: their index entries go with them.
        let mut dropped_abort_markers: Vec<i64> = Vec::new();
        for (header, bytes) in batches(segment, throttle)? {
            let expired = header.max_timestamp < delete_horizon_ms;
            match transactions.on_batch(&header, &bytes, expired) {
                BatchFate::KeepWhole => {
                    output.extend_from_slice(&bytes);
                    continue;
                }
                BatchFate::Drop => {
                    if header.is_control() && control::is_commit(&bytes, &header) == Some(false) {
                        dropped_abort_markers.push(header.base_offset);
                    }
                    removed_here += header.records_count.max(1) as u64;
                    continue;
                }
                BatchFate::Compact => {}
            }
            let section = records::records_section(&bytes, &header).map_err(invalid)?;
            let decoded = records::decode(&section, &header).map_err(invalid)?;
            let kept: Vec<(&[u8], i64)> = decoded
                .iter()
                .filter(|r| {
                    let superseded = r
                        .key
                        .and_then(|k| latest.get(k))
                        .is_some_and(|&newest| newest > r.offset);
                    let expired_tombstone = r.value.is_none() && expired;
                    !(superseded || expired_tombstone)
                })
                .map(|r| (r.raw, r.timestamp_ms))
                .collect();
            removed_here += (decoded.len() - kept.len()) as u64;
            if kept.len() == decoded.len() {
                output.extend_from_slice(&bytes);
            } else if !kept.is_empty() {
                output.extend_from_slice(
                    &recompress::retain_records(&bytes, &header, &kept).map_err(invalid)?,
                );
            }
        }
        if removed_here == 0 {
            continue;
        }
        let cleaned_path = log.dir().join(format!(
            "{}.log{CLEANED_SUFFIX}",
            file_stem(segment.base_offset)
        ));
        let mut file = File::create(&cleaned_path)?;
        file.write_all(&output)?;
        file.sync_all()?;
        drop(file);
        if let Some(old) = log.replace_sealed_segment(
            segment.base_offset,
            segment.size_bytes,
            &cleaned_path,
            &dropped_abort_markers,
        )? {
            retired.push(old);
            stats.records_removed += removed_here;
            stats.bytes_written += output.len() as u64;
            stats.bytes_removed += segment.size_bytes.saturating_sub(output.len() as u64);
            stats.segments_rewritten += 1;
        }
    }
    stats.first_dirty_offset = end_offset;
    Ok(Some((stats, retired)))
}

/// The share of a log's sealed bytes past the cleaner checkpoint (Kafka's dirty ratio), and
/// whether the oldest dirty data has waited past `max.compaction.lag.ms`.
pub fn needs_cleaning(log: &PartitionLog, first_dirty_offset: i64, now_ms: i64) -> bool {
    let config = log.config();
    if !config.compact {
        return false;
    }
    let sealed = log.sealed_segments();
    let total: u64 = sealed.iter().map(|s| s.size_bytes).sum();
    let dirty: Vec<&SealedSegment> = sealed
        .iter()
        .filter(|s| s.next_offset > first_dirty_offset)
        .collect();
    let dirty_bytes: u64 = dirty.iter().map(|s| s.size_bytes).sum();
    if dirty_bytes == 0 {
        return false;
    }
    let overdue = dirty.first().is_some_and(|s| {
        s.max_timestamp_ms >= 0 && now_ms - s.max_timestamp_ms > config.max_compaction_lag_ms
    });
    overdue || dirty_bytes as f64 / total as f64 >= config.min_cleanable_dirty_ratio
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::Properties;
    use crate::log::log_config::LogConfig;
    use crate::log::partition::Checkpoints;
    use crate::record::batch::{self, BatchIter, ATTRIBUTE_TRANSACTIONAL};
    use crate::record::builder::BatchBuilder;

    const SETTINGS: CleanerSettings = CleanerSettings {
        enabled: true,
        backoff_ms: 15_000,
        dedupe_buffer_bytes: 1 << 20,
        io_bytes_per_second_max: f64::INFINITY,
        threads: 1,
    };

    #[test]
    fn settings_come_from_the_broker_properties() {
        let defaults = CleanerSettings::from_properties(&Properties::default());
        assert!(defaults.enabled);
        assert_eq!(defaults.backoff_ms, 15_000);
        assert_eq!(defaults.dedupe_buffer_bytes, 134_217_728);
        assert_eq!(defaults.io_bytes_per_second_max, f64::MAX);
        assert_eq!(defaults.threads, 1);

        let mut properties = Properties::default();
        properties.set("log.cleaner.threads", "2").unwrap();
        properties.set("log.cleaner.backoff.ms", "10").unwrap();
        properties
            .set("log.cleaner.io.max.bytes.per.second", "1048576")
            .unwrap();
        let two = CleanerSettings::from_properties(&properties);
        assert_eq!((two.threads, two.dedupe_buffer_bytes), (2, 67_108_864));
        assert_eq!(two.backoff_ms, 100);
        assert_eq!(two.io_bytes_per_second_max, 1_048_576.0);

        properties.set("log.cleaner.threads", "0").unwrap();
        assert!(!CleanerSettings::from_properties(&properties).enabled);
        let mut disabled = Properties::default();
        disabled.set("log.cleaner.enable", "false").unwrap();
        assert!(!CleanerSettings::from_properties(&disabled).enabled);
    }

    /// A compacted log of ~2-batch segments.
    fn compacted_log(dir: &std::path::Path, delete_retention_ms: &str) -> PartitionLog {
        let overrides = [
            ("cleanup.policy", "compact"),
            ("segment.bytes", "200"),
            ("delete.retention.ms", delete_retention_ms),
            ("index.interval.bytes", "0"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config = Arc::new(LogConfig::new(&Properties::default(), &overrides));
        PartitionLog::open(dir, "t", 0, config, Checkpoints::default(), false).unwrap()
    }

    /// One record `key=value`, from `producer_id` at `sequence` (transactional when asked).
    fn record(key: &str, value: &str, producer: Option<(i64, i32, bool)>, now: i64) -> Vec<u8> {
        let mut bytes = BatchBuilder::new(now)
            .record(Some(key.as_bytes()), Some(value.as_bytes()), now)
            .build();
        if let Some((producer_id, sequence, transactional)) = producer {
            bytes[43..51].copy_from_slice(&producer_id.to_be_bytes());
            bytes[51..53].copy_from_slice(&0i16.to_be_bytes());
            bytes[53..57].copy_from_slice(&sequence.to_be_bytes());
            if transactional {
                bytes[21..23].copy_from_slice(&ATTRIBUTE_TRANSACTIONAL.to_be_bytes());
            }
            let crc = crc32c::crc32c(&bytes[21..]);
            bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        }
        bytes
    }

    /// (offset, key, value) of every data record, and the number of control batches.
    fn contents(log: &PartitionLog) -> (Vec<(i64, String, String)>, usize) {
        let bytes = log.read_all_from(log.offsets().log_start_offset).unwrap();
        let mut data = Vec::new();
        let mut markers = 0;
        for item in BatchIter::new(&bytes) {
            let (position, header) = item.unwrap();
            let batch_bytes = &bytes[position..position + header.size_bytes()];
            batch::validate(batch_bytes).unwrap();
            if header.is_control() {
                markers += 1;
                continue;
            }
            let section = records::records_section(batch_bytes, &header).unwrap();
            for r in records::decode(&section, &header).unwrap() {
                let text = |b: Option<&[u8]>| String::from_utf8(b.unwrap().to_vec()).unwrap();
                data.push((r.offset, text(r.key), text(r.value)));
            }
        }
        (data, markers)
    }

    fn filler(log: &PartitionLog, from: usize, count: usize, now: i64) {
        for i in from..from + count {
            log.append(&record(&format!("f{i}"), "x", None, now), now)
                .unwrap();
        }
    }

    fn txn_index_entries(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "txnindex"))
            .map(|p| std::fs::read(p).unwrap().len())
            .sum::<usize>()
            / crate::log::producer_state::TXN_INDEX_ENTRY_BYTES
    }

    #[test]
    fn aborted_data_goes_at_once_and_markers_once_their_data_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let log = compacted_log(dir.path(), "0");
        let now = crate::clock::now_ms();
        // Producer 1 commits k1=a1, k2=a2; producer 2, interleaved, aborts k1=b1, k3=b3.
        let a1 = log.append(&record("k1", "a1", Some((1, 0, true)), now), now);
        log.append(&record("k1", "b1", Some((2, 0, true)), now), now)
            .unwrap();
        log.append(&record("k2", "a2", Some((1, 1, true)), now), now)
            .unwrap();
        log.append(&record("k3", "b3", Some((2, 1, true)), now), now)
            .unwrap();
        log.append_marker(1, 0, 0, true, now).unwrap();
        log.append_marker(2, 0, 0, false, now).unwrap();
        // Producer 1 commits k2=c2.
        let c2 = log.append(&record("k2", "c2", Some((1, 2, true)), now), now);
        log.append_marker(1, 0, 0, true, now).unwrap();
        filler(&log, 0, 6, now);
        assert_eq!(log.aborted_transactions(0, i64::MAX).len(), 1);
        assert_eq!(txn_index_entries(dir.path()), 1);
        let (a1, c2) = (a1.unwrap().base_offset, c2.unwrap().base_offset);

        // Pass 1: the aborted records and the superseded a2 go; every marker stays (its
        // transaction still had data when the pass began), and so does the index entry.
        let later = now + 10;
        let (stats, _) = clean(&log, 0, later, SETTINGS).unwrap().unwrap();
        assert!(stats.records_removed >= 3, "{stats:?}");
        let (data, markers) = contents(&log);
        let txn_data: Vec<_> = data
            .iter()
            .filter(|(_, k, _)| !k.starts_with('f'))
            .collect();
        assert_eq!(
            txn_data,
            [
                &(a1, "k1".into(), "a1".into()),
                &(c2, "k2".into(), "c2".into())
            ]
        );
        assert_eq!(markers, 3);
        assert_eq!(log.aborted_transactions(0, i64::MAX).len(), 1);

        // Pass 2: the ABORT marker (no data left) goes with its index entry; both COMMIT
        // markers stay, as a1 and c2 remain.
        clean(&log, 0, later, SETTINGS).unwrap().unwrap();
        assert_eq!(contents(&log).1, 2);
        assert!(log.aborted_transactions(0, i64::MAX).is_empty());
        assert_eq!(txn_index_entries(dir.path()), 0);

        // Plain writes supersede a1 and c2: one pass removes them, the next the markers.
        log.append(&record("k1", "d1", None, now), now).unwrap();
        log.append(&record("k2", "d2", None, now), now).unwrap();
        filler(&log, 100, 6, now);
        clean(&log, 0, later, SETTINGS).unwrap().unwrap();
        let (data, markers) = contents(&log);
        assert!(!data.iter().any(|(o, _, _)| *o == a1 || *o == c2));
        assert_eq!(markers, 2);
        clean(&log, 0, later, SETTINGS).unwrap().unwrap();
        assert_eq!(contents(&log).1, 0);

        // After a restart the aborted list is still empty and the data the same.
        let before = contents(&log);
        drop(log);
        let log = compacted_log(dir.path(), "0");
        assert!(log.aborted_transactions(0, i64::MAX).is_empty());
        assert_eq!(contents(&log), before);
    }

    #[test]
    fn markers_stay_until_delete_retention_passes() {
        let dir = tempfile::tempdir().unwrap();
        let log = compacted_log(dir.path(), "60000");
        let now = crate::clock::now_ms();
        log.append(&record("k1", "b1", Some((2, 0, true)), now), now)
            .unwrap();
        log.append_marker(2, 0, 0, false, now).unwrap();
        filler(&log, 0, 6, now);
        for _ in 0..2 {
            clean(&log, 0, now + 10, SETTINGS).unwrap().unwrap();
        }
        assert_eq!(contents(&log).1, 1, "younger than delete.retention.ms");
        assert_eq!(log.aborted_transactions(0, i64::MAX).len(), 1);
        clean(&log, 0, now + 60_001, SETTINGS).unwrap().unwrap();
        assert_eq!(contents(&log).1, 0);
        assert!(log.aborted_transactions(0, i64::MAX).is_empty());
    }

    #[test]
    fn nothing_at_or_past_the_last_stable_offset_is_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let log = compacted_log(dir.path(), "0");
        let now = crate::clock::now_ms();
        filler(&log, 0, 4, now);
        // An open transaction, then plain writes that supersede its key and roll segments.
        let open = log
            .append(&record("k1", "open", Some((3, 0, true)), now), now)
            .unwrap()
            .base_offset;
        for i in 0..6 {
            log.append(&record("k1", &format!("plain{i}"), None, now), now)
                .unwrap();
        }
        assert_eq!(log.offsets().last_stable_offset, open);
        let (stats, _) = clean(&log, 0, now + 10, SETTINGS).unwrap().unwrap();
        assert!(stats.first_dirty_offset <= open, "{stats:?}");
        let (data, _) = contents(&log);
        assert!(data.iter().any(|(o, _, v)| *o == open && v == "open"));
        assert_eq!(
            data.iter().filter(|(_, k, _)| k == "k1").count(),
            7,
            "nothing past the LSO was compacted"
        );
        // Once the transaction commits, its record is superseded like any other.
        log.append_marker(3, 0, 0, true, now).unwrap();
        filler(&log, 10, 6, now);
        let (stats, _) = clean(&log, 0, now + 10, SETTINGS).unwrap().unwrap();
        assert!(stats.first_dirty_offset > open);
        let (data, _) = contents(&log);
        assert!(!data.iter().any(|(o, _, _)| *o == open));
    }

    #[test]
    fn the_throttle_is_shared() {
        let throttle = IoThrottle::new(1_000_000.0);
        let started = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    for _ in 0..10 {
                        throttle.account(10_000);
                    }
                });
            }
        });
        // 200 kB at 1 MB/s: about 0.2 s whichever thread read what.
        assert!(started.elapsed() >= Duration::from_millis(180));
    }
}
