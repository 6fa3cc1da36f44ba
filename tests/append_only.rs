//! A replica that refuses deletions (an append-only backup target: a WebDAV location without
//! DELETE, a bucket with a deny-delete policy) still gets every new file.

mod common;

use std::time::{Duration, Instant};

use common::webdav;
use common::*;

/// Merged level-0 files come due for deletion within seconds here (`l0-retention: 0s`,
/// 1 s level-1 buckets); the WebDAV location answers DELETE with 405. Shipping to it stopped
/// at the first refused deletion, for good (the newest file stayed where it was while the
/// application wrote on); now the deletion is retried later and the replica keeps up.
#[test]
fn a_replica_that_refuses_deletes_keeps_getting_new_files() {
    let dav = webdav::shared();
    let url = dav.url("append-only/db");
    let s = Scene::new(
        "",
        &format!(
            "      - url: \"{url}\"\n        name: dav\n        sync-interval: 200ms\nl0-retention: 0s\nlevels:\n  - interval: 1s\n"
        ),
    );
    let app = create_memdb(&s.db);
    let mut r = s.start_with(&[("MEMSYNC_COMPACTION_INTERVAL", "1s")]);
    r.wait_for_log("replicating 1 database(s)");
    let mut n = 0;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(14) {
        for _ in 0..10 {
            n += 1;
            insert_memory(&app, n);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let out = s.dir.path().join("from-dav.db");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = 0;
    while Instant::now() < deadline {
        let _ = std::fs::remove_file(&out);
        let o = run(&["restore", "-o", out.to_str().unwrap(), &url]);
        if o.status.success() {
            got = count(&out);
            if got == n as i64 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let (st, log) = r.stop();
    assert!(st.success(), "{log}");
    assert_eq!(got, n as i64, "the append-only replica fell behind:\n{log}");
    assert!(log.contains("new files are still shipped"), "{log}");
}

fn count(db: &std::path::Path) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM memories", [], |r| r.get(0))
        .unwrap()
}
