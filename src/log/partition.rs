//! One partition's log: a directory of segments, appends with offset assignment, reads for
//! fetch as file regions, offset/time lookups, flushing and crash recovery.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::record::batch::{self, BatchError, BatchHeader, BatchIter, HEADER_SIZE_BYTES};
use crate::record::codec::Codec;
use crate::record::{recompress, records};

use super::log_config::LogConfig;
use super::producer_state::{self as producer_state, AbortedTxn, ProducerStateManager, Verdict};
use super::segment::{self, RetiredSegment, Segment};

pub use super::error::{AppendError, OffsetOutOfRange};

#[derive(Clone, Copy, Debug)]
pub struct AppendResult {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The timestamp stamped on the batches, or -1 under CreateTime.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
}

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

/// Offsets that bound what a reader may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogOffsets {
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// Below this every transaction is decided (READ_COMMITTED readers stop here): the first
    /// offset of the oldest open transaction, or the log end.
    pub last_stable_offset: i64,
}

/// A partition's shape at one moment, for metrics.
#[derive(Clone, Copy, Debug)]
pub struct LogStats {
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub size_bytes: u64,
    pub segment_count: usize,
}

struct LogState {
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    /// Everything below this offset is on disk (fsynced); recovery starts here after a crash.
    recovery_point: i64,
    unflushed_messages: i64,
    last_flush_ms: i64,
    /// Idempotence and transaction state of the producers that wrote here; it always reflects
    /// the log up to its end (checked and updated under this same lock as appends).
    producers: ProducerStateManager,
    /// Aborted transactions, ordered by marker offset; mirrored in the segments' `.txnindex`.
    aborted: Vec<AbortedTxn>,
}

impl LogState {
    fn active(&self) -> &Segment {
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

    fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    fn producers_dir(&self) -> PathBuf {
        self.producers.dir().to_path_buf()
    }
}

pub struct PartitionLog {
    topic: String,
    partition: i32,
    dir: PathBuf,
    config: RwLock<Arc<LogConfig>>,
    state: Mutex<LogState>,
}

/// Largest batch the recovery scan accepts, so a corrupt length cannot ask for a huge buffer.
const RECOVERY_BATCH_BYTES_MAX: usize = 128 * 1024 * 1024;

impl PartitionLog {
    /// Opens the partition directory, creating it if absent. `clean` says the broker shut
    /// down cleanly (indexes are trusted); otherwise segments from the one holding the
    /// recovery point onward are validated and their indexes rebuilt.
    pub fn open(
        dir: &Path,
        topic: &str,
        partition: i32,
        config: Arc<LogConfig>,
        checkpoints: Checkpoints,
        clean: bool,
    ) -> io::Result<PartitionLog> {
        std::fs::create_dir_all(dir)?;
        finish_interrupted_cleaning(dir)?;
        let mut base_offsets: Vec<i64> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(segment::DELETED_SUFFIX) {
                // Retired before a restart; nothing reads it any more.
                std::fs::remove_file(entry.path())?;
                continue;
            }
            if let Some(stem) = name.strip_suffix(".log") {
                if let Ok(base_offset) = stem.parse::<i64>() {
                    base_offsets.push(base_offset);
                }
            }
        }
        base_offsets.sort_unstable();
        if base_offsets.is_empty() {
            base_offsets.push(checkpoints.log_start_offset.max(0));
        }
        let mut segments = BTreeMap::new();
        let last_base = *base_offsets.last().expect("at least one segment");
        let recovery_base = base_offsets
            .iter()
            .rev()
            .find(|&&b| b <= checkpoints.recovery_point)
            .copied()
            .unwrap_or(0);
        let mut truncated_at: Option<i64> = None;
        for &base_offset in &base_offsets {
            if truncated_at.is_some() {
                // A segment after a torn one cannot be trusted: its predecessor lost data.
                Segment::open(dir, base_offset, 0, 0)?.delete()?;
                continue;
            }
            let index_bytes = if base_offset == last_base {
                config.segment_index_bytes
            } else {
                0
            };
            let mut segment =
                Segment::open(dir, base_offset, config.index_interval_bytes, index_bytes)?;
            let needs_recovery = !clean && base_offset >= recovery_base;
            let loaded = if needs_recovery {
                Err(())
            } else {
                segment.load_clean().map_err(|_| ())
            };
            if loaded.is_err() {
                let truncated_bytes = segment.recover(RECOVERY_BATCH_BYTES_MAX)?;
                if truncated_bytes > 0 {
                    tracing::warn!(
                        topic,
                        partition,
                        base_offset,
                        truncated_bytes,
                        "truncated torn or corrupt log tail"
                    );
                    truncated_at = Some(segment.next_offset());
                }
            }
            segments.insert(base_offset, segment);
        }
        // Deleted successors mean the truncated segment is the active one now.
        let active_base = *segments.keys().next_back().expect("segments");
        if active_base != last_base {
            let active = segments.remove(&active_base).expect("present");
            drop(active);
            let mut reopened = Segment::open(
                dir,
                active_base,
                config.index_interval_bytes,
                config.segment_index_bytes,
            )?;
            reopened.recover(RECOVERY_BATCH_BYTES_MAX)?;
            segments.insert(active_base, reopened);
        }
        let first_base = *segments.keys().next().expect("segments");
        let mut state = LogState {
            log_start_offset: checkpoints.log_start_offset.max(first_base),
            recovery_point: 0,
            segments,
            unflushed_messages: 0,
            last_flush_ms: 0,
            producers: ProducerStateManager::new(dir),
            aborted: Vec::new(),
        };
        Self::load_producer_state(&mut state, topic, partition)?;
        let log = PartitionLog {
            topic: topic.to_string(),
            partition,
            dir: dir.to_path_buf(),
            config: RwLock::new(config),
            state: Mutex::new(state),
        };
        {
            let mut state = log.lock();
            state.recovery_point = if clean {
                state.log_end_offset()
            } else {
                checkpoints.recovery_point.min(state.log_end_offset())
            };
        }
        Ok(log)
    }

    /// Loads the newest producer snapshot not beyond the log end and replays the batch headers
    /// after it; with no snapshot, replays from the log start. Snapshots are written at every
    /// roll and at clean shutdown, so after a crash only the active segment is read.
    fn load_producer_state(state: &mut LogState, topic: &str, partition: i32) -> io::Result<()> {
        let log_end_offset = state.log_end_offset();
        let from = match state.producers.load_newest_snapshot(log_end_offset)? {
            Some(offset) if offset >= state.log_start_offset => offset,
            _ => {
                state.producers.reset(state.log_start_offset);
                state.log_start_offset
            }
        };
        // Aborted transactions below `from` come from the `.txnindex` files; those at or above
        // it are dropped from the files and found again by the replay.
        let dir = state.producers_dir();
        let bases: Vec<i64> = state.segments.keys().copied().collect();
        state.aborted.clear();
        for base in &bases {
            let path = txn_index_path(&dir, *base);
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let kept: Vec<AbortedTxn> = producer_state::decode_aborted(&bytes)
                .into_iter()
                .filter(|t| t.last_offset < from)
                .collect();
            if kept.len() * producer_state::TXN_INDEX_ENTRY_BYTES != bytes.len() {
                let rewritten: Vec<u8> = kept
                    .iter()
                    .flat_map(producer_state::encode_aborted)
                    .collect();
                std::fs::write(&path, rewritten)?;
            }
            state.aborted.extend(kept);
        }
        state.aborted.sort_by_key(|t| t.last_offset);
        forget_aborted_below_log_start(state);
        let mut replayed_batches = 0u64;
        let first = state
            .segments
            .range(..=from)
            .next_back()
            .map_or(i64::MIN, |(base, _)| *base);
        for segment in state.segments.range(first..).map(|(_, s)| s) {
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
                    if header.is_control() {
                        let size = header.size_bytes().min(RECOVERY_BATCH_BYTES_MAX);
                        let mut bytes = vec![0u8; size];
                        segment.file().read_exact_at(&mut bytes, position)?;
                        let marker = crate::record::control::is_commit(&bytes, &header)
                            .filter(|_| header.producer_id >= 0);
                        if let Some(commit) = marker {
                            let aborted = state.producers.apply_marker(
                                header.producer_id,
                                header.producer_epoch,
                                -1,
                                commit,
                                header.base_offset,
                                header.max_timestamp,
                            );
                            if let Some(aborted) = aborted {
                                append_txn_index(&dir, segment.base_offset(), &aborted)?;
                                state.aborted.push(aborted);
                            }
                        }
                    } else {
                        state.producers.replay(&header);
                    }
                    replayed_batches += 1;
                }
                position += header.size_bytes() as u64;
            }
        }
        state.producers.set_map_end_offset(log_end_offset);
        if replayed_batches > 0 || state.producers.producer_count() > 0 {
            tracing::debug!(
                topic,
                partition,
                from,
                replayed_batches,
                producers = state.producers.producer_count(),
                "loaded producer state"
            );
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().expect("partition log lock poisoned")
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> Arc<LogConfig> {
        self.config.read().expect("config lock").clone()
    }

    pub fn set_config(&self, config: Arc<LogConfig>) {
        *self.config.write().expect("config lock") = config;
    }

    pub fn offsets(&self) -> LogOffsets {
        let state = self.lock();
        let log_end_offset = state.log_end_offset();
        LogOffsets {
            log_start_offset: state.log_start_offset,
            log_end_offset,
            last_stable_offset: state
                .producers
                .first_unstable_offset()
                .map_or(log_end_offset, |first| first.min(log_end_offset)),
        }
    }

    pub fn recovery_point(&self) -> i64 {
        self.lock().recovery_point
    }

    pub fn size_bytes(&self) -> u64 {
        self.lock().segments.values().map(Segment::size_bytes).sum()
    }

    /// Offsets, size and segment count under one lock (scrape-time metrics).
    pub fn stats(&self) -> LogStats {
        let state = self.lock();
        LogStats {
            log_start_offset: state.log_start_offset,
            log_end_offset: state.log_end_offset(),
            size_bytes: state.segments.values().map(Segment::size_bytes).sum(),
            segment_count: state.segments.len(),
        }
    }

    /// Validates `records` (one or more v2 batches as a producer sent them), assigns offsets and
    /// appends them. Nothing is written unless every batch is valid.
    pub fn append(&self, records: &[u8], now_ms: i64) -> Result<AppendResult, AppendError> {
        let config = self.config();
        let mut headers: Vec<(usize, BatchHeader)> = Vec::new();
        for item in BatchIter::new(records) {
            let (position, header) = item.map_err(|error| match error {
                BatchError::BadCount { .. } | BatchError::BadCodec(_) | BatchError::BadMagic(_) => {
                    AppendError::InvalidRecord(error.to_string())
                }
                other => AppendError::Corrupt(other),
            })?;
            batch::validate_produced(&header)
                .map_err(|e| AppendError::InvalidRecord(e.to_string()))?;
            if header.is_control() {
                return Err(AppendError::InvalidRecord(
                    "clients may not write control batches".into(),
                ));
            }
            if header.size_bytes() > config.max_message_bytes {
                return Err(AppendError::MessageTooLarge {
                    size_bytes: header.size_bytes(),
                    limit_bytes: config.max_message_bytes,
                });
            }
            if !config.log_append_time {
                check_timestamp(&config, &header, now_ms)?;
            }
            if config.compact {
                check_keyed(&records[position..position + header.size_bytes()], &header)?;
            }
            headers.push((position, header));
        }
        if headers.is_empty() {
            return Err(AppendError::InvalidRecord("no record batches".into()));
        }
        match Codec::from_name(&config.compression_type) {
            Some(codec)
                if headers
                    .iter()
                    .any(|(_, h)| h.compression_codec() != codec as i16) =>
            {
                let converted = recompress_all(records, &headers, codec)?;
                let headers: Vec<(usize, BatchHeader)> = BatchIter::new(&converted)
                    .collect::<Result<_, _>>()
                    .map_err(AppendError::Corrupt)?;
                if let Some((_, too_big)) = headers
                    .iter()
                    .find(|(_, h)| h.size_bytes() > config.max_message_bytes)
                {
                    return Err(AppendError::MessageTooLarge {
                        size_bytes: too_big.size_bytes(),
                        limit_bytes: config.max_message_bytes,
                    });
                }
                self.append_validated(&converted, &headers, &config, now_ms, true, None)
            }
            _ => self.append_validated(records, &headers, &config, now_ms, true, None),
        }
    }

    /// Appends batches the broker itself wrote (e.g. the metadata log), skipping client checks.
    pub fn append_trusted(&self, records: &[u8], now_ms: i64) -> Result<AppendResult, AppendError> {
        let config = self.config();
        let headers: Vec<(usize, BatchHeader)> = BatchIter::new(records)
            .collect::<Result<_, _>>()
            .map_err(AppendError::Corrupt)?;
        assert!(
            !headers.is_empty(),
            "append_trusted needs at least one batch"
        );
        self.append_validated(records, &headers, &config, now_ms, false, None)
    }

    /// Writes a transaction marker (COMMIT or ABORT control batch) for a producer, ending its
    /// transaction in this partition. Returns the marker's offset.
    pub fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        now_ms: i64,
    ) -> Result<i64, AppendError> {
        let config = self.config();
        let batch = crate::record::control::marker_batch(
            producer_id,
            producer_epoch,
            coordinator_epoch,
            commit,
            now_ms,
        );
        let headers: Vec<(usize, BatchHeader)> = BatchIter::new(&batch)
            .collect::<Result<_, _>>()
            .map_err(AppendError::Corrupt)?;
        let marker = Marker {
            commit,
            coordinator_epoch,
        };
        let result =
            self.append_validated(&batch, &headers, &config, now_ms, false, Some(marker))?;
        Ok(result.base_offset)
    }

    /// The last stable offset and every aborted transaction, read under one lock: all
    /// transactions with data below that offset are decided, so those not listed committed.
    pub fn stable_view(&self) -> (i64, Vec<AbortedTxn>) {
        let state = self.lock();
        let log_end_offset = state.log_end_offset();
        let last_stable_offset = state
            .producers
            .first_unstable_offset()
            .map_or(log_end_offset, |first| first.min(log_end_offset));
        (last_stable_offset, state.aborted.clone())
    }

    /// Aborted transactions a READ_COMMITTED fetch from `from_offset` up to `upper_offset`
    /// must know about: (producer id, first offset).
    pub fn aborted_transactions(&self, from_offset: i64, upper_offset: i64) -> Vec<(i64, i64)> {
        let state = self.lock();
        let start = state
            .aborted
            .partition_point(|t| t.last_offset < from_offset);
        state.aborted[start..]
            .iter()
            .filter(|t| t.first_offset < upper_offset)
            .map(|t| (t.producer_id, t.first_offset))
            .collect()
    }

    fn append_validated(
        &self,
        records: &[u8],
        headers: &[(usize, BatchHeader)],
        config: &LogConfig,
        now_ms: i64,
        from_client: bool,
        marker: Option<Marker>,
    ) -> Result<AppendResult, AppendError> {
        let size_bytes: u64 = headers.iter().map(|(_, h)| h.size_bytes() as u64).sum();
        let mut state = self.lock();
        // Producer checks run under the log lock, so two retries of one batch racing on two
        // connections cannot both pass.
        let mut pending = HashMap::new();
        let mut first_offset = state.log_end_offset();
        for (_, header) in headers {
            if from_client {
                match state
                    .producers
                    .check(&pending, header)
                    .map_err(AppendError::Producer)?
                {
                    Verdict::Append => {}
                    Verdict::Duplicate(original) => {
                        tracing::debug!(
                            topic = self.topic,
                            partition = self.partition,
                            producer_id = header.producer_id,
                            first_sequence = header.base_sequence,
                            first_offset = original.first_offset,
                            "duplicate batch not appended again"
                        );
                        return Ok(AppendResult {
                            base_offset: original.first_offset,
                            last_offset: original.last_offset,
                            log_append_time_ms: -1,
                            log_start_offset: state.log_start_offset,
                        });
                    }
                }
            }
            state.producers.stage(&mut pending, header, first_offset);
            first_offset += i64::from(header.last_offset_delta) + 1;
        }
        self.maybe_roll(&mut state, config, size_bytes, now_ms)?;
        // Rewrite each header into its own buffer (offsets, epoch, maybe LogAppendTime) and
        // write it with the untouched record bytes: one pwritev, no copy of the records.
        let mut next_offset = state.log_end_offset();
        let base_offset = next_offset;
        let mut rewritten: Vec<[u8; HEADER_SIZE_BYTES]> = Vec::with_capacity(headers.len());
        let mut placed: Vec<(u64, BatchHeader)> = Vec::with_capacity(headers.len());
        let mut relative_position = 0u64;
        for &(position, header) in headers {
            let mut header_bytes: [u8; HEADER_SIZE_BYTES] = records
                [position..position + HEADER_SIZE_BYTES]
                .try_into()
                .expect("61 bytes");
            batch::set_base_offset_and_epoch(&mut header_bytes, next_offset, 0);
            if config.log_append_time {
                let body = &records[position + HEADER_SIZE_BYTES..position + header.size_bytes()];
                batch::set_log_append_time_split(&mut header_bytes, body, now_ms);
            }
            let header = BatchHeader::parse(&header_bytes).expect("61 bytes");
            placed.push((relative_position, header));
            relative_position += header.size_bytes() as u64;
            next_offset = header.last_offset() + 1;
            rewritten.push(header_bytes);
        }
        let mut parts: Vec<IoSlice<'_>> = Vec::with_capacity(headers.len() * 2);
        for (header_bytes, &(position, header)) in rewritten.iter().zip(headers) {
            parts.push(IoSlice::new(header_bytes));
            parts.push(IoSlice::new(
                &records[position + HEADER_SIZE_BYTES..position + header.size_bytes()],
            ));
        }
        state.active_mut().append(&parts, &placed, now_ms)?;
        assert_eq!(
            next_offset, first_offset,
            "staged and written offsets agree"
        );
        state.producers.apply(pending, next_offset);
        if let Some(marker) = marker {
            let (_, header) = headers[0];
            assert!(
                headers.len() == 1 && header.is_control(),
                "one marker batch"
            );
            let aborted = state.producers.apply_marker(
                header.producer_id,
                header.producer_epoch,
                marker.coordinator_epoch,
                marker.commit,
                base_offset,
                now_ms,
            );
            if let Some(aborted) = aborted {
                let active_base = state.active().base_offset();
                append_txn_index(&self.dir, active_base, &aborted)?;
                state.aborted.push(aborted);
            }
        }
        let record_count: i64 = headers
            .iter()
            .map(|(_, h)| i64::from(h.records_count))
            .sum();
        state.unflushed_messages += record_count;
        if state.unflushed_messages >= config.flush_messages {
            Self::flush_locked(&mut state, now_ms)?;
        }
        Ok(AppendResult {
            base_offset,
            last_offset: next_offset - 1,
            log_append_time_ms: if config.log_append_time { now_ms } else { -1 },
            log_start_offset: state.log_start_offset,
        })
    }

    fn maybe_roll(
        &self,
        state: &mut LogState,
        config: &LogConfig,
        incoming_bytes: u64,
        now_ms: i64,
    ) -> io::Result<()> {
        let active = state.active();
        let next_offset = active.next_offset();
        let too_big =
            active.size_bytes() > 0 && active.size_bytes() + incoming_bytes > config.segment_bytes;
        let too_old = active
            .first_append_ms()
            .is_some_and(|first| now_ms - first >= config.segment_ms);
        // Relative offsets and positions in the indexes are u32.
        let offsets_overflow = next_offset - active.base_offset() > i64::from(u32::MAX) / 2;
        let position_overflow = active.size_bytes() + incoming_bytes > u64::from(u32::MAX);
        if active.size_bytes() == 0
            || !(too_big
                || too_old
                || active.indexes_full()
                || offsets_overflow
                || position_overflow)
        {
            return Ok(());
        }
        state.active_mut().seal()?;
        // The snapshot named after the new segment's base offset lets recovery skip every
        // sealed segment.
        debug_assert_eq!(state.producers.map_end_offset(), next_offset);
        state.producers.write_snapshot()?;
        let segment = Segment::open(
            &self.dir,
            next_offset,
            config.index_interval_bytes,
            config.segment_index_bytes,
        )?;
        tracing::debug!(
            topic = self.topic,
            partition = self.partition,
            base_offset = next_offset,
            "rolled segment"
        );
        state.segments.insert(next_offset, segment);
        Ok(())
    }

    /// fsyncs every segment from the recovery point on and advances the recovery point.
    fn flush_locked(state: &mut LogState, now_ms: i64) -> io::Result<()> {
        let started = std::time::Instant::now();
        let recovery_point = state.recovery_point;
        let from = state
            .segments
            .range(..=recovery_point)
            .next_back()
            .map_or(i64::MIN, |(base, _)| *base);
        for segment in state.segments.range(from..).map(|(_, s)| s) {
            segment.flush()?;
        }
        state.recovery_point = state.log_end_offset();
        state.unflushed_messages = 0;
        state.last_flush_ms = now_ms;
        crate::metrics::storage::flushed(started.elapsed());
        Ok(())
    }

    /// The periodic flush: `flush.ms` elapsed, or sealed segments not yet on disk (Kafka
    /// flushes a segment when it is rolled).
    pub fn maybe_flush(&self, now_ms: i64) -> io::Result<()> {
        let config = self.config();
        let mut state = self.lock();
        let sealed_unflushed = state.recovery_point < state.active().base_offset();
        let due = state.unflushed_messages > 0 && now_ms - state.last_flush_ms >= config.flush_ms;
        if sealed_unflushed || due {
            Self::flush_locked(&mut state, now_ms)?;
        }
        Ok(())
    }

    /// fsyncs everything appended so far (e.g. after each metadata commit).
    pub fn flush(&self, now_ms: i64) -> io::Result<()> {
        Self::flush_locked(&mut self.lock(), now_ms)
    }

    /// Flushes and trims the active segment's indexes: the clean-shutdown path.
    pub fn close(&self, now_ms: i64) -> io::Result<()> {
        let mut state = self.lock();
        Self::flush_locked(&mut state, now_ms)?;
        state.active_mut().seal()?;
        state.producers.write_snapshot()
    }

    /// Open transactions in this partition: (producer id, first offset).
    pub fn ongoing_transactions(&self) -> Vec<(i64, i64)> {
        self.lock().producers.ongoing_transactions().collect()
    }

    /// Forgets producers idle longer than `producer.id.expiration.ms`.
    pub fn expire_producers(&self, now_ms: i64, expiration_ms: i64) -> usize {
        self.lock().producers.expire(now_ms, expiration_ms)
    }

    /// Runs `f` on the producer state (read-only), under the log lock.
    pub fn with_producers<T>(&self, f: impl FnOnce(&ProducerStateManager) -> T) -> T {
        f(&self.lock().producers)
    }

    /// The bytes to send for a fetch at `offset`: from the batch holding `offset` to at most
    /// `max_bytes` further (the whole first batch when `min_one_batch`), within one segment.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: u64,
        min_one_batch: bool,
    ) -> io::Result<Result<Option<FileSlice>, OffsetOutOfRange>> {
        self.read_up_to(offset, max_bytes, min_one_batch, None)
    }

    /// [`Self::read`] that stops before the batch holding `upper_offset` (a READ_COMMITTED
    /// fetch passes the last stable offset, which is always a batch's first offset).
    pub fn read_up_to(
        &self,
        offset: i64,
        max_bytes: u64,
        min_one_batch: bool,
        upper_offset: Option<i64>,
    ) -> io::Result<Result<Option<FileSlice>, OffsetOutOfRange>> {
        let state = self.lock();
        if offset < state.log_start_offset || offset > state.log_end_offset() {
            return Ok(Err(OffsetOutOfRange));
        }
        let max_bytes = match upper_offset {
            Some(upper) if upper <= offset => return Ok(Ok(None)),
            Some(upper) if upper < state.log_end_offset() => {
                let segment = state.segments.range(..=offset).next_back().map(|(_, s)| s);
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
        let first = state
            .segments
            .range(..=offset)
            .next_back()
            .map_or(i64::MIN, |(base, _)| *base);
        for segment in state.segments.range(first..).map(|(_, s)| s) {
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

    /// Every whole batch from `offset` to the end of the log, in memory (metadata log replay).
    pub fn read_all_from(&self, offset: i64) -> io::Result<Vec<u8>> {
        let mut output = Vec::new();
        let mut next = offset;
        loop {
            let Ok(Some(slice)) = self.read(next, u64::MAX, true)? else {
                return Ok(output);
            };
            let bytes = slice.read_to_vec()?;
            let mut consumed = 0;
            for item in BatchIter::new(&bytes) {
                let Ok((position, header)) = item else { break };
                consumed = position + header.size_bytes();
                next = header.last_offset() + 1;
            }
            output.extend_from_slice(&bytes[..consumed]);
            if consumed == 0 {
                return Ok(output);
            }
        }
    }

    /// The first record with timestamp >= `target_ms`: (timestamp, offset).
    pub fn offset_for_timestamp(&self, target_ms: i64) -> io::Result<Option<(i64, i64)>> {
        let state = self.lock();
        for segment in state.segments.values() {
            if segment.max_timestamp().0 < target_ms {
                continue;
            }
            let start_offset = segment
                .time_lookup_offset(target_ms)
                .max(state.log_start_offset);
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
                        |ts, offset| ts >= target_ms && offset >= state.log_start_offset,
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
        let state = self.lock();
        let Some(segment) = state
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

    /// Retention (`retention.ms`, `retention.bytes`) and the log start offset: takes out the
    /// oldest sealed segments that are past a limit or wholly below the log start offset, and
    /// moves the log start offset to the first remaining segment. The active segment is never
    /// taken. Returns the retired segments, for the caller to delete after
    /// `file.delete.delay.ms`.
    pub fn enforce_retention(&self, now_ms: i64) -> io::Result<Vec<RetiredSegment>> {
        let config = self.config();
        if config.compact && !config.delete {
            return self.retire_below_log_start();
        }
        let mut state = self.lock();
        let total_bytes: u64 = state.segments.values().map(Segment::size_bytes).sum();
        let mut bytes_over_limit = match config.retention_bytes {
            limit if limit < 0 => 0,
            limit => total_bytes.saturating_sub(limit as u64),
        };
        let active_base = state.active().base_offset();
        let mut expired: Vec<i64> = Vec::new();
        let mut bases = state.segments.keys().copied().peekable();
        while let Some(base) = bases.next() {
            let Some(&next_base) = bases.peek() else {
                break;
            }; // the active segment
            let segment = &state.segments[&base];
            let below_start = next_base <= state.log_start_offset;
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
        self.retire_locked(&mut state, &expired)
    }

    fn retire_below_log_start(&self) -> io::Result<Vec<RetiredSegment>> {
        let mut state = self.lock();
        let bases: Vec<i64> = state.segments.keys().copied().collect();
        let below: Vec<i64> = bases
            .windows(2)
            .take_while(|pair| pair[1] <= state.log_start_offset)
            .map(|pair| pair[0])
            .collect();
        self.retire_locked(&mut state, &below)
    }

    fn retire_locked(
        &self,
        state: &mut LogState,
        bases: &[i64],
    ) -> io::Result<Vec<RetiredSegment>> {
        let mut retired = Vec::with_capacity(bases.len());
        for base in bases {
            let segment = state.segments.remove(base).expect("segment to retire");
            assert!(!state.segments.is_empty(), "retired the active segment");
            retired.push(segment.retire(true)?);
        }
        let first_base = *state.segments.keys().next().expect("active segment");
        if first_base > state.log_start_offset {
            state.log_start_offset = first_base;
        }
        forget_aborted_below_log_start(state);
        if !retired.is_empty() {
            tracing::info!(
                topic = self.topic,
                partition = self.partition,
                segments = retired.len(),
                log_start_offset = state.log_start_offset,
                "retired segments"
            );
        }
        Ok(retired)
    }

    /// DeleteRecords: moves the log start offset up to `offset` (never down), then retires
    /// the segments wholly below it. Returns the new log start offset (the low watermark).
    pub fn delete_records_before(
        &self,
        offset: i64,
    ) -> io::Result<Result<(i64, Vec<RetiredSegment>), OffsetOutOfRange>> {
        {
            let mut state = self.lock();
            if offset < 0 || offset > state.log_end_offset() {
                return Ok(Err(OffsetOutOfRange));
            }
            if offset > state.log_start_offset {
                state.log_start_offset = offset;
            }
        }
        let retired = self.retire_below_log_start()?;
        Ok(Ok((self.offsets().log_start_offset, retired)))
    }

    /// The sealed segments (every one but the active segment), oldest first: what the cleaner
    /// may rewrite.
    pub fn sealed_segments(&self) -> Vec<SealedSegment> {
        let state = self.lock();
        let active_base = state.active().base_offset();
        state
            .segments
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

    /// Swaps the sealed segment at `base_offset` for the cleaned file `cleaned` (fsynced, in
    /// this directory, named `<stem>.log.cleaned`), crash-safely: the cleaned file becomes
    /// `.swap`, the old segment's files are retired, the `.swap` becomes the `.log`. A crash
    /// at any point leaves either the old segment or the complete new one (see
    /// [`finish_interrupted_cleaning`]). Returns the retired old segment, or None (and removes
    /// the cleaned file) when the segment changed meanwhile (retention took it).
    ///
    /// `dropped_abort_markers`: offsets of the ABORT markers the cleaned file no longer holds.
    /// Their aborted-transaction entries leave the segment's `.txnindex` (rewritten
    /// crash-safely) and the in-memory list *before* the swap: a crash in between leaves a
    /// marker without an entry, which readers ignore, never an entry without its marker,
    /// which would make READ_COMMITTED readers skip the producer's later committed data.
    pub fn replace_sealed_segment(
        &self,
        base_offset: i64,
        expected_size_bytes: u64,
        cleaned: &Path,
        dropped_abort_markers: &[i64],
    ) -> io::Result<Option<RetiredSegment>> {
        let config = self.config();
        let mut state = self.lock();
        let active_base = state.active().base_offset();
        let unchanged = base_offset != active_base
            && state
                .segments
                .get(&base_offset)
                .is_some_and(|s| s.size_bytes() == expected_size_bytes);
        if !unchanged {
            std::fs::remove_file(cleaned)?;
            return Ok(None);
        }
        if !dropped_abort_markers.is_empty() {
            let dropped = |t: &AbortedTxn| dropped_abort_markers.contains(&t.last_offset);
            rewrite_txn_index(&self.dir, base_offset, &dropped)?;
            state.aborted.retain(|t| !dropped(t));
        }
        let stem = file_stem(base_offset);
        let swap = self.dir.join(format!("{stem}.log{SWAP_SUFFIX}"));
        std::fs::rename(cleaned, &swap)?;
        super::checkpoint::sync_dir(&self.dir)?;
        let old = state.segments.remove(&base_offset).expect("checked above");
        let retired = old.retire(false)?;
        std::fs::rename(&swap, self.dir.join(format!("{stem}.log")))?;
        super::checkpoint::sync_dir(&self.dir)?;
        let mut segment = Segment::open(
            &self.dir,
            base_offset,
            config.index_interval_bytes,
            config.segment_index_bytes,
        )?;
        let truncated = segment.recover(RECOVERY_BATCH_BYTES_MAX)?;
        assert_eq!(truncated, 0, "a cleaned segment is whole");
        segment.seal()?;
        state.segments.insert(base_offset, segment);
        Ok(Some(retired))
    }

    /// Deletes the log's files (topic deletion).
    pub fn delete(self) -> io::Result<()> {
        let dir = self.dir.clone();
        let state = self.state.into_inner().expect("lock");
        for segment in state.segments.into_values() {
            segment.delete()?;
        }
        std::fs::remove_dir_all(dir)
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

/// Suffix of a cleaned segment being written; incomplete by definition after a crash.
pub const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix of a complete cleaned segment between the two renames of a swap.
pub const SWAP_SUFFIX: &str = ".swap";

/// Startup half of the cleaner's swap protocol: a `.cleaned` file (or a `.txnindex.tmp`) was
/// never complete, so it goes; a `.swap` file is complete, so it replaces the segment whose old files may remain
/// (their indexes are rebuilt from the new file).
fn finish_interrupted_cleaning(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(CLEANED_SUFFIX) || name.ends_with(".txnindex.tmp") {
            std::fs::remove_file(&path)?;
        } else if let Some(log_name) = name.strip_suffix(SWAP_SUFFIX) {
            let stem = log_name.trim_end_matches(".log");
            for extension in ["log", "index", "timeindex"] {
                match std::fs::remove_file(dir.join(format!("{stem}.{extension}"))) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::rename(&path, dir.join(log_name))?;
            tracing::warn!(dir = %dir.display(), segment = stem, "completed an interrupted segment swap");
        }
    }
    super::checkpoint::sync_dir(dir)
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

/// Every batch of `records` in `codec` (topic `compression.type`), as one buffer.
fn recompress_all(
    records: &[u8],
    headers: &[(usize, BatchHeader)],
    codec: Codec,
) -> Result<Vec<u8>, AppendError> {
    let mut converted = Vec::with_capacity(records.len());
    for &(position, header) in headers {
        let batch = &records[position..position + header.size_bytes()];
        if header.compression_codec() == codec as i16 {
            converted.extend_from_slice(batch);
        } else {
            let recompressed = recompress::recompress(batch, &header, codec)
                .map_err(|e| AppendError::InvalidRecord(e.to_string()))?;
            converted.extend_from_slice(&recompressed);
        }
    }
    Ok(converted)
}

/// A compacted log keeps the latest record per key, so a record without a key has no place in
/// it: Kafka refuses such batches with INVALID_RECORD. Needs the records decoded (and
/// decompressed), which only compacted topics pay for.
fn check_keyed(batch: &[u8], header: &BatchHeader) -> Result<(), AppendError> {
    let invalid = |e: anyhow::Error| AppendError::InvalidRecord(e.to_string());
    let section = records::records_section(batch, header).map_err(invalid)?;
    let decoded = records::decode(&section, header).map_err(invalid)?;
    if decoded.iter().any(|record| record.key.is_none()) {
        return Err(AppendError::InvalidRecord(
            "Compacted topic cannot accept message without key.".into(),
        ));
    }
    Ok(())
}

/// CreateTime batches must lie within `message.timestamp.before/after.max.ms` of now.
fn check_timestamp(
    config: &LogConfig,
    header: &BatchHeader,
    now_ms: i64,
) -> Result<(), AppendError> {
    let too_old = now_ms.saturating_sub(header.base_timestamp) > config.timestamp_before_max_ms;
    let too_new = header.max_timestamp.saturating_sub(now_ms) > config.timestamp_after_max_ms;
    if too_old || too_new {
        let timestamp_ms = if too_old {
            header.base_timestamp
        } else {
            header.max_timestamp
        };
        return Err(AppendError::InvalidTimestamp { timestamp_ms });
    }
    Ok(())
}

/// A transaction marker being appended: its type and the coordinator epoch it carries.
#[derive(Clone, Copy, Debug)]
struct Marker {
    commit: bool,
    coordinator_epoch: i32,
}

fn txn_index_path(dir: &Path, segment_base: i64) -> PathBuf {
    dir.join(format!("{}.txnindex", segment::file_stem(segment_base)))
}

/// Drops the aborted transactions whose marker lies below the log start offset: no fetch can
/// start below it, so none will ask for them (their `.txnindex` entries go with their segments).
/// This bounds the in-memory list by what the log still holds.
fn forget_aborted_below_log_start(state: &mut LogState) {
    let log_start_offset = state.log_start_offset;
    let stale = state
        .aborted
        .partition_point(|t| t.last_offset < log_start_offset);
    state.aborted.drain(..stale);
}

/// Appends one aborted transaction to a segment's `.txnindex` and syncs it: a marker is rare,
/// and READ_COMMITTED readers depend on the entry after a crash.
fn append_txn_index(dir: &Path, segment_base: i64, aborted: &AbortedTxn) -> io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(txn_index_path(dir, segment_base))?;
    file.write_all(&producer_state::encode_aborted(aborted))?;
    file.sync_data()
}

/// Rewrites a segment's `.txnindex` without the entries `dropped` selects: a temporary file,
/// fsynced, renamed over the old one.
fn rewrite_txn_index(
    dir: &Path,
    segment_base: i64,
    dropped: &dyn Fn(&AbortedTxn) -> bool,
) -> io::Result<()> {
    use std::io::Write;
    let path = txn_index_path(dir, segment_base);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let kept: Vec<u8> = producer_state::decode_aborted(&bytes)
        .iter()
        .filter(|t| !dropped(t))
        .flat_map(producer_state::encode_aborted)
        .collect();
    if kept.len() == bytes.len() {
        return Ok(());
    }
    let temporary = path.with_extension("txnindex.tmp");
    let mut file = File::create(&temporary)?;
    file.write_all(&kept)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, &path)?;
    super::checkpoint::sync_dir(dir)
}

/// What the broker's checkpoint files say about a partition at startup.
#[derive(Clone, Copy, Debug, Default)]
pub struct Checkpoints {
    pub log_start_offset: i64,
    pub recovery_point: i64,
}

pub use segment::file_stem;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Properties;
    use crate::record::builder::BatchBuilder;

    fn config(overrides: &[(&str, &str)]) -> Arc<LogConfig> {
        let overrides = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Arc::new(LogConfig::new(&Properties::default(), &overrides))
    }

    fn batch(count: usize, codec: Codec, now: i64) -> Vec<u8> {
        (0..count)
            .fold(BatchBuilder::new(now).codec(codec), |b, i| {
                b.record(None, Some(format!("value-{i}").as_bytes()), now)
            })
            .build()
    }

    #[test]
    fn appends_assign_offsets_roll_and_survive_unclean_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::clock::now_ms();
        let config = config(&[("segment.bytes", "1000"), ("index.interval.bytes", "0")]);
        let log = PartitionLog::open(
            dir.path(),
            "t",
            0,
            config.clone(),
            Checkpoints::default(),
            false,
        )
        .unwrap();
        for round in 0..20 {
            let result = log.append(&batch(3, Codec::None, now), now).unwrap();
            assert_eq!(result.base_offset, round * 3);
        }
        assert_eq!(log.offsets().log_end_offset, 60);
        let slice = log.read(31, 1 << 20, true).unwrap().unwrap().unwrap();
        let header = BatchHeader::parse(&slice.read_to_vec().unwrap()).unwrap();
        assert_eq!((header.base_offset, header.last_offset()), (30, 32));
        assert!(matches!(
            log.read(61, 100, true).unwrap(),
            Err(OffsetOutOfRange)
        ));
        drop(log);
        // Unclean reopen (no checkpoints): every segment is recovered, nothing is lost.
        let log =
            PartitionLog::open(dir.path(), "t", 0, config, Checkpoints::default(), false).unwrap();
        assert_eq!(log.offsets().log_end_offset, 60);
        assert_eq!(
            log.append(&batch(1, Codec::None, now), now)
                .unwrap()
                .base_offset,
            60
        );
    }

    #[test]
    fn topic_compression_type_recompresses() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::clock::now_ms();
        let log = PartitionLog::open(
            dir.path(),
            "t",
            0,
            config(&[("compression.type", "zstd")]),
            Checkpoints::default(),
            false,
        )
        .unwrap();
        log.append(&batch(5, Codec::Gzip, now), now).unwrap();
        let bytes = log
            .read(0, 1 << 20, true)
            .unwrap()
            .unwrap()
            .unwrap()
            .read_to_vec()
            .unwrap();
        let header = batch::validate(&bytes).unwrap();
        assert_eq!(header.compression_codec(), Codec::Zstd as i16);
        let section = records::records_section(&bytes, &header).unwrap();
        assert_eq!(
            records::decode(&section, &header).unwrap()[4].value,
            Some(&b"value-4"[..])
        );
    }

    #[test]
    fn invalid_batches_are_refused_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::clock::now_ms();
        let log = PartitionLog::open(
            dir.path(),
            "t",
            0,
            config(&[("max.message.bytes", "100")]),
            Checkpoints::default(),
            false,
        )
        .unwrap();
        let mut corrupt = batch(1, Codec::None, now);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        assert!(matches!(
            log.append(&corrupt, now),
            Err(AppendError::Corrupt(_))
        ));
        assert!(matches!(
            log.append(&batch(20, Codec::None, now), now),
            Err(AppendError::MessageTooLarge { .. })
        ));
        assert!(matches!(
            log.append(&batch(1, Codec::None, now + 7_200_000), now),
            Err(AppendError::InvalidTimestamp { .. })
        ));
        assert!(matches!(
            log.append(&[], now),
            Err(AppendError::InvalidRecord(_))
        ));
        assert_eq!(log.offsets().log_end_offset, 0);
    }

    #[test]
    fn aborted_transactions_below_the_log_start_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::clock::now_ms();
        let config = config(&[("segment.bytes", "300")]);
        let log = PartitionLog::open(
            dir.path(),
            "t",
            0,
            config.clone(),
            Checkpoints::default(),
            false,
        )
        .unwrap();
        // Ten aborted transactions of 3 records each: data at 4r..4r+2, ABORT marker at 4r+3.
        for round in 0..10 {
            let batch = (0..3)
                .fold(
                    BatchBuilder::new(now)
                        .producer(7, 0, round * 3)
                        .transactional(),
                    |b, i| b.record(None, Some(format!("r{round}-{i}").as_bytes()), now),
                )
                .build();
            assert_eq!(
                log.append(&batch, now).unwrap().base_offset,
                round as i64 * 4
            );
            assert_eq!(
                log.append_marker(7, 0, 0, false, now).unwrap(),
                round as i64 * 4 + 3
            );
        }
        let all = |log: &PartitionLog| log.aborted_transactions(0, i64::MAX);
        assert_eq!(all(&log).len(), 10);
        assert_eq!(
            log.aborted_transactions(21, 40),
            vec![(7, 20), (7, 24), (7, 28), (7, 32), (7, 36)]
        );
        // DeleteRecords up to 21 (mid-transaction): markers 3 … 19 lie below the new start.
        let (log_start, _retired) = log.delete_records_before(21).unwrap().unwrap();
        assert_eq!(log_start, 21);
        assert_eq!(
            all(&log).iter().map(|t| t.1).collect::<Vec<_>>(),
            vec![20, 24, 28, 32, 36]
        );
        // Reopened, the list holds no more than the remaining segments' `.txnindex` entries.
        let first_base = log.sealed_segments()[0].base_offset;
        drop(log);
        let log =
            PartitionLog::open(dir.path(), "t", 0, config, Checkpoints::default(), false).unwrap();
        let kept = all(&log);
        assert!(!kept.is_empty());
        assert!(
            kept.iter().all(|(_, first)| *first + 3 >= first_base),
            "{kept:?} below {first_base}"
        );
    }
}
