//! An application's TRUNCATE checkpoint held up by another reader (a long read transaction,
//! another replicator) holds SQLite's write lock until that reader ends. memsync steps aside
//! for it after copying what was committed; that copy used to wait for the checkpoint to end
//! (20 s and more), while the replica, `/health` and point-in-time restores showed the state
//! from before.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn commits_before_a_held_up_checkpoint_ship_while_it_waits() {
    let s = Scene::new("", "        sync-interval: 1s\n");
    let app = create_memdb(&s.db);
    let r = s.start();
    s.wait_for_rows(0);
    for i in 1..=20 {
        insert_memory(&app, i);
    }
    // A reader that holds its snapshot, so a TRUNCATE checkpoint must wait for it.
    let reader = app_conn(&s.db);
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT count(*) FROM memories", [], |r| r.get(0))
        .unwrap();
    for i in 21..=150 {
        insert_memory(&app, i);
    }
    let db = s.db.clone();
    let checkpoint = std::thread::spawn(move || {
        let c = app_conn(&db);
        c.busy_timeout(Duration::from_secs(60)).unwrap();
        // SQLite answers busy at once, without its busy handler, while another connection
        // (memsync's own passive checkpoint) holds the checkpoint lock: asked again then.
        let t0 = Instant::now();
        loop {
            let busy: i64 = c
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                .unwrap();
            if busy == 0 || t0.elapsed() > Duration::from_secs(60) {
                break busy;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut k = 0;
    let got = loop {
        k += 1;
        let out = s.dir.path().join(format!("during-{k}.db"));
        let o = run(&["restore", "-o", out.to_str().unwrap(), &s.url()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let n = rows(&check_sound(&out)).len();
        if n == 150 || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        !checkpoint.is_finished(),
        "the checkpoint was not held up: the test proves nothing"
    );
    assert_eq!(
        got,
        150,
        "while the checkpoint waited, the replica stayed behind; log:\n{}",
        s.log_tail()
    );
    reader.execute_batch("COMMIT").unwrap();
    let busy = checkpoint.join().unwrap();
    assert_eq!(busy, 0, "the application's checkpoint did not complete");
    for i in 151..=160 {
        insert_memory(&app, i);
    }
    let out = s.wait_for_rows(160);
    assert_same(&app, &check_sound(&out));
    let (status, log) = r.stop();
    assert!(status.success(), "{log}");
}

/// memsync started while the application holds the write lock (a long transaction) waits for
/// it instead of exiting with "database is locked" after a second.
#[test]
fn a_start_while_the_application_holds_the_write_lock_waits_for_it() {
    let s = Scene::new("", "        sync-interval: 1s\n");
    let app = create_memdb(&s.db);
    for i in 1..=10 {
        insert_memory(&app, i);
    }
    app.execute_batch("CREATE TABLE side(x)").unwrap();
    let holder = app_conn(&s.db);
    holder
        .execute_batch("BEGIN IMMEDIATE; INSERT INTO side VALUES (1)")
        .unwrap();
    let mut r = s.start();
    std::thread::sleep(Duration::from_secs(3));
    assert!(r.running(), "memsync exited:\n{}", r.log());
    holder.execute_batch("COMMIT").unwrap();
    insert_memory(&app, 11);
    let out = s.wait_for_rows(11);
    assert_same(&app, &check_sound(&out));
    let (status, log) = r.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("starting as soon as it is released"), "{log}");
}
