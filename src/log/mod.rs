//! Partition logs on disk, laid out as Kafka lays out a log directory:
//!
//! ```text
//! data/meta.properties                      cluster id, node id
//! data/.kafka_cleanshutdown                 present only after a clean shutdown
//! data/recovery-point-offset-checkpoint     per partition: offsets below are fsynced
//! data/log-start-offset-checkpoint          per partition: first readable offset
//! data/cleaner-offset-checkpoint            per compacted partition: first dirty offset
//! data/.dlog-reserve                        space held for metadata writes on a full disk
//! data/<topic>-<partition>/                 segments: 00000000000000000000.log/.index/.timeindex
//!                                           (and .txnindex), producer state: <offset>.snapshot,
//!                                           leader-epoch-checkpoint
//! ```
//!
//! The modules follow Kafka's storage layer: [`partition`] is the partition log the broker
//! uses (Kafka's `UnifiedLog`), composed of [`local_log`] (the segments), [`producer_state`],
//! [`transaction_index`] and [`leader_epoch`]; [`loader`] opens a partition directory and
//! [`validator`] checks batches before they are appended. Storage errors are [`error`]'s; no
//! Kafka protocol error type is used here. The directory's [`flusher`] thread does the fsyncs
//! that `flush.messages` and the periodic policy ask for (group commit).

pub mod checkpoint;
pub mod cleaner;
pub mod error;
pub mod flusher;
pub mod index_file;
pub mod leader_epoch;
pub mod loader;
pub mod local_log;
pub mod log_config;
pub mod log_dir_space;
pub mod offset_index;
pub mod partition;
pub mod producer_state;
pub mod segment;
pub mod time_index;
pub mod transaction_index;
pub mod validator;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use flusher::Flusher;
use log_config::LogConfig;
use log_dir_space::{LogDirSpace, SpaceSettings};
use partition::{Checkpoints, OffsetOutOfRange, PartitionLog};
use segment::RetiredSegment;

pub const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";
const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";
const LOG_START_OFFSET_FILE: &str = "log-start-offset-checkpoint";
const CLEANER_OFFSET_FILE: &str = "cleaner-offset-checkpoint";

/// `<topic>-<partition>`, Kafka's partition directory name.
pub fn partition_dir_name(topic: &str, partition: i32) -> String {
    format!("{topic}-{partition}")
}

/// All partition logs of the broker, by topic name then partition index.
pub struct LogManager {
    data_dir: PathBuf,
    clean_start: bool,
    startup_checkpoints: HashMap<(String, i32), Checkpoints>,
    /// Only the partitions this broker hosts (a replica of), so indexes may be sparse.
    logs: RwLock<HashMap<String, BTreeMap<i32, Arc<PartitionLog>>>>,
    /// Segments taken out of their logs, with the time (ms) after which their files go.
    retired: Mutex<VecDeque<(i64, RetiredSegment)>>,
    /// Per compacted partition: offsets below have been deduplicated by the cleaner.
    first_dirty_offsets: Mutex<HashMap<(String, i32), i64>>,
    /// The directory's free space, its reserve, and whether writes are refused.
    space: Arc<LogDirSpace>,
    /// fsyncs every hosted log's owed flushes off the request path (group commit).
    flusher: Arc<Flusher>,
    /// `.lock`, held (flock) while this manager lives: one process per directory.
    _dir_lock: std::fs::File,
}

/// The lock file of a log directory, as Kafka names it.
const DIR_LOCK_FILE: &str = ".lock";

/// Threads closing partition logs at a clean shutdown (each mostly waits on an fsync).
const SHUTDOWN_CLOSE_THREADS: usize = 16;

/// Upper bound on `log.cleaner.threads` (Kafka has none; a typo must not spawn thousands).
const CLEANER_THREADS_MAX: usize = 64;

/// Retired segments waiting for `file.delete.delay.ms`; past this many, the oldest are
/// deleted at once so the queue stays bounded.
const RETIRED_SEGMENTS_MAX: usize = 100_000;

/// Takes the directory's lock (an exclusive flock on `.lock`, released by the kernel when
/// the process ends, however it ends), or fails when another process holds it: two brokers on
/// one directory would remove each other's clean-shutdown marker and write the same segments.
fn lock_dir(data_dir: &Path) -> io::Result<std::fs::File> {
    let path = data_dir.join(DIR_LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!(
                "failed to acquire the lock on {}: another process (a dlog or Kafka broker) is \
                 using this directory",
                path.display()
            ),
        )),
        Err(std::fs::TryLockError::Error(error)) => Err(error),
    }
}

impl LogManager {
    /// Reads the checkpoints and the clean-shutdown marker. The marker is removed at once, so
    /// that a crash from here on is recovered as unclean.
    pub fn open(data_dir: &Path) -> io::Result<LogManager> {
        // Without a reserve: tests that open a log directory alone need none.
        let no_reserve = SpaceSettings {
            reserve_bytes: 0,
            ..SpaceSettings::default()
        };
        LogManager::open_with_space(data_dir, no_reserve)
    }

    /// [`Self::open`] with the directory's space settings (`log.dir.reserve.bytes`, …).
    pub fn open_with_space(data_dir: &Path, space: SpaceSettings) -> io::Result<LogManager> {
        std::fs::create_dir_all(data_dir)?;
        let dir_lock = lock_dir(data_dir)?;
        let marker = data_dir.join(CLEAN_SHUTDOWN_FILE);
        let clean_start = marker.exists();
        if clean_start {
            std::fs::remove_file(&marker)?;
            checkpoint::sync_dir(data_dir)?;
        }
        let recovery_points = checkpoint::read(&data_dir.join(RECOVERY_POINT_FILE))?;
        let log_starts = checkpoint::read(&data_dir.join(LOG_START_OFFSET_FILE))?;
        let mut startup_checkpoints: HashMap<(String, i32), Checkpoints> = HashMap::new();
        for (key, offset) in recovery_points {
            startup_checkpoints.entry(key).or_default().recovery_point = offset;
        }
        for (key, offset) in log_starts {
            startup_checkpoints.entry(key).or_default().log_start_offset = offset;
        }
        tracing::info!(dir = %data_dir.display(), clean_start, "opened log directory");
        let space = Arc::new(LogDirSpace::open(data_dir, space));
        Ok(LogManager {
            space,
            data_dir: data_dir.to_path_buf(),
            clean_start,
            startup_checkpoints,
            logs: RwLock::new(HashMap::new()),
            retired: Mutex::new(VecDeque::new()),
            first_dirty_offsets: Mutex::new(
                checkpoint::read(&data_dir.join(CLEANER_OFFSET_FILE))?
                    .into_iter()
                    .collect(),
            ),
            flusher: Flusher::start()?,
            _dir_lock: dir_lock,
        })
    }

    /// The directory's flusher (to listen for its rounds).
    pub fn flusher(&self) -> &Flusher {
        &self.flusher
    }

    /// Whether the previous run ended with a clean shutdown.
    pub fn clean_start(&self) -> bool {
        self.clean_start
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The log directory's space: shared with the metadata quorum, checked every tick.
    pub fn space(&self) -> &Arc<LogDirSpace> {
        &self.space
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<PartitionLog>> {
        let logs = self.logs.read().expect("logs lock");
        logs.get(topic)?.get(&partition).cloned()
    }

    /// Opens (creating if needed) the `hosted` partitions of `topic`; existing ones get the
    /// new config. Partitions this broker no longer hosts are removed by
    /// [`LogManager::delete_partition`].
    pub fn ensure_topic(
        &self,
        topic: &str,
        topic_id: &str,
        hosted: &[i32],
        config: Arc<LogConfig>,
    ) -> io::Result<()> {
        let mut logs = self.logs.write().expect("logs lock");
        let partitions = logs.entry(topic.to_string()).or_default();
        for log in partitions.values() {
            log.set_config(config.clone());
        }
        for &partition in hosted {
            if partitions.contains_key(&partition) {
                continue;
            }
            let dir = self.data_dir.join(partition_dir_name(topic, partition));
            let is_new = !dir.exists();
            // Checkpoints read at start describe directories that existed then; a topic
            // deleted and created again since starts from nothing.
            let checkpoints = match is_new {
                true => Checkpoints::default(),
                false => self
                    .startup_checkpoints
                    .get(&(topic.to_string(), partition))
                    .copied()
                    .unwrap_or_default(),
            };
            let log = PartitionLog::open(
                &dir,
                topic,
                partition,
                config.clone(),
                checkpoints,
                self.clean_start && !is_new,
            )?
            .with_space(self.space.clone());
            if is_new {
                std::fs::write(
                    dir.join("partition.metadata"),
                    format!("version: 0\ntopic_id: {topic_id}\n"),
                )?;
            }
            let log = Arc::new(log);
            log.attach_flusher(self.flusher.clone(), Arc::downgrade(&log));
            partitions.insert(partition, log);
        }
        Ok(())
    }

    /// Removes a topic's logs and files.
    pub fn delete_topic(&self, topic: &str) -> io::Result<()> {
        let removed = self.logs.write().expect("logs lock").remove(topic);
        // A topic created again under this name starts dirty from offset 0.
        self.first_dirty_offsets
            .lock()
            .expect("cleaner offsets lock")
            .retain(|(name, _), _| name != topic);
        for log in removed.into_iter().flat_map(BTreeMap::into_values) {
            // In-flight requests may hold the log; its files go once they are done with it.
            match Arc::try_unwrap(log) {
                Ok(log) => log.delete()?,
                Err(shared) => std::fs::remove_dir_all(shared.dir())?,
            }
        }
        Ok(())
    }

    /// Removes one partition's log and files (a replica moved elsewhere), whether it is open
    /// or only left on disk by an earlier run. Nothing to do when neither.
    pub fn delete_partition(&self, topic: &str, partition: i32) -> io::Result<()> {
        let removed = self
            .logs
            .write()
            .expect("logs lock")
            .get_mut(topic)
            .and_then(|partitions| partitions.remove(&partition));
        self.first_dirty_offsets
            .lock()
            .expect("cleaner offsets lock")
            .remove(&(topic.to_string(), partition));
        let dir = self.data_dir.join(partition_dir_name(topic, partition));
        match removed.map(Arc::try_unwrap) {
            Some(Ok(log)) => log.delete()?,
            // In-flight requests may hold the log; its files go now, its handles with them.
            _ if dir.exists() => std::fs::remove_dir_all(&dir)?,
            _ => return Ok(()),
        }
        tracing::info!(
            topic,
            partition,
            "deleted a partition no longer hosted here"
        );
        Ok(())
    }

    pub fn all(&self) -> Vec<Arc<PartitionLog>> {
        self.logs
            .read()
            .expect("logs lock")
            .values()
            .flat_map(BTreeMap::values)
            .cloned()
            .collect()
    }

    /// Periodic work: flushes due by policy, then the checkpoint files.
    pub fn flush_and_checkpoint(&self, now_ms: i64) -> io::Result<()> {
        for log in self.all() {
            log.maybe_flush(now_ms)?;
        }
        self.write_checkpoints()
    }

    fn write_checkpoints(&self) -> io::Result<()> {
        let logs = self.all();
        let key = |log: &PartitionLog| (log.topic().to_string(), log.partition());
        let recovery: Vec<_> = logs.iter().map(|l| (key(l), l.recovery_point())).collect();
        let starts: Vec<_> = logs
            .iter()
            .map(|l| (key(l), l.offsets().log_start_offset))
            .collect();
        // Checkpoints may use the reserve: a broker on a full disk keeps them current, so a
        // restart there recovers no more than it must.
        self.space.with_reserve("recovery point checkpoint", || {
            checkpoint::write(&self.data_dir.join(RECOVERY_POINT_FILE), &recovery)
        })?;
        self.space.with_reserve("log start offset checkpoint", || {
            checkpoint::write(&self.data_dir.join(LOG_START_OFFSET_FILE), &starts)
        })
    }

    /// Retention on every log (`log.retention.check.interval.ms`); the log start offsets it
    /// moves are checkpointed at once. Returns the number of segments retired.
    pub fn enforce_retention(&self, now_ms: i64) -> io::Result<usize> {
        let mut retired_count = 0;
        for log in self.all() {
            let retired = log.enforce_retention(now_ms)?;
            retired_count += retired.len();
            if !retired.is_empty() {
                crate::metrics::storage::retention_deleted(
                    log.topic(),
                    retired.len() as u64,
                    retired.iter().map(|r| r.size_bytes).sum(),
                );
            }
            self.schedule_deletion(retired, now_ms + log.config().file_delete_delay_ms)?;
        }
        if retired_count > 0 {
            self.write_checkpoints()?;
        }
        Ok(retired_count)
    }

    /// One cleaner pass: compacts every compacted log whose dirty ratio (or compaction lag)
    /// asks for it, up to `settings.threads` logs at once, and checkpoints how far each got.
    /// All threads share one read budget (`log.cleaner.io.max.bytes.per.second`). A log whose
    /// cleaning fails is logged and skipped; the others go on. Runs on a blocking thread.
    pub fn clean_logs(
        &self,
        now_ms: i64,
        settings: cleaner::CleanerSettings,
    ) -> Vec<(String, i32, cleaner::CleanStats)> {
        let mut due: Vec<(Arc<PartitionLog>, i64)> = Vec::new();
        for log in self.all() {
            let key = (log.topic().to_string(), log.partition());
            let first_dirty = self
                .first_dirty_offsets
                .lock()
                .expect("cleaner offsets lock")
                .get(&key)
                .copied()
                .unwrap_or(0)
                .max(log.offsets().log_start_offset);
            if cleaner::needs_cleaning(&log, first_dirty, now_ms) {
                due.push((log, first_dirty));
            }
        }
        let throttle = cleaner::IoThrottle::new(settings.io_bytes_per_second_max);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let done = Mutex::new(Vec::new());
        let worker = || loop {
            let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some((log, first_dirty)) = due.get(index) else {
                return;
            };
            match self.clean_one(log, *first_dirty, now_ms, settings, &throttle) {
                Ok(Some(stats)) => done.lock().expect("cleaned lock").push((
                    log.topic().to_string(),
                    log.partition(),
                    stats,
                )),
                Ok(None) => {}
                Err(error) => tracing::error!(
                    topic = log.topic(),
                    partition = log.partition(),
                    %error,
                    "cleaning a log failed"
                ),
            }
        };
        let threads = settings
            .threads
            .clamp(1, CLEANER_THREADS_MAX)
            .min(due.len().max(1));
        std::thread::scope(|scope| {
            for _ in 1..threads {
                scope.spawn(worker);
            }
            worker();
        });
        done.into_inner().expect("cleaned lock")
    }

    /// Cleans one log and checkpoints the offset it reached.
    fn clean_one(
        &self,
        log: &PartitionLog,
        first_dirty: i64,
        now_ms: i64,
        settings: cleaner::CleanerSettings,
        throttle: &cleaner::IoThrottle,
    ) -> io::Result<Option<cleaner::CleanStats>> {
        let started = std::time::Instant::now();
        let Some((stats, retired)) =
            cleaner::clean_throttled(log, first_dirty, now_ms, settings, throttle)?
        else {
            return Ok(None);
        };
        crate::metrics::storage::cleaned(stats.bytes_removed, started.elapsed());
        self.schedule_deletion(retired, now_ms + log.config().file_delete_delay_ms)?;
        let key = (log.topic().to_string(), log.partition());
        let mut offsets = self
            .first_dirty_offsets
            .lock()
            .expect("cleaner offsets lock");
        offsets.insert(key, stats.first_dirty_offset);
        // Written under the lock: threads finishing together must not share the temporary.
        Self::write_cleaner_checkpoint_locked(&self.data_dir, &offsets)?;
        Ok(Some(stats))
    }

    fn write_cleaner_checkpoint_locked(
        data_dir: &Path,
        offsets: &HashMap<(String, i32), i64>,
    ) -> io::Result<()> {
        let entries: Vec<((String, i32), i64)> =
            offsets.iter().map(|(k, v)| (k.clone(), *v)).collect();
        checkpoint::write(&data_dir.join(CLEANER_OFFSET_FILE), &entries)
    }

    /// DeleteRecords on one partition: moves its log start offset to `offset` and makes that
    /// durable before answering. Returns the new low watermark.
    pub fn delete_records(
        &self,
        log: &PartitionLog,
        offset: i64,
        now_ms: i64,
    ) -> io::Result<Result<i64, OffsetOutOfRange>> {
        let (low_watermark, retired) = match log.delete_records_before(offset)? {
            Ok(done) => done,
            Err(out_of_range) => return Ok(Err(out_of_range)),
        };
        self.schedule_deletion(retired, now_ms + log.config().file_delete_delay_ms)?;
        self.write_checkpoints()?;
        Ok(Ok(low_watermark))
    }

    fn schedule_deletion(
        &self,
        retired: Vec<RetiredSegment>,
        delete_after_ms: i64,
    ) -> io::Result<()> {
        let mut overflow = Vec::new();
        {
            let mut queue = self.retired.lock().expect("retired lock");
            for segment in retired {
                queue.push_back((delete_after_ms, segment));
            }
            while queue.len() > RETIRED_SEGMENTS_MAX {
                overflow.push(queue.pop_front().expect("non-empty").1);
            }
        }
        overflow.into_iter().try_for_each(RetiredSegment::delete)
    }

    /// Deletes retired segment files whose delay has passed (all of them when `now_ms` is
    /// `i64::MAX`).
    pub fn delete_retired(&self, now_ms: i64) -> io::Result<()> {
        let due: Vec<RetiredSegment> = {
            let mut queue = self.retired.lock().expect("retired lock");
            // Not sorted by deadline (delays differ per topic): split the bounded queue.
            let (due, waiting): (Vec<_>, Vec<_>) = queue
                .drain(..)
                .partition(|(delete_after_ms, _)| *delete_after_ms <= now_ms);
            *queue = waiting.into();
            due.into_iter().map(|(_, segment)| segment).collect()
        };
        due.into_iter().try_for_each(RetiredSegment::delete)
    }

    /// Clean shutdown: flush every log, write the checkpoints, then the clean-shutdown marker.
    pub fn shutdown(&self, now_ms: i64) -> io::Result<()> {
        self.flusher.stop();
        self.delete_retired(i64::MAX)?;
        // The logs' unflushed data first, in one pass: what each close's fsync then finds
        // dirty is only what the close itself writes.
        checkpoint::sync_filesystem(&self.data_dir)?;
        let logs = self.all();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let close_some = || -> io::Result<()> {
            loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(log) = logs.get(index) else {
                    return Ok(());
                };
                // Closing writes a producer state snapshot: the reserve covers it on a full
                // disk, so the shutdown stays clean.
                self.space
                    .with_reserve("closing a partition log", || log.close(now_ms))?;
            }
        };
        // Closes wait on fsyncs, not on the CPU: several in flight let the filesystem commit
        // them together.
        let closers = SHUTDOWN_CLOSE_THREADS.min(logs.len().max(1));
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..closers).map(|_| scope.spawn(close_some)).collect();
            workers
                .into_iter()
                .map(|worker| worker.join().expect("closing thread panicked"))
                .collect::<io::Result<Vec<()>>>()
        })?;
        self.write_checkpoints()?;
        std::fs::write(self.data_dir.join(CLEAN_SHUTDOWN_FILE), b"")?;
        checkpoint::sync_dir(&self.data_dir)
    }
}

impl Drop for LogManager {
    fn drop(&mut self) {
        self.flusher.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Properties;
    use crate::record::builder::BatchBuilder;

    #[test]
    fn a_directory_is_opened_by_one_manager_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = LogManager::open(dir.path()).unwrap();
        let refused = LogManager::open(dir.path())
            .err()
            .expect("the directory is locked");
        assert_eq!(refused.kind(), io::ErrorKind::ResourceBusy, "{refused}");
        assert!(refused.to_string().contains(".lock"), "{refused}");
        drop(first);
        LogManager::open(dir.path()).expect("free again once the first is gone");
    }

    #[test]
    fn cleaner_threads_clean_several_logs_in_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        let manager = LogManager::open(dir.path()).unwrap();
        let overrides = [
            ("cleanup.policy", "compact"),
            ("segment.bytes", "300"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config = Arc::new(LogConfig::new(&Properties::default(), &overrides));
        manager.ensure_topic("t", "id", &[0, 1, 2], config).unwrap();
        let now = crate::clock::now_ms();
        for partition in 0..3 {
            let log = manager.get("t", partition).unwrap();
            for i in 0..20 {
                let key = format!("k{}", i % 3);
                let batch = BatchBuilder::new(now)
                    .record(Some(key.as_bytes()), Some(b"v"), now)
                    .build();
                log.append(&batch, now).unwrap();
            }
        }
        let settings = cleaner::CleanerSettings {
            enabled: true,
            backoff_ms: 15_000,
            dedupe_buffer_bytes: 1 << 20,
            io_bytes_per_second_max: f64::INFINITY,
            threads: 2,
        };
        let mut cleaned = manager.clean_logs(now + 10, settings);
        cleaned.sort_by_key(|(_, partition, _)| *partition);
        assert_eq!(
            cleaned.iter().map(|(_, p, _)| *p).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert!(cleaned.iter().all(|(_, _, s)| s.records_removed > 0));
        let checkpoint = checkpoint::read(&dir.path().join(CLEANER_OFFSET_FILE)).unwrap();
        assert_eq!(checkpoint.len(), 3);
    }
}
