//! Memory sync's conflicts against real mcp-memory-service 12.4.0 servers: each conflict
//! policy on a real conflict, a memory stored locally that the server deleted, and edits on one
//! side or both.

mod common;

use common::mms::{Machine, Server, curl, hash_of, remote_and_local};
use serde_json::json;

/// Sets up one real conflict: the server holds `content` with a server tag and metadata, and
/// the machine has the same content staged with its own tag.
fn conflict_on(server: &Server, m: &Machine, content: &str) {
    server.post(content, &["server-tag"], json!({"origin": "server"}));
    m.ok(&[
        "store",
        "--offline",
        "--tags",
        "local-tag",
        "--project",
        "p",
        content,
    ]);
}

#[test]
fn each_conflict_policy_settles_a_real_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let m = Machine::new(&dir.path().join("m"), server.port);
    let (cm, cl, cr, cx) = (
        "conflict for merge",
        "conflict for local",
        "conflict for remote",
        "conflict for manual",
    );
    for c in [cm, cl, cr, cx] {
        conflict_on(&server, &m, c);
    }
    let policy = |p: &str| m.with("SYNC_CONFLICT_RESOLUTION", p);
    // Push them one policy at a time: each push meets its conflict as "already there, but different".
    let only = |keep: &str| {
        let c = rusqlite::Connection::open(m.staging_path()).unwrap();
        c.execute(
            "UPDATE staged_memories SET state = CASE WHEN content = ?1 THEN 'pending' ELSE 'failed' END WHERE state IN ('pending', 'failed')",
            [keep],
        )
        .unwrap();
    };
    // The rows parked as failed make each push exit 3 (failed rows left), until the last one.
    only(cm);
    let out = policy("merge").exits(3, &["push", "--verbose"]);
    assert!(
        out.contains("conflicts 1") && out.contains("updated 1"),
        "{out}"
    );
    let src = format!("source:{}", hostname());
    let sorted = |v: &[&str]| {
        let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(
        server.tags(cm),
        sorted(&["local-tag", "project:p", "server-tag", &src])
    );
    let (_, body) = curl(
        "GET",
        &format!("{}/api/memories/{}", server.url(), hash_of(cm)),
        None,
    );
    assert_eq!(
        (
            body["metadata"]["origin"].as_str(),
            body["metadata"]["project"].as_str()
        ),
        (Some("server"), Some("p"))
    );

    only(cl);
    policy("local").exits(3, &["push"]);
    assert_eq!(server.tags(cl), sorted(&["local-tag", "project:p", &src]));

    only(cr);
    let out = policy("remote").exits(3, &["push"]);
    assert!(
        out.contains("conflicts 1") && out.contains("updated 0"),
        "{out}"
    );
    assert_eq!(server.tags(cr), vec!["server-tag"]);
    // The local version is not lost: it is in the conflict record.
    let export = m.ok(&["export"]);
    let v: serde_json::Value = serde_json::from_str(&export).unwrap();
    let rec = v["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["content_hash"] == hash_of(cr))
        .unwrap();
    assert_eq!(rec["resolution"], "remote");
    assert!(
        rec["local"]["tags"]
            .as_array()
            .unwrap()
            .contains(&json!("local-tag"))
    );

    only(cx);
    let out = policy("manual").exits(4, &["push"]);
    assert!(out.contains("conflicts 1"), "{out}");
    assert_eq!(server.tags(cx), vec!["server-tag"]);
    assert_eq!(m.staged("conflict"), 1);
    let listed = m.ok(&["resolve-conflicts"]);
    assert!(
        listed.contains("diverged")
            && listed.contains("local-tag")
            && listed.contains("server-tag"),
        "{listed}"
    );
    assert!(m.ok(&["status"]).contains("conflicts  1 open"));
    let out = m.ok(&["resolve-conflicts", "--strategy", "merge"]);
    assert!(out.contains("settled: merge"), "{out}");
    m.ok(&["push"]);
    assert!(
        server.tags(cx).contains(&"local-tag".to_owned())
            && server.tags(cx).contains(&"server-tag".to_owned())
    );
    assert!(m.ok(&["status"]).contains("conflicts  0 open"));
    assert_eq!(server.live_count(), 4, "conflicts never duplicate a memory");
}

fn hostname() -> String {
    memsync::memory::host::hostname().to_lowercase()
}

#[test]
fn stored_locally_deleted_remotely_is_a_conflict_settled_by_policy() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("server"), &[("MMS_EVENTLOG", "1")]);
    let m = Machine::new(&dir.path().join("m"), server.port);
    for c in ["deleted then kept", "deleted then dropped"] {
        server.post(c, &["x"], json!({}));
        let (status, _) = curl(
            "DELETE",
            &format!("{}/api/memories/{}", server.url(), hash_of(c)),
            None,
        );
        assert_eq!(status, 200);
    }
    // Local wins: the memory is stored again, explicitly reviving it on the server.
    m.with("SYNC_CONFLICT_RESOLUTION", "local")
        .ok(&["store", "--offline", "deleted then kept"]);
    let out = m.with("SYNC_CONFLICT_RESOLUTION", "local").ok(&["push"]);
    assert!(
        out.contains("conflicts 1") && out.contains("stored 1"),
        "{out}"
    );
    assert_eq!(server.rows_with_hash(&hash_of("deleted then kept")), 1);
    // Remote wins: the server's delete stands; the local copy stays in the conflict record.
    let direct = m
        .with("SYNC_CONFLICT_RESOLUTION", "remote")
        .ok(&["store", "deleted then dropped"]);
    assert!(direct.contains("had deleted this content"), "{direct}");
    let out = m.with("SYNC_CONFLICT_RESOLUTION", "remote").ok(&["push"]);
    assert!(!out.contains("stored 1"), "{out}");
    assert_eq!(server.rows_with_hash(&hash_of("deleted then dropped")), 0);
    let export: serde_json::Value = serde_json::from_str(&m.ok(&["export"])).unwrap();
    assert!(
        export["conflicts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] == "deleted_remotely" && c["resolution"] == "remote")
    );
    assert!(
        export["staged"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["content"] == "deleted then dropped" && s["state"] == "resolved")
    );
}

#[test]
fn edits_flow_both_ways_and_only_edits_on_both_sides_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let (a, b, c, d) = (
        "edited locally",
        "edited on the server",
        "edited on both sides",
        "retagged on the server",
    );
    for x in [a, b, c] {
        remote.post(x, &["t"], json!({}));
    }
    remote.post(d, &["work"], json!({}));
    m.ok(&["pull"]);
    // The local service edits a and c; the server edits b and c.
    local.put_tags(a, &["t", "local-edit"]);
    local.put_tags(c, &["local-c"]);
    remote.put_tags(b, &["t", "server-edit"]);
    remote.put_tags(c, &["server-c"]);
    let out = m.ok(&["sync"]);
    assert!(
        out.contains("local edits staged 1")
            && out.contains("changed 1")
            && out.contains("conflicts 1"),
        "{out}"
    );
    assert_eq!(
        remote.tags(a),
        vec!["local-edit", "t"],
        "the local edit reached the server"
    );
    assert_eq!(
        local.tags(b),
        vec!["server-edit", "t"],
        "the server's edit reached the local service"
    );
    assert_eq!(remote.tags(c), vec!["local-c", "server-c"], "merged");
    m.ok(&["pull"]);
    assert_eq!(local.tags(c), vec!["local-c", "server-c"]);
    // Settled once: pulling again finds nothing to do and records no new conflict.
    let out = m.ok(&["sync"]);
    assert!(
        out.contains("added 0, changed 0, removed 0") && out.contains("conflicts 0"),
        "{out}"
    );
    let export: serde_json::Value = serde_json::from_str(&m.ok(&["export"])).unwrap();
    assert_eq!(export["conflicts"].as_array().unwrap().len(), 1);

    // A tag-filtered pull never removes: d now carries other tags, it was not deleted.
    remote.put_tags(d, &["personal"]);
    let out = m.ok(&["pull", "--tags", "work"]);
    assert!(out.contains("removed 0"), "{out}");
    let (status, _) = curl(
        "GET",
        &format!("{}/api/memories/{}", local.url(), hash_of(d)),
        None,
    );
    assert_eq!(status, 200);

    // Storing what the server has, with more tags, updates the server's copy (policy merge).
    let out = m.ok(&["store", "--tags", "extra", "--project", "p", a]);
    assert!(
        out.contains("other tags") && out.contains("updated"),
        "{out}"
    );
    assert!(
        remote.tags(a).contains(&"extra".to_owned())
            && remote.tags(a).contains(&"local-edit".to_owned())
    );
}

/// A conflict left open (policy `manual`), then the same content stored again under `merge`:
/// that store settles the row, and with it the open record, which would otherwise keep every
/// `sync` exiting 4 with nothing left to decide.
#[test]
fn storing_again_settles_the_open_conflict_of_that_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let m = Machine::new(&dir.path().join("m"), server.port);
    let c = "stored twice while a conflict was open";
    server.post(c, &["server-tag"], json!({"origin": "server"}));
    let manual = m.with("SYNC_CONFLICT_RESOLUTION", "manual");
    let o = manual.run(&["store", "--tags", "first", "--project", "p", c]);
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains("kept the server's version"), "{said}");
    assert!(m.ok(&["status"]).contains("conflicts  1 open"));

    let out = m.ok(&["store", "--tags", "second", "--project", "p", c]);
    assert!(out.contains("the server's copy was updated"), "{out}");
    let tags = server.tags(c);
    for t in ["first", "second", "server-tag"] {
        assert!(tags.contains(&t.to_owned()), "{t} missing: {tags:?}");
    }
    assert!(m.ok(&["status"]).contains("conflicts  0 open"));
    m.ok(&["sync"]);
    assert_eq!(m.ok(&["resolve-conflicts"]), "no open conflicts\n");
    // Both records stay in the history: the first one says what settled it.
    let export: serde_json::Value = serde_json::from_str(&m.ok(&["export"])).unwrap();
    let res: Vec<&str> = export["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["resolution"].as_str().unwrap_or("open"))
        .collect();
    assert_eq!(res, ["superseded", "merge"], "{export:#}");
    assert_eq!(server.live_count(), 1);
}
