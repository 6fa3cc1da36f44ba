//! A worker: takes a queued monitor, runs one turn (or its start, or its finish), and puts it
//! back with its next due time.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use super::{Phase, Shared, Task};
use crate::sqlite::monitor::{Monitor, MonitorError};
use crate::sqlite::run::{LoopState, NextTurn};

enum Step {
    Again(Task, NextTurn),
    Done(Result<(), MonitorError>),
}

pub(super) fn run(shared: &Shared) {
    loop {
        let (id, task, written, stop) = {
            let mut st = shared.lock();
            loop {
                if st.exiting {
                    return;
                }
                if let Some((id, _)) = st.queue.pop_front() {
                    let stopping = st.stopping;
                    let Some(Some(s)) = st.slots.get_mut(id) else {
                        continue;
                    };
                    s.queued = false;
                    let Some(task) = s.task.take() else {
                        continue;
                    };
                    let taken = (id, task, std::mem::take(&mut s.written), stopping || s.stop);
                    st.drop_probe(id);
                    st.crew.took();
                    break taken;
                }
                st.crew.asleep();
                st = shared.ready.wait(st).unwrap_or_else(|p| p.into_inner());
                st.crew.awake();
            }
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| step(task, written, stop, shared.once)));
        let mut st = shared.lock();
        let stopping = st.stopping;
        let reactor_listening = st.listening;
        let Some(Some(s)) = st.slots.get_mut(id) else {
            st.crew.returned();
            continue;
        };
        let db = s.db.clone();
        match outcome {
            Ok(Step::Again(task, next)) => {
                s.task = Some(task);
                s.on_write = next.on_write;
                // The reactor must start reading file events again (see `State::listening`).
                let listen = next.on_write && !reactor_listening;
                let started = matches!(s.phase, Phase::Starting);
                s.phase = Phase::Running;
                let now = stopping || s.stop || (next.on_write && s.written);
                let probe_soon = st.plan_probe(id, next.probe);
                if now || next.at <= Instant::now() {
                    // Still counted running: this worker takes it (or what is before it) next.
                    st.queue(id, shared);
                    if listen || probe_soon {
                        shared.wake_reactor();
                    }
                } else if st.schedule(id, next.at) || listen || probe_soon {
                    shared.wake_reactor();
                }
                st.crew.returned();
                drop(st);
                if started {
                    shared.changed.notify_all();
                    shared
                        .watch
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .add(&db, id);
                }
            }
            Ok(Step::Done(r)) => {
                s.phase = Phase::Done(Some(r));
                st.crew.returned();
                drop(st);
                end(shared, &db, id);
            }
            Err(_) => {
                s.phase = Phase::Done(None);
                st.crew.returned();
                drop(st);
                tracing::error!("{}: the monitor panicked", db.display());
                end(shared, &db, id);
            }
        }
    }
}

fn end(shared: &Shared, db: &std::path::Path, id: usize) {
    shared.changed.notify_all();
    shared
        .watch
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(db, id);
}

/// One step of a monitor: its start, a turn, or (stopping) its finish.
fn step(task: Task, written: bool, stop: bool, once: bool) -> Step {
    match task {
        Task::Starting(a) => {
            let mut m = match Monitor::start(a.cfg, a.floor, a.sink, a.stats) {
                Ok(m) => m,
                Err(e) => return Step::Done(Err(e)),
            };
            if once {
                let r = m.sync().map(|_| ());
                m.shutdown();
                return Step::Done(r);
            }
            let now = Instant::now();
            let next = NextTurn {
                at: now,
                on_write: false,
                probe: None,
            };
            Step::Again(
                Task::Running(Box::new(m), Box::new(LoopState::new(now))),
                next,
            )
        }
        Task::Running(mut m, mut st) => {
            if stop {
                return Step::Done(m.finish());
            }
            match m.turn(&mut st, written) {
                Ok(next) => Step::Again(Task::Running(m, st), next),
                Err(e) => Step::Done(Err(e)),
            }
        }
    }
}
