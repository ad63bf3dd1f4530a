//! Space in the log directory: a warning before it fills, the refusal of writes while it is
//! full, and a reserve that lets the metadata log and the checkpoints write when it is.
//!
//! Kafka takes a full disk as a failed log directory and halts once none is left. dlog keeps
//! serving what needs no new space (Fetch, Metadata, ListOffsets, group heartbeats) and refuses
//! the writes that do:
//!
//! - **Warning.** Every maintenance tick compares the file system's free space with
//!   `log.dir.free.space.warn.bytes` (-1: 5% of the file system, at most 1 GiB) and logs one
//!   WARN line when it falls below (and one INFO line when it is back above); the
//!   `dlog_log_dir_free_bytes` gauge shows it continuously.
//! - **Full.** The first write that fails for lack of space (ENOSPC, EDQUOT) marks the
//!   directory full. From then on partition appends are refused before they write anything
//!   (Produce answers KAFKA_STORAGE_ERROR per partition, as Kafka does for a failed log
//!   directory) and topic or partition creation is refused, until free space is back:
//!   [`LogDirSpace::admit_write`] checks that on the next write itself, so the first produce
//!   after space was freed is served, without waiting for a tick.
//! - **Reserve.** `.dlog-reserve` in the log directory holds `log.dir.reserve.bytes`
//!   allocated (fallocate) while there is room. A metadata-log append, quorum-state, snapshot or
//!   checkpoint write that fails for lack of space releases an eighth of it and tries again,
//!   as many eighths as it needs ([`LogDirSpace::with_reserve`]): Raft's log is never left behind what the Raft state
//!   machine was told is persisted, and the process does not exit. Data appends are refused
//!   while full, so the released space goes to metadata; a data append already past the check
//!   can take at most one batch of it. What is left of the reserve survives a restart, whose
//!   own writes (quorum-state, registration) may release more: a broker stopped on a full
//!   disk starts again there. The reserve is allocated again once the space is back.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use nix::errno::Errno;

use crate::config::{Properties, LOG_DIR_FREE_SPACE_WARN_BYTES, LOG_DIR_RESERVE_BYTES};

/// The reserve file, in the log directory's root.
pub const RESERVE_FILE: &str = ".dlog-reserve";

/// Free space needed beyond what the reserve lacks before writes are admitted again: room for
/// at least a batch or two, so that a directory with a few bytes free does not flap.
pub const RESUME_HEADROOM_BYTES: u64 = 1 << 20;

/// The reserve is released in this many steps, one per metadata write that found no space.
pub const RELEASE_STEPS: u64 = 8;

/// The default warning threshold: 5% of the file system, at most this.
const FREE_WARN_BYTES_DEFAULT_MAX: u64 = 1 << 30;

/// Zeros written at a time where the file system cannot fallocate.
const ZERO_CHUNK_BYTES: usize = 64 << 10;

/// `log.dir.*` space settings, read once at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpaceSettings {
    /// `log.dir.reserve.bytes`: held for metadata and checkpoints (0: no reserve).
    pub reserve_bytes: u64,
    /// `log.dir.free.space.warn.bytes`; None: 5% of the file system, at most 1 GiB.
    pub free_warn_bytes: Option<u64>,
}

impl SpaceSettings {
    pub fn from_properties(properties: &Properties) -> SpaceSettings {
        let warn = properties.get_i64(LOG_DIR_FREE_SPACE_WARN_BYTES);
        SpaceSettings {
            reserve_bytes: properties.get_i64(LOG_DIR_RESERVE_BYTES).max(0) as u64,
            free_warn_bytes: (warn >= 0).then_some(warn as u64),
        }
    }

    /// The warning threshold for a file system of `total_bytes`.
    pub fn free_warn_bytes(&self, total_bytes: u64) -> u64 {
        self.free_warn_bytes
            .unwrap_or((total_bytes / 20).min(FREE_WARN_BYTES_DEFAULT_MAX))
    }
}

impl Default for SpaceSettings {
    fn default() -> SpaceSettings {
        SpaceSettings::from_properties(&Properties::default())
    }
}

/// Whether `error` says the file system (or the user's quota) has no room.
pub fn is_no_space(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(code) if code == Errno::ENOSPC as i32 || code == Errno::EDQUOT as i32
    ) || matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// (total, available to this process) bytes of the file system holding `dir`.
pub fn file_system_bytes(dir: &Path) -> io::Result<(u64, u64)> {
    let stat = nix::sys::statvfs::statvfs(dir).map_err(io::Error::from)?;
    let fragment_bytes = stat.fragment_size() as u64;
    Ok((
        stat.blocks() as u64 * fragment_bytes,
        stat.blocks_available() as u64 * fragment_bytes,
    ))
}

/// Allocates `length_bytes` from `offset_bytes` of `file`, so that later writes there cannot
/// fail for lack of space (nor a store through a mapping raise SIGBUS). Where the file system
/// cannot fallocate, zeros are written instead when `zero_fill` (otherwise nothing is done).
pub fn allocate(
    file: &File,
    offset_bytes: u64,
    length_bytes: u64,
    zero_fill: bool,
) -> io::Result<()> {
    if length_bytes == 0 {
        return Ok(());
    }
    let outcome = nix::fcntl::fallocate(
        file.as_raw_fd(),
        nix::fcntl::FallocateFlags::empty(),
        offset_bytes as nix::libc::off_t,
        length_bytes as nix::libc::off_t,
    );
    match outcome {
        Ok(()) => Ok(()),
        Err(Errno::EOPNOTSUPP) if zero_fill => {
            use std::os::unix::fs::FileExt;
            let zeros = vec![0u8; ZERO_CHUNK_BYTES];
            let mut written = 0u64;
            while written < length_bytes {
                let chunk = (length_bytes - written).min(ZERO_CHUNK_BYTES as u64) as usize;
                file.write_all_at(&zeros[..chunk], offset_bytes + written)?;
                written += chunk as u64;
            }
            Ok(())
        }
        Err(Errno::EOPNOTSUPP) => Ok(()),
        Err(errno) => Err(io::Error::from(errno)),
    }
}

struct Reserve {
    /// None when the file could not be opened (then there is no reserve).
    file: Option<File>,
    /// Bytes the file holds allocated now: the setting, or 0 once released.
    held_bytes: u64,
}

/// The space of the one log directory (`log.dirs`); shared by the partition logs, the metadata
/// quorum and the maintenance task.
pub struct LogDirSpace {
    dir: PathBuf,
    settings: SpaceSettings,
    /// A write failed for lack of space and free space has not come back since.
    full: AtomicBool,
    /// Free space is below the warning threshold (logged once per crossing).
    low: AtomicBool,
    reserve: Mutex<Reserve>,
}

impl LogDirSpace {
    /// Opens (creating) the reserve in `dir` and allocates it. A directory already too full
    /// for it starts marked full, without a reserve (the start itself needs no new space).
    pub fn open(dir: &Path, settings: SpaceSettings) -> LogDirSpace {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(RESERVE_FILE));
        let file = match file {
            Ok(file) => Some(file),
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "cannot open the log directory's space reserve");
                None
            }
        };
        let space = LogDirSpace {
            dir: dir.to_path_buf(),
            settings,
            full: AtomicBool::new(false),
            low: AtomicBool::new(false),
            reserve: Mutex::new(Reserve {
                file,
                held_bytes: 0,
            }),
        };
        let mut reserve = space.reserve.lock().expect("reserve lock");
        if let Err(error) = space.arm(&mut reserve) {
            tracing::warn!(
                dir = %dir.display(),
                reserve_bytes = settings.reserve_bytes,
                %error,
                "log directory full at start: writes refused until space is freed"
            );
            space.full.store(true, Ordering::Release);
        }
        drop(reserve);
        space
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn settings(&self) -> SpaceSettings {
        self.settings
    }

    /// Whether writes are being refused for lack of space.
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Acquire)
    }

    /// Bytes the reserve holds now.
    pub fn reserve_held_bytes(&self) -> u64 {
        self.reserve.lock().expect("reserve lock").held_bytes
    }

    /// Allocates the reserve up to its setting, from what the file holds already (what a
    /// previous run left of it counts: a restart on a full disk still has that to release).
    fn arm(&self, reserve: &mut Reserve) -> io::Result<()> {
        let Some(file) = &reserve.file else {
            return Ok(());
        };
        let wanted_bytes = self.settings.reserve_bytes;
        let length_bytes = file.metadata()?.len();
        if length_bytes > wanted_bytes {
            file.set_len(wanted_bytes)?; // the setting was lowered
        }
        reserve.held_bytes = length_bytes.min(wanted_bytes);
        if reserve.held_bytes == wanted_bytes {
            return Ok(());
        }
        if let Err(error) = allocate(
            file,
            reserve.held_bytes,
            wanted_bytes - reserve.held_bytes,
            true,
        ) {
            // Blocks a failed fallocate may have taken past the length are given back.
            let _ = file.set_len(reserve.held_bytes);
            return Err(error);
        }
        // fallocate without KEEP_SIZE has set the length; zero-filling has too.
        assert_eq!(file.metadata()?.len(), wanted_bytes, "reserve length");
        reserve.held_bytes = wanted_bytes;
        Ok(())
    }

    /// Frees one step of the reserve ([`RELEASE_STEPS`] make the whole); false when nothing
    /// was left to free. In steps, so that what is left serves later writes, and a restart on
    /// the still full disk.
    fn release(&self) -> bool {
        let mut reserve = self.reserve.lock().expect("reserve lock");
        if reserve.held_bytes == 0 {
            return false;
        }
        let step_bytes = self.settings.reserve_bytes.div_ceil(RELEASE_STEPS).max(1);
        let left_bytes = reserve.held_bytes.saturating_sub(step_bytes);
        if let Some(file) = &reserve.file {
            if let Err(error) = file.set_len(left_bytes) {
                tracing::error!(%error, "releasing the log directory's space reserve failed");
                return false;
            }
        }
        reserve.held_bytes = left_bytes;
        true
    }

    /// Marks the directory full (a write failed for lack of space).
    pub fn mark_full(&self) {
        if !self.full.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                dir = %self.dir.display(),
                "log directory full: produce and other writes are refused (KAFKA_STORAGE_ERROR) until space is freed"
            );
        }
    }

    /// Notes a failed write: one that failed for lack of space marks the directory full.
    pub fn write_failed(&self, error: &io::Error) {
        if is_no_space(error) {
            self.mark_full();
        }
    }

    /// Whether a write needing new space may go ahead: yes unless the directory is full and
    /// free space has not come back (checked now, so the first write after space was freed is
    /// served).
    pub fn admit_write(&self) -> io::Result<()> {
        if !self.is_full() || self.try_resume() {
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "log directory {} is full: writes are refused until space is freed",
                self.dir.display()
            ),
        ))
    }

    /// Whether new files (a topic's partitions) may be created: as [`Self::admit_write`], and
    /// free space must hold at least [`RESUME_HEADROOM_BYTES`] now. A directory filled by
    /// something else, with no write of ours failing yet, is caught here before a topic is
    /// committed whose partitions could not be opened.
    pub fn admit_new_files(&self) -> io::Result<()> {
        self.admit_write()?;
        let (_, free_bytes) = file_system_bytes(&self.dir)?;
        if free_bytes < RESUME_HEADROOM_BYTES {
            self.mark_full();
            return self.admit_write();
        }
        Ok(())
    }

    /// Admits writes again once free space covers the reserve (allocated again first) and
    /// [`RESUME_HEADROOM_BYTES`]. One caller at a time does it; others see "still full".
    fn try_resume(&self) -> bool {
        let Ok(mut reserve) = self.reserve.try_lock() else {
            return false;
        };
        let Ok((_, free_bytes)) = file_system_bytes(&self.dir) else {
            return false;
        };
        let missing_bytes = match reserve.file {
            Some(_) => self.settings.reserve_bytes - reserve.held_bytes,
            None => 0,
        };
        if free_bytes < missing_bytes + RESUME_HEADROOM_BYTES {
            return false;
        }
        if let Err(error) = self.arm(&mut reserve) {
            tracing::debug!(%error, "allocating the space reserve again failed");
            return false;
        }
        if self.full.swap(false, Ordering::AcqRel) {
            tracing::info!(
                dir = %self.dir.display(),
                free_bytes,
                "log directory has space again: writes admitted"
            );
        }
        true
    }

    /// Runs a metadata or checkpoint write; while it fails for lack of space, releases one
    /// step of the reserve and runs it again (at most [`RELEASE_STEPS`] times: a large
    /// snapshot may need several). `write` must leave nothing behind when it fails (the
    /// metadata log cuts a partial append back; checkpoints remove their temporary file).
    pub fn with_reserve<T>(
        &self,
        what: &str,
        mut write: impl FnMut() -> io::Result<T>,
    ) -> io::Result<T> {
        let mut outcome = write();
        for _ in 0..RELEASE_STEPS {
            match &outcome {
                Err(error) if is_no_space(error) => {}
                _ => return outcome,
            }
            self.mark_full();
            if !self.release() {
                return outcome;
            }
            tracing::warn!(
                what,
                reserve_left_bytes = self.reserve_held_bytes(),
                "log directory full: released part of the space reserve for a metadata write"
            );
            outcome = write();
        }
        outcome
    }

    /// The periodic check (every maintenance tick): the low-space warning, and writes
    /// admitted again (with the reserve allocated again) once space is back. Returns
    /// (total, free) bytes.
    pub fn tick(&self) -> Option<(u64, u64)> {
        let (total_bytes, free_bytes) = file_system_bytes(&self.dir).ok()?;
        let threshold_bytes = self.settings.free_warn_bytes(total_bytes);
        let low = free_bytes < threshold_bytes;
        if low && !self.low.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                dir = %self.dir.display(),
                free_bytes,
                total_bytes,
                threshold_bytes,
                "log directory low on space (below log.dir.free.space.warn.bytes)"
            );
        } else if !low && self.low.swap(false, Ordering::AcqRel) {
            tracing::info!(
                dir = %self.dir.display(),
                free_bytes,
                threshold_bytes,
                "log directory space back above the warning threshold"
            );
        }
        let reserve_short = {
            let reserve = self.reserve.lock().expect("reserve lock");
            reserve.file.is_some() && reserve.held_bytes < self.settings.reserve_bytes
        };
        if self.is_full() || reserve_short {
            self.try_resume();
        }
        Some((total_bytes, free_bytes))
    }

    /// The warning threshold in force for this file system.
    pub fn free_warn_bytes(&self) -> Option<u64> {
        let (total_bytes, _) = file_system_bytes(&self.dir).ok()?;
        Some(self.settings.free_warn_bytes(total_bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(reserve_bytes: u64) -> SpaceSettings {
        SpaceSettings {
            reserve_bytes,
            free_warn_bytes: None,
        }
    }

    #[test]
    fn the_reserve_is_allocated_released_once_and_allocated_again() {
        let dir = tempfile::tempdir().unwrap();
        let space = LogDirSpace::open(dir.path(), settings(64 << 10));
        assert!(!space.is_full());
        assert_eq!(space.reserve_held_bytes(), 64 << 10);
        let reserve_path = dir.path().join(RESERVE_FILE);
        assert_eq!(std::fs::metadata(&reserve_path).unwrap().len(), 64 << 10);

        // A write that fails for lack of space releases the reserve and is tried again.
        let mut attempts = 0;
        let written = space.with_reserve("test", || {
            attempts += 1;
            match attempts {
                1 => Err(io::Error::from(Errno::ENOSPC)),
                _ => Ok(attempts),
            }
        });
        assert_eq!(written.unwrap(), 2);
        assert!(space.is_full());
        let step_bytes = (64 << 10) / RELEASE_STEPS;
        assert_eq!(space.reserve_held_bytes(), (64 << 10) - step_bytes);
        assert_eq!(
            std::fs::metadata(&reserve_path).unwrap().len(),
            (64 << 10) - step_bytes
        );

        // A write that keeps failing takes one step after another until none is left.
        let mut attempts = 0;
        let failed = space.with_reserve("test", || -> io::Result<()> {
            attempts += 1;
            Err(io::Error::from(Errno::ENOSPC))
        });
        assert!(is_no_space(&failed.unwrap_err()));
        assert_eq!(
            attempts, RELEASE_STEPS,
            "the 7 steps left, then the first attempt"
        );
        assert_eq!(space.reserve_held_bytes(), 0);
        let mut attempts = 0;
        let failed = space.with_reserve("test", || -> io::Result<()> {
            attempts += 1;
            Err(io::Error::from(Errno::ENOSPC))
        });
        assert!(is_no_space(&failed.unwrap_err()));
        assert_eq!(attempts, 1, "nothing left to release: not tried again");

        // What is left of a reserve counts at the next open (a restart on a full disk).
        {
            let again = LogDirSpace::open(dir.path(), settings(64 << 10));
            assert_eq!(again.reserve_held_bytes(), 64 << 10);
            let reopened = LogDirSpace::open(dir.path(), settings(32 << 10));
            assert_eq!(
                reopened.reserve_held_bytes(),
                32 << 10,
                "a lowered setting shrinks it"
            );
        }
        std::fs::OpenOptions::new()
            .write(true)
            .open(&reserve_path)
            .unwrap()
            .set_len(0)
            .unwrap();
        let space = LogDirSpace::open(dir.path(), settings(64 << 10));
        space.mark_full();

        // The temp dir has room: the next admitted write allocates the reserve again.
        space.admit_write().unwrap();
        assert!(!space.is_full());
        assert_eq!(space.reserve_held_bytes(), 64 << 10);
        assert_eq!(std::fs::metadata(&reserve_path).unwrap().len(), 64 << 10);
    }

    #[test]
    fn other_errors_neither_release_the_reserve_nor_mark_the_directory_full() {
        let dir = tempfile::tempdir().unwrap();
        let space = LogDirSpace::open(dir.path(), settings(4096));
        let failed = space.with_reserve("test", || -> io::Result<()> {
            Err(io::Error::from(Errno::EIO))
        });
        assert!(failed.is_err());
        assert!(!space.is_full());
        assert_eq!(space.reserve_held_bytes(), 4096);
        space.write_failed(&io::Error::from(Errno::EIO));
        assert!(!space.is_full());
        space.write_failed(&io::Error::from(Errno::ENOSPC));
        assert!(space.is_full());
    }

    #[test]
    fn the_default_warning_threshold_is_five_percent_at_most_one_gibibyte() {
        let automatic = settings(0);
        assert_eq!(automatic.free_warn_bytes(1000 << 20), 50 << 20);
        assert_eq!(automatic.free_warn_bytes(100 << 30), 1 << 30);
        let explicit = SpaceSettings {
            reserve_bytes: 0,
            free_warn_bytes: Some(7),
        };
        assert_eq!(explicit.free_warn_bytes(100 << 30), 7);
    }

    #[test]
    fn a_full_directory_is_admitted_again_when_space_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let space = LogDirSpace::open(dir.path(), settings(0));
        space.mark_full();
        assert!(space.is_full());
        // The temp dir has more than the headroom free.
        space.admit_write().unwrap();
        assert!(!space.is_full());
        assert!(space.tick().is_some());
    }
}
