//! A watched directory (`dir` + `watch: true`) replicated by a real `memsync replicate`, for
//! the directory tests: its config, its databases and restores from its replica.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{BIN, Replicator, run};
use rusqlite::Connection;

pub fn conn(p: &Path) -> Connection {
    let c = Connection::open(p).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c.pragma_update(None, "journal_mode", "wal").unwrap();
    c
}

pub fn create(p: &Path, rows: usize) -> Connection {
    let c = conn(p);
    c.execute_batch("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        .unwrap();
    for i in 0..rows {
        c.execute(
            "INSERT INTO t(v) VALUES (?1)",
            [format!("{} {i}", p.display())],
        )
        .unwrap();
    }
    c
}

pub fn rows(c: &Connection) -> Vec<(i64, String)> {
    let mut s = c.prepare("SELECT id, v FROM t ORDER BY id").unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

pub struct Scene {
    pub tmp: tempfile::TempDir,
    pub data: PathBuf,
    pub backup: PathBuf,
    pub config: PathBuf,
    /// The `addr` endpoint's port.
    pub port: u16,
}

impl Scene {
    pub fn new() -> Scene {
        Scene::with_interval("200ms")
    }

    pub fn with_interval(sync_interval: &str) -> Scene {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(data.join("sub")).unwrap();
        let backup = tmp.path().join("backup");
        let config = tmp.path().join("c.yml");
        let port = super::mms::free_port();
        std::fs::write(
            &config,
            format!(
                "addr: 127.0.0.1:{port}\ndbs:\n  - dir: {}\n    pattern: \"*.db\"\n    recursive: true\n    watch: true\n    replica:\n      path: {}\n      sync-interval: {sync_interval}\n",
                data.display(),
                backup.display()
            ),
        )
        .unwrap();
        Scene {
            tmp,
            data,
            backup,
            config,
            port,
        }
    }

    /// `memsync replicate` on the scene's config, logging to `replicate.log`.
    pub fn replicate(&self) -> Replicator {
        let mut c = std::process::Command::new(BIN);
        c.args(["replicate", "-config"]).arg(&self.config);
        Replicator::spawn(c, self.tmp.path().join("replicate.log"))
    }

    /// Restores `rel` from the directory replica; `None` while it holds nothing for it.
    pub fn restore(&self, rel: &str, tag: &str) -> Option<Vec<(i64, String)>> {
        let out = self.tmp.path().join(format!("r-{tag}.db"));
        let _ = std::fs::remove_file(&out);
        let url = format!("file://{}", self.backup.display());
        let o = run(&["restore", "-o", out.to_str().unwrap(), "-db", rel, &url]);
        if !o.status.success() {
            return None;
        }
        let r = rows(&Connection::open(&out).unwrap());
        std::fs::remove_file(&out).unwrap();
        Some(r)
    }

    /// `memsync replicate` on the empty directory, then a database `rel` created in it with
    /// three rows, once its replica restores them.
    pub fn replicating_new(&self, rel: &str) -> (Replicator, Connection) {
        let mut r = self.replicate();
        r.wait_for_log("replicating 0 database(s)");
        let d = create(&self.data.join(rel), 3);
        r.wait_for_log(&format!("{rel}: new database, replicating"));
        self.wait_for(rel, &rows(&d), &r);
        (r, d)
    }

    /// Waits until the replica of `rel` restores to `want`.
    pub fn wait_for(&self, rel: &str, want: &[(i64, String)], r: &Replicator) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.restore(rel, "wait");
            if got.as_deref() == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{rel} never restored to its {} rows (last: {:?} rows):\n{}",
                want.len(),
                got.map(|g| g.len()),
                r.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
