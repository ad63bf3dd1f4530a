//! The files of the metadata partition (`__cluster_metadata-0`): the Raft log as Kafka record
//! batches, the quorum state, and image snapshots.
//!
//! - `<base offset>.log`: one record batch per Raft entry, base offset = the entry's offset,
//!   partition leader epoch = its Raft epoch. A data entry is one record whose value is the
//!   JSON of its metadata records (an array; a single-node log from before the quorum holds
//!   batches of several records, one JSON record each: every record is read as one entry of
//!   epoch 0, so those logs open unchanged). A LeaderChange entry is a control batch (control
//!   type 2, as Kafka's LeaderChangeMessage).
//! - `quorum-state`: Kafka's JSON (`leaderId`, `leaderEpoch`, `votedId`, …), replaced
//!   atomically (write, fsync, rename).
//! - `<offset>-<epoch>.checkpoint`: a snapshot of the metadata image covering every entry
//!   below `offset`; only the latest is kept.
//!
//! The metadata log is small (a snapshot bounds it), so it lives in one file that is
//! rewritten when a snapshot drops its head.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::raft::{Entry, EntryKind, Offset, QuorumState, Snapshot, SnapshotId};
use crate::record::batch::{self, BatchIter, ATTRIBUTE_CONTROL};
use crate::record::builder::BatchBuilder;
use crate::record::records as record_codec;

/// Kafka's control record type of a LeaderChangeMessage.
pub const CONTROL_TYPE_LEADER_CHANGE: i16 = 2;
pub const QUORUM_STATE_FILE: &str = "quorum-state";
/// Largest metadata log file read back (a snapshot keeps it far smaller).
const LOG_FILE_SIZE_BYTES_MAX: u64 = 1 << 30;

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// One entry as a record batch at `offset`.
pub fn encode_entry(offset: Offset, entry: &Entry, now_ms: i64) -> Vec<u8> {
    let mut batch = match entry.kind {
        EntryKind::Data => BatchBuilder::new(now_ms)
            .record(None, Some(&entry.data), now_ms)
            .build(),
        EntryKind::LeaderChange => {
            let mut key = 0i16.to_be_bytes().to_vec();
            key.extend_from_slice(&CONTROL_TYPE_LEADER_CHANGE.to_be_bytes());
            let mut batch = BatchBuilder::new(now_ms)
                .record(Some(&key), Some(&entry.data), now_ms)
                .build();
            batch[21..23].copy_from_slice(&ATTRIBUTE_CONTROL.to_be_bytes());
            let crc = crc32c::crc32c(&batch[21..]);
            batch[17..21].copy_from_slice(&crc.to_be_bytes());
            batch
        }
    };
    batch::set_base_offset_and_epoch(&mut batch, offset, entry.epoch);
    batch
}

/// Entries in concatenated batches, each with its offset and the byte position of its batch.
/// Stops at the first invalid batch (a torn tail); returns how many bytes were valid.
pub fn decode_entries(bytes: &[u8]) -> (Vec<(Offset, usize, Entry)>, usize) {
    let mut entries = Vec::new();
    let mut valid = 0usize;
    for item in BatchIter::new(bytes) {
        let Ok((position, header)) = item else { break };
        let batch = &bytes[position..position + header.size_bytes()];
        let Ok(section) = record_codec::records_section(batch, &header) else {
            break;
        };
        let Ok(records) = record_codec::decode(&section, &header) else {
            break;
        };
        let kind = if header.is_control() {
            EntryKind::LeaderChange
        } else {
            EntryKind::Data
        };
        for record in records {
            entries.push((
                record.offset,
                position,
                Entry {
                    epoch: header.partition_leader_epoch.max(0),
                    kind,
                    data: Bytes::copy_from_slice(record.value.unwrap_or_default()),
                },
            ));
        }
        valid = position + header.size_bytes();
    }
    (entries, valid)
}

/// The Raft log on disk.
pub struct MetadataLog {
    dir: PathBuf,
    file: File,
    path: PathBuf,
    start_offset: Offset,
    /// Byte position of the batch holding each entry from `start_offset` on.
    positions: Vec<u64>,
    size_bytes: u64,
}

fn log_file_name(base_offset: Offset) -> String {
    format!("{base_offset:020}.log")
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` atomically: a temporary file, fsync, rename, fsync of the dir.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temporary = path.with_extension("tmp");
    let written = File::create(&temporary).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(error) = written {
        // On a full disk the partial file would hold space the retry (from the reserve) needs.
        let _ = fs::remove_file(&temporary);
        return Err(error);
    }
    fs::rename(&temporary, path)?;
    fsync_dir(path.parent().expect("a file in a dir"))
}

impl MetadataLog {
    /// Opens (or creates) the log in `dir`; returns it and the entries it holds from
    /// `start_offset` (the latest snapshot's end offset) on. Entries below it are dropped,
    /// several files (a log from before the quorum) are merged into one.
    pub fn open(dir: &Path, start_offset: Offset) -> io::Result<(MetadataLog, Vec<Entry>)> {
        fs::create_dir_all(dir)?;
        let mut files: Vec<(Offset, PathBuf)> = Vec::new();
        for item in fs::read_dir(dir)? {
            let path = item?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if let Some(base) = name.strip_suffix(".log") {
                if let Ok(base) = base.parse::<Offset>() {
                    files.push((base, path.clone()));
                }
            } else if name.ends_with(".index")
                || name.ends_with(".timeindex")
                || name.ends_with(".tmp")
            {
                // Index files of the partition log this replaced; rebuilt never.
                fs::remove_file(&path)?;
            }
        }
        files.sort();
        let mut bytes = Vec::new();
        for (_, path) in &files {
            let size = fs::metadata(path)?.len();
            if bytes.len() as u64 + size > LOG_FILE_SIZE_BYTES_MAX {
                return Err(invalid(format!(
                    "metadata log larger than {LOG_FILE_SIZE_BYTES_MAX} bytes"
                )));
            }
            bytes.extend_from_slice(&fs::read(path)?);
        }
        let (decoded, valid) = decode_entries(&bytes);
        if valid < bytes.len() {
            tracing::warn!(
                valid,
                size = bytes.len(),
                "metadata log has a torn tail; truncating"
            );
        }
        // Each entry's (offset, batch position), to tell whether the file is canonical.
        let placed: Vec<(Offset, u64)> = decoded
            .iter()
            .map(|(offset, position, _)| (*offset, *position as u64))
            .collect();
        let mut entries = Vec::new();
        let mut expected = start_offset;
        for (offset, _, entry) in decoded {
            if offset < start_offset {
                continue;
            }
            if offset != expected {
                if entries.is_empty() && start_offset == 0 {
                    // A log whose head was deleted with no snapshot: nothing to go on.
                    return Err(invalid(format!(
                        "metadata log starts at {offset} but no snapshot covers the offsets below"
                    )));
                }
                tracing::warn!(
                    offset,
                    expected,
                    "gap in the metadata log; dropping the rest"
                );
                break;
            }
            entries.push(entry);
            expected += 1;
        }
        let path = dir.join(log_file_name(start_offset));
        // Already canonical (one file at `start_offset` holding exactly `entries`, maybe
        // with a torn tail): opened in place, the tail cut. No new space is needed, so a
        // broker restarts on a full disk.
        let one_batch_per_entry = placed.windows(2).all(|pair| pair[0].1 < pair[1].1);
        let in_place = files.len() == 1
            && files[0].1 == path
            && placed.len() == entries.len()
            && placed
                .first()
                .is_none_or(|(offset, _)| *offset == start_offset)
            && one_batch_per_entry;
        if in_place {
            let file = OpenOptions::new().append(true).open(&path)?;
            if valid < bytes.len() {
                file.set_len(valid as u64)?;
                file.sync_all()?;
            }
            let positions: Vec<u64> = placed.iter().map(|(_, position)| *position).collect();
            let log = MetadataLog {
                dir: dir.to_path_buf(),
                file,
                path,
                start_offset,
                positions,
                size_bytes: valid as u64,
            };
            return Ok((log, entries));
        }
        // Rewrite as one canonical file: it starts at `start_offset` and holds exactly
        // `entries`. Cheap (the log is small) and it makes every later step simple.
        let mut log = MetadataLog {
            dir: dir.to_path_buf(),
            file: OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("rewrite.tmp"))?,
            path: path.clone(),
            start_offset,
            positions: Vec::new(),
            size_bytes: 0,
        };
        log.rewrite(
            start_offset,
            &entries,
            &files.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>(),
        )?;
        Ok((log, entries))
    }

    /// Replaces the log's file(s) with one holding `entries` from `start_offset`.
    fn rewrite(
        &mut self,
        start_offset: Offset,
        entries: &[Entry],
        old: &[PathBuf],
    ) -> io::Result<()> {
        let now = crate::clock::now_ms();
        let temporary = self.dir.join("rewrite.tmp");
        let mut positions = Vec::with_capacity(entries.len());
        let mut bytes = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            positions.push(bytes.len() as u64);
            bytes.extend_from_slice(&encode_entry(start_offset + index as Offset, entry, now));
        }
        {
            let mut file = File::create(&temporary)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        let path = self.dir.join(log_file_name(start_offset));
        fs::rename(&temporary, &path)?;
        for old_path in old {
            if *old_path != path {
                let _ = fs::remove_file(old_path);
            }
        }
        if self.path != path {
            let _ = fs::remove_file(&self.path);
        }
        fsync_dir(&self.dir)?;
        self.file = OpenOptions::new().append(true).open(&path)?;
        self.path = path;
        self.start_offset = start_offset;
        self.positions = positions;
        self.size_bytes = bytes.len() as u64;
        Ok(())
    }

    pub fn end_offset(&self) -> Offset {
        self.start_offset + self.positions.len() as Offset
    }

    pub fn start_offset(&self) -> Offset {
        self.start_offset
    }

    /// Appends entries starting at `offset` (the log end) and fsyncs.
    pub fn append(&mut self, offset: Offset, entries: &[Entry]) -> io::Result<()> {
        assert_eq!(
            offset,
            self.end_offset(),
            "metadata log append not at its end"
        );
        if entries.is_empty() {
            return Ok(());
        }
        let now = crate::clock::now_ms();
        let mut bytes = Vec::new();
        let mut positions = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            positions.push(self.size_bytes + bytes.len() as u64);
            bytes.extend_from_slice(&encode_entry(offset + index as Offset, entry, now));
        }
        let written = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            // Nothing of a failed append stays (ENOSPC halfway leaves part of a batch): the
            // log is as before, so the caller may try again (`LogDirSpace::with_reserve`).
            // Shrinking needs no space.
            self.file.set_len(self.size_bytes)?;
            return Err(error);
        }
        self.positions.extend(positions);
        self.size_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Drops entries at `offset` and above.
    pub fn truncate(&mut self, offset: Offset) -> io::Result<()> {
        assert!(offset >= self.start_offset && offset <= self.end_offset());
        let index = (offset - self.start_offset) as usize;
        if index == self.positions.len() {
            return Ok(());
        }
        let position = self.positions[index];
        assert!(
            index == 0 || self.positions[index - 1] < position,
            "truncation inside a batch at {offset}"
        );
        self.file.set_len(position)?;
        self.file.sync_all()?;
        self.positions.truncate(index);
        self.size_bytes = position;
        Ok(())
    }

    /// A snapshot now covers the entries below `offset`: drop them (`remaining` are the entries
    /// from `offset` on, as the Raft log holds them). `offset` beyond the end empties the log.
    pub fn compact(&mut self, offset: Offset, remaining: &[Entry]) -> io::Result<()> {
        let old = vec![self.path.clone()];
        self.rewrite(offset, remaining, &old)
    }
}

/// Kafka's `quorum-state` file.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct QuorumStateFile {
    cluster_id: String,
    leader_id: i32,
    leader_epoch: i32,
    voted_id: i32,
    applied_offset: i64,
    current_voters: Vec<VoterFile>,
    #[serde(rename = "data_version")]
    data_version: i32,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct VoterFile {
    voter_id: i32,
}

pub fn read_quorum_state(dir: &Path) -> io::Result<Option<QuorumState>> {
    let path = dir.join(QUORUM_STATE_FILE);
    let text = match fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let file: QuorumStateFile =
        serde_json::from_slice(&text).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    let id = |v: i32| (v >= 0).then_some(v);
    Ok(Some(QuorumState {
        epoch: file.leader_epoch,
        voted_for: id(file.voted_id),
        leader_id: id(file.leader_id),
    }))
}

pub fn write_quorum_state(dir: &Path, state: &QuorumState, voters: &[i32]) -> io::Result<()> {
    let file = QuorumStateFile {
        cluster_id: String::new(),
        leader_id: state.leader_id.unwrap_or(-1),
        leader_epoch: state.epoch,
        voted_id: state.voted_for.unwrap_or(-1),
        applied_offset: 0,
        current_voters: voters.iter().map(|v| VoterFile { voter_id: *v }).collect(),
        data_version: 0,
    };
    let bytes = serde_json::to_vec(&file).expect("quorum state serializes");
    write_atomically(&dir.join(QUORUM_STATE_FILE), &bytes)
}

fn checkpoint_name(id: SnapshotId) -> String {
    format!("{:020}-{:010}.checkpoint", id.end_offset, id.epoch)
}

fn parse_checkpoint_name(name: &str) -> Option<SnapshotId> {
    let (offset, epoch) = name.strip_suffix(".checkpoint")?.split_once('-')?;
    Some(SnapshotId {
        end_offset: offset.parse().ok()?,
        epoch: epoch.parse().ok()?,
    })
}

/// The snapshot files in `dir`.
fn checkpoints(dir: &Path) -> io::Result<Vec<(SnapshotId, PathBuf)>> {
    let mut found = Vec::new();
    for item in fs::read_dir(dir)? {
        let path = item?.path();
        let id = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_checkpoint_name);
        if let Some(id) = id {
            found.push((id, path));
        }
    }
    Ok(found)
}

/// The latest snapshot in `dir`, if any.
pub fn read_latest_snapshot(dir: &Path) -> io::Result<Option<Snapshot>> {
    if !dir.exists() {
        return Ok(None);
    }
    let Some((id, path)) = checkpoints(dir)?.into_iter().max_by_key(|(id, _)| *id) else {
        return Ok(None);
    };
    Ok(Some(Snapshot {
        id,
        data: Bytes::from(fs::read(path)?),
    }))
}

/// Writes a snapshot and deletes the older ones.
pub fn write_snapshot(dir: &Path, snapshot: &Snapshot) -> io::Result<()> {
    write_atomically(&dir.join(checkpoint_name(snapshot.id)), &snapshot.data)?;
    for (id, path) in checkpoints(dir)? {
        if id < snapshot.id {
            let _ = fs::remove_file(&path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Epoch;

    fn data(epoch: Epoch, text: &str) -> Entry {
        Entry {
            epoch,
            kind: EntryKind::Data,
            data: Bytes::copy_from_slice(text.as_bytes()),
        }
    }

    #[test]
    fn append_truncate_compact_and_reopen() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("__cluster_metadata-0");
        let (mut log, entries) = MetadataLog::open(&dir, 0).unwrap();
        assert!(entries.is_empty());
        let leader_change = Entry {
            epoch: 1,
            kind: EntryKind::LeaderChange,
            data: Bytes::new(),
        };
        log.append(0, &[leader_change.clone(), data(1, "a"), data(1, "b")])
            .unwrap();
        log.truncate(2).unwrap();
        log.append(2, &[data(2, "c")]).unwrap();
        drop(log);
        let (log, entries) = MetadataLog::open(&dir, 0).unwrap();
        assert_eq!(entries, vec![leader_change, data(1, "a"), data(2, "c")]);
        assert_eq!(log.end_offset(), 3);
        let mut log = log;
        log.compact(2, &[data(2, "c")]).unwrap();
        drop(log);
        let (log, entries) = MetadataLog::open(&dir, 2).unwrap();
        assert_eq!(entries, vec![data(2, "c")]);
        assert_eq!((log.start_offset(), log.end_offset()), (2, 3));
    }

    /// A canonical log reopens in place (no rewrite, which would need its size in new space:
    /// a restart on a full disk), its torn tail cut.
    #[test]
    fn a_canonical_log_reopens_in_place_with_its_torn_tail_cut() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("__cluster_metadata-0");
        let (mut log, _) = MetadataLog::open(&dir, 0).unwrap();
        log.append(0, &[data(1, "a"), data(1, "b")]).unwrap();
        let size_bytes = log.size_bytes;
        drop(log);
        let path = dir.join(log_file_name(0));
        let inode = |path: &Path| {
            use std::os::unix::fs::MetadataExt;
            fs::metadata(path).unwrap().ino()
        };
        let before = inode(&path);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[0xff; 30]).unwrap(); // half a batch, as an append cut short leaves
        drop(file);
        let (mut log, entries) = MetadataLog::open(&dir, 0).unwrap();
        assert_eq!(entries, vec![data(1, "a"), data(1, "b")]);
        assert_eq!(inode(&path), before, "opened in place, not rewritten");
        assert_eq!(fs::metadata(&path).unwrap().len(), size_bytes);
        log.append(2, &[data(2, "c")]).unwrap();
        log.truncate(1).unwrap();
        drop(log);
        let (log, entries) = MetadataLog::open(&dir, 0).unwrap();
        assert_eq!(entries, vec![data(1, "a")]);
        assert_eq!(log.end_offset(), 1);
    }

    #[test]
    fn quorum_state_and_snapshots_round_trip() {
        let temp = tempfile::tempdir().unwrap();
        assert_eq!(read_quorum_state(temp.path()).unwrap(), None);
        let state = QuorumState {
            epoch: 7,
            voted_for: Some(2),
            leader_id: None,
        };
        write_quorum_state(temp.path(), &state, &[1, 2, 3]).unwrap();
        assert_eq!(read_quorum_state(temp.path()).unwrap(), Some(state));
        for end_offset in [10, 20] {
            write_snapshot(
                temp.path(),
                &Snapshot {
                    id: SnapshotId {
                        end_offset,
                        epoch: 3,
                    },
                    data: Bytes::from_static(b"{}"),
                },
            )
            .unwrap();
        }
        let latest = read_latest_snapshot(temp.path()).unwrap().unwrap();
        assert_eq!(latest.id.end_offset, 20);
        assert_eq!(fs::read_dir(temp.path()).unwrap().count(), 2);
    }
}
