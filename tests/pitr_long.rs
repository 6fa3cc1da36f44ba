//! Point-in-time restore over a long run (issue 13's slow test): 15 minutes of writes in
//! phases with pauses, under the default tiers and the default compaction cadence, so level-0
//! files are merged, kept for `l0-retention` (10 minutes) and then pruned while the test runs.
//! Restores taken while replicating and at the end must each be a prefix of the commit order:
//! within one sync of `T` while `T` is inside the every-sync window, within one level-1 bucket
//! (30 s) once it is older; never a state after `T`.
//!
//! Ignored by a plain `cargo test` (it takes 15 minutes); `scripts/test.sh` runs it beside the
//! rest of the suite. `MEMSYNC_PITR_LONG_SECS` shortens it for a local look.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::points::*;
use common::*;

/// Every sync restorable for this long (the default `l0-retention`), minus a margin for the
/// compaction pass that prunes (every 30 s) and the restore itself.
const FINE_WINDOW: Duration = Duration::from_secs(9 * 60);
/// The default level-1 bucket.
const BUCKET: Duration = Duration::from_secs(30);
/// Scheduling noise on a machine also running the rest of the test suite.
const LOADED_NOISE: Duration = Duration::from_secs(2);

/// Phase starts and ends, and the commits, shared with the writer thread.
#[derive(Default)]
struct Log {
    commits: Vec<(SystemTime, SystemTime)>,
    marks: Vec<SystemTime>,
}

fn length() -> Duration {
    let secs = std::env::var("MEMSYNC_PITR_LONG_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(900);
    Duration::from_secs(secs)
}

/// Writes phases of 3 s (about 40 commits a second) separated by pauses of 8 to 32 s until
/// `until`.
fn writer(app: rusqlite::Connection, log: Arc<Mutex<Log>>, until: SystemTime) {
    let mut n = 0;
    let mut k = 0u64;
    while SystemTime::now() < until {
        let start = SystemTime::now();
        log.lock().unwrap().marks.push(start);
        while start.elapsed().unwrap() < Duration::from_secs(3) {
            n += 1;
            let before = SystemTime::now();
            insert_memory(&app, n);
            let after = SystemTime::now();
            log.lock().unwrap().commits.push((before, after));
            std::thread::sleep(Duration::from_millis(20));
        }
        log.lock().unwrap().marks.push(SystemTime::now());
        k += 1;
        std::thread::sleep(Duration::from_secs(8 + (k * 7) % 25));
    }
}

/// Restores at the end, the middle and the following pause of every finished phase, with the
/// slack the target's age allows; returns how many restores ran.
fn check_all(s: &Scene, log: &Arc<Mutex<Log>>, round: &str) -> usize {
    let now = SystemTime::now();
    let (commits, marks) = {
        let l = log.lock().unwrap();
        (Commits(l.commits.clone()), l.marks.clone())
    };
    let mut n = 0;
    let mut last_rows = 0;
    for (p, w) in marks.chunks_exact(2).enumerate() {
        let (start, end) = (w[0], w[1]);
        let mid = start + end.duration_since(start).unwrap() / 2;
        for (what, t) in [
            ("mid", mid),
            ("end", end + Duration::from_millis(100)),
            ("pause", end + Duration::from_secs(4)),
        ] {
            if t >= now {
                continue;
            }
            let age = now.duration_since(t).unwrap();
            let slack = if age < FINE_WINDOW {
                SYNC + LOADED_NOISE
            } else {
                BUCKET + SYNC + LOADED_NOISE
            };
            let (got, stdout) =
                restore_at(s, &format!("{round}-{p}-{what}.db"), t, &commits, slack);
            assert!(
                got >= last_rows,
                "restores at later times went back: {got} < {last_rows}"
            );
            assert!(stdout.contains("before the requested time"), "{stdout}");
            last_rows = got;
            n += 1;
        }
    }
    n
}

#[test]
#[ignore = "15 minutes: scripts/test.sh runs it beside the rest of the suite"]
fn restore_points_hold_over_fifteen_minutes() {
    let s = Scene::new("", "        sync-interval: 1s\n");
    let app = create_memdb(&s.db);
    let r = s.start();
    let t0 = SystemTime::now();
    let until = t0 + length();
    let log = Arc::new(Mutex::new(Log::default()));
    let w = {
        let log = log.clone();
        std::thread::spawn(move || writer(app, log, until))
    };
    // Live rounds while replicating: before and after the first level-0 files expire.
    let mut restores = 0;
    for (k, at) in [length() / 3, length() * 3 / 4].into_iter().enumerate() {
        std::thread::sleep(
            (t0 + at)
                .duration_since(SystemTime::now())
                .unwrap_or_default(),
        );
        restores += check_all(&s, &log, &format!("live{k}"));
    }
    w.join().unwrap();
    let total = log.lock().unwrap().commits.len() as i64;
    s.wait_for_rows(total);
    let (st, out) = r.stop();
    assert!(st.success(), "{out}");
    let phases = log.lock().unwrap().marks.len() / 2;
    let at_end = check_all(&s, &log, "end");
    assert_eq!(at_end, 3 * phases, "every phase checked at the end");
    assert!(restores > 0, "no restore while replicating");

    // The listing states both granularities once level-0 files have expired: every sync for
    // the recent window, 30 s steps before it, with nothing missing from the first commit on.
    let listing = wal_json(&s);
    let stretches = listing["replicas"][0]["restorable"]["stretches"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        stretches.last().is_some_and(|x| x["every_sync"] == true),
        "{stretches:#?}"
    );
    if length() > Duration::from_secs(11 * 60) {
        assert!(
            stretches.iter().any(|x| x["level"] == 1),
            "no level-1 stretch after the level-0 files expired: {stretches:#?}"
        );
    }
    let latest = s.restore("latest.db", &[]);
    assert_eq!(rows(&check_sound(&latest)).len() as i64, total);
}
