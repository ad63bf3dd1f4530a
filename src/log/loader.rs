//! Opening a partition directory (Kafka's `LogLoader`): from the files a previous run left,
//! possibly after a crash, to the parts a partition log is composed of. In order:
//!
//! 1. finish a segment swap the cleaner had completed (`.swap`), drop its half-written files
//!    (`.cleaned`, `.txnindex.tmp`) and the files of segments retired before the restart
//!    (`.deleted`);
//! 2. find the segments by their `.log` files;
//! 3. after a clean shutdown trust the indexes; otherwise validate every segment from the one
//!    holding the recovery point on, rebuilding its indexes and truncating a torn or corrupt
//!    tail, and delete the segments after a truncated one;
//! 4. rebuild producer state and the aborted-transaction list from the newest producer
//!    snapshot and the batch headers after it;
//! 5. read the leader epoch cache (rebuilt from the batch headers when its file is missing,
//!    unreadable, or empty while the log is not) and trim it to the log's offsets.
//!
//! Invariants of what it returns: the log end offset is the end of the last whole, valid
//! batch; the log start offset is at least the first segment's base offset; the recovery
//! point is at most the log end offset; producer state, aborted transactions and leader
//! epochs describe exactly the batches in `[log start, log end)`.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::leader_epoch::LeaderEpochCache;
use super::local_log::{LocalLog, CLEANED_SUFFIX, RECOVERY_BATCH_BYTES_MAX, SWAP_SUFFIX};
use super::log_config::LogConfig;
use super::producer_state::{AbortedTxn, ProducerStateManager};
use super::segment::{self, Segment};
use super::transaction_index;

/// What the broker's checkpoint files say about a partition at startup.
#[derive(Clone, Copy, Debug, Default)]
pub struct Checkpoints {
    pub log_start_offset: i64,
    pub recovery_point: i64,
}

/// A partition directory, loaded: the parts the partition log composes.
pub struct LoadedLog {
    pub local: LocalLog,
    pub log_start_offset: i64,
    pub producers: ProducerStateManager,
    /// Ordered by marker offset, none below the log start offset.
    pub aborted: Vec<AbortedTxn>,
    pub leader_epochs: LeaderEpochCache,
}

/// Loads the partition directory `dir`, creating it if absent. `clean` says the broker shut
/// down cleanly (indexes are trusted); otherwise segments from the one holding the recovery
/// point onward are validated and their indexes rebuilt.
pub fn load(
    dir: &Path,
    topic: &str,
    partition: i32,
    config: &LogConfig,
    checkpoints: Checkpoints,
    clean: bool,
) -> io::Result<LoadedLog> {
    std::fs::create_dir_all(dir)?;
    finish_interrupted_cleaning(dir)?;
    let mut local = LocalLog::new(
        dir,
        load_segments(dir, topic, partition, config, checkpoints, clean)?,
    );
    let log_start_offset = checkpoints.log_start_offset.max(local.first_base_offset());
    let mut producers = ProducerStateManager::new(dir);
    let aborted = load_producer_state(&local, log_start_offset, &mut producers, topic, partition)?;
    local.set_recovery_point(if clean {
        local.log_end_offset()
    } else {
        checkpoints.recovery_point.min(local.log_end_offset())
    });
    let leader_epochs = load_leader_epochs(&local, log_start_offset, topic, partition)?;
    Ok(LoadedLog {
        local,
        log_start_offset,
        producers,
        aborted,
        leader_epochs,
    })
}

/// Steps 2 and 3: the segments of `dir`, recovered where needed; the last one is active.
fn load_segments(
    dir: &Path,
    topic: &str,
    partition: i32,
    config: &LogConfig,
    checkpoints: Checkpoints,
    clean: bool,
) -> io::Result<BTreeMap<i64, Segment>> {
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
    Ok(segments)
}

/// Step 4: loads the newest producer snapshot not beyond the log end and replays the batch
/// headers after it; with no snapshot, replays from the log start. Snapshots are written at
/// every roll and at clean shutdown, so after a crash only the active segment is read.
/// Returns the aborted transactions, ordered by marker offset.
pub(super) fn load_producer_state(
    local: &LocalLog,
    log_start_offset: i64,
    producers: &mut ProducerStateManager,
    topic: &str,
    partition: i32,
) -> io::Result<Vec<AbortedTxn>> {
    let log_end_offset = local.log_end_offset();
    let from = match producers.load_newest_snapshot(log_end_offset)? {
        Some(offset) if offset >= log_start_offset => offset,
        _ => {
            producers.reset(log_start_offset);
            log_start_offset
        }
    };
    // Aborted transactions below `from` come from the `.txnindex` files; those at or above
    // it are dropped from the files and found again by the replay.
    let dir = local.dir();
    let bases: Vec<i64> = local.segments().keys().copied().collect();
    let mut aborted = transaction_index::load_before(dir, &bases, from)?;
    transaction_index::forget_below_log_start(&mut aborted, log_start_offset);
    let mut replayed_batches = 0u64;
    local.for_each_batch_from(from, |segment, position, header| {
        if header.is_control() {
            let size = header.size_bytes().min(RECOVERY_BATCH_BYTES_MAX);
            let mut bytes = vec![0u8; size];
            segment.file().read_exact_at(&mut bytes, position)?;
            let marker = crate::record::control::is_commit(&bytes, header)
                .filter(|_| header.producer_id >= 0);
            if let Some(commit) = marker {
                let aborted_txn = producers.apply_marker(
                    header.producer_id,
                    header.producer_epoch,
                    -1,
                    commit,
                    header.base_offset,
                    header.max_timestamp,
                );
                if let Some(aborted_txn) = aborted_txn {
                    transaction_index::append(dir, segment.base_offset(), &aborted_txn)?;
                    aborted.push(aborted_txn);
                }
            }
        } else {
            producers.replay(header);
        }
        replayed_batches += 1;
        Ok(())
    })?;
    producers.set_map_end_offset(log_end_offset);
    if replayed_batches > 0 || producers.producer_count() > 0 {
        tracing::debug!(
            topic,
            partition,
            from,
            replayed_batches,
            producers = producers.producer_count(),
            "loaded producer state"
        );
    }
    Ok(aborted)
}

/// Step 5: the leader epoch cache from its checkpoint file or, when that is missing,
/// unreadable or empty while the log is not, from the partition leader epoch of every batch
/// from the log start on (Kafka's rule: a batch opens an epoch above the latest); then
/// trimmed to `[log start, log end)` (the file may have missed a truncation before a crash)
/// and written back if that changed it.
fn load_leader_epochs(
    local: &LocalLog,
    log_start_offset: i64,
    topic: &str,
    partition: i32,
) -> io::Result<LeaderEpochCache> {
    let dir = local.dir();
    let (mut cache, mut write) = match LeaderEpochCache::load(dir) {
        Ok(Some(cache)) => (cache, false),
        Ok(None) => (LeaderEpochCache::empty(dir), false),
        Err(error) if error.kind() == io::ErrorKind::InvalidData => {
            tracing::warn!(
                topic,
                partition,
                %error,
                "rebuilding an unreadable leader epoch checkpoint"
            );
            (LeaderEpochCache::empty(dir), true)
        }
        Err(error) => return Err(error),
    };
    if cache.is_empty() && local.log_end_offset() > log_start_offset {
        local.for_each_batch_from(log_start_offset, |_, _, header| {
            cache.assign_if_newer(header.partition_leader_epoch, header.base_offset);
            Ok(())
        })?;
        write |= !cache.is_empty();
        if !cache.is_empty() {
            tracing::info!(
                topic,
                partition,
                entries = cache.entries().len(),
                "rebuilt the leader epoch cache from the log"
            );
        }
    }
    write |= cache.truncate_from_end(local.log_end_offset());
    write |= cache.truncate_from_start(log_start_offset);
    if write {
        cache.flush()?;
    }
    Ok(cache)
}

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
