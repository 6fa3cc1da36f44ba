//! What a user decided stays decided, against real mcp-memory-service 12.4.0 servers: a
//! conflict settled with `resolve-conflicts` is not met again by the next sync (whatever its
//! policy), `archive` does not take away an edit the server has not got, an offline `store`
//! without `--type` does not replace the server's type, and a staging path naming someone
//! else's text file is refused rather than "repaired".

mod common;

use common::mms::{Machine, Server, curl, free_port, hash_of, remote_and_local};
use serde_json::json;

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// A conflict left open by `sync --conflict manual`, settled by `resolve-conflicts`, then a
/// sync under another policy: the settled version goes to the server (before: the old merge
/// base made the next sync meet the server's side as a change and decide again, so
/// `--conflict remote` threw the user's merge away and `manual` opened it again).
#[test]
fn a_settled_conflict_is_not_decided_again_by_the_next_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let c = "a memory both machines retagged";
    remote.post(c, &["base1", "base2"], json!({}));
    m.ok(&["sync"]);
    local.put_tags(c, &["base1", "froma"]);
    remote.put_tags(c, &["base1", "base2", "fromb"]);
    m.exits(4, &["sync", "--conflict", "manual"]);
    let out = m.ok(&["resolve-conflicts", "--strategy", "merge"]);
    assert!(out.contains("settled: merge"), "{out}");
    // Three-way: base2 removed here stays removed, both additions stay.
    let merged = sorted(&["base1", "froma", "fromb"]);
    assert_eq!(local.tags(c), merged);
    let out = m.ok(&["sync", "--conflict", "remote"]);
    assert_eq!(remote.tags(c), merged, "{out}");
    assert_eq!(local.tags(c), merged);
    assert!(m.ok(&["status"]).contains("conflicts  0 open"));

    // The same with a memory edited here and deleted on the server, kept by `local`.
    let d = "a memory kept after its deletion elsewhere";
    remote.post(d, &["keep"], json!({}));
    m.ok(&["sync"]);
    local.put_tags(d, &["keep", "edited-here"]);
    let url = format!("{}/api/memories/{}", remote.url(), hash_of(d));
    assert_eq!(curl("DELETE", &url, None).0, 200);
    m.exits(4, &["sync", "--conflict", "manual"]);
    m.ok(&["resolve-conflicts", "--strategy", "local"]);
    let out = m.ok(&["sync", "--conflict", "remote"]);
    assert_eq!(remote.tags(d), sorted(&["edited-here", "keep"]), "{out}");
    assert_eq!(local.tags(d), sorted(&["edited-here", "keep"]));
    assert!(m.ok(&["status"]).contains("conflicts  0 open"));
}

/// `archive` keeps an old memory edited here since the last sync (before: it left the local
/// database with the edit, and the server's older version was the only live one); once synced,
/// it is archived.
#[test]
fn archive_keeps_a_memory_whose_edit_the_server_has_not_got() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let c = "an old memory edited before its archive";
    remote.post(c, &["orig"], json!({}));
    m.ok(&["sync"]);
    local.put_tags(c, &["orig", "edited"]);
    let db = rusqlite::Connection::open(local.db()).unwrap();
    db.execute(
        "UPDATE memories SET created_at = created_at - 200 * 86400",
        [],
    )
    .unwrap();
    drop(db);
    let out = m.ok(&["archive", "--older-than", "90 days"]);
    assert!(
        out.contains("1 older memories have changes the server does not have yet"),
        "{out}"
    );
    assert_eq!(local.tags(c), sorted(&["edited", "orig"]));
    m.ok(&["sync"]);
    assert_eq!(remote.tags(c), sorted(&["edited", "orig"]));
    let out = m.ok(&["archive", "--older-than", "90 days"]);
    assert!(out.contains("archived 1"), "{out}");
}

/// An offline `store` without `--type` of a memory the server holds with a type keeps that
/// type once pushed (before: the default `note` replaced it, where an online store kept it);
/// a memory new to the server still gets `note`.
#[test]
fn an_offline_store_without_a_type_keeps_the_servers_type() {
    let dir = tempfile::tempdir().unwrap();
    let remote = Server::start(&dir.path().join("remote"));
    let m = Machine::new(&dir.path().join("m"), remote.port);
    let c = "rollback plan";
    let body = json!({"content": c, "tags": ["ops"], "memory_type": "decision"});
    let (status, answer) = curl(
        "POST",
        &format!("{}/api/memories", remote.url()),
        Some(&body),
    );
    assert_eq!(status, 200, "{answer}");
    m.ok(&["store", "--offline", c, "--tags", "extra"]);
    m.ok(&["store", "--offline", "a brand new note"]);
    m.ok(&["push"]);
    let get = |content: &str| {
        let url = format!("{}/api/memories/{}", remote.url(), hash_of(content));
        let (status, body) = curl("GET", &url, None);
        assert_eq!(status, 200, "{body}");
        body
    };
    assert_eq!(get(c)["memory_type"], "decision");
    assert!(remote.tags(c).contains(&"extra".to_owned()));
    assert_eq!(get("a brand new note")["memory_type"], "note");
}

/// `STAGING_DB_PATH` naming a text file (the settings file, by mistake) is refused as not a
/// staging database, by the sync commands and by `repair`, and the file is left as it was
/// (before: called damaged, and `repair` moved it aside and put a database in its place);
/// `status` names it.
#[test]
fn a_text_file_as_the_staging_database_is_refused_not_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("sync_config.json");
    let text = "{\"remote\": {\"host\": \"127.0.0.1\"}}\n";
    std::fs::write(&settings, text).unwrap();
    let m = Machine::new(&dir.path().join("m"), free_port())
        .with("STAGING_DB_PATH", settings.to_str().unwrap());
    for cmd in [
        &["push"][..],
        &["repair"],
        &["sync"],
        &["store", "--offline", "x"],
    ] {
        let err = m.fails(cmd);
        assert!(
            err.contains("not a staging database") && !err.contains("damaged"),
            "{cmd:?}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    // `status` reports it among the rest.
    let out = m.run(&["status"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("not a staging database"), "{stdout}");
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), text);
    // Nothing put beside it, lock files included (they were made before the refusal).
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "nothing put beside it: {names:?}");
    // A directory is refused the same way, saying so.
    let folder = dir.path().join("a-folder");
    std::fs::create_dir(&folder).unwrap();
    let m = m.with("STAGING_DB_PATH", folder.to_str().unwrap());
    let err = m.fails(&["store", "--offline", "x"]);
    assert!(err.contains("is a directory"), "{err}");
    assert!(!dir.path().join("a-folder.lock").exists());
    assert!(!dir.path().join("a-folder.store.lock").exists());
}

/// The memory's type in a server's database file.
fn type_in(db: &std::path::Path, content: &str) -> Option<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row(
        "SELECT memory_type FROM memories WHERE content_hash = ?1 AND deleted_at IS NULL",
        [hash_of(content)],
        |r| r.get(0),
    )
    .unwrap()
}

/// `store` without `--type` of a memory the server holds with a type, settled by `local`
/// (at store, or later by `resolve-conflicts --strategy local`): the type stays, here as on
/// the server (before: the local database was left with no type, the server with its own).
#[test]
fn the_local_policy_keeps_the_type_of_a_memory_stored_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    for (c, policy) in [
        ("typed on the server, retagged here", None),
        ("typed on the server, settled later", Some("manual")),
        ("typed on the server, retagged offline", Some("offline")),
    ] {
        let body = json!({"content": c, "tags": ["x"], "memory_type": "decision"});
        let (status, answer) = curl(
            "POST",
            &format!("{}/api/memories", remote.url()),
            Some(&body),
        );
        assert_eq!(status, 200, "{answer}");
        m.ok(&["sync"]);
        assert_eq!(type_in(&local.db(), c).as_deref(), Some("decision"));
        match policy {
            None => {
                m.ok(&["store", "--tags", "y", "--conflict", "local", c]);
                m.ok(&["sync"]);
                m.ok(&["sync", "--conflict", "local"]);
            }
            Some("offline") => {
                m.ok(&["store", "--offline", "--tags", "y", c]);
                m.ok(&["sync", "--conflict", "local"]);
                m.ok(&["sync"]);
            }
            Some(p) => {
                m.run(&["store", "--tags", "other", "--conflict", p, c]);
                m.run(&["sync", "--conflict", p]);
                m.ok(&["resolve-conflicts", "--strategy", "local"]);
                m.ok(&["sync"]);
            }
        }
        assert_eq!(type_in(&remote.db(), c).as_deref(), Some("decision"), "{c}");
        assert_eq!(type_in(&local.db(), c).as_deref(), Some("decision"), "{c}");
    }
}
