//! How many workers are awake. One worker takes a batch of queued turns back to back; another
//! is woken only when the queue's oldest turn has waited [`STALL`], because the running ones
//! are held up (a first snapshot, an application's checkpoint waited out). Waking a sleeping
//! worker for every queued turn of a batch cost a futex wake and two context switches each: a
//! quarter of the pool's CPU at 500 databases (`docs/measurements.md`).

use std::time::{Duration, Instant};

/// How long the oldest queued turn waits before one more worker is woken for it.
pub(super) const STALL: Duration = Duration::from_millis(5);

/// The workers by what they are doing; the pool's lock guards it.
#[derive(Debug, Default)]
pub(super) struct Crew {
    /// Running a turn (or between two, about to take the next).
    running: usize,
    /// Notified and not awake yet.
    woken: usize,
    /// Waiting for the queue, the notified ones included until they wake.
    sleeping: usize,
}

impl Crew {
    /// A turn was queued: whether to wake a worker for it (none is running, none is on its
    /// way). Otherwise a running worker takes it next, or [`Crew::check`] finds it waiting.
    pub(super) fn wake_for_new(&mut self) -> bool {
        let wake = self.running + self.woken == 0 && self.can_wake();
        if wake {
            self.woken += 1;
        }
        wake
    }

    /// The oldest queued turn was queued at `head`: whether to wake one more worker now, and
    /// when to look again (`None`: every worker is awake already).
    pub(super) fn check(&mut self, head: Instant, now: Instant) -> (bool, Option<Instant>) {
        if !self.can_wake() {
            return (false, None);
        }
        let due = head + STALL;
        if now < due {
            return (false, Some(due));
        }
        self.woken += 1;
        (true, Some(now + STALL))
    }

    /// Some worker sleeps that was not notified yet.
    pub(super) fn can_wake(&self) -> bool {
        self.sleeping > self.woken
    }

    pub(super) fn asleep(&mut self) {
        self.sleeping += 1;
    }

    /// A sleeping worker woke (notified or not).
    pub(super) fn awake(&mut self) {
        self.sleeping -= 1;
        self.woken = self.woken.saturating_sub(1);
    }

    pub(super) fn took(&mut self) {
        self.running += 1;
    }

    pub(super) fn returned(&mut self) {
        self.running -= 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::sqlite::monitor::MonitorConfig;
    use crate::sqlite::pool::{Pool, StartArgs};
    use crate::sqlite::testsink::{MemSink, wal_db};

    /// A monitor held up on its worker (here a write that waits) does not hold up the others:
    /// a second worker is woken for the turn queued behind it.
    #[test]
    fn a_held_up_worker_does_not_hold_up_the_queue() {
        let d = tempfile::tempdir().unwrap();
        let pool = Pool::new(2, false).unwrap();
        let open = |name: &str| {
            let (db, c) = wal_db(d.path(), name);
            let sink = MemSink::default();
            let h = pool.add(StartArgs {
                cfg: MonitorConfig::new(db, d.path().join(format!("{name}.meta"))),
                floor: None,
                sink: Box::new(sink.clone()),
                stats: Arc::default(),
            });
            h.started().unwrap();
            (c, sink, h)
        };
        let (a, a_sink, a_h) = open("a.db");
        let (b, b_sink, b_h) = open("b.db");
        a_sink.gate.close();
        a.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let wait_for = |what: &str, f: &dyn Fn() -> bool| {
            let t0 = std::time::Instant::now();
            while !f() {
                if t0.elapsed() > Duration::from_secs(30) {
                    // Not left hanging: the pool's drop waits for a's monitor.
                    a_sink.gate.open();
                    panic!("timed out waiting for {what}");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        wait_for("a's write to reach its sink", &|| {
            a_sink.gate.waiting() == 1
        });
        let before = b_sink.captured.lock().unwrap().len();
        b.execute("INSERT INTO t VALUES (1)", []).unwrap();
        wait_for(
            "b's commit to be captured while a's worker is held up",
            &|| b_sink.captured.lock().unwrap().len() > before,
        );
        assert_eq!(a_sink.gate.waiting(), 1, "a's worker was still held up");
        a_sink.gate.open();
        for h in [a_h, b_h] {
            h.stop();
            assert!(h.join().is_some_and(|r| r.is_ok()));
        }
    }

    #[test]
    fn one_worker_wakes_for_a_batch_and_more_only_when_it_stalls() {
        let t0 = Instant::now();
        let mut c = Crew::default();
        (0..4).for_each(|_| c.asleep());
        // A batch of three: one worker is woken, for the first only.
        assert_eq!(
            [c.wake_for_new(), c.wake_for_new(), c.wake_for_new()],
            [true, false, false]
        );
        c.awake();
        c.took();
        assert!(!c.wake_for_new(), "a running worker takes it next");
        // The head waits less than STALL: look again when it would have.
        assert_eq!(c.check(t0, t0 + STALL / 2), (false, Some(t0 + STALL)));
        // Stalled: one more, then another per STALL while it stays stalled.
        let late = t0 + STALL;
        assert_eq!(c.check(t0, late), (true, Some(late + STALL)));
        assert_eq!(c.check(t0, late + STALL), (true, Some(late + 2 * STALL)));
        c.awake();
        c.awake();
        c.took();
        c.took();
        assert_eq!(
            c.check(t0, late + 2 * STALL),
            (true, Some(late + 3 * STALL))
        );
        c.awake();
        c.took();
        // Everyone is awake: nothing to wake, nothing to look at.
        assert_eq!(c.check(t0, late + 3 * STALL), (false, None));
        (0..4).for_each(|_| c.returned());
        c.asleep();
        assert!(
            c.wake_for_new(),
            "all asleep again: the next turn wakes one"
        );
    }
}
