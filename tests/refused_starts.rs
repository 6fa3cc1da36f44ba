//! Starts that must be refused before anything is written: a pipe named as the database, a
//! replica inside memsync's own meta directory, a second replicator of one database.

mod common;

use common::refuse::*;
use common::*;

/// A pipe named as the database is refused at once (the open blocked until killed), and a
/// replica inside memsync's own meta directory is a config error (its spool pruned the
/// replica's files: nothing restorable, no error).
#[test]
fn a_pipe_or_a_replica_in_the_spool_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("fifo.db");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) reads the NUL-terminated path and writes no memory of this process.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let o = replicate_with(
        d.path(),
        &format!(
            "dbs:\n  - path: {}\n    replica:\n      path: {}\n",
            fifo.display(),
            d.path().join("r").display()
        ),
    );
    assert_fails(&o, &["fifo.db", "not a regular file"]);
    let db = d.path().join("db.sqlite");
    create_memdb(&db);
    let spool = d.path().join(".db.sqlite-memsync/spool");
    let o = replicate_with(
        d.path(),
        &format!(
            "dbs:\n  - path: {}\n    replica:\n      path: {}\n",
            db.display(),
            spool.display()
        ),
    );
    assert_fails(&o, &["overlaps", ".db.sqlite-memsync", "own directory"]);
    // A `file:/abs` URL is that directory, as in Litestream; never `./file:`.
    let abs = d.path().join("abs");
    let o = run(&[
        "replicate",
        "-once",
        db.to_str().unwrap(),
        &format!("file:{}", abs.display()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(abs.join("snapshots").is_dir());
    let o = run(&["replicate", "-once", db.to_str().unwrap(), "file:rel"]);
    assert_fails(&o, &["absolute path"]);
}

/// Two replicators of one database given different meta directories (`meta-path`) never met
/// at a lock: both ran, writing two histories into one replica that then would not restore.
/// The second is refused (Linux: a lock on the database file itself).
#[cfg(target_os = "linux")]
#[test]
fn a_second_replicator_with_another_meta_path_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("db.sqlite");
    create_memdb(&db);
    let config = |meta: &str| {
        format!(
            "dbs:\n  - path: {}\n    meta-path: {}\n    replica:\n      path: {}\n",
            db.display(),
            d.path().join(meta).display(),
            d.path().join("r").display()
        )
    };
    let first_cfg = d.path().join("a.yml");
    std::fs::write(&first_cfg, config("meta-a")).unwrap();
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["replicate", "-config", first_cfg.to_str().unwrap()]);
    let mut first = Replicator::spawn(cmd, d.path().join("a.log"));
    first.wait_for_log("replicating 1 database(s)");
    let second = d.path().join("second");
    std::fs::create_dir(&second).unwrap();
    let o = replicate_with(&second, &config("meta-c"));
    assert_fails(&o, &["already being replicated", "meta-path"]);
    assert!(
        !d.path().join("meta-c").exists(),
        "the refused start left its meta directory"
    );
    let (st, log) = first.stop();
    assert!(st.success(), "{log}");
    // Once the first has stopped, the other meta directory may take over.
    let o = run(&[
        "replicate",
        "-once",
        "-config",
        second.join("litestream.yml").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A refused start leaves nothing of memsync's behind: not for a rollback-journal database
/// (its meta directory and the replica's lineage record were left), nor for the good database
/// of a config whose other database is refused (its meta directory was made first).
#[test]
fn a_refused_start_leaves_no_meta_directory_or_replica() {
    let d = tempfile::tempdir().unwrap();
    let rb = d.path().join("rollback.db");
    {
        let c = rusqlite::Connection::open(&rb).unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    let r = d.path().join("r");
    let o = run(&["replicate", rb.to_str().unwrap(), r.to_str().unwrap()]);
    assert_fails(&o, &["rollback.db", "delete", "-convert-to-wal"]);
    assert!(!r.exists(), "a replica directory was left");
    assert!(
        !d.path().join(".rollback.db-memsync").exists(),
        "a meta directory was left"
    );
    let good = d.path().join("good.db");
    create_memdb(&good);
    let junk = d.path().join("junk.db");
    std::fs::write(&junk, b"hello, this is not a database at all.............").unwrap();
    let o = replicate_with(
        d.path(),
        &format!(
            "dbs:\n  - path: {}\n    replica:\n      path: {}\n  - path: {}\n    replica:\n      path: {}\n",
            good.display(),
            d.path().join("rg").display(),
            junk.display(),
            d.path().join("rj").display()
        ),
    );
    assert_fails(&o, &["junk.db", "not an SQLite database"]);
    for left in [".good.db-memsync", "rg", "rj", ".junk.db-memsync"] {
        assert!(!d.path().join(left).exists(), "{left} was left");
    }
}
