//! Replication end to end with real processes: restore equals the source, point-in-time
//! restore, and the application's own checkpoints (with memsync running and stopped).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;

#[test]
fn restore_equals_source_including_knn() {
    let s = Scene::new("", "        sync-interval: 0s\n");
    let app = create_memdb(&s.db);
    for i in 1..=200 {
        insert_memory(&app, i);
    }
    let r = s.start();
    for i in 201..=500 {
        insert_memory(&app, i);
    }
    s.wait_for_rows(500);
    let (status, err) = r.stop();
    assert!(status.success(), "replicate exited {status}: {err}");
    let out = s.restore("restored.db", &["-integrity-check", "full"]);
    let restored = check_sound(&out);
    assert_same(&app, &restored);
    assert_eq!(rows(&restored).len(), 500);
}

/// Set when the application's busy handler gives up (its "busy timeout" ran out).
static GAVE_UP: AtomicBool = AtomicBool::new(false);

/// The application's busy handler: 1 ms waits, up to 5000 of them (a 5 s busy timeout).
fn app_busy_handler(n: i32) -> bool {
    if n >= 5000 {
        GAVE_UP.store(true, Ordering::Relaxed);
        return false;
    }
    std::thread::sleep(Duration::from_millis(1));
    true
}

#[test]
fn application_checkpoints_complete_while_memsync_runs_and_nothing_is_lost() {
    let s = Scene::new("", "        sync-interval: 0s\n");
    let mut app = create_memdb(&s.db);
    app.busy_handler(Some(app_busy_handler)).unwrap();
    let r = s.start();
    let mut n = 0;
    for mode in [
        "PASSIVE", "FULL", "RESTART", "TRUNCATE", "RESTART", "TRUNCATE",
    ] {
        for _ in 0..50 {
            n += 1;
            insert_memory(&app, n);
        }
        // SQLite answers BUSY at once, without calling the busy handler, when another
        // connection is running a checkpoint, and memsync runs short PASSIVE ones: an
        // application's checkpoint that lands on one is retried, as any SQLite application
        // must. What memsync must never do is make it wait out its busy handler.
        let mut attempts = Vec::new();
        for _ in 0..3 {
            GAVE_UP.store(false, Ordering::Relaxed);
            let (busy, _log, _done): (i64, i64, i64) = app
                .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .unwrap();
            attempts.push((busy, GAVE_UP.load(Ordering::Relaxed)));
            if busy == 0 || mode == "PASSIVE" {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if mode != "PASSIVE" {
            assert!(
                attempts.iter().all(|&(_, gave_up)| !gave_up) && attempts.last().unwrap().0 == 0,
                "the application's {mode} checkpoint was blocked (busy, busy handler gave up): {attempts:?}"
            );
        }
    }
    app.execute_batch("DELETE FROM memories WHERE id % 3 = 0; DELETE FROM memory_embeddings WHERE rowid % 3 = 0; VACUUM;")
        .unwrap();
    for _ in 0..50 {
        n += 1;
        insert_memory(&app, n);
    }
    let want = rows(&app).len() as i64;
    std::thread::sleep(Duration::from_millis(300));
    let (status, err) = r.stop();
    assert!(status.success(), "{err}");
    let out = s.restore("restored.db", &["-integrity-check", "full"]);
    let restored = rusqlite::Connection::open(&out).unwrap();
    assert_eq!(rows(&restored).len() as i64, want);
    assert_same(&app, &restored);
}

/// An application that checkpoints with RESTART every few commits makes memsync copy what is
/// committed and step aside each time; what it copies goes out with the next paced sync, not as
/// files of their own (it used to be two level-0 files per checkpoint: 87 files a minute instead
/// of 60 in the benchmark, each an upload).
#[test]
fn application_checkpoints_add_no_files_of_their_own() {
    let s = Scene::new("", "        sync-interval: 3s\n");
    let mut app = create_memdb(&s.db);
    app.busy_handler(Some(app_busy_handler)).unwrap();
    let r = s.start_with(&[("LOG_LEVEL", "debug")]);
    s.wait_for_rows(0);
    let level0 = || std::fs::read_dir(s.replica.join("segments/0")).map_or(0, |d| d.count());
    let before = level0();
    let (mut n, rounds) = (0, 12);
    for round in 0..rounds {
        // The last round is a big one: hundreds of pages to carry, past what memory holds.
        if round == rounds - 1 {
            insert_memories(&app, n + 1..=n + 600);
            n += 600;
        }
        for _ in 0..4 {
            n += 1;
            insert_memory(&app, n);
        }
        for _ in 0..5 {
            let busy: i64 = app
                .query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get(0))
                .unwrap();
            if busy == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    s.wait_for_rows(n as i64);
    let (status, err) = r.stop();
    assert!(status.success(), "{err}");
    // A burst of syncs after the quiet start (the pacer's bucket holds 4), one or two paced
    // ones and the last: 6 here, where one file per checkpoint made it 12 or more.
    let files = level0() - before;
    assert!(
        files <= 8,
        "{files} level-0 files for {rounds} application checkpoints"
    );
    // The big round went out carried, in one file with the next sync's pages.
    let log = std::fs::read_to_string(s.dir.path().join("replicate-1.log")).unwrap();
    let most_carried = log
        .lines()
        .filter_map(|l| {
            l.split(" pages (")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    assert!(
        most_carried > 256,
        "the biggest carry was {most_carried} pages"
    );
    let out = s.restore("restored.db", &["-integrity-check", "full"]);
    assert_same(&app, &check_sound(&out));
}

/// What memsync copied when an application checkpointed is held in memory until the next
/// paced sync; killed before that sync, memsync loses nothing: the checkpoint copied those
/// pages into the database, and the restart finds them there.
#[test]
fn commits_carried_past_an_application_checkpoint_survive_a_kill() {
    let s = Scene::new("", "        sync-interval: 30s\n");
    let mut app = create_memdb(&s.db);
    app.busy_handler(Some(app_busy_handler)).unwrap();
    let r = s.start();
    s.wait_for_rows(0);
    // The first rounds spend the pacer's burst; the later ones are carried.
    let mut n = 0;
    for _ in 0..8 {
        for _ in 0..3 {
            n += 1;
            insert_memory(&app, n);
        }
        std::thread::sleep(Duration::from_millis(50));
        let busy: i64 = app
            .query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get(0))
            .unwrap();
        assert_eq!(busy, 0, "the application's RESTART checkpoint was busy");
    }
    std::thread::sleep(Duration::from_millis(200));
    let before = s.restore("before-kill.db", &[]);
    let shipped = rows(&check_sound(&before)).len();
    assert!(
        shipped < n as usize,
        "nothing was left carried ({shipped} of {n} rows shipped)"
    );
    r.kill();
    let (status, err) = s.start_and_stop_after(Duration::from_millis(1500));
    assert!(status.success(), "{err}");
    let out = s.restore("restored.db", &["-integrity-check", "full"]);
    let restored = check_sound(&out);
    assert_eq!(rows(&restored).len(), n as usize);
    assert_same(&app, &restored);
}

#[test]
fn changes_made_while_memsync_is_stopped_are_shipped_on_restart() {
    let s = Scene::new("", "        sync-interval: 0s\n");
    let mut app = create_memdb(&s.db);
    for i in 1..=100 {
        insert_memory(&app, i);
    }
    let (st, err) = s.start_and_stop_after(Duration::from_millis(800));
    assert!(st.success(), "{err}");
    // While memsync is down: writes, an application checkpoint that truncates the WAL, more
    // writes, and a VACUUM; then the application closes (SQLite deletes the WAL).
    for i in 101..=200 {
        insert_memory(&app, i);
    }
    app.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    for i in 201..=250 {
        insert_memory(&app, i);
    }
    app.execute_batch("VACUUM").unwrap();
    drop(app);
    app = app_conn(&s.db);
    let (st, err) = s.start_and_stop_after(Duration::from_millis(800));
    assert!(st.success(), "{err}");
    let out = s.restore("restored.db", &["-integrity-check", "full"]);
    let restored = check_sound(&out);
    assert_same(&app, &restored);
    assert_eq!(rows(&restored).len(), 250);
}

#[test]
fn point_in_time_restore_by_timestamp_and_txid() {
    let s = Scene::new("", "        sync-interval: 0s\n");
    let app = create_memdb(&s.db);
    let r = s.start();
    let mut marks = Vec::new();
    let mut n = 0;
    for _ in 0..3 {
        for _ in 0..20 {
            n += 1;
            insert_memory(&app, n);
        }
        s.wait_for_rows(n as i64);
        std::thread::sleep(Duration::from_millis(50));
        marks.push((
            humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            n,
        ));
        std::thread::sleep(Duration::from_millis(50));
    }
    let (st, err) = r.stop();
    assert!(st.success(), "{err}");
    for (k, (ts, n)) in marks.iter().enumerate() {
        let out = s.restore(&format!("pitr-{k}.db"), &["-timestamp", ts]);
        let c = check_sound(&out);
        assert_eq!(rows(&c).len() as u64, *n, "state at {ts}");
    }
    // Every listed segment boundary restores exactly with -txid.
    let list = run(&["wal", &s.url()]);
    let text = String::from_utf8_lossy(&list.stdout).into_owned();
    let mut last = 0;
    // The file table ends at the first blank line (the restore-point summary follows).
    for line in text.lines().skip(1).take_while(|l| !l.is_empty()) {
        let max = line.split_whitespace().nth(3).unwrap();
        let out = s.restore(&format!("txid-{max}.db"), &["-txid", max]);
        let c = check_sound(&out);
        let got = rows(&c).len();
        assert!(got >= last, "positions must be monotonic");
        last = got;
    }
    assert_eq!(last, 60);
}

#[test]
fn compaction_keeps_every_restore_exact() {
    // Level-0 files merged into level 1 go at once (by default they stay restorable for 10m),
    // and level 1 covers 1 s buckets (by default 30 s: this short run might fit in one).
    let s = Scene::new(
        "",
        "        sync-interval: 0s\nl0-retention: 0s\nlevels:\n  - interval: 1s\n  - interval: 3s\n",
    );
    let app = create_memdb(&s.db);
    let r = s.start_with(&[("MEMSYNC_COMPACTION_INTERVAL", "1s")]);
    let mut n = 0;
    for _ in 0..8 {
        for _ in 0..40 {
            n += 1;
            insert_memory(&app, n);
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    s.wait_for_rows(n as i64);
    std::thread::sleep(Duration::from_millis(1500));
    let (st, err) = r.stop();
    assert!(st.success(), "{err}");
    assert!(
        s.replica.join("segments/1").is_dir(),
        "no compacted segments were written"
    );
    let l1 = std::fs::read_dir(s.replica.join("segments/1"))
        .unwrap()
        .count();
    let l0 = std::fs::read_dir(s.replica.join("segments/0")).map_or(0, |d| d.count());
    assert!(
        l1 >= 1 && l0 < 320,
        "level 0 files were not replaced: {l0} L0, {l1} L1"
    );
    let out = s.restore("restored.db", &["-integrity-check", "full"]);
    let restored = check_sound(&out);
    assert_same(&app, &restored);
    // Every boundary still listed restores to a sound prefix (a file copied up to the next
    // level lists the same boundary twice).
    let list = run(&["wal", &s.url()]);
    let mut seen = std::collections::HashSet::new();
    for line in String::from_utf8_lossy(&list.stdout)
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
    {
        let max = line.split_whitespace().nth(3).unwrap();
        if !seen.insert(max.to_owned()) {
            continue;
        }
        let out = s.restore(&format!("txid-{max}.db"), &["-txid", max]);
        check_sound(&out);
    }
}

/// WAL header salt 1: it changes every time a writer restarts the WAL from its beginning.
fn wal_salt(db: &std::path::Path) -> Option<[u8; 4]> {
    let mut wal = std::fs::File::open(memsync::sqlite::sidecar(db, "-wal")).ok()?;
    let mut h = [0u8; 32];
    std::io::Read::read_exact(&mut wal, &mut h).ok()?;
    Some([h[16], h[17], h[18], h[19]])
}

/// A counter from the replicator's last log line ("stopped at position …: N transactions, …").
fn stopped_count(log: &str, what: &str) -> u64 {
    let line = log
        .lines()
        .rfind(|l| l.contains("stopped at position"))
        .unwrap_or_else(|| panic!("no final log line in:\n{log}"));
    let at = line
        .find(&format!(" {what}"))
        .unwrap_or_else(|| panic!("no {what} in: {line}"));
    let digits: String = line[..at]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.chars().rev().collect::<String>().parse().unwrap()
}

/// memsync owns checkpointing while it runs, so its checkpoints must keep restarting the WAL
/// under a writer that never pauses, even when the application checkpoints on its own after
/// nearly every commit (a tiny `wal_autocheckpoint`) and so often holds SQLite's checkpoint
/// lock when memsync's final PASSIVE wants it. A PASSIVE that gave up on that lock left the WAL
/// growing (to 98 MB in the benchmark) in a version that did not wait for it.
#[test]
fn memsync_checkpoints_keep_restarting_the_wal_under_a_steady_writer() {
    let s = Scene::new(
        "    min-checkpoint-page-count: 50\n",
        "        sync-interval: 200ms\n",
    );
    let app = create_memdb(&s.db);
    app.pragma_update(None, "wal_autocheckpoint", 10).unwrap();
    let r = s.start();
    std::thread::sleep(Duration::from_millis(500));
    let mut salts = std::collections::HashSet::new();
    let mut n = 0;
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_secs(4) {
        n += 1;
        insert_memory(&app, n);
        salts.extend(wal_salt(&s.db));
        std::thread::sleep(Duration::from_millis(4));
    }
    let (st, err) = r.stop();
    assert!(st.success(), "{err}");
    s.wait_for_rows(n as i64);
    // Restarts are counted against memsync's own checkpoints, not against the clock, so a slow
    // machine that runs fewer passes does not fail it: each pass checkpoints (≥ 50 frames) and
    // should restart the WAL. A checkpoint that leaves the WAL unrestarted fails it. The
    // ordering that lost this race in the benchmark (writing the gathered frames before
    // backfilling them) and a final PASSIVE that does not wait for the checkpoint lock do not
    // lose it in a test this short (docs/measurements.md): the ordering is checked
    // deterministically by the next test instead.
    let checkpoints = stopped_count(&err, "checkpoints");
    let restarts = salts.len().saturating_sub(1) as u64;
    assert!(
        checkpoints >= 5 && restarts * 4 >= checkpoints * 3,
        "the WAL was restarted {restarts} times for {checkpoints} checkpoints by memsync in 4 s of writes ({n} commits); replicator log:\n{}",
        s.log_tail()
    );
    let out = s.restore("restored.db", &["-integrity-check", "full"]);
    assert_same(&app, &check_sound(&out));
}

/// The byte offsets of SQLite's WAL index (`-shm`): the header's `mxFrame` (last valid frame)
/// and the checkpoint info's `nBackfill` (frames copied into the database).
fn wal_index_frames(db: &std::path::Path) -> (u32, u32) {
    let shm = std::fs::read(memsync::sqlite::sidecar(db, "-shm")).unwrap();
    let at = |i: usize| u32::from_ne_bytes(shm[i..i + 4].try_into().unwrap());
    (at(16), at(96))
}

/// A checkpointing pass backfills the frames it gathered before writing them to the spool
/// (with a sync interval above 0): otherwise the application's own autocheckpoint does that
/// copy in its commit path, holding SQLite's checkpoint lock when memsync's final PASSIVE needs
/// it, and the WAL goes unrestarted and grows (the benchmark's database+WAL grew by a quarter).
/// Under a load the race is too rare in a short test (see the test above), so this one looks
/// directly: memsync is held at its spool write (fault point `spool-write:pause`, debug builds)
/// while the application never checkpoints, and SQLite's WAL index must show the backfill
/// already done. A pass that found the application holding the write lock writes first by
/// design; so up to three runs, and one must show it.
#[test]
fn a_checkpointing_pass_backfills_before_writing_what_it_gathered() {
    require_fault_points();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let s = Scene::new(
            "    min-checkpoint-page-count: 1\n",
            "        sync-interval: 500ms\n",
        );
        let app = create_memdb(&s.db);
        // Only memsync checkpoints.
        app.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        drop(app);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (db, stop) = (s.db.clone(), stop.clone());
            std::thread::spawn(move || {
                let c = app_conn(&db);
                c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    insert_memory(&c, n);
                    std::thread::sleep(Duration::from_millis(20));
                }
                (c, n)
            })
        };
        let hold = s.dir.path().join("hold");
        std::fs::write(&hold, b"").unwrap();
        // The first spool write is the startup snapshot; the first passes ship the schema's
        // frames in a burst. The eighth is a steady pass's, a sync interval after the last
        // checkpoint restarted the WAL.
        let mut r = s.start_with(&[
            ("MEMSYNC_FAULT", "spool-write:pause:8"),
            ("MEMSYNC_FAULT_HOLD", hold.to_str().unwrap()),
            ("MEMSYNC_COMPACTION_INTERVAL", "1h"),
        ]);
        r.wait_for_log("fault point spool-write: paused");
        let (max_frame, backfilled) = wal_index_frames(&s.db);
        std::fs::remove_file(&hold).unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (app, n) = writer.join().unwrap();
        s.wait_for_rows(n as i64);
        let (st, log) = r.stop();
        assert!(st.success(), "{log}");
        assert_same(&app, &check_sound(&s.restore("restored.db", &[])));
        seen.push((max_frame, backfilled));
        if backfilled > 0 {
            return;
        }
    }
    panic!(
        "in three runs, memsync wrote the frames it gathered before backfilling them (WAL index mxFrame, nBackfill at its spool write: {seen:?})"
    );
}
