//! The scale phase's databases and replicas: N small WAL databases, a config listing each with
//! its own file replica, and the checks on the replica directories (first snapshot there yet?).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::bench::proc::Running;

/// Rows each database starts with.
const ROWS: usize = 3;

/// File name stem of database `i` (and of its replica directory).
pub fn name(i: usize) -> String {
    format!("db{i:04}")
}

/// Creates `dir/dbNNNN.sqlite` for `0..n`: table `t(id, v, ts)`, [`ROWS`] rows, WAL mode.
pub fn make(dir: &Path, n: usize) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    (0..n)
        .map(|i| {
            let p = dir.join(format!("{}.sqlite", name(i)));
            let c = Connection::open(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            // Fresh throwaway databases: no fsync needed to make them.
            c.execute_batch(&format!(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;
                 CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, ts REAL);
                 BEGIN; {} COMMIT;",
                "INSERT INTO t(v, ts) VALUES ('initial row', julianday('now'));".repeat(ROWS)
            ))
            .map_err(|e| format!("{}: {e}", p.display()))?;
            Ok(p)
        })
        .collect()
}

/// A YAML double-quoted scalar (paths may hold `: ` or `#`).
fn quoted(p: &Path) -> String {
    let s = p.display().to_string();
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The config both tools read: an explicit `dbs:` list, database `i` replicated to file replica
/// `replicas[i]`.
pub fn config(dbs: &[PathBuf], replicas: &[PathBuf], sync: &Option<String>) -> String {
    let mut s = String::from("dbs:\n");
    for (db, rep) in dbs.iter().zip(replicas) {
        let _ = write!(
            s,
            "  - path: {}\n    replica:\n      type: file\n      path: {}\n",
            quoted(db),
            quoted(rep)
        );
        if let Some(i) = sync {
            let _ = writeln!(s, "      sync-interval: {i}");
        }
    }
    s
}

/// A file that holds a database's full state: memsync's `*.snap`, Litestream 0.5's `*.ltx`
/// (its first level-0 file starts at transaction 1, the whole database). Temporary files of an
/// upload in progress end otherwise (`.tmp`) and do not count.
pub fn is_snapshot_file(name: &str) -> bool {
    !name.starts_with('.') && (name.ends_with(".snap") || name.ends_with(".ltx"))
}

/// True if a snapshot file is anywhere under `dir`.
pub fn holds_snapshot(dir: &Path) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return false;
    };
    rd.flatten().any(|e| match e.file_type() {
        Ok(t) if t.is_dir() => holds_snapshot(&e.path()),
        Ok(t) if t.is_file() => e.file_name().to_str().is_some_and(is_snapshot_file),
        _ => false,
    })
}

/// Waits until every replica directory holds a snapshot; seconds since `t0`. An error if the
/// replicator exits first or `limit` passes (saying how many were ready).
pub fn wait_snapshots(
    replicas: &[PathBuf],
    t0: Instant,
    limit: Duration,
    run: &mut Running,
) -> Result<f64, String> {
    let mut waiting: Vec<&PathBuf> = replicas.iter().collect();
    loop {
        waiting.retain(|d| !holds_snapshot(d));
        if waiting.is_empty() {
            return Ok(t0.elapsed().as_secs_f64());
        }
        let ready = replicas.len() - waiting.len();
        if !run.alive() {
            return Err(format!(
                "exited during startup ({ready} of {} replicas had a snapshot)",
                replicas.len()
            ));
        }
        if t0.elapsed() > limit {
            return Err(format!(
                "startup: only {ready} of {} replicas had a snapshot after {} s",
                replicas.len(),
                limit.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Which of `n` databases to restore: the first, the last and `k` spread evenly between.
pub fn sample(n: usize, k: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let mut v: Vec<usize> = (0..k).map(|j| j * n / k.max(1)).collect();
    v.push(0);
    v.push(n - 1);
    v.sort_unstable();
    v.dedup();
    v
}

/// The newest row's id of a database (None if it cannot be read).
pub fn last_id(db: &Path) -> Option<i64> {
    let c = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
    c.query_row("SELECT coalesce(max(id), 0) FROM t", [], |r| r.get(0))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_files_of_both_tools_count_and_temporaries_do_not() {
        assert!(is_snapshot_file("0000000000000001-000001a238f42655.snap"));
        assert!(is_snapshot_file("0000000000000001-0000000000000001.ltx"));
        assert!(!is_snapshot_file(
            "0000000000000001-0000000000000001.ltx.tmp"
        ));
        assert!(!is_snapshot_file(".0000000000000001.snap"));
        assert!(!is_snapshot_file("lineage"));
    }

    #[test]
    fn the_sample_holds_first_last_and_spread_without_repeats() {
        assert_eq!(sample(100, 5), vec![0, 20, 40, 60, 80, 99]);
        assert_eq!(sample(3, 5), vec![0, 1, 2]);
        assert_eq!(sample(1, 5), vec![0]);
        assert_eq!(sample(0, 5), Vec::<usize>::new());
        assert_eq!(sample(10, 0), vec![0, 9]);
    }

    #[test]
    fn the_config_lists_every_database_with_its_replica() {
        let dbs = [
            PathBuf::from("/w/dbs/db0000.sqlite"),
            PathBuf::from("/w/a \"b\"/db0001.sqlite"),
        ];
        let reps = [PathBuf::from("/w/r/db0000"), PathBuf::from("/w/r/db0001")];
        let c = config(&dbs, &reps, &Some("1s".into()));
        assert_eq!(
            c,
            "dbs:\n  - path: \"/w/dbs/db0000.sqlite\"\n    replica:\n      type: file\n      path: \"/w/r/db0000\"\n      sync-interval: 1s\n  - path: \"/w/a \\\"b\\\"/db0001.sqlite\"\n    replica:\n      type: file\n      path: \"/w/r/db0001\"\n      sync-interval: 1s\n"
        );
    }
}
