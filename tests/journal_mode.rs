//! memsync steps aside while the database is idle (its connections closed), so the application
//! can leave WAL mode, which SQLite allows only to a database's sole connection; commits made
//! meanwhile, in WAL or rollback mode, all reach the replica.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use rusqlite::Connection;

/// Sets the journal mode, retrying for up to 30 s while SQLite answers "database is locked"
/// (leaving WAL mode needs the database to itself, and fails at once otherwise); the mode the
/// database is in afterwards.
fn switch_journal_mode(app: &Connection, mode: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match app.query_row(&format!("PRAGMA journal_mode={mode}"), [], |r| {
            r.get::<_, String>(0)
        }) {
            Ok(now) if now.eq_ignore_ascii_case(mode) || Instant::now() >= deadline => {
                return now;
            }
            Ok(_) => {}
            Err(e) if Instant::now() >= deadline => return format!("error: {e}"),
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the replicator's log holds `what`; the log.
fn wait_for_log(log: &Path, what: &str, s: &Scene) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(what) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "the log never said {what:?}; replicator log:\n{}",
            s.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The number in "N what" of the replicator's final line.
fn stopped_count(log: &str, what: &str) -> u64 {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("stopped at position"))
        .unwrap_or_else(|| panic!("no final line in:\n{log}"));
    line.split(", ")
        .find_map(|part| {
            part.strip_suffix(what)?
                .trim()
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {what:?} in {line}"))
}

#[test]
fn the_application_leaves_wal_mode_and_returns_while_memsync_runs() {
    let s = Scene::new("", "        sync-interval: 0s\n");
    let log = s.dir.path().join("replicate-1.log");
    let app = create_memdb(&s.db);
    for i in 1..=50 {
        insert_memory(&app, i);
    }
    // Debug lines say why memsync keeps its connections, should the switch fail.
    let r = s.start_with(&[("LOG_LEVEL", "debug")]);
    for i in 51..=100 {
        insert_memory(&app, i);
    }
    s.wait_for_rows(100);

    // Phase 2: rollback mode. memsync steps aside once idle; the switch then succeeds.
    let mode = switch_journal_mode(&app, "delete");
    assert_eq!(
        mode,
        "delete",
        "the application could not leave WAL mode in 30 s; replicator log:\n{}",
        s.log_tail()
    );
    // Spread over a few seconds: memsync polls meanwhile and must say it only once.
    for i in 101..=150 {
        insert_memory(&app, i);
        std::thread::sleep(Duration::from_millis(60));
    }
    wait_for_log(&log, "left WAL mode", &s);

    // Phase 3: back to WAL; memsync resumes and ships what rollback mode changed.
    assert_eq!(switch_journal_mode(&app, "wal"), "wal", "{}", s.log_tail());
    for i in 151..=200 {
        insert_memory(&app, i);
    }
    wait_for_log(&log, "replication resumed", &s);
    s.wait_for_rows(200);

    let (status, out) = r.stop();
    assert!(status.success(), "replicate exited {status}: {out}");
    assert_eq!(
        out.matches("left WAL mode").count(),
        1,
        "the pause is logged once:\n{out}"
    );
    let restored = s.restore("restored.db", &["-integrity-check", "full"]);
    let restored = check_sound(&restored);
    assert_same(&app, &restored);
    assert_eq!(rows(&restored).len(), 200);
}

#[test]
fn commits_made_while_memsync_stepped_aside_all_restore() {
    let s = Scene::new("", "        sync-interval: 0s\n");
    let mut app = create_memdb(&s.db);
    // The application checkpoints (and so restarts the WAL) on its own, often.
    app.pragma_update(None, "wal_autocheckpoint", 20).unwrap();
    let mut n = 0;
    let mut write = |app: &Connection, k: u64| {
        for _ in 0..k {
            n += 1;
            insert_memory(app, n);
        }
        n
    };
    write(&app, 20);
    let r = s.start();
    s.wait_for_rows(20);
    // Pauses long enough that memsync steps aside after the idle delay (1 s) and stays away
    // long enough (3 s) to keep that delay (`src/sqlite/release.rs`): each commit finds
    // memsync away.
    let pause = || std::thread::sleep(Duration::from_millis(4500));
    for _ in 0..3 {
        pause();
        write(&app, 1);
    }
    // A burst: every few commits the autocheckpoint backfills and the next commit restarts
    // the WAL, the first times before or while memsync reopens.
    pause();
    write(&app, 100);
    // An application checkpoint while memsync is away, then one commit.
    pause();
    app.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
        .unwrap();
    write(&app, 1);
    // The application closes (SQLite checkpoints and deletes the WAL and its index) and
    // reopens while memsync is away.
    pause();
    drop(app);
    app = app_conn(&s.db);
    app.pragma_update(None, "wal_autocheckpoint", 20).unwrap();
    pause();
    let total = write(&app, 5);
    s.wait_for_rows(total as i64);

    let (status, out) = r.stop();
    assert!(status.success(), "replicate exited {status}: {out}");
    assert!(
        stopped_count(&out, "idle releases") >= 1,
        "memsync never stepped aside:\n{out}"
    );
    let restored = s.restore("restored.db", &["-integrity-check", "full"]);
    let restored = check_sound(&restored);
    assert_same(&app, &restored);
    assert_eq!(rows(&restored).len() as u64, total);
}

#[test]
fn changes_made_in_rollback_mode_are_shipped_at_shutdown() {
    let s = Scene::new("", "        sync-interval: 0s\n");
    let log = s.dir.path().join("replicate-1.log");
    let app = create_memdb(&s.db);
    for i in 1..=30 {
        insert_memory(&app, i);
    }
    let r = s.start_with(&[("LOG_LEVEL", "debug")]);
    s.wait_for_rows(30);
    let mode = switch_journal_mode(&app, "delete");
    assert_eq!(
        mode,
        "delete",
        "the application could not leave WAL mode in 30 s; replicator log:\n{}",
        s.log_tail()
    );
    for i in 31..=60 {
        insert_memory(&app, i);
    }
    wait_for_log(&log, "left WAL mode", &s);
    // Stopped while paused: what rollback mode committed is shipped all the same, and the
    // database stays in rollback mode.
    let (status, out) = r.stop();
    assert!(status.success(), "replicate exited {status}: {out}");
    let mode: String = app
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
    let restored = s.restore("restored.db", &["-integrity-check", "full"]);
    let restored = check_sound(&restored);
    assert_same(&app, &restored);
    assert_eq!(rows(&restored).len(), 60);
}

/// A database committing every 1.5 s: memsync steps aside after the first quiet second or
/// two, then learns to stay (a reopen per commit costs more than staying attached), and an
/// application leaving WAL mode right after that spell still gets its switch within its
/// retries. Every commit restores.
#[test]
fn a_database_committing_every_few_seconds_keeps_memsync_attached_and_can_still_leave_wal() {
    let s = Scene::new("", "        sync-interval: 0s\n");
    let app = create_memdb(&s.db);
    insert_memory(&app, 1);
    let r = s.start();
    s.wait_for_rows(1);
    let commits = 10;
    for i in 2..=commits + 1 {
        std::thread::sleep(Duration::from_millis(1500));
        insert_memory(&app, i);
    }
    s.wait_for_rows(commits as i64 + 1);
    let mode = switch_journal_mode(&app, "delete");
    assert_eq!(mode, "delete", "{}", s.log_tail());
    insert_memory(&app, commits + 2);
    let (status, out) = r.stop();
    assert!(status.success(), "replicate exited {status}: {out}");
    let releases = stopped_count(&out, "idle releases");
    assert!(
        (1..=4).contains(&releases),
        "{releases} idle releases for {commits} commits 1.5 s apart:\n{out}"
    );
    let restored = s.restore("restored.db", &["-integrity-check", "full"]);
    let restored = check_sound(&restored);
    assert_eq!(rows(&restored).len() as u64, commits + 2);
}
