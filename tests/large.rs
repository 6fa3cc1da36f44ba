//! A database growing past 1 GiB, across SQLite's lock page (the page at byte offset 2^30 that
//! SQLite never uses): replicated and restored with nothing lost. Slow (writes ~1.1 GB).

mod common;

use std::time::Duration;

use common::*;

#[test]
fn database_past_the_lock_page_restores_exactly() {
    let s = Scene::new("", "        sync-interval: 0s\n");
    let app = create_memdb(&s.db);
    for i in 1..=20 {
        insert_memory(&app, i);
    }
    let r = s.start();
    app.execute_batch("CREATE TABLE big(id INTEGER PRIMARY KEY, b BLOB)")
        .unwrap();
    // ~1.1 GB in a few transactions of 64 MB: the WAL and the checkpoints cross the lock page.
    for _ in 0..18 {
        let tx = app.unchecked_transaction().unwrap();
        for _ in 0..64 {
            tx.execute(
                "INSERT INTO big(b) VALUES (randomblob(1000) || zeroblob(1047576))",
                [],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    for i in 21..=60 {
        insert_memory(&app, i);
    }
    let size = std::fs::metadata(&s.db).unwrap().len()
        + std::fs::metadata(s.db.with_file_name("db.sqlite-wal")).map_or(0, |m| m.len());
    assert!(size > 1 << 30, "database did not pass 1 GiB ({size} bytes)");
    s.wait_for_rows(60);
    std::thread::sleep(Duration::from_millis(500));
    let (st, err) = r.stop();
    assert!(st.success(), "{err}");
    let out = s.restore("restored.db", &["-integrity-check", "quick"]);
    let restored = check_sound(&out);
    assert_same(&app, &restored);
    let count = |c: &rusqlite::Connection| -> (i64, i64) {
        c.query_row("SELECT count(*), sum(length(b)) FROM big", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
    };
    assert_eq!(count(&app), count(&restored));
    let page_count: i64 = restored
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    let page_size: i64 = restored
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    assert!(page_count * page_size > 1 << 30);
}
