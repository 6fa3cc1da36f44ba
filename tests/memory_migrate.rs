//! Coming to memsync from elsewhere: the upstream shell scripts' staging database (its DELETE
//! rows included) and a machine whose local service has not created its database yet. Real
//! mcp-memory-service 12.4.0 servers, real SQLite.

mod common;

use common::mms::{Machine, Server, hash_of, remote_and_local};
use serde_json::json;

/// Writes the upstream scripts' `staging_db_init.sql` schema at `path` with one INSERT, one
/// UPDATE and one DELETE row; the DELETE row carries only the hash of `deleted`, as a script
/// that knows the memory by its hash alone would write it.
fn upstream_staging(path: &std::path::Path, deleted: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(
        "CREATE TABLE staged_memories (id TEXT PRIMARY KEY, content TEXT NOT NULL, content_hash TEXT NOT NULL,
           tags TEXT, metadata TEXT, memory_type TEXT DEFAULT 'note',
           operation TEXT NOT NULL CHECK (operation IN ('INSERT','UPDATE','DELETE')),
           staged_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, original_created_at TIMESTAMP, source_machine TEXT,
           conflict_status TEXT DEFAULT 'none' CHECK (conflict_status IN ('none','detected','resolved')));
         CREATE TABLE sync_status (key TEXT PRIMARY KEY, value TEXT, updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
         CREATE INDEX idx_staged_memories_hash ON staged_memories(content_hash);
         CREATE INDEX idx_staged_memories_staged_at ON staged_memories(staged_at);
         CREATE INDEX idx_staged_memories_operation ON staged_memories(operation);
         INSERT OR REPLACE INTO sync_status (key, value) VALUES ('last_remote_sync', ''), ('last_local_sync', ''),
           ('staging_version', '1.0'), ('total_staged_changes', '0');
         CREATE TRIGGER update_staged_count_insert AFTER INSERT ON staged_memories BEGIN
           UPDATE sync_status SET value = CAST((CAST(value AS INTEGER) + 1) AS TEXT), updated_at = CURRENT_TIMESTAMP
           WHERE key = 'total_staged_changes'; END;
         CREATE TRIGGER update_staged_count_delete AFTER DELETE ON staged_memories BEGIN
           UPDATE sync_status SET value = CAST((CAST(value AS INTEGER) - 1) AS TEXT), updated_at = CURRENT_TIMESTAMP
           WHERE key = 'total_staged_changes'; END;",
    )
    .unwrap();
    // Staged just now (after the server's copy was made), a second apart, as a script would.
    let rows = [
        (
            "a1",
            "an upstream insert",
            "[\"up\"]",
            "INSERT",
            "+0 seconds",
        ),
        (
            "a2",
            "an upstream update",
            "[\"up\",\"edited\"]",
            "UPDATE",
            "+1 seconds",
        ),
        ("a3", "", "[]", "DELETE", "+2 seconds"),
    ];
    for (id, content, tags, op, at) in rows {
        let hash = if op == "DELETE" {
            hash_of(deleted)
        } else {
            hash_of(content)
        };
        c.execute(
            "INSERT INTO staged_memories (id, content, content_hash, tags, metadata, operation, staged_at, source_machine)
             VALUES (?1, ?2, ?3, ?4, '{}', ?5, datetime('now', ?6), 'laptop')",
            rusqlite::params![id, content, hash, tags, op, at],
        )
        .unwrap();
    }
}

/// Whether the local service's database shows a live memory with this content.
fn live_locally(local: &Server, content: &str) -> bool {
    let c = rusqlite::Connection::open_with_flags(
        local.db(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    c.query_row(
        "SELECT COUNT(*) FROM memories WHERE content_hash = ?1 AND deleted_at IS NULL",
        [hash_of(content)],
        |r| r.get::<_, i64>(0),
    )
    .unwrap()
        > 0
}

#[test]
fn upstream_delete_rows_are_carried_and_pushed_as_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    // Both the server and this machine's local service hold the memory the script meant to delete.
    let doomed = "a memory the upstream script was asked to delete";
    remote.post(doomed, &["old"], json!({}));
    local.post(doomed, &["old"], json!({}));
    upstream_staging(&m.staging_path(), doomed);

    // Three upstream rows stay three: two stores and a delete.
    let export = dir.path().join("export.json");
    m.ok(&["export", "--output", &export.display().to_string()]);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&export).unwrap()).unwrap();
    let staged = v["staged"].as_array().unwrap();
    assert_eq!(staged.len(), 3, "{v:#}");
    let ops: Vec<&str> = staged
        .iter()
        .map(|s| s["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["store", "store", "delete"], "{v:#}");
    assert_eq!(staged[2]["content_hash"], hash_of(doomed));
    let status = m.ok(&["status"]);
    assert!(
        status.contains("pending    3") && status.contains("1 delete"),
        "{status}"
    );
    let listed = m.ok(&["staged"]);
    assert_eq!(listed.matches("(delete)").count(), 1, "{listed}");

    // sync: the pending delete keeps pull from writing the memory back; push deletes it.
    let out = m.ok(&["sync"]);
    assert!(out.contains("deleted 1"), "{out}");
    assert_eq!(m.staged("pending"), 0, "{out}");
    assert_eq!(m.staged("pushed"), 3, "{out}");
    assert_eq!(remote.rows_with_hash(&hash_of(doomed)), 0, "{out}");
    assert_eq!(remote.rows_with_hash(&hash_of("an upstream insert")), 1);
    assert_eq!(remote.rows_with_hash(&hash_of("an upstream update")), 1);
    assert!(
        !live_locally(&local, doomed),
        "the local service still shows the deleted memory"
    );

    // Later syncs neither bring it back locally nor push it again.
    m.ok(&["sync"]);
    m.ok(&["sync"]);
    assert_eq!(remote.rows_with_hash(&hash_of(doomed)), 0);
    assert!(!live_locally(&local, doomed));
    assert!(live_locally(&local, "an upstream insert"));
}

#[test]
fn a_staged_delete_keeps_pull_from_adding_the_memory_back() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let doomed = "deleted upstream before this machine ever pulled";
    remote.post(doomed, &["old"], json!({}));
    upstream_staging(&m.staging_path(), doomed);

    // pull (no push) while the delete waits: the memory is not written locally.
    let out = m.ok(&["pull"]);
    assert!(!live_locally(&local, doomed), "{out}");
    assert_eq!(m.staged("pending"), 3, "{out}");

    // push carries the delete out.
    let out = m.ok(&["push"]);
    assert!(out.contains("deleted 1"), "{out}");
    assert_eq!(remote.rows_with_hash(&hash_of(doomed)), 0);
    m.ok(&["pull"]);
    assert!(!live_locally(&local, doomed));

    // A second delete of the same memory: the server answers 200 "not found", which confirms it.
    rusqlite::Connection::open(m.staging_path())
        .unwrap()
        .execute(
            "INSERT INTO staged_memories (content_hash, content, operation, source_machine, staged_at, updated_at)
             VALUES (?1, '', 'delete', 'laptop', 1.0, 1.0)",
            [hash_of(doomed)],
        )
        .unwrap();
    let out = m.with("SYNC_VERBOSE", "1").ok(&["push"]);
    assert!(
        out.contains("already gone on the server") && out.contains("deleted 1"),
        "{out}"
    );
    assert_eq!((m.staged("pending"), m.staged("failed")), (0, 0), "{out}");
}

#[test]
fn pull_dry_run_without_a_local_database_lists_a_first_pull() {
    let dir = tempfile::tempdir().unwrap();
    let remote = Server::start(&dir.path().join("remote"));
    for i in 0..3 {
        remote.post(&format!("on the server {i}"), &["t"], json!({}));
    }
    let m = Machine::new(&dir.path().join("m"), remote.port);

    let out = m.ok(&["pull", "--dry-run"]);
    assert!(
        out.contains("dry run, nothing changed") && out.contains("added 3"),
        "{out}"
    );
    assert_eq!(out.lines().filter(|l| l.starts_with("add ")).count(), 3);
    assert!(
        !m.local_db().exists(),
        "a dry run created the local database"
    );
    assert!(
        !m.staging_path().exists(),
        "a dry run created the staging database"
    );

    // A real first pull without a replica cannot create the service's schema: it says what to do.
    let err = m.fails(&["pull"]);
    assert!(
        err.contains("start mcp-memory-service once") && err.contains("REMOTE_MEMORY_REPLICA"),
        "{err}"
    );
    assert!(!m.local_db().exists());
}

/// A delete the script staged before the server's copy was edited meets the edit as a
/// conflict: `manual` leaves it open (nothing deleted), `resolve-conflicts --strategy local`
/// then deletes it; under the default (`merge`) the later edit stays.
#[test]
fn an_upstream_delete_older_than_a_server_edit_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, _local, m) = remote_and_local(dir.path());
    let doomed = "deleted by a script, edited on the server afterwards";
    remote.post(doomed, &["old"], json!({}));
    upstream_staging(&m.staging_path(), doomed);
    m.ok(&["status"]);
    // The server's edit comes after the delete was staged (the migration's second, at the latest).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    remote.put_tags(doomed, &["edited-on-the-server"]);

    let manual = m.with("SYNC_CONFLICT_RESOLUTION", "manual");
    let out = manual.exits(4, &["push", "--verbose"]);
    assert!(out.contains("changed on the server"), "{out}");
    assert_eq!(remote.rows_with_hash(&hash_of(doomed)), 1, "not deleted");
    assert_eq!(remote.tags(doomed), ["edited-on-the-server"]);
    let listed = m.ok(&["resolve-conflicts"]);
    assert!(listed.contains("changed_remotely"), "{listed}");
    // Pushing again under `manual` decides nothing and deletes nothing.
    manual.exits(4, &["push"]);
    assert_eq!(remote.rows_with_hash(&hash_of(doomed)), 1);
    m.ok(&["resolve-conflicts", "--strategy", "local"]);
    let out = m.ok(&["push"]);
    assert!(out.contains("deleted 1"), "{out}");
    assert_eq!(remote.rows_with_hash(&hash_of(doomed)), 0);

    // Another machine, the default policy: the later event (the edit) wins.
    let kept = "deleted by a script, edited on the server, kept";
    remote.post(kept, &["old"], json!({}));
    let m2 = Machine::new(&dir.path().join("m2"), remote.port);
    upstream_staging(&m2.staging_path(), kept);
    m2.ok(&["status"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    remote.put_tags(kept, &["edited-on-the-server"]);
    let out = m2.ok(&["push", "--verbose"]);
    assert!(
        out.contains("changed on the server") && !out.contains("deleted 1"),
        "{out}"
    );
    assert_eq!(remote.tags(kept), ["edited-on-the-server"]);
    let out = m2.ok(&["push"]);
    assert!(!out.contains("deleted 1"), "{out}");
    assert_eq!(remote.rows_with_hash(&hash_of(kept)), 1);
}

/// A new machine whose first pull cannot restore the server's replica (nothing answers there,
/// or it holds another kind of database) fails in one line naming the replica, and leaves no
/// folder it made for the local database behind.
#[test]
fn a_first_pull_that_cannot_restore_leaves_nothing_and_names_the_replica() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("a/b/sqlite_vec.db");
    let nobody = format!(
        "http://127.0.0.1:{}/mem/sqlite_vec.db",
        common::mms::free_port()
    );
    let m = Machine::new(&dir.path().join("m"), common::mms::free_port())
        .with("MCP_MEMORY_SQLITE_PATH", local.to_str().unwrap())
        .with("REMOTE_MEMORY_REPLICA", &nobody);
    let o = m.run(&["pull"]);
    assert!(!o.status.success());
    assert!(
        !dir.path().join("a").exists(),
        "the failed pull left a/ behind"
    );
    // A replica of a database that is not the service's.
    let other = dir.path().join("other.db");
    let c = rusqlite::Connection::open(&other).unwrap();
    c.pragma_update(None, "journal_mode", "wal").unwrap();
    c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    let replica = dir.path().join("replica");
    let o = std::process::Command::new(common::BIN)
        .args([
            "replicate",
            "-once",
            other.to_str().unwrap(),
            replica.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let url = format!("file://{}", replica.display());
    let err = m
        .with("REMOTE_MEMORY_REPLICA", &url)
        .fails(&["pull", "--dry-run"]);
    assert!(
        err.contains("the database in replica") && !err.contains("remote.db"),
        "{err}"
    );
}
