//! Memory sync's settings, HTTPS, and maintenance commands (init, status, export, reset,
//! repair, verify-db, optimize, archive, metrics), against real mcp-memory-service servers.

mod common;

use std::process::Command;

use common::mms::{Machine, Server, curl, free_port, hash_of, remote_and_local};
use serde_json::json;

#[test]
fn https_needs_the_servers_certificate_or_insecure() {
    let dir = tempfile::tempdir().unwrap();
    // A private CA and a server certificate it signed, as a home server would have.
    let p = |n: &str| dir.path().join(n).display().to_string();
    let (ca, cert, key) = (p("ca.pem"), p("cert.pem"), p("key.pem"));
    std::fs::write(p("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    for args in [
        vec![
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=memsync test CA",
            "-keyout",
            &p("ca.key"),
            "-out",
            &ca,
        ],
        vec![
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &key,
            "-out",
            &p("srv.csr"),
        ],
        vec![
            "x509",
            "-req",
            "-in",
            &p("srv.csr"),
            "-CA",
            &ca,
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &p("ext.cnf"),
            "-out",
            &cert,
        ],
    ] {
        let o = Command::new("openssl")
            .args(&args)
            .output()
            .expect("openssl");
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let server = Server::start_with(
        &dir.path().join("server"),
        &[
            ("MMS_TLS_CERT", cert.as_str()),
            ("MMS_TLS_KEY", key.as_str()),
        ],
    );
    let m =
        Machine::new(&dir.path().join("m"), server.port).with("REMOTE_MEMORY_PROTOCOL", "https");
    // An untrusted certificate is not "offline": the memory is kept and the error says what to do.
    let err = m.fails(&["store", "over tls"]);
    assert!(
        err.contains("TLS failed") && err.contains("--ca-file") && err.contains("kept in staging"),
        "{err}"
    );
    let out = m.ok(&["push", "--ca-file", &ca]);
    assert!(out.contains("stored 1"), "{out}");
    // http:// to this HTTPS server: a setting to fix (exit 1), not an outage (staged, exit 0).
    let err = m
        .with("REMOTE_MEMORY_PROTOCOL", "http")
        .fails(&["store", "over plain http to a TLS port"]);
    assert!(
        err.contains("speaks HTTPS") && err.contains("kept in staging"),
        "{err}"
    );
    m.ok(&["push", "--ca-file", &ca]);
    let out = m.ok(&["store", "--insecure", "over tls, insecure"]);
    assert!(out.contains("stored"), "{out}");
    let out = m
        .with("REMOTE_MEMORY_CA_FILE", &ca)
        .ok(&["store", "over tls, with the CA"]);
    assert!(out.contains("stored"), "{out}");
    let err = m.fails(&[
        "push",
        "--ca-file",
        dir.path().join("missing.pem").to_str().unwrap(),
    ]);
    assert!(err.contains("missing.pem"), "{err}");
    assert_eq!(server.live_count(), 4);
}

#[test]
fn settings_come_from_flags_then_environment_then_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let m = Machine::new(&dir.path().join("m"), free_port());
    let cfg = dir.path().join("sync_config.json");
    std::fs::write(
        &cfg,
        json!({"remote": {"host": "127.0.0.1", "port": server.port, "protocol": "http", "api_key": "testkey"},
               "local": {"batch_size": 7}, "conflict_resolution": "remote", "auto_sync_interval": 60,
               "litestream_enabled": false})
        .to_string(),
    )
    .unwrap();
    // The file alone reaches the server; the environment's port (nowhere) overrides it; a flag
    // overrides the environment.
    let file_only = Machine {
        env: m
            .env
            .iter()
            .filter(|(k, _)| !k.starts_with("REMOTE_MEMORY"))
            .cloned()
            .collect(),
        ..m.clone()
    }
    .with("SYNC_CONFIG_PATH", cfg.to_str().unwrap());
    assert!(
        file_only
            .ok(&["status"])
            .contains("reachable, mcp-memory-service")
            && file_only.ok(&["status"]).contains("policy       remote")
    );
    let env_wins = file_only.with("REMOTE_MEMORY_PORT", &free_port().to_string());
    assert!(env_wins.ok(&["status"]).contains("NOT reachable"));
    let flag_wins = env_wins.ok(&[
        "status",
        "--port",
        &server.port.to_string(),
        "--conflict",
        "local",
    ]);
    assert!(
        flag_wins.contains("reachable, mcp") && flag_wins.contains("policy       local"),
        "{flag_wins}"
    );
    // SYNC_VERBOSE echoes the sync log's lines on stderr.
    let o = file_only
        .with("SYNC_VERBOSE", "1")
        .run(&["store", "--offline", "said out loud"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("store staged #1"),
        "{o:?}"
    );
    // With JSON logs, those lines are JSON too.
    let o = file_only.with("SYNC_VERBOSE", "1").run(&[
        "--log-format",
        "json",
        "store",
        "--offline",
        "said in json",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("staged #2"))
        .unwrap_or_else(|| panic!("{stderr}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(
        (v["level"].as_str(), v["op"].as_str()),
        (Some("INFO"), Some("store"))
    );
    // A typo in the file is an error naming the key and the line.
    std::fs::write(&cfg, "{\n \"remote\": {\"hots\": \"x\"}\n}").unwrap();
    let err = file_only.fails(&["status"]);
    assert!(
        err.contains("hots") && err.contains("line 2") && err.contains("sync_config.json"),
        "{err}"
    );
}

#[test]
fn maintenance_commands_keep_a_copy_of_everything_they_remove() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, m) = remote_and_local(dir.path());
    let out = m.ok(&["init", "--write-config"]);
    assert!(
        out.contains("staging database ready") && out.contains("sync_config.json"),
        "{out}"
    );
    let written: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            dir.path()
                .join("m/home/.mcp_memory_staging/sync_config.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(
        written["remote"].get("api_key").is_none(),
        "the key is never written out"
    );

    for i in 0..6 {
        m.ok(&["store", &format!("memory {i} for the archive")]);
    }
    m.ok(&["pull"]);
    m.ok(&["store", "--offline", "staged and waiting"]);

    // verify-db and optimize on healthy databases.
    let out = m.ok(&["verify-db"]);
    assert!(
        out.contains("local db") && out.contains("staging db") && out.contains(": ok"),
        "{out}"
    );
    m.ok(&["optimize"]);

    // archive: three memories made old; they go to a file (with their text) and leave the local database.
    let c = rusqlite::Connection::open(local.db()).unwrap();
    c.execute("UPDATE memories SET created_at = created_at - 200 * 86400 WHERE content LIKE 'memory 1%' OR content LIKE 'memory 2%' OR content LIKE 'memory 3%'", [])
        .unwrap();
    drop(c);
    assert!(
        m.ok(&["archive", "--older-than", "90 days", "--dry-run"])
            .contains("would archive 3")
    );
    let file = dir.path().join("archive.json");
    let out = m.ok(&[
        "archive",
        "--older-than",
        "90 days",
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(out.contains("archived 3"), "{out}");
    let a: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(a["memories"].as_array().unwrap().len(), 3);
    assert_eq!(a["export_metadata"]["total_memories"], 3);
    let (status, _) = curl(
        "GET",
        &format!(
            "{}/api/memories/{}",
            local.url(),
            hash_of("memory 2 for the archive")
        ),
        None,
    );
    assert_eq!(status, 404, "archived memories leave the local service");
    let (status, _) = curl(
        "GET",
        &format!(
            "{}/api/memories/{}",
            remote.url(),
            hash_of("memory 2 for the archive")
        ),
        None,
    );
    assert_eq!(status, 200, "the server keeps them");

    // reset refuses without a terminal or --yes, then keeps a JSON copy.
    let err = m.fails(&["reset"]);
    assert!(err.contains("--yes") && err.contains("1 staged"), "{err}");
    assert_eq!(m.staged("pending"), 1);
    let out = m.ok(&["reset", "--yes"]);
    let backup = out.split("a copy is in ").nth(1).unwrap().trim();
    let b: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(backup).unwrap()).unwrap();
    assert!(
        b["staged"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["content"] == "staged and waiting")
    );
    assert_eq!(m.staged("pending"), 0);

    // repair: a damaged staging file is rebuilt, its readable rows salvaged, the file kept aside.
    m.ok(&["store", "--offline", "survives the repair"]);
    let path = m.staging_path();
    let root: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT rootpage FROM sqlite_master WHERE name = 'idx_staged_hash'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let page = (root as usize - 1) * 4096;
    bytes[page..page + 4096].fill(0xA5);
    std::fs::write(&path, &bytes).unwrap();
    let err = m.fails(&["verify-db"]);
    assert!(err.contains("memsync repair"), "{err}");
    let out = m.ok(&["repair"]);
    assert!(
        out.contains("1 rows salvaged (1 waiting), 0 could not be read") && out.contains("kept as"),
        "{out}"
    );
    assert!(m.ok(&["verify-db"]).contains("staging db"));
    assert_eq!(
        m.staged("pending"),
        1,
        "the staged memory survived the damage"
    );

    let out = m.ok(&["metrics"]);
    assert!(out.contains("stores") && out.contains("errors"), "{out}");
    let err = m.fails(&["archive", "--older-than", "soon"]);
    assert!(err.contains("--older-than"), "{err}");
}

#[test]
fn sync_watch_pushes_what_is_staged_while_it_runs_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let m = Machine::new(&dir.path().join("m"), server.port).with("SYNC_INTERVAL", "1");
    let child = m
        .command(&["sync", "--watch"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    m.ok(&["store", "--offline", "staged while sync --watch runs"]);
    let t0 = std::time::Instant::now();
    while server.rows_with_hash(&hash_of("staged while sync --watch runs")) == 0 {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "sync --watch never pushed"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped after"));
    assert_eq!(m.staged("pending"), 0);
}

/// Runs memsync on a pseudo-terminal (util-linux `script`), typing `input`.
fn on_terminal(m: &Machine, args: &str, input: &str) -> String {
    use std::io::Write;
    let mut c = Command::new("script");
    c.args(["-qec", &format!("{} {args}", common::BIN), "/dev/null"])
        .env_clear();
    c.env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in &m.env {
        c.env(k, v);
    }
    let mut child = c
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("script");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn on_a_terminal_resolve_conflicts_and_reset_ask() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let m =
        Machine::new(&dir.path().join("m"), server.port).with("SYNC_CONFLICT_RESOLUTION", "manual");
    let (status, _) = curl(
        "POST",
        &format!("{}/api/memories", server.url()),
        Some(&json!({"content": "asked on a terminal", "tags": ["server-tag"]})),
    );
    assert_eq!(status, 200);
    m.ok(&[
        "store",
        "--offline",
        "--tags",
        "local-tag",
        "asked on a terminal",
    ]);
    assert!(m.exits(4, &["push"]).contains("conflicts 1"));
    let out = on_terminal(&m, "resolve-conflicts", "l\n");
    assert!(
        out.contains("[m]erge, [l]ocal, [r]emote, [s]kip?") && out.contains("settled: local"),
        "{out}"
    );
    m.ok(&["push"]);
    let (_, body) = curl(
        "GET",
        &format!(
            "{}/api/memories/{}",
            server.url(),
            hash_of("asked on a terminal")
        ),
        None,
    );
    let tags = body["tags"].as_array().unwrap();
    assert!(
        tags.contains(&json!("local-tag")) && !tags.contains(&json!("server-tag")),
        "{body}"
    );

    m.ok(&["store", "--offline", "waiting when reset asks"]);
    let out = on_terminal(&m, "reset", "no\n");
    assert!(out.contains("[type yes]"), "{out}");
    assert_eq!(m.staged("pending"), 1, "answering no keeps everything");
    let out = on_terminal(&m, "reset", "yes\n");
    assert!(out.contains("a copy is in"), "{out}");
    assert_eq!(m.staged("pending"), 0);
}

#[test]
fn on_a_terminal_an_invalid_answer_asks_again_and_the_end_of_input_leaves_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let m =
        Machine::new(&dir.path().join("m"), server.port).with("SYNC_CONFLICT_RESOLUTION", "manual");
    for c in ["first to settle", "second to settle"] {
        server.post(c, &["server-tag"], json!({}));
        m.ok(&["store", "--offline", "--tags", "local-tag", c]);
    }
    let pushed = m.run(&["push"]);
    assert!(String::from_utf8_lossy(&pushed.stdout).contains("conflicts 2"));
    // "x" is no answer: asked again; then the input ends before the second conflict.
    let out = on_terminal(&m, "resolve-conflicts", "x\nl\n");
    assert!(
        out.contains("\"x\" is not an answer")
            && out.matches("[s]kip?").count() == 3
            && out.contains("settled: local")
            && out.contains("input ended"),
        "{out}"
    );
    let open = m.ok(&["resolve-conflicts"]);
    assert_eq!(open.lines().count(), 1, "one conflict stays open: {open}");
    assert_eq!(m.staged("conflict"), 1);
}
