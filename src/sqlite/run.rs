//! The monitor's loop, one turn at a time: when to look at the WAL (file events, pacing,
//! rechecks), when to step aside while idle, and how a failed pass is retried. A turn never
//! sleeps: it says when the next one is due, and whether a WAL write should bring it forward,
//! so that a few pool threads (`pool/`) can run many monitors. Each step it takes lives with its
//! own concern (capture, checkpoints, idle); this file only decides when.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::monitor::{Monitor, MonitorError};
use super::shm::ShmProbe;

/// Second looks after a file event that found nothing committed yet (see `turn`).
const RECHECKS: u32 = 3;

/// The writer's last WAL write can wake the monitor before it publishes the commit in the WAL
/// index (shared memory: no file event follows): look again in 2, 8 and 32 ms instead of
/// leaving the commit to the next poll, up to a whole monitor-interval later. `left` counts
/// the looks still to take after this one.
fn recheck_delay(left: u32) -> Duration {
    Duration::from_millis(2 << (2 * (RECHECKS - 1 - left)))
}

/// The gap between two looks for an application's checkpoint while attached and clean: the
/// probe interval right after a commit (an application's checkpoint follows its commits), then
/// as long as the quiet time so far, up to 8 probe intervals. A quiet second costs 7 looks
/// instead of 20, which is what an attached database costs when hundreds are replicated; an
/// application's RESTART or TRUNCATE checkpoint waits at most that gap for memsync to step
/// aside (its busy handler retries meanwhile).
pub(crate) fn probe_gap(probe: Duration, quiet: Duration) -> Duration {
    quiet.clamp(probe, probe * 8)
}

/// `at` rounded up to the next multiple of `slot` since the process's first call: turns that
/// need not run at an exact instant fall on shared instants, so that hundreds of monitors cost
/// one wake-up of the pool per instant and the workers take them back to back, not one
/// wake-up (and a thread hand-off) each.
pub(crate) fn on_grid(at: Instant, slot: Duration) -> Instant {
    use std::sync::OnceLock;
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let since = at.saturating_duration_since(epoch);
    let slots = since.as_nanos().div_ceil(slot.as_nanos());
    epoch + slot * u32::try_from(slots).unwrap_or(u32::MAX)
}

/// Idle polls (which a write brings forward anyway) fall on four instants a second.
const POLL_SLOT: Duration = Duration::from_millis(250);
/// Probes for an application's checkpoint, at least 50 ms apart anyway.
pub(crate) const PROBE_SLOT: Duration = Duration::from_millis(25);
/// Paced syncs and rechecks: late by at most this, which the lag hardly notices.
const PACE_SLOT: Duration = Duration::from_millis(2);

/// The wait before retrying after a failed pass: doubling, from 100 ms up to 30 s.
fn next_backoff(prev: Duration) -> Duration {
    (prev * 2).clamp(Duration::from_millis(100), Duration::from_secs(30))
}

/// What the loop remembers between turns.
pub struct LoopState {
    /// Something may have been committed since the last pass.
    dirty: bool,
    /// A WAL write was seen while dirty; it makes the monitor dirty again once clean (a burst
    /// of writes costs one pass, not one per write).
    written: bool,
    last_poll: Instant,
    backoff: Duration,
    /// No pass before this.
    retry_at: Instant,
    /// Quick second looks left after a file event that found no new commit.
    rechecks: u32,
    /// A full disk was reported (once per episode).
    disk_full: bool,
    /// Since when nothing was committed (see `idle.rs`).
    quiet_since: Instant,
    /// While away, compaction and the snapshot policy still run at each poll.
    maintain_away: bool,
    /// One line per quiet period when memsync cannot step aside.
    refusal_logged: bool,
}

impl LoopState {
    /// The state of a monitor that just started: it looks at the WAL at once.
    pub fn new(now: Instant) -> Self {
        LoopState {
            dirty: true,
            written: false,
            last_poll: now,
            backoff: Duration::ZERO,
            retry_at: now,
            rechecks: 0,
            disk_full: false,
            quiet_since: now,
            maintain_away: false,
            refusal_logged: false,
        }
    }
}

/// When the next turn is due.
#[derive(Debug, Clone)]
pub struct NextTurn {
    /// The latest time for the next turn.
    pub at: Instant,
    /// A WAL write should bring it forward (false while pacing: the write is picked up at
    /// `at` anyway).
    pub on_write: bool,
    /// Probes for an application's blocking checkpoint until then, while memsync holds its
    /// read transaction: the pool runs them between turns and queues the monitor when one
    /// finds such a checkpoint (a turn for every probe cost most of the turns at 500
    /// databases; `docs/measurements.md`).
    pub probe: Option<ProbePlan>,
}

/// When to probe for an application's blocking checkpoint, and with what.
#[derive(Clone)]
pub struct ProbePlan {
    /// The first probe.
    pub at: Instant,
    /// Since when nothing was committed: probes grow apart with it (see [`probe_gap`]).
    pub quiet_since: Instant,
    /// The probe interval they grow from.
    pub every: Duration,
    pub shm: Arc<ShmProbe>,
}

impl std::fmt::Debug for ProbePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbePlan")
            .field("at", &self.at)
            .field("quiet_since", &self.quiet_since)
            .finish_non_exhaustive()
    }
}

impl ProbePlan {
    /// The probe after one at `now` that found nothing.
    pub fn next_after(&self, now: Instant) -> Instant {
        on_grid(
            now + probe_gap(self.every, now.saturating_duration_since(self.quiet_since)),
            PROBE_SLOT,
        )
    }
}

impl Monitor {
    /// One turn of the loop. `written`: a write to the WAL was seen since the last turn. Errors
    /// of one pass (a full disk, a busy database) are logged and retried with backoff: the read
    /// transaction keeps every unshipped frame in the WAL meanwhile. Only a replaced database
    /// ends the loop with an error.
    pub fn turn(&mut self, st: &mut LoopState, written: bool) -> Result<NextTurn, MonitorError> {
        st.written |= written;
        if !st.dirty && std::mem::take(&mut st.written) {
            st.dirty = true;
            st.rechecks = RECHECKS;
            st.quiet_since = Instant::now();
        }
        if st.last_poll.elapsed() >= self.cfg.monitor_interval {
            st.last_poll = Instant::now();
            // While away, only a change is worth reopening the connections for; compaction
            // and the snapshot policy go on all the same. Files that look unchanged include
            // the database's device and inode: it was not replaced either.
            if !self.is_away() || self.changed_while_away() {
                self.still_there()?;
                st.dirty = true;
            } else {
                st.maintain_away = true;
            }
        }
        if Instant::now() >= st.retry_at {
            let pass = self.pass(st);
            self.after_pass(st, pass)?;
        }
        Ok(self.next_turn(st))
    }

    /// When the loop looks next: while dirty, when pacing allows; while attached and clean,
    /// at the next poll or write; while away, at the next poll or write (an idle database
    /// costs one look per monitor-interval). While the read transaction is held, the pool
    /// probes for an application's checkpoint meanwhile (see [`NextTurn::probe`]).
    fn next_turn(&mut self, st: &LoopState) -> NextTurn {
        let now = Instant::now();
        let poll = st.last_poll + self.cfg.monitor_interval;
        let (at, on_write) = if st.dirty {
            let paced = on_grid((now + self.pacer.wait(now)).max(st.retry_at), PACE_SLOT);
            (paced.min(poll), false)
        } else if self.is_away() {
            (on_grid(poll, POLL_SLOT), true)
        } else {
            // Stepping aside once nothing was committed for `idle_release` (see `pass`).
            let release = on_grid(st.quiet_since + self.release.get(), PROBE_SLOT);
            (
                if release > now {
                    poll.min(release)
                } else {
                    poll
                },
                true,
            )
        };
        let probe = if self.session.reading() {
            self.session.shared_probe().map(|shm| {
                let plan = ProbePlan {
                    at: now,
                    quiet_since: st.quiet_since,
                    every: self.cfg.probe_interval,
                    shm,
                };
                ProbePlan {
                    at: plan.next_after(now),
                    ..plan
                }
            })
        } else {
            None
        };
        NextTurn {
            at,
            on_write,
            probe,
        }
    }

    /// After the loop: everything committed is shipped, in rollback mode too (see `idle.rs`),
    /// and the page map saved (a replaced database is an error, as in the loop). A database
    /// left alone while away (nothing changed since memsync stepped aside) has nothing to ship:
    /// it is not reopened.
    pub fn finish(&mut self) -> Result<(), MonitorError> {
        // A database deleted or replaced under memsync is not reopened: a connection opened
        // on its path would create an empty file there, or read another database.
        self.still_there()?;
        if !self.untouched_while_away() {
            self.attach(true)?;
            self.sync()?;
        }
        self.maintain(true)?;
        self.shutdown();
        Ok(())
    }

    /// One pass: steps aside for an application's checkpoint, takes a snapshot a replica asked
    /// for, syncs when due (or only maintains while away), and steps aside when idle long
    /// enough. True when a sync found nothing new.
    fn pass(&mut self, st: &mut LoopState) -> Result<bool, MonitorError> {
        self.maybe_yield()?;
        if !self.is_paused() && self.cfg.snapshot_wanted.swap(false, Ordering::Relaxed) {
            // Asked again on failure: the replica waiting for it has nothing else.
            self.snapshot_current().inspect_err(|_| {
                self.cfg.snapshot_wanted.store(true, Ordering::Relaxed);
            })?;
        }
        let (mut idle, mut spooled) = (false, false);
        if st.dirty && self.pacer.wait(Instant::now()).is_zero() {
            st.dirty = false;
            spooled = self.sync_pass()?;
            idle = !spooled;
            self.maintain(false)?;
        } else if std::mem::take(&mut st.maintain_away) {
            self.maintain(false)?;
        }
        if spooled {
            // The commit the rechecks waited for is found: none left for a later empty pass
            // (the next poll's would cost three more looks at the WAL for nothing).
            st.rechecks = 0;
            st.quiet_since = Instant::now();
            st.refusal_logged = false;
        } else if !st.dirty
            && st.rechecks == 0
            && !self.is_away()
            && st.quiet_since.elapsed() >= self.release.get()
        {
            // Let the application have the database to itself (see `idle.rs`).
            if let Err(why) = self.step_aside()
                && !std::mem::replace(&mut st.refusal_logged, true)
            {
                tracing::debug!(
                    "{}: idle, but connections kept open: {why}",
                    self.cfg.db_path.display()
                );
            }
        }
        Ok(idle)
    }

    /// Schedules what follows a pass: rechecks after one that found nothing, a retry after a
    /// failure (soon for contention, with backoff otherwise). Only a replaced database ends the
    /// loop.
    fn after_pass(
        &mut self,
        st: &mut LoopState,
        pass: Result<bool, MonitorError>,
    ) -> Result<(), MonitorError> {
        match pass {
            Ok(idle) => {
                // A carried tail goes out at the next paced sync even if nothing new
                // is committed.
                st.dirty |= self.cap.cur.carry.is_some();
                if std::mem::take(&mut st.disk_full) {
                    tracing::info!("{}", self.space_again_line());
                }
                st.backoff = Duration::ZERO;
                if idle && st.rechecks > 0 {
                    st.rechecks -= 1;
                    st.dirty = true;
                    st.retry_at = Instant::now() + recheck_delay(st.rechecks);
                }
            }
            Err(e @ MonitorError::Replaced(_)) => return Err(e),
            // A pass that failed because the database went (deleted, its directory removed)
            // ends the monitor as a deletion does, rather than an error retried in a loop.
            Err(_) if self.check_replaced().is_err() => return self.still_there(),
            Err(e) if e.is_busy() => {
                // Contention, not a failure: the application holds the write lock (a long
                // transaction). Retry soon; the read transaction keeps every frame.
                st.backoff = Duration::from_millis(100);
                st.retry_at = Instant::now() + st.backoff;
                st.dirty = true;
                tracing::info!("{e}: the application holds the write lock; retrying");
            }
            Err(e) => {
                st.backoff = next_backoff(st.backoff);
                st.retry_at = Instant::now() + st.backoff;
                st.dirty = true;
                if !e.is_disk_full() {
                    tracing::error!("{e} (retrying in {:?})", st.backoff);
                } else if !std::mem::replace(&mut st.disk_full, true) {
                    // One line per episode, not one per retry.
                    tracing::error!("{}", self.disk_full_line(st.backoff));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rechecks_look_again_soon_then_less_soon() {
        let ms = |left| recheck_delay(left).as_millis();
        assert_eq!([ms(2), ms(1), ms(0)], [2, 8, 32]);
    }

    #[test]
    fn probes_grow_apart_with_the_quiet_time() {
        let ms = Duration::from_millis;
        let gaps: Vec<u128> = [0, 30, 100, 250, 399, 5000]
            .map(|q| probe_gap(ms(50), ms(q)).as_millis())
            .to_vec();
        assert_eq!(gaps, [50, 50, 100, 250, 399, 400]);
    }

    #[test]
    fn idle_polls_fall_on_quarter_seconds() {
        let coarse = |at| on_grid(at, POLL_SLOT);
        let a = coarse(Instant::now() + Duration::from_millis(10));
        let b = coarse(a + Duration::from_millis(1));
        assert_eq!(b - a, Duration::from_millis(250));
        assert_eq!(coarse(a), a, "a slot boundary stays");
        assert_eq!(coarse(b - Duration::from_millis(100)), b);
    }

    #[test]
    fn failures_back_off_doubling_within_bounds() {
        let ms = Duration::from_millis;
        let table = [
            (Duration::ZERO, ms(100)),
            (ms(100), ms(200)),
            (ms(12_800), ms(25_600)),
            (ms(25_600), ms(30_000)),
            (ms(30_000), ms(30_000)),
        ];
        for (prev, want) in table {
            assert_eq!(next_backoff(prev), want, "after {prev:?}");
        }
    }
}
