//! Memory sync over time, against real mcp-memory-service 12.4.0 servers (a remote, and a
//! second one as this machine's local service): sequences of edits on both sides, conflicts
//! left open, staged rows edited or dropped, where each step alone was fine but the sequence
//! reverted or lost what a user stored.

mod common;

use common::mms::{Machine, Server, hash_of, remote_and_local};
use serde_json::json;

/// The id of the one pending staged row.
fn pending_id(m: &Machine) -> String {
    let c = rusqlite::Connection::open(m.staging_path()).unwrap();
    let id: i64 = c
        .query_row(
            "SELECT id FROM staged_memories WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    id.to_string()
}

fn metadata(server: &Server, content: &str) -> serde_json::Value {
    let url = format!("{}/api/memories/{}", server.url(), hash_of(content));
    let (status, body) = common::mms::curl("GET", &url, None);
    assert_eq!(status, 200, "{body}");
    body["metadata"].clone()
}

/// A local edit made while a conflict waits for `resolve-conflicts` (policy `manual`) is the
/// local side when it is settled: settling the recorded side undid it, and the next sync sent
/// the result without it.
#[test]
fn an_edit_made_while_a_conflict_waits_survives_its_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let c = "a memory edited on both sides";
    remote.post(c, &["base"], json!({}));
    m.ok(&["pull"]);
    remote.put_tags(c, &["base", "srv"]);
    local.put_tags(c, &["base", "loc1"]);
    m.exits(4, &["sync", "--conflict", "manual"]);
    local.put_tags(c, &["base", "loc1", "loc2"]);
    m.exits(4, &["sync", "--conflict", "manual"]);
    m.ok(&["resolve-conflicts", "--strategy", "merge"]);
    m.ok(&["sync"]);
    m.ok(&["sync"]);
    let all = vec!["base", "loc1", "loc2", "srv"];
    assert_eq!(local.tags(c), all);
    assert_eq!(remote.tags(c), all);
}

/// A metadata key removed here goes on the server too (as `null`: the server's update merges
/// metadata, so a key left out stayed there and the next sync brought it back here).
#[test]
fn a_metadata_key_removed_here_is_removed_on_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let c = "a memory with a secret";
    remote.post(c, &["t"], json!({"keep": "1", "secret": "s3cr3t"}));
    m.ok(&["pull"]);
    // The local service drops the key (its own update writes the column like this).
    let db = rusqlite::Connection::open(local.db()).unwrap();
    db.execute(
        "UPDATE memories SET metadata = json_remove(metadata, '$.secret') WHERE content_hash = ?1",
        [hash_of(c)],
    )
    .unwrap();
    let out = m.ok(&["sync"]);
    assert!(out.contains("updated 1"), "{out}");
    m.ok(&["sync"]);
    let server = metadata(&remote, c);
    assert_eq!(server["keep"], "1", "{server}");
    assert!(
        server["secret"].is_null(),
        "the secret is still on the server: {server}"
    );
    let here: String = db
        .query_row(
            "SELECT metadata FROM memories WHERE content_hash = ?1",
            [hash_of(c)],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!here.contains("s3cr3t"), "the secret came back: {here}");
}

/// The same content made by the local service and staged with `store --offline`: after the
/// push, both sets of tags are on the server and here (the local row was taken for an edit of
/// the stored version, and its tags replaced the stored ones).
#[test]
fn content_stored_here_twice_keeps_both_sets_of_tags() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let c = "made by the service and by the command line";
    local.post(c, &["svc"], json!({}));
    m.ok(&["store", "--offline", "--tags", "cli", c]);
    m.ok(&["sync"]);
    m.ok(&["sync"]);
    m.ok(&["sync"]);
    for tags in [remote.tags(c), local.tags(c)] {
        assert!(
            tags.contains(&"svc".to_owned()) && tags.contains(&"cli".to_owned()),
            "{tags:?}"
        );
    }
    assert_eq!(remote.tags(c), local.tags(c));
}

/// `edit` of a staged local change is what is sent, and stays: the local database shows it (the
/// next pull folded the local row back into the staged one, over the edit).
#[test]
fn an_edited_local_change_is_what_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let c = "a memory the user retags";
    remote.post(c, &["t"], json!({}));
    m.ok(&["pull"]);
    local.put_tags(c, &["t", "fromservice"]);
    assert!(m.ok(&["pull"]).contains("local edits staged 1"));
    m.ok(&["edit", &pending_id(&m), "--tags", "t,byuser"]);
    m.ok(&["sync"]);
    m.ok(&["sync"]);
    assert_eq!(remote.tags(c), vec!["byuser", "t"]);
    assert_eq!(local.tags(c), vec!["byuser", "t"]);
}

/// `drop` of a staged local change: it is never sent, by this sync or a later one, and the
/// local version stays here. A password in the replica URL is never shown.
#[test]
fn a_dropped_local_change_is_never_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let c = "a memory with a private edit";
    remote.post(c, &["t"], json!({}));
    m.ok(&["pull"]);
    local.put_tags(c, &["t", "private"]);
    assert!(m.ok(&["pull"]).contains("local edits staged 1"));
    m.ok(&["drop", &pending_id(&m), "--yes"]);
    for _ in 0..2 {
        let out = m.ok(&["sync"]);
        assert!(out.contains("pushed 0"), "{out}");
    }
    assert_eq!(remote.tags(c), vec!["t"]);
    assert_eq!(local.tags(c), vec!["private", "t"]);

    let m = m.with(
        "REMOTE_MEMORY_REPLICA",
        "https://memsync:TOPSECRET@127.0.0.1:9/sqlite_vec.db",
    );
    for args in [&["status"][..], &["export"][..]] {
        let o = m.run(args);
        let all =
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        assert!(!all.contains("TOPSECRET"), "{args:?}: {all}");
        assert!(all.contains("memsync:***@127.0.0.1"), "{args:?}: {all}");
    }
    // Nobody listens there: "try again later" (5), as for an unreachable server.
    let o = m.run(&["pull"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(5), "{err}");
    assert!(!err.contains("TOPSECRET"), "{err}");
}

/// An edit the local service makes while `pull` runs (after the pull read the local rows,
/// before it wrote them) is not written over: the pull leaves that row as it is, keeps its
/// old base, and the next sync settles the edit with the server's change (before: the pull
/// wrote the server's version over it, and the edit was nowhere, not staged, not a conflict).
#[test]
fn an_edit_made_while_a_pull_runs_is_not_written_over() {
    common::require_fault_points();
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let c = "a memory edited here while the pull writes";
    remote.post(c, &["v1"], json!({}));
    m.ok(&["pull"]);
    remote.put_tags(c, &["v1", "srv"]);
    let hold = dir.path().join("hold");
    std::fs::write(&hold, "").unwrap();
    let stderr = dir.path().join("pull.err");
    let pull = m
        .with("MEMSYNC_FAULT", "pull-apply:pause")
        .with("MEMSYNC_FAULT_HOLD", &hold.display().to_string())
        .command(&["pull"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !std::fs::read_to_string(&stderr)
        .unwrap()
        .contains("pull-apply: paused")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the pull never paused"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    local.put_tags(c, &["v1", "mine"]);
    std::fs::remove_file(&hold).unwrap();
    let out = pull.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("1 memories edited here while the pull ran"),
        "{stdout}"
    );
    assert_eq!(local.tags(c), vec!["mine", "v1"]);
    m.ok(&["sync"]);
    m.ok(&["sync"]);
    let all = vec!["mine", "srv", "v1"];
    assert_eq!(local.tags(c), all);
    assert_eq!(remote.tags(c), all);
}

/// A conflict left open (`manual`) keeps its common base, so `resolve-conflicts --strategy
/// merge` merges three ways as the `merge` policy does: what only the server changed (a tag
/// removed, metadata values) stays changed (before: the base was lost and the union brought the
/// removed tag and the old values back).
#[test]
fn resolving_an_open_conflict_by_merge_uses_its_base() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let c = "a memory merged three ways after waiting";
    remote.post(c, &["md"], json!({"n": 1, "owner": "ann"}));
    m.ok(&["sync"]);
    local.put_tags(c, &["md", "from-a"]);
    let url = format!("{}/api/memories/{}", remote.url(), hash_of(c));
    let (status, _) = common::mms::curl(
        "PUT",
        &url,
        Some(&json!({"tags": ["from-srv"], "metadata": {"n": 2, "owner": "bob"}})),
    );
    assert_eq!(status, 200);
    m.exits(4, &["sync", "--conflict", "manual"]);
    m.ok(&["resolve-conflicts", "--strategy", "merge"]);
    m.ok(&["sync"]);
    let want = vec!["from-a", "from-srv"];
    assert_eq!(remote.tags(c), want);
    assert_eq!(local.tags(c), want);
    let meta = metadata(&remote, c);
    assert_eq!(
        (&meta["n"], &meta["owner"]),
        (&json!(2), &json!("bob")),
        "{meta}"
    );
}

/// `store` of a memory someone deleted on the server (the event log answers 409), left open
/// with `manual`, then settled `local`: the version the user stored is what goes back, not the
/// older copy the local database still showed (before: its old tags replaced the stored ones).
#[test]
fn settling_a_stored_memory_deleted_remotely_keeps_what_was_stored() {
    let dir = tempfile::tempdir().unwrap();
    let remote = Server::start_with(&dir.path().join("remote"), &[("MMS_EVENTLOG", "1")]);
    let local = Server::start(&dir.path().join("local"));
    let m = Machine::new(&dir.path().join("m"), remote.port)
        .with("MCP_MEMORY_SQLITE_PATH", &local.db().display().to_string());
    let c = "a decision stored again after its deletion";
    m.ok(&["store", c, "--tags", "a"]);
    m.ok(&["sync"]);
    let url = format!("{}/api/memories/{}", remote.url(), hash_of(c));
    assert_eq!(common::mms::curl("DELETE", &url, None).0, 200);
    m.run(&["store", c, "--tags", "c", "--conflict", "manual"]);
    m.ok(&["resolve-conflicts", "--strategy", "local"]);
    m.ok(&["push"]);
    let tags = remote.tags(c);
    assert!(
        tags.contains(&"c".to_owned()) && !tags.contains(&"a".to_owned()),
        "{tags:?}"
    );
}

/// `store` without `--type` only adds to what it meets: a staged row's (or the server's) type
/// stays (before: the default `note` replaced an explicit `decision`).
#[test]
fn a_store_without_a_type_keeps_the_type_already_set() {
    let dir = tempfile::tempdir().unwrap();
    let remote = Server::start(&dir.path().join("remote"));
    let m = Machine::new(&dir.path().join("m"), remote.port);
    let c = "deploy checklist";
    m.ok(&[
        "store",
        "--offline",
        c,
        "--type",
        "decision",
        "--tags",
        "ops",
    ]);
    m.ok(&["store", "--offline", c, "--tags", "release"]);
    m.ok(&["push"]);
    let online = "another checklist";
    m.ok(&["store", online, "--type", "decision", "--tags", "ops"]);
    m.ok(&["store", online, "--tags", "release"]);
    for content in [c, online] {
        let url = format!("{}/api/memories/{}", remote.url(), hash_of(content));
        let (status, body) = common::mms::curl("GET", &url, None);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["memory_type"], "decision", "{content}: {body}");
        let tags = remote.tags(content);
        assert!(tags.contains(&"release".to_owned()), "{tags:?}");
    }
    // A memory new everywhere still gets the default type.
    m.ok(&["store", "a plain note"]);
    let url = format!("{}/api/memories/{}", remote.url(), hash_of("a plain note"));
    assert_eq!(
        common::mms::curl("GET", &url, None).1["memory_type"],
        "note"
    );
}

/// A memory stored again after someone deleted it on the server (the event log answers 409) is
/// decided by the push's conflict policy, as `store` says: `push --conflict remote` keeps the
/// deletion (before: `store` had already settled it with the default `merge`, and the push
/// brought the memory back whatever policy it was given).
#[test]
fn the_push_policy_decides_a_memory_stored_after_its_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let remote = Server::start_with(&dir.path().join("remote"), &[("MMS_EVENTLOG", "1")]);
    let m = Machine::new(&dir.path().join("m"), remote.port);
    let c = "a memory someone deleted on purpose";
    remote.post(c, &["a"], json!({}));
    let url = format!("{}/api/memories/{}", remote.url(), hash_of(c));
    assert_eq!(common::mms::curl("DELETE", &url, None).0, 200);
    let out = m.ok(&["store", c, "--tags", "b"]);
    assert!(out.contains("policy of the push decides"), "{out}");
    m.run(&["push", "--conflict", "remote"]);
    assert_eq!(
        remote.rows_with_hash(&hash_of(c)),
        0,
        "the deletion was undone"
    );
    assert_eq!(m.staged("pending"), 0);
}
