//! The monitor's loop: when to look at the WAL (file events, pacing, rechecks), when to step
//! aside while idle, and how a failed pass is retried. Each step it takes lives with its own
//! concern (capture, checkpoints, idle); this file only decides when.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::monitor::{Monitor, MonitorError};
use super::watch::WalWatch;

/// Second looks after a file event that found nothing committed yet (see `run`).
const RECHECKS: u32 = 3;

impl Monitor {
    /// Runs until `stop` is set, then ships what is committed and saves the page map. Errors
    /// of one pass (a full disk, a busy database) are logged and retried with backoff: the read
    /// transaction keeps every unshipped frame in the WAL meanwhile.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), MonitorError> {
        let mut watch = WalWatch::new(&super::sidecar(&self.cfg.db_path, "-wal"));
        let mut dirty = true;
        let mut last_poll = Instant::now();
        let mut backoff = Duration::ZERO;
        let mut retry_at = Instant::now();
        // Quick second looks left after a file event that found no new commit.
        let mut rechecks = 0u32;
        let mut disk_full = false;
        // Since when nothing was committed (see `idle.rs`).
        let mut quiet_since = Instant::now();
        let mut maintain_away = false;
        // One line per quiet period when memsync cannot step aside.
        let mut refusal_logged = false;
        while !stop.load(Ordering::Relaxed) {
            let probe = self.cfg.probe_interval;
            if dirty {
                // Pacing: do not read the watch (it would wake us for every write); just wait
                // for the gap to pass, still probing for application checkpoints meanwhile.
                let now = Instant::now();
                let left = self
                    .pacer
                    .wait(now)
                    .max(retry_at.saturating_duration_since(now));
                if !left.is_zero() {
                    std::thread::sleep(left.min(probe));
                }
            } else if watch.wait(probe) {
                dirty = true;
                rechecks = RECHECKS;
                quiet_since = Instant::now();
            }
            if last_poll.elapsed() >= self.cfg.monitor_interval {
                last_poll = Instant::now();
                self.check_replaced()?;
                watch.refresh();
                // While away, only a change is worth reopening the connections for; compaction
                // and the snapshot policy go on all the same.
                if !self.is_away() || self.changed_while_away() {
                    dirty = true;
                } else {
                    maintain_away = true;
                }
            }
            if Instant::now() < retry_at {
                continue;
            }
            let pass = (|| {
                self.maybe_yield()?;
                if !self.is_paused() && self.cfg.snapshot_wanted.swap(false, Ordering::Relaxed) {
                    // Asked again on failure: the replica waiting for it has nothing else.
                    self.snapshot_current().inspect_err(|_| {
                        self.cfg.snapshot_wanted.store(true, Ordering::Relaxed);
                    })?;
                }
                let (mut idle, mut spooled) = (false, false);
                if dirty && self.pacer.wait(Instant::now()).is_zero() {
                    dirty = false;
                    spooled = self.sync_pass()?;
                    idle = !spooled;
                    self.maintain(false)?;
                } else if std::mem::take(&mut maintain_away) {
                    self.maintain(false)?;
                }
                if spooled {
                    quiet_since = Instant::now();
                    refusal_logged = false;
                } else if !dirty
                    && rechecks == 0
                    && !self.is_away()
                    && quiet_since.elapsed() >= self.cfg.idle_release
                {
                    // Let the application have the database to itself (see `idle.rs`).
                    if let Err(why) = self.step_aside()
                        && !std::mem::replace(&mut refusal_logged, true)
                    {
                        crate::log::debug(&format!(
                            "{}: idle, but connections kept open: {why}",
                            self.cfg.db_path.display()
                        ));
                    }
                }
                Ok::<bool, MonitorError>(idle)
            })();
            match pass {
                Ok(idle) => {
                    // A carried tail goes out at the next paced sync even if nothing new
                    // is committed.
                    dirty |= self.cap.cur.carry.is_some();
                    if std::mem::take(&mut disk_full) {
                        crate::log::info(&self.space_again_line());
                    }
                    backoff = Duration::ZERO;
                    // The writer's last WAL write can wake us before it publishes the commit in
                    // the WAL index (shared memory: no file event follows). Look again in 2, 8
                    // and 32 ms instead of leaving the commit to the next poll, up to a whole
                    // monitor-interval later.
                    if idle && rechecks > 0 {
                        rechecks -= 1;
                        dirty = true;
                        retry_at = Instant::now()
                            + Duration::from_millis(2 << (2 * (RECHECKS - 1 - rechecks)));
                    }
                }
                Err(e @ MonitorError::Replaced(_)) => return Err(e),
                Err(e) if e.is_busy() => {
                    // Contention, not a failure: the application holds the write lock (a long
                    // transaction). Retry soon; the read transaction keeps every frame.
                    backoff = Duration::from_millis(100);
                    retry_at = Instant::now() + backoff;
                    dirty = true;
                    crate::log::info(&format!(
                        "{e}: the application holds the write lock; retrying"
                    ));
                }
                Err(e) => {
                    backoff =
                        (backoff * 2).clamp(Duration::from_millis(100), Duration::from_secs(30));
                    retry_at = Instant::now() + backoff;
                    dirty = true;
                    if !e.is_disk_full() {
                        crate::log::error(&format!("{e} (retrying in {backoff:?})"));
                    } else if !std::mem::replace(&mut disk_full, true) {
                        // One line per episode, not one per retry.
                        crate::log::error(&self.disk_full_line(backoff));
                    }
                }
            }
        }
        // Everything committed is shipped, in rollback mode too (see `idle.rs`).
        self.attach(true)?;
        self.sync()?;
        self.maintain(true)?;
        self.shutdown();
        Ok(())
    }
}
