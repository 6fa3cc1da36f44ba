//! What a running replicator shows of itself, against a real `memsync replicate` with a file
//! replica and an HTTP replica (a real `memsync serve`, stopped and started again on its port):
//! `/metrics` parsed strictly as Prometheus text, its positions and lag moving with the writes;
//! `/health` turning 503 while the HTTP replica is down and 200 once it is back; `memsync
//! status` showing each replica's lag while the replicator runs and "not running" after it
//! stopped or was killed.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::serve::KEY;
use common::server::{free_ports, listening};
use common::{BIN, Scene, create_memdb, insert_memory};

/// One sample: name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn valid_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
    chars.next().is_some_and(ok_first) && chars.all(|c| ok_first(c) || c.is_ascii_digit())
}

/// Parses `{a="x",b="y"}` (escapes `\\`, `\"`, `\n` only); returns the labels and the rest.
fn parse_labels(s: &str) -> (BTreeMap<String, String>, &str) {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').unwrap();
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return (labels, r);
        }
        let (name, r) = rest.split_once("=\"").expect("label name then =\"");
        assert!(valid_name(name, false), "bad label name {name:?}");
        let mut value = String::new();
        let mut chars = r.char_indices();
        let end = loop {
            let (i, c) = chars.next().expect("unterminated label value");
            match c {
                '"' => break i,
                '\\' => match chars.next().expect("escape at end").1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    o => panic!("bad escape \\{o}"),
                },
                '\n' => panic!("raw newline in a label value"),
                c => value.push(c),
            }
        };
        assert!(
            labels.insert(name.to_owned(), value).is_none(),
            "label {name} twice"
        );
        rest = &r[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Parses the text exposition format strictly: every family has `# HELP` and `# TYPE` before
/// its samples, appears once, and its samples are together; names and labels are valid;
/// values are numbers; no sample twice; counters are not negative; histogram buckets have `le`.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashSet<String> = HashSet::new();
    let mut closed: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    assert!(text.ends_with('\n'), "no final newline");
    let mut enter = |family: &str, current: &mut Option<String>| {
        if current.as_deref() != Some(family) {
            if let Some(c) = current.take() {
                closed.insert(c);
            }
            assert!(!closed.contains(family), "family {family} split:\n{text}");
            *current = Some(family.to_owned());
        }
    };
    for line in text.lines() {
        assert!(!line.is_empty(), "empty line");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(valid_name(name, true), "bad name {name}");
            assert!(helps.insert(name.to_owned()), "HELP {name} twice");
            assert!(!types.contains_key(name), "HELP {name} after its TYPE");
            enter(name, &mut current);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "bad type {kind}"
            );
            assert!(helps.contains(name), "TYPE {name} without HELP");
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "TYPE {name} twice"
            );
            enter(name, &mut current);
        } else if line.starts_with('#') {
            continue;
        } else {
            let end = line.find(['{', ' ']).expect("sample without value");
            let name = &line[..end];
            assert!(valid_name(name, true), "bad sample name {name:?}");
            let (labels, rest) = if line[end..].starts_with('{') {
                parse_labels(&line[end..])
            } else {
                (BTreeMap::new(), &line[end..])
            };
            let mut fields = rest
                .strip_prefix(' ')
                .expect("space before value")
                .split(' ');
            let v = fields.next().unwrap();
            let value: f64 = match v {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value {v:?} in {line}")),
            };
            if let Some(ts) = fields.next() {
                ts.parse::<i64>().expect("timestamp");
            }
            assert!(fields.next().is_none(), "trailing text in {line}");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    let base = name.strip_suffix(s)?;
                    matches!(
                        types.get(base).map(String::as_str),
                        Some("histogram" | "summary")
                    )
                    .then_some(base)
                })
                .unwrap_or(name);
            assert!(types.contains_key(family), "sample {name} without TYPE");
            assert_eq!(
                current.as_deref(),
                Some(family),
                "{name} outside its family"
            );
            match types[family].as_str() {
                "counter" => assert!(value >= 0.0, "negative counter {line}"),
                "histogram" if name.ends_with("_bucket") => assert!(labels.contains_key("le")),
                _ => {}
            }
            assert!(
                seen.insert((name.to_owned(), labels.clone())),
                "{line} twice"
            );
            out.push(Sample {
                name: name.to_owned(),
                labels,
                value,
            });
        }
    }
    out
}

/// GET `path` on 127.0.0.1:`port`: status code and body; `None` if nothing answers.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    common::http_get(port, path)
}

/// The scene's figures at one scrape.
struct Scrape(Vec<Sample>);

impl Scrape {
    fn take(port: u16) -> Scrape {
        let (code, body) = get(port, "/metrics").expect("metrics answer");
        assert_eq!(code, 200, "{body}");
        Scrape(parse_exposition(&body))
    }

    fn value(&self, name: &str, replica: Option<&str>) -> f64 {
        self.0
            .iter()
            .find(|s| s.name == name && s.labels.get("replica").map(String::as_str) == replica)
            .unwrap_or_else(|| panic!("no {name} {replica:?}"))
            .value
    }
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

#[test]
fn metrics_health_and_status_follow_a_replica_that_goes_away_and_comes_back() {
    let s = Scene::new("", "");
    let dir = s.dir.path().to_path_buf();
    let root: PathBuf = dir.join("served");
    std::fs::create_dir_all(&root).unwrap();
    let ports = free_ports(3);
    let (addr_port, serve_port, closed_port) = (ports[0], ports[1], ports[2]);
    let serve_log = dir.join("serve.log");
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

#[test]
fn the_exposition_parser_refuses_what_prometheus_would() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{db=\"x\\\"y\"} 1\n";
    assert_eq!(parse_exposition(ok)[0].labels["db"], "x\"y");
    for bad in [
        // Samples of one family split by another.
        "# HELP a A.\n# TYPE a gauge\na 1\n# HELP b B.\n# TYPE b gauge\nb 1\na{x=\"1\"} 2\n",
        // No TYPE.
        "a 1\n",
        // A bad escape.
        "# HELP a A.\n# TYPE a gauge\na{x=\"\\t\"} 1\n",
        // Not a number.
        "# HELP a A.\n# TYPE a gauge\na one\n",
    ] {
        let r = std::panic::catch_unwind(|| parse_exposition(bad));
        assert!(r.is_err(), "accepted:\n{bad}");
    }
}

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

/// A replica that goes away while nothing is written: an idle probe finds it, /health turns 503
/// naming it, and 200 once it answers again; nothing is written meanwhile.
#[test]
fn health_sees_an_idle_replica_go_away_and_come_back() {
    let s = Scene::new("", "");
    let dir = s.dir.path().to_path_buf();
    let root: PathBuf = dir.join("served");
    std::fs::create_dir_all(&root).unwrap();
    let ports = free_ports(2);
    let (addr_port, serve_port) = (ports[0], ports[1]);
    let serve_log = dir.join("serve.log");
    let server = start_serve(&root, serve_port, &serve_log);
    std::fs::write(
        &s.config,
        format!(
            "addr: 127.0.0.1:{addr_port}\ndbs:\n  - path: {}\n    replicas:\n      - name: remote\n        url: http://memsync:{KEY}@127.0.0.1:{serve_port}/app\n        sync-interval: 1s\n",
            s.db.display()
        ),
    )
    .unwrap();
    let app = create_memdb(&s.db);
    insert_memory(&app, 1);
    let r = s.start();
    let log = || s.log_tail();
    wait_until("healthy", log, || {
        get(addr_port, "/health").is_some_and(|(code, _)| code == 200)
    });
    stop(server);
    wait_until("/health names the idle replica that went away", log, || {
        get(addr_port, "/health").is_some_and(|(code, body)| {
            code == 503 && body.contains("unreachable (nothing to ship yet)") && {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                v["problems"][0]["replica"] == "remote"
            }
        })
    });
    let server = start_serve(&root, serve_port, &serve_log);
    wait_until("/health is 200 again", log, || {
        get(addr_port, "/health").is_some_and(|(code, _)| code == 200)
    });
    let (st, out) = r.stop();
    assert!(st.success(), "{out}");
    assert!(out.contains("): answers again"), "{out}");
    stop(server);
}

/// A file replica wiped (or a disk unmounted under it) while nothing is written: the probe finds
/// its lineage record gone, and /health says so.
#[test]
fn health_sees_an_idle_file_replica_wiped() {
    let s = Scene::new("", "        sync-interval: 1s\n");
    let addr_port = free_ports(1)[0];
    let mut yml = std::fs::read_to_string(&s.config).unwrap();
    yml.push_str(&format!("addr: 127.0.0.1:{addr_port}\n"));
    std::fs::write(&s.config, yml).unwrap();
    let app = create_memdb(&s.db);
    insert_memory(&app, 1);
    let r = s.start();
    let log = || s.log_tail();
    wait_until("healthy", log, || {
        get(addr_port, "/health").is_some_and(|(code, _)| code == 200)
    });
    std::fs::remove_dir_all(&s.replica).unwrap();
    wait_until("/health names the wiped replica", log, || {
        get(addr_port, "/health").is_some_and(|(code, body)| {
            code == 503 && body.contains("unreachable (nothing to ship yet)")
        })
    });
    let (st, out) = r.stop();
    assert!(st.success(), "{out}");
    assert!(
        out.contains("its lineage record, written when replication started"),
        "{out}"
    );
}
