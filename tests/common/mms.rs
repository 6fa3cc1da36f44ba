//! A real mcp-memory-service 12.4.0 server on 127.0.0.1 (installed by scripts/harness.sh and
//! started by scripts/mms-server.sh), the `memsync` client as a user runs it, and `curl` to look
//! at the server independently of memsync's own client.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::BIN;

pub const KEY: &str = "testkey";

fn harness() -> PathBuf {
    std::env::var_os("MEMSYNC_HARNESS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/memsync-harness")
        })
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One running server with its own data folder.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    env: Vec<(String, String)>,
}

impl Server {
    pub fn start(dir: &Path) -> Server {
        Server::start_with(dir, &[])
    }

    /// Starts a server; `env` adds MMS_EVENTLOG=1, MMS_TLS_CERT/KEY, ...
    pub fn start_with(dir: &Path, env: &[(&str, &str)]) -> Server {
        let py = harness().join("mms/bin/python");
        assert!(
            py.exists(),
            "mcp-memory-service is not installed at {}: run scripts/harness.sh (scripts/test.sh does)",
            py.display()
        );
        let mut s = Server {
            child: None,
            port: free_port(),
            dir: dir.to_path_buf(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        s.launch();
        s
    }

    fn launch(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mms-server.sh");
        let child = Command::new(script)
            .arg(&self.dir)
            .arg(self.port.to_string())
            .arg(KEY)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start scripts/mms-server.sh");
        self.child = Some(child);
        let t0 = Instant::now();
        let scheme = if self.env.iter().any(|(k, _)| k == "MMS_TLS_CERT") {
            "https"
        } else {
            "http"
        };
        loop {
            let out = Command::new("curl")
                .args(["-s", "-k", "-o", "/dev/null", "-w", "%{http_code}"])
                .arg(format!("{scheme}://127.0.0.1:{}/api/health", self.port))
                .output()
                .expect("curl");
            if out.stdout == b"200" {
                return;
            }
            if let Some(Some(st)) = self.child.as_mut().map(|c| c.try_wait().unwrap()) {
                panic!(
                    "mcp-memory-service exited ({st}) during startup:\n{}",
                    self.log_tail()
                );
            }
            assert!(
                t0.elapsed() < Duration::from_secs(90),
                "mcp-memory-service not healthy after 90 s:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log_tail(&self) -> String {
        let t = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        t.lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn db(&self) -> PathBuf {
        self.dir.join("sqlite_vec.db")
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let t0 = Instant::now();
            while c.try_wait().unwrap().is_none() && t0.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// A read-only look at the server's database file.
    fn read_db(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open_with_flags(
            self.db(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c
    }

    /// Live memory rows with this hash, read from the server's database file.
    pub fn rows_with_hash(&self, hash: &str) -> i64 {
        self.read_db()
            .query_row(
                "SELECT COUNT(*) FROM memories WHERE content_hash = ?1 AND deleted_at IS NULL",
                [hash],
                |r| r.get(0),
            )
            .unwrap()
    }

    pub fn live_count(&self) -> i64 {
        self.read_db()
            .query_row(
                "SELECT COUNT(*) FROM memories WHERE deleted_at IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap_or(0)
    }

    /// Stores a memory through the REST API (curl), as another client of the server would.
    pub fn post(&self, content: &str, tags: &[&str], meta: serde_json::Value) {
        let body = serde_json::json!({"content": content, "tags": tags, "memory_type": "note", "metadata": meta});
        let (status, answer) = curl("POST", &format!("{}/api/memories", self.url()), Some(&body));
        assert!(
            status == 200 && answer["success"] == true,
            "{status} {answer}"
        );
    }

    /// Replaces a memory's tags through the REST API.
    pub fn put_tags(&self, content: &str, tags: &[&str]) {
        let url = format!("{}/api/memories/{}", self.url(), hash_of(content));
        let (status, body) = curl("PUT", &url, Some(&serde_json::json!({ "tags": tags })));
        assert_eq!(status, 200, "{body}");
    }

    /// A memory's tags as the server returns them, sorted.
    pub fn tags(&self, content: &str) -> Vec<String> {
        let url = format!("{}/api/memories/{}", self.url(), hash_of(content));
        let (status, body) = curl("GET", &url, None);
        assert_eq!(status, 200, "{body}");
        let mut t: Vec<String> = body["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        t.sort();
        t
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `curl` against a server: (status, body as JSON or Null).
pub fn curl(method: &str, url: &str, body: Option<&serde_json::Value>) -> (u16, serde_json::Value) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-k",
        "-X",
        method,
        "-H",
        &format!("X-API-Key: {KEY}"),
        "-w",
        "\n%{http_code}",
    ]);
    if body.is_some() {
        cmd.args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "@-",
        ]);
        cmd.stdin(Stdio::piped());
    }
    cmd.arg(url).stdout(Stdio::piped());
    let mut child = cmd.spawn().expect("curl");
    if let Some(b) = body {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b.to_string().as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// A machine running memsync: its own HOME, staging database, log and local memory database.
#[derive(Clone)]
pub struct Machine {
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Machine {
    pub fn new(dir: &Path, port: u16) -> Machine {
        std::fs::create_dir_all(dir.join("home")).unwrap();
        let d = |p: &str| dir.join(p).display().to_string();
        Machine {
            dir: dir.to_path_buf(),
            env: vec![
                ("HOME".into(), d("home")),
                ("REMOTE_MEMORY_HOST".into(), "127.0.0.1".into()),
                ("REMOTE_MEMORY_PORT".into(), port.to_string()),
                ("REMOTE_MEMORY_PROTOCOL".into(), "http".into()),
                ("REMOTE_MEMORY_API_KEY".into(), KEY.into()),
                ("STAGING_DB_PATH".into(), d("staging/staging.db")),
                ("SYNC_LOG_PATH".into(), d("staging/sync.log")),
                ("MCP_MEMORY_SQLITE_PATH".into(), d("local/sqlite_vec.db")),
                ("SYNC_RETRY_ATTEMPTS".into(), "2".into()),
            ],
        }
    }

    /// The same machine with one setting changed.
    pub fn with(&self, k: &str, v: &str) -> Machine {
        let mut m = self.clone();
        m.env.retain(|(key, _)| key != k);
        m.env.push((k.into(), v.into()));
        m
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "memsync {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs and asserts the exit code (see `memsync help`: 3 failed rows left, 4 conflicts
    /// open, 5 server unreachable, 6 staging database in use); returns stdout.
    pub fn exits(&self, code: i32, args: &[&str]) -> String {
        let o = self.run(args);
        assert_eq!(
            o.status.code(),
            Some(code),
            "memsync {args:?}:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs and asserts a one-line failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            !o.status.success(),
            "memsync {args:?} should fail; stdout: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert_eq!(
            err.trim().lines().count(),
            1,
            "one line of error expected, got: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        err
    }

    pub fn staging_path(&self) -> PathBuf {
        self.dir.join("staging/staging.db")
    }

    pub fn local_db(&self) -> PathBuf {
        self.dir.join("local/sqlite_vec.db")
    }

    /// Staged rows by state.
    pub fn staged(&self, state: &str) -> i64 {
        let c = rusqlite::Connection::open(self.staging_path()).unwrap();
        c.query_row(
            "SELECT COUNT(*) FROM staged_memories WHERE state = ?1",
            [state],
            |r| r.get(0),
        )
        .unwrap()
    }
}

/// The content hash the server computes, for comparisons.
pub fn hash_of(content: &str) -> String {
    memsync::memory::hash::ContentHash::of(content).to_string()
}

/// The pull tests' setup: a remote server, a second server acting as this machine's local
/// service, and a machine syncing against the remote into the local service's database.
pub fn remote_and_local(dir: &Path) -> (Server, Server, Machine) {
    let remote = Server::start(&dir.join("remote"));
    let local = Server::start(&dir.join("local"));
    let m = Machine::new(&dir.join("m"), remote.port)
        .with("MCP_MEMORY_SQLITE_PATH", &local.db().display().to_string());
    (remote, local, m)
}

/// `memsync replicate -once` of the server's database to `replica` (the server's replicator,
/// run by hand).
pub fn replicate_once(server: &Server, replica: &str) {
    let o = Command::new(BIN)
        .args([
            "replicate",
            "-once",
            &server.db().display().to_string(),
            replica,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The path a command's message names after `marker`, up to the end of its line.
pub fn named_path(out: &str, marker: &str) -> PathBuf {
    let rest = out
        .split(marker)
        .nth(1)
        .unwrap_or_else(|| panic!("no {marker:?} in: {out}"));
    PathBuf::from(rest.lines().next().unwrap().trim())
}
