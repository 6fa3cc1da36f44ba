//! The memory commands as cron, CI and a person at a terminal see them, against real
//! mcp-memory-service 12.4.0 servers: exit codes per outcome, one staged row dropped or edited,
//! one memsync at a time per staging database, metrics of standalone push and pull, help,
//! progress, debug detail, standard input and `sync --watch` timestamps.

mod common;

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::mms::{Machine, Server, curl, free_port, hash_of, remote_and_local};
use common::proxy::Proxy;
use serde_json::json;

/// Runs with `input` on standard input.
fn with_stdin(m: &Machine, args: &[&str], input: &str) -> Output {
    let mut child = m
        .command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The number after `key ` in a summary line ("pushed 3 (stored 3, ...)").
fn count_after(out: &str, key: &str) -> usize {
    let rest = out
        .split(&format!("{key} "))
        .nth(1)
        .unwrap_or_else(|| panic!("no {key:?} in {out}"));
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no number after {key:?} in {out}"))
}

/// The first number on the metrics line starting with `label`.
fn metric(out: &str, label: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} line in {out}"));
    line[label.len()..]
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no number on {line:?}"))
}

/// Runs memsync on a pseudo-terminal (util-linux `script`), typing `input`; the exit code and
/// everything the terminal showed.
fn on_terminal(m: &Machine, args: &str, input: &str) -> (Option<i32>, String) {
    let mut c = std::process::Command::new("script");
    c.args(["-qec", &format!("{} {args}", common::BIN), "/dev/null"])
        .env_clear();
    c.env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in &m.env {
        c.env(k, v);
    }
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("script");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code(), text(&out.stdout))
}

#[test]
fn exit_codes_say_what_is_left_and_one_row_can_be_dropped_or_edited() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let m = Machine::new(&dir.path().join("m"), server.port);
    m.ok(&["store", "--offline", "small enough for the server"]);
    // 2 MiB: over the server's 1 MiB body limit, refused with HTTP 413 at every attempt.
    let big = format!("too big: {}", "0123456789abcdef".repeat(2 << 16));
    let o = with_stdin(&m, &["store", "--offline", "-"], &big);
    assert!(o.status.success(), "{}", text(&o.stderr));

    // A finished push with a refused row: the usual summary, and exit 3.
    let o = m.run(&["push"]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(3), "{out}{err}");
    assert!(
        out.contains("pushed 1") && out.contains("failed 1"),
        "{out}"
    );
    assert!(
        err.contains("1 staged row failed") && err.contains("memsync staged"),
        "{err}"
    );
    let out = m.exits(3, &["push", "--retry-failed"]);
    assert!(out.contains("failed 1"), "{out}");
    m.exits(3, &["sync"]);
    // Still left over for a push that did not touch it.
    m.exits(3, &["push"]);

    // The listing names the row, its state and the server's reason.
    let listed = m.ok(&["staged"]);
    let row = listed
        .lines()
        .find(|l| l.contains("failed"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(row.contains("413") && row.contains("too big"), "{listed}");
    assert!(
        !listed.contains("small enough"),
        "pushed rows are not waiting: {listed}"
    );
    let id = row
        .trim_start_matches('#')
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert!(m.ok(&["staged", "--all"]).contains("small enough"));

    // edit: new fields, and the failed row is pending again (still too big for the server).
    let out = m.ok(&["edit", &id, "--tags", "big,Refused", "--type", "reference"]);
    assert!(out.contains("pending"), "{out}");
    assert_eq!((m.staged("failed"), m.staged("pending")), (0, 1));
    let listed = m.ok(&["staged"]);
    assert!(
        listed.contains("big,refused") && listed.contains("reference"),
        "{listed}"
    );
    m.exits(3, &["push"]);

    // drop: refused without a terminal or --yes; then a copy first, and the row stops waiting.
    let err = m.fails(&["drop", &id]);
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(m.staged("failed"), 1);
    let out = m.ok(&["drop", &id, "--yes"]);
    let copy = out
        .split("a copy is in ")
        .nth(1)
        .unwrap_or_else(|| panic!("{out}"))
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches(';');
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(copy).unwrap()).unwrap();
    assert_eq!(saved["content"].as_str(), Some(big.as_str()));
    assert_eq!(saved["state"], "failed");
    assert_eq!((m.staged("failed"), m.staged("pending")), (0, 0));
    let err = m.fails(&["drop", &id, "--yes"]);
    assert!(err.contains("not waiting"), "{err}");
    let err = m.fails(&["edit", "999", "--tags", "x"]);
    assert!(err.contains("#999"), "{err}");
    // An empty type changes nothing, so it is refused rather than reported as an edit.
    let err = m.fails(&["edit", "999", "--type", " "]);
    assert!(err.contains("--type is empty"), "{err}");
    m.ok(&["push"]);
    m.ok(&["sync"]);

    // edit of a pending row: the server gets the edited fields.
    let pending = "edited before it is pushed";
    m.ok(&["store", "--offline", "--tags", "first", pending]);
    let listed = m.ok(&["staged"]);
    let id = listed
        .lines()
        .find(|l| l.contains("edited before"))
        .unwrap()
        .trim_start_matches('#')
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    m.ok(&["edit", &id, "--tags", "second,third", "--type", "decision"]);
    m.ok(&["push"]);
    assert_eq!(server.tags(pending), vec!["second", "third"]);
    let (_, body) = curl(
        "GET",
        &format!("{}/api/memories/{}", server.url(), hash_of(pending)),
        None,
    );
    assert_eq!(body["memory_type"], "decision");

    // An open conflict (manual policy): exit 4 until it is resolved.
    let manual = m.with("SYNC_CONFLICT_RESOLUTION", "manual");
    server.post("met with other tags", &["server-tag"], json!({}));
    manual.ok(&[
        "store",
        "--offline",
        "--tags",
        "local-tag",
        "met with other tags",
    ]);
    let out = manual.exits(4, &["push"]);
    assert!(out.contains("conflicts 1"), "{out}");
    manual.exits(4, &["sync"]);
    manual.ok(&["resolve-conflicts", "--strategy", "merge"]);
    manual.ok(&["push"]);

    // The server unreachable: exit 5, the row still pending.
    let away = m.with("REMOTE_MEMORY_PORT", &free_port().to_string());
    away.ok(&["store", "--offline", "waits for the server"]);
    let o = away.run(&["push"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("cannot connect"));
    assert_eq!(m.staged("pending"), 1);
    m.ok(&["push"]);
}

#[test]
fn concurrent_pushes_take_turns_and_a_held_lock_names_its_holder() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let m = Machine::new(&dir.path().join("m"), server.port).with("SYNC_LOCK_WAIT", "300");
    for i in 0..50 {
        m.ok(&[
            "store",
            "--offline",
            &format!("pushed by one of two runs, {i}"),
        ]);
    }
    let spawn = |m: &Machine| {
        m.command(&["push"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(&m), spawn(&m));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let (oa, ob) = (text(&a.stdout), text(&b.stdout));
    assert!(
        a.status.success() && b.status.success(),
        "{oa}{ob}{}{}",
        text(&a.stderr),
        text(&b.stderr)
    );
    assert_eq!(
        count_after(&oa, "pushed") + count_after(&ob, "pushed"),
        50,
        "each row reported once:\n{oa}\n{ob}"
    );
    assert!(
        oa.contains("failed 0") && ob.contains("failed 0"),
        "{oa}{ob}"
    );
    assert_eq!(server.live_count(), 50);

    // A push held up by a slow server holds the staging database; another one gives up after
    // SYNC_LOCK_WAIT with exit 6, naming the holder. `store` and `status` are never refused.
    for i in 0..20 {
        m.ok(&["store", "--offline", &format!("pushed slowly, {i}")]);
    }
    let p = Proxy::start(server.port);
    p.set_delay(Duration::from_millis(200));
    let holder = spawn(&m.with("REMOTE_MEMORY_PORT", &p.port.to_string()));
    let lock = dir.path().join("m/staging/staging.db.lock");
    let t0 = Instant::now();
    while !std::fs::read_to_string(&lock)
        .unwrap_or_default()
        .contains(&format!("pid {}", holder.id()))
    {
        assert!(t0.elapsed() < Duration::from_secs(30), "no lock taken");
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = m.with("SYNC_LOCK_WAIT", "1").run(&["push"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(6), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("pid {}", holder.id()))
            && err.contains("push")
            && err.contains("since"),
        "{err}"
    );
    m.ok(&["store", "--offline", "stored while a push runs"]);
    m.ok(&["status"]);
    p.set_delay(Duration::ZERO);
    let out = holder.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    m.ok(&["push"]);
    assert_eq!(server.live_count(), 71);
    assert_eq!(m.staged("pending"), 0);
}

#[test]
fn metrics_count_standalone_pushes_and_pulls() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, _local, m) = remote_and_local(dir.path());
    for i in 0..3 {
        m.ok(&["store", "--offline", &format!("pushed on its own {i}")]);
    }
    assert!(m.ok(&["push"]).contains("pushed 3"));
    remote.post("from another client", &["t"], json!({}));
    let out = m.ok(&["pull"]);
    assert!(out.contains("added 4"), "{out}");
    let out = m.ok(&["metrics"]);
    assert_eq!(metric(&out, "pushes"), 1, "{out}");
    assert_eq!(metric(&out, "pulls"), 1, "{out}");
    assert_eq!(metric(&out, "pushed"), 3, "{out}");
    assert_eq!(metric(&out, "pulled in"), 4, "{out}");
    assert_eq!(metric(&out, "syncs"), 0, "{out}");
    // A sync's own pull and push are counted once, as the sync.
    m.ok(&["store", "--offline", "pushed by a sync"]);
    m.ok(&["sync"]);
    let out = m.ok(&["metrics"]);
    assert_eq!(
        (
            metric(&out, "syncs"),
            metric(&out, "pushes"),
            metric(&out, "pushed")
        ),
        (1, 1, 4),
        "{out}"
    );
}

#[test]
fn help_works_as_a_command() {
    let o = common::run(&["help"]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        out.contains("push") && out.contains("staged") && out.contains("Exit codes"),
        "{out}"
    );
    let o = common::run(&["help", "push"]);
    assert!(o.status.success());
    assert!(text(&o.stdout).contains("--retry-failed"));
    let o = common::run(&["help", "drop"]);
    assert!(o.status.success() && text(&o.stdout).contains("--yes"));
}

#[test]
fn standard_input_debug_detail_progress_and_watch_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let m = Machine::new(&dir.path().join("m"), server.port);

    // `store -` drops one trailing newline, as `git commit -F -` does.
    for (input, stored) in [
        ("from standard input\n", "from standard input"),
        ("two lines\n\n", "two lines\n"),
        ("no newline at all", "no newline at all"),
    ] {
        let o = with_stdin(&m, &["store", "-"], input);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let (_, body) = curl(
            "GET",
            &format!("{}/api/memories/{}", server.url(), hash_of(stored)),
            None,
        );
        assert_eq!(body["content"].as_str(), Some(stored), "{input:?}");
    }

    // SYNC_DEBUG: each request with method, path, status and time; what push decided per row.
    for i in 0..3 {
        m.ok(&[
            "store",
            "--offline",
            &format!("pushed with debug detail {i}"),
        ]);
    }
    let o = m.with("SYNC_DEBUG", "1").run(&["push"]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("POST /api/memories") && l.contains("200") && l.ends_with(" ms")),
        "{err}"
    );
    assert!(err.contains("GET /api/health"), "{err}");
    assert!(err.contains("push #") && err.contains("store"), "{err}");

    // Progress on a terminal only.
    for i in 0..30 {
        m.ok(&["store", "--offline", &format!("pushed with progress {i}")]);
    }
    let (code, shown) = on_terminal(&m, "push", "");
    assert_eq!(code, Some(0), "{shown}");
    assert!(
        shown.contains("push 30/30") && shown.contains("pushed 30"),
        "{shown}"
    );
    m.ok(&["store", "--offline", "pushed without a terminal"]);
    let o = m.run(&["push"]);
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "{}",
        text(&o.stderr)
    );

    // sync --watch: each round's output starts with its time.
    let w = m.with("SYNC_INTERVAL", "1");
    let child = w
        .command(&["sync", "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    w.ok(&["store", "--offline", "staged while sync --watch runs"]);
    let t0 = Instant::now();
    while server.rows_with_hash(&hash_of("staged while sync --watch runs")) == 0 {
        assert!(t0.elapsed() < Duration::from_secs(30), "no round pushed");
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let rounds: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with("stopped after"))
        .collect();
    assert!(!rounds.is_empty(), "{stdout}");
    for l in rounds {
        let ts = l.split_whitespace().next().unwrap_or("");
        assert!(
            ts.ends_with('Z') && humantime::parse_rfc3339_weak(ts).is_ok(),
            "{l:?} in {stdout}"
        );
    }
}
