//! One partition's log (Kafka's `UnifiedLog`): the local log of segments composed with what
//! makes it a Kafka partition: the log start offset, producer state (idempotence, open
//! transactions, the last stable offset), aborted transactions and leader epochs. This is the
//! API the rest of the broker uses: appends (validated by [`super::validator`], offsets
//! assigned, producer state checked under the same lock), reads for fetch as file regions,
//! offset/time lookups, retention, DeleteRecords, flushing and the cleaner's swaps. Opening
//! a directory is [`super::loader`]'s job; segments and files are [`super::local_log`]'s.
//!
//! Invariants (all under the one log lock):
//! - Producer state, the aborted-transaction list and the leader epoch cache describe the
//!   log exactly up to its end offset: they are checked and updated with each append.
//! - `log start offset <= log end offset`, and the start only moves up; nothing below it is
//!   readable, and the aborted list and leader epochs hold nothing below it.
//! - A batch that opens a leader epoch is in the leader epoch checkpoint before it is in a
//!   segment.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, Weak};

use crate::record::batch::BatchHeader;

use super::flusher::Flusher;
use super::leader_epoch::{EpochEntry, LeaderEpochCache};
use super::local_log::LocalLog;
use super::log_config::LogConfig;
use super::log_dir_space::LogDirSpace;
use super::producer_state::{AbortedTxn, ProducerStateManager, Verdict};
use super::segment::RetiredSegment;
use super::{loader, transaction_index, validator};

pub use super::error::{AppendError, OffsetOutOfRange};
pub use super::loader::Checkpoints;
pub use super::local_log::{FileSlice, SealedSegment, CLEANED_SUFFIX, SWAP_SUFFIX};
pub use super::segment::file_stem;

/// The partition leader epoch a log stamps until the replica layer tells it otherwise
/// ([`PartitionLog::set_leader_epoch`]); the metadata log keeps it.
const DEFAULT_LEADER_EPOCH: i32 = 0;

#[derive(Clone, Copy, Debug)]
pub struct AppendResult {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The timestamp stamped on the batches, or -1 under CreateTime.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
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
    local: LocalLog,
    log_start_offset: i64,
    /// Idempotence and transaction state of the producers that wrote here; it always reflects
    /// the log up to its end (checked and updated under this same lock as appends).
    producers: ProducerStateManager,
    /// Aborted transactions, ordered by marker offset; mirrored in the segments' `.txnindex`.
    aborted: Vec<AbortedTxn>,
    /// Where each leader epoch starts; mirrored in `leader-epoch-checkpoint`.
    leader_epochs: LeaderEpochCache,
    /// Open verifications of transactional appends, by producer id: (guard id, created at).
    /// A marker for the producer ends its verification, so a batch verified before the marker
    /// cannot be appended after it. At most one entry per producer; entries older than
    /// `VERIFICATION_AGE_MS_MAX` are dropped with idle producers.
    verifications: HashMap<i64, (u64, i64)>,
}

/// Age after which an open verification is forgotten (Kafka's longest transaction timeout).
const VERIFICATION_AGE_MS_MAX: i64 = 15 * 60 * 1000;

/// Proof that a transactional append was verified against its transaction (Kafka's
/// `VerificationGuard`): taken from the partition before the coordinator is asked, checked
/// under the log lock at append. A marker written for the producer in between voids it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerificationGuard {
    producer_id: i64,
    id: u64,
}

impl LogState {
    fn log_end_offset(&self) -> i64 {
        self.local.log_end_offset()
    }

    fn last_stable_offset(&self) -> i64 {
        let log_end_offset = self.log_end_offset();
        self.producers
            .first_unstable_offset()
            .map_or(log_end_offset, |first| first.min(log_end_offset))
    }
}

pub struct PartitionLog {
    topic: String,
    partition: i32,
    dir: PathBuf,
    config: RwLock<Arc<LogConfig>>,
    state: Mutex<LogState>,
    next_guard_id: AtomicU64,
    /// Stamped on every batch this node appends as leader ([`Self::append`],
    /// [`Self::append_verified`], [`Self::append_trusted`], [`Self::append_marker`]): the
    /// epoch of this node's leadership, set by the replica layer from the metadata image.
    leader_epoch: AtomicI32,
    /// The log directory's space (None in tests that open a log alone): appends are refused
    /// while it is full, and an append failing for lack of space marks it full.
    space: Option<Arc<LogDirSpace>>,
    /// Set when the log belongs to a [`super::LogManager`]: flushes owed by `flush.messages`
    /// and the periodic policy go to its flusher thread instead of running in the append.
    group_commit: OnceLock<GroupCommit>,
    /// Whether this log is in the flusher's queue (at most once there).
    flush_queued: AtomicBool,
    /// An fsync failed: the page cache may have dropped the data (a later fsync can succeed
    /// without writing it), so nothing more is made durable and acknowledgeable here.
    flush_failed: AtomicBool,
}

struct GroupCommit {
    flusher: Arc<Flusher>,
    /// This log itself, to queue; weak so that the log is not kept alive by itself.
    this: Weak<PartitionLog>,
}

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
        let loaded = loader::load(dir, topic, partition, &config, checkpoints, clean)?;
        Ok(PartitionLog {
            topic: topic.to_string(),
            partition,
            dir: dir.to_path_buf(),
            config: RwLock::new(config),
            state: Mutex::new(LogState {
                local: loaded.local,
                log_start_offset: loaded.log_start_offset,
                producers: loaded.producers,
                aborted: loaded.aborted,
                leader_epochs: loaded.leader_epochs,
                verifications: HashMap::new(),
            }),
            next_guard_id: AtomicU64::new(1),
            leader_epoch: AtomicI32::new(DEFAULT_LEADER_EPOCH),
            space: None,
            group_commit: OnceLock::new(),
            flush_queued: AtomicBool::new(false),
            flush_failed: AtomicBool::new(false),
        })
    }

    /// Puts the log under the rules of its directory's space (see `log_dir_space`).
    pub fn with_space(mut self, space: Arc<LogDirSpace>) -> PartitionLog {
        self.space = Some(space);
        self
    }

    /// Runs an append under the log directory's space rules: refused before anything is
    /// written while the directory is full, and a failure for lack of space marks it full.
    fn within_space<T>(
        &self,
        append: impl FnOnce() -> Result<T, AppendError>,
    ) -> Result<T, AppendError> {
        let Some(space) = &self.space else {
            return append();
        };
        space.admit_write()?;
        let outcome = append();
        if let Err(AppendError::Io(error)) = &outcome {
            space.write_failed(error);
        }
        outcome
    }

    /// Hands this log's flushes to `flusher` from now on (group commit); `this` is the log.
    pub fn attach_flusher(&self, flusher: Arc<Flusher>, this: Weak<PartitionLog>) {
        assert!(
            std::ptr::eq(this.as_ptr(), self),
            "attach_flusher is given the log itself"
        );
        if self
            .group_commit
            .set(GroupCommit { flusher, this })
            .is_err()
        {
            panic!("a log has one flusher");
        }
    }

    /// Queues this log for its flusher unless queued already.
    fn request_flush(&self) {
        let Some(group_commit) = self.group_commit.get() else {
            return;
        };
        if self.flush_queued.swap(true, Ordering::AcqRel) {
            return;
        }
        match group_commit.this.upgrade() {
            Some(log) => group_commit.flusher.enqueue(log),
            // Being dropped (its topic deleted): nobody waits on it any more.
            None => self.flush_queued.store(false, Ordering::Release),
        }
    }

    /// The flusher's work for this log: syncs everything appended so far without holding the
    /// log lock, then moves the recovery point. Appends after the flag is cleared queue the
    /// log again, so none is left owed.
    /// Returns whether it synced anything.
    pub(super) fn flush_queued(&self) -> io::Result<bool> {
        self.flush_queued.store(false, Ordering::Release);
        if self.flush_failed.load(Ordering::Acquire) {
            return Ok(false);
        }
        let Some(plan) = self.lock().local.plan_flush() else {
            return Ok(false);
        };
        let started = std::time::Instant::now();
        if let Err(error) = plan.sync() {
            self.flush_failed.store(true, Ordering::Release);
            return Err(error);
        }
        self.lock()
            .local
            .complete_flush(&plan, crate::clock::now_ms());
        crate::metrics::storage::flushed(started.elapsed());
        Ok(true)
    }

    #[cfg(test)]
    pub(super) fn lock_local_for_test<T>(&self, f: impl FnOnce(&mut LocalLog) -> T) -> T {
        f(&mut self.lock().local)
    }

    /// Below this offset records may be acknowledged and counted by the high watermark: the
    /// log end unless a flush owed by `flush.messages` is still in flight (then what is on
    /// disk). See [`LocalLog::acknowledgeable_end_offset`].
    pub fn acknowledgeable_end_offset(&self) -> i64 {
        self.lock().local.acknowledgeable_end_offset()
    }

    /// Whether an fsync of this log failed (what it owes will never be acknowledged).
    pub fn flush_failed(&self) -> bool {
        self.flush_failed.load(Ordering::Acquire)
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
        LogOffsets {
            log_start_offset: state.log_start_offset,
            log_end_offset: state.log_end_offset(),
            last_stable_offset: state.last_stable_offset(),
        }
    }

    pub fn recovery_point(&self) -> i64 {
        self.lock().local.recovery_point()
    }

    pub fn size_bytes(&self) -> u64 {
        self.lock().local.size_bytes()
    }

    /// Offsets, size and segment count under one lock (scrape-time metrics).
    pub fn stats(&self) -> LogStats {
        let state = self.lock();
        LogStats {
            log_start_offset: state.log_start_offset,
            log_end_offset: state.log_end_offset(),
            size_bytes: state.local.size_bytes(),
            segment_count: state.local.segment_count(),
        }
    }

    /// Validates `records` (one or more v2 batches as a producer sent them), assigns offsets and
    /// appends them. Nothing is written unless every batch is valid.
    pub fn append(&self, records: &[u8], now_ms: i64) -> Result<AppendResult, AppendError> {
        self.append_as_leader(records, self.leader_epoch(), now_ms)
    }

    /// The leader epoch stamped on this node's appends from now on (a new leadership).
    pub fn set_leader_epoch(&self, leader_epoch: i32) {
        self.leader_epoch.store(leader_epoch, Ordering::Release);
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    /// Opens (or joins) the verification of `producer_id`'s transactional appends: call before
    /// asking the transaction coordinator, then append with [`Self::append_verified`].
    pub fn begin_verification(&self, producer_id: i64, now_ms: i64) -> VerificationGuard {
        let mut state = self.lock();
        let next_id = &self.next_guard_id;
        let (id, _) = *state
            .verifications
            .entry(producer_id)
            .or_insert_with(|| (next_id.fetch_add(1, Ordering::Relaxed), now_ms));
        VerificationGuard { producer_id, id }
    }

    /// [`Self::append`] of a transactional batch whose transaction was verified with `guard`;
    /// refused with [`AppendError::VerificationVoided`] when a marker for the producer was
    /// written since the guard was taken.
    pub fn append_verified(
        &self,
        records: &[u8],
        now_ms: i64,
        guard: VerificationGuard,
    ) -> Result<AppendResult, AppendError> {
        let config = self.config();
        let valid = validator::validate_from_client(records, &config, now_ms)?;
        if valid
            .headers
            .iter()
            .any(|(_, h)| h.producer_id != guard.producer_id)
        {
            return Err(AppendError::VerificationVoided);
        }
        self.append_validated(
            &valid.records,
            &valid.headers,
            &config,
            now_ms,
            true,
            None,
            self.leader_epoch(),
            Some(guard),
        )
    }

    /// [`Self::append`] as the leader of `leader_epoch`, which is stamped on the batches (Kafka's
    /// `appendAsLeader`); a batch opening a newer epoch adds it to the leader epoch cache.
    pub fn append_as_leader(
        &self,
        records: &[u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendResult, AppendError> {
        let config = self.config();
        let valid = validator::validate_from_client(records, &config, now_ms)?;
        self.append_validated(
            &valid.records,
            &valid.headers,
            &config,
            now_ms,
            true,
            None,
            leader_epoch,
            None,
        )
    }

    /// Appends batches the broker itself wrote (e.g. the metadata log), skipping client checks.
    pub fn append_trusted(&self, records: &[u8], now_ms: i64) -> Result<AppendResult, AppendError> {
        let config = self.config();
        let headers = validator::parse_trusted(records)?;
        assert!(
            !headers.is_empty(),
            "append_trusted needs at least one batch"
        );
        self.append_validated(
            records,
            &headers,
            &config,
            now_ms,
            false,
            None,
            self.leader_epoch(),
            None,
        )
    }

    /// Appends batches copied from the partition's leader (Kafka's `appendAsFollower`): their
    /// offsets, leader epochs and timestamps stay as the leader wrote them, and producer state
    /// is replayed from them rather than checked (the leader checked). They must continue
    /// this log exactly: the first one starts at the log end offset.
    pub fn append_as_follower(
        &self,
        records: &[u8],
        now_ms: i64,
    ) -> Result<AppendResult, AppendError> {
        self.within_space(|| self.write_as_follower(records, now_ms))
    }

    fn write_as_follower(&self, records: &[u8], now_ms: i64) -> Result<AppendResult, AppendError> {
        let config = self.config();
        let headers = validator::parse_trusted(records)?;
        assert!(!headers.is_empty(), "append_as_follower needs a batch");
        let mut state = self.lock();
        let base_offset = state.log_end_offset();
        let mut next_offset = base_offset;
        for (_, header) in &headers {
            if header.base_offset != next_offset {
                return Err(AppendError::NotContiguous {
                    base_offset: header.base_offset,
                    log_end_offset: base_offset,
                });
            }
            next_offset = header.last_offset() + 1;
        }
        let size_bytes: u64 = headers.iter().map(|(_, h)| h.size_bytes() as u64).sum();
        self.maybe_roll(&mut state, &config, size_bytes, now_ms)?;
        let first_position = headers[0].0;
        let placed: Vec<(u64, BatchHeader)> = headers
            .iter()
            .map(|&(position, header)| ((position - first_position) as u64, header))
            .collect();
        record_leader_epochs(&mut state.leader_epochs, &placed)?;
        let end_position = first_position + size_bytes as usize;
        state.local.append(
            &[std::io::IoSlice::new(
                &records[first_position..end_position],
            )],
            &placed,
            now_ms,
        )?;
        for &(position, header) in &headers {
            if !header.is_control() {
                state.producers.replay(&header);
                continue;
            }
            let batch = &records[position..position + header.size_bytes()];
            let commit = crate::record::control::is_commit(batch, &header)
                .filter(|_| header.producer_id >= 0);
            if let Some(commit) = commit {
                let aborted = state.producers.apply_marker(
                    header.producer_id,
                    header.producer_epoch,
                    -1,
                    commit,
                    header.base_offset,
                    header.max_timestamp,
                );
                state.verifications.remove(&header.producer_id);
                if let Some(aborted) = aborted {
                    let active_base = state.local.active().base_offset();
                    transaction_index::append(&self.dir, active_base, &aborted)?;
                    state.aborted.push(aborted);
                }
            }
        }
        state.producers.set_map_end_offset(next_offset);
        let record_count: i64 = headers
            .iter()
            .map(|(_, h)| i64::from(h.records_count))
            .sum();
        if state.local.count_unflushed(
            record_count,
            &config,
            now_ms,
            self.group_commit.get().is_some(),
        )? {
            self.request_flush();
        }
        Ok(AppendResult {
            base_offset,
            last_offset: next_offset - 1,
            log_append_time_ms: -1,
            log_start_offset: state.log_start_offset,
        })
    }

    /// Removes every batch from the one holding `offset` on (a follower whose log diverged
    /// from its leader's, KIP-101), and rebuilds what describes the log from what remains:
    /// producer state (from the newest snapshot at or below the new end), aborted
    /// transactions and leader epochs. Below the log start offset the log is emptied and
    /// starts again at `offset`. Returns the new log end offset.
    pub fn truncate_to(&self, offset: i64) -> io::Result<i64> {
        let config = self.config();
        let mut state = self.lock();
        let old_end = state.log_end_offset();
        if offset >= old_end {
            return Ok(old_end);
        }
        if offset < state.local.first_base_offset() || offset < state.log_start_offset {
            state.local.truncate_fully(offset, &config)?;
            state.log_start_offset = offset;
        } else {
            state.local.truncate_to(offset, &config)?;
        }
        self.rebuild_after_truncation(&mut state)?;
        tracing::warn!(
            topic = self.topic,
            partition = self.partition,
            old_end,
            new_end = state.log_end_offset(),
            "truncated the log"
        );
        Ok(state.log_end_offset())
    }

    /// Empties the log and starts it again at `offset` (Kafka's `truncateFullyAndStartAt`: a
    /// follower that fell below its leader's log start).
    pub fn reset_to(&self, offset: i64) -> io::Result<()> {
        let config = self.config();
        let mut state = self.lock();
        state.local.truncate_fully(offset, &config)?;
        state.log_start_offset = offset;
        self.rebuild_after_truncation(&mut state)?;
        tracing::warn!(
            topic = self.topic,
            partition = self.partition,
            offset,
            "emptied the log to start at the leader's log start"
        );
        Ok(())
    }

    fn rebuild_after_truncation(&self, state: &mut LogState) -> io::Result<()> {
        let new_end = state.log_end_offset();
        let mut producers = ProducerStateManager::new(&self.dir);
        let aborted = loader::load_producer_state(
            &state.local,
            state.log_start_offset,
            &mut producers,
            &self.topic,
            self.partition,
        )?;
        state.producers = producers;
        state.aborted = aborted;
        state.verifications.clear();
        let log_start_offset = state.log_start_offset;
        let mut changed = state.leader_epochs.truncate_from_end(new_end);
        changed |= state.leader_epochs.truncate_from_start(log_start_offset);
        if changed {
            state.leader_epochs.flush()?;
        }
        Ok(())
    }

    /// The latest leader epoch in the log, -1 when it has none (what a follower sends as its
    /// last fetched epoch).
    pub fn latest_epoch(&self) -> i32 {
        self.lock().leader_epochs.latest_epoch().unwrap_or(-1)
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
        let headers = validator::parse_trusted(&batch)?;
        let marker = Marker {
            commit,
            coordinator_epoch,
        };
        let result = self.append_validated(
            &batch,
            &headers,
            &config,
            now_ms,
            false,
            Some(marker),
            self.leader_epoch(),
            None,
        )?;
        Ok(result.base_offset)
    }

    /// The last stable offset and every aborted transaction, read under one lock: all
    /// transactions with data below that offset are decided, so those not listed committed.
    pub fn stable_view(&self) -> (i64, Vec<AbortedTxn>) {
        let state = self.lock();
        (state.last_stable_offset(), state.aborted.clone())
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

    #[allow(clippy::too_many_arguments)]
    fn append_validated(
        &self,
        records: &[u8],
        headers: &[(usize, BatchHeader)],
        config: &LogConfig,
        now_ms: i64,
        from_client: bool,
        marker: Option<Marker>,
        leader_epoch: i32,
        verification: Option<VerificationGuard>,
    ) -> Result<AppendResult, AppendError> {
        self.within_space(|| {
            self.write_validated(
                records,
                headers,
                config,
                now_ms,
                from_client,
                marker,
                leader_epoch,
                verification,
            )
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn write_validated(
        &self,
        records: &[u8],
        headers: &[(usize, BatchHeader)],
        config: &LogConfig,
        now_ms: i64,
        from_client: bool,
        marker: Option<Marker>,
        leader_epoch: i32,
        verification: Option<VerificationGuard>,
    ) -> Result<AppendResult, AppendError> {
        let size_bytes: u64 = headers.iter().map(|(_, h)| h.size_bytes() as u64).sum();
        let mut state = self.lock();
        if let Some(guard) = verification {
            let open = state
                .verifications
                .get(&guard.producer_id)
                .map(|(id, _)| *id);
            if open != Some(guard.id) {
                return Err(AppendError::VerificationVoided);
            }
        }
        if let Some(marker) = marker {
            let (_, header) = headers[0];
            state
                .producers
                .check_marker(
                    header.producer_id,
                    header.producer_epoch,
                    marker.coordinator_epoch,
                )
                .map_err(AppendError::Producer)?;
        }
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
        let base_offset = state.log_end_offset();
        let assigned = validator::assign_offsets(
            records,
            headers,
            base_offset,
            leader_epoch,
            config.log_append_time.then_some(now_ms),
        );
        record_leader_epochs(&mut state.leader_epochs, &assigned.placed)?;
        let parts = assigned.io_slices(records, headers);
        state.local.append(&parts, &assigned.placed, now_ms)?;
        let next_offset = assigned.next_offset;
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
            // The transaction ended here: a batch verified for it can no longer be appended.
            state.verifications.remove(&header.producer_id);
            if let Some(aborted) = aborted {
                let active_base = state.local.active().base_offset();
                transaction_index::append(&self.dir, active_base, &aborted)?;
                state.aborted.push(aborted);
            }
        }
        let record_count: i64 = headers
            .iter()
            .map(|(_, h)| i64::from(h.records_count))
            .sum();
        if state.local.count_unflushed(
            record_count,
            config,
            now_ms,
            self.group_commit.get().is_some(),
        )? {
            self.request_flush();
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
        if !state.local.should_roll(config, incoming_bytes, now_ms) {
            return Ok(());
        }
        let next_offset = state.log_end_offset();
        state.local.seal_active()?;
        // The snapshot named after the new segment's base offset lets recovery skip every
        // sealed segment.
        debug_assert_eq!(state.producers.map_end_offset(), next_offset);
        state.producers.write_snapshot()?;
        state.local.roll(config)?;
        tracing::debug!(
            topic = self.topic,
            partition = self.partition,
            base_offset = next_offset,
            "rolled segment"
        );
        Ok(())
    }

    /// The periodic flush: `flush.ms` elapsed, or sealed segments not yet on disk (Kafka
    /// flushes a segment when it is rolled).
    pub fn maybe_flush(&self, now_ms: i64) -> io::Result<()> {
        let config = self.config();
        if self.group_commit.get().is_none() {
            return self.lock().local.maybe_flush(&config, now_ms);
        }
        // With a flusher no fsync runs here (the caller may be a runtime worker).
        if self.lock().local.flush_due(&config, now_ms) {
            self.request_flush();
        }
        Ok(())
    }

    /// fsyncs everything appended so far (e.g. after each metadata commit).
    pub fn flush(&self, now_ms: i64) -> io::Result<()> {
        self.lock().local.flush(now_ms)
    }

    /// Flushes and trims the active segment's indexes: the clean-shutdown path.
    pub fn close(&self, now_ms: i64) -> io::Result<()> {
        let mut state = self.lock();
        state.local.flush(now_ms)?;
        state.local.seal_active()?;
        state.producers.write_snapshot()
    }

    /// Open transactions in this partition: (producer id, first offset).
    pub fn ongoing_transactions(&self) -> Vec<(i64, i64)> {
        self.lock().producers.ongoing_transactions().collect()
    }

    /// Forgets producers idle longer than `producer.id.expiration.ms`.
    pub fn expire_producers(&self, now_ms: i64, expiration_ms: i64) -> usize {
        let mut state = self.lock();
        state
            .verifications
            .retain(|_, (_, created_ms)| now_ms - *created_ms <= VERIFICATION_AGE_MS_MAX);
        state.producers.expire(now_ms, expiration_ms)
    }

    /// Runs `f` on the producer state (read-only), under the log lock.
    pub fn with_producers<T>(&self, f: impl FnOnce(&ProducerStateManager) -> T) -> T {
        f(&self.lock().producers)
    }

    /// The leader epoch entries (epoch, start offset), oldest first.
    pub fn leader_epochs(&self) -> Vec<EpochEntry> {
        self.lock().leader_epochs.entries().to_vec()
    }

    /// OffsetsForLeaderEpoch for `epoch`: (the largest known epoch <= it, where that epoch
    /// ends), or (-1, -1) when unknown. See [`LeaderEpochCache::end_offset_for`].
    pub fn end_offset_for_leader_epoch(&self, epoch: i32) -> (i32, i64) {
        let state = self.lock();
        state
            .leader_epochs
            .end_offset_for(epoch, state.log_end_offset())
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
        state.local.read(
            offset,
            max_bytes,
            min_one_batch,
            upper_offset,
            state.log_start_offset,
        )
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
            for item in crate::record::batch::BatchIter::new(&bytes) {
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
        state
            .local
            .offset_for_timestamp(target_ms, state.log_start_offset)
    }

    /// The record with the largest timestamp (the first one, if several share it).
    pub fn max_timestamp(&self) -> io::Result<Option<(i64, i64)>> {
        self.lock().local.max_timestamp()
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
        let expired = state
            .local
            .expired_segments(&config, now_ms, state.log_start_offset);
        self.retire_locked(&mut state, &expired)
    }

    fn retire_below_log_start(&self) -> io::Result<Vec<RetiredSegment>> {
        let mut state = self.lock();
        let below = state.local.segments_below(state.log_start_offset);
        self.retire_locked(&mut state, &below)
    }

    /// Retires the segments based at `bases`, then brings the log start offset up to the
    /// first remaining segment and drops what lies below it from the aborted transactions and
    /// the leader epochs. Every move of the log start offset ends here.
    fn retire_locked(
        &self,
        state: &mut LogState,
        bases: &[i64],
    ) -> io::Result<Vec<RetiredSegment>> {
        let retired = state.local.retire(bases)?;
        let first_base = state.local.first_base_offset();
        if first_base > state.log_start_offset {
            state.log_start_offset = first_base;
        }
        transaction_index::forget_below_log_start(&mut state.aborted, state.log_start_offset);
        if state
            .leader_epochs
            .truncate_from_start(state.log_start_offset)
        {
            // The loader truncates the cache to the checkpointed log start again, so a file
            // that lags here is corrected on the next open: no reason to fail retention.
            if let Err(error) = state.leader_epochs.flush() {
                tracing::warn!(
                    topic = self.topic,
                    partition = self.partition,
                    %error,
                    "writing the leader epoch checkpoint failed"
                );
            }
        }
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
        self.lock().local.sealed_segments()
    }

    /// Swaps the sealed segment at `base_offset` for the cleaned file `cleaned` (fsynced, in
    /// this directory, named `<stem>.log.cleaned`), crash-safely: the cleaned file becomes
    /// `.swap`, the old segment's files are retired, the `.swap` becomes the `.log`. A crash
    /// at any point leaves either the old segment or the complete new one (the loader finishes
    /// an interrupted swap). Returns the retired old segment, or None (and removes the cleaned
    /// file) when the segment changed meanwhile (retention took it).
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
        if !state.local.holds_sealed(base_offset, expected_size_bytes) {
            std::fs::remove_file(cleaned)?;
            return Ok(None);
        }
        if !dropped_abort_markers.is_empty() {
            let dropped = |t: &AbortedTxn| dropped_abort_markers.contains(&t.last_offset);
            transaction_index::rewrite_without(&self.dir, base_offset, &dropped)?;
            state.aborted.retain(|t| !dropped(t));
        }
        let retired = state.local.swap_in_cleaned(base_offset, cleaned, &config)?;
        Ok(Some(retired))
    }

    /// Deletes the log's files (topic deletion).
    pub fn delete(self) -> io::Result<()> {
        let dir = self.dir.clone();
        let state = self.state.into_inner().expect("lock");
        state.local.delete_segments()?;
        std::fs::remove_dir_all(dir)
    }
}

/// Adds the leader epochs the placed batches open to `cache` and writes its checkpoint, before
/// the batches reach a segment: the file never lacks an epoch the log holds. The cache
/// changes only once the file is written, so a failed write is retried by the next append.
fn record_leader_epochs(
    cache: &mut LeaderEpochCache,
    placed: &[(u64, BatchHeader)],
) -> io::Result<()> {
    if !placed
        .iter()
        .any(|(_, header)| cache.opens_new_epoch(header.partition_leader_epoch))
    {
        return Ok(());
    }
    let mut updated = cache.clone();
    for (_, header) in placed {
        updated.assign_if_newer(header.partition_leader_epoch, header.base_offset);
    }
    updated.flush()?;
    *cache = updated;
    Ok(())
}

/// A transaction marker being appended: its type and the coordinator epoch it carries.
#[derive(Clone, Copy, Debug)]
struct Marker {
    commit: bool,
    coordinator_epoch: i32,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Properties;
    use crate::record::builder::BatchBuilder;
    use crate::record::codec::Codec;

    pub(crate) fn config(overrides: &[(&str, &str)]) -> Arc<LogConfig> {
        let overrides = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Arc::new(LogConfig::new(&Properties::default(), &overrides))
    }

    pub(crate) fn batch(count: usize, codec: Codec, now: i64) -> Vec<u8> {
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

    /// Opens `t`-0 in `dir` as after an unclean shutdown, with no checkpoints.
    pub(crate) fn open_unclean(dir: &Path, config: &Arc<LogConfig>) -> PartitionLog {
        PartitionLog::open(dir, "t", 0, config.clone(), Checkpoints::default(), false).unwrap()
    }

    fn epochs(log: &PartitionLog) -> Vec<(i32, i64)> {
        log.leader_epochs()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    #[test]
    fn leader_epochs_follow_appends_and_are_rebuilt_from_the_batches() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::clock::now_ms();
        let config = config(&[("segment.bytes", "300")]);
        let open = || open_unclean(dir.path(), &config);
        let log = open();
        assert!(epochs(&log).is_empty());
        let file = dir
            .path()
            .join(super::super::leader_epoch::LEADER_EPOCH_CHECKPOINT_FILE);
        for epoch in [0, 0, 2] {
            log.append_as_leader(&batch(3, Codec::None, now), epoch, now)
                .unwrap();
        }
        // The leader's epoch is stamped on the batches it appends.
        let slice = log.read(6, 1 << 20, true).unwrap().unwrap().unwrap();
        let header = BatchHeader::parse(&slice.read_to_vec().unwrap()).unwrap();
        assert_eq!((header.base_offset, header.partition_leader_epoch), (6, 2));
        assert_eq!(epochs(&log), [(0, 0), (2, 6)]);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "0\n2\n0 0\n2 6\n");
        assert_eq!(log.end_offset_for_leader_epoch(0), (0, 6));
        assert_eq!(log.end_offset_for_leader_epoch(1), (0, 6));
        assert_eq!(log.end_offset_for_leader_epoch(2), (2, 9));
        assert_eq!(log.end_offset_for_leader_epoch(3), (-1, -1));
        drop(log);
        // Without its file, the cache is rebuilt from the batch headers, and written again.
        std::fs::remove_file(&file).unwrap();
        let log = open();
        assert_eq!(epochs(&log), [(0, 0), (2, 6)]);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "0\n2\n0 0\n2 6\n");
        // Appends in the latest epoch add nothing; a newer epoch does.
        log.append(&batch(1, Codec::None, now), now).unwrap();
        log.append_as_leader(&batch(1, Codec::None, now), 2, now)
            .unwrap();
        assert_eq!(epochs(&log), [(0, 0), (2, 6)]);
        log.append_as_leader(&batch(1, Codec::None, now), 5, now)
            .unwrap();
        assert_eq!(epochs(&log), [(0, 0), (2, 6), (5, 11)]);
    }

    #[test]
    fn leader_epochs_follow_log_start_moves_and_tail_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::clock::now_ms();
        let config = config(&[("segment.bytes", "300")]);
        let open = || open_unclean(dir.path(), &config);
        let log = open();
        for (round, epoch) in [0, 0, 1, 1, 3].into_iter().enumerate() {
            let result = log
                .append_as_leader(&batch(3, Codec::None, now), epoch, now)
                .unwrap();
            assert_eq!(result.base_offset, round as i64 * 3);
        }
        assert_eq!(epochs(&log), [(0, 0), (1, 6), (3, 12)]);
        // DeleteRecords: the entries below the new log start collapse onto it.
        log.delete_records_before(4).unwrap().unwrap();
        assert_eq!(epochs(&log), [(0, 4), (1, 6), (3, 12)]);
        log.delete_records_before(7).unwrap().unwrap();
        assert_eq!(epochs(&log), [(1, 7), (3, 12)]);
        drop(log);
        // A torn last batch (a crash mid-write) takes its epoch with it on recovery, and a
        // file entry beyond the log end (written before the batch) goes too.
        let file = dir
            .path()
            .join(super::super::leader_epoch::LEADER_EPOCH_CHECKPOINT_FILE);
        std::fs::write(&file, "0\n3\n1 7\n3 12\n4 15\n").unwrap();
        let active = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .max()
            .unwrap();
        let segment = std::fs::OpenOptions::new()
            .write(true)
            .open(&active)
            .unwrap();
        let size = segment.metadata().unwrap().len();
        segment.set_len(size - 5).unwrap();
        drop(segment);
        let checkpoints = Checkpoints {
            log_start_offset: 7,
            recovery_point: 0,
        };
        let log =
            PartitionLog::open(dir.path(), "t", 0, config.clone(), checkpoints, false).unwrap();
        assert_eq!(log.offsets().log_end_offset, 12);
        assert_eq!(epochs(&log), [(1, 7)]);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "0\n1\n1 7\n");
        assert_eq!(log.end_offset_for_leader_epoch(1), (1, 12));
    }
}
