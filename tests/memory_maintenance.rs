//! Memory sync's destructive and repairing commands keep what they remove, and the settings
//! say where they come from: reset and repair copies that nothing overwrites, a damaged
//! staging database named as such, reusable exports, `init --write-config` where memsync
//! reads it, every settings source checked. Real mcp-memory-service servers, real SQLite.

mod common;

use std::path::{Path, PathBuf};

use common::mms::{Machine, Server, curl, free_port, remote_and_local};
use serde_json::{Value, json};

/// The path a command's message names after `marker`, up to the end of its line.
fn named_path(out: &str, marker: &str) -> PathBuf {
    let rest = out
        .split(marker)
        .nth(1)
        .unwrap_or_else(|| panic!("no {marker:?} in: {out}"));
    PathBuf::from(rest.lines().next().unwrap().trim())
}

/// The rows a repair salvaged and those it could not read, from its message.
fn repair_counts(out: &str) -> (usize, usize) {
    let count = |marker: &str| -> usize {
        out.split(marker)
            .next()
            .and_then(|s| s.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count before {marker:?} in: {out}"))
    };
    (count(" rows salvaged"), count(" could not be read"))
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn conflict_records(m: &Machine) -> i64 {
    rusqlite::Connection::open(m.staging_path())
        .unwrap()
        .query_row("SELECT COUNT(*) FROM conflicts", [], |r| r.get(0))
        .unwrap()
}

/// Overwrites a leaf page in the middle of the `staged_memories` table: the rows on it become
/// unreadable, the others (and the index counts) stay readable.
fn damage_a_table_leaf(staging: &Path) {
    let c = rusqlite::Connection::open(staging).unwrap();
    c.pragma_update(None, "wal_checkpoint", "TRUNCATE").unwrap();
    let root: u32 = c
        .query_row(
            "SELECT rootpage FROM sqlite_master WHERE name = 'staged_memories'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let page_size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    let page_size = page_size as usize;
    drop(c);
    let mut bytes = std::fs::read(staging).unwrap();
    let at = (root as usize - 1) * page_size;
    let page = &bytes[at..at + page_size];
    assert_eq!(page[0], 0x05, "the table needs an interior root page");
    let cells = u16::from_be_bytes([page[3], page[4]]) as usize;
    assert!(cells >= 2, "the table needs several leaves");
    // The cell pointer array starts at offset 12; each cell opens with its child's page number.
    let ptr = 12 + 2 * (cells / 2);
    let cell = u16::from_be_bytes([page[ptr], page[ptr + 1]]) as usize;
    let child = u32::from_be_bytes(page[cell..cell + 4].try_into().unwrap()) as usize;
    bytes[(child - 1) * page_size..child * page_size].fill(0xA5);
    std::fs::write(staging, &bytes).unwrap();
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
fn two_repairs_in_one_second_keep_both_damaged_files_and_count_what_was_lost() {
    let dir = tempfile::tempdir().unwrap();
    let m = Machine::new(&dir.path().join("m"), free_port());
    let pad = "padding so the rows span several pages ".repeat(8);
    for i in 0..40 {
        m.ok(&["store", "--offline", &format!("staged {i} {pad}")]);
    }
    let ids = |p: &Path| -> Vec<(i64, String)> {
        let c = rusqlite::Connection::open(p).unwrap();
        let mut s = c
            .prepare("SELECT id, content FROM staged_memories ORDER BY id")
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let before = ids(&m.staging_path());
    damage_a_table_leaf(&m.staging_path());
    let first = m.ok(&["repair"]);
    let (salvaged, lost) = repair_counts(&first);
    assert!(lost > 0 && salvaged + lost == 40, "{first}");
    assert_eq!(m.staged("pending") as usize, salvaged);
    // The rows keep the ids `edit` and `drop` know them by (before: renumbered in the order
    // they were read), and a new row does not take a lost row's id.
    let after = ids(&m.staging_path());
    let moved: Vec<i64> = after
        .iter()
        .filter(|r| !before.contains(r))
        .map(|r| r.0)
        .collect();
    assert!(moved.is_empty(), "rows given other ids: {moved:?}");
    m.ok(&["store", "--offline", "staged after the repair"]);
    let newest = ids(&m.staging_path()).last().unwrap().0;
    assert_eq!(newest, 41, "a lost row's id handed out again");
    // Damaged again at once: the second repair keeps its own damaged file.
    damage_a_table_leaf(&m.staging_path());
    let second = m.ok(&["repair"]);
    let (a, b) = (
        named_path(&first, "the damaged file is kept as "),
        named_path(&second, "the damaged file is kept as "),
    );
    assert_ne!(a, b, "{first}\n{second}");
    for p in [&a, &b] {
        let rows: i64 = rusqlite::Connection::open(p)
            .unwrap()
            .query_row(
                "SELECT COUNT(*) FROM staged_memories WHERE state = 'pending'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(rows > 0, "{} holds the damaged rows", p.display());
    }
}

#[test]
fn a_damaged_staging_database_is_named_by_push_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let m = Machine::new(&dir.path().join("m"), server.port);
    let pad = "padding so the rows span several pages ".repeat(8);
    for i in 0..40 {
        m.ok(&["store", "--offline", &format!("waiting {i} {pad}")]);
    }
    damage_a_table_leaf(&m.staging_path());
    let status = m.ok(&["status"]);
    assert!(
        status.contains("damaged") && status.contains("memsync repair"),
        "{status}"
    );
    let err = m.fails(&["push"]);
    assert!(
        err.contains("damaged") && err.contains("memsync repair") && !err.contains("left pending"),
        "{err}"
    );
    let err = m.fails(&["sync"]);
    assert!(
        err.contains("memsync repair") && !err.contains("left pending"),
        "{err}"
    );
    // Repaired, what could be read goes out.
    m.ok(&["repair"]);
    let salvaged = m.staged("pending");
    assert!(m.ok(&["push"]).contains(&format!("pushed {salvaged}")));
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

/// A repair killed while it rebuilds leaves the damaged database where it was (the next repair
/// salvages all of it again), and a completed repair keeps the merge base: the next sync does
/// not bring back a tag another machine removed. (Before: the damaged file was moved aside
/// first, so a kill left a sound-looking database with part of the queue; and the rebuilt
/// file had no merge base, so the sync took the union and restored the removed tag.)
#[test]
fn a_repair_is_all_or_nothing_and_keeps_the_merge_base() {
    common::require_fault_points();
    let dir = tempfile::tempdir().unwrap();
    let (server, _local, m) = remote_and_local(dir.path());
    let c = "a memory whose tag another machine removes";
    server.post(c, &["keep", "obsolete"], json!({}));
    m.ok(&["pull"]);
    server.put_tags(c, &["keep"]);
    let pad = "padding so the rows span several pages ".repeat(8);
    for i in 0..40 {
        m.ok(&["store", "--offline", &format!("staged {i} {pad}")]);
    }
    damage_a_table_leaf(&m.staging_path());
    let killed = m
        .with("MEMSYNC_FAULT", "repair-rebuild:crash")
        .run(&["repair"]);
    assert!(!killed.status.success());
    let out = m.ok(&["repair"]);
    let (salvaged, lost) = repair_counts(&out);
    assert!(lost > 0 && salvaged + lost == 40, "{out}");
    assert!(out.contains("merge base of 1 memories kept"), "{out}");
    m.ok(&["sync"]);
    assert_eq!(server.tags(c), vec!["keep"]);
}

/// A store while `repair` rebuilds the staging database waits, and lands in the rebuilt file.
/// (Before: it went into the damaged file after the repair had read it, was acknowledged as
/// staged, and was gone once the rebuilt file replaced it, kept only in the file set aside.)
#[test]
fn a_store_during_a_repair_lands_in_the_rebuilt_database() {
    common::require_fault_points();
    let dir = tempfile::tempdir().unwrap();
    let m = Machine::new(&dir.path().join("m"), free_port());
    let pad = "padding so the rows span several pages ".repeat(8);
    for i in 0..40 {
        m.ok(&["store", "--offline", &format!("staged {i} {pad}")]);
    }
    damage_a_table_leaf(&m.staging_path());
    let hold = dir.path().join("hold");
    std::fs::write(&hold, "").unwrap();
    let log = dir.path().join("repair.err");
    let mut repair = m
        .with("MEMSYNC_FAULT", "repair-rebuild:pause")
        .with("MEMSYNC_FAULT_HOLD", hold.to_str().unwrap())
        .command(&["repair"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("paused")
    {
        assert!(t0.elapsed().as_secs() < 60, "repair never paused");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let content = "stored while the repair runs";
    let mut store = m
        .with("SYNC_LOCK_WAIT", "120")
        .command(&["store", "--offline", content]);
    store.stdin(std::process::Stdio::null());
    // The store runs on its own thread of this test: it waits for the repair, released below.
    let store = std::thread::spawn(move || store.output());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    std::fs::remove_file(&hold).unwrap();
    assert!(repair.wait().unwrap().success());
    let out = store.join().unwrap().unwrap();
    assert!(out.status.success(), "{out:?}");
    let n: i64 = rusqlite::Connection::open(m.staging_path())
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM staged_memories WHERE content = ?1",
            [content],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        n, 1,
        "the store acknowledged during the repair is not in staging"
    );
}
