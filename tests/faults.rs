//! memsync crashed, failing or paused exactly at its named fault points (`MEMSYNC_FAULT`, read
//! by debug builds only: see `src/fault.rs` and the crash-point table of `docs/design.md`), and
//! a simulated power loss that drops what was never fsynced. After a restart, every restore is
//! exactly the source's first n memories (never a torn or foreign state), n reaches at least
//! what was committed before the crash, and once the writer stops the replica equals the
//! source.

mod common;

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use rusqlite::Connection;

/// The application: commits one memory at a time until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    committed: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<Connection>,
}

impl Writer {
    fn start(db: &Path) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(AtomicU64::new(0));
        let thread = {
            let (db, stop, committed) = (db.to_path_buf(), stop.clone(), committed.clone());
            std::thread::spawn(move || {
                let c = app_conn(&db);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    insert_memory(&c, i);
                    committed.store(i, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
                c
            })
        };
        Writer {
            stop,
            committed,
            thread,
        }
    }

    fn committed(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    /// Stops writing; returns the application's connection and the number of memories.
    fn finish(self) -> (Connection, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let c = self.thread.join().unwrap();
        let n = self.committed.load(Ordering::Relaxed);
        (c, n)
    }
}

/// Restores the replica as it is now and checks it is the source's first n memories; `None`
/// while the replica holds nothing restorable yet.
fn restore_prefix(s: &Scene, source: &Connection, name: &str) -> Option<usize> {
    let out = s.dir.path().join(name);
    let o = run(&["restore", "-o", out.to_str().unwrap(), &s.url()]);
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("holds no backup") || err.contains("does not exist"),
            "restore failed: {err}"
        );
        return None;
    }
    let n = assert_prefix(source, &check_sound(&out));
    let _ = std::fs::remove_file(&out);
    Some(n)
}

/// Restarts memsync (no fault armed) and checks it catches up: every restore meanwhile is a
/// prefix of the source, and one reaches `at_least` memories; then stops the writer and checks
/// the replica equals the source.
fn recover_and_check(s: &Scene, w: Writer, at_least: u64, env: &[(&str, &str)]) {
    let source = app_conn(&s.db);
    let mut r = s.start_with(env);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut k = 0;
    loop {
        assert!(r.running(), "memsync did not restart:\n{}", r.log());
        k += 1;
        let n = restore_prefix(s, &source, &format!("catchup-{k}.db"));
        if n.is_some_and(|n| n as u64 >= at_least) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the restart the replica never reached the {at_least} memories committed before the crash (last: {n:?}):\n{}",
            s.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (app, total) = w.finish();
    s.wait_for_rows(total as i64);
    let (st, log) = r.stop();
    assert!(st.success(), "{log}");
    let restored = check_sound(&s.restore("final.db", &["-integrity-check", "full"]));
    assert_same(&app, &restored);
    // Temp files the crash left mid-write were removed at the restart.
    let temps = spool_temp_files(s);
    assert!(temps.is_empty(), "left in the spool: {temps:?}");
}

fn spool_temp_files(s: &Scene) -> Vec<PathBuf> {
    files(&s.dir.path().join(".db.sqlite-memsync/spool"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect()
}

/// Arms `<point>:crash:<nth>`, lets the application write until memsync dies there, then
/// restarts it and checks the replica.
fn crash_at(point: &str, nth: u32, db_extra: &str, replica_extra: &str, env: &[(&str, &str)]) {
    require_fault_points();
    let s = Scene::new(db_extra, replica_extra);
    drop(create_memdb(&s.db));
    let w = Writer::start(&s.db);
    let spec = format!("{point}:crash:{nth}");
    let armed: Vec<(&str, &str)> = [&[("MEMSYNC_FAULT", spec.as_str())], env].concat();
    let mut r = s.start_with(&armed);
    let Some(st) = r.wait_exit(Duration::from_secs(120)) else {
        panic!("memsync never reached {spec}:\n{}", r.log());
    };
    // Everything committed up to here was committed before the crash point's sync.
    let before = w.committed();
    let log = r.log();
    assert_eq!(
        st.signal(),
        Some(libc::SIGABRT),
        "memsync exited {st} instead of crashing at {spec}:\n{log}"
    );
    assert!(
        log.contains(&format!("fault point {point}: crashing")),
        "{log}"
    );
    if matches!(point, "spool-write" | "spool-rename" | "snapshot") {
        assert!(
            !spool_temp_files(&s).is_empty(),
            "no temp file left by {spec}"
        );
    }
    // What the replica holds right after the crash is already a prefix.
    let source = app_conn(&s.db);
    restore_prefix(&s, &source, "after-crash.db");
    recover_and_check(&s, w, before, env);
}

const STEADY_DB: &str = "    checkpoint-interval: 1s\n    min-checkpoint-page-count: 100\n";
const STEADY_REPLICA: &str = "        sync-interval: 100ms\n";
/// A snapshot every second and a one-second retention: snapshots are taken and old files
/// deleted within seconds.
const CHURN_REPLICA: &str = "        sync-interval: 100ms\n        retention: 1s\n        retention-check-interval: 1s\n        snapshot-interval: 1s\n";
const FAST_COMPACTION: &[(&str, &str)] = &[("MEMSYNC_COMPACTION_INTERVAL", "300ms")];

/// Dies with a spool file's temp file half written (its buffer not yet flushed).
#[test]
fn crash_at_spool_write() {
    crash_at("spool-write", 12, STEADY_DB, STEADY_REPLICA, &[]);
}

/// Dies with a complete spool file under its temp name, before the rename.
#[test]
fn crash_at_spool_rename() {
    crash_at("spool-rename", 12, STEADY_DB, STEADY_REPLICA, &[]);
}

/// Dies with a spool file in place whose position memsync has not recorded (nor shipped).
#[test]
fn crash_at_spool_renamed() {
    crash_at("spool-renamed", 12, STEADY_DB, STEADY_REPLICA, &[]);
}

/// Dies in the middle of a periodic snapshot (the first is the startup snapshot).
#[test]
fn crash_at_snapshot() {
    crash_at("snapshot", 2, STEADY_DB, CHURN_REPLICA, FAST_COMPACTION);
}

/// Dies with a file on the replica that the shipper has not recorded as shipped.
#[test]
fn crash_at_upload() {
    crash_at("upload", 8, STEADY_DB, STEADY_REPLICA, &[]);
}

/// Dies with a level-0 file placed on the file replica as it was captured (durably there, on
/// the placing thread), not yet recorded as shipped: the restart finds it there and continues
/// after it.
#[test]
fn crash_at_place() {
    crash_at("place", 8, STEADY_DB, STEADY_REPLICA, &[]);
}

/// Dies after deleting one replica file of a batch (retention or files a compacted one
/// replaces).
#[test]
fn crash_at_delete() {
    crash_at("delete", 1, STEADY_DB, CHURN_REPLICA, FAST_COMPACTION);
}

/// Dies before saving the page map at a checkpoint (the first save follows the startup
/// snapshot): the restart replays the spool from the older map.
#[test]
fn crash_at_pagemap_save() {
    crash_at("pagemap-save", 2, STEADY_DB, STEADY_REPLICA, &[]);
}

/// Every point fails once, in one run: memsync logs the failure, retries and loses nothing.
#[test]
fn each_fault_point_failing_once_is_retried() {
    let points = [
        ("spool-write", 6),
        ("spool-rename", 9),
        ("snapshot", 2),
        ("upload", 5),
        ("delete", 2),
        ("pagemap-save", 2),
    ];
    let spec: Vec<String> = points
        .iter()
        .map(|(p, n)| format!("{p}:fail:{n}"))
        .collect();
    let spec = spec.join(",");
    let mut env = vec![("MEMSYNC_FAULT", spec.as_str())];
    env.extend_from_slice(FAST_COMPACTION);
    let names: Vec<&str> = points.iter().map(|(p, _)| *p).collect();
    failures_lose_nothing(CHURN_REPLICA, &env, &names);
}

/// A placement on the file replica that fails (its file on the replica, unrecorded) hands the
/// file to the shipper, which finds it there and goes on.
#[test]
fn a_failed_placement_goes_through_the_shipper() {
    failures_lose_nothing(
        STEADY_REPLICA,
        &[("MEMSYNC_FAULT", "place:fail:3")],
        &["place"],
    );
}

/// Writes while memsync runs with `env` (its fault points armed), waits until each of
/// `points` has failed, then checks that the replica restores to what the application
/// committed.
fn failures_lose_nothing(replica: &str, env: &[(&str, &str)], points: &[&str]) {
    require_fault_points();
    let s = Scene::new(STEADY_DB, replica);
    drop(create_memdb(&s.db));
    let w = Writer::start(&s.db);
    let mut r = s.start_with(env);
    for p in points {
        r.wait_for_log(&format!("fault point {p}: failing"));
    }
    let (app, total) = w.finish();
    s.wait_for_rows(total as i64);
    let (st, log) = r.stop();
    assert!(st.success(), "{log}");
    let restored = check_sound(&s.restore("final.db", &["-integrity-check", "full"]));
    assert_same(&app, &restored);
}

/// Every regular file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// A power cut while spool files wait to be shipped. SIGKILL alone keeps the page cache, so
/// every file memsync wrote survives it; a power loss keeps only what was fsynced. Spool files
/// are never fsynced: a file replica receives them as hard links and fsyncs the link, so a
/// spool file with a single link never reached a replica and may be lost. The test pauses
/// uploads (so such files pile up), kills memsync, then drops or tears every one of them (in
/// turn: deleted, emptied, cut in half) and the temp files, keeping what was fsynced: the
/// replica, the page map, the lineage. (The database and its WAL are kept whole, as an
/// application with `synchronous=FULL` would have them.)
#[test]
fn power_loss_drops_what_was_not_fsynced() {
    require_fault_points();
    let s = Scene::new(STEADY_DB, STEADY_REPLICA);
    drop(create_memdb(&s.db));
    let w = Writer::start(&s.db);
    let hold = s.dir.path().join("hold-uploads");
    std::fs::write(&hold, b"").unwrap();
    let mut r = s.start_with(&[
        ("MEMSYNC_FAULT", "upload:pause:6"),
        ("MEMSYNC_FAULT_HOLD", hold.to_str().unwrap()),
    ]);
    r.wait_for_log("fault point upload: paused");
    // Let files pile up in the spool behind the paused upload.
    let spool = s.dir.path().join(".db.sqlite-memsync/spool");
    let unshipped = || {
        files(&spool)
            .iter()
            .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.nlink() == 1))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while unshipped() < 6 {
        assert!(Instant::now() < deadline, "nothing piled up:\n{}", r.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    r.kill();
    let before = w.committed();
    let mut dropped = 0;
    for (i, p) in files(&spool)
        .into_iter()
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.nlink() == 1))
        .enumerate()
    {
        let len = std::fs::metadata(&p).unwrap().len();
        match i % 3 {
            0 => std::fs::remove_file(&p).unwrap(),
            1 => std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_len(0)
                .unwrap(),
            _ => std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_len(len / 2)
                .unwrap(),
        }
        dropped += 1;
    }
    assert!(dropped >= 6, "only {dropped} unsynced spool files");
    let source = app_conn(&s.db);
    restore_prefix(&s, &source, "after-power-loss.db");
    recover_and_check(&s, w, before, &[]);
    let log = std::fs::read_to_string(s.dir.path().join("replicate-2.log")).unwrap();
    assert!(log.contains("empty or torn"), "{log}");
}

/// A replica's shipping task that panics (a bug) stops replication with an error and a
/// non-zero exit, so a service manager restarts memsync; before, the task ended silently and
/// that replica got nothing more while memsync ran on as if healthy.
#[test]
fn a_panicking_shipper_stops_replication_loudly() {
    require_fault_points();
    let s = Scene::new("", "        sync-interval: 0s\n");
    let app = create_memdb(&s.db);
    let mut r = s.start_with(&[("MEMSYNC_FAULT", "upload:panic:2")]);
    for i in 1..=20 {
        insert_memory(&app, i);
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = r.wait_exit(Duration::from_secs(30));
    let log = r.log();
    let status = status.unwrap_or_else(|| panic!("memsync ran on after the panic:\n{log}"));
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("shipping to a replica of") && log.contains("panicked"),
        "{log}"
    );
    // The same with -once: the exit code says so.
    let o = std::process::Command::new(BIN)
        .env("MEMSYNC_FAULT", "upload:panic")
        .args(["replicate", "-once", "-config"])
        .arg(&s.config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("shipping to a replica of"), "{err}");
}
