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

/// What `store` merged into a row that waits with a local edit reaches the server and stays
/// there: the next pull folds the local database's version in three ways instead of taking it
/// as it is (it dropped the stored tag), the local database then shows the fold (else the sync
/// after the push took the local row for an edit and sent it back over the push), and a later
/// edit that removes a tag removes only that one. The same with `push` straight after `store`.
#[test]
fn a_store_merged_into_a_waiting_local_edit_is_not_dropped_by_the_next_pull() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let has = |tags: &[String], t: &str| tags.contains(&t.to_owned());
    let c = "edited here, then stored again with another tag";
    let d = "edited here, stored again, pushed at once";
    remote.post(c, &["bulk", "old"], json!({}));
    remote.post(d, &["x"], json!({}));
    m.ok(&["pull"]);
    local.put_tags(c, &["bulk", "old", "local-edit"]);
    local.put_tags(d, &["x", "e"]);
    assert!(m.ok(&["pull"]).contains("local edits staged 2"));
    let out = m.ok(&["store", "--offline", c, "--tags", "t9"]);
    assert!(out.contains("tags merged"), "{out}");
    // Synced at once: its pull folds the local edit into the row holding t9.
    m.ok(&["sync"]);
    let out = m.ok(&["store", "--offline", d, "--tags", "t7"]);
    assert!(out.contains("staged"), "{out}");
    m.ok(&["push"]);
    let out = m.ok(&["sync"]);
    let tags = remote.tags(c);
    for t in ["bulk", "old", "local-edit", "t9"] {
        assert!(has(&tags, t), "{t} lost: {tags:?}; {out}");
    }
    for t in ["x", "e", "t7"] {
        assert!(
            has(&remote.tags(d), t),
            "{t} lost: {:?}; {out}",
            remote.tags(d)
        );
    }
    let out = m.ok(&["sync"]);
    assert_eq!(remote.tags(c), tags, "a second sync changed it: {out}");
    assert!(has(&remote.tags(d), "t7"), "{:?}: {out}", remote.tags(d));
    // Edited again here, removing one tag: that one goes, the rest stays.
    let edited: Vec<String> = local.tags(c).into_iter().filter(|t| t != "old").collect();
    let refs: Vec<&str> = edited.iter().map(String::as_str).collect();
    local.put_tags(c, &refs);
    m.ok(&["sync"]);
    let now = remote.tags(c);
    assert!(
        !has(&now, "old") && has(&now, "t9") && has(&now, "local-edit"),
        "{now:?}"
    );
}

/// A conflict left open, the same content stored again with a tag, then settled: the tag is
/// pushed whichever strategy settles it (before: memsync's own write of the recorded side to
/// the local database looked like an edit made since, and replaced the row).
#[test]
fn a_store_merged_into_an_open_conflict_survives_its_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, _local, m) = remote_and_local(dir.path());
    for strategy in ["local", "merge"] {
        let c = format!("stored again while its conflict waits ({strategy})");
        remote.post(&c, &["s0"], json!({}));
        m.ok(&["sync"]);
        m.ok(&["store", "--offline", &c, "--tags", "t1"]);
        // Changed on the server meanwhile: a conflict.
        remote.put_tags(&c, &["s0", "srv"]);
        m.exits(4, &["push", "--conflict", "manual"]);
        m.ok(&["store", "--offline", &c, "--tags", "t2"]);
        let out = m.ok(&["resolve-conflicts", "--strategy", strategy]);
        assert!(out.contains("settled"), "{out}");
        m.ok(&["push"]);
        let tags = remote.tags(&c);
        for t in ["t1", "t2"] {
            assert!(
                tags.contains(&t.to_owned()),
                "{strategy}: {t} lost: {tags:?}"
            );
        }
    }
}

/// A staged `store` of a memory both sides hold, meeting changes on the server, in the local
/// database, or both: a store adds (the tags it did not name are not removed), a local edit
/// not folded yet is folded in rather than written over, and a memory the local service made
/// with its own tags keeps them (before: each of these lost a tag someone kept).
#[test]
fn a_staged_store_meeting_changes_elsewhere_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let has = |tags: &[String], t: &str| tags.contains(&t.to_owned());
    let edit = |c: &str, drop: &str, add: &str| {
        let mut t: Vec<String> = local.tags(c).into_iter().filter(|t| t != drop).collect();
        t.push(add.to_owned());
        let refs: Vec<&str> = t.iter().map(String::as_str).collect();
        local.put_tags(c, &refs);
    };
    let (c2, c3, c4) = (
        "store, server edit",
        "store, both edit",
        "store, edit, push",
    );
    for c in [c2, c3, c4] {
        remote.post(c, &["a", "base"], json!({}));
    }
    m.ok(&["sync"]);
    for c in [c2, c3, c4] {
        m.ok(&["store", "--offline", c, "--tags", "x"]);
    }
    remote.put_tags(c2, &["a", "b"]);
    edit(c3, "a", "y");
    remote.put_tags(c3, &["a", "b"]);
    edit(c4, "a", "y");
    m.ok(&["push"]);
    m.ok(&["sync"]);
    let t2 = remote.tags(c2);
    assert!(
        has(&t2, "a") && has(&t2, "b") && has(&t2, "x") && !has(&t2, "base"),
        "{t2:?}"
    );
    let t3 = remote.tags(c3);
    assert!(has(&t3, "b") && has(&t3, "x") && has(&t3, "y"), "{t3:?}");
    assert!(!has(&t3, "a") && !has(&t3, "base"), "{t3:?}");
    let t4 = remote.tags(c4);
    assert!(
        has(&t4, "base") && has(&t4, "x") && has(&t4, "y") && !has(&t4, "a"),
        "{t4:?}"
    );
    for c in [c2, c3, c4] {
        assert_eq!(local.tags(c), remote.tags(c), "{c}: the machines differ");
    }

    // The same content made by the local service with its own tags, and on the server.
    let (c1, c5) = (
        "made here and there, stored offline",
        "made here and there, stored",
    );
    for c in [c1, c5] {
        local.post(c, &["t1"], json!({}));
        remote.post(c, &["t3"], json!({}));
    }
    m.ok(&["store", "--offline", c1, "--tags", "t2"]);
    m.ok(&["store", c5, "--tags", "t4"]);
    m.ok(&["sync"]);
    m.ok(&["sync"]);
    // Stored and pushed, then made by the local service with another tag: not an edit of
    // what was pushed (it removed the stored tags), the union.
    let c6 = "pushed, then made here too";
    m.ok(&["store", "--offline", c6, "--tags", "t2"]);
    m.ok(&["push"]);
    local.post(c6, &["t7"], json!({}));
    m.ok(&["sync"]);
    m.ok(&["sync"]);
    let t6 = remote.tags(c6);
    assert!(has(&t6, "t2") && has(&t6, "t7"), "{t6:?}");
    assert_eq!(local.tags(c6), t6);
    for (c, mine) in [(c1, "t2"), (c5, "t4")] {
        let t = remote.tags(c);
        assert!(
            has(&t, "t1") && has(&t, "t3") && has(&t, mine),
            "{c}: {t:?}"
        );
        assert_eq!(local.tags(c), t, "{c}: the machines differ");
    }
}

/// A tag stored to a memory nobody changed since the last sync is no conflict under any
/// policy: it is added (before: `local` sent the store's tags alone, `remote` dropped them,
/// `manual` showed them alone locally). And a store of a memory only the local service holds
/// sends the local version with it (before: the server got the store's tags alone, and the
/// next sync under `local` or `remote` lost one side).
#[test]
fn a_stored_tag_adds_to_a_memory_nobody_changed_under_every_policy() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let has = |tags: &[String], t: &str| tags.contains(&t.to_owned());
    for policy in ["local", "remote", "manual", "merge"] {
        let m = m.with("SYNC_CONFLICT_RESOLUTION", policy);
        let c = format!("Use WAL everywhere ({policy})");
        m.ok(&["store", &c, "--tags", "architecture,decisions"]);
        m.ok(&["sync"]);
        m.ok(&["store", "--offline", &c, "--tags", "reviewed"]);
        m.ok(&["push"]);
        let d = format!("Use WAL online ({policy})");
        m.ok(&["store", &d, "--tags", "architecture,decisions"]);
        m.ok(&["sync"]);
        m.ok(&["store", &d, "--tags", "reviewed"]);
        m.ok(&["sync"]);
        for c in [&c, &d] {
            let t = remote.tags(c);
            for want in ["architecture", "decisions", "reviewed"] {
                assert!(has(&t, want), "{policy}: {want} lost: {t:?}");
            }
            assert_eq!(local.tags(c), t, "{policy}: the machines differ");
        }

        let e = format!("Local-only memory for remote ({policy})");
        local.post(&e, &["mine"], json!({"k1": "v1"}));
        m.ok(&["store", "--offline", &e, "--tags", "x"]);
        m.ok(&["sync"]);
        m.ok(&["sync"]);
        let t = remote.tags(&e);
        assert!(has(&t, "mine") && has(&t, "x"), "{policy}: {t:?}");
        assert_eq!(local.tags(&e), t, "{policy}: the machines differ");
    }
}

/// `edit` of a staged store of a memory the server has: the local database shows the memory
/// with the edited tags added (before: the edited tags alone, and no type).
#[test]
fn editing_a_staged_store_shows_the_memory_with_it_added() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let c = "stored, then its staged store edited";
    m.ok(&["store", c, "--tags", "t1,t2", "--type", "decision"]);
    m.ok(&["sync"]);
    let out = m.ok(&["store", "--offline", c, "--tags", "x"]);
    let id = out
        .split('#')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_owned();
    m.ok(&["edit", &id, "--tags", "y"]);
    let t = local.tags(c);
    for want in ["t1", "t2", "y"] {
        assert!(
            t.contains(&want.to_owned()),
            "{want} not shown locally: {t:?}"
        );
    }
    m.with("SYNC_CONFLICT_RESOLUTION", "local").ok(&["sync"]);
    let t = remote.tags(c);
    for want in ["t1", "t2", "y"] {
        assert!(t.contains(&want.to_owned()), "{want} lost: {t:?}");
    }
}
