//! File replicas on another file system than the database: no hard links there, so every
//! file is copied.

mod common;

use std::time::Duration;

use common::*;

/// A file replica on another file system than the database (and so its spool) cannot take
/// hard links: placement steps aside, the shipper copies every file, and the replica restores
/// to the source. (`/dev/shm` is the second file system: Linux only.)
#[cfg(target_os = "linux")]
#[test]
fn a_file_replica_on_another_file_system_gets_copies() {
    use std::os::unix::fs::MetadataExt;
    let shm =
        tempfile::tempdir_in("/dev/shm").expect("a tmpfs at /dev/shm, the second file system");
    let mut s = Scene::new("", "        sync-interval: 0s\n");
    let dev = |p: &std::path::Path| std::fs::metadata(p).unwrap().dev();
    assert_ne!(
        dev(s.dir.path()),
        dev(shm.path()),
        "/dev/shm is on the test directory's file system"
    );
    s.replica = shm.path().join("replica");
    std::fs::write(
        &s.config,
        format!(
            "dbs:\n  - path: {}\n    replicas:\n      - type: file\n        path: {}\n        sync-interval: 0s\n",
            s.db.display(),
            s.replica.display()
        ),
    )
    .unwrap();
    let app = create_memdb(&s.db);
    for i in 1..=100 {
        insert_memory(&app, i);
    }
    let r = s.start();
    s.wait_for_rows(100);
    for i in 101..=300 {
        insert_memory(&app, i);
        if i % 50 == 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    s.wait_for_rows(300);
    let (status, err) = r.stop();
    assert!(status.success(), "replicate exited {status}: {err}");
    let restored = check_sound(&s.restore("restored.db", &["-integrity-check", "full"]));
    assert_same(&app, &restored);
    let files = common::serve::files_under(&s.replica);
    assert!(
        files.len() > 2,
        "no segment was copied, only {files:?} on the replica"
    );
}

/// What a replicator killed while copying left under a temporary name is removed by the next
/// one (before: a killed snapshot copy stayed on the replica for ever, 21 MB in the tester's
/// case); a temporary file of a process that still runs is left alone.
#[test]
fn a_killed_copy_leaves_nothing_behind_after_the_next_start() {
    let s = Scene::new("", "");
    let app = create_memdb(&s.db);
    insert_memories(&app, 1..=5);
    let once = || {
        let o = run(&["replicate", "-once", "-config", s.config.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    once();
    // A pid above Linux's largest possible one: no such process.
    let dead = s
        .replica
        .join("snapshots/0000000000000001-0000000000000001.snap.4194399.tmp");
    let staged = s
        .replica
        .join("segments/0/0000000000000002-0000000000000002-0000000000000002.seg#17");
    let alive = s.replica.join(format!(
        "snapshots/0000000000000001-0000000000000001.snap.{}.tmp",
        std::process::id()
    ));
    std::fs::create_dir_all(staged.parent().unwrap()).unwrap();
    for p in [&dead, &staged, &alive] {
        std::fs::write(p, b"half a copy").unwrap();
    }
    insert_memory(&app, 6);
    once();
    assert!(!dead.exists() && !staged.exists(), "stale copies left");
    assert!(alive.exists(), "a running process's file was removed");
    let out = s.restore("after.db", &[]);
    assert_same(&app, &check_sound(&out));
}
