//! Log compaction (`cleanup.policy=compact`): keeps the latest record of every key, with its
//! original offset, in the sealed segments of a log.
//!
//! One pass over a log, as Kafka's LogCleaner does it:
//! 1. The dirty section starts at the log's cleaner checkpoint (`first_dirty`); it ends at
//!    the active segment, or earlier at the first segment younger than
//!    `min.compaction.lag.ms`, or where the key map is full
//!    (`log.cleaner.dedupe.buffer.size`).
//! 2. A key map (key → latest offset) is built over the dirty section.
//! 3. Every sealed segment up to the end of the dirty section is rewritten without the
//!    records a later one supersedes and without tombstones older than
//!    `delete.retention.ms`; batches keep their codec (re-compressed), base offset and
//!    producer fields. Control and transactional batches are kept whole (the transaction
//!    index that says which are aborted belongs to the transaction work).
//! 4. Each rewritten segment replaces the old one through a crash-safe swap
//!    ([`PartitionLog::replace_sealed_segment`]); the active segment is never touched.
//!
//! Reads are throttled to `log.cleaner.io.max.bytes.per.second`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use crate::record::batch::BatchHeader;
use crate::record::{recompress, records};

use super::partition::{PartitionLog, SealedSegment, CLEANED_SUFFIX};
use super::segment::{file_stem, RetiredSegment, Segment};

/// Broker-wide cleaner settings.
#[derive(Clone, Copy, Debug)]
pub struct CleanerSettings {
    pub dedupe_buffer_bytes: u64,
    pub io_bytes_per_second_max: f64,
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

/// Keeps the cleaner below a byte rate by sleeping.
struct Throttle {
    bytes_per_second_max: f64,
    started: Instant,
    bytes: u64,
}

impl Throttle {
    fn new(bytes_per_second_max: f64) -> Throttle {
        Throttle {
            bytes_per_second_max,
            started: Instant::now(),
            bytes: 0,
        }
    }

    fn account(&mut self, bytes: u64) {
        self.bytes += bytes;
        if !self.bytes_per_second_max.is_finite() || self.bytes_per_second_max <= 0.0 {
            return;
        }
        let due = Duration::from_secs_f64(self.bytes as f64 / self.bytes_per_second_max);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            std::thread::sleep((due - elapsed).min(Duration::from_secs(10)));
        }
    }
}

/// Every whole batch of a sealed segment, in order: (header, batch bytes).
fn batches(
    segment: &SealedSegment,
    throttle: &mut Throttle,
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

/// Whether the batch is one the cleaner leaves whole.
fn kept_whole(header: &BatchHeader) -> bool {
    header.is_control() || header.is_transactional()
}

/// One cleaning pass over `log` from `first_dirty_offset`. Returns None when there is
/// nothing cleanable (no sealed segment past the checkpoint, or all too young).
pub fn clean(
    log: &PartitionLog,
    first_dirty_offset: i64,
    now_ms: i64,
    settings: CleanerSettings,
) -> io::Result<Option<(CleanStats, Vec<RetiredSegment>)>> {
    let config = log.config();
    let sealed = log.sealed_segments();
    let mut throttle = Throttle::new(settings.io_bytes_per_second_max);
    // The dirty, cleanable segments: past the checkpoint, old enough.
    let dirty: Vec<&SealedSegment> = sealed
        .iter()
        .filter(|s| s.next_offset > first_dirty_offset)
        .take_while(|s| now_ms - s.max_timestamp_ms >= config.min_compaction_lag_ms)
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
        for (header, bytes) in batches(segment, &mut throttle)? {
            stats.bytes_read += bytes.len() as u64;
            if kept_whole(&header) {
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
    debug_assert!(end_offset > first_dirty_offset);
    let delete_horizon_ms = now_ms - config.delete_retention_ms;
    let mut retired = Vec::new();
    for segment in sealed.iter().filter(|s| s.base_offset < end_offset) {
        let mut output: Vec<u8> = Vec::with_capacity(segment.size_bytes as usize);
        let mut removed_here = 0u64;
        for (header, bytes) in batches(segment, &mut throttle)? {
            if kept_whole(&header) {
                output.extend_from_slice(&bytes);
                continue;
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
                    let expired_tombstone =
                        r.value.is_none() && header.max_timestamp < delete_horizon_ms;
                    // Records past the key map's end are not compared with anything.
                    r.offset >= end_offset || !(superseded || expired_tombstone)
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
        if let Some(old) =
            log.replace_sealed_segment(segment.base_offset, segment.size_bytes, &cleaned_path)?
        {
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
