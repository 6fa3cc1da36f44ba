//! One replicator per database. Two monitors on one database each spool and ship their own
//! positions into the same replica and each checkpoint the WAL under the other: the replica
//! ends up mixing histories. A running replicator (daemon or `-once`) therefore holds an
//! exclusive `flock` on `<meta dir>/lock`, taken before anything is read or written, and a
//! second one exits naming the holder.
//!
//! The meta directory defaults to one derived from the database's real path (symlinks
//! resolved), so two names of one database meet at one lock. The file holds the holder's pid
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
}

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
    Ok(DbLock { _lock: lock })
}
