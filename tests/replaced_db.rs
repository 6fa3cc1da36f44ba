//! A database file replaced under a running replicator (a restored copy moved into place): the
//! replica never records a state the database did not have.

mod common;

use std::time::Duration;

use common::*;

/// A database moved over the replicated one while memsync runs (a restored copy put in place,
/// the old `-wal` and `-shm` removed): memsync stops on the replacement and never ships the old
/// file's pages without its WAL, a state that never existed (it did: an empty table as the
/// newest restore point). Every restore point holds a state the database had.
#[test]
fn a_database_moved_over_the_replicated_one_ships_no_state_that_never_existed() {
    let s = Scene::new("", "");
    let setup = |p: &std::path::Path, rows: usize, v: &str| {
        let c = rusqlite::Connection::open(p).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT)")
            .unwrap();
        for _ in 0..rows {
            c.execute("INSERT INTO t(x) VALUES (?1)", [v]).unwrap();
        }
        c
    };
    drop(setup(&s.db, 0, "old"));
    let mut r = s.start();
    let app = rusqlite::Connection::open(&s.db).unwrap();
    for _ in 0..100 {
        app.execute("INSERT INTO t(x) VALUES ('old')", []).unwrap();
    }
    drop(app);
    let count = |p: &std::path::Path| -> i64 {
        rusqlite::Connection::open(p)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap_or(-1)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for k in 0.. {
        let out = s.dir.path().join(format!("w{k}.db"));
        let o = run(&["restore", "-o", out.to_str().unwrap(), &s.url()]);
        if o.status.success() && count(&out) == 100 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", r.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let new = s.dir.path().join("new.db");
    drop(setup(&new, 30, "new"));
    // Quiet for a while: memsync steps aside from an idle database, and comes back to it when
    // its files change, which is where it read the old pages beside no WAL.
    std::thread::sleep(Duration::from_secs(3));
    std::fs::rename(&new, &s.db).unwrap();
    for ext in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", s.db.display()));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while r.running() {
        assert!(std::time::Instant::now() < deadline, "{}", r.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, log) = r.stop();
    assert!(log.contains("replaced by another file while"), "{log}");
    // The newest restore point is the last state the old file had, not its pages alone.
    let newest = s.restore("newest.db", &[]);
    let c = rusqlite::Connection::open(&newest).unwrap();
    let (n, olds): (i64, i64) = c
        .query_row("SELECT COUNT(*), SUM(x = 'old') FROM t", [], |r| {
            Ok((r.get(0)?, r.get::<_, Option<i64>>(1)?.unwrap_or(0)))
        })
        .unwrap();
    assert_eq!((n, olds), (100, 100), "the newest restore point:\n{log}");
}

/// A database replaced by a rename (`mv other.db db.sqlite`, its `-wal` left in place) right
/// after the application's last commits, before memsync's next sync: those commits are still in
/// the WAL memsync holds open, and are shipped before memsync stops (before: the newest restore
/// point lacked them, as many as the sync interval holds).
#[test]
fn a_database_renamed_over_ships_the_replaced_ones_last_commits() {
    let s = Scene::new("", "        sync-interval: 5s\n");
    let c = rusqlite::Connection::open(&s.db).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT)")
        .unwrap();
    c.execute("INSERT INTO t(x) VALUES ('first')", []).unwrap();
    let mut r = s.start();
    r.wait_for_log("replicating 1 database(s)");
    // Its first sync, then commits the next one would have shipped.
    std::thread::sleep(Duration::from_millis(1500));
    for i in 0..100 {
        c.execute("INSERT INTO t(x) VALUES (?1)", [format!("old {i}")])
            .unwrap();
    }
    let other = s.dir.path().join("other.db");
    let o = rusqlite::Connection::open(&other).unwrap();
    o.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT); INSERT INTO t(x) VALUES ('other')",
    )
    .unwrap();
    drop(o);
    // The application is done with it (memsync's connection keeps its WAL from being merged
    // and removed at this close, as SQLite would have done).
    drop(c);
    std::fs::rename(&other, &s.db).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while r.running() {
        assert!(std::time::Instant::now() < deadline, "{}", r.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, log) = r.stop();
    // The old database's WAL and index went with it: the new file opens as itself (SQLite
    // applied the old WAL over it: the old table, 101 rows).
    let now: Vec<String> = rusqlite::Connection::open(&s.db)
        .unwrap()
        .prepare("SELECT x FROM t")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(now, vec!["other".to_string()], "{log}");
    assert!(
        log.contains("replaced by another file; its last commits are shipped"),
        "{log}"
    );
    let newest = s.restore("newest.db", &[]);
    let n: i64 = rusqlite::Connection::open(&newest)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 101, "the newest restore point:\n{log}");
}

/// memsync stopped after the application closed the database: its last close merges the WAL
/// and removes it, as the application's own last close would have without memsync. It left
/// the WAL, and a restored copy put in place before the next start opened with that WAL
/// applied over it. While the application still has the database open, the WAL stays (SQLite
/// merges only at the last close).
#[test]
fn a_stopped_memsync_leaves_no_wal_once_the_application_closed() {
    let s = Scene::new("", "");
    let c = rusqlite::Connection::open(&s.db).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT)")
        .unwrap();
    let mut r = s.start();
    r.wait_for_log("replicating 1 database(s)");
    for i in 0..50 {
        c.execute("INSERT INTO t(x) VALUES (?1)", [format!("row {i}")])
            .unwrap();
    }
    drop(c);
    std::thread::sleep(Duration::from_millis(1500));
    let (st, log) = r.stop();
    assert!(st.success(), "{log}");
    let wal = std::path::PathBuf::from(format!("{}-wal", s.db.display()));
    assert!(!wal.exists(), "the WAL was left:\n{log}");
    let n: i64 = rusqlite::Connection::open(&s.db)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 50);
    // The next start finds the WAL changed and ships nothing new; the replica is whole.
    let mut r = s.start();
    r.wait_for_log("replicating 1 database(s)");
    let app = rusqlite::Connection::open(&s.db).unwrap();
    app.execute("INSERT INTO t(x) VALUES ('after')", [])
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let (st, log) = r.stop();
    assert!(st.success(), "{log}");
    assert!(
        wal.exists(),
        "the application's open connection lost its WAL:\n{log}"
    );
    let newest = s.restore("newest.db", &[]);
    let n: i64 = rusqlite::Connection::open(&newest)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 51, "{log}");
}

/// The application commits and closes; memsync, then the database's only connection, steps
/// aside and its close merges the WAL as the application's last close would have (it never
/// did: a closed database's commits lived in the WAL alone, and a database renamed or copied by
/// its file lost them all). The application reopens and commits again: memsync comes back
/// (resynchronising) and every commit restores.
#[test]
fn a_closed_database_file_holds_every_commit_once_memsync_steps_aside() {
    let s = Scene::new("", "");
    let app = create_memdb(&s.db);
    let r = s.start();
    for i in 1..=30 {
        insert_memory(&app, i);
    }
    s.wait_for_rows(30);
    drop(app);
    let alone = s.dir.path().join("file-alone.db");
    let count = |p: &std::path::Path| -> i64 {
        rusqlite::Connection::open(p)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM memories", [], |r| r.get(0))
            .unwrap_or(-1)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        // The database file alone, as a rename or a copy of it takes it.
        std::fs::copy(&s.db, &alone).unwrap();
        let _ = std::fs::remove_file(format!("{}-wal", alone.display()));
        if count(&alone) == 30 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the database file alone never held the commits: {}",
            r.log()
        );
        std::thread::sleep(Duration::from_millis(200));
        std::fs::remove_file(&alone).unwrap();
    }
    // And memsync stays away: its own merge is no change to come back for (it came back at
    // once, read the whole database, found nothing, stepped aside and merged again, forever).
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        !r.log().contains("no page differs"),
        "memsync kept coming back to an idle database:\n{}",
        r.log()
    );
    let app = app_conn(&s.db);
    for i in 31..=40 {
        insert_memory(&app, i);
    }
    s.wait_for_rows(40);
    let (st, log) = r.stop();
    assert!(st.success(), "{log}");
    let restored = check_sound(&s.restore("restored.db", &["-integrity-check", "full"]));
    assert_same(&app, &restored);
}

/// A database deleted while the application still has it open keeps its `-wal` and `-shm` for
/// that connection's close, as without memsync: memsync took them away, and the user's own
/// removal of them (a folder's recursive removal) failed on the missing file.
#[test]
fn a_database_deleted_while_open_elsewhere_keeps_its_wal_for_that_process() {
    let s = Scene::new("", "");
    let app = create_memdb(&s.db);
    let mut r = s.start();
    for i in 1..=5 {
        insert_memory(&app, i);
    }
    s.wait_for_rows(5);
    std::fs::remove_file(&s.db).unwrap();
    r.wait_for_log("left to that process");
    for ext in ["-wal", "-shm"] {
        let side = format!("{}{ext}", s.db.display());
        std::fs::remove_file(&side).unwrap_or_else(|e| panic!("{side}: {e}\n{}", r.log()));
    }
    drop(app);
}
