//! Locks and checkpoints: how the monitor takes the write lock briefly, checkpoints without
//! losing frames, and steps aside for an application's own blocking checkpoint.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::monitor::{Monitor, MonitorError};
use super::shm::ShmProbe;

/// Longest memsync waits, read lock released, for an application's checkpoint to finish.
const MAX_YIELD: Duration = Duration::from_secs(10);

/// Longest memsync's final PASSIVE checkpoint waits for another connection's checkpoint to
/// release SQLite's checkpoint lock (see `checkpoint_passive`).
const CHECKPOINT_LOCK_WAIT: Duration = Duration::from_millis(20);

/// Longest memsync waits, without the write lock, for another process's checkpoint to finish
/// before its own final PASSIVE: an application's autocheckpoint copying a second of WAL takes
/// tens of milliseconds, and an application's RESTART that has the checkpoint lock but not yet
/// the write lock looks the same and waits on memsync meanwhile.
const FOREIGN_CHECKPOINT_WAIT: Duration = Duration::from_millis(50);

/// Runs a PASSIVE checkpoint on `conn`; false if it could not run because another connection's
/// checkpoint held the checkpoint lock (SQLite then reports -1 frames).
fn passive(conn: &rusqlite::Connection) -> rusqlite::Result<bool> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok(r.get::<_, i64>(1)? >= 0)
    })
}

impl Monitor {
    /// Runs `f` while holding the write lock, then restarts the read transaction before
    /// releasing it: afterwards every committed frame has been seen by `f`'s caller and all
    /// later frames are protected. The write lock is held only for `f` and a `BEGIN`.
    pub(super) fn with_write_lock<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, MonitorError>,
    ) -> Result<T, MonitorError> {
        self.begin_immediate()?;
        self.locked(f)
    }

    /// [`Self::with_write_lock`] if the lock is free right now; `None` if another connection
    /// holds it.
    fn try_write_lock<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, MonitorError>,
    ) -> Result<Option<T>, MonitorError> {
        let w = &self.conns()?.w;
        let _ = w.busy_timeout(Duration::ZERO);
        let begun = w.execute_batch("BEGIN IMMEDIATE");
        let _ = w.busy_timeout(self.cfg.busy_timeout);
        match begun {
            Ok(()) => self.locked(f).map(Some),
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => Ok(None),
            Err(e) => Err(self.sql_err(e)),
        }
    }

    /// The body of a write-locked section: `f`, the read transaction restarted, the lock
    /// released.
    fn locked<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, MonitorError>,
    ) -> Result<T, MonitorError> {
        let t0 = Instant::now();
        let res = f(self).and_then(|v| {
            self.restart_read()?;
            Ok(v)
        });
        let rb = self.rollback_write();
        self.stats
            .write_lock_us
            .fetch_add(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
        let v = res?;
        rb?;
        self.protected = true;
        Ok(v)
    }

    /// Takes the write lock, waiting up to the busy timeout in short steps: while memsync waits
    /// it still holds its read transaction, and an application's blocking checkpoint that took
    /// the write lock first waits for that read transaction. Such a checkpoint ends the wait at
    /// once with SQLITE_BUSY, so the caller gives up this pass and the next one steps aside
    /// (`maybe_yield`) instead of both sides waiting out a busy timeout. (Without a read
    /// transaction, as at startup, nothing waits on memsync and it simply waits its turn.)
    fn begin_immediate(&mut self) -> Result<(), MonitorError> {
        const STEP: Duration = Duration::from_millis(20);
        let deadline = Instant::now() + self.cfg.busy_timeout;
        let w = &self.conns()?.w;
        let _ = w.busy_timeout(STEP);
        let res = loop {
            match w.execute_batch("BEGIN IMMEDIATE") {
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && Instant::now() < deadline
                        && !(self.r_active
                            && self
                                .shm
                                .as_ref()
                                .is_some_and(ShmProbe::foreign_blocking_checkpoint)) => {}
                other => break other,
            }
        };
        let _ = w.busy_timeout(self.cfg.busy_timeout);
        res.map_err(|e| self.sql_err(e))
    }

    /// Ends the write transaction `begin_immediate` started.
    fn rollback_write(&self) -> Result<(), MonitorError> {
        self.conns()?
            .w
            .execute_batch("ROLLBACK")
            .map_err(|e| self.sql_err(e))
    }

    fn restart_read(&mut self) -> Result<(), MonitorError> {
        self.release_read();
        self.conns()?
            .r
            .execute_batch("BEGIN")
            .map_err(|e| self.sql_err(e))?;
        // From here on a failure must still roll back (`release_read`), or every later BEGIN
        // on this connection would fail.
        self.r_active = true;
        let mut stmt = self
            .conns()?
            .r
            .prepare_cached("SELECT 1 FROM sqlite_schema LIMIT 1")
            .map_err(|e| self.sql_err(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.sql_err(e))?;
        rows.next().map_err(|e| self.sql_err(e))?;
        drop(rows);
        drop(stmt);
        self.r_active = true;
        Ok(())
    }

    /// Ends the read transaction; the WAL is no longer protected.
    pub(super) fn release_read(&mut self) {
        if self.r_active {
            if let Some(c) = &self.conns {
                let _ = c.r.execute_batch("ROLLBACK");
            }
            self.r_active = false;
        }
        self.protected = false;
    }

    /// Which checkpoint the WAL's growth calls for: `Some(true)` for the emergency TRUNCATE,
    /// `Some(false)` for a PASSIVE one.
    fn checkpoint_due(&self) -> Option<bool> {
        let frames = self.src.wal_frames();
        let grown = frames.saturating_sub(self.frames_at_checkpoint);
        if frames >= self.cfg.truncate_pages as u64 {
            return Some(true);
        }
        let timed = grown > 0 && self.last_checkpoint.elapsed() >= self.cfg.checkpoint_interval;
        (grown >= self.cfg.min_checkpoint_pages as u64 || timed).then_some(false)
    }

    /// One pass of the run loop: ships what is committed and checkpoints when the WAL calls for
    /// it; true if it spooled anything. The frames found are only gathered at first: when a
    /// PASSIVE checkpoint is due, they go out in one segment with the tail its drain under the
    /// write lock finds (see `checkpoint_passive`).
    pub(super) fn sync_pass(&mut self) -> Result<bool, MonitorError> {
        self.paced(|m| {
            if !m.attach(false)? {
                return Ok(());
            }
            if !m.needs_resync {
                m.gather_wal()?;
            }
            if m.needs_resync || m.checkpoint_due() != Some(false) {
                m.write_pending()?;
                if m.needs_resync {
                    m.resync()?;
                }
            }
            m.maybe_checkpoint()
        })
    }

    /// Checkpoints when the WAL passed a threshold or the interval elapsed.
    pub(super) fn maybe_checkpoint(&mut self) -> Result<(), MonitorError> {
        if self.needs_resync {
            return self.resync();
        }
        match self.checkpoint_due() {
            Some(true) => self.checkpoint_truncate(),
            Some(false) => match self.checkpoint_passive() {
                // The application holds the write lock (a long transaction): the checkpoint
                // waits for the next pass; shipping must not back off because of it.
                Err(e) if e.is_busy() => {
                    crate::log::debug(&format!(
                        "{}: checkpoint postponed: the database is busy",
                        self.cfg.db_path.display()
                    ));
                    Ok(())
                }
                other => other,
            },
            None => Ok(()),
        }
    }

    /// PASSIVE checkpoint in two steps so the write lock is held only for the tail: first move
    /// the read mark to the end and backfill without any lock, then, under the write lock, copy
    /// and backfill the few frames committed meanwhile and restart the read transaction after
    /// the backfill (so the next writer may restart the WAL).
    ///
    /// Frames gathered before (see `sync_pass`) are written with the first drain's, after the
    /// lock is released and the backfill (before it with `sync-interval: 0`); if the
    /// application holds the lock, they are written before waiting.
    pub(super) fn checkpoint_passive(&mut self) -> Result<(), MonitorError> {
        let t0 = Instant::now();
        let first = match self.try_write_lock(|m| m.gather_wal()) {
            Ok(None) => self
                .write_pending()
                .and_then(|()| self.with_write_lock(|m| m.drain_wal())),
            other => other.map(|_| ()),
        };
        // Backfill at once: the gathered frames stay in the WAL meanwhile (memsync's read mark,
        // above 0, keeps it from being restarted), and otherwise the application's own
        // autocheckpoint does this copy in its commit path, holding SQLite's checkpoint lock
        // when memsync's final PASSIVE needs it (writing a second's frames first left the WAL
        // unrestarted often enough to let it grow; `docs/measurements.md`).
        // With `sync-interval: 0` the gathered frames are a few milliseconds' worth, written in
        // about as long: they go first rather than wait out the backfill, which would add to
        // every commit's lag.
        let written_first = self
            .cfg
            .min_sync_gap
            .is_zero()
            .then(|| self.write_pending());
        let backfilled = first.and_then(|()| {
            if !self.needs_resync {
                passive(&self.conns()?.w).map_err(|e| self.sql_err(e))?;
            }
            Ok(())
        });
        let written = written_first.unwrap_or_else(|| self.write_pending());
        backfilled?;
        written?;
        if self.needs_resync {
            return self.resync();
        }
        // The application's autocheckpoint may be doing that copy instead, holding the
        // checkpoint lock the final PASSIVE needs: let it finish first, without the write lock.
        self.wait_foreign_checkpoint();
        self.begin_immediate()?;
        let locked = Instant::now();
        let res = (|| {
            // The tail goes out with the next sync's segment, not in a file of its own.
            self.gather_wal()?;
            self.carry_pending()?;
            self.release_read();
            // An application checkpoint still running from its last commit holds the
            // checkpoint lock; nothing new can start while memsync holds the write lock, so it
            // is waited out briefly rather than leaving the WAL unrestarted for another pass.
            let deadline = Instant::now() + CHECKPOINT_LOCK_WAIT;
            while !passive(&self.conns()?.r).map_err(|e| self.sql_err(e))? {
                if Instant::now() >= deadline {
                    crate::log::debug(&format!(
                        "{}: another connection held the checkpoint lock; the WAL restarts after a later pass",
                        self.cfg.db_path.display()
                    ));
                    break;
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            self.restart_read()
        })();
        let rb = self.rollback_write();
        self.stats
            .write_lock_us
            .fetch_add(locked.elapsed().as_micros() as u64, Ordering::Relaxed);
        res?;
        rb?;
        self.protected = true;
        self.frames_at_checkpoint = self.src.wal_frames();
        self.last_checkpoint = Instant::now();
        self.save_map(false);
        self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.stats
            .checkpoint_us
            .fetch_add(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Waits, up to [`FOREIGN_CHECKPOINT_WAIT`], while another process holds the checkpoint lock.
    fn wait_foreign_checkpoint(&mut self) {
        if self.shm.is_none() {
            self.shm = ShmProbe::open(&self.cfg.db_path);
        }
        let Some(shm) = &self.shm else {
            return;
        };
        // A blocking checkpoint (FULL, RESTART, TRUNCATE) waits on memsync's read transaction:
        // waiting for it would stall both; the next pass steps aside for it (`maybe_yield`).
        let t0 = Instant::now();
        while shm.foreign_checkpoint()
            && !shm.foreign_blocking_checkpoint()
            && t0.elapsed() < FOREIGN_CHECKPOINT_WAIT
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Emergency TRUNCATE when the WAL grew past `truncate-page-n` (readers kept PASSIVE from
    /// completing). SQLite needs the write lock itself, so memsync cannot hold it: it copies what
    /// is committed, steps aside, and resynchronises afterwards.
    fn checkpoint_truncate(&mut self) -> Result<(), MonitorError> {
        crate::log::info(&format!(
            "{}: the WAL passed {} frames; TRUNCATE checkpoint",
            self.cfg.db_path.display(),
            self.cfg.truncate_pages
        ));
        self.drain_wal()?;
        self.release_read();
        let res = self.conns().and_then(|c| {
            c.w.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .map_err(|e| self.sql_err(e))
        });
        self.last_checkpoint = Instant::now();
        self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.needs_resync = true;
        self.resync()?;
        res
    }

    /// When another process runs a blocking checkpoint (FULL, RESTART, TRUNCATE), copy what is
    /// committed (the checkpointer holds the write lock, so nothing else commits), release the
    /// read transaction so it completes promptly, wait for it, then resynchronise.
    pub(super) fn maybe_yield(&mut self) -> Result<(), MonitorError> {
        if self.shm.is_none() {
            self.shm = ShmProbe::open(&self.cfg.db_path);
        }
        let Some(shm) = &self.shm else {
            return Ok(());
        };
        if !self.r_active || !shm.foreign_blocking_checkpoint() {
            return Ok(());
        }
        self.drain_wal()?;
        let mark = (!self.needs_resync)
            .then(|| self.src.index_mark())
            .flatten();
        self.release_read();
        let t0 = Instant::now();
        let shm = self.shm.as_ref().expect("checked above");
        while shm.foreign_checkpoint() && t0.elapsed() < MAX_YIELD {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.stats.yields.fetch_add(1, Ordering::Relaxed);
        self.stats
            .yield_us
            .fetch_add(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.continue_or_resync(mark)
    }

    /// Catches up after memsync's read transaction was released (for an application's
    /// checkpoint, or while idle) at `mark` (see [`super::reader::Source::index_mark`]).
    /// Usually the WAL index proves nothing was missed while unprotected, and reading the
    /// whole database again is not needed (see `Source::continue_after`); otherwise (or without
    /// a mark) it resynchronises.
    pub(super) fn continue_or_resync(
        &mut self,
        mark: Option<super::walindex::IndexHeader>,
    ) -> Result<(), MonitorError> {
        // Until the frames it found are shipped, a resync stays pending: an error anywhere in
        // between (the proof moved the reader's cursor) must end in a resync, never in a silent
        // skip.
        self.needs_resync = true;
        let continued = match mark {
            Some(mark) => {
                self.with_write_lock(|m| m.src.continue_after(&mark).map_err(|e| m.wal_err(e)))?
            }
            None => None,
        };
        if let Some(scan) = continued {
            self.frames_at_checkpoint = self.frames_at_checkpoint.min(self.src.wal_frames());
            // A failed or stale write sets `needs_resync` again (see `finish_write`). The frames
            // are read after the write lock is released; if the WAL restarted meanwhile (the
            // read transaction may sit on read mark 0 after a full checkpoint), they no longer
            // verify and that, too, ends in a resync.
            self.needs_resync = false;
            if !scan.frames.is_empty() && self.pos.is_some() {
                self.write_frames(&scan)?;
            }
            return Ok(());
        }
        self.resync()
    }
}
