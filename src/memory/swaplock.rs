//! `store` against `repair`'s file swap. `store` does not take the run lock ([`super::lock`]):
//! it only inserts, and waiting out a long push would make an offline store hang. But `repair`
//! reads the damaged file, writes a new one and renames it over the old: a store that landed in
//! the old file after it was read was acknowledged and then gone (found by a tester: 24 of 147
//! concurrent stores). So every store holds a shared `flock` on `<staging db>.store.lock` while
//! it writes, and a rebuild holds it exclusively from its first read to the rename: each waits
//! for the other, up to `SYNC_LOCK_WAIT`. The file is never deleted (see [`super::lock`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::lock::{LockError, wait_from_env};

/// Held while a store writes (shared) or while a rebuild replaces the file (exclusive).
#[derive(Debug)]
pub struct SwapGuard {
    _file: File,
}

/// `<staging db>.store.lock`.
pub fn swap_lock_path(staging_db: &Path) -> PathBuf {
    let mut p = staging_db.as_os_str().to_owned();
    p.push(".store.lock");
    PathBuf::from(p)
}

/// For a store: waits while a rebuild replaces the staging database.
pub fn for_store(staging_db: &Path) -> Result<SwapGuard, LockError> {
    take(staging_db, true, wait_from_env()?)
}

/// For a rebuild: waits for the stores under way, and holds off new ones.
pub fn for_rebuild(staging_db: &Path) -> Result<SwapGuard, LockError> {
    take(staging_db, false, wait_from_env()?)
}

fn take(staging_db: &Path, shared: bool, wait: Duration) -> Result<SwapGuard, LockError> {
    let path = swap_lock_path(staging_db);
    match crate::fsutil::lock_file(&path, shared, wait) {
        Ok(Some(file)) => Ok(SwapGuard { _file: file }),
        Ok(None) => Err(LockError::Swap {
            db: staging_db.to_owned(),
            waiting_for: if shared {
                "`memsync repair` rebuilding it"
            } else {
                "a `memsync store` writing to it"
            },
            waited: wait.as_secs(),
        }),
        Err(source) => Err(LockError::Io { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_share_and_a_rebuild_excludes_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("staging.db");
        let a = take(&db, true, Duration::ZERO).unwrap();
        let _b = take(&db, true, Duration::ZERO).unwrap();
        let err = take(&db, false, Duration::ZERO).unwrap_err().to_string();
        assert!(err.contains("a `memsync store` writing to it"), "{err}");
        drop(a);
        drop(_b);
        let _r = take(&db, false, Duration::ZERO).unwrap();
        let err = take(&db, true, Duration::from_millis(60))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`memsync repair` rebuilding it"), "{err}");
    }
}
