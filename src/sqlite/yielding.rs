//! Stepping aside for an application's blocking checkpoint (FULL, RESTART, TRUNCATE), which
//! waits on memsync's read transaction, and catching up afterwards: continuing when SQLite's
//! WAL index proves nothing was missed, resynchronising otherwise.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::monitor::{Monitor, MonitorError};

/// Longest memsync waits, read lock released, for an application's checkpoint to finish.
const MAX_YIELD: Duration = Duration::from_secs(10);

impl Monitor {
    /// When another process runs a blocking checkpoint (FULL, RESTART, TRUNCATE), copy what is
    /// committed (the checkpointer holds the write lock, so nothing else commits), release the
    /// read transaction so it completes promptly, wait for it, then resynchronise.
    ///
    /// What is copied, and what the application commits right after its checkpoint, is
    /// carried to the next paced sync (`carry.rs`) rather than written at once:
    /// written, an application checkpointing every few seconds cost two extra level-0 files
    /// each time (87 files a minute instead of 60 in the benchmark), each an upload and one
    /// more copy of the hot pages.
    pub(super) fn maybe_yield(&mut self) -> Result<(), MonitorError> {
        let reading = self.session.reading();
        let Some(shm) = self.session.probe() else {
            return Ok(());
        };
        if !reading || !shm.foreign_blocking_checkpoint() {
            return Ok(());
        }
        self.gather_wal()?;
        self.cap.carry_pending()?;
        let mark = (!self.cap.cur.needs_resync)
            .then(|| self.cap.src.index_mark())
            .flatten();
        self.session.release_read();
        let t0 = Instant::now();
        // A checkpoint held up by another reader holds the write lock all along (nothing
        // commits meanwhile, and memsync cannot take the lock to go on): what was copied goes
        // out when the next sync would have taken it, not when the checkpoint ends (seconds
        // later, with the replica and `/health` silent about it meanwhile).
        let ship_after = self.cfg.min_sync_gap.max(Duration::from_millis(100));
        let shm = self.session.shared_probe().expect("opened above");
        while shm.foreign_checkpoint() && t0.elapsed() < MAX_YIELD {
            if self.cap.cur.carry.is_some() && t0.elapsed() >= ship_after {
                self.cap.write_pending()?;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.stats.yields.fetch_add(1, Ordering::Relaxed);
        self.stats
            .yield_us
            .fetch_add(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.continue_or_resync(mark, true)
    }

    /// Catches up after memsync's read transaction was released (for an application's
    /// checkpoint, or while idle) at `mark` (see [`super::reader::Source::index_mark`]).
    /// Usually the WAL index proves nothing was missed while unprotected, and reading the
    /// whole database again is not needed (see `Source::continue_after`); otherwise (or without
    /// a mark) it resynchronises. With `carry`, the frames found after the mark are carried
    /// to the next paced sync when they fit (see [`Self::maybe_yield`]); otherwise they are
    /// written at once (after idling, a lone commit ships immediately).
    pub(super) fn continue_or_resync(
        &mut self,
        mark: Option<super::walindex::IndexHeader>,
        carry: bool,
    ) -> Result<(), MonitorError> {
        // Until the frames it found are shipped, a resync stays pending: an error anywhere in
        // between (the proof moved the reader's cursor) must end in a resync, never in a silent
        // skip.
        self.cap.cur.needs_resync = true;
        let continued = match mark {
            Some(mark) => self.with_write_lock(|m| {
                let Some(scan) = m.cap.src.continue_after(&mark).map_err(|e| m.wal_err(e))? else {
                    return Ok(None);
                };
                if !carry || scan.frames.is_empty() || m.cap.cur.pos.is_none() {
                    return Ok(Some(scan));
                }
                // Read under the write lock, so no restart can move the frames first.
                m.cap.cur.needs_resync = false;
                let left = m.cap.carry_scan(scan);
                // Set by `carry_scan` when a frame did not read back: resynchronise.
                let unreadable = m.cap.cur.needs_resync;
                m.cap.cur.needs_resync = true;
                let left = left?;
                Ok((!unreadable).then(|| left.unwrap_or_default()))
            })?,
            None => None,
        };
        if let Some(scan) = continued {
            self.checkpoints.continued_at(self.cap.src.wal_frames());
            // A failed or stale write sets `needs_resync` again (see `finish_write`). The frames
            // are read after the write lock is released; if the WAL restarted meanwhile (the
            // read transaction may sit on read mark 0 after a full checkpoint), they no longer
            // verify and that, too, ends in a resync.
            self.cap.cur.needs_resync = false;
            if !scan.frames.is_empty() && self.cap.cur.pos.is_some() {
                self.cap.write_frames(&scan)?;
            }
            return Ok(());
        }
        self.resync()
    }
}
