//! The merge base over time, against real mcp-memory-service servers: a machine's own pushed
//! edit becomes the common base, so a later edit elsewhere is never reverted, a second edit is
//! never lost, and a deletion on the server after a push is never undone. Each sequence is the
//! one a user runs (store, edit, sync, edit elsewhere, sync), under every policy.

mod common;

use common::mms::{Machine, Server, curl, hash_of, remote_and_local};
use serde_json::json;

fn delete_on(server: &Server, content: &str) {
    let (status, _) = curl(
        "DELETE",
        &format!("{}/api/memories/{}", server.url(), hash_of(content)),
        None,
    );
    assert_eq!(status, 200);
}

/// Whether the server holds `content` live.
fn has(server: &Server, content: &str) -> bool {
    server.rows_with_hash(&hash_of(content)) == 1
}

/// Open conflicts in a machine's staging database.
fn open_conflicts(m: &Machine) -> i64 {
    let c = rusqlite::Connection::open(m.staging_path()).unwrap();
    c.query_row(
        "SELECT COUNT(*) FROM conflicts WHERE resolution IS NULL",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn a_later_edit_on_the_server_is_never_reverted_under_any_policy() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    for policy in ["merge", "local", "remote", "manual"] {
        let m = m.with("SYNC_CONFLICT_RESOLUTION", policy);
        let x = format!("a memory machine B stored, policy {policy}");
        local.post(&x, &["t"], json!({}));
        m.ok(&["sync"]);
        assert!(has(&remote, &x), "{policy}: stored on the server");
        // B edits it locally and syncs: the edit reaches the server.
        local.put_tags(&x, &["t", "b-edit"]);
        m.ok(&["sync"]);
        assert_eq!(
            remote.tags(&x),
            vec!["b-edit", "t"],
            "{policy}: B's edit pushed"
        );
        // Another client edits it on the server; B syncs without having changed anything.
        remote.put_tags(&x, &["t", "b-edit", "colleague"]);
        let out = m.ok(&["sync"]);
        assert_eq!(
            remote.tags(&x),
            vec!["b-edit", "colleague", "t"],
            "{policy}: the colleague's later edit was reverted: {out}"
        );
        assert_eq!(
            local.tags(&x),
            vec!["b-edit", "colleague", "t"],
            "{policy}: B's local copy follows the server"
        );
        assert_eq!(
            open_conflicts(&m),
            0,
            "{policy}: no conflict: B changed nothing"
        );
    }
}

#[test]
fn a_second_edit_equal_to_the_old_base_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let x = "edited, then edited back";
    local.post(x, &["t"], json!({}));
    m.ok(&["sync"]);
    local.put_tags(x, &["t", "first"]);
    m.ok(&["sync"]);
    assert_eq!(remote.tags(x), vec!["first", "t"]);
    // Back to the tags the machine first synced: still a change, and it reaches the server.
    local.put_tags(x, &["t"]);
    m.ok(&["sync"]);
    assert_eq!(local.tags(x), vec!["t"], "the second edit was thrown away");
    assert_eq!(remote.tags(x), vec!["t"]);
}

#[test]
fn a_delete_on_the_server_after_a_pushed_edit_is_not_undone() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let x = "edited here, pushed, then deleted on the server";
    local.post(x, &["t"], json!({}));
    m.ok(&["sync"]);
    local.put_tags(x, &["t", "mine"]);
    m.ok(&["sync"]);
    assert_eq!(remote.tags(x), vec!["mine", "t"]);
    delete_on(&remote, x);
    let out = m.ok(&["sync"]);
    assert!(!has(&remote, x), "the deleted memory came back: {out}");
    assert_eq!(
        local.live_count(),
        0,
        "the deletion reached the local database: {out}"
    );
    // And it stays deleted.
    m.ok(&["sync"]);
    assert!(!has(&remote, x));
}

#[test]
fn two_machines_under_local_policy_converge_without_repushing_stale_versions() {
    let dir = tempfile::tempdir().unwrap();
    let remote = Server::start(&dir.path().join("remote"));
    let local_a = Server::start(&dir.path().join("local-a"));
    let local_b = Server::start(&dir.path().join("local-b"));
    let machine = |name: &str, local: &Server| {
        Machine::new(&dir.path().join(name), remote.port)
            .with("MCP_MEMORY_SQLITE_PATH", &local.db().display().to_string())
            .with("SYNC_CONFLICT_RESOLUTION", "local")
    };
    let (a, b) = (machine("a", &local_a), machine("b", &local_b));
    let x = "shared by two machines";
    local_a.post(x, &["t"], json!({}));
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    assert_eq!(local_b.tags(x), vec!["t"]);
    // A edits and syncs; then each machine syncs in turn: at no step does the server go back
    // to a stale version (each machine used to re-push its own once).
    local_a.put_tags(x, &["t", "from-a"]);
    for (step, who) in [&a, &b].into_iter().enumerate() {
        let out = who.ok(&["sync"]);
        assert_eq!(remote.tags(x), vec!["from-a", "t"], "step {step}: {out}");
    }
    assert_eq!(local_b.tags(x), vec!["from-a", "t"]);
    // Then B edits: its edit, which knew of A's, wins everywhere.
    local_b.put_tags(x, &["from-a", "from-b"]);
    for (step, who) in [&b, &a, &b, &a].into_iter().enumerate() {
        let out = who.ok(&["sync"]);
        assert_eq!(
            remote.tags(x),
            vec!["from-a", "from-b"],
            "step {step}: {out}"
        );
    }
    assert_eq!(local_a.tags(x), vec!["from-a", "from-b"]);
    assert_eq!(local_b.tags(x), vec!["from-a", "from-b"]);
}

#[test]
fn concurrent_edits_merge_three_way() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let x = "edited on both sides at once";
    local.post(x, &["t", "old"], json!({}));
    m.ok(&["sync"]);
    // Locally: `old` removed, `mine` added. On the server: `theirs` added.
    local.put_tags(x, &["t", "mine"]);
    remote.put_tags(x, &["t", "old", "theirs"]);
    m.ok(&["sync"]);
    assert_eq!(remote.tags(x), vec!["mine", "t", "theirs"]);
    assert_eq!(local.tags(x), vec!["mine", "t", "theirs"]);
}

#[test]
fn manual_conflicts_keep_the_local_version_until_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let m = m.with("SYNC_CONFLICT_RESOLUTION", "manual");
    let x = "disputed memory";
    local.post(x, &["t"], json!({}));
    m.ok(&["sync"]);
    local.put_tags(x, &["t", "mine"]);
    remote.put_tags(x, &["t", "theirs"]);
    m.run(&["sync"]);
    assert_eq!(open_conflicts(&m), 1);
    assert_eq!(
        local.tags(x),
        vec!["mine", "t"],
        "the local side keeps its own"
    );
    assert_eq!(
        remote.tags(x),
        vec!["t", "theirs"],
        "the server keeps its own"
    );
    // Another sync while it is open changes neither side.
    m.run(&["sync"]);
    assert_eq!(local.tags(x), vec!["mine", "t"]);
    assert_eq!(remote.tags(x), vec!["t", "theirs"]);
    // Resolved for the server: the local database shows it, and no later sync sends the old
    // local version.
    m.ok(&["resolve-conflicts", "--strategy", "remote"]);
    assert_eq!(local.tags(x), vec!["t", "theirs"]);
    m.ok(&["sync"]);
    m.ok(&["sync"]);
    assert_eq!(remote.tags(x), vec!["t", "theirs"]);
    assert_eq!(local.tags(x), vec!["t", "theirs"]);
}

#[test]
fn after_a_reset_or_a_new_staging_database_a_server_delete_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let (x, y, keep) = (
        "stored, synced, reset, deleted",
        "stored, synced, staging removed, deleted",
        "stays",
    );
    for c in [x, y, keep] {
        m.ok(&["store", c]);
    }
    m.ok(&["sync"]);
    assert_eq!(local.live_count(), 3);
    m.ok(&["reset", "--yes"]);
    delete_on(&remote, x);
    let out = m.ok(&["sync"]);
    assert!(
        !has(&remote, x),
        "reset brought a deleted memory back: {out}"
    );
    assert!(local.rows_with_hash(&hash_of(x)) == 0, "{out}");
    // The guide's own recovery: remove the staging database and init again.
    for ext in ["", "-wal", "-shm"] {
        let mut p = m.staging_path().into_os_string();
        p.push(ext);
        let _ = std::fs::remove_file(p);
    }
    m.ok(&["init"]);
    delete_on(&remote, y);
    let out = m.ok(&["sync"]);
    assert!(
        !has(&remote, y),
        "a new staging database brought it back: {out}"
    );
    assert!(has(&remote, keep) && local.rows_with_hash(&hash_of(keep)) == 1);
    // A memory stored locally after the reset is new, and goes to the server.
    local.post("new after the reset", &["t"], json!({}));
    m.ok(&["sync"]);
    assert!(has(&remote, "new after the reset"));
}

/// Every file under `dir`, with its bytes.
fn snapshot(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.to_string_lossy().ends_with("-shm") {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn sync_dry_run_changes_nothing_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    remote.post("on the server only", &["t"], json!({}));
    local.post("on this machine only", &["t"], json!({}));
    m.ok(&["store", "--offline", "staged, waiting"]);
    let log = m.dir.join("staging/sync.log");
    let log_lines = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let (server_before, local_before) = (remote.live_count(), local.live_count());
    // Stop the local service so that its files can be compared byte for byte.
    let mut local = local;
    local.stop();
    let files_before = snapshot(&local.dir);
    let staging_before = snapshot(&m.dir.join("staging"));
    let lines_before = log_lines();
    let out = m.ok(&["sync", "--dry-run"]);
    assert!(out.contains("dry run, nothing changed"), "{out}");
    assert!(out.contains("would stage 1"), "{out}");
    assert_eq!(remote.live_count(), server_before, "the server changed");
    let mut staging_after = snapshot(&m.dir.join("staging"));
    staging_after.retain(|(p, _)| p != &log);
    let mut staging_before = staging_before;
    staging_before.retain(|(p, _)| p != &log);
    let names = |v: &[(std::path::PathBuf, Vec<u8>)]| {
        v.iter()
            .map(|(p, b)| format!("{} {}", p.display(), b.len()))
            .collect::<Vec<_>>()
    };
    assert!(
        staging_after == staging_before,
        "the staging files changed: {:?} -> {:?}",
        names(&staging_before),
        names(&staging_after)
    );
    assert!(
        snapshot(&local.dir) == files_before,
        "the local files changed"
    );
    assert!(log_lines() <= lines_before + 1, "more than one log line");
    // On a new staging path a dry run creates nothing either.
    let fresh = m.with(
        "STAGING_DB_PATH",
        &dir.path().join("new/staging.db").display().to_string(),
    );
    fresh.ok(&["sync", "--dry-run"]);
    assert!(!dir.path().join("new/staging.db").exists());
    assert_eq!(remote.live_count(), server_before);
    local.restart();
    assert_eq!(local.live_count(), local_before);
}

/// A memory deleted on the server and edited on this machine since: under `merge` the sync
/// stores it again, and `sync --dry-run` counts that push (it said 0, then the sync pushed 1).
#[test]
fn sync_dry_run_counts_a_local_edit_that_meets_a_server_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let x = "a memory deleted on the server, edited here";
    local.post(x, &["t"], json!({}));
    m.ok(&["sync"]);
    assert!(has(&remote, x));
    delete_on(&remote, x);
    local.put_tags(x, &["t", "edited here"]);
    let out = m.ok(&["sync", "--dry-run"]);
    assert!(out.contains("conflict (deleted_remotely)"), "{out}");
    assert!(out.contains("and push 1"), "{out}");
    let out = m.ok(&["sync"]);
    assert!(has(&remote, x), "stored again: {out}");
}
