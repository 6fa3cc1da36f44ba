//! Several databases and replicas in one process, the metrics endpoint, retention, and signals.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn restore_url(dir: &std::path::Path, url: &str, name: &str) -> std::path::PathBuf {
    let out = dir.join(name);
    let o = run(&["restore", "-o", out.to_str().unwrap(), url]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

#[test]
fn several_databases_and_replicas_with_metrics() {
    let d = tempfile::tempdir().unwrap();
    let (db1, db2) = (d.path().join("one.db"), d.path().join("two.db"));
    let (r1a, r1b, r2) = (
        d.path().join("r1a"),
        d.path().join("r1b"),
        d.path().join("r2"),
    );
    let port = free_port();
    let cfg = d.path().join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "addr: 127.0.0.1:{port}\ndbs:\n  - path: {}\n    replicas:\n      - name: fast\n        path: {}\n        sync-interval: 0s\n      - name: slow\n        path: {}\n        sync-interval: 700ms\n  - path: {}\n    replica:\n      path: {}\n",
            db1.display(), r1a.display(), r1b.display(), db2.display(), r2.display()
        ),
    )
    .unwrap();
    let (a1, a2) = (create_memdb(&db1), create_memdb(&db2));
    let mut child = Command::new(BIN)
        .args(["replicate", "-config", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for i in 1..=120 {
        insert_memory(&a1, i);
        if i % 2 == 0 {
            insert_memory(&a2, i);
        }
    }
    std::thread::sleep(Duration::from_millis(2500));
    let mut body = String::new();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    s.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    for needle in [
        "memsync_position{db=",
        "one.db",
        "two.db",
        "replica=\"fast\"",
        "replica=\"slow\"",
    ] {
        assert!(body.contains(needle), "metrics lack {needle}: {body}");
    }
    // SAFETY: kill(2) takes two integers and reads or writes no memory of this process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    for (src, rep, n) in [(&a1, &r1a, 120), (&a1, &r1b, 120), (&a2, &r2, 60)] {
        let out = restore_url(
            d.path(),
            &format!("file://{}", rep.display()),
            &format!("{}.db", rep.file_name().unwrap().to_str().unwrap()),
        );
        let c = check_sound(&out);
        assert_eq!(rows(&c).len(), n);
        assert_same(src, &c);
    }
}

#[test]
fn retention_prunes_old_files_and_keeps_the_window_restorable() {
    retention_prunes("        snapshot-interval: 1s\n");
}

/// Without `snapshot-interval` retention takes a snapshot per retention period itself: the
/// first snapshot of a small database was otherwise kept forever (retention keeps the newest
/// snapshot before its window and everything after it), and the replica grew without bound.
#[test]
fn retention_alone_prunes_old_files() {
    retention_prunes("");
}

fn retention_prunes(extra: &str) {
    let s = Scene::new(
        "",
        &format!(
            "        sync-interval: 0s\n        retention: 1s\n        retention-check-interval: 1s\n{extra}"
        ),
    );
    let app = create_memdb(&s.db);
    let r = s.start_with(&[("MEMSYNC_COMPACTION_INTERVAL", "300ms")]);
    let first_snapshot = || {
        let mut v: Vec<_> = std::fs::read_dir(s.replica.join("snapshots"))
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        v.sort();
        v.first().cloned()
    };
    let mut n = 0;
    let mut first = None;
    for _ in 0..12 {
        for _ in 0..10 {
            n += 1;
            insert_memory(&app, n);
        }
        std::thread::sleep(Duration::from_millis(400));
        first = first.or_else(first_snapshot);
    }
    s.wait_for_rows(n as i64);
    std::thread::sleep(Duration::from_millis(1500));
    let (st, err) = r.stop();
    assert!(st.success(), "{err}");
    let oldest_now = first_snapshot();
    assert!(first.is_some() && oldest_now.is_some());
    assert_ne!(
        first, oldest_now,
        "the first snapshot outlived a 1 s retention"
    );
    let out = s.restore("restored.db", &["-integrity-check", "full"]);
    let c = check_sound(&out);
    assert_same(&app, &c);
}

/// SIGTERM while the first snapshot of a large database is still being written: the process
/// finishes that snapshot, ships it and exits 0 (it used to die of the signal, because the
/// handler was only installed once every database had started). The snapshot is held at its
/// fault point (`snapshot:pause`, debug builds) until the signal was sent, so the signal
/// provably lands during it, however fast the machine.
#[test]
fn sigterm_during_startup_flushes_and_exits_zero() {
    require_fault_points();
    let s = Scene::new("", "");
    let c = app_conn(&s.db);
    c.execute_batch(
        "CREATE TABLE blobs(b BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30000)
         INSERT INTO blobs SELECT randomblob(4000) FROM n;",
    )
    .unwrap();
    let hold = s.dir.path().join("hold-snapshot");
    std::fs::write(&hold, b"").unwrap();
    let mut r = s.start_with(&[
        ("MEMSYNC_FAULT", "snapshot:pause"),
        ("MEMSYNC_FAULT_HOLD", hold.to_str().unwrap()),
    ]);
    r.wait_for_log("fault point snapshot: paused");
    r.signal(libc::SIGTERM);
    // The signal is delivered to a process standing inside its first snapshot; only then may
    // the snapshot go on.
    std::fs::remove_file(&hold).unwrap();
    let (st, log) = r.wait();
    assert!(st.success(), "replicate exited {st}: {log}");
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{log}"))
    };
    assert!(
        at("fault point snapshot: paused") < at("fault point snapshot: released")
            && at("fault point snapshot: released") < at("snapshot at position")
            && at("snapshot at position") < at("shutting down"),
        "the snapshot did not span the signal:\n{log}"
    );
    let out = s.restore("restored.db", &["-integrity-check", "quick"]);
    let restored = rusqlite::Connection::open(&out).unwrap();
    let n: i64 = restored
        .query_row("SELECT count(*) FROM blobs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 30000);
}

/// A replicator restarted more often than `snapshot-interval` still takes its snapshots, so
/// retention still deletes: the interval counts from the newest snapshot's time across
/// restarts (before: from the start of each run, once the spool had let go of the shipped
/// snapshot, so the first snapshot was the only one and the replica grew for ever).
#[test]
fn restarts_more_often_than_the_snapshot_interval_still_snapshot() {
    let s = Scene::new(
        "",
        "        sync-interval: 0s\n        snapshot-interval: 2s\n        retention: 3s\n        retention-check-interval: 1s\n",
    );
    let app = create_memdb(&s.db);
    let snapshots = || -> Vec<std::ffi::OsString> {
        std::fs::read_dir(s.replica.join("snapshots"))
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default()
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut n = 0;
    for _ in 0..6 {
        let r = s.start();
        for _ in 0..12 {
            n += 1;
            insert_memory(&app, n);
            std::thread::sleep(Duration::from_millis(100));
        }
        s.wait_for_rows(n as i64);
        seen.extend(snapshots());
        let (st, err) = r.stop();
        assert!(st.success(), "{err}");
    }
    assert!(
        seen.len() >= 3,
        "{} snapshots over six runs of 1.2 s with a 2 s interval: {seen:?}",
        seen.len()
    );
    let out = s.restore("restored.db", &["-integrity-check", "full"]);
    assert_same(&app, &check_sound(&out));
}

/// `replicate DB REPLICA` (no config file) serves `/health` on `MEMSYNC_ADDR`, as the README
/// says (before, only the zero-config form read the variable).
#[test]
fn the_command_line_form_serves_memsync_addr() {
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("db.sqlite");
    let _app = create_memdb(&db);
    let port = common::server::free_ports(1)[0];
    let log = d.path().join("replicate.log");
    let mut cmd = Command::new(BIN);
    cmd.current_dir(d.path())
        .env("MEMSYNC_ADDR", format!("127.0.0.1:{port}"))
        .args(["replicate", db.to_str().unwrap()])
        .arg(d.path().join("replica"));
    let r = Replicator::spawn(cmd, log);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let answer = loop {
        if let Some(a) = http_get(port, "/health") {
            break a;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing on MEMSYNC_ADDR:\n{}",
            r.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(answer.0, 200, "{}", answer.1);
    let (status, out) = r.stop();
    assert!(status.success(), "{out}");
}

/// With `logging.type: json`, every line `replicate` logs is JSON on the configured stream,
/// the first one included (it was plain text on stderr: said before the config's logging was
/// set up).
#[test]
fn the_configs_json_logging_covers_the_first_line() {
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("db.sqlite");
    let _app = create_memdb(&db);
    std::fs::write(
        d.path().join("litestream.yml"),
        format!(
            "logging:\n  type: json\ndbs:\n  - path: {}\n    replica:\n      path: {}\n",
            db.display(),
            d.path().join("replica").display()
        ),
    )
    .unwrap();
    let o = Command::new(BIN)
        .current_dir(d.path())
        .env("LITESTREAM_REPLICA_PATH", d.path().join("elsewhere"))
        .args(["replicate", "-once"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{out}{err}");
    assert!(err.trim().is_empty(), "stderr: {err}");
    assert!(out.contains("wins over LITESTREAM_REPLICA_PATH"), "{out}");
    for line in out.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
}
