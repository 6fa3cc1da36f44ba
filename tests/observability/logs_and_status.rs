//! Log settings from the environment, and `memsync status` over several databases.

use std::collections::HashSet;

use super::*;

/// `LOG_FORMAT=json` and `LOG_LEVEL` from the environment (what a service carries): every line
/// a real replicator writes is one JSON object, and the level filters them.
#[test]
fn log_format_and_level_from_the_environment() {
    let scene = Scene::new("", "        sync-interval: 100ms\n");
    let c = create_memdb(&scene.db);
    let levels = |env: &[(&str, &str)], rows: u64| {
        let r = scene.start_with(env);
        for i in rows - 4..=rows {
            insert_memory(&c, i);
        }
        scene.wait_for_rows(rows as i64);
        let (status, log) = r.stop();
        assert!(status.success(), "{log}");
        let mut levels = HashSet::new();
        for line in log.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert!(v["time"].is_string() && v["msg"].is_string(), "{line}");
            levels.insert(v["level"].as_str().unwrap_or_default().to_owned());
        }
        (levels, log)
    };
    let (seen, log) = levels(&[("LOG_FORMAT", "json")], 5);
    assert!(seen.contains("INFO"), "{seen:?}\n{log}");
    let (seen, log) = levels(&[("LOG_FORMAT", "json"), ("LOG_LEVEL", "warn")], 10);
    assert!(!seen.contains("INFO"), "{seen:?}\n{log}");
    // The line saying why a command failed is JSON too (here a restore onto an existing file).
    let out = Command::new(BIN)
        .env("LOG_FORMAT", "json")
        .args(["restore", "-o"])
        .arg(&scene.db)
        .arg(&scene.replica)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_default();
    let v: serde_json::Value =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {err}"));
    assert_eq!(v["level"], "ERROR", "{err}");
    assert!(v["msg"].as_str().unwrap().contains("exists"), "{err}");
    // A bad value is refused, naming the variable.
    let out = Command::new(BIN)
        .env("LOG_FORMAT", "xml")
        .args(["databases", "-config"])
        .arg(&scene.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("LOG_FORMAT=\"xml\""), "{err}");
}

/// `memsync status` shows the memory database's replication, then every other database of the
/// config that a replicator runs (a server's production database beside the memories).
#[test]
fn status_shows_every_replicated_database_of_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let (mem, app) = (dir.path().join("sqlite_vec.db"), dir.path().join("app.db"));
    let (mc, ac) = (create_memdb(&mem), create_memdb(&app));
    let config = dir.path().join("litestream.yml");
    let mut yml = String::from("dbs:\n");
    for (db, name) in [(&mem, "mem"), (&app, "app")] {
        yml.push_str(&format!(
            "  - path: {}\n    replicas:\n      - name: {name}\n        type: file\n        path: {}\n        sync-interval: 100ms\n",
            db.display(),
            dir.path().join(format!("replica-{name}")).display()
        ));
    }
    std::fs::write(&config, yml).unwrap();
    let log = dir.path().join("replicate.log");
    let mut child = Command::new(BIN)
        .args(["replicate", "-config"])
        .arg(&config)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    insert_memory(&mc, 1);
    insert_memory(&ac, 1);
    let closed_port = free_ports(1)[0];
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until("status shows both databases", read_log, || {
        let out = status(dir.path(), &mem, &config, closed_port);
        out.contains(&format!("replication  running (pid {})", child.id()))
            && out.contains("  replica    mem  lag 0.0s")
            && out.contains(&format!("database     {}", app.display()))
            && out.contains("    replica    app  lag 0.0s")
    });
    let _ = child.kill();
    let _ = child.wait();
}
