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

/// The server cuts tags only of a memory it creates; its update keeps them as sent. A memory
/// another client gave 120 tags is edited and synced like any other.
#[test]
fn an_edit_of_a_memory_with_more_tags_than_a_new_one_may_have_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let c = "a memory another client gave 120 tags";
    remote.post(c, &["t"], json!({}));
    let many: Vec<String> = (0..120).map(|i| format!("tag{i:03}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    remote.put_tags(c, &refs);
    assert_eq!(remote.tags(c).len(), 120);
    m.ok(&["sync"]);
    assert_eq!(local.tags(c).len(), 120);
    let mut more = refs.clone();
    more.push("mine");
    local.put_tags(c, &more);
    let out = m.ok(&["sync"]);
    assert!(out.contains("failed 0"), "{out}");
    assert_eq!(remote.tags(c).len(), 121);
    assert!(remote.tags(c).contains(&"mine".to_owned()));
}
