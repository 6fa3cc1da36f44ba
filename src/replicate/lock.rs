//! One replicator per database. Two monitors on one database each spool and ship their own
//! positions into the same replica and each checkpoint the WAL under the other: the replica
//! ends up mixing histories. A running replicator (daemon or `-once`) therefore holds an
//! exclusive `flock` on `<meta dir>/lock`, taken before anything is read or written, and a
//! second one exits naming the holder.
//!
//! The meta directory defaults to one derived from the database's real path (symlinks
//! resolved), so two names of one database meet at one lock. Two replicators given different
//! meta directories (`meta-path`) for one database would not meet there: on Linux each also
//! holds an OFD lock on one byte of the database file itself, far past the bytes SQLite locks
//! (which it leaves alone, as every other process's locks). The file holds the holder's pid
//! and start time as text, for that message; it is never deleted (deleting a flock file lets
//! two processes lock two different files) and is emptied when released.

use std::path::{Path, PathBuf};

use crate::fsutil::HolderLock;

use thiserror::Error;

/// Why the lock was not taken.
#[derive(Debug, Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("database {db} is already being replicated by {holder} (lock {lock}); stop it first")]
    Held {
        /// Database as configured.
        db: PathBuf,
        /// Who holds it, from the lock file.
        holder: String,
        /// The lock file.
        lock: PathBuf,
    },
    /// The lock file could not be created or locked.
    #[error("lock file {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// The held lock of one database; released when dropped or when the process ends.
#[derive(Debug)]
pub struct DbLock {
    _lock: HolderLock,
    /// The database file, holding its byte lock (`None` where none is taken).
    _db: Option<std::fs::File>,
}

/// The byte of the database file a replicator locks: past SQLite's lock bytes (1 GiB to
/// 1 GiB + 512), never read or written (a lock needs no data there).
const DB_LOCK_BYTE: u64 = (1 << 30) + 4096;

/// Takes the lock of the database `db` whose meta directory is `meta` (created if missing),
/// without waiting.
pub fn acquire(db: &Path, meta: &Path) -> Result<DbLock, LockError> {
    let path = meta.join("lock");
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let lock = match HolderLock::take(&path, std::time::Duration::ZERO).map_err(io)? {
        Ok(l) => l,
        Err(text) => {
            let text = text.trim();
            let holder = if text.is_empty() {
                "another memsync process".to_string()
            } else {
                format!("memsync {text}")
            };
            return Err(LockError::Held {
                db: db.to_path_buf(),
                holder,
                lock: path,
            });
        }
    };
    let started = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    // Who holds the lock is a courtesy to the next run; the flock is the lock. A full disk
    // must not stop replication here (the spool waits it out).
    if let Err(e) = lock.say(&format!("pid {}, started {started}", std::process::id())) {
        tracing::warn!("lock file {}: {e}", path.display());
    }
    let db_file = match lock_db_file(db) {
        Ok(f) => f,
        Err(DbHeld) => {
            return Err(LockError::Held {
                db: db.to_path_buf(),
                holder: "another memsync process with another meta directory (`meta-path`)".into(),
                lock: db.to_path_buf(),
            });
        }
    };
    Ok(DbLock {
        _lock: lock,
        _db: db_file,
    })
}

struct DbHeld;

/// The database file with its byte lock taken; `None` where it cannot be opened (the start
/// says why soon after) or the platform takes no such lock.
fn lock_db_file(db: &Path) -> Result<Option<std::fs::File>, DbHeld> {
    // Open for writing: a write lock needs it (nothing is written).
    let Ok(f) = std::fs::OpenOptions::new().read(true).write(true).open(db) else {
        return Ok(None);
    };
    match crate::platform::lock_byte_exclusive(&f, DB_LOCK_BYTE) {
        Ok(true) => Ok(Some(f)),
        Ok(false) => Err(DbHeld),
        Err(e) => {
            tracing::debug!("{}: no lock on the database file: {e}", db.display());
            Ok(None)
        }
    }
}
