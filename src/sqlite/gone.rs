//! A database deleted under memsync. While memsync is attached, its connection and the WAL it
//! reads stay open, so the commits the application made just before the deletion are still
//! there to read: they are shipped before the monitor ends, as a stop would ship them. A backup
//! is what one restores after deleting a database by mistake.
//!
//! Only a deletion, and only through what is already open: a file now at the path (another
//! database moved there) is never read, and nothing is reopened.

use std::io;

use super::monitor::{Monitor, MonitorError};

impl Monitor {
    /// `Ok` while the file at the database's path is the one being replicated; otherwise
    /// [`MonitorError::Replaced`], after shipping a deleted database's last commits when they
    /// can be read from the files memsync holds open.
    pub(super) fn still_there(&mut self) -> Result<(), MonitorError> {
        let Err(replaced) = self.check_replaced() else {
            return Ok(());
        };
        let path = &self.cfg.db_path;
        let deleted = matches!(
            crate::platform::file_id(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound
        );
        if deleted && !self.is_away() && self.cap.src.wal_open() && !self.cap.cur.needs_resync {
            let shown = path.display().to_string();
            match self.drain_wal() {
                Ok(()) if self.cap.cur.needs_resync => tracing::warn!(
                    "{shown}: deleted; its WAL restarted since the last sync, so its last commits were not shipped"
                ),
                Ok(()) => tracing::info!("{shown}: deleted; its last commits are shipped"),
                Err(e) => {
                    tracing::warn!("{shown}: deleted; its last commits could not be shipped: {e}")
                }
            }
        }
        Err(replaced)
    }
}
