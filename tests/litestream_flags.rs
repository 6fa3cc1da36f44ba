//! Litestream's command-line flags around restore, as scripts written for Litestream pass
//! them: `restore -force`, `-json`, `-parallelism`, `replicate -restore-if-db-not-exists`, and
//! the ones memsync refuses (`restore -f`), each refusal one line saying so.

mod common;

use common::refuse::*;
use common::*;

fn replicated() -> (Scene, rusqlite::Connection) {
    let s = Scene::new("", "");
    let app = create_memdb(&s.db);
    for i in 1..=20 {
        insert_memory(&app, i);
    }
    let o = run(&["replicate", "-once", s.db.to_str().unwrap(), &s.url()]);
    assert!(o.status.success(), "{}", stderr(&o));
    (s, app)
}

/// `-force` replaces an existing output and removes its WAL, index and journal (SQLite would
/// apply a stale WAL to the restored file); without it the output stays untouched.
#[test]
fn force_replaces_the_output_and_its_sidecars() {
    let (s, app) = replicated();
    let out = s.dir.path().join("out.db");
    std::fs::write(&out, b"an older database").unwrap();
    let wal = s.dir.path().join("out.db-wal");
    std::fs::write(&wal, b"a stale WAL of that older database").unwrap();
    let o = run(&["restore", "-o", out.to_str().unwrap(), &s.url()]);
    assert_fails(&o, &["out.db already exists", "-force"]);
    assert_eq!(std::fs::read(&out).unwrap(), b"an older database");
    let o = run(&["restore", "-force", "-o", out.to_str().unwrap(), &s.url()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !wal.exists(),
        "the stale WAL stayed beside the restored file"
    );
    assert_same(&app, &check_sound(&out));
    // `-if-db-not-exists` still wins: the output exists, nothing is done.
    let before = std::fs::metadata(&out).unwrap().modified().unwrap();
    let o = run(&[
        "restore",
        "-force",
        "-if-db-not-exists",
        "-o",
        out.to_str().unwrap(),
        &s.url(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::metadata(&out).unwrap().modified().unwrap(), before);
}

/// `-json` prints what was restored on stdout (and why nothing was); `-parallelism` is taken
/// (1 to 64) and restores the same database.
#[test]
fn json_and_parallelism() {
    let (s, app) = replicated();
    let out = s.dir.path().join("out.db");
    let o = run(&[
        "restore",
        "-json",
        "-parallelism",
        "1",
        "-o",
        out.to_str().unwrap(),
        &s.url(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["restored"], true, "{j}");
    assert_eq!(j["output"], out.to_str().unwrap(), "{j}");
    assert!(j["txid"].as_str().is_some_and(|t| t.len() == 16), "{j}");
    assert!(j["files"].as_u64().is_some_and(|n| n >= 1), "{j}");
    assert_same(&app, &check_sound(&out));
    let o = run(&[
        "restore",
        "-json",
        "-if-db-not-exists",
        "-o",
        out.to_str().unwrap(),
        &s.url(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["restored"], false, "{j}");
    let o = run(&["restore", "-parallelism", "0", "-o", "x.db", &s.url()]);
    assert!(!o.status.success());
}

/// Follow mode is refused in one line that says so (it was "unexpected argument").
#[test]
fn follow_mode_is_refused_saying_so() {
    let (s, _app) = replicated();
    let out = s.dir.path().join("followed.db");
    let o = run(&["restore", "-f", "-o", out.to_str().unwrap(), &s.url()]);
    assert_fails(&o, &["follow mode", "not supported"]);
    assert!(!out.exists());
}

/// `replicate -restore-if-db-not-exists`: a configured database missing on disk is restored
/// from its replica before replication starts, then replicated on from there; a present one
/// is left as it is.
#[test]
fn replicate_restores_a_missing_database_first() {
    let (s, app) = replicated();
    let want = rows(&app);
    drop(app);
    for side in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{side}", s.db.display()));
    }
    let cfg = s.config.to_str().unwrap();
    let o = run(&[
        "replicate",
        "-once",
        "-restore-if-db-not-exists",
        "-config",
        cfg,
    ]);
    let (out, err) = (String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(o.status.success(), "{err}");
    // Logged where the config's logging goes: stdout, as Litestream's.
    assert!(out.contains("was missing: restored position"), "{out}{err}");
    let app = rusqlite::Connection::open(&s.db).unwrap();
    assert_eq!(rows(&app), want);
    insert_memory(&app, 21);
    let o = run(&[
        "replicate",
        "-once",
        "-restore-if-db-not-exists",
        "-config",
        cfg,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = s.dir.path().join("after.db");
    let o = run(&["restore", "-o", out.to_str().unwrap(), &s.url()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same(&app, &check_sound(&out));
}

/// `-json` with `-timestamp`: stdout holds the JSON object alone (the line saying which point
/// was restored went there before it), with Litestream's `db_path` too.
#[test]
fn json_of_a_timestamp_restore_is_alone_on_stdout() {
    let (s, _app) = replicated();
    let out = s.dir.path().join("at.db");
    let o = run(&[
        "restore",
        "-json",
        "-timestamp",
        "2099-01-01T00:00:00Z",
        "-o",
        out.to_str().unwrap(),
        &s.url(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)));
    assert_eq!(j["db_path"], out.to_str().unwrap(), "{j}");
    assert_eq!(j["requested"], "2099-01-01T00:00:00.000Z", "{j}");
    // With -dry-run, the plan as one object (it was refused).
    let planned = s.dir.path().join("planned.db");
    let o = run(&[
        "restore",
        "-json",
        "-dry-run",
        "-o",
        planned.to_str().unwrap(),
        &s.url(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["restore"], true, "{j}");
    assert!(j["files"].as_array().is_some_and(|f| !f.is_empty()), "{j}");
    assert!(!planned.exists());
}

/// An empty database file (opened, never written: a health check's) is said to be one by
/// `replicate` (it was "not an SQLite database"), and `restore -if-db-not-exists` fills it,
/// as Litestream's restore-then-replicate start expects.
#[test]
fn an_empty_database_file_is_named_and_filled_by_a_restore() {
    let (s, app) = replicated();
    let empty = s.dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let rep = format!("file://{}", s.dir.path().join("rep2").display());
    let o = run(&["replicate", "-once", empty.to_str().unwrap(), &rep]);
    assert_fails(&o, &["empty.db is empty", "not written yet"]);
    let o = run(&[
        "restore",
        "-if-db-not-exists",
        "-o",
        empty.to_str().unwrap(),
        &s.url(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same(&app, &check_sound(&empty));
}

/// Litestream's control-socket commands and its `status DB` are named as such in one line
/// (`stop db` was offered `store`, a memory command); `version -verbose` is taken.
#[test]
fn litestream_only_commands_are_named() {
    for args in [
        &["stop", "db.sqlite"][..],
        &["status", "-config", "litestream.yml"],
        &["sync", "-wait", "db.sqlite"],
    ] {
        let o = run(args);
        assert_fails(&o, &["Litestream"]);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }
    let o = run(&["version", "-verbose"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("built for"));
}

/// `$PID` in a config is this process's id, as Litestream 0.5.8+ expands it.
#[test]
fn pid_in_a_config_is_the_process_id() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {0}/app-${{PID}}.db\n    replica:\n      path: {0}/rep\n",
            d.path().display()
        ),
    )
    .unwrap();
    let o = std::process::Command::new(BIN)
        .args(["databases", "-config", cfg.to_str().unwrap()])
        .env_remove("PID")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let at = text.find("app-").expect("listed") + 4;
    assert!(
        text[at..].starts_with(|c: char| c.is_ascii_digit()),
        "{text}"
    );
}
