//! The leader epoch cache and its checkpoint file (Kafka's `LeaderEpochFileCache` and
//! `LeaderEpochCheckpointFile`): for each leader epoch that wrote to the partition, the offset
//! of its first batch. It answers OffsetsForLeaderEpoch ("where does epoch E end in this
//! log?"), which is how a follower or a consumer finds out how much of its copy diverged.
//!
//! The file, `leader-epoch-checkpoint` in the partition directory, is Kafka's checkpoint text
//! format, version 0: the version, the entry count, then `epoch start_offset` per line.
//!
//! ```text
//! 0
//! 2
//! 0 0
//! 2 17
//! ```
//!
//! Invariants:
//! - Entries ascend strictly in epoch and in start offset, and both are >= 0: an assignment
//!   that contradicts later entries (a smaller epoch, or an earlier start) removes them first.
//! - In memory the cache matches the log. The file may lag behind a truncation (the loader
//!   truncates again to the log's bounds on open) but never behind an assignment: the
//!   partition log writes it before the batch that opens a new epoch reaches the segment.
//! - The file is replaced atomically (temporary file, fsync, rename, directory fsync), so a
//!   crash leaves the old or the new file, never a mix.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::checkpoint::sync_dir;

pub const LEADER_EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
/// Kafka's `UNDEFINED_EPOCH` and `UNDEFINED_EPOCH_OFFSET` (OffsetsForLeaderEpoch).
pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;
const CHECKPOINT_VERSION: i32 = 0;
/// Entries a checkpoint file may claim. A log gets one per leader change, so this is far
/// above any real count; a corrupt count cannot make the reader allocate without bound.
const ENTRIES_MAX: usize = 1 << 20;

/// One leader epoch and the offset of the first batch it wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

#[derive(Clone, Debug)]
pub struct LeaderEpochCache {
    path: PathBuf,
    /// Ascending in both fields; at most [`ENTRIES_MAX`] after a read.
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// An empty cache whose file lives in the partition directory `dir` (nothing is written).
    pub fn empty(dir: &Path) -> LeaderEpochCache {
        LeaderEpochCache {
            path: dir.join(LEADER_EPOCH_CHECKPOINT_FILE),
            entries: Vec::new(),
        }
    }

    /// Reads the checkpoint file of the partition directory `dir`: None when there is none,
    /// an `InvalidData` error when it is not a version-0 checkpoint. An empty file is an empty
    /// cache, as Kafka reads it. A temporary file left by a write that a crash interrupted is
    /// removed: the file it was to replace is still whole.
    pub fn load(dir: &Path) -> io::Result<Option<LeaderEpochCache>> {
        let mut cache = LeaderEpochCache::empty(dir);
        match std::fs::remove_file(cache.temporary_path()) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        let text = match std::fs::read_to_string(&cache.path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let shown = cache.path.display().to_string();
        let invalid =
            |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{shown}: {what}"));
        let mut lines = text.lines();
        let Some(version) = lines.next() else {
            return Ok(Some(cache));
        };
        if version.trim().parse::<i32>().ok() != Some(CHECKPOINT_VERSION) {
            return Err(invalid("unknown version"));
        }
        let count: usize = lines
            .next()
            .and_then(|line| line.trim().parse().ok())
            .filter(|&count| count <= ENTRIES_MAX)
            .ok_or_else(|| invalid("bad entry count"))?;
        let mut read = 0;
        for line in lines.take(count) {
            let mut fields = line.split_whitespace();
            let (Some(epoch), Some(start_offset), None) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(invalid("bad entry"));
            };
            let epoch: i32 = epoch.parse().map_err(|_| invalid("bad epoch"))?;
            let start_offset: i64 = start_offset.parse().map_err(|_| invalid("bad offset"))?;
            if epoch < 0 || start_offset < 0 {
                return Err(invalid("negative entry"));
            }
            // As Kafka loads it: each entry is assigned, so a non-monotonic one replaces those
            // it contradicts.
            cache.assign(epoch, start_offset);
            read += 1;
        }
        if read != count {
            return Err(invalid("fewer entries than its count"));
        }
        Ok(Some(cache))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn temporary_path(&self) -> PathBuf {
        self.path.with_extension("tmp")
    }

    /// Oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The epoch of the newest entry: the one the log is being written in.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|entry| entry.epoch)
    }

    /// Records that `epoch` starts at `start_offset` (in memory; [`Self::flush`] writes it).
    /// Returns whether the cache changed. Assigning the latest epoch again at a later offset
    /// changes nothing; anything else first removes the newest entries whose epoch or start
    /// offset is not below the new one's, as Kafka does.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        assert!(
            epoch >= 0 && start_offset >= 0,
            "invalid leader epoch entry ({epoch}, {start_offset})"
        );
        if let Some(latest) = self.entries.last() {
            if latest.epoch == epoch && start_offset >= latest.start_offset {
                return false;
            }
        }
        let mut removed = Vec::new();
        while let Some(last) = self.entries.last() {
            if last.epoch < epoch && last.start_offset < start_offset {
                break;
            }
            removed.push(self.entries.pop().expect("non-empty"));
        }
        // Removing one entry that started at the same offset only means its epoch wrote
        // nothing; anything more is a real conflict worth a warning.
        if removed.len() > 1
            || removed
                .first()
                .is_some_and(|e| e.start_offset != start_offset)
        {
            tracing::warn!(
                file = %self.path.display(),
                epoch,
                start_offset,
                ?removed,
                "new leader epoch entry removed conflicting entries"
            );
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        self.debug_check();
        true
    }

    /// Whether a batch stamped with partition leader epoch `epoch` opens a new epoch here: the
    /// epoch is set (>= 0) and above the latest, as Kafka decides on append and on recovery.
    pub fn opens_new_epoch(&self, epoch: i32) -> bool {
        epoch >= 0 && self.latest_epoch().is_none_or(|latest| epoch > latest)
    }

    /// Assigns `epoch` at `start_offset` when it opens a new epoch ([`Self::opens_new_epoch`]).
    /// Returns whether it did.
    pub fn assign_if_newer(&mut self, epoch: i32, start_offset: i64) -> bool {
        self.opens_new_epoch(epoch) && self.assign(epoch, start_offset)
    }

    /// Removes the entries starting at or after `end_offset`: the log was truncated to end
    /// there. Returns whether the cache changed.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        if end_offset >= 0 {
            while self
                .entries
                .last()
                .is_some_and(|entry| entry.start_offset >= end_offset)
            {
                self.entries.pop();
            }
        }
        self.entries.len() != before
    }

    /// The log now starts at `start_offset`: the entries starting at or below it collapse
    /// into one, the newest of them, moved to start there. Returns whether the cache changed.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let covered = self
            .entries
            .iter()
            .take_while(|entry| entry.start_offset <= start_offset)
            .count();
        if covered == 0 {
            return false;
        }
        let first = EpochEntry {
            epoch: self.entries[covered - 1].epoch,
            start_offset,
        };
        let changed = covered > 1 || self.entries[0] != first;
        self.entries.drain(..covered - 1);
        self.entries[0] = first;
        self.debug_check();
        changed
    }

    /// OffsetsForLeaderEpoch, as Kafka answers it: (epoch, end offset) where the epoch is the
    /// largest known one <= `requested_epoch` and the end offset is where the next larger
    /// epoch starts, or `log_end_offset` when `requested_epoch` is the latest. For an epoch
    /// below every known one: the requested epoch with the first known start offset (the data
    /// before it is gone; the asker truncates to there). For [`UNDEFINED_EPOCH`], an epoch
    /// above the latest, or an empty cache: ([`UNDEFINED_EPOCH`], [`UNDEFINED_EPOCH_OFFSET`]).
    pub fn end_offset_for(&self, requested_epoch: i32, log_end_offset: i64) -> (i32, i64) {
        const UNDEFINED: (i32, i64) = (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        if requested_epoch == UNDEFINED_EPOCH {
            return UNDEFINED;
        }
        if self.latest_epoch() == Some(requested_epoch) {
            return (requested_epoch, log_end_offset);
        }
        let higher = self.entries.partition_point(|e| e.epoch <= requested_epoch);
        let Some(next) = self.entries.get(higher) else {
            return UNDEFINED;
        };
        match higher.checked_sub(1).map(|floor| self.entries[floor]) {
            None => (requested_epoch, next.start_offset),
            Some(floor) => (floor.epoch, next.start_offset),
        }
    }

    /// Writes the entries to the checkpoint file atomically and durably.
    pub fn flush(&self) -> io::Result<()> {
        let mut text = format!("{CHECKPOINT_VERSION}\n{}\n", self.entries.len());
        for entry in &self.entries {
            text.push_str(&format!("{} {}\n", entry.epoch, entry.start_offset));
        }
        let temporary = self.temporary_path();
        let mut file = File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temporary, &self.path)?;
        sync_dir(self.path.parent().unwrap_or(Path::new(".")))
    }

    fn debug_check(&self) {
        debug_assert!(
            self.entries
                .windows(2)
                .all(|pair| pair[0].epoch < pair[1].epoch
                    && pair[0].start_offset < pair[1].start_offset),
            "leader epoch entries ascend: {:?}",
            self.entries
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(pairs: &[(i32, i64)]) -> Vec<EpochEntry> {
        pairs
            .iter()
            .map(|&(epoch, start_offset)| EpochEntry {
                epoch,
                start_offset,
            })
            .collect()
    }

    fn cache(pairs: &[(i32, i64)]) -> LeaderEpochCache {
        let mut cache = LeaderEpochCache::empty(Path::new("."));
        for &(epoch, start_offset) in pairs {
            assert!(cache.assign(epoch, start_offset));
        }
        cache
    }

    #[test]
    fn checkpoint_file_round_trips_in_kafkas_format() {
        let dir = tempfile::tempdir().unwrap();
        assert!(LeaderEpochCache::load(dir.path()).unwrap().is_none());
        let mut written = LeaderEpochCache::empty(dir.path());
        written.assign(0, 0);
        written.assign(2, 17);
        written.flush().unwrap();
        let path = dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "0\n2\n0 0\n2 17\n");
        assert!(!dir.path().join("leader-epoch-checkpoint.tmp").exists());
        let read = LeaderEpochCache::load(dir.path()).unwrap().unwrap();
        assert_eq!(read.entries(), entries(&[(0, 0), (2, 17)]));
        // Kafka splits entries on any whitespace; an empty file is an empty cache.
        std::fs::write(&path, "0\n1\n3   40\n").unwrap();
        let read = LeaderEpochCache::load(dir.path()).unwrap().unwrap();
        assert_eq!(read.entries(), entries(&[(3, 40)]));
        std::fs::write(&path, "").unwrap();
        assert!(LeaderEpochCache::load(dir.path())
            .unwrap()
            .unwrap()
            .is_empty());
        // A leftover temporary file goes; the checkpoint stays.
        std::fs::write(dir.path().join("leader-epoch-checkpoint.tmp"), "0\n").unwrap();
        LeaderEpochCache::load(dir.path()).unwrap();
        assert!(!dir.path().join("leader-epoch-checkpoint.tmp").exists());
        for bad in [
            "1\n0\n",
            "0\n2\n0 0\n",
            "0\nx\n",
            "0\n1\n0\n",
            "0\n1\n-1 0\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            let error = LeaderEpochCache::load(dir.path()).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{bad:?}");
        }
    }

    #[test]
    fn assign_keeps_entries_ascending() {
        let mut cache = cache(&[(0, 0)]);
        // The latest epoch again, later: nothing new.
        assert!(!cache.assign(0, 5));
        assert!(cache.assign(1, 3));
        // The latest epoch at an earlier offset replaces its entry.
        assert!(cache.assign(1, 2));
        assert_eq!(cache.entries(), entries(&[(0, 0), (1, 2)]));
        assert!(cache.assign(2, 10));
        // A smaller epoch removes the larger ones it contradicts.
        assert!(cache.assign(1, 12));
        assert_eq!(cache.entries(), entries(&[(0, 0), (1, 12)]));
        // A larger epoch starting earlier removes the entries starting at or after it.
        assert!(cache.assign(3, 5));
        assert_eq!(cache.entries(), entries(&[(0, 0), (3, 5)]));
        assert_eq!(cache.latest_epoch(), Some(3));
        // What appends and the rebuild use: only an epoch above the latest, never an unset one.
        assert!(!cache.assign_if_newer(3, 9));
        assert!(!cache.assign_if_newer(2, 9));
        assert!(!cache.assign_if_newer(-1, 9));
        assert!(cache.assign_if_newer(4, 9));
        assert_eq!(cache.entries(), entries(&[(0, 0), (3, 5), (4, 9)]));
    }

    #[test]
    fn truncation_from_the_end_and_from_the_start() {
        let mut tail = cache(&[(0, 0), (2, 10), (4, 20)]);
        assert!(!tail.truncate_from_end(21));
        assert!(tail.truncate_from_end(20));
        assert_eq!(tail.entries(), entries(&[(0, 0), (2, 10)]));
        assert!(!tail.truncate_from_end(15));
        assert!(tail.truncate_from_end(10));
        assert_eq!(tail.entries(), entries(&[(0, 0)]));
        assert!(tail.truncate_from_end(0));
        assert!(tail.is_empty());

        let mut head = cache(&[(0, 0), (2, 10), (4, 20)]);
        // Exclusive, as Kafka's: an entry at the new start offset stays.
        assert!(head.truncate_from_start(5));
        assert_eq!(head.entries(), entries(&[(0, 5), (2, 10), (4, 20)]));
        assert!(head.truncate_from_start(10));
        assert_eq!(head.entries(), entries(&[(2, 10), (4, 20)]));
        assert!(!head.truncate_from_start(10));
        assert!(!head.truncate_from_start(3));
        assert!(head.truncate_from_start(25));
        assert_eq!(head.entries(), entries(&[(4, 25)]));
    }

    #[test]
    fn end_offset_for_answers_as_kafka() {
        let cache = cache(&[(1, 0), (3, 10), (5, 20)]);
        let log_end_offset = 30;
        // The latest epoch ends at the log end.
        assert_eq!(cache.end_offset_for(5, log_end_offset), (5, 30));
        // A smaller epoch ends where the next larger one starts.
        assert_eq!(cache.end_offset_for(3, log_end_offset), (3, 20));
        assert_eq!(cache.end_offset_for(1, log_end_offset), (1, 10));
        // An epoch between known ones: the largest known below it, ending at the next start.
        assert_eq!(cache.end_offset_for(4, log_end_offset), (3, 20));
        assert_eq!(cache.end_offset_for(2, log_end_offset), (1, 10));
        // Below every known epoch: the requested epoch, ending at the first known start.
        assert_eq!(cache.end_offset_for(0, log_end_offset), (0, 0));
        // Undefined, or above the latest: undefined.
        let undefined = (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        assert_eq!(
            cache.end_offset_for(UNDEFINED_EPOCH, log_end_offset),
            undefined
        );
        assert_eq!(cache.end_offset_for(6, log_end_offset), undefined);
        let empty = LeaderEpochCache::empty(Path::new("."));
        assert_eq!(empty.end_offset_for(0, 0), undefined);
    }
}
