//! The precise lag probe for memsync's own replica: a [`Follower`] applies each new segment as
//! it appears (polled every 2 ms), so the time a commit's row first shows in the copy is when it
//! became restorable, give or take the poll, without a whole restore's duration on top.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use crate::restore::follow::Follower;

const POLL: Duration = Duration::from_millis(2);

/// Follows the file replica at `replica` into `out` until `done`; returns (time, rows seen) for
/// every advance of the copy.
pub fn probe(replica: &Path, out: &Path, done: &AtomicBool) -> Vec<(SystemTime, i64)> {
    let mut seen = Vec::new();
    let Ok(rt) = crate::runtime() else {
        return seen;
    };
    let Ok(rc) = crate::config::replica_from_url(&format!("file://{}", replica.display())) else {
        return seen;
    };
    // The replica (its folder included) appears with the replicator's first snapshot. A
    // follower that can no longer continue (its next file compacted away, a new chain) starts
    // over from a fresh restore: commits it sees then are still measured, none is dropped.
    while !done.load(Ordering::Relaxed) {
        let _ = std::fs::remove_file(out);
        let started = crate::replica::client_for(&rc, false)
            .ok()
            .and_then(|c| Follower::start(c, rt.handle(), out).ok());
        let Some(mut follower) = started else {
            std::thread::sleep(POLL * 5);
            continue;
        };
        seen.push((SystemTime::now(), super::count_rows(follower.path())));
        while !done.load(Ordering::Relaxed) {
            match follower.catch_up(rt.handle()) {
                Ok(0) => std::thread::sleep(POLL),
                Ok(_) => {
                    // The time the copy advanced, before counting its rows.
                    let at = SystemTime::now();
                    seen.push((at, super::count_rows(follower.path())));
                }
                Err(e) => {
                    tracing::debug!("bench: follower starts over: {e}");
                    break;
                }
            }
        }
    }
    seen
}
