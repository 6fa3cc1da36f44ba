//! Many databases in one `memsync replicate`: every database restores exactly, the thread
//! count is bounded by the monitor pool (not the number of databases), and a kill -9 in the
//! middle of writes to fifty databases loses nothing once memsync runs again.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{BIN, run};
use rusqlite::Connection;

/// Pool workers the tests ask for (`MEMSYNC_WORKERS`).
const WORKERS: usize = 4;

/// Threads besides the pool's: main, the async runtime's worker and its blocking threads
/// (at most 4), the two shared compaction threads, a signal thread, with room to spare.
const OTHER_THREADS: usize = 12;

struct Fleet {
    dir: tempfile::TempDir,
    dbs: Vec<PathBuf>,
    config: PathBuf,
    runs: u32,
}

impl Fleet {
    fn new(n: usize) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let mut dbs = Vec::new();
        let mut yml = String::from("dbs:\n");
        for i in 0..n {
            let db = dir.path().join(format!("db{i:03}.sqlite"));
            let c = conn(&db);
            c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL);")
                .unwrap();
            yml.push_str(&format!(
                "  - path: {}\n    replicas:\n      - type: file\n        path: {}\n        sync-interval: 200ms\n",
                db.display(),
                dir.path().join(format!("replica/db{i:03}")).display()
            ));
            dbs.push(db);
        }
        let config = dir.path().join("litestream.yml");
        std::fs::write(&config, yml).unwrap();
        Fleet {
            dir,
            dbs,
            config,
            runs: 0,
        }
    }

    fn start(&mut self) -> Child {
        self.runs += 1;
        let log = self.dir.path().join(format!("replicate-{}.log", self.runs));
        let out = std::fs::File::create(log).unwrap();
        Command::new(BIN)
            .env("MEMSYNC_WORKERS", WORKERS.to_string())
            .args(["replicate", "-config"])
            .arg(&self.config)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap()
    }

    fn log(&self) -> String {
        let p = self.dir.path().join(format!("replicate-{}.log", self.runs));
        std::fs::read_to_string(p).unwrap_or_default()
    }

    fn wait_for_log(&self, child: &mut Child, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.log().contains(needle) {
            assert!(
                child.try_wait().unwrap().is_none(),
                "memsync exited before logging {needle:?}:\n{}",
                self.log()
            );
            assert!(Instant::now() < deadline, "never logged {needle:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Restores database `i` and returns its rows.
    fn restored(&self, i: usize, tag: &str) -> Vec<(i64, String)> {
        let out = self.dir.path().join(format!("restored-{tag}-{i}.db"));
        let url = format!(
            "file://{}",
            self.dir.path().join(format!("replica/db{i:03}")).display()
        );
        let o = run(&["restore", "-o", out.to_str().unwrap(), &url]);
        assert!(
            o.status.success(),
            "restore of db {i} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let rows = rows(&Connection::open(&out).unwrap());
        std::fs::remove_file(&out).unwrap();
        rows
    }
}

fn conn(p: &Path) -> Connection {
    let c = Connection::open(p).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c.pragma_update(None, "journal_mode", "wal").unwrap();
    c
}

fn rows(c: &Connection) -> Vec<(i64, String)> {
    let mut s = c.prepare("SELECT id, v FROM t ORDER BY id").unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn threads(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn sigterm(child: &mut Child) -> std::process::ExitStatus {
    // SAFETY: kill(2) takes two integers and reads or writes no memory of this process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    child.wait().unwrap()
}

/// A small deterministic generator (the subsets written each round).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

#[test]
fn two_hundred_databases_replicate_exactly_on_a_bounded_pool() {
    let mut f = Fleet::new(200);
    let mut child = f.start();
    f.wait_for_log(&mut child, "replicating 200 database(s)");
    let conns: Vec<Connection> = f.dbs.iter().map(|p| conn(p)).collect();
    let mut rng = Lcg(7);
    let mut most_threads = 0;
    for round in 0..6 {
        // A random subset of about a quarter of the databases gets a few commits.
        for (i, c) in conns.iter().enumerate() {
            if !rng.next().is_multiple_of(4) {
                continue;
            }
            for k in 0..=(rng.next() % 3) {
                c.execute(
                    "INSERT INTO t(v) VALUES (?1)",
                    [format!("db{i} round{round} #{k} {}", "x".repeat(200))],
                )
                .unwrap();
            }
        }
        most_threads = most_threads.max(threads(child.id()));
        std::thread::sleep(Duration::from_millis(700));
    }
    // Idle long enough for monitors to step aside, then look again.
    std::thread::sleep(Duration::from_secs(2));
    most_threads = most_threads.max(threads(child.id()));
    assert!(
        most_threads <= WORKERS + 1 + OTHER_THREADS,
        "{most_threads} threads for 200 databases on a pool of {WORKERS}"
    );
    let status = sigterm(&mut child);
    assert!(
        status.success(),
        "memsync exited with {status}:\n{}",
        f.log()
    );
    for (i, c) in conns.iter().enumerate() {
        assert_eq!(
            f.restored(i, "final"),
            rows(c),
            "database {i} restores exactly"
        );
    }
}

#[test]
fn a_kill_with_fifty_databases_mid_write_loses_nothing_after_restart() {
    let mut f = Fleet::new(50);
    let mut child = f.start();
    f.wait_for_log(&mut child, "replicating 50 database(s)");
    let paths = f.dbs.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let conns: Vec<Connection> = paths.iter().map(|p| conn(p)).collect();
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (i, c) in conns.iter().enumerate() {
                    c.execute("INSERT INTO t(v) VALUES (?1)", [format!("db{i} #{n}")])
                        .unwrap();
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(3));
    child.kill().unwrap();
    child.wait().unwrap();
    // What the replicas hold after the kill is a prefix of each database's commits.
    for (i, p) in f.dbs.iter().enumerate().step_by(7) {
        let got = f.restored(i, "killed");
        let src = rows(&conn(p));
        assert!(
            got.len() <= src.len() && got[..] == src[..got.len()],
            "db {i}: not a prefix"
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    let mut child = f.start();
    f.wait_for_log(&mut child, "replicating 50 database(s)");
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    let status = sigterm(&mut child);
    assert!(
        status.success(),
        "memsync exited with {status}:\n{}",
        f.log()
    );
    for (i, p) in f.dbs.iter().enumerate() {
        assert_eq!(
            f.restored(i, "final"),
            rows(&conn(p)),
            "database {i} restores exactly"
        );
    }
}
