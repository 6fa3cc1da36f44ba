//! One memsync at a time per staging database. Two pushes at once each sent every pending row
//! (SQLite serialises the writes, not the runs) and each reported the other's rows as its own.
//! Commands that change staging, the local database or the server take an exclusive `flock` on
//! `<staging db>.lock`; a second one waits up to `SYNC_LOCK_WAIT` seconds (default 10), then
//! gives up naming the holder. `store` never takes it (it only inserts, which SQLite
//! serialises; [`super::swaplock`] keeps it apart from `repair`), nor do read-only commands
//! and dry runs.
//!
//! The lock file holds the holder's pid, command and start time as text, for that message. It
//! is never deleted (deleting a flock file lets two processes lock two different files); it is
//! emptied when released, so what it says is about a live holder (or one that crashed).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::fsutil::HolderLock;

/// How long a second run waits by default.
const DEFAULT_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "staging database {db} is in use by {holder}; gave up after {waited}s (SYNC_LOCK_WAIT); run again when it has finished"
    )]
    Held {
        db: PathBuf,
        holder: String,
        waited: u64,
    },
    #[error("lock file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "staging database {db}: waited {waited}s for {waiting_for} (SYNC_LOCK_WAIT); run again when it has finished"
    )]
    Swap {
        db: PathBuf,
        waiting_for: &'static str,
        waited: u64,
    },
    #[error("SYNC_LOCK_WAIT={0:?}: expected a whole number of seconds")]
    BadWait(String),
}

impl LockError {
    /// What the failure means: held by another run, a lock file that failed, or a bad setting.
    pub fn kind(&self) -> super::kind::ErrorKind {
        match self {
            LockError::Held { .. } | LockError::Swap { .. } => super::kind::ErrorKind::Locked,
            LockError::Io { .. } => super::kind::ErrorKind::Io,
            LockError::BadWait(_) => super::kind::ErrorKind::Invalid,
        }
    }
}

/// The held lock; released when dropped (or when the process ends, however it ends).
#[derive(Debug)]
pub struct StagingLock {
    _lock: HolderLock,
}

/// `<staging db>.lock`.
pub fn lock_path(staging_db: &Path) -> PathBuf {
    let mut p = staging_db.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// `SYNC_LOCK_WAIT`, or the default.
pub fn wait_from_env() -> Result<Duration, LockError> {
    match std::env::var("SYNC_LOCK_WAIT") {
        Err(_) => Ok(DEFAULT_WAIT),
        Ok(v) if v.trim().is_empty() => Ok(DEFAULT_WAIT),
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| LockError::BadWait(v)),
    }
}

/// Takes the lock for `command`, waiting up to `SYNC_LOCK_WAIT`.
pub fn acquire(staging_db: &Path, command: &str) -> Result<StagingLock, LockError> {
    acquire_within(staging_db, command, wait_from_env()?)
}

/// Takes the lock for `command`, waiting up to `wait` for another holder to finish.
pub fn acquire_within(
    staging_db: &Path,
    command: &str,
    wait: Duration,
) -> Result<StagingLock, LockError> {
    let path = lock_path(staging_db);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let lock = match HolderLock::take(&path, wait).map_err(io)? {
        Ok(l) => l,
        Err(text) => {
            return Err(LockError::Held {
                db: staging_db.to_owned(),
                holder: holder(&text, &path),
                waited: wait.as_secs(),
            });
        }
    };
    let since = humantime::format_rfc3339_seconds(SystemTime::now());
    lock.say(&format!(
        "pid {}\ncommand memsync {command}\nsince {since}\n",
        std::process::id()
    ))
    .map_err(io)?;
    Ok(StagingLock { _lock: lock })
}

/// "memsync push (pid 123, since 2026-12-02T01:23:45Z)", from the lock file's text.
fn holder(text: &str, path: &Path) -> String {
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
            .map(str::trim)
    };
    match (get("pid"), get("command"), get("since")) {
        (Some(pid), Some(cmd), Some(since)) => format!("{cmd} (pid {pid}, since {since})"),
        _ => format!(
            "another process (it has not said who; see {})",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_named_then_admitted() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sub/staging.db");
        let first = acquire_within(&db, "push", Duration::ZERO).unwrap();
        let err = acquire_within(&db, "sync", Duration::from_millis(120)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("memsync push (pid {}", std::process::id()))
                && msg.contains("since ")
                && msg.contains("staging.db"),
            "{msg}"
        );
        drop(first);
        assert_eq!(std::fs::read_to_string(lock_path(&db)).unwrap(), "");
        let second = acquire_within(&db, "sync", Duration::ZERO).unwrap();
        assert!(
            std::fs::read_to_string(lock_path(&db))
                .unwrap()
                .contains("command memsync sync")
        );
        drop(second);
    }
}
