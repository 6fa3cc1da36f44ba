//! Checkpoints: when one is due (a pure policy over frame counts and time), and how the monitor
//! checkpoints without losing frames while holding the write lock only briefly.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::monitor::{Monitor, MonitorConfig, MonitorError};

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

/// Which checkpoint is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    /// Copy what no reader needs; never blocks the application.
    Passive,
    /// The emergency one: the WAL grew past `truncate-page-n` (readers kept PASSIVE from
    /// completing).
    Truncate,
}

/// When to checkpoint, decided from numbers only: the WAL's frame count, the count at the last
/// checkpoint of this generation (thresholds are relative to it) and the time since.
#[derive(Debug, Clone)]
pub struct CheckpointPolicy {
    interval: Duration,
    min_frames: u64,
    truncate_frames: u64,
    /// WAL frames at the last checkpoint of this generation.
    frames_at_last: u64,
    last: Instant,
}

impl CheckpointPolicy {
    /// The thresholds of `cfg`, counting from `now`.
    pub fn new(cfg: &MonitorConfig, now: Instant) -> Self {
        CheckpointPolicy {
            interval: cfg.checkpoint_interval,
            min_frames: u64::from(cfg.min_checkpoint_pages),
            truncate_frames: u64::from(cfg.truncate_pages),
            frames_at_last: 0,
            last: now,
        }
    }

    /// The checkpoint a WAL of `frames` frames calls for at `now`, if any.
    pub fn due(&self, frames: u64, now: Instant) -> Option<Checkpoint> {
        let grown = frames.saturating_sub(self.frames_at_last);
        // `truncate-page-n: 0` switches the emergency TRUNCATE off (as Litestream's does).
        if self.truncate_frames > 0 && frames >= self.truncate_frames {
            return Some(Checkpoint::Truncate);
        }
        let timed = grown > 0 && now.saturating_duration_since(self.last) >= self.interval;
        (grown >= self.min_frames || timed).then_some(Checkpoint::Passive)
    }

    /// A PASSIVE checkpoint completed at `now` with `frames` in the WAL.
    pub fn passive_done(&mut self, frames: u64, now: Instant) {
        self.frames_at_last = frames;
        self.last = now;
    }

    /// A TRUNCATE checkpoint ran at `now` (the WAL restart that follows is seen by the reader).
    pub fn truncate_done(&mut self, now: Instant) {
        self.last = now;
    }

    /// The WAL was restarted: a new generation counts from its first frame.
    pub fn wal_restarted(&mut self) {
        self.frames_at_last = 0;
    }

    /// The reader continued into a generation of `frames` frames (after stepping aside).
    pub fn continued_at(&mut self, frames: u64) {
        self.frames_at_last = self.frames_at_last.min(frames);
    }
}

impl Monitor {
    /// Which checkpoint the WAL's growth calls for now.
    fn checkpoint_due(&self) -> Option<Checkpoint> {
        self.checkpoints
            .due(self.cap.src.wal_frames(), Instant::now())
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
            if !m.cap.cur.needs_resync {
                m.gather_wal()?;
            }
            if m.cap.cur.needs_resync || m.checkpoint_due() != Some(Checkpoint::Passive) {
                m.cap.write_pending()?;
                if m.cap.cur.needs_resync {
                    m.resync()?;
                }
            }
            m.maybe_checkpoint()
        })
    }

    /// Checkpoints when the WAL passed a threshold or the interval elapsed.
    pub(super) fn maybe_checkpoint(&mut self) -> Result<(), MonitorError> {
        if self.cap.cur.needs_resync {
            return self.resync();
        }
        match self.checkpoint_due() {
            Some(Checkpoint::Truncate) => self.checkpoint_truncate(),
            Some(Checkpoint::Passive) => match self.checkpoint_passive() {
                // The application holds the write lock (a long transaction): the checkpoint
                // waits for the next pass; shipping must not back off because of it.
                Err(e) if e.is_busy() => {
                    tracing::debug!(
                        "{}: checkpoint postponed: the database is busy",
                        self.cfg.db_path.display()
                    );
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
    /// application holds the lock, they are written before waiting, and what it commits
    /// meanwhile is carried to the next sync.
    pub(super) fn checkpoint_passive(&mut self) -> Result<(), MonitorError> {
        let t0 = Instant::now();
        let first = match self.try_write_lock(|m| m.gather_wal()) {
            // What the application committed while memsync waited for the lock is carried to
            // the next sync rather than written as a file of its own (`carry.rs`).
            Ok(None) => self.cap.write_pending().and_then(|()| {
                self.with_write_lock(|m| {
                    m.gather_wal()?;
                    m.cap.carry_pending()
                })
            }),
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
            .then(|| self.cap.write_pending());
        let backfilled = first.and_then(|()| {
            if !self.cap.cur.needs_resync {
                passive(&self.conns()?.w).map_err(|e| self.sql_err(e))?;
            }
            Ok(())
        });
        // Only gathered frames: a carry alone (what was committed while memsync waited for
        // the lock) waits for the next sync rather than make a file of its own.
        let written = written_first.unwrap_or_else(|| self.cap.write_gathered());
        backfilled?;
        written?;
        if self.cap.cur.needs_resync {
            return self.resync();
        }
        // The application's autocheckpoint may be doing that copy instead, holding the
        // checkpoint lock the final PASSIVE needs: let it finish first, without the write lock.
        self.wait_foreign_checkpoint();
        self.session.begin_immediate()?;
        let locked = Instant::now();
        let res = (|| {
            // The tail goes out with the next sync's segment, not in a file of its own.
            self.gather_wal()?;
            self.cap.carry_pending()?;
            self.session.release_read();
            // An application checkpoint still running from its last commit holds the
            // checkpoint lock; nothing new can start while memsync holds the write lock, so it
            // is waited out briefly rather than leaving the WAL unrestarted for another pass.
            let deadline = Instant::now() + CHECKPOINT_LOCK_WAIT;
            while !passive(&self.conns()?.r).map_err(|e| self.sql_err(e))? {
                if Instant::now() >= deadline {
                    tracing::debug!(
                        "{}: another connection held the checkpoint lock; the WAL restarts after a later pass",
                        self.cfg.db_path.display()
                    );
                    break;
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            self.session.restart_read()
        })();
        let rb = self.session.rollback_write();
        self.stats
            .write_lock_us
            .fetch_add(locked.elapsed().as_micros() as u64, Ordering::Relaxed);
        res?;
        rb?;
        self.session.mark_protected();
        self.checkpoints
            .passive_done(self.cap.src.wal_frames(), Instant::now());
        self.cap.save_map(false);
        self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.stats
            .checkpoint_us
            .fetch_add(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Waits, up to [`FOREIGN_CHECKPOINT_WAIT`], while another process holds the checkpoint lock.
    fn wait_foreign_checkpoint(&mut self) {
        let Some(shm) = self.session.probe() else {
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
        tracing::info!(
            "{}: the WAL passed {} frames; TRUNCATE checkpoint",
            self.cfg.db_path.display(),
            self.cfg.truncate_pages
        );
        self.drain_wal()?;
        self.session.release_read();
        let res = self.conns().and_then(|c| {
            c.w.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .map_err(|e| self.sql_err(e))
        });
        self.checkpoints.truncate_done(Instant::now());
        self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.cap.cur.needs_resync = true;
        self.resync()?;
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(t0: Instant) -> CheckpointPolicy {
        let mut cfg = MonitorConfig::new("db".into(), "meta".into());
        cfg.checkpoint_interval = Duration::from_secs(60);
        cfg.min_checkpoint_pages = 1000;
        cfg.truncate_pages = 10_000;
        CheckpointPolicy::new(&cfg, t0)
    }

    #[test]
    fn what_is_due_follows_from_frames_and_time() {
        use Checkpoint::*;
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // (frames at the last checkpoint, frames now, time since it, due)
        let table = [
            (0, 0, s(0), None),
            (0, 999, s(59), None),
            (0, 1000, s(0), Some(Passive)),
            (0, 1, s(60), Some(Passive)),
            (500, 500, s(600), None),
            (500, 1499, s(10), None),
            (500, 1500, s(10), Some(Passive)),
            (0, 10_000, s(0), Some(Truncate)),
            (9_999, 10_000, s(0), Some(Truncate)),
            // A WAL shorter than at the last checkpoint (restarted meanwhile) has not grown.
            (2000, 100, s(600), None),
        ];
        for (at_last, frames, since, want) in table {
            let mut p = policy(t0);
            p.passive_done(at_last, t0);
            assert_eq!(
                p.due(frames, t0 + since),
                want,
                "{at_last} frames at the last checkpoint, {frames} now, {since:?} since"
            );
        }
    }

    /// `truncate-page-n: 0` is no threshold of 0 frames (a TRUNCATE at every look, each
    /// followed by a resync): it switches the emergency checkpoint off.
    #[test]
    fn a_truncate_threshold_of_zero_is_off() {
        let t0 = Instant::now();
        let mut cfg = MonitorConfig::new("db".into(), "meta".into());
        cfg.checkpoint_interval = Duration::from_secs(60);
        cfg.min_checkpoint_pages = 1000;
        cfg.truncate_pages = 0;
        let p = CheckpointPolicy::new(&cfg, t0);
        assert_eq!(p.due(0, t0), None);
        assert_eq!(p.due(500_000, t0), Some(Checkpoint::Passive));
        assert_eq!(p.due(999, t0), None);
    }

    #[test]
    fn checkpoints_and_restarts_move_the_baseline() {
        let t0 = Instant::now();
        let mut p = policy(t0);
        assert_eq!(p.due(1500, t0), Some(Checkpoint::Passive));
        p.passive_done(1500, t0);
        assert_eq!(p.due(1500, t0 + Duration::from_secs(600)), None);
        // A restart counts the new generation from its first frame.
        p.wal_restarted();
        assert_eq!(p.due(1000, t0), Some(Checkpoint::Passive));
        // Continuing into a shorter generation lowers the baseline, never raises it.
        p.passive_done(1500, t0);
        p.continued_at(200);
        assert_eq!(p.due(1200, t0), Some(Checkpoint::Passive));
        p.continued_at(5000);
        assert_eq!(p.due(1199, t0), None);
        // After a TRUNCATE the interval counts from it.
        p.truncate_done(t0 + Duration::from_secs(100));
        assert_eq!(p.due(201, t0 + Duration::from_secs(159)), None);
        assert_eq!(
            p.due(201, t0 + Duration::from_secs(160)),
            Some(Checkpoint::Passive)
        );
    }
}
