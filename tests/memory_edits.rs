//! Local edits against a real mcp-memory-service: none is lost, whatever the server did.

mod common;

use common::mms::{Machine, Server, curl, hash_of};
use serde_json::json;

fn post(server: &Server, content: &str, tags: &[&str]) {
    let (status, body) = curl(
        "POST",
        &format!("{}/api/memories", server.url()),
        Some(&json!({"content": content, "tags": tags, "memory_type": "note"})),
    );
    assert!(status == 200 && body["success"] == true, "{status} {body}");
}

fn put_tags(server: &Server, content: &str, tags: &[&str]) {
    let url = format!("{}/api/memories/{}", server.url(), hash_of(content));
    let (status, body) = curl("PUT", &url, Some(&json!({ "tags": tags })));
    assert_eq!(status, 200, "{body}");
}

fn tags_on(server: &Server, content: &str) -> Vec<String> {
    let url = format!("{}/api/memories/{}", server.url(), hash_of(content));
    let (status, body) = curl("GET", &url, None);
    assert_eq!(status, 200, "{body}");
    let mut t: Vec<String> = body["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    t.sort();
    t
}

#[test]
fn local_edits_survive_a_waiting_push_and_a_remote_delete() {
    let dir = tempfile::tempdir().unwrap();
    let remote = Server::start(&dir.path().join("remote"));
    let local = Server::start(&dir.path().join("local"));
    let m = Machine::new(&dir.path().join("m"), remote.port)
        .with("MCP_MEMORY_SQLITE_PATH", &local.db().display().to_string());
    let (twice, gone) = ("edited twice before a push", "edited here, deleted there");
    post(&remote, twice, &["t"]);
    post(&remote, gone, &["t"]);
    m.ok(&["pull"]);

    // First edit staged by a pull, a second edit before any push: both reach the server.
    put_tags(&local, twice, &["t", "first"]);
    assert!(m.ok(&["pull"]).contains("local edits staged 1"));
    put_tags(&local, twice, &["t", "first", "second"]);
    let out = m.ok(&["pull"]);
    assert!(out.contains("local edits staged 1"), "{out}");
    assert_eq!(
        tags_on(&local, twice),
        vec!["first", "second", "t"],
        "the second edit was not written over"
    );
    m.ok(&["push"]);
    assert_eq!(tags_on(&remote, twice), vec!["first", "second", "t"]);

    // Edited locally, deleted on the server: a conflict, settled by the default policy (merge):
    // the memory is stored again, with the local edit.
    put_tags(&local, gone, &["t", "local-edit"]);
    let (status, _) = curl(
        "DELETE",
        &format!("{}/api/memories/{}", remote.url(), hash_of(gone)),
        None,
    );
    assert_eq!(status, 200);
    let out = m.ok(&["pull"]);
    assert!(
        out.contains("removed 0") && out.contains("conflicts 1"),
        "{out}"
    );
    assert_eq!(tags_on(&local, gone), vec!["local-edit", "t"]);
    m.ok(&["push"]);
    assert_eq!(
        tags_on(&remote, gone),
        vec!["local-edit", "t"],
        "revived with the local edit"
    );
}
