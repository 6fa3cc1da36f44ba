//! Probing SQLite's WAL-index (`-shm`) locks held by *other* processes.
//!
//! SQLite's unix VFS implements the WAL locks as POSIX byte-range locks on the `-shm` file at
//! offset 120 + n (n = 0 write, 1 checkpoint, 2 recover, 3.. readers). `F_GETLK` tells whether
//! another process holds one, without taking it. memsync uses that to notice an application's
//! FULL/RESTART/TRUNCATE checkpoint waiting on memsync's read transaction, and step aside.

use std::fs::File;
use std::path::Path;

#[cfg(unix)]
const SHM_LOCK_BASE: i64 = 120;
const WRITE_LOCK: i64 = 0;
const CKPT_LOCK: i64 = 1;

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

    /// Windows: SQLite's locks there are `LockFileEx` ranges that cannot be probed without
    /// taking them, so memsync does not notice another process's checkpoint: its own
    /// checkpoints do not wait for one, and an application's blocking checkpoint waits on
    /// memsync's read transaction until its busy timeout (it returns SQLITE_BUSY; nothing is
    /// lost).
    #[cfg(not(unix))]
    fn held_by_other(&self, _lock: i64) -> bool {
        let _ = &self.file;
        false
    }
}
