//! `memsync run` (replication and memory sync in one long-running process), zero-config
//! replication from the guide's `LITESTREAM_*` variables, and Litestream's `exec`: real
//! processes, a real mcp-memory-service 12.4.0 server, restores compared with the source.
//! `exec.rs`: Litestream's `exec`; `zeroconf.rs`: the `LITESTREAM_*` variables and `databases`.

#[path = "../common/mod.rs"]
mod common;

mod exec;
mod zeroconf;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::mms::{Machine, Server, hash_of};
use common::{BIN, Replicator, Scene, assert_same, check_sound, create_memdb, insert_memory};

/// Waits up to a minute for `cond`, naming `what` and showing `log` if it never holds.
fn wait_until(what: &str, r: &mut Replicator, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(r.running(), "memsync exited before {what}:\n{}", r.log());
        assert!(
            Instant::now() < deadline,
            "never {what}; memsync's log:\n{}",
            r.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// memsync with nothing from the caller's environment but PATH, HOME and `env`, in `cwd`.
fn memsync(cwd: &Path, home: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
    std::fs::create_dir_all(cwd).unwrap();
    std::fs::create_dir_all(home).unwrap();
    let mut c = Command::new(BIN);
    c.args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .envs(env.iter().copied());
    c
}

/// `memsync run -config` for `scene` as machine `m`, its config given an `addr`; the port.
fn run_serving(scene: &Scene, m: &Machine) -> (u16, Replicator) {
    let port = common::mms::free_port();
    let mut yml = std::fs::read_to_string(&scene.config).unwrap();
    yml.push_str(&format!("addr: 127.0.0.1:{port}\n"));
    std::fs::write(&scene.config, yml).unwrap();
    let config = scene.config.display().to_string();
    let r = Replicator::spawn(
        m.command(&["run", "-config", &config]),
        scene.dir.path().join("run.log"),
    );
    (port, r)
}

/// The value of the unlabelled sample `name` in a `/metrics` text.
fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
        .trim()
        .parse()
        .unwrap()
}

/// Every row of every ordinary table (virtual tables are read through their shadow tables).
fn dump(path: &Path) -> Vec<(String, Vec<Vec<rusqlite::types::Value>>)> {
    let c = rusqlite::Connection::open(path).unwrap();
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    tables
        .into_iter()
        .map(|t| {
            // Ordered by every column: some tables have no rowid.
            let n = c
                .prepare(&format!("SELECT * FROM \"{t}\""))
                .unwrap()
                .column_count();
            let by: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
            let mut st = c
                .prepare(&format!("SELECT * FROM \"{t}\" ORDER BY {}", by.join(",")))
                .unwrap();
            let rows = st
                .query_map([], |r| (0..n).map(|i| r.get(i)).collect())
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            (t, rows)
        })
        .collect()
}

#[test]
fn run_replicates_and_syncs_on_its_intervals_and_sigterm_flushes() {
    let scene = Scene::new("", "        sync-interval: 100ms\n");
    let c = create_memdb(&scene.db);
    insert_memory(&c, 1);
    let server = Server::start(&scene.dir.path().join("mms"));
    // The machine's own memory database is missing (pull is skipped): the replicated
    // database here is an application's, not the service's.
    let m = Machine::new(&scene.dir.path().join("m"), server.port).with("SYNC_INTERVAL", "1");
    m.ok(&["store", "--offline", "staged before run"]);
    let config = scene.config.display().to_string();
    let mut r = Replicator::spawn(
        m.command(&["run", "-config", &config]),
        scene.dir.path().join("run.log"),
    );
    wait_until("pushed the memory staged before", &mut r, || {
        server.rows_with_hash(&hash_of("staged before run")) == 1
    });
    r.wait_for_log("sync round 1 done");
    // A later round pushes what is staged meanwhile, while replication ships the writes.
    m.ok(&["store", "--offline", "staged while running"]);
    for i in 2..=40 {
        insert_memory(&c, i);
    }
    wait_until("pushed the memory staged while running", &mut r, || {
        server.rows_with_hash(&hash_of("staged while running")) == 1
    });
    scene.wait_for_rows(40);
    for i in 41..=60 {
        insert_memory(&c, i);
    }
    let asked = Instant::now();
    let (status, log) = r.stop();
    // Within the stop timeout the unit gives it (systemd's TimeoutStopSec, then SIGKILL): a
    // bound, not a benchmark.
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(60),
        "stopped after {took:?}:\n{log}"
    );
    assert!(status.success(), "run exited {status}:\n{log}");
    assert!(
        log.contains("sync round 1: ") && log.contains("sync round 2: "),
        "{log}"
    );
    assert!(log.contains("replicating 1 database(s)"), "{log}");
    assert_eq!(m.staged("pending"), 0);
    // The replica restores to the last commit before SIGTERM.
    let restored = scene.restore("restored.db", &[]);
    assert_same(&c, &check_sound(&restored));
}

#[test]
fn a_sync_round_in_progress_at_sigterm_finishes() {
    let scene = Scene::new("", "        sync-interval: 100ms\n");
    let c = create_memdb(&scene.db);
    insert_memory(&c, 1);
    let server = Server::start(&scene.dir.path().join("mms"));
    // A slow link: each request waits at the proxy, so a push of 15 rows takes seconds.
    let proxy = common::proxy::Proxy::start(server.port);
    let m = Machine::new(&scene.dir.path().join("m"), proxy.port).with("SYNC_INTERVAL", "600");
    for i in 0..15 {
        m.ok(&["store", "--offline", &format!("slow {i}")]);
    }
    proxy.set_delay(Duration::from_millis(150));
    let config = scene.config.display().to_string();
    let mut r = Replicator::spawn(
        m.command(&["run", "-config", &config]),
        scene.dir.path().join("run.log"),
    );
    wait_until("pushed the first row", &mut r, || {
        server.rows_with_hash(&hash_of("slow 0")) == 1
    });
    insert_memory(&c, 2);
    let (status, log) = r.stop();
    assert!(status.success(), "run exited {status}:\n{log}");
    let (signal, done) = (
        log.find("SIGTERM received: shutting down"),
        log.find("sync round 1 done"),
    );
    assert!(
        signal.is_some() && done.is_some() && signal < done,
        "the signal came while the round ran, and the round finished:\n{log}"
    );
    assert_eq!(m.staged("pending"), 0, "{log}");
    for i in 0..15 {
        assert_eq!(server.rows_with_hash(&hash_of(&format!("slow {i}"))), 1);
    }
    let restored = scene.restore("restored.db", &[]);
    assert_same(&c, &check_sound(&restored));
}

#[test]
fn with_the_memory_server_down_replication_goes_on() {
    let scene = Scene::new("", "        sync-interval: 100ms\n");
    let c = create_memdb(&scene.db);
    // Port 1 on loopback: nothing listens there (a free port could be taken meanwhile by
    // another test's server).
    let m = Machine::new(&scene.dir.path().join("m"), 1).with("SYNC_INTERVAL", "1");
    m.ok(&["store", "--offline", "waits for the server"]);
    // The failed rounds show at /metrics and turn /health to 503.
    let (port, mut r) = run_serving(&scene, &m);
    r.wait_for_log("sync round 1 failed");
    for i in 1..=30 {
        insert_memory(&c, i);
    }
    scene.wait_for_rows(30);
    r.wait_for_log("sync round 2 failed");
    // The round's log line comes just before its count is published: asked again briefly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let failures = loop {
        let (code, metrics) = common::http_get(port, "/metrics").expect("metrics answer");
        assert_eq!(code, 200, "{metrics}");
        let n = metric(&metrics, "memsync_sync_failures_total");
        if n >= 2.0 || std::time::Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(failures >= 2.0, "{failures} failed rounds counted");
    let (code, health) = common::http_get(port, "/health").expect("health answers");
    assert_eq!(code, 503, "the last round failed: {health}");
    for i in 31..=45 {
        insert_memory(&c, i);
    }
    let (status, log) = r.stop();
    assert!(status.success(), "run exited {status}:\n{log}");
    assert_eq!(m.staged("pending"), 1, "the staged memory is kept");
    let restored = scene.restore("restored.db", &[]);
    assert_same(&c, &check_sound(&restored));
}

#[test]
fn replication_that_cannot_start_yet_is_retried_while_sync_rounds_go_on() {
    // The service installed before mcp-memory-service ever ran: the database is not there.
    let scene = Scene::new("", "        sync-interval: 100ms\n");
    let server = Server::start(&scene.dir.path().join("mms"));
    let m = Machine::new(&scene.dir.path().join("m"), server.port).with("SYNC_INTERVAL", "1");
    m.ok(&["store", "--offline", "stored before the database existed"]);
    // The endpoint answers while replication is down (`run` serves it, not replication).
    let (port, mut r) = run_serving(&scene, &m);
    r.wait_for_log("replication starts again in 5s");
    wait_until("pushed the staged memory", &mut r, || {
        server.rows_with_hash(&hash_of("stored before the database existed")) == 1
    });
    r.wait_for_log("sync round 2 done");
    assert!(r.running(), "run exited:\n{}", r.log());
    let (code, health) = common::http_get(port, "/health").expect("health answers");
    assert_eq!(code, 503, "{health}");
    assert!(health.contains("replication is not running"), "{health}");
    let (code, metrics) = common::http_get(port, "/metrics").expect("metrics answer");
    assert_eq!(code, 200, "{metrics}");
    assert!(metrics.contains("memsync_sync_pushed_total 1"), "{metrics}");
    // The database appears; a later attempt replicates it.
    let c = create_memdb(&scene.db);
    for i in 1..=20 {
        insert_memory(&c, i);
    }
    scene.wait_for_rows(20);
    wait_until("healthy once replication runs", &mut r, || {
        common::http_get(port, "/health").is_some_and(|(code, _)| code == 200)
    });
    let (_, metrics) = common::http_get(port, "/metrics").expect("metrics answer");
    assert!(
        metrics.contains("memsync_replica_lag_seconds{"),
        "{metrics}"
    );
    for i in 21..=30 {
        insert_memory(&c, i);
    }
    let (status, log) = r.stop();
    assert!(status.success(), "run exited {status}:\n{log}");
    assert!(log.contains("starting replication again"), "{log}");
    let restored = scene.restore("restored.db", &[]);
    assert_same(&c, &check_sound(&restored));
}

#[test]
fn run_replicates_the_databases_of_a_directory_entry() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let conns: Vec<_> = ["a.db", "b.db"]
        .iter()
        .map(|n| {
            let c = create_memdb(&data.join(n));
            insert_memory(&c, 1);
            c
        })
        .collect();
    let replica = dir.path().join("replica");
    let config = dir.path().join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n    replicas:\n      - type: file\n        path: {}\n        sync-interval: 100ms\n",
            data.display(),
            replica.display()
        ),
    )
    .unwrap();
    let home = dir.path().join("home");
    let mut r = Replicator::spawn(
        memsync(
            dir.path(),
            &home,
            &[],
            &["run", "-config", &config.display().to_string()],
        ),
        dir.path().join("run.log"),
    );
    r.wait_for_log("replicating 2 database(s)");
    for (i, c) in conns.iter().enumerate() {
        for n in 2..=10 + i as u64 {
            insert_memory(c, n);
        }
    }
    let (status, log) = r.stop();
    assert!(status.success(), "run exited {status}:\n{log}");
    for (n, c) in ["a.db", "b.db"].iter().zip(&conns) {
        let out = dir.path().join(format!("restored-{n}"));
        let st = Command::new(BIN)
            .args(["restore", "-o"])
            .arg(&out)
            .arg(replica.join(n))
            .status()
            .unwrap();
        assert!(st.success(), "restore of {n} failed:\n{log}");
        assert_same(c, &check_sound(&out));
    }
}

/// Replication switched off in the service (`LITESTREAM_ENABLED=false`, or
/// `"litestream_enabled": false` in sync_config.json) although `LITESTREAM_REPLICA_PATH` is set:
/// `run` only syncs, writes no replica, and its endpoint (`MEMSYNC_ADDR`) shows the rounds.
#[test]
fn with_only_memory_sync_the_endpoint_shows_its_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("mms"));
    let backup = dir.path().join("backup");
    let settings = dir.path().join("sync_config.json");
    std::fs::write(&settings, r#"{"litestream_enabled": false}"#).unwrap();
    let base = Machine::new(&dir.path().join("m"), server.port)
        .with("SYNC_INTERVAL", "1")
        .with("LITESTREAM_REPLICA_PATH", &backup.display().to_string());
    for (n, (m, switch)) in [
        (
            base.with("LITESTREAM_ENABLED", "false"),
            "LITESTREAM_ENABLED",
        ),
        (
            base.with("SYNC_CONFIG_PATH", &settings.display().to_string()),
            "litestream_enabled",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let port = common::mms::free_port();
        let m = m.with("MEMSYNC_ADDR", &format!("127.0.0.1:{port}"));
        let content = format!("counted at /metrics {n}");
        m.ok(&["store", "--offline", &content]);
        let mut r = Replicator::spawn(m.command(&["run"]), dir.path().join(format!("run{n}.log")));
        r.wait_for_log("sync round 2 done");
        let (code, metrics) = common::http_get(port, "/metrics").expect("metrics answer");
        assert_eq!(code, 200, "{metrics}");
        let value = |name: &str| metric(&metrics, name);
        assert!(value("memsync_sync_rounds_total") >= 2.0, "{metrics}");
        assert_eq!(value("memsync_sync_pushed_total"), 1.0, "{metrics}");
        assert_eq!(value("memsync_sync_failures_total"), 0.0, "{metrics}");
        assert_eq!(value("memsync_sync_last_round_ok"), 1.0, "{metrics}");
        assert!(!metrics.contains("memsync_position{"), "{metrics}");
        let (code, health) = common::http_get(port, "/health").expect("health answers");
        assert_eq!(code, 200, "{health}");
        let (status, log) = r.stop();
        assert!(status.success(), "run exited {status}:\n{log}");
        let off = log.lines().find(|l| l.contains("replication off: "));
        assert!(
            off.is_some_and(|l| l.contains(switch) && l.ends_with("is false")),
            "{switch}:\n{log}"
        );
        assert_eq!(server.rows_with_hash(&hash_of(&content)), 1);
        assert!(!backup.exists(), "a replica was written:\n{log}");
    }
}
