//! What a running replicator shows of itself, against a real `memsync replicate` with a file
//! replica and an HTTP replica (a real `memsync serve`, stopped and started again on its port):
//! `/metrics` parsed strictly as Prometheus text, its positions and lag moving with the writes;
//! `/health` turning 503 while the HTTP replica is down and 200 once it is back; `memsync
//! status` showing each replica's lag while the replicator runs and "not running" after it
//! stopped or was killed. `exposition.rs`: the strict Prometheus text reader; `idle_health.rs`:
//! replicas that go away while nothing is written; `logs_and_status.rs`: log settings from the
//! environment, `memsync status` over several databases.

#[path = "../common/mod.rs"]
mod common;

mod exposition;
mod idle_health;
mod logs_and_status;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::serve::KEY;
use common::server::{free_ports, listening};
use common::{BIN, Scene, create_memdb, insert_memory};
use exposition::Scrape;

/// GET `path` on 127.0.0.1:`port`: status code and body; `None` if nothing answers.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    common::http_get(port, path)
}

/// Polls `f` up to two minutes; the message says what never happened.
fn wait_until(what: &str, log: impl Fn() -> String, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}\n{}", log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `memsync serve` on a fixed port, so it can stop and come back where the replica points.
fn start_serve(root: &Path, port: u16, log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    let child = Command::new(BIN)
        .env_remove("MEMSYNC_SERVE_API_KEY")
        .arg("serve")
        .arg("-dir")
        .arg(root)
        .args(["-addr", &format!("127.0.0.1:{port}"), "-api-key", KEY])
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    wait_until(
        "serve listens",
        || std::fs::read_to_string(log).unwrap_or_default(),
        || listening(port),
    );
    child
}

fn stop(mut c: Child) {
    // SAFETY: kill(2) takes two integers and reads or writes no memory of this process.
    unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    c.wait().unwrap();
}

/// `memsync status` with the memory settings pointing at `db` (the server unreachable: only
/// the replication section matters here) and `config` as the default config.
fn status(dir: &Path, db: &Path, config: &Path, closed_port: u16) -> String {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let o = Command::new(BIN)
        .arg("status")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("MCP_MEMORY_SQLITE_PATH", db)
        .env("MEMSYNC_CONFIG", config)
        .env("REMOTE_MEMORY_HOST", "127.0.0.1")
        .env("REMOTE_MEMORY_PORT", closed_port.to_string())
        .env("REMOTE_MEMORY_PROTOCOL", "http")
        .env("STAGING_DB_PATH", dir.join("staging.db"))
        .env("SYNC_LOG_PATH", dir.join("sync.log"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "status: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Bytes of the files under `dir` (temp files aside).
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        if m.is_dir() {
            total += dir_bytes(&e.path());
        } else if !e.file_name().to_string_lossy().ends_with(".tmp") {
            total += m.len();
        }
    }
    total
}

/// The directory a `memsync serve` for `s` serves (made), and its log.
fn serve_paths(s: &Scene) -> (PathBuf, PathBuf) {
    let root = s.dir.path().join("served");
    std::fs::create_dir_all(&root).unwrap();
    (root, s.dir.path().join("serve.log"))
}

#[test]
fn metrics_health_and_status_follow_a_replica_that_goes_away_and_comes_back() {
    let s = Scene::new("", "");
    let dir = s.dir.path().to_path_buf();
    let (root, serve_log) = serve_paths(&s);
    let ports = free_ports(3);
    let (addr_port, serve_port, closed_port) = (ports[0], ports[1], ports[2]);
    let mut server = Some(start_serve(&root, serve_port, &serve_log));
    // The replica's own interval is 0 s: /health allows it max(3 x 0 s, 10 s) = 10 s.
    std::fs::write(
        &s.config,
        format!(
            "addr: 127.0.0.1:{addr_port}\ndbs:\n  - path: {}\n    replicas:\n      - name: local\n        type: file\n        path: {}\n        sync-interval: 0s\n      - name: remote\n        url: http://memsync:{KEY}@127.0.0.1:{serve_port}/app\n        sync-interval: 0s\n",
            s.db.display(),
            s.replica.display()
        ),
    )
    .unwrap();
    let app = create_memdb(&s.db);
    let mut n = 0;
    let mut write = |k: u64| {
        for _ in 0..k {
            n += 1;
            insert_memory(&app, n);
        }
    };
    write(5);
    let mut r = s.start();
    let log = || s.log_tail();
    let caught_up = |sc: &Scrape, replica: &str| {
        let db = sc.value("memsync_position", None);
        db > 0.0
            && sc.value("memsync_replica_position", Some(replica)) == db
            && sc.value("memsync_replica_lag_seconds", Some(replica)) == 0.0
    };
    wait_until("both replicas hold the database's position", log, || {
        get(addr_port, "/metrics").is_some() && {
            let sc = Scrape::take(addr_port);
            caught_up(&sc, "local") && caught_up(&sc, "remote")
        }
    });
    let first = Scrape::take(addr_port);
    assert!(first.value("memsync_replica_uploads_total", Some("remote")) > 0.0);
    assert!(first.value("memsync_replica_uploaded_bytes_total", Some("remote")) > 0.0);
    assert_eq!(first.value("memsync_replica_healthy", Some("remote")), 1.0);
    let (code, body) = get(addr_port, "/health").unwrap();
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["status"].as_str(), v["replicas"].as_u64()),
        (Some("ok"), Some(2))
    );
    assert_eq!(get(addr_port, "/nothing").unwrap().0, 404);
    // A request head past 16 KiB is refused (431, or the connection closed before it was all
    // sent), and the server goes on answering.
    let big = format!("/metrics?{}", "x".repeat(20_000));
    let refused = get(addr_port, &big).map(|a| a.0);
    assert!(matches!(refused, None | Some(431)), "{refused:?}");
    assert_eq!(get(addr_port, "/health").unwrap().0, 200);
    wait_until("status shows the replicator", log, || {
        let out = status(&dir, &s.db, &s.config, closed_port);
        out.contains(&format!("replication  running (pid {})", r.pid()))
            && out.contains("  replica    remote  lag 0.0s")
            && out.contains("  replica    local  lag 0.0s")
    });

    // The HTTP replica goes away while writes go on: its lag grows, the file replica keeps up.
    stop(server.take().unwrap());
    write(5);
    let mut lag = 0.0;
    wait_until("the remote replica lags", log, || {
        write(1);
        let sc = Scrape::take(addr_port);
        lag = sc.value("memsync_replica_lag_seconds", Some("remote"));
        lag > 0.0 && sc.value("memsync_spool_bytes", None) > 0.0
    });
    let before = first.value("memsync_position", None);
    wait_until("the lag grows while the replica is down", log, || {
        let sc = Scrape::take(addr_port);
        assert!(sc.value("memsync_position", None) > before);
        sc.value("memsync_replica_lag_seconds", Some("remote")) > lag
            && sc.value("memsync_replica_position", Some("remote"))
                < sc.value("memsync_position", None)
    });
    wait_until("the file replica keeps up meanwhile", log, || {
        caught_up(&Scrape::take(addr_port), "local")
    });
    wait_until("/health says the remote replica is behind", log, || {
        get(addr_port, "/health").is_some_and(|(code, body)| {
            code == 503 && {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                let p = &v["problems"][0];
                assert_eq!(v["status"], "unhealthy", "{body}");
                assert_eq!(p["db"].as_str(), Some(s.db.to_str().unwrap()), "{body}");
                assert_eq!(p["replica"], "remote", "{body}");
                assert_eq!(v["problems"].as_array().unwrap().len(), 1, "{body}");
                true
            }
        })
    });
    let sc = Scrape::take(addr_port);
    assert_eq!(sc.value("memsync_replica_healthy", Some("remote")), 0.0);
    assert!(sc.value("memsync_replica_errors_total", Some("remote")) > 0.0);
    let out = status(&dir, &s.db, &s.config, closed_port);
    assert!(out.contains("  replica    remote  lag "), "{out}");
    assert!(!out.contains("  replica    remote  lag 0.0s"), "{out}");

    // Back: it catches up, and /health says so.
    server = Some(start_serve(&root, serve_port, &serve_log));
    wait_until("/health is 200 again", log, || {
        get(addr_port, "/health").is_some_and(|(code, _)| code == 200)
    });
    wait_until("the remote replica caught up", log, || {
        caught_up(&Scrape::take(addr_port), "remote")
    });

    // The tracked spool figure is what the directory holds (no writes now; compaction and
    // pruning may still move it between a scrape and the walk: polled).
    let spool = dir.join(".db.sqlite-memsync").join("spool");
    wait_until(
        "memsync_spool_bytes matches the spool directory",
        log,
        || {
            let tracked = Scrape::take(addr_port).value("memsync_spool_bytes", None);
            tracked > 0.0 && tracked == dir_bytes(&spool) as f64
        },
    );

    let (st, out) = r.stop();
    assert!(st.success(), "{out}");
    let out = status(&dir, &s.db, &s.config, closed_port);
    assert!(
        out.contains("replication  not running (no replicator state)"),
        "{out}"
    );
    assert!(get(addr_port, "/metrics").is_none());

    // A replicator killed leaves its state behind: its pid is gone, so it is not running.
    r = s.start();
    let pid = r.pid();
    wait_until("status shows the second replicator", log, || {
        status(&dir, &s.db, &s.config, closed_port)
            .contains(&format!("replication  running (pid {pid})"))
    });
    r.kill();
    let out = status(&dir, &s.db, &s.config, closed_port);
    assert!(
        out.contains(&format!("replication  not running (process {pid} is gone)")),
        "{out}"
    );
    stop(server.take().unwrap());
}
