//! Probes for an application's blocking checkpoint, run by the reactor between a monitor's
//! turns: each is one `F_GETLK` on the database's `-shm` file, and only one that finds such a
//! checkpoint queues the monitor (whose turn then steps aside for it, `yielding.rs`). As
//! turns, the probes were most of the pool's turns at 500 databases (five a second each).
//!
//! A probe plan comes back with every turn and replaces the last; the pool drops it when a
//! worker takes the monitor (see `Session::shm` for why the descriptor must not outlive the
//! session's own copy). Probes run under the pool's lock, so no copy of it escapes.

use std::cmp::Reverse;
use std::time::Instant;

use super::{Shared, State, Token};
use crate::sqlite::run::ProbePlan;

impl State {
    /// Replaces `id`'s probe plan; true when the reactor must be woken to see its first probe.
    pub(super) fn plan_probe(&mut self, id: Token, plan: Option<ProbePlan>) -> bool {
        self.next_schedule += 1;
        let no = self.next_schedule;
        let Some(Some(s)) = self.slots.get_mut(id) else {
            return false;
        };
        s.probe_no = no;
        let at = plan.as_ref().map(|p| p.at);
        s.probe = plan;
        let Some(at) = at else {
            return false;
        };
        self.probes.push(Reverse((at, id, no)));
        self.reactor_wake.is_none_or(|w| at < w)
    }

    /// Drops `id`'s probe plan (a worker took the monitor).
    pub(super) fn drop_probe(&mut self, id: Token) {
        if let Some(Some(s)) = self.slots.get_mut(id) {
            s.probe = None;
        }
    }

    /// Runs the probes due at `now`: a monitor whose probe finds an application's blocking
    /// checkpoint is queued, the others probe again later. The time of the next probe, if any.
    pub(super) fn run_probes(&mut self, now: Instant, sh: &Shared) -> Option<Instant> {
        while let Some(&Reverse((at, id, no))) = self.probes.peek() {
            if at > now {
                return Some(at);
            }
            self.probes.pop();
            let Some(Some(s)) = self.slots.get_mut(id) else {
                continue;
            };
            // A stale plan, or the monitor is queued or on a worker: its turn probes itself.
            if s.probe_no != no || s.queued || s.task.is_none() {
                continue;
            }
            let Some(plan) = &s.probe else {
                continue;
            };
            let found = plan.shm.foreign_blocking_checkpoint();
            let next = plan.next_after(now);
            if found {
                self.queue(id, sh);
            } else {
                self.probes.push(Reverse((next, id, no)));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use crate::sqlite::monitor::MonitorConfig;
    use crate::sqlite::pool::{Pool, StartArgs};
    use crate::sqlite::testsink::{MemSink, wal_db};
    use crate::stats::DbStats;

    /// An application's RESTART checkpoint between two of memsync's turns (a minute apart
    /// here) completes: the reactor's probe finds it and the monitor steps aside for it.
    #[test]
    fn a_blocking_checkpoint_between_turns_is_found_by_a_probe() {
        let d = tempfile::tempdir().unwrap();
        let (db, c) = wal_db(d.path(), "x.db");
        let pool = Pool::new(2, false).unwrap();
        let mut cfg = MonitorConfig::new(db.clone(), d.path().join("meta"));
        cfg.monitor_interval = Duration::from_secs(60);
        cfg.idle_release = Duration::from_secs(60);
        let stats = Arc::new(DbStats::default());
        let sink = MemSink::default();
        let h = pool.add(StartArgs {
            cfg,
            floor: None,
            sink: Box::new(sink.clone()),
            stats: stats.clone(),
        });
        h.started().unwrap();
        // Commits until one is captured (the WAL is watched a moment after the start).
        let t0 = std::time::Instant::now();
        while sink.captured.lock().unwrap().len() < 2 {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "no commit was captured"
            );
            c.execute("INSERT INTO t VALUES (1)", []).unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
        // Past the rechecks: the monitor waits for its next turn, a minute away.
        std::thread::sleep(Duration::from_millis(300));
        // The application is another process: the probes see other processes' locks only.
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(
                // Opening the database can touch the WAL (owners are copied when run as root),
                // which would bring a turn forward: the checkpoint comes well after.
                "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], timeout=10); \
                 c.execute('SELECT count(*) FROM t').fetchone(); time.sleep(0.5); \
                 print(c.execute('PRAGMA wal_checkpoint(RESTART)').fetchone()[0])",
            )
            .arg(&db)
            .output()
            .expect("python3 runs the application's checkpoint");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let busy = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert_eq!(busy, "0", "the checkpoint waited out its busy timeout");
        assert_eq!(stats.yields.load(Ordering::Relaxed), 1);
        h.stop();
        assert!(h.join().is_some_and(|r| r.is_ok()));
    }
}
