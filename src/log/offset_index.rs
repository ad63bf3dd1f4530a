//! The sparse offset index (`.index`): 8-byte entries of (offset relative to the segment's base
//! offset: u32, byte position in the `.log`: u32), big-endian, increasing in both.

use std::io;
use std::path::Path;

use super::index_file::{be_u32, IndexFile};

pub const ENTRY_SIZE_BYTES: usize = 8;

pub struct OffsetIndex {
    base_offset: i64,
    file: IndexFile,
}

impl OffsetIndex {
    pub fn open(path: &Path, base_offset: i64, size_bytes_max: usize) -> io::Result<OffsetIndex> {
        let mut index = OffsetIndex {
            base_offset,
            file: IndexFile::open(path, ENTRY_SIZE_BYTES, size_bytes_max)?,
        };
        index.drop_invalid_tail();
        Ok(index)
    }

    /// A crash can leave the zero-filled preallocated tail counted as entries; keep the
    /// prefix whose offsets strictly increase.
    fn drop_invalid_tail(&mut self) {
        let mut valid = 0;
        let mut previous: Option<(u32, u32)> = None;
        while valid < self.file.len() {
            let entry = self.entry(valid);
            if let Some((offset, position)) = previous {
                if entry.0 <= offset || entry.1 < position {
                    break;
                }
            }
            previous = Some(entry);
            valid += 1;
        }
        self.file.truncate_entries(valid);
    }

    fn entry(&self, index: usize) -> (u32, u32) {
        let bytes = self.file.entry(index);
        (be_u32(bytes, 0), be_u32(bytes, 4))
    }

    pub fn is_full(&self) -> bool {
        self.file.is_full()
    }

    pub fn last_offset(&self) -> Option<i64> {
        self.file
            .len()
            .checked_sub(1)
            .map(|i| self.base_offset + i64::from(self.entry(i).0))
    }

    /// Records that the batch starting at `offset` lies at `position`.
    pub fn append(&mut self, offset: i64, position: u32) {
        let relative = offset - self.base_offset;
        assert!(
            (0..=i64::from(u32::MAX)).contains(&relative),
            "offset {offset} outside segment"
        );
        if let Some(last) = self.last_offset() {
            assert!(
                offset > last,
                "offset index must increase: {offset} after {last}"
            );
        }
        let mut entry = [0u8; ENTRY_SIZE_BYTES];
        entry[..4].copy_from_slice(&(relative as u32).to_be_bytes());
        entry[4..].copy_from_slice(&position.to_be_bytes());
        self.file.push(&entry);
    }

    /// The greatest indexed (offset, position) with offset <= `target`, else the segment start.
    pub fn lookup(&self, target: i64) -> (i64, u32) {
        let relative = (target - self.base_offset).clamp(-1, i64::from(u32::MAX));
        if relative < 0 {
            return (self.base_offset, 0);
        }
        match self.file.floor(relative as u32, |bytes| be_u32(bytes, 0)) {
            Some(index) => {
                let (offset, position) = self.entry(index);
                (self.base_offset + i64::from(offset), position)
            }
            None => (self.base_offset, 0),
        }
    }

    /// Drops entries at or past byte `position` (after the log was truncated there).
    pub fn truncate_to_position(&mut self, position: u32) {
        let keep = self
            .file
            .floor(position, |bytes| be_u32(bytes, 4))
            .map_or(0, |i| i + 1);
        let keep = if keep > 0 && self.entry(keep - 1).1 >= position {
            keep - 1
        } else {
            keep
        };
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
    fn lookup_finds_floor_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000100.index");
        let mut index = OffsetIndex::open(&path, 100, 1024).unwrap();
        assert_eq!(index.lookup(150), (100, 0));
        index.append(110, 4096);
        index.append(120, 8192);
        assert_eq!(index.lookup(100), (100, 0));
        assert_eq!(index.lookup(115), (110, 4096));
        assert_eq!(index.lookup(120), (120, 8192));
        assert_eq!(index.lookup(1_000_000), (120, 8192));
        index.truncate_to_position(8192);
        assert_eq!(index.lookup(1_000_000), (110, 4096));
    }

    #[test]
    fn preallocated_tail_is_dropped_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.index");
        {
            let mut index = OffsetIndex::open(&path, 0, 1024).unwrap();
            index.append(5, 100);
            index.append(9, 200);
            index.flush().unwrap();
            // dropped without trim: the file keeps its preallocated zero tail, as after a crash
        }
        let index = OffsetIndex::open(&path, 0, 0).unwrap();
        assert_eq!(index.last_offset(), Some(9));
    }
}
