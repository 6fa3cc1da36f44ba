//! Who may write where: a symlinked database path replicates the file SQLite really uses, one
//! replicator per database (a lock on its meta directory), and one database per replica (the
//! replica's lineage record).

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

/// Runs `memsync args...`, killed after `secs` if it is still running (a wrongly accepted
/// replicator would run forever; being killed then counts as failing to refuse).
fn run_bounded(args: &[&str], secs: u64) -> Output {
    let child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let killer = std::thread::spawn(move || {
        if rx.recv_timeout(Duration::from_secs(secs)).is_err() {
            // SAFETY: kill(2) takes two integers and reads or writes no memory of this process.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let out = child.wait_with_output().unwrap();
    let _ = tx.send(());
    killer.join().unwrap();
    out
}

/// Asserts the process refused: it exited by itself, non-zero, with one line on stderr
/// containing every needle.
fn assert_refused(o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        o.status.code().is_some(),
        "not refused: still running when killed; stderr: {err}"
    );
    assert!(!o.status.success(), "not refused: exited 0; stderr: {err}");
    assert_ne!(o.status.code(), Some(101), "panicked: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "want one line, got: {err}");
    for n in needles {
        assert!(err.contains(n), "{err:?} should mention {n:?}");
    }
}

fn write_config(path: &Path, db: &Path, replica: &Path) {
    std::fs::write(
        path,
        format!(
            "dbs:\n  - path: {}\n    replicas:\n      - type: file\n        path: {}\n        sync-interval: 0s\n",
            db.display(),
            replica.display()
        ),
    )
    .unwrap();
}

/// `replicate -once -takeover` of the config `cfg`, which must succeed.
fn take_over_once(cfg: &Path) {
    let args = [
        "replicate",
        "-once",
        "-takeover",
        "-config",
        cfg.to_str().unwrap(),
    ];
    let o = run_bounded(&args, 30);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A second database with seven memories, and its config pointing at the scene's replica.
fn other_database(s: &Scene) -> (std::path::PathBuf, rusqlite::Connection, std::path::PathBuf) {
    let other_db = s.dir.path().join("other.sqlite");
    let other = create_memdb(&other_db);
    for i in 1..=7 {
        insert_memory(&other, i);
    }
    let other_cfg = s.dir.path().join("other.yml");
    write_config(&other_cfg, &other_db, &s.replica);
    (other_db, other, other_cfg)
}

/// The application writes through the real path while memsync is configured with a symlink to
/// it: every commit must reach the replica, and memsync's checkpoints must keep the WAL small
/// (it used to read `link.db-wal`, which does not exist, and hold back every checkpoint).
#[test]
fn a_symlinked_database_path_replicates_every_commit_and_bounds_the_wal() {
    let s = Scene::new("", "        sync-interval: 0s\n");
    let real_dir = s.dir.path().join("real");
    std::fs::create_dir(&real_dir).unwrap();
    let real = real_dir.join("app.db");
    let link = s.dir.path().join("link.db");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    // Checkpoints at 250 frames (1 MB) instead of 1000: the WAL then stays far below the bound.
    std::fs::write(
        &s.config,
        format!(
            "dbs:\n  - path: {}\n    min-checkpoint-page-count: 250\n    replicas:\n      - type: file\n        path: {}\n        sync-interval: 0s\n",
            link.display(),
            s.replica.display()
        ),
    )
    .unwrap();
    let app = create_memdb(&real);
    for i in 1..=30 {
        insert_memory(&app, i);
    }
    let r = s.start();
    s.wait_for_rows(30);
    // In batches the replica catches up with: a burst outruns any replicator's checkpoints
    // (the WAL grows while memsync copies), but between batches memsync's checkpoints must
    // let the WAL start over.
    let n = 3030;
    for batch in 0..60 {
        for i in 31 + batch * 50..31 + (batch + 1) * 50 {
            insert_memory(&app, i);
        }
        s.wait_for_rows(30 + (batch as i64 + 1) * 50);
    }
    let wal = std::fs::metadata(real_dir.join("app.db-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    let (status, log) = r.stop();
    assert!(status.success(), "replicate exited {status}: {log}");
    assert!(
        log.contains(&format!(
            "database {} is {}",
            link.display(),
            real.display()
        )),
        "the real path is not logged: {log}"
    );
    assert!(
        wal < 10 << 20,
        "the application's WAL grew to {wal} bytes after {n} commits: checkpoints are held back"
    );
    let out = s.restore("restored.db", &["-integrity-check", "full"]);
    let restored = check_sound(&out);
    assert_same(&app, &restored);
    assert_eq!(rows(&restored).len(), n as usize);
}

/// A second replicator on a database that one already replicates (same replica, another
/// replica, or `-once`) exits non-zero naming the first one's pid; the first is undisturbed.
#[test]
fn a_second_replicator_on_one_database_is_refused_naming_the_first() {
    let s = Scene::new("", "        sync-interval: 0s\n");
    let app = create_memdb(&s.db);
    for i in 1..=20 {
        insert_memory(&app, i);
    }
    let mut first = s.start();
    s.wait_for_rows(20);
    let pid = first.pid().to_string();
    let cfg = s.config.to_str().unwrap();
    let o = run_bounded(&["replicate", "-config", cfg], 8);
    assert_refused(&o, &[&pid]);
    let o = run_bounded(&["replicate", "-once", "-config", cfg], 8);
    assert_refused(&o, &[&pid]);
    let other_cfg = s.dir.path().join("other.yml");
    write_config(&other_cfg, &s.db, &s.dir.path().join("replica2"));
    let o = run_bounded(&["replicate", "-config", other_cfg.to_str().unwrap()], 8);
    assert_refused(&o, &[&pid]);
    assert!(first.running(), "the first replicator stopped");
    for i in 21..=40 {
        insert_memory(&app, i);
    }
    s.wait_for_rows(40);
    let (status, log) = first.stop();
    assert!(status.success(), "{log}");
    let restored = check_sound(&s.restore("restored.db", &["-integrity-check", "full"]));
    assert_same(&app, &restored);
    // Once the first has stopped, the lock is free again.
    let o = run_bounded(&["replicate", "-once", "-config", cfg], 30);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Two databases in two processes configured with one replica directory: the second finds
/// the first's lineage and refuses to write there; restore gives the first database exactly.
/// With `-takeover` the second replaces the replica's contents with its own history.
#[test]
fn a_replica_of_another_database_is_refused_unless_taken_over() {
    let s = Scene::new("", "        sync-interval: 0s\n");
    let app = create_memdb(&s.db);
    for i in 1..=50 {
        insert_memory(&app, i);
    }
    let first = s.start();
    s.wait_for_rows(50);
    let (other_db, other, other_cfg) = other_database(&s);
    let o = run_bounded(&["replicate", "-config", other_cfg.to_str().unwrap()], 8);
    assert_refused(
        &o,
        &[
            &s.replica.display().to_string(),
            &s.db.display().to_string(),
            "-takeover",
        ],
    );
    // Refused before anything was written: -once too.
    let o = run_bounded(
        &["replicate", "-once", "-config", other_cfg.to_str().unwrap()],
        8,
    );
    assert_refused(&o, &["belongs to"]);
    for i in 51..=60 {
        insert_memory(&app, i);
    }
    s.wait_for_rows(60);
    let (status, log) = first.stop();
    assert!(status.success(), "{log}");
    let restored = check_sound(&s.restore("first.db", &["-integrity-check", "full"]));
    assert_same(&app, &restored);
    assert_eq!(rows(&restored).len(), 60);
    // Taking it over: the replica then holds the other database's history alone.
    take_over_once(&other_cfg);
    let restored = check_sound(&s.restore("taken.db", &["-integrity-check", "full"]));
    assert_same(&other, &restored);
    // And now the first database is the stranger.
    let o = run_bounded(
        &["replicate", "-once", "-config", s.config.to_str().unwrap()],
        8,
    );
    assert_refused(&o, &["belongs to", &other_db.display().to_string()]);
}

/// A replica written before lineage records existed (no record) is adopted on first write.
#[test]
fn a_replica_without_a_lineage_record_is_adopted() {
    let s = Scene::new("", "        sync-interval: 0s\n");
    let app = create_memdb(&s.db);
    for i in 1..=10 {
        insert_memory(&app, i);
    }
    let cfg = s.config.to_str().unwrap();
    let o = run_bounded(&["replicate", "-once", "-config", cfg], 30);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // As an older memsync left it: no record.
    let _ = std::fs::remove_file(s.replica.join("lineage"));
    for i in 11..=20 {
        insert_memory(&app, i);
    }
    let o = run_bounded(&["replicate", "-once", "-config", cfg], 30);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        s.replica.join("lineage").is_file(),
        "the replica was not adopted"
    );
    let restored = check_sound(&s.restore("restored.db", &["-integrity-check", "full"]));
    assert_same(&app, &restored);
}

/// A replica wiped (`rm -rf`) while memsync ships to it under a steady load: the uploads go on
/// succeeding into the empty place, so only the lineage record tells. Looked at under load too
/// (every `MEMSYNC_LINEAGE_CHECK`), its loss starts the replica over with a fresh snapshot, and
/// it restores the database again (it held segments without a snapshot for good, and /health
/// said ok).
#[test]
fn a_replica_wiped_while_replicating_is_started_over() {
    let s = Scene::new("", "");
    let app = create_memdb(&s.db);
    let r = s.start_with(&[("MEMSYNC_LINEAGE_CHECK", "1s")]);
    let mut n = 0;
    for round in 0..40 {
        n += 1;
        insert_memory(&app, n);
        if round == 10 {
            std::fs::remove_dir_all(&s.replica).unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    s.wait_for_rows(n as i64);
    let (st, log) = r.stop();
    assert!(st.success(), "{log}");
    assert!(log.contains("its lineage record is gone"), "{log}");
    let out = s.restore("restored.db", &["-integrity-check", "full"]);
    assert_same(&app, &check_sound(&out));
}

/// A replica taken over (`-takeover` by another database's replicator) while its replicator
/// runs: that replicator sees the new lineage record at its next look, stops shipping there
/// and says so; the new owner deletes the files it got from it meanwhile, so the replica
/// restores the new owner's database exactly. (Before: both shipped to the place for good,
/// /health said ok on both, and the replica restored neither.)
#[test]
fn a_replica_taken_over_while_replicating_is_left_to_its_new_owner() {
    let s = Scene::new("", "        sync-interval: 0s\n");
    let app = create_memdb(&s.db);
    for i in 1..=10 {
        insert_memory(&app, i);
    }
    let mut first = s.start_with(&[("MEMSYNC_LINEAGE_CHECK", "1s")]);
    s.wait_for_rows(10);
    let (_, other, other_cfg) = other_database(&s);
    let mut cmd = Command::new(BIN);
    cmd.args(["replicate", "-takeover", "-config"])
        .arg(&other_cfg)
        .env("MEMSYNC_LINEAGE_CHECK", "1s");
    let mut taker = Replicator::spawn(cmd, s.dir.path().join("taker.log"));
    taker.wait_for_log("replicating 1 database(s)");
    // Both databases keep being written; the first's replicator goes on until it looks.
    for i in 11..=60 {
        insert_memory(&app, i);
        insert_memory(&other, i - 3);
        std::thread::sleep(Duration::from_millis(100));
    }
    first.wait_for_log("took this place over");
    let (st, log) = first.stop();
    assert!(st.success(), "{log}");
    let (st, taker_log) = taker.stop();
    assert!(st.success(), "{taker_log}");
    let restored = check_sound(&s.restore("taken.db", &["-integrity-check", "full"]));
    assert_same(&other, &restored);
    // Nothing of the first database's is left: no two level-0 files share a position.
    let o = run(&["wal", "-json", s.replica.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let listing: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let pos =
        |f: &serde_json::Value, k: &str| u64::from_str_radix(f[k].as_str().unwrap(), 16).unwrap();
    let mut l0: Vec<(u64, u64)> = listing["replicas"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["level"] == 0)
        .map(|f| (pos(f, "min_txid"), pos(f, "max_txid")))
        .collect();
    l0.sort();
    for w in l0.windows(2) {
        assert!(
            w[1].0 > w[0].1,
            "two histories' files: {l0:?}\n{taker_log}\n{log}"
        );
    }
}

/// The same with a new owner that stops before its first look (`replicate -once -takeover`):
/// the replicator that was taken over deletes what it shipped there since, once it sees the
/// new record, merged ones waiting out their tier included, and the replica restores the new
/// owner's database exactly. (Before: nothing swept those files, and every restore of the
/// newest state failed, "mixes histories"; then the merged ones were left, "gap in replica
/// history".)
#[test]
fn a_replica_taken_over_by_a_short_run_is_left_to_its_new_owner() {
    // Merges every 2 s: what the first ships after the takeover is partly merged (and its
    // level-0 files kept for their tier only) by the time it looks, 5 s apart.
    let s = Scene::new("", "        sync-interval: 0s\nlevels:\n  - interval: 2s\n");
    let app = create_memdb(&s.db);
    for i in 1..=10 {
        insert_memory(&app, i);
    }
    let mut first = s.start_with(&[
        ("MEMSYNC_LINEAGE_CHECK", "5s"),
        ("MEMSYNC_COMPACTION_INTERVAL", "1s"),
    ]);
    s.wait_for_rows(10);
    let (_, other, other_cfg) = other_database(&s);
    take_over_once(&other_cfg);
    for i in 11..=90 {
        insert_memory(&app, i);
        std::thread::sleep(Duration::from_millis(100));
    }
    first.wait_for_log("took this place over");
    first.wait_for_log("files this database had shipped there since it was taken over");
    let (st, log) = first.stop();
    assert!(st.success(), "{log}");
    let restored = check_sound(&s.restore("taken.db", &["-integrity-check", "full"]));
    assert_same(&other, &restored);
}

/// A database copied with its meta directory carries the original's lineage: replicating the
/// copy into the original's replica is refused, naming both, while the original exists (the
/// copy's commits became restore points of the original, "rows that never existed" in it).
/// Moved (the original gone), it goes on, and the record names its new path.
#[test]
fn a_copy_made_with_its_meta_directory_is_refused_and_a_moved_one_goes_on() {
    let d = tempfile::tempdir().unwrap();
    let (a, b, c) = (d.path().join("a"), d.path().join("b"), d.path().join("c"));
    std::fs::create_dir(&a).unwrap();
    let db = a.join("db.sqlite");
    let rep = d.path().join("rep");
    let url = format!("file://{}", rep.display());
    let app = create_memdb(&db);
    insert_memory(&app, 1);
    drop(app);
    let once = |db: &Path| run(&["replicate", "-once", db.to_str().unwrap(), &url]);
    let o = once(&db);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let copy = |from: &Path, to: &Path| {
        let st = std::process::Command::new("cp")
            .args(["-a", from.to_str().unwrap(), to.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(st.success());
    };
    copy(&a, &b);
    let copied = b.join("db.sqlite");
    insert_memory(&app_conn(&copied), 2);
    let before = std::fs::read_dir(rep.join("segments/0")).map_or(0, |d| d.count());
    let o = once(&copied);
    assert_refused(&o, &["belongs to database", db.to_str().unwrap(), "copied"]);
    let after = std::fs::read_dir(rep.join("segments/0")).map_or(0, |d| d.count());
    assert_eq!(before, after, "the copy wrote into the original's replica");
    // Moved: the original's directory renamed away, then replicated from its new path.
    std::fs::remove_dir_all(&b).unwrap();
    std::fs::rename(&a, &c).unwrap();
    let moved = c.join("db.sqlite");
    let app = app_conn(&moved);
    insert_memory(&app, 3);
    let o = once(&moved);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let record = std::fs::read_to_string(rep.join("lineage")).unwrap();
    assert!(record.contains(moved.to_str().unwrap()), "{record}");
    let out = d.path().join("out.db");
    let o = run(&["restore", "-o", out.to_str().unwrap(), &url]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same(&app, &check_sound(&out));
}
