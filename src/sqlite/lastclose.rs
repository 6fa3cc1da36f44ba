//! What SQLite does at a database's last close, done at memsync's exit: the WAL merged into
//! the database and removed. memsync's connections never do it otherwise (the WAL is what it
//! reads), and while they are open the application's own last close cannot; so a stopped
//! memsync left the WAL behind, and a database put in place of this one before the next start
//! (a restored copy moved into place while everything is stopped) opened with this one's WAL
//! applied over it. Only when no other process has the database open: then SQLite would not
//! merge either. The next start finds the WAL changed and compares pages to its page map.

use super::monitor::Monitor;

/// A WAL holding only its header holds no frame to merge.
pub(super) const WAL_HEADER_LEN: u64 = 32;

impl Monitor {
    /// Lets the WAL be merged and removed as memsync lets go of the database for good.
    pub(super) fn merge_wal_at_exit(&mut self) {
        if self.session.is_open() {
            // SQLite merges at the last close, if it is memsync's.
            self.session.checkpoint_on_close();
            return;
        }
        let db = &self.cfg.db_path;
        let wal = super::sidecar(db, "-wal");
        let has_frames = std::fs::metadata(&wal).is_ok_and(|m| m.len() > WAL_HEADER_LEN);
        let elsewhere = super::shm::ShmProbe::open(db).is_none_or(|p| p.open_elsewhere());
        if !has_frames || elsewhere || self.check_replaced().is_err() {
            return;
        }
        // Away: a connection of its own, one read to open the WAL, and its close merges.
        let Ok(c) = super::conn::open(db, std::time::Duration::from_millis(100)) else {
            return;
        };
        let _ = c.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            false,
        );
        let _ = c.query_row("PRAGMA schema_version", [], |r| r.get::<_, i64>(0));
        if let Err((_, e)) = c.close() {
            tracing::debug!("{}: {e}", db.display());
        }
    }
}
