//! Per-partition producer state (Kafka's ProducerStateManager): for each producer id that
//! wrote to the partition, its epoch and the sequence ranges and offsets of its last
//! [`BATCHES_PER_PRODUCER`] batches. This is what makes idempotent produce work:
//!
//! - a retried batch (same epoch, same first and last sequence as a cached batch) is answered
//!   with the offsets it was first written at, and not appended again;
//! - a batch must continue its producer's sequence (`last + 1`, wrapping at `i32::MAX`),
//!   otherwise OUT_OF_ORDER_SEQUENCE_NUMBER; a new epoch must start at sequence 0;
//! - an epoch older than the producer's is INVALID_PRODUCER_EPOCH (a zombie).
//!
//! A producer the partition has never seen (or has expired) may start at any sequence, as in
//! Kafka since KIP-360: the client resets its sequences itself when it learns the broker
//! forgot it.
//!
//! The state survives restarts through `<offset>.snapshot` files in Kafka's format, written at
//! segment roll and at clean shutdown; after a crash the log tail after the newest snapshot is
//! replayed from batch headers alone (no record is decoded).
//!
//! ```text
//! snapshot := version i16 (1) | crc u32 (CRC32C of what follows) | count i32 | entry*count
//! entry    := producer_id i64 | epoch i16 | last_sequence i32 | last_offset i64
//!             | offset_delta i32 | timestamp i64 | coordinator_epoch i32
//!             | current_txn_first_offset i64
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};

use crate::record::batch::BatchHeader;

/// Batches remembered per producer: Kafka clients keep at most 5 requests in flight per
/// partition with idempotence, so a retry is always one of the last 5.
pub const BATCHES_PER_PRODUCER: usize = 5;
/// Producers remembered per partition. Past this, the producer that wrote longest ago is
/// forgotten (it may later resume at any sequence, as an expired producer does), so a flood
/// of producer ids cannot grow memory without bound.
pub const PRODUCERS_PER_PARTITION_MAX: usize = 50_000;
const SNAPSHOT_VERSION: i16 = 1;
const SNAPSHOT_ENTRY_BYTES: usize = 8 + 2 + 4 + 8 + 4 + 8 + 4 + 8;
const SNAPSHOT_SUFFIX: &str = ".snapshot";
/// Snapshots kept per partition; older ones are deleted when a new one is written.
const SNAPSHOTS_KEPT: usize = 2;

pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_SEQUENCE: i32 = -1;

/// Where one batch of a producer landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub timestamp_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// Oldest first; at most [`BATCHES_PER_PRODUCER`].
    pub batches: VecDeque<BatchMetadata>,
    /// Max timestamp of the producer's last batch (or marker), for `producer.id.expiration.ms`.
    pub last_timestamp_ms: i64,
    pub coordinator_epoch: i32,
    /// First offset of the producer's open transaction in this partition.
    pub current_txn_first_offset: Option<i64>,
}

impl ProducerEntry {
    fn new(epoch: i16) -> ProducerEntry {
        ProducerEntry {
            epoch,
            batches: VecDeque::new(),
            last_timestamp_ms: -1,
            coordinator_epoch: -1,
            current_txn_first_offset: None,
        }
    }

    pub fn last_sequence(&self) -> i32 {
        self.batches.back().map_or(NO_SEQUENCE, |b| b.last_sequence)
    }

    fn find_duplicate(&self, epoch: i16, first: i32, last: i32) -> Option<BatchMetadata> {
        if epoch != self.epoch {
            return None;
        }
        self.batches
            .iter()
            .find(|b| b.first_sequence == first && b.last_sequence == last)
            .copied()
    }

    fn push_batch(&mut self, batch: BatchMetadata) {
        if self.batches.len() == BATCHES_PER_PRODUCER {
            self.batches.pop_front();
        }
        self.batches.push_back(batch);
        self.last_timestamp_ms = self.last_timestamp_ms.max(batch.timestamp_ms);
        debug_assert!(self.batches.len() <= BATCHES_PER_PRODUCER);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProducerError {
    /// The batch's epoch is older than the producer's current one.
    InvalidEpoch { epoch: i16, current: i16 },
    /// The batch does not continue the producer's sequence.
    OutOfOrder { first_sequence: i32, expected: i32 },
    /// A producer id with a negative epoch or sequence.
    Invalid(&'static str),
    /// A non-transactional batch from a producer with an open transaction here.
    InvalidTxnState,
    /// A transaction marker from a coordinator older than the one whose marker this partition
    /// last took for the producer (a zombie coordinator: its shard has moved on).
    CoordinatorFenced { epoch: i32, current: i32 },
}

impl std::fmt::Display for ProducerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProducerError::InvalidEpoch { epoch, current } => write!(
                f,
                "Epoch of producer {epoch} is older than the current epoch {current}"
            ),
            ProducerError::OutOfOrder {
                first_sequence,
                expected,
            } => write!(
                f,
                "Out of order sequence number: {first_sequence} (expected {expected})"
            ),
            ProducerError::Invalid(why) => f.write_str(why),
            ProducerError::InvalidTxnState => {
                f.write_str("non-transactional write from a producer with an open transaction")
            }
            ProducerError::CoordinatorFenced { epoch, current } => write!(
                f,
                "transaction marker from coordinator epoch {epoch}, older than the current {current}"
            ),
        }
    }
}

/// What the producer check decided for one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Append,
    /// An exact retry of a batch already in the log.
    Duplicate(BatchMetadata),
}

fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

/// `last + count - 1` with Kafka's wrap-around at `i32::MAX`.
pub fn last_sequence_of(header: &BatchHeader) -> i32 {
    let span = i64::from(header.last_offset_delta);
    let last = i64::from(header.base_sequence) + span;
    if last > i64::from(i32::MAX) {
        (last - i64::from(i32::MAX) - 1) as i32
    } else {
        last as i32
    }
}

/// An aborted transaction, as `.txnindex` stores it: its data lies in
/// `[first_offset, last_offset]` (the marker is at `last_offset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

pub struct ProducerStateManager {
    dir: PathBuf,
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions in this partition: first offset → producer id. The smallest key is
    /// the first unstable offset, which bounds the last stable offset.
    ongoing: BTreeMap<i64, i64>,
    /// Offset up to which the state reflects the log (exclusive).
    map_end_offset: i64,
}

impl ProducerStateManager {
    pub fn new(dir: &Path) -> ProducerStateManager {
        ProducerStateManager {
            dir: dir.to_path_buf(),
            producers: HashMap::new(),
            ongoing: BTreeMap::new(),
            map_end_offset: 0,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn producer(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Every producer with its entry (DescribeProducers).
    pub fn producers(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> + '_ {
        self.producers.iter().map(|(id, entry)| (*id, entry))
    }

    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    pub fn map_end_offset(&self) -> i64 {
        self.map_end_offset
    }

    /// Checks a batch a client produced against the producer's state, with `pending` holding
    /// the batches of the same request already checked (a request may carry several batches of
    /// one producer). Batches without a producer id pass.
    pub fn check(
        &self,
        pending: &HashMap<i64, ProducerEntry>,
        header: &BatchHeader,
    ) -> Result<Verdict, ProducerError> {
        let producer_id = header.producer_id;
        if producer_id == NO_PRODUCER_ID {
            if header.is_transactional() {
                return Err(ProducerError::Invalid(
                    "transactional batch without a producer id",
                ));
            }
            return Ok(Verdict::Append);
        }
        if producer_id < 0 || header.producer_epoch < 0 || header.base_sequence < 0 {
            return Err(ProducerError::Invalid(
                "idempotent batch with a negative producer id, epoch or sequence",
            ));
        }
        let epoch = header.producer_epoch;
        let first = header.base_sequence;
        let last = last_sequence_of(header);
        let Some(entry) = pending
            .get(&producer_id)
            .or_else(|| self.producers.get(&producer_id))
        else {
            return Ok(Verdict::Append);
        };
        if epoch < entry.epoch {
            return Err(ProducerError::InvalidEpoch {
                epoch,
                current: entry.epoch,
            });
        }
        if !header.is_transactional() && entry.current_txn_first_offset.is_some() {
            return Err(ProducerError::InvalidTxnState);
        }
        if let Some(original) = entry.find_duplicate(epoch, first, last) {
            return Ok(Verdict::Duplicate(original));
        }
        if epoch > entry.epoch {
            // A bumped epoch restarts the sequence.
            if first != 0 {
                return Err(ProducerError::OutOfOrder {
                    first_sequence: first,
                    expected: 0,
                });
            }
            return Ok(Verdict::Append);
        }
        let expected = next_sequence(entry.last_sequence());
        if first != expected {
            return Err(ProducerError::OutOfOrder {
                first_sequence: first,
                expected,
            });
        }
        Ok(Verdict::Append)
    }

    /// Checks a transaction marker the leader is about to write (Kafka's rules for markers of
    /// transactions v1, which also admit a retried marker): its producer epoch may not be older
    /// than the producer's, nor its coordinator epoch older than the last marker's — a
    /// coordinator that lost its shard must not decide a transaction its successor may have
    /// decided otherwise, or the producer's next one.
    pub fn check_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<(), ProducerError> {
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(());
        };
        if producer_epoch < entry.epoch {
            return Err(ProducerError::InvalidEpoch {
                epoch: producer_epoch,
                current: entry.epoch,
            });
        }
        if coordinator_epoch < entry.coordinator_epoch {
            return Err(ProducerError::CoordinatorFenced {
                epoch: coordinator_epoch,
                current: entry.coordinator_epoch,
            });
        }
        Ok(())
    }

    /// The entry `pending` would hold after `header` is appended at `first_offset`; the caller
    /// applies it with [`Self::apply`] once the write succeeded.
    pub fn stage(
        &self,
        pending: &mut HashMap<i64, ProducerEntry>,
        header: &BatchHeader,
        first_offset: i64,
    ) {
        if header.producer_id < 0 || header.is_control() {
            return;
        }
        let entry = pending.entry(header.producer_id).or_insert_with(|| {
            self.producers
                .get(&header.producer_id)
                .cloned()
                .unwrap_or_else(|| ProducerEntry::new(header.producer_epoch))
        });
        update_entry(entry, header, first_offset);
    }

    /// Applies staged entries after the append that produced them; `end_offset` is the log end.
    pub fn apply(&mut self, pending: HashMap<i64, ProducerEntry>, end_offset: i64) {
        for (producer_id, entry) in pending {
            self.insert(producer_id, entry);
        }
        self.map_end_offset = end_offset;
    }

    /// Replaces a producer's entry, keeping the open-transaction map in step.
    fn insert(&mut self, producer_id: i64, entry: ProducerEntry) {
        let old_first = match self.producers.get(&producer_id) {
            Some(old) => old.current_txn_first_offset,
            None => {
                self.make_room();
                None
            }
        };
        if old_first != entry.current_txn_first_offset {
            if let Some(first) = old_first {
                self.ongoing.remove(&first);
            }
            if let Some(first) = entry.current_txn_first_offset {
                self.ongoing.insert(first, producer_id);
            }
        }
        self.producers.insert(producer_id, entry);
    }

    /// Applies a transaction marker written at `marker_offset`: the producer's open
    /// transaction here (if any) ends. Returns the aborted transaction for the index when
    /// the marker is an ABORT that closed an open transaction.
    pub fn apply_marker(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        marker_offset: i64,
        timestamp_ms: i64,
    ) -> Option<AbortedTxn> {
        let mut entry = self
            .producers
            .get(&producer_id)
            .cloned()
            .unwrap_or_else(|| ProducerEntry::new(producer_epoch));
        if producer_epoch > entry.epoch {
            entry.epoch = producer_epoch;
            entry.batches.clear();
        }
        entry.coordinator_epoch = coordinator_epoch;
        entry.last_timestamp_ms = entry.last_timestamp_ms.max(timestamp_ms);
        let first_offset = entry.current_txn_first_offset.take();
        self.insert(producer_id, entry);
        self.map_end_offset = self.map_end_offset.max(marker_offset + 1);
        let first_offset = first_offset?;
        if commit {
            return None;
        }
        Some(AbortedTxn {
            producer_id,
            first_offset,
            last_offset: marker_offset,
            last_stable_offset: self.first_unstable_offset().unwrap_or(marker_offset + 1),
        })
    }

    /// First offset of the oldest open transaction: the last stable offset when there is one.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    /// Open transactions here: (producer id, first offset).
    pub fn ongoing_transactions(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.ongoing.iter().map(|(first, id)| (*id, *first))
    }

    /// Rebuilds state from a batch read back from the log (recovery). Control batches end the
    /// producer's transaction.
    pub fn replay(&mut self, header: &BatchHeader) {
        debug_assert!(!header.is_control(), "markers replay through apply_marker");
        if header.producer_id >= 0 {
            let mut entry = self
                .producers
                .get(&header.producer_id)
                .cloned()
                .unwrap_or_else(|| ProducerEntry::new(header.producer_epoch));
            update_entry(&mut entry, header, header.base_offset);
            self.insert(header.producer_id, entry);
        }
        self.map_end_offset = header.last_offset() + 1;
    }

    /// Forgets the producer that wrote longest ago when the map is full.
    fn make_room(&mut self) {
        if self.producers.len() < PRODUCERS_PER_PARTITION_MAX {
            return;
        }
        let oldest = self
            .producers
            .iter()
            .filter(|(_, e)| e.current_txn_first_offset.is_none())
            .min_by_key(|(_, e)| e.last_timestamp_ms)
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.producers.remove(&id);
        }
    }

    /// Forgets producers whose last write is older than `expiration_ms` (and who have no open
    /// transaction): `producer.id.expiration.ms`.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.current_txn_first_offset.is_some()
                || now_ms.saturating_sub(e.last_timestamp_ms) < expiration_ms
        });
        before - self.producers.len()
    }

    /// After a rebuild: the state now reflects the log up to `offset`.
    pub fn set_map_end_offset(&mut self, offset: i64) {
        self.map_end_offset = offset;
    }

    /// Empties the state (before a rebuild from offset `offset`).
    pub fn reset(&mut self, offset: i64) {
        self.producers.clear();
        self.ongoing.clear();
        self.map_end_offset = offset;
    }

    // -----------------------------------------------------------------------------------------
    // Snapshots

    fn snapshot_path(&self, offset: i64) -> PathBuf {
        self.dir.join(format!(
            "{}{SNAPSHOT_SUFFIX}",
            super::segment::file_stem(offset)
        ))
    }

    /// Offsets of the snapshot files in the directory, ascending.
    pub fn snapshot_offsets(&self) -> io::Result<Vec<i64>> {
        let mut offsets = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(SNAPSHOT_SUFFIX) {
                if let Ok(offset) = stem.parse::<i64>() {
                    offsets.push(offset);
                }
            }
        }
        offsets.sort_unstable();
        Ok(offsets)
    }

    /// Writes `<map_end_offset>.snapshot` (fsynced, via a temporary file and rename) and
    /// deletes all but the newest [`SNAPSHOTS_KEPT`].
    pub fn write_snapshot(&self) -> io::Result<()> {
        let bytes = encode_snapshot(&self.producers);
        let path = self.snapshot_path(self.map_end_offset);
        let temporary = path.with_extension("snapshot.tmp");
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        std::fs::rename(&temporary, &path)?;
        let offsets = self.snapshot_offsets()?;
        if offsets.len() > SNAPSHOTS_KEPT {
            for offset in &offsets[..offsets.len() - SNAPSHOTS_KEPT] {
                let _ = std::fs::remove_file(self.snapshot_path(*offset));
            }
        }
        Ok(())
    }

    /// Deletes snapshots above `log_end_offset` (the log was truncated below them), then loads
    /// the newest readable one. Returns the offset the log must be replayed from.
    pub fn load_newest_snapshot(&mut self, log_end_offset: i64) -> io::Result<Option<i64>> {
        let offsets = self.snapshot_offsets()?;
        for offset in offsets.iter().rev() {
            let path = self.snapshot_path(*offset);
            if *offset > log_end_offset {
                std::fs::remove_file(&path)?;
                continue;
            }
            match std::fs::read(&path)
                .ok()
                .and_then(|bytes| decode_snapshot(&bytes))
            {
                Some(producers) => {
                    self.ongoing = producers
                        .iter()
                        .filter_map(|(id, e)| Some((e.current_txn_first_offset?, *id)))
                        .collect();
                    self.producers = producers;
                    self.map_end_offset = *offset;
                    return Ok(Some(*offset));
                }
                None => {
                    tracing::warn!(path = %path.display(), "ignoring unreadable producer snapshot");
                    std::fs::remove_file(&path)?;
                }
            }
        }
        Ok(None)
    }
}

fn update_entry(entry: &mut ProducerEntry, header: &BatchHeader, first_offset: i64) {
    if header.producer_epoch > entry.epoch {
        // A new epoch starts over: the old epoch's batches can no longer be retried.
        entry.epoch = header.producer_epoch;
        entry.batches.clear();
    }
    assert!(!header.is_control(), "markers go through apply_marker");
    if header.is_transactional() && entry.current_txn_first_offset.is_none() {
        entry.current_txn_first_offset = Some(first_offset);
    }
    entry.push_batch(BatchMetadata {
        first_sequence: header.base_sequence,
        last_sequence: last_sequence_of(header),
        first_offset,
        last_offset: first_offset + i64::from(header.last_offset_delta),
        timestamp_ms: header.max_timestamp,
    });
}

/// Bytes of one `.txnindex` entry: version i16 (0), producer id i64, first offset i64,
/// last offset i64, last stable offset i64 (Kafka's AbortedTxn layout).
pub const TXN_INDEX_ENTRY_BYTES: usize = 34;

pub fn encode_aborted(txn: &AbortedTxn) -> [u8; TXN_INDEX_ENTRY_BYTES] {
    let mut bytes = [0u8; TXN_INDEX_ENTRY_BYTES];
    bytes[2..10].copy_from_slice(&txn.producer_id.to_be_bytes());
    bytes[10..18].copy_from_slice(&txn.first_offset.to_be_bytes());
    bytes[18..26].copy_from_slice(&txn.last_offset.to_be_bytes());
    bytes[26..34].copy_from_slice(&txn.last_stable_offset.to_be_bytes());
    bytes
}

/// Entries of a `.txnindex` file; a torn last entry is ignored.
pub fn decode_aborted(bytes: &[u8]) -> Vec<AbortedTxn> {
    bytes
        .chunks_exact(TXN_INDEX_ENTRY_BYTES)
        .filter(|e| e[0..2] == [0, 0])
        .map(|e| AbortedTxn {
            producer_id: i64::from_be_bytes(e[2..10].try_into().expect("8 bytes")),
            first_offset: i64::from_be_bytes(e[10..18].try_into().expect("8 bytes")),
            last_offset: i64::from_be_bytes(e[18..26].try_into().expect("8 bytes")),
            last_stable_offset: i64::from_be_bytes(e[26..34].try_into().expect("8 bytes")),
        })
        .collect()
}

fn encode_snapshot(producers: &HashMap<i64, ProducerEntry>) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + producers.len() * SNAPSHOT_ENTRY_BYTES);
    body.extend_from_slice(&(producers.len() as i32).to_be_bytes());
    let mut ids: Vec<&i64> = producers.keys().collect();
    ids.sort_unstable();
    for id in ids {
        let entry = &producers[id];
        let last = entry.batches.back();
        body.extend_from_slice(&id.to_be_bytes());
        body.extend_from_slice(&entry.epoch.to_be_bytes());
        body.extend_from_slice(&last.map_or(NO_SEQUENCE, |b| b.last_sequence).to_be_bytes());
        body.extend_from_slice(&last.map_or(-1i64, |b| b.last_offset).to_be_bytes());
        let offset_delta = last.map_or(0, |b| (b.last_offset - b.first_offset) as i32);
        body.extend_from_slice(&offset_delta.to_be_bytes());
        body.extend_from_slice(&entry.last_timestamp_ms.to_be_bytes());
        body.extend_from_slice(&entry.coordinator_epoch.to_be_bytes());
        body.extend_from_slice(&entry.current_txn_first_offset.unwrap_or(-1).to_be_bytes());
    }
    let mut bytes = Vec::with_capacity(6 + body.len());
    bytes.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    bytes.extend_from_slice(&body);
    bytes
}

/// None for a file that is not a valid version-1 snapshot (bad CRC, truncated, wrong count).
fn decode_snapshot(bytes: &[u8]) -> Option<HashMap<i64, ProducerEntry>> {
    let i16_at = |at: usize| Some(i16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
    let i32_at = |at: usize| Some(i32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let i64_at = |at: usize| Some(i64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
    if i16_at(0)? != SNAPSHOT_VERSION {
        return None;
    }
    let crc = i32_at(2)? as u32;
    if crc32c::crc32c(bytes.get(6..)?) != crc {
        return None;
    }
    let count = usize::try_from(i32_at(6)?).ok()?;
    // The count must match the file length: a corrupt count cannot make us allocate.
    if bytes.len() != 10 + count * SNAPSHOT_ENTRY_BYTES || count > PRODUCERS_PER_PARTITION_MAX {
        return None;
    }
    let mut producers = HashMap::with_capacity(count);
    for index in 0..count {
        let at = 10 + index * SNAPSHOT_ENTRY_BYTES;
        let producer_id = i64_at(at)?;
        let epoch = i16_at(at + 8)?;
        let last_sequence = i32_at(at + 10)?;
        let last_offset = i64_at(at + 14)?;
        let offset_delta = i32_at(at + 22)?;
        let timestamp_ms = i64_at(at + 26)?;
        let coordinator_epoch = i32_at(at + 34)?;
        let txn_first_offset = i64_at(at + 38)?;
        let mut entry = ProducerEntry::new(epoch);
        entry.last_timestamp_ms = timestamp_ms;
        entry.coordinator_epoch = coordinator_epoch;
        entry.current_txn_first_offset = (txn_first_offset >= 0).then_some(txn_first_offset);
        if last_sequence >= 0 && last_offset >= 0 && offset_delta >= 0 {
            let first_sequence = {
                let first = i64::from(last_sequence) - i64::from(offset_delta);
                if first < 0 {
                    (first + i64::from(i32::MAX) + 1) as i32
                } else {
                    first as i32
                }
            };
            entry.batches.push_back(BatchMetadata {
                first_sequence,
                last_sequence,
                first_offset: last_offset - i64::from(offset_delta),
                last_offset,
                timestamp_ms,
            });
        }
        producers.insert(producer_id, entry);
    }
    Some(producers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(producer_id: i64, epoch: i16, first_sequence: i32, count: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 1_000,
            max_timestamp: 1_000,
            producer_id,
            producer_epoch: epoch,
            base_sequence: first_sequence,
            records_count: count,
        }
    }

    fn append(state: &mut ProducerStateManager, h: &BatchHeader) -> Result<Verdict, ProducerError> {
        let verdict = state.check(&HashMap::new(), h)?;
        if verdict == Verdict::Append {
            let mut pending = HashMap::new();
            let offset = state.map_end_offset();
            state.stage(&mut pending, h, offset);
            state.apply(pending, offset + i64::from(h.records_count));
        }
        Ok(verdict)
    }

    #[test]
    fn sequences_duplicates_and_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = ProducerStateManager::new(dir.path());
        assert_eq!(append(&mut state, &header(7, 0, 0, 3)), Ok(Verdict::Append));
        assert_eq!(append(&mut state, &header(7, 0, 3, 2)), Ok(Verdict::Append));
        // Exact retry of the first batch: its original offsets.
        match append(&mut state, &header(7, 0, 0, 3)) {
            Ok(Verdict::Duplicate(batch)) => {
                assert_eq!((batch.first_offset, batch.last_offset), (0, 2))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            append(&mut state, &header(7, 0, 9, 1)),
            Err(ProducerError::OutOfOrder {
                first_sequence: 9,
                expected: 5
            })
        );
        assert!(matches!(
            append(&mut state, &header(7, 1, 4, 1)),
            Err(ProducerError::OutOfOrder { .. })
        ));
        assert_eq!(append(&mut state, &header(7, 1, 0, 1)), Ok(Verdict::Append));
        assert!(matches!(
            append(&mut state, &header(7, 0, 5, 1)),
            Err(ProducerError::InvalidEpoch { .. })
        ));
        // Unknown producers may start anywhere.
        assert_eq!(
            append(&mut state, &header(8, 0, 42, 1)),
            Ok(Verdict::Append)
        );
        // Sequences wrap at i32::MAX.
        assert_eq!(
            append(&mut state, &header(9, 0, i32::MAX - 1, 2)),
            Ok(Verdict::Append)
        );
        assert_eq!(append(&mut state, &header(9, 0, 0, 1)), Ok(Verdict::Append));
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = ProducerStateManager::new(dir.path());
        for i in 0..7 {
            append(&mut state, &header(1, 0, i, 1)).unwrap();
        }
        assert_eq!(
            state.producer(1).unwrap().batches.len(),
            BATCHES_PER_PRODUCER
        );
        assert!(matches!(
            append(&mut state, &header(1, 0, 2, 1)),
            Ok(Verdict::Duplicate(_))
        ));
        assert!(matches!(
            append(&mut state, &header(1, 0, 1, 1)),
            Err(ProducerError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn snapshot_round_trips_and_rejects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = ProducerStateManager::new(dir.path());
        append(&mut state, &header(1, 3, 0, 4)).unwrap();
        append(&mut state, &header(2, 0, i32::MAX, 2)).unwrap();
        state.write_snapshot().unwrap();
        let mut loaded = ProducerStateManager::new(dir.path());
        assert_eq!(loaded.load_newest_snapshot(100).unwrap(), Some(6));
        let entry = loaded.producer(1).unwrap();
        assert_eq!((entry.epoch, entry.last_sequence()), (3, 3));
        assert_eq!(entry.batches[0].first_offset, 0);
        assert_eq!(
            loaded.producer(2).unwrap().batches[0].first_sequence,
            i32::MAX
        );
        assert!(matches!(
            loaded.check(&HashMap::new(), &header(1, 3, 0, 4)),
            Ok(Verdict::Duplicate(_))
        ));
        // A snapshot beyond the log end is deleted; a corrupt one is ignored.
        assert_eq!(
            ProducerStateManager::new(dir.path())
                .load_newest_snapshot(5)
                .unwrap(),
            None
        );
        state.write_snapshot().unwrap();
        let path = state.snapshot_path(6);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[12] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(
            ProducerStateManager::new(dir.path())
                .load_newest_snapshot(100)
                .unwrap(),
            None
        );
    }

    #[test]
    fn expiration_and_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = ProducerStateManager::new(dir.path());
        append(&mut state, &header(1, 0, 0, 1)).unwrap();
        assert_eq!(state.expire(1_000 + 10, 100), 0);
        assert_eq!(state.expire(1_000 + 100, 100), 1);
        assert_eq!(state.producer_count(), 0);
    }
}
