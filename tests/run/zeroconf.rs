//! Zero-config replication from the guide's `LITESTREAM_*` variables, and where `memsync
//! databases` says each setting came from.

use super::*;

#[test]
fn zero_config_replicates_the_memory_database_from_litestream_variables() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("mms"));
    for i in 0..20 {
        server.post(
            &format!("memory {i} before"),
            &["zero"],
            serde_json::json!({}),
        );
    }
    let db = server.db().display().to_string();
    let replica: PathBuf = dir.path().join("backup/sqlite_vec.db");
    let replica_s = replica.display().to_string();
    let (cwd, home) = (dir.path().join("cwd"), dir.path().join("home"));
    let env = [
        ("MCP_MEMORY_SQLITE_PATH", db.as_str()),
        ("LITESTREAM_REPLICA_PATH", replica_s.as_str()),
        ("LITESTREAM_SYNC_INTERVAL", "200ms"),
        ("LITESTREAM_RETENTION", "72h"),
        ("LITESTREAM_COMPRESS", "true"),
    ];
    let out = memsync(&cwd, &home, &env, &["databases"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        db.as_str(),
        "from MCP_MEMORY_SQLITE_PATH",
        "from LITESTREAM_REPLICA_PATH",
        "200ms",
        "from LITESTREAM_SYNC_INTERVAL",
        "72h",
        "from LITESTREAM_RETENTION",
        "replication in `memsync run`: on",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    // Compression cannot be switched off: refused in one line.
    let mut no = env;
    no[4] = ("LITESTREAM_COMPRESS", "false");
    let out = memsync(&cwd, &home, &no, &["replicate"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("LITESTREAM_COMPRESS: \"false\" is refused"),
        "{err}"
    );
    // Replication switched off and no memory server: `run` has nothing to do.
    let mut off = env.to_vec();
    off.push(("LITESTREAM_ENABLED", "false"));
    let out = memsync(&cwd, &home, &off, &["run"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("nothing to run"), "{err}");
    let out = memsync(&cwd, &home, &off, &["databases"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("replication in `memsync run`: off (LITESTREAM_ENABLED is false)"),
        "{text}"
    );

    let mut r = Replicator::spawn(
        memsync(&cwd, &home, &env, &["replicate"]),
        dir.path().join("replicate.log"),
    );
    r.wait_for_log("replicating 1 database(s)");
    for i in 0..10 {
        server.post(
            &format!("memory {i} while replicating"),
            &["zero"],
            serde_json::json!({}),
        );
    }
    server.stop();
    let (status, log) = r.stop();
    assert!(status.success(), "replicate exited {status}:\n{log}");
    let out = dir.path().join("restored.db");
    let o = common::run(&["restore", "-o", out.to_str().unwrap(), &replica_s]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (want, got) = (dump(&server.db()), dump(&out));
    assert!(
        want.iter()
            .any(|(t, rows)| t == "memories" && rows.len() == 30),
        "the server's database holds the 30 memories"
    );
    assert!(want == got, "the restore differs from the memory database");
    // The database's path finds its replica through the same variables.
    let by_path = dir.path().join("by-path.db");
    let o = memsync(
        &cwd,
        &home,
        &env,
        &["restore", "-o", by_path.to_str().unwrap(), &db],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(dump(&by_path) == want);
}

/// The laptop's service: no litestream.yml, the guide's variables. `run` replicates the local
/// memory database (which the local mcp-memory-service and memsync's pulls write) while it syncs
/// with the server; the replica restores to exactly the local database.
#[test]
fn zero_config_run_replicates_the_local_memory_database_while_it_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, mut local, m) = common::mms::remote_and_local(dir.path());
    let backup = dir.path().join("backup/sqlite_vec.db");
    let m = m
        .with("LITESTREAM_REPLICA_PATH", &backup.display().to_string())
        .with("LITESTREAM_SYNC_INTERVAL", "200ms")
        .with("SYNC_INTERVAL", "1");
    remote.post("written on the server", &["zc"], serde_json::json!({}));
    local.post("written on the laptop", &["zc"], serde_json::json!({}));
    let mut r = Replicator::spawn(m.command(&["run"]), dir.path().join("run.log"));
    r.wait_for_log("replicating 1 database(s)");
    wait_until("the server's memory is pulled", &mut r, || {
        local.rows_with_hash(&hash_of("written on the server")) == 1
    });
    wait_until("the laptop's memory is pushed", &mut r, || {
        remote.rows_with_hash(&hash_of("written on the laptop")) == 1
    });
    m.ok(&["store", "stored through memsync"]);
    wait_until("the stored memory reaches the laptop", &mut r, || {
        local.rows_with_hash(&hash_of("stored through memsync")) == 1
    });
    r.wait_for_log("sync round 3 done");
    // The local service stops first: its last writes are shipped by memsync's stop.
    local.stop();
    let (status, log) = r.stop();
    assert!(status.success(), "run exited {status}:\n{log}");
    let out = dir.path().join("restored.db");
    let o = common::run(&[
        "restore",
        "-o",
        out.to_str().unwrap(),
        &backup.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (want, got) = (dump(&local.db()), dump(&out));
    assert!(
        want == got,
        "the restore differs from the local memory database:\n{log}"
    );
}

/// With a config file, `memsync databases` says for each setting whether the file set it (the
/// entry's key, or the top level's default for replicas) or memsync's default applies.
#[test]
fn databases_says_where_each_setting_of_a_config_file_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "sync-interval: 10s\ndbs:\n  - path: {}\n    checkpoint-interval: 2m\n    replicas:\n      - name: one\n        path: {}\n        retention: 72h\n",
            dir.path().join("a.db").display(),
            dir.path().join("r").display()
        ),
    )
    .unwrap();
    let home = dir.path().join("home");
    let out = memsync(
        dir.path(),
        &home,
        &[("LITESTREAM_REPLICA_PATH", "/elsewhere")],
        &["databases", "-config", &config.display().to_string()],
    )
    .output()
    .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let row = |key: &str| -> Vec<String> {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key} in:\n{text}"));
        line.split_whitespace().map(str::to_owned).collect()
    };
    assert_eq!(row("checkpoint-interval")[1..], ["2m", "config", "file"]);
    assert_eq!(row("monitor-interval")[1..], ["1s", "default"]);
    assert_eq!(
        row("sync-interval")[1..],
        ["10s", "config", "file", "(top", "level)"]
    );
    assert_eq!(row("retention")[1..], ["72h", "config", "file"]);
    assert_eq!(row("retention-check-interval")[1..], ["1h", "default"]);
    // The file wins over the environment's replica variables, and says so.
    assert!(text.contains("not used: the config file wins"), "{text}");
}
