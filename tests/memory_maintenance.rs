//! Memory sync's destructive commands keep what they remove, and the settings say where they
//! come from: reset copies that nothing overwrites, reusable exports, `init --write-config`
//! where memsync reads it, every settings source checked (`repair`: `memory_repair.rs`). Real mcp-memory-service servers, real SQLite.

mod common;

use std::path::Path;

use common::mms::{Machine, Server, curl, free_port, named_path, remote_and_local};
use serde_json::{Value, json};

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn conflict_records(m: &Machine) -> i64 {
    rusqlite::Connection::open(m.staging_path())
        .unwrap()
        .query_row("SELECT COUNT(*) FROM conflicts", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn two_resets_in_one_second_each_keep_their_own_complete_copy() {
    let dir = tempfile::tempdir().unwrap();
    let m = Machine::new(&dir.path().join("m"), free_port());
    for i in 0..3 {
        m.ok(&[
            "store",
            "--offline",
            &format!("waiting before the resets {i}"),
        ]);
    }
    // Back to back: the second reset runs within the same second as the first.
    let first = m.ok(&["reset", "--yes"]);
    let second = m.ok(&["reset", "--yes"]);
    let (a, b) = (
        named_path(&first, "a copy is in "),
        named_path(&second, "a copy is in "),
    );
    assert_ne!(a, b, "each reset keeps its own copy");
    let a = read_json(&a);
    let staged = a["staged"].as_array().unwrap();
    assert_eq!(staged.len(), 3, "the first copy is complete: {a}");
    assert!(
        staged
            .iter()
            .all(|s| s["content"].as_str().unwrap().starts_with("waiting before"))
    );
    assert_eq!(read_json(&b)["staged"].as_array().unwrap().len(), 0);
}

#[test]
fn reset_without_a_terminal_refuses_even_with_only_conflict_records_left() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let m = Machine::new(&dir.path().join("m"), server.port);
    // A diverged memory settled by the default merge policy: nothing waits, a record remains.
    server.post("kept in a conflict record", &["server-tag"], json!({}));
    m.ok(&[
        "store",
        "--offline",
        "--tags",
        "local-tag",
        "kept in a conflict record",
    ]);
    let pushed = m.run(&["push"]);
    assert!(String::from_utf8_lossy(&pushed.stdout).contains("conflicts 1"));
    assert_eq!(m.staged("pending") + m.staged("conflict"), 0);
    assert_eq!(conflict_records(&m), 1);
    let err = m.fails(&["reset"]);
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(conflict_records(&m), 1, "nothing changed");
    let out = m.ok(&["reset", "--yes"]);
    let copy = read_json(&named_path(&out, "a copy is in "));
    assert_eq!(copy["conflicts"].as_array().unwrap().len(), 1, "{copy}");
    assert_eq!(conflict_records(&m), 0);
}

#[test]
fn an_export_is_a_settings_file_and_an_old_one_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let m = Machine::new(&dir.path().join("m"), server.port);
    m.ok(&["store", "--offline", "exported and waiting"]);
    let file = dir.path().join("export.json");
    m.ok(&["export", "-o", file.to_str().unwrap()]);
    let v = read_json(&file);
    assert!(v["config"]["remote"].get("api_key").is_none(), "{v}");
    // Only the key (never exported) from the environment; the rest from the export.
    let bare = Machine {
        env: m
            .env
            .iter()
            .filter(|(k, _)| !k.starts_with("REMOTE_MEMORY") || k == "REMOTE_MEMORY_API_KEY")
            .cloned()
            .collect(),
        ..m.clone()
    };
    let out = bare.ok(&["push", "--sync-config", file.to_str().unwrap()]);
    assert!(out.contains("pushed 1"), "{out}");
    assert_eq!(server.live_count(), 1);
    // An export written by an older memsync carries a placeholder where the key was.
    let old = dir.path().join("old-export.json");
    let mut v = v;
    v["config"]["remote"]["api_key"] = json!("(set, not exported)");
    std::fs::write(&old, v["config"].to_string()).unwrap();
    let err = bare.fails(&["status", "--sync-config", old.to_str().unwrap()]);
    assert!(
        err.contains("old-export.json") && err.contains("remote.api_key") && err.contains("export"),
        "{err}"
    );
}

#[test]
fn init_writes_the_settings_file_where_memsync_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let m =
        Machine::new(&dir.path().join("m"), server.port).with("SYNC_CONFLICT_RESOLUTION", "local");
    let default = dir
        .path()
        .join("m/home/.mcp_memory_staging/sync_config.json");
    let out = m.ok(&["init", "--write-config"]);
    assert!(out.contains(default.to_str().unwrap()), "{out}");
    assert!(!dir.path().join("m/staging/sync_config.json").exists());
    // Read back without the environment: the written file is the one in use.
    let bare = Machine {
        env: m
            .env
            .iter()
            .filter(|(k, _)| k == "HOME" || k == "REMOTE_MEMORY_API_KEY")
            .cloned()
            .collect(),
        ..m.clone()
    };
    let status = bare.ok(&["status"]);
    assert!(
        status.contains("reachable, mcp-memory-service")
            && status.contains("policy       local")
            && status.contains(m.staging_path().to_str().unwrap()),
        "{status}"
    );
    // A named settings file that does not exist yet is created there.
    let named = dir.path().join("elsewhere/memsync.json");
    let out = m.ok(&[
        "init",
        "--write-config",
        "--sync-config",
        named.to_str().unwrap(),
    ]);
    assert!(
        out.contains(named.to_str().unwrap()) && named.is_file(),
        "{out}"
    );
    let via_env = dir.path().join("via-env.json");
    let out = m
        .with("SYNC_CONFIG_PATH", via_env.to_str().unwrap())
        .ok(&["init", "--write-config"]);
    assert!(
        out.contains(via_env.to_str().unwrap()) && via_env.is_file(),
        "{out}"
    );
    // An existing file is left as it is.
    let before = std::fs::read(&default).unwrap();
    let out = m.ok(&["init", "--write-config", "--conflict", "remote"]);
    assert!(out.contains("left as it is"), "{out}");
    assert_eq!(std::fs::read(&default).unwrap(), before);
}

#[test]
fn resolve_conflicts_with_an_unknown_id_fails() {
    let dir = tempfile::tempdir().unwrap();
    let m = Machine::new(&dir.path().join("m"), free_port());
    m.ok(&["init"]);
    let err = m.fails(&["resolve-conflicts", "--id", "999", "--strategy", "local"]);
    assert!(err.contains("999"), "{err}");
    let err = m.fails(&["resolve-conflicts", "--id", "999"]);
    assert!(err.contains("999"), "{err}");
}

#[test]
fn settings_file_values_are_checked_even_where_the_environment_overrides_them() {
    let dir = tempfile::tempdir().unwrap();
    let m = Machine::new(&dir.path().join("m"), free_port())
        .with("SYNC_CONFLICT_RESOLUTION", "merge")
        .with("SYNC_INTERVAL", "60");
    let cfg = dir.path().join("sync_config.json");
    let m = m.with("SYNC_CONFIG_PATH", cfg.to_str().unwrap());
    for (file, key) in [
        (json!({"remote": {"port": 0}}), "remote.port"),
        (json!({"remote": {"protocol": "ftp"}}), "remote.protocol"),
        (
            json!({"conflict_resolution": "bogus"}),
            "conflict_resolution",
        ),
        (json!({"auto_sync_interval": 0}), "auto_sync_interval"),
        (json!({"remote": {"host": "http://x:1/"}}), "remote.host"),
    ] {
        std::fs::write(&cfg, file.to_string()).unwrap();
        let err = m.fails(&["status"]);
        assert!(
            err.contains("sync_config.json") && err.contains(key),
            "{key}: {err}"
        );
    }
    // Without the environment's value, the file's bad interval is still the file's.
    std::fs::write(&cfg, json!({"auto_sync_interval": 0}).to_string()).unwrap();
    let err = m.with("SYNC_INTERVAL", "").fails(&["status"]);
    assert!(
        err.contains("auto_sync_interval") && !err.contains("SYNC_INTERVAL"),
        "{err}"
    );
}

#[test]
fn status_counts_memories_without_embeddings_and_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, _local, m) = remote_and_local(dir.path());
    for i in 0..3 {
        let (s, _) = curl(
            "POST",
            &format!("{}/api/memories", remote.url()),
            Some(&json!({"content": format!("pulled over REST {i}")})),
        );
        assert_eq!(s, 200);
    }
    m.ok(&["pull"]);
    let status = m.ok(&["status"]);
    assert!(
        status.contains("3 local memories have no embedding")
            && status.contains("REMOTE_MEMORY_REPLICA"),
        "{status}"
    );

    // A database whose writes sit in its WAL: the size counts them.
    let db = dir.path().join("walled/sqlite_vec.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let c = common::create_memdb(&db);
    c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    for i in 0..1500 {
        common::insert_memory(&c, i);
    }
    let wal = std::fs::metadata(dir.path().join("walled/sqlite_vec.db-wal"))
        .unwrap()
        .len();
    assert!(wal > 2_000_000, "{wal}");
    let status = m
        .with("MCP_MEMORY_SQLITE_PATH", db.to_str().unwrap())
        .ok(&["status"]);
    let mb: f64 = status
        .lines()
        .find(|l| l.starts_with("local db"))
        .and_then(|l| l.split(" MB").next())
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{status}"));
    assert!((mb + 0.05) * 1e6 >= wal as f64, "{status}");
    drop(c);
}

#[test]
fn optimize_keeps_a_copy_of_the_rows_it_prunes() {
    let dir = tempfile::tempdir().unwrap();
    let m = Machine::new(&dir.path().join("m"), free_port());
    for i in 0..3 {
        m.ok(&["store", "--offline", &format!("confirmed long ago {i}")]);
    }
    m.ok(&["store", "--offline", "still waiting"]);
    // Two rows confirmed by the server 60 days ago, as a push would have left them.
    rusqlite::Connection::open(m.staging_path())
        .unwrap()
        .execute(
            "UPDATE staged_memories SET state = 'pushed', updated_at = updated_at - 60 * 86400
             WHERE content LIKE 'confirmed long ago%' AND id <= 2",
            [],
        )
        .unwrap();
    let out = m.ok(&["optimize"]);
    let copy = read_json(&named_path(&out, "a copy is in "));
    let pruned: Vec<&str> = copy["staged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        pruned,
        ["confirmed long ago 0", "confirmed long ago 1"],
        "{out}"
    );
    assert_eq!(m.staged("pushed"), 0);
    assert_eq!(m.staged("pending"), 2);
    assert!(
        m.ok(&["optimize"])
            .contains("no confirmed rows older than 30 days")
    );
}
