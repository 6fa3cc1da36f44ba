//! Probing SQLite's WAL-index (`-shm`) locks held by *other* processes.
//!
//! SQLite implements the WAL locks as byte-range locks on the `-shm` file at offset 120 + n
//! (n = 0 write, 1 checkpoint, 2 recover, 3.. readers): POSIX locks on Unix, `LockFileEx`
//! ranges on Windows. On Unix `F_GETLK` tells whether another process holds one, without
//! taking it; Windows has no such query, so there the probe takes the byte for an instant and
//! gives it back (see `platform::windows::range_locked`). memsync uses that to notice an
//! application's FULL/RESTART/TRUNCATE checkpoint waiting on memsync's read transaction, and
//! step aside.

use std::fs::File;
use std::path::Path;

const SHM_LOCK_BASE: i64 = 120;
const WRITE_LOCK: i64 = 0;
const CKPT_LOCK: i64 = 1;
/// SQLite's `UNIX_SHM_DMS`: the byte after its eight WAL locks.
#[cfg(unix)]
const DMS_LOCK: i64 = 8;

/// An open handle on a database's `-shm` file used only for lock probes.
pub struct ShmProbe {
    file: File,
}

impl ShmProbe {
    /// Opens `<db>-shm` read-only; `None` if it does not exist (no WAL connection open).
    pub fn open(db_path: &Path) -> Option<Self> {
        let p = crate::sqlite::sidecar(db_path, "-shm");
        File::open(p).ok().map(|file| ShmProbe { file })
    }

    /// True when another process holds both the WAL write lock and the checkpoint lock: a
    /// blocking checkpoint (FULL, RESTART or TRUNCATE) is in progress, and while it holds the
    /// write lock no transaction can commit.
    pub fn foreign_blocking_checkpoint(&self) -> bool {
        self.held_by_other(CKPT_LOCK) && self.held_by_other(WRITE_LOCK)
    }

    /// True when another process holds the checkpoint lock.
    pub fn foreign_checkpoint(&self) -> bool {
        self.held_by_other(CKPT_LOCK)
    }

    /// True when another process has the database open in WAL mode: each connection holds a
    /// shared lock on the WAL-index's "DMS" byte (after the eight WAL locks) while it is open.
    #[cfg(unix)]
    pub fn open_elsewhere(&self) -> bool {
        self.held_by_other(DMS_LOCK)
    }

    /// Windows has no query that leaves SQLite's locks alone here: taken as open elsewhere.
    #[cfg(windows)]
    pub fn open_elsewhere(&self) -> bool {
        true
    }

    #[cfg(unix)]
    fn held_by_other(&self, lock: i64) -> bool {
        use rustix::process::{Flock, FlockOffsetType, FlockType, fcntl_getlk};
        let probe = Flock {
            start: (SHM_LOCK_BASE + lock) as u64,
            length: 1,
            pid: None,
            typ: FlockType::WriteLock,
            offset_type: FlockOffsetType::Set,
        };
        // F_GETLK answers "none" when nothing (of another process) would block a write lock.
        matches!(fcntl_getlk(&self.file, &probe), Ok(Some(_)))
    }

    /// Windows: locks are per handle there, so memsync's own connections count too; the
    /// probes run where memsync holds neither the write nor the checkpoint lock, and the
    /// write lock is only probed once the checkpoint lock was found held (a probe holds the
    /// byte for an instant, which an application's writer would wait out).
    #[cfg(windows)]
    fn held_by_other(&self, lock: i64) -> bool {
        crate::platform::range_locked(&self.file, (SHM_LOCK_BASE + lock) as u64)
    }
}
