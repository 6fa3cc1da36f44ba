//! A server that loses memories without deleting them (restored from an older backup, or a new
//! server at the same address): a memory it had at an earlier pull and now shows neither live
//! nor as a tombstone was lost there, not deleted. Sync used to remove it here too, so it was
//! gone everywhere; now it stays here and is sent again. A memory the server did delete is
//! still removed.

mod common;

use std::path::Path;

use common::mms::{Server, curl, hash_of, remote_and_local, replicate_once};
use serde_json::json;

/// Copies the stopped server's database files (the database, and its WAL if one was left).
fn copy_db(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let name = format!("sqlite_vec.db{suffix}");
        let _ = std::fs::remove_file(to.join(&name));
        if from.join(&name).exists() {
            std::fs::copy(from.join(&name), to.join(&name)).unwrap();
        }
    }
}

/// The server, stopped, gets `backup`'s database back, then starts again.
fn roll_back(server: &mut Server, backup: &Path) {
    server.stop();
    copy_db(backup, server.db().parent().unwrap());
    server.restart();
}

fn snapshot(server: &mut Server, to: &Path) {
    server.stop();
    copy_db(server.db().parent().unwrap(), to);
    server.restart();
}

#[test]
fn a_server_restored_from_an_older_backup_gets_back_what_it_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (mut remote, local, m) = remote_and_local(dir.path());
    let old = "stored before the backup";
    let precious = "stored after the backup, precious";
    let pulled = "stored by another client after the backup";
    m.ok(&["store", "--tags", "m", old]);
    m.ok(&["sync"]);
    let backup = dir.path().join("backup");
    snapshot(&mut remote, &backup);
    m.ok(&["store", "--tags", "m", precious]);
    remote.post(pulled, &["other"], json!({}));
    m.ok(&["sync"]);
    assert_eq!(local.rows_with_hash(&hash_of(precious)), 1);
    assert_eq!(local.rows_with_hash(&hash_of(pulled)), 1);

    roll_back(&mut remote, &backup);
    assert_eq!(remote.rows_with_hash(&hash_of(precious)), 0);
    let plan = m.ok(&["sync", "--dry-run"]);
    assert!(
        plan.contains("removed 0") && plan.contains("resend") && !plan.contains("remove "),
        "{plan}"
    );
    let out = m.ok(&["sync"]);
    assert!(out.contains("removed 0"), "{out}");
    assert!(
        out.contains("2 memories the server had at an earlier pull are gone from it"),
        "{out}"
    );
    for c in [old, precious, pulled] {
        assert_eq!(
            local.rows_with_hash(&hash_of(c)),
            1,
            "{c} is gone here: {out}"
        );
        assert_eq!(
            remote.rows_with_hash(&hash_of(c)),
            1,
            "{c} is not back: {out}"
        );
    }
    assert!(remote.tags(precious).contains(&"m".to_owned()));
    assert_eq!(remote.tags(pulled), vec!["other"]);
    // Settled: the next sync moves nothing.
    let out = m.ok(&["sync"]);
    assert!(
        out.contains("removed 0") && !out.contains("gone from it"),
        "{out}"
    );

    // A delete on the server still removes the memory here.
    let (status, body) = curl(
        "DELETE",
        &format!("{}/api/memories/{}", remote.url(), hash_of(precious)),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let out = m.ok(&["sync"]);
    assert!(out.contains("removed 1"), "{out}");
    assert_eq!(local.rows_with_hash(&hash_of(precious)), 0);
    assert_eq!(remote.rows_with_hash(&hash_of(precious)), 0);
}

/// A machine pointed at a new, empty server (same address) sends it every memory rather than
/// removing every memory here.
#[test]
fn a_new_empty_server_gets_every_memory_instead_of_emptying_this_machine() {
    let dir = tempfile::tempdir().unwrap();
    let (mut remote, local, m) = remote_and_local(dir.path());
    let contents: Vec<String> = (0..5).map(|i| format!("memory number {i}")).collect();
    for c in &contents {
        m.ok(&["store", "--tags", "n", c]);
    }
    m.ok(&["sync"]);
    remote.stop();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", remote.db().display()));
    }
    remote.restart();
    assert_eq!(remote.live_count(), 0);
    let out = m.ok(&["sync"]);
    assert!(out.contains("removed 0"), "{out}");
    for c in &contents {
        assert_eq!(local.rows_with_hash(&hash_of(c)), 1, "{c}: {out}");
        assert_eq!(remote.rows_with_hash(&hash_of(c)), 1, "{c}: {out}");
    }
}

/// Pulling from the server's replica: a memory neither the replica nor the server shows is
/// removed only if the server's tombstones show it deleted.
#[test]
fn a_replica_pull_sends_back_what_the_server_lost_and_removes_what_it_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut remote, local, m) = remote_and_local(dir.path());
    let replica = format!("file://{}", dir.path().join("replica").display());
    let m = m.with("REMOTE_MEMORY_REPLICA", &replica);
    let old = "in the backup and in the replica";
    let deleted = "stored, then deleted on the server";
    let precious = "stored after the backup";
    remote.post(old, &["r"], json!({}));
    replicate_once(&remote, &replica);
    m.ok(&["sync"]);
    m.ok(&["store", "--tags", "r", deleted]);
    replicate_once(&remote, &replica);
    m.ok(&["sync"]);
    let backup = dir.path().join("backup");
    snapshot(&mut remote, &backup);
    m.ok(&["store", "--tags", "r", precious]);
    replicate_once(&remote, &replica);
    m.ok(&["sync"]);
    assert_eq!(local.rows_with_hash(&hash_of(precious)), 1);
    roll_back(&mut remote, &backup);
    let (status, body) = curl(
        "DELETE",
        &format!("{}/api/memories/{}", remote.url(), hash_of(deleted)),
        None,
    );
    assert_eq!(status, 200, "{body}");
    // The replica follows the server: `precious` gone without a trace, `deleted` a tombstone.
    remote.stop();
    replicate_once(&remote, &replica);
    remote.restart();
    let out = m.ok(&["sync"]);
    assert!(out.contains("removed 1"), "{out}");
    assert!(
        out.contains("1 memories the server had at an earlier pull are gone from it"),
        "{out}"
    );
    assert_eq!(local.rows_with_hash(&hash_of(deleted)), 0, "{out}");
    assert_eq!(local.rows_with_hash(&hash_of(precious)), 1, "{out}");
    assert_eq!(remote.rows_with_hash(&hash_of(precious)), 1, "{out}");
    assert_eq!(local.rows_with_hash(&hash_of(old)), 1, "{out}");
}
