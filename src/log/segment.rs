//! One log segment: `<base offset, 20 digits>.log` holding record batches exactly as Kafka
//! stores them, with its sparse `.index` and `.timeindex`.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::record::batch::{self, BatchHeader, HEADER_SIZE_BYTES};

use super::offset_index::OffsetIndex;
use super::time_index::TimeIndex;

/// `00000000000000000042` — Kafka's file name stem for a segment based at offset 42.
pub fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

pub struct Segment {
    base_offset: i64,
    log_path: PathBuf,
    /// Shared with in-flight fetches, which read (sendfile) below `size_bytes` without a lock.
    file: Arc<File>,
    size_bytes: u64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    index_interval_bytes: u64,
    bytes_since_last_index_entry: u64,
    /// Largest batch max-timestamp in the segment and the last offset of that batch.
    max_timestamp_ms: i64,
    offset_of_max_timestamp: i64,
    /// Offset after the last batch; `base_offset` when empty.
    next_offset: i64,
    /// Wall-clock time the first batch was appended, for `segment.ms` rolls.
    first_append_ms: Option<i64>,
}

/// Suffix of segment files removed from a log and waiting for deletion.
pub const DELETED_SUFFIX: &str = ".deleted";

/// The renamed files of a segment taken out of its log, to delete once no reader needs them.
#[derive(Debug)]
pub struct RetiredSegment {
    paths: Vec<PathBuf>,
    /// Size of the segment's `.log` when it was retired.
    pub size_bytes: u64,
}

impl RetiredSegment {
    pub fn delete(self) -> io::Result<()> {
        for path in self.paths {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Where a batch lies in the segment file.
#[derive(Clone, Copy, Debug)]
pub struct BatchPosition {
    pub position: u64,
    pub header: BatchHeader,
}

impl Segment {
    /// Opens or creates the segment's three files in `dir`. `index_size_bytes_max` > 0 makes
    /// the indexes appendable (the active segment).
    pub fn open(
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u64,
        index_size_bytes_max: usize,
    ) -> io::Result<Segment> {
        let stem = file_stem(base_offset);
        let log_path = dir.join(format!("{stem}.log"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&log_path)?;
        let size_bytes = file.metadata()?.len();
        let offset_index = OffsetIndex::open(
            &dir.join(format!("{stem}.index")),
            base_offset,
            index_size_bytes_max,
        )?;
        let time_index_size_bytes_max = index_size_bytes_max / 8 * 12;
        let time_index = TimeIndex::open(
            &dir.join(format!("{stem}.timeindex")),
            base_offset,
            time_index_size_bytes_max,
        )?;
        Ok(Segment {
            base_offset,
            log_path,
            file: Arc::new(file),
            size_bytes,
            offset_index,
            time_index,
            index_interval_bytes,
            bytes_since_last_index_entry: 0,
            max_timestamp_ms: -1,
            offset_of_max_timestamp: base_offset,
            next_offset: base_offset,
            first_append_ms: None,
        })
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    pub fn max_timestamp(&self) -> (i64, i64) {
        (self.max_timestamp_ms, self.offset_of_max_timestamp)
    }

    pub fn first_append_ms(&self) -> Option<i64> {
        self.first_append_ms
    }

    pub fn indexes_full(&self) -> bool {
        self.offset_index.is_full() || self.time_index.is_full()
    }

    /// Reads the batch header at `position`, if a whole header lies below `end`.
    pub fn read_header(file: &File, position: u64, end: u64) -> io::Result<Option<BatchHeader>> {
        if position + HEADER_SIZE_BYTES as u64 > end {
            return Ok(None);
        }
        let mut bytes = [0u8; HEADER_SIZE_BYTES];
        file.read_exact_at(&mut bytes, position)?;
        Ok(BatchHeader::parse(&bytes).ok())
    }

    /// Appends batches whose offsets are already assigned. `parts` are the bytes to write, in
    /// order (rewritten headers and untouched bodies); `batches` says where each batch starts
    /// relative to the start of the write, with its header.
    pub fn append(
        &mut self,
        parts: &[IoSlice<'_>],
        batches: &[(u64, BatchHeader)],
        now_ms: i64,
    ) -> io::Result<()> {
        let start = self.size_bytes;
        // The index pages the batches may need are allocated first: a full file system fails
        // the append here, before anything is written.
        self.offset_index.allocate_entries(batches.len())?;
        self.time_index.allocate_entries(batches.len())?;
        let written = match write_all_vectored_at(&self.file, parts, start) {
            Ok(written) => written,
            Err(error) => {
                // A partial write (ENOSPC halfway) lies past `size_bytes`: no reader sees it,
                // but it would stay in the file, where a later append overwrites it only if
                // it is as long, and a clean restart finds a tail that is not a batch. Cut it
                // back now; shrinking needs no space.
                if let Err(cut) = self.file.set_len(start) {
                    tracing::error!(path = %self.log_path.display(), error = %cut, "cutting back a failed append failed");
                }
                return Err(error);
            }
        };
        for &(relative_position, header) in batches {
            self.index_batch(start + relative_position, &header);
        }
        self.size_bytes = start + written;
        self.first_append_ms.get_or_insert(now_ms);
        Ok(())
    }

    /// Updates the indexes and in-memory summaries for a batch at `position`.
    fn index_batch(&mut self, position: u64, header: &BatchHeader) {
        if self.bytes_since_last_index_entry >= self.index_interval_bytes
            || self.index_interval_bytes == 0
        {
            if !self.offset_index.is_full() {
                self.offset_index
                    .append(header.last_offset(), position as u32); // Kafka indexes a batch by its last offset
            }
            self.time_index
                .maybe_append(header.max_timestamp, header.last_offset());
            self.bytes_since_last_index_entry = 0;
        }
        self.bytes_since_last_index_entry += header.size_bytes() as u64;
        if header.max_timestamp > self.max_timestamp_ms {
            self.max_timestamp_ms = header.max_timestamp;
            self.offset_of_max_timestamp = header.last_offset();
        }
        self.next_offset = header.last_offset() + 1;
    }

    /// The position of the first batch whose last offset is >= `offset`, scanning headers from
    /// the index entry below it, and the segment size the answer is valid for.
    pub fn find(&self, offset: i64) -> io::Result<Option<BatchPosition>> {
        let (_, start) = self.offset_index.lookup(offset);
        scan_for_offset(&self.file, u64::from(start), self.size_bytes, offset)
    }

    /// Where to start looking for the first record with timestamp >= `target_ms`.
    pub fn time_lookup_offset(&self, target_ms: i64) -> i64 {
        self.time_index.lookup(target_ms)
    }

    /// Validates every batch from the start, rebuilding the indexes; truncates the file at the
    /// first invalid or torn batch. Returns the number of bytes truncated.
    pub fn recover(&mut self, batch_bytes_max: usize) -> io::Result<u64> {
        self.offset_index.clear();
        self.time_index.clear();
        self.bytes_since_last_index_entry = 0;
        self.max_timestamp_ms = -1;
        self.offset_of_max_timestamp = self.base_offset;
        self.next_offset = self.base_offset;
        let mut position = 0u64;
        let mut buffer = Vec::new();
        while let Some(header) = Self::read_header(&self.file, position, self.size_bytes)? {
            let size = header.size_bytes();
            let valid_length = header.batch_length > 0 && size <= batch_bytes_max;
            if !valid_length
                || position + size as u64 > self.size_bytes
                || header.base_offset < self.next_offset
            {
                break;
            }
            buffer.resize(size, 0);
            self.file.read_exact_at(&mut buffer, position)?;
            let Ok(header) = batch::validate(&buffer) else {
                break;
            };
            self.offset_index.allocate_entries(1)?;
            self.time_index.allocate_entries(1)?;
            self.index_batch(position, &header);
            position += size as u64;
        }
        let truncated = self.size_bytes - position;
        if truncated > 0 {
            self.file.set_len(position)?;
            self.size_bytes = position;
        }
        Ok(truncated)
    }

    /// Loads the in-memory summaries from a segment closed cleanly: the indexes are trusted;
    /// only the batches after the last index entry are scanned.
    pub fn load_clean(&mut self) -> io::Result<()> {
        let (indexed_offset, indexed_position) = self.offset_index.lookup(i64::MAX);
        let mut position = u64::from(indexed_position);
        self.next_offset = indexed_offset;
        // `seal` leaves the segment's max timestamp as the time index's last entry.
        (self.max_timestamp_ms, self.offset_of_max_timestamp) = self
            .time_index
            .last_entry()
            .unwrap_or((-1, self.base_offset));
        while let Some(header) = Self::read_header(&self.file, position, self.size_bytes)? {
            if header.batch_length <= 0 {
                break;
            }
            if header.max_timestamp > self.max_timestamp_ms {
                self.max_timestamp_ms = header.max_timestamp;
                self.offset_of_max_timestamp = header.last_offset();
            }
            self.next_offset = header.last_offset() + 1;
            self.bytes_since_last_index_entry += header.size_bytes() as u64;
            position += header.size_bytes() as u64;
        }
        if position != self.size_bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "segment tail does not end on a batch",
            ));
        }
        Ok(())
    }

    /// Makes the segment read-only: trims the indexes to their entries and syncs everything.
    pub fn seal(&mut self) -> io::Result<()> {
        // As Kafka does at roll: the last time index entry holds the segment's max timestamp.
        if self.max_timestamp_ms >= 0 {
            self.time_index.allocate_entries(1)?;
            self.time_index
                .maybe_append(self.max_timestamp_ms, self.offset_of_max_timestamp);
        }
        self.offset_index.trim()?;
        self.time_index.trim()?;
        self.file.sync_data()
    }

    pub fn flush(&self) -> io::Result<()> {
        self.offset_index.flush()?;
        self.time_index.flush()?;
        self.file.sync_data()
    }

    /// Takes the segment out of the log: its files are renamed to `<name>.deleted` at once (a
    /// restart then ignores and removes them) and deleted later by the caller, after
    /// `file.delete.delay.ms`. Fetches still sending from the file keep their open handle.
    /// `with_txn_index`: the segment's `.txnindex` goes too (retention); a cleaned segment
    /// that replaces this one keeps it (the cleaner edits it in place when markers go).
    pub fn retire(self, with_txn_index: bool) -> io::Result<RetiredSegment> {
        let stem_path = self.log_path.with_extension("");
        let size_bytes = self.size_bytes;
        let mut paths = Vec::with_capacity(4);
        drop(self); // unmaps the indexes before their files are renamed
        let extensions: &[&str] = if with_txn_index {
            &["log", "index", "timeindex", "txnindex"]
        } else {
            &["log", "index", "timeindex"]
        };
        for extension in extensions {
            let path = stem_path.with_extension(extension);
            let retired = PathBuf::from(format!("{}{DELETED_SUFFIX}", path.display()));
            match std::fs::rename(&path, &retired) {
                Ok(()) => paths.push(retired),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(RetiredSegment { paths, size_bytes })
    }

    pub fn delete(self) -> io::Result<()> {
        let log_path = self.log_path.clone();
        self.offset_index.delete()?;
        self.time_index.delete()?;
        std::fs::remove_file(log_path)
    }
}

/// Scans batch headers in `[start, end)` for the first batch whose last offset is >= `offset`.
pub fn scan_for_offset(
    file: &File,
    start: u64,
    end: u64,
    offset: i64,
) -> io::Result<Option<BatchPosition>> {
    let mut position = start;
    while let Some(header) = Segment::read_header(file, position, end)? {
        if header.batch_length <= 0 {
            return Ok(None);
        }
        if header.last_offset() >= offset {
            return Ok(Some(BatchPosition { position, header }));
        }
        position += header.size_bytes() as u64;
    }
    Ok(None)
}

/// `pwritev` until every byte of `parts` is written at `offset`; returns the bytes written.
fn write_all_vectored_at(file: &File, parts: &[IoSlice<'_>], offset: u64) -> io::Result<u64> {
    use std::os::fd::AsFd;
    // IOV_MAX on Linux; larger writes are issued in groups.
    const IOVECS_PER_CALL_MAX: usize = 1024;
    let mut total = 0u64;
    for group in parts.chunks(IOVECS_PER_CALL_MAX) {
        let mut slices: Vec<IoSlice<'_>> = group.to_vec();
        let mut remaining: &mut [IoSlice<'_>] = &mut slices;
        while !remaining.is_empty() {
            let written = nix::sys::uio::pwritev(file.as_fd(), remaining, (offset + total) as i64)
                .map_err(io::Error::from)?;
            if written == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "pwritev wrote nothing",
                ));
            }
            total += written as u64;
            IoSlice::advance_slices(&mut remaining, written);
        }
    }
    Ok(total)
}
