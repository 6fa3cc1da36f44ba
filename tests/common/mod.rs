//! Shared helpers of the integration tests: real SQLite with sqlite-vec loaded, a real
//! `memsync` process, and comparisons of databases.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use rusqlite::Connection;

pub mod mms;
pub mod points;
pub mod proxy;
pub mod refuse;
pub mod s3;
pub mod serve;
pub mod server;
pub mod watched;
pub mod webdav;

/// The `memsync` under test: cargo's, or `MEMSYNC_TEST_BIN` when the tests were built with it
/// (several worktrees sharing one target directory overwrite each other's `target/debug/memsync`).
pub const BIN: &str = match option_env!("MEMSYNC_TEST_BIN") {
    Some(p) => p,
    None => env!("CARGO_BIN_EXE_memsync"),
};
pub const DIM: usize = 384;

/// Registers sqlite-vec in every connection opened afterwards (the crate's own helper).
pub use memsync::vec::register_vec;

/// Opens a connection the way an application would (WAL, busy timeout 5 s, NORMAL sync).
pub fn app_conn(path: &Path) -> Connection {
    register_vec();
    let c = Connection::open(path).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.pragma_update(None, "journal_mode", "wal").unwrap();
    c.pragma_update(None, "synchronous", "NORMAL").unwrap();
    c
}

/// Creates an mcp-memory-service-shaped database: `memories` plus a vec0 embeddings table.
pub fn create_memdb(path: &Path) -> Connection {
    let c = app_conn(path);
    c.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS memories (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            content_hash TEXT UNIQUE NOT NULL,
            content TEXT NOT NULL,
            tags TEXT, memory_type TEXT, metadata TEXT,
            created_at REAL, updated_at REAL);
         CREATE INDEX IF NOT EXISTS idx_tags ON memories(tags);
         CREATE VIRTUAL TABLE IF NOT EXISTS memory_embeddings USING vec0(content_embedding FLOAT[{DIM}] distance_metric=cosine);"
    ))
    .unwrap();
    c
}

/// Deterministic pseudo-random embedding for row `i`.
pub fn embedding(i: u64) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(DIM * 4);
    for _ in 0..DIM {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let f = (x % 2000) as f32 / 1000.0 - 1.0;
        out.extend_from_slice(&f.to_le_bytes());
    }
    out
}

/// Inserts memory `i` (content, tags, embedding) in one transaction.
pub fn insert_memory(c: &Connection, i: u64) {
    insert_memories(c, i..=i);
}

/// Inserts memories `ids` (as [`insert_memory`] does one) in one transaction.
pub fn insert_memories(c: &Connection, ids: std::ops::RangeInclusive<u64>) {
    let tx = c.unchecked_transaction().unwrap();
    for i in ids {
        let content = format!(
            "memory {i}: {}",
            "lorem ipsum dolor sit amet ".repeat((i % 7 + 1) as usize)
        );
        tx.execute(
            "INSERT INTO memories(content_hash, content, tags, memory_type, metadata, created_at, updated_at)
             VALUES (?1, ?2, ?3, 'note', '{}', ?4, ?4)",
            rusqlite::params![format!("hash-{i}"), content, format!("tag{},all", i % 5), i as f64],
        )
        .unwrap();
        let id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO memory_embeddings(rowid, content_embedding) VALUES (?1, ?2)",
            rusqlite::params![id, embedding(i)],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// Every memory row, in id order.
pub fn rows(c: &Connection) -> Vec<(i64, String, String)> {
    c.prepare("SELECT id, content_hash, content FROM memories ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Ten nearest neighbours of a fixed query vector.
pub fn knn(c: &Connection) -> Vec<(i64, f64)> {
    c.prepare(
        "SELECT rowid, distance FROM memory_embeddings WHERE content_embedding MATCH ?1 AND k = 10 ORDER BY distance",
    )
    .unwrap()
    .query_map([embedding(424242)], |r| Ok((r.get(0)?, r.get(1)?)))
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// Opens a restored database read-only and checks it is sound: integrity ok, one embedding per
/// memory, ids contiguous from 1 (every transaction all-or-nothing).
pub fn check_sound(path: &Path) -> Connection {
    register_vec();
    let c = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let ic: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ic, "ok", "integrity_check of {}", path.display());
    let n: i64 = c
        .query_row("SELECT count(*) FROM memories", [], |r| r.get(0))
        .unwrap();
    let e: i64 = c
        .query_row("SELECT count(*) FROM memory_embeddings", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, e, "memories and embeddings disagree: torn transaction");
    let max: i64 = c
        .query_row("SELECT coalesce(max(id),0) FROM memories", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, max, "ids not contiguous: a transaction is missing");
    c
}

/// Asserts two databases hold the same memories and give the same KNN answer.
pub fn assert_same(source: &Connection, restored: &Connection) {
    assert_eq!(rows(source), rows(restored), "rows differ");
    assert_eq!(knn(source), knn(restored), "KNN results differ");
}

/// Asserts the restored memories are exactly the source's first n (same ids, hashes and
/// contents, nothing else) and returns n: a replica may lag, never hold a row the source does
/// not have at that place or miss one before its last.
pub fn assert_prefix(source: &Connection, restored: &Connection) -> usize {
    let (src, got) = (rows(source), rows(restored));
    let n = got.len();
    assert!(
        n <= src.len(),
        "the restore holds {n} memories, the source only {}",
        src.len()
    );
    if let Some(i) = (0..n).find(|&i| got[i] != src[i]) {
        panic!(
            "restored row {i} differs from the source's: {:?} against {:?}",
            got[i], src[i]
        );
    }
    n
}

/// A scratch directory with a database and a file replica.
pub struct Scene {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub replica: PathBuf,
    pub config: PathBuf,
    /// Replicators started so far (numbers their logs).
    runs: std::cell::Cell<u32>,
}

impl Scene {
    /// New scene; the config has `extra_db` lines under the db and `extra_replica` under the replica.
    pub fn new(extra_db: &str, extra_replica: &str) -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.sqlite");
        let replica = dir.path().join("replica");
        let config = dir.path().join("litestream.yml");
        std::fs::write(
            &config,
            format!(
                "dbs:\n  - path: {}\n{extra_db}    replicas:\n      - type: file\n        path: {}\n{extra_replica}",
                db.display(),
                replica.display()
            ),
        )
        .unwrap();
        Scene {
            dir,
            db,
            replica,
            config,
            runs: Default::default(),
        }
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.replica.display())
    }

    /// Starts `memsync replicate -config`.
    pub fn start(&self) -> Replicator {
        self.start_with(&[])
    }

    /// Starts `memsync replicate -config` with extra environment variables. Its output (logs go
    /// to stdout by default, as Litestream's) lands in `replicate-N.log` in the scene directory:
    /// a pipe nobody reads could fill up and stall the replicator, and a failing test prints
    /// the tail of the newest log.
    pub fn start_with(&self, env: &[(&str, &str)]) -> Replicator {
        let n = self.runs.get() + 1;
        self.runs.set(n);
        let log = self.dir.path().join(format!("replicate-{n}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .envs(env.iter().copied())
            .args(["replicate", "-config"])
            .arg(&self.config)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Replicator {
            child: Some(child),
            log,
        }
    }

    /// The last lines of the newest replicator log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self
            .dir
            .path()
            .join(format!("replicate-{}.log", self.runs.get()));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Restores the latest state to a fresh path and returns it.
    pub fn restore(&self, name: &str, extra: &[&str]) -> PathBuf {
        let out = self.dir.path().join(name);
        let o = run(&[
            &["restore", "-o", out.to_str().unwrap()],
            extra,
            &[&self.url()],
        ]
        .concat());
        assert!(
            o.status.success(),
            "restore failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    }

    /// Waits until a restore shows `n` memories (replication is asynchronous).
    pub fn wait_for_rows(&self, n: i64) -> PathBuf {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut k = 0;
        loop {
            k += 1;
            let out = self.dir.path().join(format!("wait-{k}.db"));
            let o = run(&["restore", "-o", out.to_str().unwrap(), &self.url()]);
            let last = if o.status.success() {
                register_vec();
                let c = Connection::open(&out).unwrap();
                let got: i64 = c
                    .query_row("SELECT count(*) FROM memories", [], |r| r.get(0))
                    .unwrap_or(-1);
                if got == n {
                    return out;
                }
                format!("restore shows {got} rows")
            } else {
                String::from_utf8_lossy(&o.stderr).into_owned()
            };
            let _ = std::fs::remove_file(&out);
            assert!(
                Instant::now() < deadline,
                "replica never reached {n} rows; last: {last}; replicator log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A running `memsync replicate`.
pub struct Replicator {
    child: Option<Child>,
    /// Where its stdout and stderr go.
    log: PathBuf,
}

impl Replicator {
    /// Starts `cmd` (a memsync command that runs until stopped: `run`, `replicate` with
    /// other arguments), its stdout and stderr going to `log`.
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Replicator {
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Replicator {
            child: Some(child),
            log,
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(mut self) {
        let mut c = self.child.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// SIGTERM and wait; returns the exit status and the output.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        let mut c = self.child.take().unwrap();
        // SAFETY: kill(2) takes two integers and reads or writes no memory of this process.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let status = c.wait().unwrap();
        (
            status,
            std::fs::read_to_string(&self.log).unwrap_or_default(),
        )
    }

    /// Sends `sig` without waiting.
    pub fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().unwrap().id() as i32;
        // SAFETY: kill(2) takes two integers and reads or writes no memory of this process.
        unsafe {
            libc::kill(pid, sig);
        }
    }

    /// Waits for the process to exit on its own, up to `limit`; `None` if it still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit; returns the exit status and the output.
    pub fn wait(mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.take().unwrap().wait().unwrap();
        (
            status,
            std::fs::read_to_string(&self.log).unwrap_or_default(),
        )
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until its log holds `needle`, up to a minute.
    pub fn wait_for_log(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.log().contains(needle) {
            assert!(
                self.running(),
                "exited before logging {needle:?}:\n{}",
                self.log()
            );
            assert!(
                Instant::now() < deadline,
                "never logged {needle:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Process id (a second replicator must name it).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_none()
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Fails a test that arms fault points (`MEMSYNC_FAULT`) in a build that has none: only debug
/// builds read the variable, and a release binary would just run past the point.
pub fn require_fault_points() {
    #[cfg(not(debug_assertions))]
    panic!(
        "this test arms fault points, which exist in debug builds only: run it without --release"
    );
}

/// Runs memsync with `args` and returns its output.
pub fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

impl Scene {
    /// Runs memsync for a while, then stops it gracefully.
    pub fn start_and_stop_after(&self, d: Duration) -> (std::process::ExitStatus, String) {
        let r = self.start();
        std::thread::sleep(d);
        r.stop()
    }
}

/// With `MEMSYNC_TEST_KEEP=DIR`, a failing test's scene (database, WAL, spool, replica, logs)
/// is copied to DIR for a post-mortem before the temporary directory is removed.
impl Drop for Scene {
    fn drop(&mut self) {
        if let (true, Some(keep)) = (
            std::thread::panicking(),
            std::env::var_os("MEMSYNC_TEST_KEEP"),
        ) {
            let to = PathBuf::from(keep).join(format!(
                "scene-{}-{}",
                std::process::id(),
                self.dir.path().file_name().unwrap().to_string_lossy()
            ));
            let _ = std::fs::create_dir_all(&to);
            let _ = Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", self.dir.path().display()))
                .arg(&to)
                .status();
            eprintln!("scene kept in {}", to.display());
        }
    }
}

/// GET `path` on 127.0.0.1:`port` (one request, connection closed): status code and body;
/// `None` if nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}
