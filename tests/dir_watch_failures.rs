//! A watched directory when starting a database fails or its files go: tried again at every
//! scan, never stopping the others, and nothing made again under a remover.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::watched::{Scene, conn, create, rows};
use common::{BIN, Replicator};

/// A database whose start fails when first found (here another replicator holds it, through
/// a second name; a file still being copied in or a passing lack of file descriptors did the
/// same) is tried again at every scan, and said once: it was never tried again while the
/// process ran.
#[cfg(target_os = "linux")]
#[test]
fn a_database_that_failed_to_start_is_tried_again() {
    let s = Scene::new();
    let mut r = s.replicate();
    r.wait_for_log("replicating 0 database(s)");
    let other = held_elsewhere(&s);
    r.wait_for_log("x.db: found in a watched directory, not replicated");
    std::thread::sleep(Duration::from_millis(2500));
    let (st, log) = other.stop();
    assert!(st.success(), "{log}");
    let log = picked_up_and_shipped(&s, r);
    assert_eq!(log.matches("not replicated").count(), 1, "{log}");
}

/// `rm -rf` of a subdirectory of databases while memsync replicates them: the removal
/// succeeds and stays done (memsync made spool directories and `-shm` files there again under
/// the remover, whose `rmdir` then failed), and no ERROR is logged for a normal deletion.
#[test]
fn a_removed_subdirectory_of_databases_stays_removed() {
    let s = Scene::new();
    let mut r = s.replicate();
    r.wait_for_log("replicating 0 database(s)");
    let ten = s.data.join("ten");
    std::fs::create_dir(&ten).unwrap();
    for i in 0..20 {
        drop(create(&ten.join(format!("db{i}.db")), 3));
    }
    for i in 0..20 {
        r.wait_for_log(&format!("ten/db{i}.db: new database, replicating"));
    }
    // Let memsync step aside from the idle databases, as the tenant's would be.
    std::thread::sleep(Duration::from_secs(4));
    // A state file memsync renames into a database's meta directory while `rm -rf` walks it
    // can make one `rmdir` find it not empty (the machine under load, memsync not yet stepped
    // aside): as a person would, the removal is run again; what matters is that it stays done.
    let mut tries = 0;
    while let Err(e) = std::fs::remove_dir_all(&ten) {
        tries += 1;
        assert!(tries < 5, "rm -rf keeps failing: {e}\n{}", r.log());
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(!ten.exists(), "made again: {:?}\n{}", walk(&ten), r.log());
    let (st, log) = r.stop();
    assert!(st.success(), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            out.push(e.path());
            out.extend(walk(&e.path()));
        }
    }
    out
}

/// A database of a watched directory held by another replicator when memsync starts: the
/// others start, and it is tried again at every scan (the whole start failed, leaving its
/// meta directory).
#[cfg(target_os = "linux")]
#[test]
fn a_database_held_elsewhere_at_start_does_not_stop_the_others() {
    let s = Scene::new();
    drop(create(&s.data.join("a.db"), 2));
    let other = held_elsewhere(&s);
    let mut r = s.replicate();
    r.wait_for_log("replicating 1 database(s)");
    let (st, log) = other.stop();
    assert!(st.success(), "{log}");
    picked_up_and_shipped(&s, r);
}

/// `x.db` in the watched directory, held by another replicator: made as `x.tmp` (a name the
/// pattern does not match), replicated by another process, then given the name `x.db` too
/// (a hard link: the same file). That replicator, running.
fn held_elsewhere(s: &Scene) -> Replicator {
    let tmp = s.data.join("x.tmp");
    let made = create(&tmp, 3);
    // Everything in the database file: the second name has a WAL of its own.
    made.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    drop(made);
    let mut other = {
        let mut c = std::process::Command::new(BIN);
        c.args(["replicate", tmp.to_str().unwrap()])
            .arg(s.tmp.path().join("elsewhere"));
        Replicator::spawn(c, s.tmp.path().join("other.log"))
    };
    other.wait_for_log("replicating 1 database(s)");
    std::fs::hard_link(&tmp, s.data.join("x.db")).unwrap();
    other
}

/// Once the other replicator let go: `x.db` is picked up, a commit reaches its replica, and
/// `r` stops cleanly; its log.
fn picked_up_and_shipped(s: &Scene, mut r: Replicator) -> String {
    r.wait_for_log("x.db: new database, replicating");
    let x = conn(&s.data.join("x.db"));
    x.execute("INSERT INTO t(v) VALUES ('after')", []).unwrap();
    s.wait_for("x.db", &rows(&x), &r);
    let (st, log) = r.stop();
    assert!(st.success(), "{log}");
    log
}
