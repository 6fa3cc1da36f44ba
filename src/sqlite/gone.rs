//! A database deleted under memsync, or replaced (another file renamed over it). While memsync
//! is attached, its connection and the WAL it reads stay open, so the commits the application
//! made just before are still there to read: they are shipped before the monitor ends, as a
//! stop would ship them. A backup is what one restores after deleting or overwriting a
//! database by mistake.
//!
//! Only through what is already open: a file now at the path (the database moved there) is
//! never read, and nothing is reopened; a WAL restart seen while draining ends it (the WAL at
//! the path may then be the new database's).

use std::io;

use super::monitor::{Monitor, MonitorError};

impl Monitor {
    /// `Ok` while the file at the database's path is the one being replicated; otherwise
    /// [`MonitorError::Replaced`], after shipping a deleted or replaced database's last
    /// commits when they can be read from the files memsync holds open.
    pub(super) fn still_there(&mut self) -> Result<(), MonitorError> {
        let Err(replaced) = self.check_replaced() else {
            return Ok(());
        };
        let path = &self.cfg.db_path;
        let deleted = matches!(
            crate::platform::file_id(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound
        );
        let how = match deleted {
            true => "deleted",
            false => "replaced by another file",
        };
        if !self.is_away() && self.cap.src.wal_open() && !self.cap.cur.needs_resync {
            let shown = path.display().to_string();
            match self.drain_wal() {
                Ok(()) if self.cap.cur.needs_resync => tracing::warn!(
                    "{shown}: {how}; its WAL restarted since the last sync, so its last commits were not shipped"
                ),
                Ok(()) => tracing::info!("{shown}: {how}; its last commits are shipped"),
                Err(MonitorError::Replaced(_)) => tracing::warn!(
                    "{shown}: {how}; its WAL restarted (the new file's, most likely), so its last commits after the last sync were not shipped"
                ),
                // Its meta directory went with it: a folder renamed (the database goes on
                // under its new name, its spool with it) or removed whole.
                Err(_) if deleted && !self.cfg.meta_dir.is_dir() => tracing::info!(
                    "{shown}: gone with its meta directory (its folder renamed or removed); its last commits are shipped under its new name if it was moved within the watched directory"
                ),
                Err(e) => {
                    tracing::warn!("{shown}: {how}; its last commits could not be shipped: {e}")
                }
            }
        }
        self.remove_orphans(deleted);
        Err(replaced)
    }

    /// Removes the `-wal` and `-shm` left at a deleted or replaced database's path when they
    /// are the files memsync holds open: attached, its connections keep the WAL (it is what
    /// they read), so without memsync SQLite would have removed them, and the
    /// file now at the path (or one created there later) would read the old database's WAL as
    /// its own: SQLite applies it at the first open (restore refuses to write beside one).
    /// Another file now at a sidecar's path (a new database's) is left alone, and after a
    /// replacement so are the old ones while another process has the database open (its
    /// connections use them; it already reads the old WAL over the new file, and taking it
    /// away would lose what it writes next), and after a deletion too (its last close removes
    /// them).
    #[cfg(unix)]
    fn remove_orphans(&self, deleted: bool) {
        use std::os::unix::fs::MetadataExt;
        let path = &self.cfg.db_path;
        if super::shm::ShmProbe::open(path).is_some_and(|p| p.open_elsewhere()) {
            match deleted {
                // Its last close removes them, as without memsync (and whoever deleted the
                // database may be removing them too: a folder's recursive removal failed on
                // the files memsync had taken away under it).
                true => tracing::info!(
                    "{}: deleted while another process has it open; its -wal and -shm are left to that process",
                    path.display()
                ),
                false => tracing::warn!(
                    "{}: replaced while another process has it open; its old -wal and -shm are left (the new file reads the old WAL over itself until they go)",
                    path.display()
                ),
            }
            return;
        }
        for (open, suffix) in self
            .cap
            .src
            .open_sidecars()
            .into_iter()
            .zip(["-wal", "-shm"])
        {
            let Some(Ok(held)) = open.map(std::fs::File::metadata) else {
                continue;
            };
            let at = super::sidecar(path, suffix);
            let same = std::fs::symlink_metadata(&at)
                .is_ok_and(|m| m.dev() == held.dev() && m.ino() == held.ino());
            if same && self.check_replaced().is_err() {
                match std::fs::remove_file(&at) {
                    Ok(()) => tracing::info!("{}: removed, as its database was", at.display()),
                    Err(e) => tracing::warn!("{}: left behind: {e}", at.display()),
                }
            }
        }
    }

    /// Windows does not delete a file another handle holds open.
    #[cfg(not(unix))]
    fn remove_orphans(&self, _deleted: bool) {}
}
