//! Replicas that cannot continue from the spool (issue 12, defect 1): one added after the first
//! run, one emptied while memsync was stopped, one left behind while it was not configured, one
//! holding another database's files. Each gets a fresh snapshot at once, says so in the log,
//! and restores to exactly the source.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use replica_formats::ObjectKey;

/// Rewrites the scene's config: its database, replicated to `replicas` (named by their
/// directory), all with `sync-interval: 0s`.
fn set_replicas(s: &Scene, db: &Path, replicas: &[&Path]) {
    let mut text = format!("dbs:\n  - path: {}\n    replicas:\n", db.display());
    for r in replicas {
        text.push_str(&format!(
            "      - type: file\n        name: {}\n        path: {}\n        sync-interval: 0s\n",
            r.file_name().unwrap().to_string_lossy(),
            r.display()
        ));
    }
    std::fs::write(&s.config, text).unwrap();
}

fn url(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// Restores `replica` into the scene directory under `name`; panics with memsync's message.
fn restore_from(s: &Scene, replica: &Path, name: &str) -> PathBuf {
    let out = s.dir.path().join(name);
    let o = run(&["restore", "-o", out.to_str().unwrap(), &url(replica)]);
    assert!(
        o.status.success(),
        "restore of {} failed: {}\nlog:\n{}",
        replica.display(),
        String::from_utf8_lossy(&o.stderr),
        s.log_tail()
    );
    out
}

/// Runs the replicator while `rows` more memories are written, then stops it gracefully and
/// returns its log.
fn run_with_writes(s: &Scene, app: &rusqlite::Connection, from: u64, rows: u64) -> String {
    run_with_writes_env(s, app, from, rows, &[], Duration::from_millis(500))
}

/// [`run_with_writes`] with extra environment variables, running `linger` after the writes.
fn run_with_writes_env(
    s: &Scene,
    app: &rusqlite::Connection,
    from: u64,
    rows: u64,
    env: &[(&str, &str)],
    linger: Duration,
) -> String {
    let r = s.start_with(env);
    for i in from..from + rows {
        insert_memory(app, i);
        if i % 20 == 0 {
            std::thread::sleep(Duration::from_millis(30));
        }
    }
    std::thread::sleep(linger);
    let (st, log) = r.stop();
    assert!(st.success(), "{log}");
    log
}

fn assert_restores_source(s: &Scene, app: &rusqlite::Connection, replica: &Path, name: &str) {
    let out = restore_from(s, replica, name);
    let restored = check_sound(&out);
    assert_same(app, &restored);
}

#[test]
fn a_replica_added_after_the_first_run_gets_a_snapshot_and_every_commit() {
    let s = Scene::new("", "");
    let rep2 = s.dir.path().join("rep2");
    let app = create_memdb(&s.db);
    set_replicas(&s, &s.db, &[&s.replica]);
    run_with_writes(&s, &app, 1, 100);
    set_replicas(&s, &s.db, &[&s.replica, &rep2]);
    let log = run_with_writes(&s, &app, 101, 200);
    assert_restores_source(&s, &app, &rep2, "rep2.db");
    assert_restores_source(&s, &app, &s.replica, "rep1.db");
    // rep2 gets everything either from a new snapshot ("empty, shipping a new snapshot") or
    // from the spool's files when the spool still holds the chain from its first snapshot
    // (which depends on when the pruner ran): the restores above are what must hold.
    let _ = log;
    assert!(
        !log.contains("replica replica ("),
        "the first replica continues its chain:\n{log}"
    );
    assert_eq!(rows(&app).len(), 300);
}

#[test]
fn a_new_replica_alone_in_place_of_the_first_gets_everything() {
    let s = Scene::new("", "");
    let rep2 = s.dir.path().join("rep2");
    let app = create_memdb(&s.db);
    set_replicas(&s, &s.db, &[&s.replica]);
    run_with_writes(&s, &app, 1, 100);
    set_replicas(&s, &s.db, &[&rep2]);
    let log = run_with_writes(&s, &app, 101, 100);
    assert_restores_source(&s, &app, &rep2, "rep2.db");
    // The restore above is what must hold (see the test before: the new replica may get the
    // spool's chain instead of a new snapshot).
    let _ = log;
    // Once-mode too: the snapshot is written before the single sync.
    let rep3 = s.dir.path().join("rep3");
    set_replicas(&s, &s.db, &[&rep3]);
    insert_memory(&app, 201);
    let o = run(&["replicate", "-once", "-config", s.config.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_restores_source(&s, &app, &rep3, "rep3.db");
}

#[test]
fn a_replica_emptied_while_stopped_is_filled_again() {
    let s = Scene::new("", "");
    let app = create_memdb(&s.db);
    set_replicas(&s, &s.db, &[&s.replica]);
    run_with_writes(&s, &app, 1, 100);
    std::fs::remove_dir_all(&s.replica).unwrap();
    std::fs::create_dir(&s.replica).unwrap();
    let log = run_with_writes(&s, &app, 101, 100);
    assert_restores_source(&s, &app, &s.replica, "refilled.db");
    // The restore above is what must hold (see the test before: the new replica may get the
    // spool's chain instead of a new snapshot).
    let _ = log;
}

/// Keys of the replica-format files under `dir` (a replica or the spool), by relative path.
fn keys_under(dir: &Path) -> Vec<ObjectKey> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<ObjectKey>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if let Some(k) = p
                .strip_prefix(root)
                .ok()
                .and_then(|r| r.to_str())
                .and_then(ObjectKey::parse)
            {
                out.push(k);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
}

/// Whether the spool still holds what follows `newest`: that very file, a file ending where it
/// ends, or a segment starting right after it.
fn spool_continues(spool: &[ObjectKey], newest: &ObjectKey) -> bool {
    let r = newest.max_txid();
    spool
        .iter()
        .any(|k| k == newest || k.max_txid() == r || (!k.is_snapshot() && k.min_txid() == r.next()))
}

#[test]
fn a_replica_left_behind_while_unconfigured_catches_up_with_a_snapshot() {
    // One level of 1 s buckets: level-1 files are the top level, so once merged and shipped to
    // rep1 the spool drops them (with the default tiers they wait minutes for the level-2 merge).
    let s = Scene::new("", "");
    let levels = "levels:\n  - interval: 1s\n";
    let rep2 = s.dir.path().join("rep2");
    let app = create_memdb(&s.db);
    set_replicas(&s, &s.db, &[&s.replica, &rep2]);
    std::fs::write(
        &s.config,
        std::fs::read_to_string(&s.config).unwrap() + levels,
    )
    .unwrap();
    run_with_writes(&s, &app, 1, 100);
    let rep2_newest = *keys_under(&rep2).iter().max().expect("rep2 got files");
    // rep2 is left out while the spool merges and drops everything rep1 has. The runs go on
    // until that is so (bounded), rather than hoping one run's timing suffices.
    set_replicas(&s, &s.db, &[&s.replica]);
    std::fs::write(
        &s.config,
        std::fs::read_to_string(&s.config).unwrap() + levels,
    )
    .unwrap();
    let compact = [("MEMSYNC_COMPACTION_INTERVAL", "1s")];
    let spool = s.dir.path().join(".db.sqlite-memsync").join("spool");
    let mut next = 101;
    for _ in 0..10 {
        run_with_writes_env(&s, &app, next, 100, &compact, Duration::from_millis(2500));
        next += 100;
        if !spool_continues(&keys_under(&spool), &rep2_newest) {
            break;
        }
    }
    assert!(
        !spool_continues(&keys_under(&spool), &rep2_newest),
        "after 10 runs the spool still holds what follows rep2's {rep2_newest}: {:?}",
        keys_under(&spool)
    );
    set_replicas(&s, &s.db, &[&s.replica, &rep2]);
    let log = run_with_writes(&s, &app, next, 100);
    assert_restores_source(&s, &app, &rep2, "rep2.db");
    assert_restores_source(&s, &app, &s.replica, "rep1.db");
    assert!(
        log.contains("rep2 (") && log.contains("behind (the spool no longer holds"),
        "{log}"
    );
}

/// A replica directory holding another database's backup, at positions the spool also
/// reached: our segments must never be appended to it; it gets a snapshot and restores to
/// our database.
#[test]
fn a_replica_holding_another_history_gets_a_snapshot_never_an_append() {
    let s = Scene::new("", "");
    let other_db = s.dir.path().join("other.sqlite");
    let shared = s.dir.path().join("shared");
    // The other database: a short history in `shared`.
    let other = create_memdb(&other_db);
    for i in 1..=10 {
        insert_memory(&other, 1000 + i);
    }
    set_replicas(&s, &other_db, &[&shared]);
    run_with_writes(&s, &other, 1011, 5);
    drop(other);
    // Ours: a longer history in rep1, in several syncs.
    let app = create_memdb(&s.db);
    set_replicas(&s, &s.db, &[&s.replica]);
    let r = s.start();
    for batch in 0..6 {
        for i in 1..=20 {
            insert_memory(&app, batch * 20 + i);
        }
        s.wait_for_rows((batch as i64 + 1) * 20);
    }
    let (st, log) = r.stop();
    assert!(st.success(), "{log}");
    // With its lineage record the other database's replica is refused outright (see
    // tests/ownership.rs); without one (written before records existed, or lost) its files are
    // still another history, and must never be continued.
    std::fs::remove_file(shared.join("lineage")).unwrap();
    set_replicas(&s, &s.db, &[&s.replica, &shared]);
    let log = run_with_writes(&s, &app, 121, 100);
    assert_restores_source(&s, &app, &shared, "shared.db");
    assert_restores_source(&s, &app, &s.replica, "rep1.db");
    assert!(
        log.contains("shared (") && log.contains("other history"),
        "the log does not say the shared replica holds another history:\n{log}"
    );
}

/// An idle database replicated once to each of five new replicas, one run each: every replica
/// holds one snapshot, and the spool keeps one (before: each run took a new snapshot of the
/// same state, the spool kept them all, and the fifth replica got five copies).
#[test]
fn new_replicas_of_an_idle_database_get_one_snapshot_each() {
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("db.sqlite");
    let app = create_memdb(&db);
    insert_memories(&app, 0..=200);
    drop(app);
    let snapshots = |dir: &Path| -> usize {
        std::fs::read_dir(dir.join("snapshots"))
            .map(|r| r.count())
            .unwrap_or(0)
    };
    for n in 1..=5 {
        let rep = d.path().join(format!("rep{n}"));
        let o = run(&[
            "replicate",
            "-once",
            db.to_str().unwrap(),
            rep.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(snapshots(&rep), 1, "run {n}");
        let out = d.path().join(format!("out{n}.db"));
        let o = run(&[
            "restore",
            "-o",
            out.to_str().unwrap(),
            rep.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let spool = d.path().join(".db.sqlite-memsync/spool");
    assert!(
        snapshots(&spool) <= 1,
        "{} snapshots in the spool",
        snapshots(&spool)
    );
}
