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
    // The replica (its folder included) appears with the replicator's first snapshot.
    let mut follower = loop {
        if done.load(Ordering::Relaxed) {
            return seen;
        }
        let _ = std::fs::remove_file(out);
        let started = crate::replica::client_for(&rc, false)
            .ok()
            .and_then(|c| Follower::start(c, rt.handle(), out).ok());
        match started {
            Some(f) => break f,
            None => std::thread::sleep(POLL * 5),
        }
    };
    seen.push((SystemTime::now(), super::count_rows(follower.path())));
    while !done.load(Ordering::Relaxed) {
        match follower.catch_up(rt.handle()) {
            Ok(0) => std::thread::sleep(POLL),
            Ok(_) => seen.push((SystemTime::now(), super::count_rows(follower.path()))),
            Err(e) => {
                crate::log::warn(&format!("bench: follower stopped: {e}"));
                break;
            }
        }
    }
    seen
}
