//! Point-in-time restore at a stated granularity (issue 13): every sync stays a restore point
//! for `l0-retention` even after compaction merged it, coarser tiers further back, and a
//! timestamp restore never returns a state newer than asked for.

mod common;

use std::time::{Duration, SystemTime};

use common::*;

use common::points::*;

/// The scenario with the default tiers: over a 20 s run, restores at phase boundaries,
/// mid-phase and in the pauses are prefixes of the commit order, between the state one sync
/// before `T` and the state at `T`, although compaction (forced every second) merged level-0
/// files meanwhile; and every level-0 boundary inside a merged file still restores exactly.
/// (Before: the merged files replaced the level-0 ones within seconds, and every restore inside
/// them returned the first snapshot, with 0 rows.)
/// A file of a level above 0 covering more than one position.
fn is_merged(f: &serde_json::Value) -> bool {
    f["level"].as_u64() >= Some(1) && f["min_txid"] != f["max_txid"]
}

/// True when a `wal -json` listing holds a merged file.
fn has_merged(listing: &serde_json::Value) -> bool {
    listing["replicas"][0]["files"]
        .as_array()
        .is_some_and(|files| files.iter().any(is_merged))
}

/// `restore -o out -txid max` from the scene's replica.
fn restore_txid(s: &Scene, max: &str, out: &std::path::Path) -> std::process::Output {
    run(&[
        "restore",
        "-o",
        out.to_str().unwrap(),
        "-txid",
        max,
        &s.url(),
    ])
}

#[test]
fn every_sync_stays_restorable_after_compaction() {
    let s = Scene::new("", "        sync-interval: 1s\n");
    let app = create_memdb(&s.db);
    let r = s.start_with(&[("MEMSYNC_COMPACTION_INTERVAL", "1s")]);
    let t0 = SystemTime::now();
    let (commits, marks) = write_phases(&app);
    s.wait_for_rows(commits.0.len() as i64);
    std::thread::sleep(Duration::from_secs(20).saturating_sub(t0.elapsed().unwrap()));
    // Level 1's buckets are 30 s of wall-clock time and a bucket is merged once it is over
    // (a merge of `FAN_IN` files comes sooner, but the run makes fewer): past 20 s, wait for
    // the first bucket boundary the run crossed.
    while !has_merged(&wal_json(&s)) && t0.elapsed().unwrap() < Duration::from_secs(45) {
        std::thread::sleep(Duration::from_millis(500));
    }
    let (st, log) = r.stop();
    assert!(st.success(), "{log}");

    let half = |a: SystemTime, b: SystemTime| a + b.duration_since(a).unwrap() / 2;
    let mut targets = vec![
        ("end-1", marks[1] + Duration::from_millis(100)),
        ("mid-2", half(marks[2], marks[3])),
        ("end-2", marks[3] + Duration::from_millis(100)),
        ("pause-2", marks[3] + Duration::from_millis(1500)),
        ("mid-3", half(marks[4], marks[5])),
        ("end-3", marks[5] + Duration::from_millis(100)),
    ];
    for (i, (start, _)) in commits.0.iter().enumerate().step_by(37) {
        targets.push((["early", "in"][i % 2], *start + Duration::from_millis(300)));
    }
    let mut last = 0;
    let mut said = Vec::new();
    for (k, (name, t)) in targets.iter().enumerate() {
        let (got, stdout) = restore_at(&s, &format!("{name}-{k}.db"), *t, &commits, SYNC + NOISE);
        if k < 6 {
            assert!(got >= last, "phase targets are in time order");
            last = got;
        }
        said.push(stdout);
    }
    assert!(last > 0);
    for stdout in said {
        assert!(
            stdout.contains("restored position") && stdout.contains("before the requested time"),
            "restore does not say which point it used: {stdout}"
        );
    }

    let listing = wal_json(&s);
    let files = listing["replicas"][0]["files"].as_array().unwrap().clone();
    let merged: Vec<&serde_json::Value> = files.iter().filter(|f| is_merged(f)).collect();
    assert!(
        !merged.is_empty(),
        "compaction merged nothing in 45 s: {files:#?}"
    );

    // Every level-0 boundary strictly inside a merged file: a restore at its time is exactly it.
    let inside: Vec<&serde_json::Value> = files
        .iter()
        .filter(|f| f["level"] == 0)
        .filter(|f| {
            merged.iter().any(|m| {
                let (lo, hi) = (
                    m["min_txid"].as_str().unwrap(),
                    m["max_txid"].as_str().unwrap(),
                );
                let max = f["max_txid"].as_str().unwrap();
                lo <= max && max < hi
            })
        })
        .collect();
    assert!(!inside.is_empty(), "no level-0 file inside a merged one");
    for f in inside {
        let created = f["created"].as_str().unwrap();
        let max = f["max_txid"].as_str().unwrap();
        let out = s.dir.path().join(format!("exact-{max}.db"));
        let o = run(&[
            "restore",
            "-o",
            out.to_str().unwrap(),
            "-timestamp",
            created,
            &s.url(),
        ]);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && stdout.contains(&format!("restored position {max} ")),
            "restore at {created} did not give position {max}: {stdout}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        check_sound(&out);
    }

    // The listing states the granularity: the whole run is still "every sync".
    let restorable = &listing["replicas"][0]["restorable"];
    let stretches = restorable["stretches"].as_array().unwrap();
    assert!(
        !stretches.is_empty() && stretches.iter().all(|s| s["every_sync"] == true),
        "{restorable:#}"
    );
    let text = String::from_utf8_lossy(&run(&["wal", &s.url()]).stdout).into_owned();
    assert!(
        text.contains("restorable:") && text.contains("every sync"),
        "{text}"
    );
}

/// Narrow tiers (level 1 every 2 s, level-0 files kept 3 s): once the level-0 files are gone,
/// a timestamp restore returns the newest level-1 boundary at or before `T`, never a state
/// after it, and at most one bucket (plus one sync) behind; the listing says so.
#[test]
fn coarser_tiers_never_restore_past_the_requested_time() {
    let s = Scene::new(
        "",
        "        sync-interval: 1s\nl0-retention: 3s\nlevels:\n  - interval: 2s\n    retention: 1h\n  - interval: 8s\n",
    );
    let app = create_memdb(&s.db);
    let r = s.start_with(&[("MEMSYNC_COMPACTION_INTERVAL", "1s")]);
    let (commits, marks) = write_phases(&app);
    s.wait_for_rows(commits.0.len() as i64);
    // Let the last buckets close and the level-0 files age past their retention.
    std::thread::sleep(Duration::from_secs(5));
    let (st, log) = r.stop();
    assert!(st.success(), "{log}");

    let listing = wal_json(&s);
    let files = listing["replicas"][0]["files"].as_array().unwrap();
    let l0 = files.iter().filter(|f| f["level"] == 0).count();
    let l1 = files.iter().filter(|f| f["level"] == 1).count();
    assert!(l1 >= 3, "level 1 written: {files:#?}");
    // Each file says whether its last position is a restore point: exactly what -txid takes.
    for f in files {
        let max = f["max_txid"].as_str().unwrap();
        let out = s.dir.path().join(format!("txid-{max}.db"));
        let _ = std::fs::remove_file(&out);
        let o = restore_txid(&s, max, &out);
        assert_eq!(
            o.status.success(),
            f["restore_point"] == true,
            "{f}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert!(
        l0 <= 3,
        "level-0 files past l0-retention were kept: {files:#?}"
    );
    let half = |a: SystemTime, b: SystemTime| a + b.duration_since(a).unwrap() / 2;
    let bucket = Duration::from_secs(2);
    for (k, t) in [
        marks[1] + Duration::from_millis(100),
        half(marks[2], marks[3]),
        marks[3] + Duration::from_millis(100),
        half(marks[4], marks[5]),
    ]
    .into_iter()
    .enumerate()
    {
        let (_, stdout) = restore_at(
            &s,
            &format!("coarse-{k}.db"),
            t,
            &commits,
            bucket + SYNC + NOISE,
        );
        assert!(stdout.contains("before the requested time"), "{stdout}");
    }
    let restorable = &listing["replicas"][0]["restorable"];
    assert!(
        restorable["stretches"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["level"] == 1),
        "{restorable:#}"
    );
}

/// A checkpoint at every sync (a small `min-checkpoint-page-count` under a steady writer) does
/// not add a level-0 file of its own: the tail it copies under the write lock goes out with the
/// next sync's segment. (Before: two files a second, the second ~10 ms after the first, each an
/// upload, a compaction input and another copy of the hot pages.) Every file boundary still
/// restores, and the newest state is exact.
#[test]
fn a_checkpoint_does_not_add_a_file_per_sync() {
    let s = Scene::new(
        "    min-checkpoint-page-count: 20\n",
        "        sync-interval: 1s\n",
    );
    let app = create_memdb(&s.db);
    let r = s.start();
    std::thread::sleep(Duration::from_millis(500));
    let t0 = SystemTime::now();
    let mut n = 0;
    while t0.elapsed().unwrap() < Duration::from_secs(8) {
        n += 1;
        insert_memory(&app, n);
        std::thread::sleep(Duration::from_millis(10));
    }
    let secs = t0.elapsed().unwrap().as_secs();
    s.wait_for_rows(n as i64);
    let (st, log) = r.stop();
    assert!(st.success(), "{log}");
    let listing = wal_json(&s);
    let files = listing["replicas"][0]["files"].as_array().unwrap();
    let l0: Vec<&serde_json::Value> = files.iter().filter(|f| f["level"] == 0).collect();
    // One per sync, plus the pacer's burst of 4 after the quiet start and the final flush.
    assert!(
        l0.len() as u64 <= secs + 6,
        "{} level-0 files for {secs} s of writes: {l0:#?}",
        l0.len()
    );
    assert!(
        log.contains("checkpoints") && !log.contains(" 0 checkpoints"),
        "no checkpoint ran: {log}"
    );
    for f in l0.iter().step_by(3) {
        let max = f["max_txid"].as_str().unwrap();
        let out = s.dir.path().join(format!("at-{max}.db"));
        let o = restore_txid(&s, max, &out);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        check_sound(&out);
    }
    let latest = s.restore("latest.db", &[]);
    assert_same(&app, &check_sound(&latest));
}

/// Once the application stops writing, the replica still sheds what its tiers let go while
/// memsync keeps running: level-0 files merged into level 1 leave after `l0-retention`. (Before:
/// retention and the deletion of merged files ran only when something was shipped, so an idle
/// database's replica kept every file until the replicator stopped.)
#[test]
fn an_idle_database_still_sheds_merged_files() {
    let s = Scene::new(
        "",
        "        sync-interval: 1s\n        retention-check-interval: 1s\nl0-retention: 3s\nlevels:\n  - interval: 2s\n    retention: 1h\n",
    );
    let app = create_memdb(&s.db);
    let mut r = s.start_with(&[("MEMSYNC_COMPACTION_INTERVAL", "1s")]);
    for i in 1..=12 {
        insert_memory(&app, i);
        std::thread::sleep(Duration::from_millis(300));
    }
    s.wait_for_rows(12);
    let level0 = |s: &Scene| {
        wal_json(s)["replicas"][0]["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["level"] == 0)
            .count()
    };
    // Merged within a couple of seconds, then gone 3 s after they were written, plus the grace
    // a deletion waits for restores in flight.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while level0(&s) > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    let left = level0(&s);
    assert!(r.running(), "{}", s.log_tail());
    let (st, log) = r.stop();
    assert!(st.success(), "{log}");
    assert!(
        left <= 1,
        "{left} level-0 files kept while idle: {:#}",
        wal_json(&s)
    );
    let out = s.restore("idle.db", &[]);
    assert_same(&app, &check_sound(&out));
}
