//! What sits at a restore's output: leftovers of another database and files that appear
//! while the restore runs are never written over; errors reach a closed stderr without panic.

mod common;

use common::refuse::*;
use common::*;

/// What sits at the output's name decides before and after the restore: a rollback journal
/// alone is refused like a stale WAL (SQLite would roll the restored file back with another
/// database's pages at its first open); `-if-db-not-exists` with a leftover and no database is
/// an error, not "nothing to do"; and a file that appears at the output while the restore runs
/// is never replaced (it was: the restore's rename went over it, exit 0).
#[test]
fn the_restore_output_is_never_written_over_a_leftover_or_a_newcomer() {
    require_fault_points();
    let s = Scene::new("", "");
    let app = create_memdb(&s.db);
    for i in 1..=5 {
        insert_memory(&app, i);
    }
    let o = run(&["replicate", "-once", s.db.to_str().unwrap(), &s.url()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = s.dir.path().join("out.db");
    let journal = s.dir.path().join("out.db-journal");
    std::fs::write(&journal, b"a hot journal of another database").unwrap();
    let o = run(&["restore", "-o", out.to_str().unwrap(), &s.url()]);
    assert_fails(&o, &["out.db-journal exists without its database"]);
    std::fs::remove_file(&journal).unwrap();
    let wal = s.dir.path().join("out.db-wal");
    std::fs::write(&wal, b"").unwrap();
    let o = run(&[
        "restore",
        "-if-db-not-exists",
        "-o",
        out.to_str().unwrap(),
        &s.url(),
    ]);
    assert_fails(&o, &["out.db-wal exists without its database"]);
    std::fs::remove_file(&wal).unwrap();
    assert!(!out.exists());
    // Held once the restored file is written; then the application's file appears.
    let hold = s.dir.path().join("hold");
    std::fs::write(&hold, b"").unwrap();
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["restore", "-o", out.to_str().unwrap(), &s.url()])
        .env("MEMSYNC_FAULT", "restore-finish:pause")
        .env("MEMSYNC_FAULT_HOLD", &hold);
    let mut r = Replicator::spawn(cmd, s.dir.path().join("restore.log"));
    r.wait_for_log("fault point restore-finish: paused");
    std::fs::write(&out, b"precious application data").unwrap();
    std::fs::remove_file(&hold).unwrap();
    let (st, log) = r.wait();
    assert!(!st.success(), "{log}");
    assert!(log.contains("out.db already exists"), "{log}");
    assert_eq!(std::fs::read(&out).unwrap(), b"precious application data");
    let left: Vec<_> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}\n{log}");
    // A WAL of the output's name that appears meanwhile stops it too.
    let out2 = s.dir.path().join("out2.db");
    std::fs::write(&hold, b"").unwrap();
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["restore", "-o", out2.to_str().unwrap(), &s.url()])
        .env("MEMSYNC_FAULT", "restore-finish:pause")
        .env("MEMSYNC_FAULT_HOLD", &hold);
    let mut r = Replicator::spawn(cmd, s.dir.path().join("restore2.log"));
    r.wait_for_log("fault point restore-finish: paused");
    std::fs::write(s.dir.path().join("out2.db-wal"), b"another database's WAL").unwrap();
    std::fs::remove_file(&hold).unwrap();
    let (st, log) = r.wait();
    assert!(!st.success(), "{log}");
    assert!(
        log.contains("out2.db-wal exists without its database"),
        "{log}"
    );
    assert!(!out2.exists(), "{log}");
}

/// An error written to a closed standard error (`… 2>&1 | head -0`) keeps the command's exit
/// code: `eprintln!` panicked there (exit 101).
#[test]
fn a_closed_stderr_keeps_the_exit_code() {
    let d = tempfile::tempdir().unwrap();
    let missing = format!("file://{}", d.path().join("missing").display());
    let out = d.path().join("out.db");
    let mut child = std::process::Command::new(BIN)
        .args(["restore", "-o", out.to_str().unwrap(), &missing])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let st = child.wait().unwrap();
    assert_ne!(st.code(), Some(101), "panicked writing the error");
    assert!(!st.success());
}
