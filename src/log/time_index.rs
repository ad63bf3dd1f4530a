//! The sparse time index (`.timeindex`): 12-byte entries of (timestamp: i64, offset relative to
//! the segment's base offset: u32), big-endian, with timestamps strictly increasing.

use std::io;
use std::path::Path;

use super::index_file::{be_i64, be_u32, IndexFile};

pub const ENTRY_SIZE_BYTES: usize = 12;

pub struct TimeIndex {
    base_offset: i64,
    file: IndexFile,
}

impl TimeIndex {
    pub fn open(path: &Path, base_offset: i64, size_bytes_max: usize) -> io::Result<TimeIndex> {
        let mut index = TimeIndex {
            base_offset,
            file: IndexFile::open(path, ENTRY_SIZE_BYTES, size_bytes_max)?,
        };
        index.drop_invalid_tail();
        Ok(index)
    }

    /// Keeps the prefix whose timestamps and offsets strictly increase (see `OffsetIndex`).
    fn drop_invalid_tail(&mut self) {
        let mut valid = 0;
        let mut previous: Option<(i64, u32)> = None;
        while valid < self.file.len() {
            let entry = self.entry(valid);
            if let Some((timestamp, offset)) = previous {
                if entry.0 <= timestamp || entry.1 < offset {
                    break;
                }
            }
            previous = Some(entry);
            valid += 1;
        }
        self.file.truncate_entries(valid);
    }

    fn entry(&self, index: usize) -> (i64, u32) {
        let bytes = self.file.entry(index);
        (be_i64(bytes, 0), be_u32(bytes, 8))
    }

    pub fn is_full(&self) -> bool {
        self.file.is_full()
    }

    pub fn last_timestamp(&self) -> Option<i64> {
        self.last_entry().map(|(timestamp, _)| timestamp)
    }

    /// (timestamp, absolute offset) of the last entry.
    pub fn last_entry(&self) -> Option<(i64, i64)> {
        let (timestamp, offset) = self.entry(self.file.len().checked_sub(1)?);
        Some((timestamp, self.base_offset + i64::from(offset)))
    }

    /// Records that offsets up to `offset` have timestamps up to `timestamp_ms`; ignored unless
    /// the timestamp is a new maximum, which keeps entries increasing.
    pub fn maybe_append(&mut self, timestamp_ms: i64, offset: i64) {
        if self
            .last_timestamp()
            .is_some_and(|last| timestamp_ms <= last)
            || self.is_full()
        {
            return;
        }
        let relative = offset - self.base_offset;
        assert!(
            (0..=i64::from(u32::MAX)).contains(&relative),
            "offset {offset} outside segment"
        );
        let mut entry = [0u8; ENTRY_SIZE_BYTES];
        entry[..8].copy_from_slice(&timestamp_ms.to_be_bytes());
        entry[8..].copy_from_slice(&(relative as u32).to_be_bytes());
        self.file.push(&entry);
    }

    /// The offset to start searching from for the first record with timestamp >= `target_ms`:
    /// the offset of the last entry whose timestamp is below the target, else the segment start.
    pub fn lookup(&self, target_ms: i64) -> i64 {
        match self
            .file
            .floor(target_ms.saturating_sub(1), |bytes| be_i64(bytes, 0))
        {
            Some(index) => self.base_offset + i64::from(self.entry(index).1),
            None => self.base_offset,
        }
    }

    /// Drops entries whose offset is at or past `offset`.
    pub fn truncate_to_offset(&mut self, offset: i64) {
        let mut keep = self.file.len();
        while keep > 0 && self.base_offset + i64::from(self.entry(keep - 1).1) >= offset {
            keep -= 1;
        }
        self.file.truncate_entries(keep);
    }

    pub fn clear(&mut self) {
        self.file.truncate_entries(0);
    }

    /// Allocates the blocks of the next `count` entries (see [`IndexFile::allocate_entries`]).
    pub fn allocate_entries(&mut self, count: usize) -> io::Result<()> {
        self.file.allocate_entries(count)
    }

    pub fn trim(&mut self) -> io::Result<()> {
        self.file.trim()
    }

    pub fn flush(&self) -> io::Result<()> {
        self.file.flush()
    }

    pub fn delete(self) -> io::Result<()> {
        self.file.delete()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_returns_a_safe_starting_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = TimeIndex::open(&dir.path().join("0.timeindex"), 0, 1200).unwrap();
        index.maybe_append(1000, 10);
        index.maybe_append(900, 11); // not a new maximum: ignored
        index.maybe_append(2000, 20);
        assert_eq!(index.lookup(500), 0);
        assert_eq!(index.lookup(1000), 0);
        assert_eq!(index.lookup(1500), 10);
        assert_eq!(index.lookup(5000), 20);
        index.truncate_to_offset(20);
        assert_eq!(index.last_timestamp(), Some(1000));
    }
}
