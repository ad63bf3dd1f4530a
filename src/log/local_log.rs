//! The local log (Kafka's `LocalLog`): a partition's segments on disk. Appends go to the
//! active segment, which rolls when full or old; reads come back as file regions of one
//! segment; retention takes whole sealed segments out; the cleaner's rewritten segments are
//! swapped in; flushing advances the recovery point.
//!
//! It knows offsets, bytes and files, not producers, transactions or leader epochs: the
//! partition log composes those around it and decides the log start offset, which it passes
//! in where a read or retention depends on it.
//!
//! Invariants:
//! - There is always at least one segment. The last one is the active segment, the only one
//!   appended to; the others are sealed (read-only, indexes trimmed) and only ever replaced
//!   whole (a cleaned copy) or retired.
//! - Segments are keyed by base offset, ascending; the log end offset is the active segment's
//!   next offset.
//! - Everything below the recovery point is on disk (fsynced).
//! - Records below `flush_owed_end` but not below the recovery point are owed a flush by
//!   `flush.messages`: they are not acknowledgeable (see [`LocalLog::acknowledgeable_end_offset`]).
//! - A retired segment's files are renamed at once (a restart removes them) and deleted later
//!   by the caller; the active segment is never retired.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::record::batch::{self, BatchHeader};
use crate::record::records;

use super::checkpoint::sync_dir;
use super::error::OffsetOutOfRange;
use super::log_config::LogConfig;
use super::segment::{file_stem, RetiredSegment, Segment};

/// Largest batch the recovery scan accepts, so a corrupt length cannot ask for a huge buffer.
pub const RECOVERY_BATCH_BYTES_MAX: usize = 128 * 1024 * 1024;

/// Suffix of a cleaned segment being written; incomplete by definition after a crash.
pub const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix of a complete cleaned segment between the two renames of a swap.
pub const SWAP_SUFFIX: &str = ".swap";

/// A region of a segment file to send: the fetch path's zero-copy unit.
#[derive(Clone, Debug)]
pub struct FileSlice {
    pub file: Arc<File>,
    pub position: u64,
    pub length_bytes: u64,
}

impl FileSlice {
    pub fn read_to_vec(&self) -> io::Result<Vec<u8>> {
        let mut bytes = vec![0u8; self.length_bytes as usize];
        self.file.read_exact_at(&mut bytes, self.position)?;
        Ok(bytes)
    }
}

/// A sealed segment as the cleaner sees it: immutable bytes below `size_bytes`.
#[derive(Clone, Debug)]
pub struct SealedSegment {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size_bytes: u64,
    pub max_timestamp_ms: i64,
    pub file: Arc<File>,
}

pub struct LocalLog {
    dir: PathBuf,
    segments: BTreeMap<i64, Segment>,
    /// Everything below this offset is on disk (fsynced); recovery starts here after a crash.
    recovery_point: i64,
    unflushed_messages: i64,
    last_flush_ms: i64,
    /// With group commit, `flush.messages` owes a flush of everything below this offset
    /// (the flusher thread syncs it); 0 when nothing was ever owed.
    flush_owed_end: i64,
    /// Bumped by each truncation, so that a flush planned before one does not move the
    /// recovery point over offsets that were cut (and maybe written again) since.
    truncations: u64,
}

/// What a group-commit flush syncs off the lock: the files of the segments from the one
/// holding the recovery point on, and the log end when they were taken.
pub struct FlushPlan {
    files: Vec<Arc<File>>,
    end_offset: i64,
    truncations: u64,
}

impl FlushPlan {
    /// fdatasyncs the files (no lock held). fdatasync, not `sync_file_range`: the latter
    /// neither writes the file size an append grew nor flushes the device's cache.
    pub fn sync(&self) -> io::Result<()> {
        for file in &self.files {
            file.sync_data()?;
        }
        Ok(())
    }
}

impl LocalLog {
    /// The loaded `segments` of the partition directory `dir`, the last one active. The
    /// recovery point starts at 0 until the loader sets it.
    pub fn new(dir: &Path, segments: BTreeMap<i64, Segment>) -> LocalLog {
        assert!(!segments.is_empty(), "a log always has an active segment");
        LocalLog {
            dir: dir.to_path_buf(),
            segments,
            recovery_point: 0,
            unflushed_messages: 0,
            last_flush_ms: 0,
            flush_owed_end: 0,
            truncations: 0,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every segment by base offset, the active one last.
    pub fn segments(&self) -> &BTreeMap<i64, Segment> {
        &self.segments
    }

    pub fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    /// Base offset of the oldest segment.
    pub fn first_base_offset(&self) -> i64 {
        *self.segments.keys().next().expect("active segment")
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size_bytes).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    pub fn set_recovery_point(&mut self, offset: i64) {
        self.recovery_point = offset;
    }

    // -----------------------------------------------------------------------------------------
    // Appends and rolls

    /// Whether `incoming_bytes` must go to a new segment: the active one is non-empty and
    /// full (`segment.bytes`), old (`segment.ms`), has full indexes, or would overflow the
    /// indexes' 32-bit relative offsets or positions.
    pub fn should_roll(&self, config: &LogConfig, incoming_bytes: u64, now_ms: i64) -> bool {
        let active = self.active();
        let next_offset = active.next_offset();
        let too_big =
            active.size_bytes() > 0 && active.size_bytes() + incoming_bytes > config.segment_bytes;
        let too_old = active
            .first_append_ms()
            .is_some_and(|first| now_ms - first >= config.segment_ms);
        // Relative offsets and positions in the indexes are u32.
        let offsets_overflow = next_offset - active.base_offset() > i64::from(u32::MAX) / 2;
        let position_overflow = active.size_bytes() + incoming_bytes > u64::from(u32::MAX);
        active.size_bytes() > 0
            && (too_big
                || too_old
                || active.indexes_full()
                || offsets_overflow
                || position_overflow)
    }

    /// Seals the active segment (first half of a roll, or the clean-shutdown path).
    pub fn seal_active(&mut self) -> io::Result<()> {
        self.active_mut().seal()
    }

    /// Second half of a roll, after [`Self::seal_active`]: opens a new active segment at the
    /// log end offset. Returns its base offset.
    pub fn roll(&mut self, config: &LogConfig) -> io::Result<i64> {
        let next_offset = self.log_end_offset();
        let segment = Segment::open(
            &self.dir,
            next_offset,
            config.index_interval_bytes,
            config.segment_index_bytes,
        )?;
        self.segments.insert(next_offset, segment);
        Ok(next_offset)
    }

    /// Removes every batch from the one holding `offset` on (Kafka's `truncateTo`, for a
    /// follower whose log diverged from its leader's): later segments are deleted, and the
    /// segment holding `offset` is cut at that batch and becomes the active one again,
    /// reopened with appendable indexes rebuilt from its remaining batches. `offset` must be
    /// at or above the first segment's base offset (see [`Self::truncate_fully`]).
    pub fn truncate_to(&mut self, offset: i64, config: &LogConfig) -> io::Result<()> {
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        assert!(
            offset >= self.first_base_offset(),
            "truncation below the first segment goes through truncate_fully"
        );
        let keep_base = *self
            .segments
            .range(..=offset)
            .next_back()
            .expect("a segment at or below the offset")
            .0;
        let later: Vec<i64> = self
            .segments
            .range(keep_base + 1..)
            .map(|(b, _)| *b)
            .collect();
        for base in later {
            let segment = self.segments.remove(&base).expect("listed segment");
            delete_with_txn_index(&self.dir, segment)?;
        }
        let segment = self.segments.remove(&keep_base).expect("kept segment");
        let position = segment
            .find(offset)?
            .map_or(segment.size_bytes(), |batch| batch.position);
        segment.file().set_len(position)?;
        drop(segment); // unmaps its indexes before they are reopened appendable
        let mut reopened = Segment::open(
            &self.dir,
            keep_base,
            config.index_interval_bytes,
            config.segment_index_bytes,
        )?;
        reopened.recover(RECOVERY_BATCH_BYTES_MAX)?;
        self.segments.insert(keep_base, reopened);
        self.recovery_point = self.recovery_point.min(self.log_end_offset());
        self.flush_owed_end = self.flush_owed_end.min(self.log_end_offset());
        self.truncations += 1;
        Ok(())
    }

    /// Deletes every segment and starts the log empty at `offset` (Kafka's
    /// `truncateFullyAndStartAt`: a follower that fell below its leader's log start).
    pub fn truncate_fully(&mut self, offset: i64, config: &LogConfig) -> io::Result<()> {
        for (_, segment) in std::mem::take(&mut self.segments) {
            delete_with_txn_index(&self.dir, segment)?;
        }
        let segment = Segment::open(
            &self.dir,
            offset,
            config.index_interval_bytes,
            config.segment_index_bytes,
        )?;
        self.segments.insert(offset, segment);
        self.recovery_point = offset;
        self.flush_owed_end = offset;
        self.unflushed_messages = 0;
        self.truncations += 1;
        Ok(())
    }

    /// Appends batches whose offsets are assigned to the active segment (see
    /// [`Segment::append`]).
    pub fn append(
        &mut self,
        parts: &[IoSlice<'_>],
        batches: &[(u64, BatchHeader)],
        now_ms: i64,
    ) -> io::Result<()> {
        self.active_mut().append(parts, batches, now_ms)
    }

    /// Counts `record_count` appended records towards `flush.messages`. When reached, flushes
    /// at once, or with `group_commit` only marks everything so far as owed a flush and
    /// returns true: the caller queues the log for the flusher.
    pub fn count_unflushed(
        &mut self,
        record_count: i64,
        config: &LogConfig,
        now_ms: i64,
        group_commit: bool,
    ) -> io::Result<bool> {
        self.unflushed_messages += record_count;
        if self.unflushed_messages < config.flush_messages {
            return Ok(false);
        }
        if !group_commit {
            self.flush(now_ms)?;
            return Ok(false);
        }
        self.unflushed_messages = 0;
        self.flush_owed_end = self.log_end_offset();
        Ok(true)
    }

    /// Below this offset records may be acknowledged and counted by the high watermark: the
    /// log end, except while a flush owed by `flush.messages` is not done, when it is the
    /// recovery point (so with `flush.messages=1` only what is on disk).
    pub fn acknowledgeable_end_offset(&self) -> i64 {
        match self.recovery_point < self.flush_owed_end {
            true => self.recovery_point,
            false => self.log_end_offset(),
        }
    }

    /// The group-commit flush of everything appended so far, to sync off the lock and then
    /// complete with [`Self::complete_flush`]; None when everything is on disk.
    pub fn plan_flush(&self) -> Option<FlushPlan> {
        let end_offset = self.log_end_offset();
        let sealed_unflushed = self.recovery_point < self.active().base_offset();
        if self.recovery_point >= end_offset && !sealed_unflushed {
            return None;
        }
        let from = self
            .segments
            .range(..=self.recovery_point)
            .next_back()
            .map_or(i64::MIN, |(base, _)| *base);
        Some(FlushPlan {
            files: self
                .segments
                .range(from..)
                .map(|(_, s)| s.file().clone())
                .collect(),
            end_offset,
            truncations: self.truncations,
        })
    }

    /// Moves the recovery point to what `plan` synced, unless the log was truncated since.
    /// Sealed segments need no index flush here: sealing synced them, and the segment holding
    /// the recovery point has its indexes rebuilt by recovery.
    pub fn complete_flush(&mut self, plan: &FlushPlan, now_ms: i64) {
        if plan.truncations != self.truncations {
            return;
        }
        assert!(
            plan.end_offset <= self.log_end_offset(),
            "a flush covers only appended offsets"
        );
        self.recovery_point = self.recovery_point.max(plan.end_offset);
        self.last_flush_ms = now_ms;
        if self.recovery_point == self.log_end_offset() {
            self.unflushed_messages = 0;
        }
    }

    // -----------------------------------------------------------------------------------------
    // Flushing

    /// fsyncs every segment from the recovery point on and advances the recovery point.
    pub fn flush(&mut self, now_ms: i64) -> io::Result<()> {
        let started = std::time::Instant::now();
        let recovery_point = self.recovery_point;
        let from = self
            .segments
            .range(..=recovery_point)
            .next_back()
            .map_or(i64::MIN, |(base, _)| *base);
        for segment in self.segments.range(from..).map(|(_, s)| s) {
            segment.flush()?;
        }
        self.recovery_point = self.log_end_offset();
        self.unflushed_messages = 0;
        self.last_flush_ms = now_ms;
        crate::metrics::storage::flushed(started.elapsed());
        Ok(())
    }

    /// The periodic flush: `flush.ms` elapsed, or sealed segments not yet on disk (Kafka
    /// flushes a segment when it is rolled).
    pub fn maybe_flush(&mut self, config: &LogConfig, now_ms: i64) -> io::Result<()> {
        if self.flush_due(config, now_ms) {
            self.flush(now_ms)?;
        }
        Ok(())
    }

    /// Whether the periodic flush policy wants a flush now.
    pub fn flush_due(&self, config: &LogConfig, now_ms: i64) -> bool {
        let sealed_unflushed = self.recovery_point < self.active().base_offset();
        let due = self.unflushed_messages > 0 && now_ms - self.last_flush_ms >= config.flush_ms;
        sealed_unflushed || due
    }

    // -----------------------------------------------------------------------------------------
    // Reads

    /// The bytes to send for a fetch at `offset`: from the batch holding `offset` to at most
    /// `max_bytes` further (the whole first batch when `min_one_batch`), within one segment,
    /// stopping before the batch holding `upper_offset` when given. Offsets outside
    /// `[log_start_offset, log end]` are out of range.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: u64,
        min_one_batch: bool,
        upper_offset: Option<i64>,
        log_start_offset: i64,
    ) -> io::Result<Result<Option<FileSlice>, OffsetOutOfRange>> {
        if offset < log_start_offset || offset > self.log_end_offset() {
            return Ok(Err(OffsetOutOfRange));
        }
        let max_bytes = match upper_offset {
            Some(upper) if upper <= offset => return Ok(Ok(None)),
            Some(upper) if upper < self.log_end_offset() => {
                let segment = self.segments.range(..=offset).next_back().map(|(_, s)| s);
                match segment {
                    Some(segment) => match (segment.find(offset)?, segment.find(upper)?) {
                        // Only the bytes before the batch holding `upper`. When the first batch
                        // lies below it, this is at least that batch, so KIP-74's
                        // "at least one batch" cannot cross the bound.
                        (Some(start), Some(end)) => max_bytes.min(end.position - start.position),
                        _ => max_bytes,
                    },
                    None => max_bytes,
                }
            }
            _ => max_bytes,
        };
        if max_bytes == 0 {
            return Ok(Ok(None));
        }
        let first = self
            .segments
            .range(..=offset)
            .next_back()
            .map_or(i64::MIN, |(base, _)| *base);
        for segment in self.segments.range(first..).map(|(_, s)| s) {
            if let Some(found) = segment.find(offset)? {
                let end = segment.size_bytes();
                let available = end - found.position;
                let mut length = available.min(max_bytes);
                if length < found.header.size_bytes() as u64 {
                    length = if min_one_batch {
                        (found.header.size_bytes() as u64).min(available)
                    } else {
                        0
                    };
                }
                if length == 0 {
                    return Ok(Ok(None));
                }
                return Ok(Ok(Some(FileSlice {
                    file: segment.file().clone(),
                    position: found.position,
                    length_bytes: length,
                })));
            }
        }
        Ok(Ok(None))
    }

    /// Calls `visit(segment, position, header)` for every batch whose last offset is >= `from`,
    /// in offset order, reading headers only. Stops at the end of each segment's valid bytes.
    pub fn for_each_batch_from(
        &self,
        from: i64,
        mut visit: impl FnMut(&Segment, u64, &BatchHeader) -> io::Result<()>,
    ) -> io::Result<()> {
        let first = self
            .segments
            .range(..=from)
            .next_back()
            .map_or(i64::MIN, |(base, _)| *base);
        for segment in self.segments.range(first..).map(|(_, s)| s) {
            let Some(found) = segment.find(from)? else {
                continue;
            };
            let mut position = found.position;
            while let Some(header) =
                Segment::read_header(segment.file(), position, segment.size_bytes())?
            {
                if header.batch_length <= 0 {
                    break;
                }
                if header.last_offset() >= from {
                    visit(segment, position, &header)?;
                }
                position += header.size_bytes() as u64;
            }
        }
        Ok(())
    }

    /// The first record at or above `log_start_offset` with timestamp >= `target_ms`:
    /// (timestamp, offset).
    pub fn offset_for_timestamp(
        &self,
        target_ms: i64,
        log_start_offset: i64,
    ) -> io::Result<Option<(i64, i64)>> {
        for segment in self.segments.values() {
            if segment.max_timestamp().0 < target_ms {
                continue;
            }
            let start_offset = segment.time_lookup_offset(target_ms).max(log_start_offset);
            let Some(found) = segment.find(start_offset)? else {
                continue;
            };
            let mut position = found.position;
            while let Some(header) =
                Segment::read_header(segment.file(), position, segment.size_bytes())?
            {
                if header.max_timestamp >= target_ms {
                    let found = first_record_at_or_after(
                        segment.file(),
                        position,
                        &header,
                        |ts, offset| ts >= target_ms && offset >= log_start_offset,
                    )?;
                    if found.is_some() {
                        return Ok(found);
                    }
                }
                position += header.size_bytes() as u64;
            }
        }
        Ok(None)
    }

    /// The record with the largest timestamp (the first one, if several share it).
    pub fn max_timestamp(&self) -> io::Result<Option<(i64, i64)>> {
        let Some(segment) = self
            .segments
            .values()
            .filter(|s| s.max_timestamp().0 >= 0)
            .reduce(|best, s| {
                if s.max_timestamp().0 > best.max_timestamp().0 {
                    s
                } else {
                    best
                }
            })
        else {
            return Ok(None);
        };
        let (max_timestamp_ms, offset) = segment.max_timestamp();
        let Some(found) = segment.find(offset)? else {
            return Ok(None);
        };
        first_record_at_or_after(segment.file(), found.position, &found.header, |ts, _| {
            ts == max_timestamp_ms
        })
    }

    // -----------------------------------------------------------------------------------------
    // Retention

    /// Base offsets of the oldest sealed segments past a retention limit (`retention.ms`,
    /// `retention.bytes`) or wholly below `log_start_offset`, oldest first, stopping at the
    /// first segment that is none of these. Never the active segment.
    pub fn expired_segments(
        &self,
        config: &LogConfig,
        now_ms: i64,
        log_start_offset: i64,
    ) -> Vec<i64> {
        let total_bytes = self.size_bytes();
        let mut bytes_over_limit = match config.retention_bytes {
            limit if limit < 0 => 0,
            limit => total_bytes.saturating_sub(limit as u64),
        };
        let active_base = self.active().base_offset();
        let mut expired: Vec<i64> = Vec::new();
        let mut bases = self.segments.keys().copied().peekable();
        while let Some(base) = bases.next() {
            let Some(&next_base) = bases.peek() else {
                break;
            }; // the active segment
            let segment = &self.segments[&base];
            let below_start = next_base <= log_start_offset;
            let too_old = config.retention_ms >= 0
                && segment.max_timestamp().0 >= 0
                && now_ms - segment.max_timestamp().0 > config.retention_ms;
            let too_big = bytes_over_limit > 0 && bytes_over_limit >= segment.size_bytes();
            if !(below_start || too_old || too_big) {
                break;
            }
            bytes_over_limit = bytes_over_limit.saturating_sub(segment.size_bytes());
            expired.push(base);
        }
        debug_assert!(!expired.contains(&active_base));
        expired
    }

    /// Base offsets of the segments wholly below `log_start_offset` (their successor starts at
    /// or below it), oldest first.
    pub fn segments_below(&self, log_start_offset: i64) -> Vec<i64> {
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        bases
            .windows(2)
            .take_while(|pair| pair[1] <= log_start_offset)
            .map(|pair| pair[0])
            .collect()
    }

    /// Takes the segments based at `bases` out of the log, with their `.txnindex`; their
    /// files wait, renamed, for the caller to delete them.
    pub fn retire(&mut self, bases: &[i64]) -> io::Result<Vec<RetiredSegment>> {
        let mut retired = Vec::with_capacity(bases.len());
        for base in bases {
            let segment = self.segments.remove(base).expect("segment to retire");
            assert!(!self.segments.is_empty(), "retired the active segment");
            retired.push(segment.retire(true)?);
        }
        Ok(retired)
    }

    // -----------------------------------------------------------------------------------------
    // Cleaning

    /// The sealed segments (every one but the active segment), oldest first: what the cleaner
    /// may rewrite.
    pub fn sealed_segments(&self) -> Vec<SealedSegment> {
        let active_base = self.active().base_offset();
        self.segments
            .values()
            .filter(|s| s.base_offset() != active_base)
            .map(|s| SealedSegment {
                base_offset: s.base_offset(),
                next_offset: s.next_offset(),
                size_bytes: s.size_bytes(),
                max_timestamp_ms: s.max_timestamp().0,
                file: s.file().clone(),
            })
            .collect()
    }

    /// Whether a sealed segment based at `base_offset` is still there with `size_bytes`
    /// (retention may have taken it since the cleaner read it).
    pub fn holds_sealed(&self, base_offset: i64, size_bytes: u64) -> bool {
        base_offset != self.active().base_offset()
            && self
                .segments
                .get(&base_offset)
                .is_some_and(|s| s.size_bytes() == size_bytes)
    }

    /// Swaps the sealed segment at `base_offset` (checked with [`Self::holds_sealed`]) for the
    /// cleaned file `cleaned`, crash-safely: the cleaned file becomes `.swap`, the old
    /// segment's files are retired, the `.swap` becomes the `.log` (the loader completes a
    /// swap a crash interrupted). Returns the retired old segment.
    pub fn swap_in_cleaned(
        &mut self,
        base_offset: i64,
        cleaned: &Path,
        config: &LogConfig,
    ) -> io::Result<RetiredSegment> {
        let stem = file_stem(base_offset);
        let swap = self.dir.join(format!("{stem}.log{SWAP_SUFFIX}"));
        std::fs::rename(cleaned, &swap)?;
        sync_dir(&self.dir)?;
        let old = self.segments.remove(&base_offset).expect("checked above");
        let retired = old.retire(false)?;
        std::fs::rename(&swap, self.dir.join(format!("{stem}.log")))?;
        sync_dir(&self.dir)?;
        let mut segment = Segment::open(
            &self.dir,
            base_offset,
            config.index_interval_bytes,
            config.segment_index_bytes,
        )?;
        let truncated = segment.recover(RECOVERY_BATCH_BYTES_MAX)?;
        assert_eq!(truncated, 0, "a cleaned segment is whole");
        segment.seal()?;
        self.segments.insert(base_offset, segment);
        Ok(retired)
    }

    /// Deletes every segment's files (topic deletion); the caller removes the directory.
    pub fn delete_segments(self) -> io::Result<()> {
        for segment in self.segments.into_values() {
            segment.delete()?;
        }
        Ok(())
    }
}

/// Decodes the batch at `position` and returns (timestamp, offset) of its first record that
/// satisfies `matches`. Under LogAppendTime every record carries the batch's max timestamp.
fn first_record_at_or_after(
    file: &File,
    position: u64,
    header: &BatchHeader,
    matches: impl Fn(i64, i64) -> bool,
) -> io::Result<Option<(i64, i64)>> {
    let mut bytes = vec![0u8; header.size_bytes()];
    file.read_exact_at(&mut bytes, position)?;
    let invalid = |e: anyhow::Error| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
    let section = records::records_section(&bytes, header).map_err(invalid)?;
    let log_append_time = header.attributes & batch::ATTRIBUTE_LOG_APPEND_TIME != 0;
    for record in records::decode(&section, header).map_err(invalid)? {
        let timestamp_ms = if log_append_time {
            header.max_timestamp
        } else {
            record.timestamp_ms
        };
        if matches(timestamp_ms, record.offset) {
            return Ok(Some((timestamp_ms, record.offset)));
        }
    }
    Ok(None)
}

/// Deletes a segment's files, its `.txnindex` included (truncation: nothing of it remains).
fn delete_with_txn_index(dir: &Path, segment: Segment) -> io::Result<()> {
    let txn_index = dir.join(format!("{}.txnindex", file_stem(segment.base_offset())));
    segment.delete()?;
    match std::fs::remove_file(txn_index) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
