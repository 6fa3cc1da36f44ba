//! The reactor: fires due timers and turns WAL writes into queued turns.

use std::time::{Duration, Instant};

use super::Shared;
use super::wake::WakeRx;
use crate::sqlite::run::on_grid;

/// Longest sleep without a timer: the reactor also notices `exiting` this often.
const MAX_SLEEP: Duration = Duration::from_secs(5);

/// How long after a WAL write its monitor looks (see the file events below).
const EVENT_SETTLE: Duration = Duration::from_millis(2);

/// After waking for file events, the reactor reads the next ones no sooner than this: under
/// hundreds of databases' writes it wakes a hundred times a second with batches instead of once
/// per write (each wake-up and worker hand-off was a context switch per commit). A write after
/// a quiet moment is still seen at once; under load it waits at most this long.
const EVENT_GAP: Duration = Duration::from_millis(8);

#[cfg_attr(not(target_os = "linux"), allow(unused_mut))]
pub(super) fn run(shared: &Shared, mut wake: WakeRx) {
    // The inotify descriptor never changes: one copy to sleep on without the watch's lock
    // (monitors are added while the reactor sleeps).
    #[cfg(target_os = "linux")]
    wake.events(
        shared
            .watch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .fd()
            .and_then(|fd| fd.try_clone_to_owned().ok()),
    );
    // File events are read no sooner than this (see `EVENT_GAP`).
    let mut events_from = Instant::now();
    loop {
        let timeout = {
            let mut st = shared.lock();
            if st.exiting {
                return;
            }
            let now = Instant::now();
            while let Some(&std::cmp::Reverse((at, id, schedule_no))) = st.timers.peek() {
                if at > now {
                    break;
                }
                st.timers.pop();
                let current =
                    matches!(st.slots.get(id), Some(Some(s)) if s.schedule_no == schedule_no);
                if current {
                    st.queue(id, shared);
                }
            }
            let next = st.timers.peek().map(|t| t.0.0).unwrap_or(now + MAX_SLEEP);
            let mut next = next.min(now + MAX_SLEEP);
            if let Some(probe) = st.run_probes(now, shared) {
                next = next.min(probe);
            }
            // Turns waiting behind held-up workers get one more (see `crew.rs`).
            if let Some(&(_, head)) = st.queue.front() {
                let (wake, again) = st.crew.check(head, now);
                if wake {
                    shared.ready.notify_one();
                }
                if let Some(again) = again {
                    next = next.min(again);
                }
            }
            // Still "listening" for the workers while events wait for `events_from`: the
            // reactor reads them then without being woken.
            st.listening = st.wants_events();
            let read_events = st.listening && now >= events_from;
            if st.listening && !read_events {
                next = next.min(events_from);
            }
            st.reactor_wake = Some(next);
            (next.saturating_duration_since(now), read_events)
        };
        let (timeout, listening) = timeout;
        wake.wait(timeout, listening);
        shared
            .wakeups
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !listening {
            continue;
        }
        let mut hits = Vec::new();
        shared
            .watch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(&mut |t| hits.push(t));
        if !hits.is_empty() {
            events_from = Instant::now() + EVENT_GAP;
            let mut st = shared.lock();
            // The first write of a commit wakes us before the commit is published (and more
            // writes follow): looking a moment later finds it at the first look, and the
            // monitors written to meanwhile go in the same batch.
            let at = on_grid(Instant::now() + EVENT_SETTLE, EVENT_SETTLE);
            for id in hits {
                let Some(Some(s)) = st.slots.get_mut(id) else {
                    continue;
                };
                s.written = true;
                if s.on_write && !s.queued && s.due.is_none_or(|d| at < d) {
                    st.schedule(id, at);
                }
            }
        }
    }
}
