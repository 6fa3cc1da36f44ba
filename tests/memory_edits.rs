//! Local edits against a real mcp-memory-service: none is lost, whatever the server did.

mod common;

use common::mms::{curl, hash_of, remote_and_local};
use serde_json::json;

#[test]
fn local_edits_survive_a_waiting_push_and_a_remote_delete() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let (twice, gone) = ("edited twice before a push", "edited here, deleted there");
    remote.post(twice, &["t"], json!({}));
    remote.post(gone, &["t"], json!({}));
    m.ok(&["pull"]);

    // First edit staged by a pull, a second edit before any push: both reach the server.
    local.put_tags(twice, &["t", "first"]);
    assert!(m.ok(&["pull"]).contains("local edits staged 1"));
    local.put_tags(twice, &["t", "first", "second"]);
    let out = m.ok(&["pull"]);
    assert!(out.contains("local edits staged 1"), "{out}");
    assert_eq!(
        local.tags(twice),
        vec!["first", "second", "t"],
        "the second edit was not written over"
    );
    m.ok(&["push"]);
    assert_eq!(remote.tags(twice), vec!["first", "second", "t"]);

    // Edited locally, deleted on the server: a conflict, settled by the default policy (merge):
    // the memory is stored again, with the local edit.
    local.put_tags(gone, &["t", "local-edit"]);
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
    assert_eq!(local.tags(gone), vec!["local-edit", "t"]);
    m.ok(&["push"]);
    assert_eq!(
        remote.tags(gone),
        vec!["local-edit", "t"],
        "revived with the local edit"
    );
}
