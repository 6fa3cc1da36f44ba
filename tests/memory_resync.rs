//! Sequences of syncs after a staged `store` against a real mcp-memory-service: what a sync
//! sends stays, sync after sync.

mod common;

use common::mms::{curl, hash_of, remote_and_local};
use serde_json::json;

/// `store --offline` of a memory this machine already synced, then `sync` twice: the tags kept
/// before stay on the server and locally, under `merge` and `local`. Before: the sync's pull
/// showed the stored tags alone locally, its push sent the union, and the next sync took the
/// local row for an edit removing the others and sent that.
#[test]
fn a_staged_store_synced_twice_keeps_the_tags_it_did_not_name() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let has = |tags: &[String], t: &str| tags.contains(&t.to_owned());
    for policy in ["merge", "local"] {
        let m = m.with("SYNC_CONFLICT_RESOLUTION", policy);
        let c = format!("stored again offline, then synced twice ({policy})");
        m.ok(&["store", &c, "--tags", "keepme"]);
        m.ok(&["sync"]);
        m.ok(&["store", "--offline", &c, "--tags", "added"]);
        let out = m.ok(&["sync"]);
        let shown = local.tags(&c);
        assert!(
            has(&shown, "keepme") && has(&shown, "added"),
            "{policy}: not shown locally: {shown:?}; {out}"
        );
        for round in 1..=2 {
            let out = m.ok(&["sync"]);
            let t = remote.tags(&c);
            assert!(
                has(&t, "keepme") && has(&t, "added"),
                "{policy}: sync {round} lost a tag: {t:?}; {out}"
            );
            assert_eq!(local.tags(&c), t, "{policy}: the machines differ");
        }
    }
}

/// A local edit, then a staged store of the same memory, while the server changed it: the
/// pull settles the conflict and says nothing of edits made while it ran (its own write of
/// the fold to the local database was taken for one, and the next pull met the same conflict
/// again).
#[test]
fn a_pull_folding_a_local_edit_does_not_take_its_own_write_for_an_edit() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let c = "edited here, stored again, changed there";
    remote.post(c, &["froma"], json!({}));
    m.ok(&["sync"]);
    let url = format!("{}/api/memories/{}", local.url(), hash_of(c));
    let (st, body) = curl("PUT", &url, Some(&json!({"metadata": {"bk9": "v"}})));
    assert_eq!(st, 200, "{body}");
    m.ok(&["store", "--offline", c, "--tags", "fromb"]);
    let url = format!("{}/api/memories/{}", remote.url(), hash_of(c));
    let (st, body) = curl("PUT", &url, Some(&json!({"memory_type": "decision"})));
    assert_eq!(st, 200, "{body}");
    let out = m.ok(&["pull"]);
    assert!(out.contains("conflicts 1"), "{out}");
    assert!(!out.contains("while the pull ran"), "{out}");
    let out = m.ok(&["pull"]);
    assert!(out.contains("conflicts 0"), "the conflict came back: {out}");
    m.ok(&["sync"]);
    let t = remote.tags(c);
    assert!(
        t.contains(&"froma".to_owned()) && t.contains(&"fromb".to_owned()),
        "{t:?}"
    );
    assert_eq!(local.tags(c), t, "the machines differ");
}

/// `edit` of a staged store keeps what the local service changed since the last sync and no
/// row has seen yet (it wrote the edited row over it: that tag was lost with no copy), and the
/// edit's own replacement of the store's tags stands.
#[test]
fn editing_a_staged_store_keeps_an_edit_made_through_the_local_service() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let has = |tags: &[String], t: &str| tags.contains(&t.to_owned());
    let c = "edited through the service, then its store edited";
    m.ok(&["store", c]);
    m.ok(&["sync"]);
    let mut tags = local.tags(c);
    tags.push("x".into());
    let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    local.put_tags(c, &refs);
    let out = m.ok(&["store", "--offline", c, "--tags", "y"]);
    let id = out
        .split('#')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no row id in {out:?}"))
        .to_owned();
    m.ok(&["edit", &id, "--tags", "z"]);
    assert!(has(&local.tags(c), "x"), "{:?}", local.tags(c));
    m.ok(&["sync"]);
    m.ok(&["sync"]);
    let t = remote.tags(c);
    assert!(has(&t, "x") && has(&t, "z") && !has(&t, "y"), "{t:?}");
    assert_eq!(local.tags(c), t, "the machines differ");
}

/// A tag the server removed, stored again while offline, is added back by the sync, as an
/// online store adds it (the three-way merge took it for a base tag the server removed).
#[test]
fn a_tag_stored_again_offline_after_the_server_removed_it_is_added() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let c = "a tag removed there, stored again here";
    m.ok(&["store", c, "--tags", "x,keep"]);
    m.ok(&["sync"]);
    let without: Vec<String> = remote.tags(c).into_iter().filter(|t| t != "x").collect();
    let refs: Vec<&str> = without.iter().map(String::as_str).collect();
    remote.put_tags(c, &refs);
    m.ok(&["store", "--offline", c, "--tags", "x"]);
    m.ok(&["sync"]);
    m.ok(&["sync"]);
    let t = remote.tags(c);
    assert!(
        t.contains(&"x".to_owned()) && t.contains(&"keep".to_owned()),
        "{t:?}"
    );
    assert_eq!(local.tags(c), t, "the machines differ");
}
