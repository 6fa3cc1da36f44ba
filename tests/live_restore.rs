//! Restores taken while a replicator ships and compacts (issue 12, defect 6): each one must
//! succeed and be a prefix of the commits, never a spurious "gap in replica history".

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;

/// 200 restores during `sync-interval: 0` replication with a steady writer and compaction every
/// second: none fails, and each holds at least as many rows as the one before.
#[test]
fn restores_during_live_replication_never_fail_and_only_move_forward() {
    let s = Scene::new("", "        sync-interval: 0s\n");
    let app = create_memdb(&s.db);
    insert_memory(&app, 1);
    let r = s.start_with(&[("MEMSYNC_COMPACTION_INTERVAL", "1s")]);
    s.wait_for_rows(1);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, db) = (stop.clone(), s.db.clone());
        std::thread::spawn(move || {
            let app = app_conn(&db);
            let mut i = 1;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                insert_memory(&app, i);
                std::thread::sleep(Duration::from_millis(2));
            }
            i
        })
    };
    let source = app_conn(&s.db);
    let mut last = 0;
    let mut failures = Vec::new();
    for k in 0..200 {
        let out = s.dir.path().join(format!("live-{k}.db"));
        let o = run(&["restore", "-o", out.to_str().unwrap(), &s.url()]);
        if !o.status.success() {
            failures.push(format!(
                "restore {k}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
            continue;
        }
        let c = check_sound(&out);
        let n = assert_prefix(&source, &c);
        assert!(n >= last, "restore {k} went back from {last} to {n} rows");
        last = n;
        drop(c);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", out.display()));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    let (st, log) = r.stop();
    assert!(st.success(), "{log}");
    assert!(
        failures.is_empty(),
        "{} of 200 restores failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(last > 1, "the writer's commits never showed up");
    let out = s.restore("final.db", &[]);
    let restored = check_sound(&out);
    assert_eq!(rows(&restored).len() as u64, written);
    assert_same(&source, &restored);
}
