//! A memory-mapped file of fixed-size, sorted entries: the common mechanism behind the offset
//! index (`.index`, 8-byte entries) and the time index (`.timeindex`, 12-byte entries).
//!
//! As in Kafka, the active segment's index is preallocated to `segment.index.bytes` and trimmed
//! to its entries when the segment is rolled or closed; an index left preallocated by a crash
//! is trimmed (or rebuilt) on open.
//!
//! That preallocation is sparse (a length, no blocks), and entries are stored through the
//! mapping: on a full file system, the store that first touches an unallocated page would
//! raise SIGBUS and kill the broker. So the pages ahead of the next entries are allocated
//! (fallocate) before the segment write they index ([`IndexFile::allocate_entries`]), where a
//! lack of space is an ordinary error the append returns.
//!
//! No file descriptor is kept: the file is opened for the few calls that need one (resize,
//! fallocate) and closed again, the mapping outliving it, as Kafka's indexes do. Two indexes
//! per segment would otherwise hold two descriptors each, and 10,000 partitions would need
//! 30,000 where the segments themselves need 10,000.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

pub struct IndexFile {
    path: PathBuf,
    /// None when the file has zero length (mmap of an empty file is refused).
    mmap: Option<MmapMut>,
    entry_size_bytes: usize,
    entries: usize,
    entries_max: usize,
    /// Bytes from the start known to have blocks (allocated, or written before this open).
    allocated_bytes: usize,
}

/// Index space allocated at a time ahead of the entries: a few pages, so that the fallocate
/// call is rare (once per 512 offset index entries, about 2 MiB of log at the default
/// `index.interval.bytes`).
const ALLOCATION_CHUNK_BYTES: usize = 4096;

impl IndexFile {
    /// Opens (or creates) the file; `size_bytes_max` > 0 preallocates it for appends.
    /// Trailing bytes that do not form a whole entry are ignored.
    pub fn open(
        path: &Path,
        entry_size_bytes: usize,
        size_bytes_max: usize,
    ) -> io::Result<IndexFile> {
        let file = open_file(path)?;
        let length_bytes = file.metadata()?.len() as usize;
        let entries = length_bytes / entry_size_bytes;
        let mut index = IndexFile {
            path: path.to_path_buf(),
            mmap: None,
            entry_size_bytes,
            entries,
            entries_max: entries,
            // Pages a crash left preallocated are holes: nothing is taken as allocated.
            allocated_bytes: 0,
        };
        // The descriptor just opened serves the first mapping too; it closes at return.
        index.resize_with(&file, size_bytes_max.max(entries * entry_size_bytes))?;
        Ok(index)
    }

    fn resize(&mut self, size_bytes: usize) -> io::Result<()> {
        self.resize_with(&open_file(&self.path)?, size_bytes)
    }

    fn resize_with(&mut self, file: &File, size_bytes: usize) -> io::Result<()> {
        let size_bytes = size_bytes / self.entry_size_bytes * self.entry_size_bytes;
        self.mmap = None;
        file.set_len(size_bytes as u64)?;
        self.entries_max = size_bytes / self.entry_size_bytes;
        self.entries = self.entries.min(self.entries_max);
        self.allocated_bytes = self.allocated_bytes.min(size_bytes);
        // SAFETY: the file is private to this process's log directory and only this struct
        // changes its length, always after dropping the map.
        self.mmap = if size_bytes > 0 {
            Some(unsafe { MmapMut::map_mut(file)? })
        } else {
            None
        };
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    pub fn is_full(&self) -> bool {
        self.entries >= self.entries_max
    }

    pub fn entry(&self, index: usize) -> &[u8] {
        assert!(
            index < self.entries,
            "index entry {index} out of {}",
            self.entries
        );
        let start = index * self.entry_size_bytes;
        &self.mmap.as_ref().expect("non-empty index is mapped")
            [start..start + self.entry_size_bytes]
    }

    /// Allocates the file's blocks for the next `count` entries (as many as fit), so that
    /// storing them cannot fault on a full file system. Cheap when already done.
    pub fn allocate_entries(&mut self, count: usize) -> io::Result<()> {
        let end_bytes = (self.entries + count).min(self.entries_max) * self.entry_size_bytes;
        if end_bytes <= self.allocated_bytes {
            return Ok(());
        }
        let file_bytes = self.entries_max * self.entry_size_bytes;
        let wanted_bytes = end_bytes
            .div_ceil(ALLOCATION_CHUNK_BYTES)
            .saturating_mul(ALLOCATION_CHUNK_BYTES)
            .min(file_bytes);
        super::log_dir_space::allocate(
            &open_file(&self.path)?,
            self.allocated_bytes as u64,
            (wanted_bytes - self.allocated_bytes) as u64,
            false,
        )?;
        self.allocated_bytes = wanted_bytes;
        Ok(())
    }

    pub fn push(&mut self, entry: &[u8]) {
        assert_eq!(entry.len(), self.entry_size_bytes);
        assert!(!self.is_full(), "index {} is full", self.path.display());
        let start = self.entries * self.entry_size_bytes;
        self.mmap.as_mut().expect("non-full index is mapped")[start..start + self.entry_size_bytes]
            .copy_from_slice(entry);
        self.entries += 1;
    }

    /// Keeps only the first `entries` entries.
    pub fn truncate_entries(&mut self, entries: usize) {
        self.entries = self.entries.min(entries);
    }

    /// Largest `i` such that `key(entry(i)) <= target`, by binary search; entries are sorted by key.
    pub fn floor<K: Ord>(&self, target: K, key: impl Fn(&[u8]) -> K) -> Option<usize> {
        let (mut low, mut high) = (0usize, self.entries);
        while low < high {
            let middle = low + (high - low) / 2;
            if key(self.entry(middle)) <= target {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low.checked_sub(1)
    }

    /// Shrinks the file to its entries (at roll and clean close) and syncs it.
    pub fn trim(&mut self) -> io::Result<()> {
        self.flush()?;
        self.resize(self.entries * self.entry_size_bytes)
    }

    pub fn flush(&self) -> io::Result<()> {
        match &self.mmap {
            Some(mmap) => mmap.flush(),
            None => Ok(()),
        }
    }

    /// Removes the file.
    pub fn delete(self) -> io::Result<()> {
        let path = self.path.clone();
        drop(self);
        std::fs::remove_file(path)
    }
}

/// Opens (or creates) an index file for reading and writing.
fn open_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// Reads a big-endian u32 at `at`.
pub fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// Reads a big-endian i64 at `at`.
pub fn be_i64(bytes: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}
