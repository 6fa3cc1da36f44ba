//! Memory sync's pull, against real mcp-memory-service 12.4.0 servers: one plays
//! the remote, another one the local service whose database `pull` writes into while it runs.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::mms::{Machine, Server, curl, hash_of, remote_and_local, replicate_once};
use serde_json::json;

/// Fingerprint of a database's files, to prove a dry run wrote nothing.
fn files_digest(db: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    ["", "-wal"]
        .iter()
        .map(|ext| {
            let p = format!("{}{ext}", db.display());
            (p.clone(), std::fs::read(&p).unwrap_or_default())
        })
        .collect()
}

#[test]
fn pull_into_a_database_being_read_keeps_it_sound_and_keeps_staged_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let m = m.with("SYNC_BATCH_SIZE", "10");
    for i in 0..120 {
        let tags: &[&str] = if i % 4 == 0 {
            &["bulk", "urgent"]
        } else {
            &["bulk"]
        };
        remote.post(
            &format!("remote memory {i}: {}", "some words ".repeat(i % 9)),
            tags,
            json!({"i": i}),
        );
    }
    m.ok(&["store", "--offline", "a local change still staged"]);

    // --dry-run changes nothing, and --tags narrows it.
    let before = files_digest(&local.db());
    let out = m.ok(&["pull", "--dry-run"]);
    assert!(
        out.contains("dry run, nothing changed") && out.contains("added 120"),
        "{out}"
    );
    assert_eq!(out.lines().filter(|l| l.starts_with("add ")).count(), 120);
    let out = m.ok(&["pull", "--dry-run", "--tags", "URGENT"]);
    assert!(out.contains("added 30"), "{out}");
    assert!(
        files_digest(&local.db()) == before,
        "a dry run wrote to the database"
    );
    assert_eq!(m.staged("pending"), 1);

    // A reader keeps reading while pull writes: every snapshot it sees is sound.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (db, stop) = (local.db(), stop.clone());
        std::thread::spawn(move || {
            common::register_vec();
            let c = rusqlite::Connection::open_with_flags(
                &db,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .unwrap();
            c.busy_timeout(Duration::from_secs(10)).unwrap();
            let (mut reads, mut last) = (0, 0i64);
            while !stop.load(Ordering::SeqCst) || reads < 5 {
                // quick_check on a fresh connection: SQLite's FTS5 integrity check trusts a
                // structure cached by an earlier transaction of the same connection.
                let fresh = rusqlite::Connection::open_with_flags(
                    &db,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .unwrap();
                fresh.busy_timeout(Duration::from_secs(10)).unwrap();
                let check: String = fresh
                    .query_row("PRAGMA quick_check", [], |r| r.get(0))
                    .unwrap();
                assert_eq!(check, "ok");
                let tx = c.unchecked_transaction().unwrap();
                let live: i64 = tx
                    .query_row(
                        "SELECT COUNT(*) FROM memories WHERE deleted_at IS NULL",
                        [],
                        |r| r.get(0),
                    )
                    .unwrap();
                let fts: i64 = tx
                    .query_row("SELECT COUNT(*) FROM memory_content_fts WHERE memory_content_fts MATCH 'remote memory'", [], |r| r.get(0))
                    .unwrap();
                assert!(
                    live >= last,
                    "the reader went back in time: {live} < {last}"
                );
                assert_eq!(fts, live, "full-text index out of step with the rows");
                last = live;
                reads += 1;
                drop(tx);
            }
            (reads, last)
        })
    };
    let out = m.ok(&["pull"]);
    stop.store(true, Ordering::SeqCst);
    let (reads, seen) = reader.join().expect("the reader saw a broken database");
    assert!(out.contains("added 120"), "{out}");
    assert!(reads >= 5 && seen == 120, "{reads} reads, last saw {seen}");
    assert_eq!(
        m.staged("pending"),
        1,
        "the staged change survived the pull"
    );

    // The local service sees the pulled memories.
    let h = hash_of(
        "remote memory 7: some words some words some words some words some words some words some words ",
    );
    let (status, body) = curl("GET", &format!("{}/api/memories/{h}", local.url()), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["metadata"]["i"], 7);
    let (_, page) = curl(
        "GET",
        &format!("{}/api/memories?page=1&page_size=1", local.url()),
        None,
    );
    assert_eq!(page["total"], 120);

    // A second pull has nothing to do; a memory deleted on the server leaves the local one.
    let out = m.ok(&["pull"]);
    assert!(
        out.contains("added 0") && out.contains("unchanged 120"),
        "{out}"
    );
    let (status, _) = curl(
        "DELETE",
        &format!("{}/api/memories/{h}", remote.url()),
        None,
    );
    assert_eq!(status, 200);
    let out = m.ok(&["pull"]);
    assert!(out.contains("removed 1"), "{out}");
    let (status, _) = curl("GET", &format!("{}/api/memories/{h}", local.url()), None);
    assert_eq!(status, 404);

    // sync pushes the staged change and pulls it back.
    let out = m.ok(&["sync"]);
    assert!(out.contains("pushed 1"), "{out}");
    m.ok(&["pull"]);
    let (status, _) = curl(
        "GET",
        &format!(
            "{}/api/memories/{}",
            local.url(),
            hash_of("a local change still staged")
        ),
        None,
    );
    assert_eq!(status, 200);
    let log = std::fs::read_to_string(dir.path().join("m/staging/sync.log")).unwrap();
    assert!(
        log.lines().any(|l| l.contains("sync completed")
            && l.contains("pushed=1")
            && l.contains("duration=")),
        "{log}"
    );
}

#[test]
fn pull_from_the_servers_replica_brings_embeddings_the_local_service_searches() {
    let dir = tempfile::tempdir().unwrap();
    let replica = format!("file://{}", dir.path().join("replica").display());
    pull_from_replica(&dir, &replica, &[]);
}

#[test]
fn pull_from_an_s3_replica_brings_embeddings_the_local_service_searches() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = common::s3::shared();
    let replica = s3.url(&common::s3::unique_prefix("pull"));
    pull_from_replica(&dir, &replica, &s3.env());
}

#[test]
fn pull_from_a_webdav_replica_brings_embeddings_the_local_service_searches() {
    let dir = tempfile::tempdir().unwrap();
    let dav = common::webdav::shared();
    let replica = dav.url(&common::s3::unique_prefix("pull"));
    pull_from_replica(&dir, &replica, &[]);
}

/// The server's database replicated to `replica` (`env`: its credentials), then pulled by a
/// machine with a local service and by a new machine without a local database.
fn pull_from_replica(dir: &tempfile::TempDir, replica: &str, env: &[(&str, &str)]) {
    let remote = Server::start(&dir.path().join("remote"));
    let local = Server::start(&dir.path().join("local"));
    for i in 0..15 {
        remote.post(
            &format!("replicated memory {i}"),
            &["from-replica"],
            json!({}),
        );
    }
    let o = std::process::Command::new(common::BIN)
        .envs(env.iter().copied())
        .args([
            "replicate",
            "-once",
            &remote.db().display().to_string(),
            replica,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut m = Machine::new(&dir.path().join("m"), remote.port)
        .with("MCP_MEMORY_SQLITE_PATH", &local.db().display().to_string())
        .with("REMOTE_MEMORY_REPLICA", replica);
    for (k, v) in env {
        m = m.with(k, v);
    }
    let out = m.ok(&["pull"]);
    assert!(
        out.contains("(replica)") && out.contains("added 15"),
        "{out}"
    );
    common::register_vec();
    let c = rusqlite::Connection::open(local.db()).unwrap();
    let with_vectors: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM memories m JOIN memory_embeddings e ON e.rowid = m.id WHERE m.embedding_pending = 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(with_vectors, 15);
    // A new machine without a local database: the first pull restores it from the replica.
    let mut fresh = Machine::new(&dir.path().join("new-machine"), remote.port)
        .with("REMOTE_MEMORY_REPLICA", replica);
    for (k, v) in env {
        fresh = fresh.with(k, v);
    }
    let out = fresh.ok(&["pull"]);
    assert!(
        out.contains("local database created from the server's replica")
            && out.contains("unchanged 15"),
        "{out}"
    );
    // The same through `sync` (what `memsync run` does on a new machine).
    let mut by_sync = Machine::new(&dir.path().join("synced-machine"), remote.port)
        .with("REMOTE_MEMORY_REPLICA", replica);
    for (k, v) in env {
        by_sync = by_sync.with(k, v);
    }
    let out = by_sync.ok(&["sync"]);
    assert!(
        out.contains("local database created from the server's replica"),
        "{out}"
    );
    let c2 = common::check_sound(&fresh.local_db());
    let n: i64 = c2
        .query_row("SELECT COUNT(*) FROM memory_embeddings", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 15);
    // The service's tag search skips rows without vectors; these it finds.
    let (status, body) = curl(
        "POST",
        &format!("{}/api/search/by-tag", local.url()),
        Some(&json!({"tags": ["from-replica"]})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total_found"], 15, "{body}");
}

#[test]
fn pull_force_lets_the_server_win_and_still_keeps_the_local_side() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let m = m.with("SYNC_CONFLICT_RESOLUTION", "merge");
    let (staged, edited) = ("forced: staged locally", "forced: edited locally");
    remote.post(staged, &["server-tag"], json!({}));
    remote.post(edited, &["t"], json!({}));
    m.ok(&["pull"]);
    m.ok(&["store", "--offline", "--tags", "local-tag", staged]);
    local.put_tags(edited, &["local-edit"]);
    remote.put_tags(edited, &["server-edit"]);
    let out = m.ok(&["pull", "--force"]);
    assert!(out.contains("conflicts 2"), "{out}");
    // The server's versions win locally, nothing is left to push...
    assert_eq!(local.tags(staged), vec!["server-tag"]);
    assert_eq!(local.tags(edited), vec!["server-edit"]);
    assert_eq!(m.staged("pending"), 0);
    assert!(m.ok(&["push"]).contains("pushed 0"));
    assert_eq!(remote.tags(edited), vec!["server-edit"]);
    // ...and both local versions are kept in the conflict records.
    let export: serde_json::Value = serde_json::from_str(&m.ok(&["export"])).unwrap();
    let kept: Vec<&serde_json::Value> = export["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["resolution"] == "remote")
        .collect();
    assert_eq!(kept.len(), 2);
    assert!(kept.iter().any(|c| {
        c["local"]["tags"]
            .as_array()
            .unwrap()
            .contains(&json!("local-edit"))
    }));
    assert!(kept.iter().any(|c| {
        c["local"]["tags"]
            .as_array()
            .unwrap()
            .contains(&json!("local-tag"))
    }));
}

/// A replica behind the server (its replicator stopped, an outage) never reverts what this
/// machine pushed: a memory made here and pushed is not removed as "deleted there", a pushed
/// edit is not changed back; the server is asked about what the replica would change. With the
/// server down, such memories are left alone until it answers.
#[test]
fn a_replica_behind_the_server_never_reverts_what_this_machine_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut remote, local, m) = remote_and_local(dir.path());
    let replica = format!("file://{}", dir.path().join("replica").display());
    let m = m.with("REMOTE_MEMORY_REPLICA", &replica);
    remote.post("seed memory", &["seed"], json!({}));
    replicate_once(&remote, &replica);
    m.ok(&["pull"]);
    // Made here, through the local service: a new memory, and an edit of the seed.
    let mine = "made on this machine";
    local.post(mine, &["mine"], json!({}));
    local.put_tags("seed memory", &["seed", "edited-here"]);
    let out = m.ok(&["sync"]);
    assert!(out.contains("pushed 2"), "{out}");
    assert_eq!(remote.tags(mine), vec!["mine"]);
    assert_eq!(remote.tags("seed memory"), vec!["edited-here", "seed"]);
    let live_here = |content: &str| local.rows_with_hash(&hash_of(content)) == 1;

    // The replica still shows the server before the push.
    let out = m.ok(&["sync"]);
    assert!(
        out.contains("removed 0") && out.contains("changed 0"),
        "{out}"
    );
    assert!(
        out.contains("the replica was behind the server on 2"),
        "{out}"
    );
    assert!(live_here(mine), "a memory made here was removed: {out}");
    assert_eq!(local.tags("seed memory"), vec!["edited-here", "seed"]);
    assert_eq!(remote.tags("seed memory"), vec!["edited-here", "seed"]);

    // The server down: the replica cannot be checked, so nothing it shows differently is
    // applied.
    remote.stop();
    let out = m.ok(&["pull"]);
    assert!(
        out.contains("removed 0") && out.contains("2 memories left as they are"),
        "{out}"
    );
    assert!(live_here(mine));
    assert_eq!(local.tags("seed memory"), vec!["edited-here", "seed"]);

    // Back, and the replica caught up: all agree, nothing moves.
    remote.restart();
    replicate_once(&remote, &replica);
    let out = m.ok(&["sync"]);
    assert!(
        out.contains("removed 0") && out.contains("changed 0") && !out.contains("behind"),
        "{out}"
    );
    assert!(live_here(mine));
    assert_eq!(local.tags("seed memory"), vec!["edited-here", "seed"]);
}

/// The memory server's TLS settings (`--ca-file`, `REMOTE_MEMORY_CA_FILE`, `--insecure`) apply
/// to an `https://` replica too: a `memsync serve` with a private certificate is what the
/// README's setup has (before: every one of them failed with "error sending request", and only
/// the undocumented `SSL_CERT_FILE` worked).
#[test]
fn pull_from_a_replica_over_tls_uses_the_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let remote = Server::start(&dir.path().join("remote"));
    for i in 0..3 {
        remote.post(&format!("memory over tls {i}"), &["tls"], json!({}));
    }
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    common::serve::make_cert(&cert, &key);
    let root = dir.path().join("backups");
    std::fs::create_dir(&root).unwrap();
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let srv = common::serve::Server::start(
        &root,
        &[
            "-api-key",
            common::serve::KEY,
            "-tls-cert",
            &cert_s,
            "-tls-key",
            &key_s,
        ],
        &[],
    );
    let replica = format!("{}/sqlite_vec.db", srv.url);
    let token = ("MEMSYNC_HTTP_TOKEN", common::serve::KEY);
    let o = std::process::Command::new(common::BIN)
        .env("SSL_CERT_FILE", &cert)
        .env(token.0, token.1)
        .args([
            "replicate",
            "-once",
            &remote.db().display().to_string(),
            &replica,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = Machine::new(&dir.path().join("m"), remote.port)
        .with("REMOTE_MEMORY_REPLICA", &replica)
        .with(token.0, token.1);
    let failed = m.fails(&["pull"]);
    assert!(failed.contains("error"), "{failed}");
    let out = m.ok(&["pull", "--ca-file", &cert_s]);
    assert!(
        out.contains("local database created from the server's replica"),
        "{out}"
    );
    let by_env = Machine::new(&dir.path().join("m2"), remote.port)
        .with("REMOTE_MEMORY_REPLICA", &replica)
        .with("REMOTE_MEMORY_CA_FILE", &cert_s)
        .with(token.0, token.1);
    by_env.ok(&["pull"]);
    let insecure = Machine::new(&dir.path().join("m3"), remote.port)
        .with("REMOTE_MEMORY_REPLICA", &replica)
        .with(token.0, token.1);
    insecure.ok(&["pull", "--insecure"]);
    drop(srv);
}

/// A memory in another of the service's stores (v12's `store` partition) keeps its store when
/// it is pulled from the server's replica, and its vector lands in that partition, where the
/// service searches it (before: every memory was written to `default`).
#[test]
fn a_replica_pull_keeps_each_memory_in_its_store() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let url = format!("{}/api/memories", remote.url());
    let (status, body) = common::mms::curl(
        "POST",
        &url,
        Some(&json!({"content": "kept in the work store", "tags": ["w"], "store": "work"})),
    );
    assert!(status == 200 || status == 201, "{body}");
    let replica = format!("file://{}", dir.path().join("replica").display());
    replicate_once(&remote, &replica);
    m.with("REMOTE_MEMORY_REPLICA", &replica).ok(&["pull"]);
    common::register_vec();
    let c = rusqlite::Connection::open(local.db()).unwrap();
    let (store, partition): (String, String) = c
        .query_row(
            "SELECT m.store, e.store FROM memories m JOIN memory_embeddings e ON e.rowid = m.id
              WHERE m.content = 'kept in the work store'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((store.as_str(), partition.as_str()), ("work", "work"));
}
