//! Point-in-time restore at the edges a long life brings: a restart with the clock set back
//! (an NTP step, a bad clock at boot), and a file missing right after the point a timestamp
//! picks. Neither may give a state other than the one at the time asked for.

mod common;

use std::process::Command;
use std::time::{Duration, SystemTime};

use common::points::rfc3339;
use common::*;

/// Debian's libfaketime, which `scripts/harness.sh` installs.
fn libfaketime() -> String {
    let found = std::fs::read_dir("/usr/lib")
        .unwrap()
        .filter_map(Result::ok)
        .map(|d| d.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.is_file());
    found
        .unwrap_or_else(|| {
            panic!("libfaketime missing: run scripts/harness.sh (apt-get install faketime)")
        })
        .display()
        .to_string()
}

fn count(db: &std::path::Path) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row("SELECT COUNT(*) FROM memories", [], |r| r.get(0))
        .unwrap()
}

/// A replicator restarted with its wall clock an hour behind stamps its files after the time
/// the last run got to (its stop, or its newest file), so a timestamp restore at a moment
/// before the stop gives that moment's state. (Before: the new files were stamped an hour earlier than the old ones, and every
/// timestamp before the restart restored the final state, newer than asked for.)
#[test]
fn a_restart_with_the_clock_set_back_keeps_restore_points_in_order() {
    let s = Scene::new("", "        sync-interval: 0s\n");
    let app = create_memdb(&s.db);
    insert_memories(&app, 1..=10);
    let r = s.start();
    s.wait_for_rows(10);
    // A moment after the tenth row's file, before the stop. (A moment between the stop and the
    // restart cannot be told apart: the downtime leaves no trace a wrong clock would not.)
    std::thread::sleep(Duration::from_millis(50));
    let t = rfc3339(SystemTime::now());
    std::thread::sleep(Duration::from_millis(50));
    let (status, out) = r.stop();
    assert!(status.success(), "{out}");

    let lib = libfaketime();
    let r = s.start_with(&[
        ("LD_PRELOAD", lib.as_str()),
        ("FAKETIME", "-1h"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ]);
    insert_memories(&app, 11..=20);
    s.wait_for_rows(20);
    let (status, out) = r.stop();
    assert!(status.success(), "{out}");
    assert!(out.contains("the clock reads"), "no warning:\n{out}");

    let at_t = s.restore("at-t.db", &["-timestamp", &t]);
    assert_eq!(count(&at_t), 10, "restore at {t} (before the restart)");
    assert_eq!(count(&s.restore("latest.db", &[])), 20);
}

fn once(s: &Scene) {
    let o = Command::new(BIN)
        .args(["replicate", "-once", "-config"])
        .arg(&s.config)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A missing level-0 file right after the point a timestamp picks: that file may have been
/// committed before the time asked for, so the restore is a gap error naming the way out
/// (`-txid`), and `wal` shows the gap. (Before: the older point was restored without a word.)
#[test]
fn a_file_missing_right_after_the_point_is_a_gap_not_an_older_database() {
    let s = Scene::new("", "");
    let app = create_memdb(&s.db);
    insert_memory(&app, 1);
    once(&s);
    for i in 2..=4 {
        insert_memory(&app, i);
        once(&s);
    }
    let dir = s.replica.join("segments/0");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "{files:?}");
    // Between the missing file's time and the next one's.
    let listing: serde_json::Value =
        serde_json::from_slice(&run(&["wal", "-json", &s.url()]).stdout).unwrap();
    let created = |i: usize| {
        let c = listing["replicas"][0]["files"][i]["created"]
            .as_str()
            .unwrap();
        humantime::parse_rfc3339(c).unwrap()
    };
    let t = rfc3339(created(1) + (created(2).duration_since(created(1)).unwrap() / 2));
    std::fs::remove_file(&files[1]).unwrap();

    let out = s.dir.path().join("at-t.db");
    let o = run(&[
        "restore",
        "-o",
        out.to_str().unwrap(),
        "-timestamp",
        &t,
        &s.url(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "restored at {t} across a gap");
    assert!(err.contains("gap in replica history"), "{err}");
    assert!(!out.exists(), "a failed restore leaves nothing");

    let wal = String::from_utf8_lossy(&run(&["wal", &s.url()]).stdout).into_owned();
    assert!(wal.contains("gap:") && wal.contains("-txid"), "{wal}");
    let listing: serde_json::Value =
        serde_json::from_slice(&run(&["wal", "-json", &s.url()]).stdout).unwrap();
    assert!(
        listing["replicas"][0]["restorable"]["gap_resumes_at"].is_string(),
        "{listing:#}"
    );
}

/// A replica that falls behind while the spool merges its level-0 files (here its uploads are
/// held up) gets those level-0 files when it catches up, not only the level-1 file merging
/// them: every sync of the stretch stays restorable there, as on a replica that kept up.
/// (Before: a replica back from an outage had points 30 s apart for that stretch, for good.)
#[test]
fn a_replica_that_was_behind_gets_every_sync_of_the_stretch() {
    require_fault_points();
    let s = Scene::new(
        "",
        "        sync-interval: 200ms\nlevels:\n  - interval: 2s\n    retention: 1h\n",
    );
    let app = create_memdb(&s.db);
    insert_memories(&app, 1..=5);
    let hold = s.dir.path().join("hold-uploads");
    std::fs::write(&hold, b"").unwrap();
    let mut r = s.start_with(&[
        ("MEMSYNC_FAULT", "upload:pause:2"),
        ("MEMSYNC_FAULT_HOLD", hold.to_str().unwrap()),
        ("MEMSYNC_COMPACTION_INTERVAL", "1s"),
    ]);
    // The snapshot goes up; the first segment after it is held.
    r.wait_for_log("shipping a new snapshot");
    insert_memories(&app, 6..=6);
    r.wait_for_log("fault point upload: paused");
    // Twenty syncs' worth of commits while the replica is held up; the spool merges them.
    for i in 7..=26 {
        insert_memories(&app, i..=i);
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_secs(3));
    std::fs::remove_file(&hold).unwrap();
    s.wait_for_rows(26);
    let (status, log) = r.stop();
    assert!(status.success(), "{log}");
    let listing = common::points::wal_json(&s);
    let files = listing["replicas"][0]["files"].as_array().unwrap();
    let pos =
        |f: &serde_json::Value, k: &str| u64::from_str_radix(f[k].as_str().unwrap(), 16).unwrap();
    let merged = files.iter().filter(|f| f["level"] == 1).count();
    assert!(
        merged >= 1,
        "nothing merged while held up: {files:#?}\n{log}"
    );
    // Level 0 runs unbroken from its first file to the newest position.
    let mut l0: Vec<(u64, u64)> = files
        .iter()
        .filter(|f| f["level"] == 0)
        .map(|f| (pos(f, "min_txid"), pos(f, "max_txid")))
        .collect();
    l0.sort();
    let newest = files.iter().map(|f| pos(f, "max_txid")).max().unwrap();
    assert!(
        l0.len() >= 15,
        "level-0 files on the replica: {l0:?}\n{log}"
    );
    for w in l0.windows(2) {
        assert_eq!(
            w[1].0,
            w[0].1 + 1,
            "a stretch without level-0 files: {l0:?}\n{log}"
        );
    }
    assert_eq!(l0.last().unwrap().1, newest, "{l0:?}");
}
