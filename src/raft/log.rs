//! The in-memory view of the metadata log: a snapshot boundary (`start`) and the entries
//! after it. Offsets are positions; epochs never decrease along the log, which is what lets
//! "end offset for epoch" be a binary search and divergence be found from one fetch.

use super::messages::{Entry, Epoch, Offset, SnapshotId};

#[derive(Clone, Debug)]
pub struct RaftLog {
    /// Everything below `start.end_offset` lives in the snapshot `start` names.
    start: SnapshotId,
    entries: Vec<Entry>,
}

impl RaftLog {
    pub fn new(start: SnapshotId, entries: Vec<Entry>) -> RaftLog {
        assert!(
            start.end_offset >= 0 && start.epoch >= 0,
            "bad log start {start:?}"
        );
        let log = RaftLog {
            start,
            entries: Vec::new(),
        };
        let mut log = log;
        for entry in entries {
            log.append(entry);
        }
        log
    }

    pub fn start(&self) -> SnapshotId {
        self.start
    }

    pub fn start_offset(&self) -> Offset {
        self.start.end_offset
    }

    pub fn end_offset(&self) -> Offset {
        self.start.end_offset + self.entries.len() as Offset
    }

    pub fn last_epoch(&self) -> Epoch {
        self.entries.last().map_or(self.start.epoch, |e| e.epoch)
    }

    pub fn entry(&self, offset: Offset) -> Option<&Entry> {
        if offset < self.start_offset() {
            return None;
        }
        self.entries.get((offset - self.start_offset()) as usize)
    }

    /// Epoch of the entry at `offset`; the snapshot's epoch for `start - 1`.
    pub fn epoch_at(&self, offset: Offset) -> Option<Epoch> {
        if offset == self.start_offset() - 1 {
            return Some(self.start.epoch);
        }
        self.entry(offset).map(|e| e.epoch)
    }

    /// Kafka's `endOffsetForEpoch`: the largest epoch in the log not above `epoch`, and the
    /// offset where it ends. `None` when every epoch this log still holds is above `epoch`
    /// (the answer is inside the snapshot and lost).
    pub fn end_offset_for_epoch(&self, epoch: Epoch) -> Option<(Epoch, Offset)> {
        let count = self.entries.partition_point(|e| e.epoch <= epoch);
        if count > 0 {
            return Some((
                self.entries[count - 1].epoch,
                self.start_offset() + count as Offset,
            ));
        }
        if self.start.epoch <= epoch {
            return Some((self.start.epoch, self.start_offset()));
        }
        None
    }

    /// Raft's election restriction: is a log ending at (`last_epoch`, `end_offset`) at least
    /// as up to date as this one?
    pub fn is_up_to_date(&self, last_epoch: Epoch, end_offset: Offset) -> bool {
        (last_epoch, end_offset) >= (self.last_epoch(), self.end_offset())
    }

    pub fn append(&mut self, entry: Entry) {
        assert!(
            entry.epoch >= self.last_epoch(),
            "epochs never decrease along the log: appending epoch {} after {}",
            entry.epoch,
            self.last_epoch()
        );
        self.entries.push(entry);
    }

    /// Drops entries at `offset` and above.
    pub fn truncate_to(&mut self, offset: Offset) {
        assert!(
            offset >= self.start_offset() && offset <= self.end_offset(),
            "truncation to {offset} outside [{}, {}]",
            self.start_offset(),
            self.end_offset()
        );
        self.entries
            .truncate((offset - self.start_offset()) as usize);
    }

    /// Drops the entries a new snapshot `id` covers; the log then starts at it.
    pub fn compact_to(&mut self, id: SnapshotId) {
        assert!(id.end_offset > self.start_offset() && id.end_offset <= self.end_offset());
        assert_eq!(self.epoch_at(id.end_offset - 1), Some(id.epoch));
        self.entries
            .drain(..(id.end_offset - self.start_offset()) as usize);
        self.start = id;
    }

    /// Replaces the whole log with a snapshot fetched from the leader.
    pub fn reset_to(&mut self, id: SnapshotId) {
        self.entries.clear();
        self.start = id;
    }

    /// Entries from `from`, at most `count_max` of them and about `size_bytes_max` (always at
    /// least one when any exists, so a large entry still moves).
    pub fn slice(&self, from: Offset, count_max: usize, size_bytes_max: usize) -> Vec<Entry> {
        assert!(from >= self.start_offset() && from <= self.end_offset());
        let mut size_bytes = 0;
        let mut out = Vec::new();
        for entry in self.entries[(from - self.start_offset()) as usize..]
            .iter()
            .take(count_max)
        {
            size_bytes += entry.size_bytes();
            if !out.is_empty() && size_bytes > size_bytes_max {
                break;
            }
            out.push(entry.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::messages::EntryKind;
    use bytes::Bytes;

    fn entry(epoch: Epoch) -> Entry {
        Entry {
            epoch,
            kind: EntryKind::Data,
            data: Bytes::new(),
        }
    }

    #[test]
    fn end_offset_for_epoch_finds_the_epoch_boundary() {
        let log = RaftLog::new(
            SnapshotId {
                end_offset: 10,
                epoch: 2,
            },
            vec![entry(2), entry(3), entry(3), entry(5)],
        );
        assert_eq!(log.end_offset_for_epoch(1), None);
        assert_eq!(log.end_offset_for_epoch(2), Some((2, 11)));
        assert_eq!(log.end_offset_for_epoch(3), Some((3, 13)));
        assert_eq!(log.end_offset_for_epoch(4), Some((3, 13)));
        assert_eq!(log.end_offset_for_epoch(9), Some((5, 14)));
        let empty = RaftLog::new(
            SnapshotId {
                end_offset: 0,
                epoch: 0,
            },
            vec![],
        );
        assert_eq!(empty.end_offset_for_epoch(0), Some((0, 0)));
    }
}
