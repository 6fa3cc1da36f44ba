//! The replicator killed with SIGKILL at random moments while the application writes: every
//! intermediate replica restores to exactly the source's first n memories (nothing torn, nothing
//! foreign, no gap), and after a final restart the restored database equals the source exactly.
//! (`faults.rs` crashes it at named points and simulates a power loss.)

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;

fn lcg(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 33
}

fn kill_loop(sync_interval: &str, rounds: usize, seed: u64) {
    let s = Scene::new(
        "    checkpoint-interval: 1s\n    min-checkpoint-page-count: 200\n",
        &format!("        sync-interval: {sync_interval}\n"),
    );
    create_memdb(&s.db);
    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicU64::new(0));
    let writer = {
        let (db, stop, committed) = (s.db.clone(), stop.clone(), committed.clone());
        std::thread::spawn(move || {
            let c = app_conn(&db);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                insert_memory(&c, i);
                committed.store(i, Ordering::Relaxed);
                // Now and then the application checkpoints on its own.
                if i % 97 == 0 {
                    c.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
                        .unwrap();
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            c
        })
    };
    // The source as the application sees it, to compare every intermediate restore with.
    let source = app_conn(&s.db);
    let mut seed = seed;
    for round in 0..rounds {
        // Compaction every second, so kills also land in the middle of merges.
        let r = s.start_with(&[("MEMSYNC_COMPACTION_INTERVAL", "1s")]);
        std::thread::sleep(Duration::from_millis(100 + lcg(&mut seed) % 700));
        r.kill();
        // Whatever the replica holds now is exactly the source's first n memories.
        let out = s.dir.path().join(format!("round-{round}.db"));
        let o = run(&["restore", "-o", out.to_str().unwrap(), &s.url()]);
        if o.status.success() {
            let n = assert_prefix(&source, &check_sound(&out)) as u64;
            assert!(n <= committed.load(Ordering::Relaxed));
        } else {
            // Only acceptable before the very first file reached the replica.
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                err.contains("holds no backup") || err.contains("does not exist"),
                "{err}"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let app = writer.join().unwrap();
    // Restarts after a crash replay the spool on top of the saved page map instead of taking a
    // snapshot each time (a round killed before its first checkpoint still needs one).
    let snapshots = std::fs::read_dir(s.replica.join("snapshots")).map_or(0, |d| d.count());
    eprintln!("{snapshots} snapshots after {rounds} crashes");
    assert!(
        snapshots < rounds,
        "{snapshots} snapshots after {rounds} crashes"
    );
    let total = committed.load(Ordering::Relaxed);
    let r = s.start();
    s.wait_for_rows(total as i64);
    let (st, err) = r.stop();
    assert!(st.success(), "{err}");
    let out = s.restore("final.db", &["-integrity-check", "full"]);
    let restored = check_sound(&out);
    assert_same(&app, &restored);
    assert_eq!(rows(&restored).len() as u64, total);
}

#[test]
fn sigkill_during_writes_asap_shipping() {
    kill_loop("0s", 12, 7);
}

#[test]
fn sigkill_during_writes_batched_shipping() {
    kill_loop("200ms", 8, 1234);
}

/// A restart that cannot replay its spool (no saved page map) starts a new chain with a
/// snapshot; when the replica was behind the spool, the replica must be brought through the
/// old chain and on to that snapshot, even if nothing is committed afterwards. (It used to stop
/// at the old chain's end and stay stale until the next commit: the final replica of the crash
/// tests, now and then, never caught up.)
#[test]
fn a_new_chain_after_a_crash_reaches_the_replica_without_further_commits() {
    let s = Scene::new("", "        sync-interval: 200ms\n");
    let app = create_memdb(&s.db);
    let r = s.start();
    for i in 1..=50 {
        insert_memory(&app, i);
    }
    s.wait_for_rows(50);
    // The replica becomes unwritable: segments are spooled but not shipped.
    let segments = s.replica.join("segments");
    let away = s.replica.join("segments.away");
    std::fs::create_dir_all(&segments).unwrap(); // the first rows may all be in the snapshot
    std::fs::rename(&segments, &away).unwrap();
    std::fs::write(&segments, b"not a directory").unwrap();
    let spool = s.dir.path().join(".db.sqlite-memsync/spool/segments/0");
    let spooled = || std::fs::read_dir(&spool).map_or(0, |d| d.count());
    let before = spooled();
    for i in 51..=100 {
        insert_memory(&app, i);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while spooled() <= before {
        assert!(std::time::Instant::now() < deadline, "nothing spooled");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    r.kill();
    std::fs::remove_file(&segments).unwrap();
    std::fs::rename(&away, &segments).unwrap();
    // Commits the spool never saw, and no page map to replay onto: the restart snapshots.
    for i in 101..=130 {
        insert_memory(&app, i);
    }
    std::fs::remove_file(s.dir.path().join(".db.sqlite-memsync/pagemap")).unwrap();
    let r = s.start();
    s.wait_for_rows(130);
    let (st, err) = r.stop();
    assert!(st.success(), "{err}");
    assert!(
        s.log_tail().contains("snapshot at position"),
        "the restart took the new-chain path:\n{}",
        s.log_tail()
    );
    let restored = check_sound(&s.restore("final.db", &["-integrity-check", "full"]));
    assert_same(&app, &restored);
}

/// `replicate -once` run again and again (from cron) on a database whose application closed
/// cleanly in between (SQLite checkpointed and deleted its WAL) and changed nothing adds no
/// file and no restore point; a change in between is still shipped (before: every run added an
/// empty segment as a new position, so the history grew for ever).
#[test]
fn a_rerun_on_an_unchanged_database_adds_no_restore_point() {
    let s = Scene::new("", "");
    let once = || {
        let o = run(&["replicate", "-once", "-config", s.config.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let files = || walk(&s.replica).len();
    let app = create_memdb(&s.db);
    insert_memories(&app, 1..=5);
    drop(app);
    once();
    let before = files();
    for _ in 0..3 {
        // The application opens and closes the database, writing nothing.
        drop(app_conn(&s.db));
        once();
    }
    assert_eq!(files(), before, "{:?}", walk(&s.replica));
    let app = app_conn(&s.db);
    insert_memory(&app, 6);
    drop(app);
    once();
    assert!(files() > before);
    let out = s.restore("after.db", &[]);
    assert_same(&app_conn(&s.db), &check_sound(&out));
}

/// Every file under `dir`, relative.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}
