//! The aborted-transaction index (Kafka's `TransactionIndex`): per segment, a `.txnindex` file
//! listing the transactions whose ABORT marker lies in that segment, in Kafka's 34-byte entry
//! layout ([`producer_state::encode_aborted`]). READ_COMMITTED fetches learn from it which
//! producers' data to skip.
//!
//! Invariants:
//! - An entry is on disk (fsynced) before the append of its marker returns, so READ_COMMITTED
//!   readers never miss an abort after a crash.
//! - An entry never outlives its marker: the cleaner removes entries before the segment that
//!   drops their markers is swapped in, and entries go with their segment at retention.
//! - The in-memory list the partition log keeps is ordered by marker offset and holds nothing
//!   below the log start offset.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::producer_state::{self, AbortedTxn};
use super::segment;

pub fn path(dir: &Path, segment_base: i64) -> PathBuf {
    dir.join(format!("{}.txnindex", segment::file_stem(segment_base)))
}

/// Appends one aborted transaction to a segment's `.txnindex` and syncs it: a marker is rare,
/// and READ_COMMITTED readers depend on the entry after a crash.
pub fn append(dir: &Path, segment_base: i64, aborted: &AbortedTxn) -> io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path(dir, segment_base))?;
    file.write_all(&producer_state::encode_aborted(aborted))?;
    file.sync_data()
}

/// Rewrites a segment's `.txnindex` without the entries `dropped` selects: a temporary file,
/// fsynced, renamed over the old one.
pub fn rewrite_without(
    dir: &Path,
    segment_base: i64,
    dropped: &dyn Fn(&AbortedTxn) -> bool,
) -> io::Result<()> {
    let path = path(dir, segment_base);
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

/// Reads the aborted transactions of the segments based at `segment_bases` whose marker lies
/// below `from`, ordered by marker offset. Entries at or above `from` are dropped from the
/// files: the producer-state replay from `from` finds them again.
pub fn load_before(dir: &Path, segment_bases: &[i64], from: i64) -> io::Result<Vec<AbortedTxn>> {
    let mut aborted = Vec::new();
    for base in segment_bases {
        let path = path(dir, *base);
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
        aborted.extend(kept);
    }
    aborted.sort_by_key(|t| t.last_offset);
    Ok(aborted)
}

/// Drops the aborted transactions whose marker lies below the log start offset: no fetch can
/// start below it, so none will ask for them (their `.txnindex` entries go with their segments).
/// This bounds the in-memory list by what the log still holds.
pub fn forget_below_log_start(aborted: &mut Vec<AbortedTxn>, log_start_offset: i64) {
    let stale = aborted.partition_point(|t| t.last_offset < log_start_offset);
    aborted.drain(..stale);
}
