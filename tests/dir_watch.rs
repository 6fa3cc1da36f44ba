//! A watched directory (`dir` + `watch: true`) while `memsync replicate` runs: a database
//! created and written is picked up and restores exactly, a non-database file is logged once
//! and left alone, a renamed database is replicated under its new name, a deleted one is
//! dropped cleanly (no file recreated at its path) once its last commits are shipped, and
//! SIGTERM still ships everything.

mod common;

use std::time::{Duration, Instant};

use common::watched::{Scene, conn, create, rows};
use common::{BIN, Replicator, run};
use rusqlite::Connection;

#[test]
fn a_watched_directory_follows_databases_created_renamed_and_deleted() {
    let s = Scene::new();
    // Empty at start: allowed with `watch`.
    let mut r = s.replicate();
    r.wait_for_log("replicating 0 database(s)");

    // A database created while running is picked up and replicated as it is written.
    let a = create(&s.data.join("a.db"), 5);
    r.wait_for_log("a.db: new database, replicating");
    s.wait_for("a.db", &rows(&a), &r);
    for i in 0..20 {
        a.execute("INSERT INTO t(v) VALUES (?1)", [format!("later {i}")])
            .unwrap();
    }
    s.wait_for("a.db", &rows(&a), &r);

    // It shows at /metrics like the databases found at start.
    let shown = |db: &str| {
        let (code, text) = common::http_get(s.port, "/metrics").expect("metrics answer");
        assert_eq!(code, 200);
        text.contains(&format!("db=\"{}\"", s.data.join(db).display()))
    };
    assert!(shown("a.db"));

    // A matching file that is not a database: logged once, never replicated.
    std::fs::write(s.data.join("notes.db"), "plain text, not SQLite").unwrap();
    let b = create(&s.data.join("sub/b.db"), 3);
    r.wait_for_log("b.db: new database, replicating");
    s.wait_for("sub/b.db", &rows(&b), &r);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(r.log().matches("notes.db").count(), 1, "{}", r.log());

    // Renamed: replicated under its new name.
    let b_rows = rows(&b);
    drop(b);
    for suffix in ["", "-wal", "-shm"] {
        let from = s.data.join(format!("sub/b.db{suffix}"));
        if from.exists() {
            std::fs::rename(&from, s.data.join(format!("sub/moved.db{suffix}"))).unwrap();
        }
    }
    r.wait_for_log("moved.db: new database, replicating");
    let moved = conn(&s.data.join("sub/moved.db"));
    assert_eq!(rows(&moved), b_rows);
    moved
        .execute("INSERT INTO t(v) VALUES ('after the move')", [])
        .unwrap();
    s.wait_for("sub/moved.db", &rows(&moved), &r);

    // Deleted: dropped, and nothing recreated at its path.
    let c = create(&s.data.join("c.db"), 4);
    r.wait_for_log("c.db: new database, replicating");
    s.wait_for("c.db", &rows(&c), &r);
    drop(c);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(s.data.join(format!("c.db{suffix}")));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !r.log().contains("c.db: removed") {
        assert!(
            Instant::now() < deadline,
            "c.db never dropped:\n{}",
            r.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(!s.data.join("c.db").exists(), "memsync recreated c.db");
    assert!(
        !shown("c.db") && shown("sub/moved.db"),
        "/metrics follows the directory"
    );

    // More writes, then SIGTERM: everything committed is on the replicas.
    for i in 0..10 {
        a.execute("INSERT INTO t(v) VALUES (?1)", [format!("last {i}")])
            .unwrap();
    }
    let (status, log) = r.stop();
    assert!(status.success(), "exit {status}:\n{log}");
    assert_eq!(s.restore("a.db", "final-a").unwrap(), rows(&a), "{log}");
    assert_eq!(
        s.restore("sub/moved.db", "final-moved").unwrap(),
        rows(&moved),
        "{log}"
    );
    assert!(s.restore("notes.db", "notes").is_none());
}

/// Two watched entries whose patterns both match a database created while running: the first
/// replicates it, and the user is told at once (a start refuses such a config), not only at
/// the next restart.
#[test]
fn a_database_two_entries_match_is_told_of_while_running() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // Present at start and not a database: logged once (by the start, not again by the
    // watcher's first scan).
    std::fs::write(data.join("junk.db"), "plain text").unwrap();
    let config = tmp.path().join("c.yml");
    std::fs::write(
        &config,
        format!(
            "dbs:\n  - dir: {d}\n    pattern: \"*.db\"\n    watch: true\n    replica:\n      path: {b}/all\n  - dir: {d}\n    pattern: \"x*.db\"\n    watch: true\n    replica:\n      path: {b}/x\n",
            d = data.display(),
            b = tmp.path().join("backup").display()
        ),
    )
    .unwrap();
    let log = tmp.path().join("replicate.log");
    let r = Replicator::spawn(
        {
            let mut c = std::process::Command::new(BIN);
            c.args(["replicate", "-config"]).arg(&config);
            c
        },
        log.clone(),
    );
    std::thread::sleep(Duration::from_millis(500));
    create(&data.join("x1.db"), 3);
    let deadline = Instant::now() + Duration::from_secs(20);
    let told = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("matched by the `dir` entries") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (status, text) = r.stop();
    assert!(status.success(), "{text}");
    assert!(
        told.contains("x1.db: matched by the `dir` entries at lines 2 and 7"),
        "{told}"
    );
    assert_eq!(
        text.matches("matched by the `dir` entries").count(),
        1,
        "{text}"
    );
    assert_eq!(text.matches("junk.db").count(), 1, "{text}");
}

/// A database deleted right after commits that pacing had not shipped yet (a 5 s interval,
/// its burst used up): they are shipped from the files memsync holds open before it is
/// dropped, so the replica restores what the application last committed.
#[test]
fn a_deleted_database_ships_its_last_commits() {
    let s = Scene::with_interval("5s");
    let (mut r, d) = s.replicating_new("d.db");
    for i in 0..10 {
        d.execute(
            "INSERT INTO t(v) VALUES (?1)",
            [format!("before the delete {i}")],
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let last = rows(&d);
    // Deleted while the application still has it open, as `rm d.db` under a running service
    // does: the database file only.
    std::fs::remove_file(s.data.join("d.db")).unwrap();
    drop(d);
    r.wait_for_log("d.db: removed");
    // Its WAL and index go too (memsync's connection kept them; a database made at the path
    // later would have read the stale WAL as its own).
    for suffix in ["-wal", "-shm"] {
        let p = s.data.join(format!("d.db{suffix}"));
        assert!(!p.exists(), "{} left behind:\n{}", p.display(), r.log());
    }
    let (status, log) = r.stop();
    assert!(status.success(), "exit {status}:\n{log}");
    assert_eq!(s.restore("d.db", "deleted").unwrap(), last, "{log}");
    assert!(
        log.contains("d.db: deleted; its last commits are shipped"),
        "{log}"
    );
}

/// A database replaced by a rename over it right after its last commits (its `-wal` left in
/// place): those commits, still in the WAL memsync holds open, are shipped before the new file
/// is picked up (before: lost, as many as the sync interval held).
#[test]
fn a_database_renamed_over_ships_its_last_commits() {
    let s = Scene::with_interval("5s");
    let (mut r, d) = s.replicating_new("d.db");
    for i in 0..50 {
        d.execute(
            "INSERT INTO t(v) VALUES (?1)",
            [format!("before the swap {i}")],
        )
        .unwrap();
    }
    let last = rows(&d);
    let other = s.tmp.path().join("other.db");
    drop(create(&other, 2));
    std::fs::rename(&other, s.data.join("d.db")).unwrap();
    drop(d);
    r.wait_for_log("d.db: replaced by another file; its last commits are shipped");
    // Some restore point of the replica is the old database's last state.
    let url = format!("file://{}", s.backup.display());
    let out = s.tmp.path().join("point.db");
    let mut found = false;
    for txid in 1..=40 {
        let _ = std::fs::remove_file(&out);
        let o = run(&[
            "restore",
            "-o",
            out.to_str().unwrap(),
            "-db",
            "d.db",
            "-txid",
            &format!("{txid:016x}"),
            &url,
        ]);
        if o.status.success() && rows(&Connection::open(&out).unwrap()) == last {
            found = true;
            break;
        }
    }
    let (status, log) = r.stop();
    assert!(status.success(), "exit {status}:\n{log}");
    assert!(
        found,
        "no restore point holds the replaced database's last state:\n{log}"
    );
}

/// A database found in the directory at start, then replaced by a file moved over it (a
/// restored copy put in place): dropped, found again at the next scan and replicated afresh
/// (the directory's databases at start counted as configured by path, and the replacement was
/// never picked up while the application went on writing to it).
#[test]
fn a_database_replaced_in_a_watched_directory_is_picked_up_again() {
    let s = Scene::new();
    let a = create(&s.data.join("a.db"), 3);
    drop(a);
    let mut r = s.replicate();
    r.wait_for_log("replicating 1 database(s)");
    let new = s.tmp.path().join("new.db");
    let b = create(&new, 7);
    drop(b);
    std::fs::rename(&new, s.data.join("a.db")).unwrap();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(s.data.join(format!("a.db{suffix}")));
    }
    r.wait_for_log("a.db: removed or replaced");
    let a = conn(&s.data.join("a.db"));
    a.execute("INSERT INTO t(v) VALUES ('after the swap')", [])
        .unwrap();
    s.wait_for("a.db", &rows(&a), &r);
    let (status, log) = r.stop();
    assert!(status.success(), "exit {status}:\n{log}");
    assert_eq!(s.restore("a.db", "final").unwrap(), rows(&a), "{log}");
}

/// An entry of the watched directory that cannot be read (here a symlink loop named like a
/// database; a root-only `lost+found` does the same) is skipped and said once: databases
/// created after it are still picked up, and those known are not dropped (before: every scan
/// failed, and no new database was replicated until the entry went away).
#[test]
fn an_unreadable_entry_does_not_stop_the_watch() {
    let s = Scene::new();
    let a = create(&s.data.join("a.db"), 2);
    let mut r = s.replicate();
    r.wait_for_log("replicating 1 database(s)");
    std::os::unix::fs::symlink(s.data.join("loop.db"), s.data.join("loop.db")).unwrap();
    let b = create(&s.data.join("sub/b.db"), 3);
    r.wait_for_log("b.db: new database, replicating");
    s.wait_for("sub/b.db", &rows(&b), &r);
    a.execute("INSERT INTO t(v) VALUES ('still replicated')", [])
        .unwrap();
    s.wait_for("a.db", &rows(&a), &r);
    std::thread::sleep(Duration::from_secs(2));
    let log = r.log();
    assert_eq!(log.matches("loop.db").count(), 1, "said once:\n{log}");
    assert!(!log.contains("a.db: removed"), "{log}");
    // Gone again: said so, and nothing else changes.
    std::fs::remove_file(s.data.join("loop.db")).unwrap();
    r.wait_for_log("loop.db: readable again");
    let (st, log) = r.stop();
    assert!(st.success(), "{log}");
}

/// The watch's rescans leave the locks of memsync's own connections alone: while memsync
/// follows a database, the application's last close cannot merge and delete the WAL under
/// it, and commits made just before SIGTERM are shipped. (Before: every rescan opened and
/// closed each database file to read its header, which dropped every POSIX lock the process
/// held on it, SQLite's included; the application's close then deleted the WAL memsync still
/// read, and the commits of a new connection, in a new WAL, were never shipped: a tester lost
/// a burst made just before SIGTERM in 54 of 250 databases.) The application is Python's
/// `sqlite3`, as mcp-memory-service's is: Debian's SQLite 3.40 deletes the WAL at a last close
/// whenever it gets the database's exclusive lock.
#[test]
fn rescans_keep_memsyncs_locks_and_the_last_commits_are_shipped() {
    let s = Scene::new();
    let db = s.data.join("kept.db");
    drop(create(&db, 3));
    let mut r = s.replicate();
    r.wait_for_log("replicating 1 database(s)");
    // Commits every 200 ms for 3 s (memsync stays attached; the watch rescans three times),
    // then the application's last connection closes right after a commit; then a burst from a
    // new connection, closed at once.
    let app = r#"
import os, sqlite3, sys, time
db = sys.argv[1]
c = sqlite3.connect(db, isolation_level=None)
for i in range(15):
    c.execute("INSERT INTO t(v) VALUES (?)", ("steady %d" % i,))
    time.sleep(0.2)
c.execute("INSERT INTO t(v) VALUES ('last before the close')")
c.close()
print("wal kept" if os.path.exists(db + "-wal") else "wal deleted")
c = sqlite3.connect(db, isolation_level=None)
for i in range(4):
    c.execute("INSERT INTO t(v) VALUES (?)", ("burst %d" % i,))
c.close()
"#;
    let o = std::process::Command::new("/usr/bin/python3")
        .args(["-c", app])
        .arg(&db)
        .output()
        .expect("/usr/bin/python3 runs the application");
    assert!(o.status.success(), "{o:?}");
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.contains("wal kept"),
        "the application's close merged and deleted the WAL while memsync had the database open:\n{}",
        r.log()
    );
    let last = rows(&conn(&db));
    let (status, log) = r.stop();
    assert!(status.success(), "exit {status}:\n{log}");
    assert_eq!(s.restore("kept.db", "final").unwrap(), last, "{log}");
}
