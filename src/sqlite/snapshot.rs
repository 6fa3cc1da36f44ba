//! Snapshots and resynchronisations as the monitor runs them: under the write lock, so the
//! database read is the state at the reader's cursor, with every frame before it seen.

use std::sync::atomic::Ordering;

use super::monitor::{Monitor, MonitorError};
use super::reader::Poll;

impl Monitor {
    /// Periodic snapshot of the current position (no new position: the state is the one the
    /// last segment produced, so older segments and this snapshot chain into the same future).
    /// It doubles as a self-check: the database must hash to the replicated state. If it does
    /// not, the snapshot is written as a new position, which restores then start from.
    pub(super) fn snapshot_current(&mut self) -> Result<(), MonitorError> {
        if !self.attach(false)? {
            // Out of WAL mode: taken once the database is back (see `idle.rs`).
            return Ok(());
        }
        self.with_write_lock(|m| m.drain_wal())?;
        if self.cap.cur.needs_resync {
            self.resync()?;
        }
        let Some(pos) = self.cap.cur.pos else {
            return self.cap.snapshot();
        };
        let expected = self.cap.cur.map.checksum();
        let fresh = self.cap.write_snapshot_map(pos)?;
        if fresh != expected {
            tracing::error!(
                "{}: database checksum {fresh} differs from the replicated state {expected}; starting a new snapshot chain",
                self.cfg.db_path.display()
            );
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            self.cap.snapshot()?;
        }
        Ok(())
    }

    /// Brings the replica up to date after a discontinuity: re-establishes protection, reads
    /// the whole database and ships only the pages whose hash differs from the replicated state.
    pub(super) fn resync(&mut self) -> Result<(), MonitorError> {
        // A resynchronisation reopens the WAL by its path: after a database was moved over
        // this one (a restored copy put in place, the old `-wal` removed), that is another
        // database's WAL, or none, beside this one's pages, a state that never existed.
        self.check_replaced()?;
        // The full read below covers whatever was gathered or carried.
        self.cap.cur.discard_unwritten();
        self.with_write_lock(|m| {
            m.cap.src.reset();
            // Index the current generation up to its end; nothing is written meanwhile.
            while let Poll::Frames(_) | Poll::Restarted { .. } =
                m.cap.src.poll(0).map_err(|e| m.cap.wal_err(e))?
            {}
            Ok(())
        })?;
        if self.cap.cur.pos.is_none() || self.cap.cur.map.page_size() != self.cap.src.page_size() {
            return self.cap.snapshot();
        }
        self.cap.write_diff()
    }
}
