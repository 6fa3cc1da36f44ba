//! Many monitors on a few threads.
//!
//! A monitor's loop is a series of turns (`run.rs`), each saying when the next is due and
//! whether a WAL write should bring it forward. One reactor thread (`reactor.rs`) keeps the
//! timers and the one inotify instance of the process, and queues the monitors that are due; a
//! fixed set of workers (`worker.rs`) takes turns off that queue. So a process replicating
//! hundreds of databases runs a handful of threads, and an idle database costs one cheap look
//! per monitor-interval instead of a thread waking every probe interval.
//!
//! A monitor is only ever run by one worker at a time: it leaves the table while a worker holds
//! it, and comes back with its next due time.

mod crew;
mod probes;
mod reactor;
mod wake;
mod worker;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use replica_formats::TxId;

use super::monitor::{Monitor, MonitorConfig, MonitorError};
use super::run::LoopState;
use super::sink::Sink;
use super::watch::{DirWatch, Token};
use crate::stats::DbStats;

/// What a monitor needs to start; the start (recovery, a first snapshot) runs on the pool too,
/// so that many databases start in parallel.
pub struct StartArgs {
    pub cfg: MonitorConfig,
    /// Positions start above this (see [`Monitor::start`]).
    pub floor: Option<TxId>,
    pub sink: Box<dyn Sink>,
    pub stats: Arc<DbStats>,
}

/// A monitor's place in the pool.
enum Task {
    Starting(Box<StartArgs>),
    Running(Box<Monitor>, Box<LoopState>),
}

/// Where a monitor is in its life.
enum Phase {
    Starting,
    Running,
    /// Ended: its result (`None`: it panicked).
    Done(Option<Result<(), MonitorError>>),
}

struct Slot {
    db: PathBuf,
    /// `None` while a worker holds it, and once done.
    task: Option<Task>,
    phase: Phase,
    /// A WAL write was seen since the last turn began.
    written: bool,
    /// A write should queue it now (see [`super::run::NextTurn::on_write`]).
    on_write: bool,
    queued: bool,
    /// The schedule the newest timer belongs to: older timers are ignored (numbers are unique
    /// across slots, so a reused slot never takes a timer of its predecessor).
    schedule_no: u64,
    /// When its current timer fires (`None`: no timer, or queued).
    due: Option<Instant>,
    /// Asked to stop on its own (its database left the configuration).
    stop: bool,
    /// Probes for an application's checkpoint while it waits for its next turn
    /// (`probes.rs`), and the number of the plan its probe timers belong to.
    probe: Option<super::run::ProbePlan>,
    probe_no: u64,
}

#[derive(Default)]
struct State {
    slots: Vec<Option<Slot>>,
    /// Monitors due, with when each was queued.
    queue: VecDeque<(Token, Instant)>,
    timers: BinaryHeap<Reverse<(Instant, Token, u64)>>,
    /// Probe timers (`probes.rs`), like `timers`.
    probes: BinaryHeap<Reverse<(Instant, Token, u64)>>,
    /// Every monitor finishes (ships what is committed) at its next turn.
    stopping: bool,
    /// Threads leave.
    exiting: bool,
    /// When the reactor plans to wake next (a sooner timer must wake it).
    reactor_wake: Option<Instant>,
    next_schedule: u64,
    /// What the workers are doing (how many to wake).
    crew: crew::Crew,
    /// The reactor sleeps on file events too: some monitor waits for a write (`on_write`).
    /// While none does (all pacing towards their next sync), the events stay queued in the
    /// kernel: a database taking 200 commits a second woke the reactor hundreds of times a
    /// second for nothing.
    listening: bool,
}

impl State {
    fn queue(&mut self, id: Token, sh: &Shared) {
        if let Some(Some(s)) = self.slots.get_mut(id)
            && !s.queued
            && s.task.is_some()
        {
            s.queued = true;
            s.due = None;
            let now = Instant::now();
            self.queue.push_back((id, now));
            if self.crew.wake_for_new() {
                sh.ready.notify_one();
            } else if self.crew.can_wake()
                && self.reactor_wake.is_some_and(|w| w > now + crew::STALL)
            {
                // A running worker may be held up: the reactor looks at the queue by then.
                self.reactor_wake = Some(now + crew::STALL);
                sh.wake_reactor();
            }
        }
    }

    /// Schedules `id`'s next turn at `at`; true when the reactor must be woken to see it.
    fn schedule(&mut self, id: Token, at: Instant) -> bool {
        self.next_schedule += 1;
        let g = self.next_schedule;
        if let Some(Some(s)) = self.slots.get_mut(id) {
            s.schedule_no = g;
            s.due = Some(at);
        }
        self.timers.push(Reverse((at, id, g)));
        self.reactor_wake.is_none_or(|w| at < w)
    }

    /// Whether any monitor waits for a WAL write.
    fn wants_events(&self) -> bool {
        self.slots.iter().flatten().any(|s| s.on_write)
    }

    fn live(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|s| !matches!(s.phase, Phase::Done(_)))
            .count()
    }
}

struct Shared {
    state: Mutex<State>,
    /// Workers wait here for queued monitors.
    ready: Condvar,
    /// Handles wait here for a phase change.
    changed: Condvar,
    watch: Mutex<DirWatch>,
    /// Wakes the reactor.
    wake: wake::Wake,
    /// Run each monitor once (sync, shutdown) instead of looping.
    once: bool,
    /// Times the reactor woke (its cost is per wake-up: a figure for tests).
    wakeups: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake_reactor(&self) {
        self.wake.wake();
    }
}

/// The pool: a reactor and a few workers.
pub struct Pool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// Worker threads: enough that a monitor waiting out an application's checkpoint (up to 10 s)
/// or writing a large snapshot does not hold the others up, few enough to stay small.
/// `MEMSYNC_WORKERS` overrides.
pub fn default_workers() -> usize {
    if let Some(n) = std::env::var("MEMSYNC_WORKERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        return n.min(64);
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    cores.clamp(4, 8)
}

impl Pool {
    /// Starts `workers` workers and the reactor. With `once`, each monitor syncs once after it
    /// starts and ends.
    pub fn new(workers: usize, once: bool) -> std::io::Result<Self> {
        let (wake, wake_rx) = wake::pair()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            changed: Condvar::new(),
            watch: Mutex::new(DirWatch::new()),
            wake,
            once,
            wakeups: Default::default(),
        });
        let mut threads = Vec::new();
        let s = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("memsync-watch".into())
                .spawn(move || reactor::run(&s, wake_rx))?,
        );
        for _ in 0..workers.max(1) {
            let s = shared.clone();
            let t = std::thread::Builder::new()
                .name("monitor".into())
                .spawn(move || worker::run(&s));
            match t {
                Ok(t) => threads.push(t),
                Err(e) => {
                    let mut pool = Pool { shared, threads };
                    pool.exit();
                    return Err(e);
                }
            }
        }
        Ok(Pool { shared, threads })
    }

    /// Adds a monitor; it starts on a worker right away.
    pub fn add(&self, args: StartArgs) -> MonitorHandle {
        let db = args.cfg.db_path.clone();
        let mut st = self.shared.lock();
        let id = match st.slots.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                st.slots.push(None);
                st.slots.len() - 1
            }
        };
        st.slots[id] = Some(Slot {
            db: db.clone(),
            task: Some(Task::Starting(Box::new(args))),
            phase: Phase::Starting,
            written: false,
            on_write: false,
            queued: false,
            schedule_no: 0,
            due: None,
            stop: st.stopping,
            probe: None,
            probe_no: 0,
        });
        st.queue(id, &self.shared);
        drop(st);
        MonitorHandle {
            id,
            db,
            shared: self.shared.clone(),
        }
    }

    /// Every monitor ships what is committed and ends (see [`Monitor::finish`]); wait for each
    /// with [`MonitorHandle::join`].
    pub fn stop(&self) {
        let mut st = self.shared.lock();
        st.stopping = true;
        let ids: Vec<Token> = (0..st.slots.len()).collect();
        for id in ids {
            st.queue(id, &self.shared);
        }
    }

    /// True when `stop` was called.
    pub fn stopping(&self) -> bool {
        self.shared.lock().stopping
    }

    fn exit(&mut self) {
        self.shared.lock().exiting = true;
        self.shared.ready.notify_all();
        self.shared.wake_reactor();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Pool {
    /// Monitors still running are finished first (a pool dropped without `stop` ships what is
    /// committed all the same).
    fn drop(&mut self) {
        self.stop();
        let mut st = self.shared.lock();
        while st.live() > 0 && !self.threads.is_empty() {
            st = self
                .shared
                .changed
                .wait(st)
                .unwrap_or_else(|p| p.into_inner());
        }
        drop(st);
        self.exit();
    }
}

/// One monitor of the pool.
pub struct MonitorHandle {
    id: Token,
    db: PathBuf,
    shared: Arc<Shared>,
}

impl MonitorHandle {
    /// The monitored database.
    pub fn db(&self) -> &std::path::Path {
        &self.db
    }

    /// Waits until the monitor has started (recovered, first snapshot written). `Err` if it
    /// ended instead: its error (then nothing of it runs any more), or `None` if it panicked.
    pub fn started(&self) -> Result<(), Option<MonitorError>> {
        let mut st = self.shared.lock();
        loop {
            match st.slots[self.id].as_mut().map(|s| &mut s.phase) {
                Some(Phase::Starting) => {}
                Some(Phase::Running) | None => return Ok(()),
                Some(Phase::Done(r)) => {
                    return match r {
                        Some(Ok(())) => Ok(()),
                        Some(Err(_)) => Err(r.take().and_then(Result::err)),
                        None => Err(None),
                    };
                }
            }
            st = self
                .shared
                .changed
                .wait(st)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// True once the monitor has ended (stopped, or failed).
    pub fn is_finished(&self) -> bool {
        let st = self.shared.lock();
        matches!(
            st.slots[self.id].as_ref().map(|s| &s.phase),
            Some(Phase::Done(_)) | None
        )
    }

    /// Asks this monitor alone to ship what is committed and end.
    pub fn stop(&self) {
        let mut st = self.shared.lock();
        if let Some(s) = st.slots[self.id].as_mut() {
            s.stop = true;
        }
        st.queue(self.id, &self.shared);
    }

    /// Waits until the monitor has ended; its result, `None` if it panicked.
    pub fn join(self) -> Option<Result<(), MonitorError>> {
        let mut st = self.shared.lock();
        loop {
            if let Some(Some(s)) = st.slots.get_mut(self.id)
                && let Phase::Done(r) = &mut s.phase
            {
                let r = r.take();
                st.slots[self.id] = None;
                return r;
            }
            st = self
                .shared
                .changed
                .wait(st)
                .unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::sqlite::testsink::{MemSink, wal_db};

    /// A database taking a commit every 5 ms while its monitor paces towards the next sync
    /// does not wake the reactor per write (it used to: hundreds of wake-ups a second for
    /// one database, most of memsync's CPU at 200 commits/s); the commits are all shipped.
    #[test]
    fn writes_between_syncs_do_not_wake_the_reactor_each() {
        let d = tempfile::tempdir().unwrap();
        let (db, c) = wal_db(d.path(), "x.db");
        let pool = Pool::new(2, false).unwrap();
        let sink = MemSink::default();
        let h = pool.add(StartArgs {
            cfg: MonitorConfig::new(db.clone(), d.path().join("meta")),
            floor: None,
            sink: Box::new(sink.clone()),
            stats: Arc::default(),
        });
        h.started().unwrap();
        let before = pool.shared.wakeups.load(Ordering::Relaxed);
        let commits = 300;
        let t0 = Instant::now();
        for i in 0..commits {
            c.execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        let secs = t0.elapsed().as_secs_f64();
        let woke = pool.shared.wakeups.load(Ordering::Relaxed) - before;
        h.stop();
        assert!(h.join().is_some_and(|r| r.is_ok()));
        // Timers (probes, the paced sync) wake it tens of times a second, not once a write.
        assert!(
            (woke as f64) < commits as f64 / 3.0,
            "{woke} wake-ups for {commits} commits in {secs:.1} s"
        );
        let n: i64 = c
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, commits);
        assert!(
            sink.captured.lock().unwrap().len() >= 2,
            "snapshot and segments"
        );
    }
}
