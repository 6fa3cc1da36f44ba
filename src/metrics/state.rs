//! The replicator's state file, for `memsync status` without `addr`: a running replicator writes
//! `<meta dir>/replication-state.json` (in place, see [`write`]) with its pid and each replica's
//! position and lag whenever they change (looked at every 2 s) and at least every minute, and
//! removes it when it stops. A reader takes the state as
//! live only while that pid exists and the file is fresh, so a killed replicator reads as "not
//! running" too.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::reading::DbReading;

/// The file's name in the meta directory.
pub const FILE: &str = "replication-state.json";

/// How often a running replicator looks at each state (and rewrites the file if it changed).
pub const EVERY: Duration = Duration::from_secs(2);

/// How often a state file is rewritten while nothing in it changes.
pub const REFRESH: Duration = Duration::from_secs(60);

/// A state older than this is a replicator's that no longer runs (or hangs).
pub const STALE: Duration = Duration::from_secs(180);

/// True when `next` must be written over `prev`: something in it changed, or `prev` is
/// [`REFRESH`] old.
pub fn due(prev: &State, next: &State) -> bool {
    let same = State {
        written_ms: next.written_ms,
        ..prev.clone()
    } == *next;
    !same || next.written_ms - prev.written_ms >= REFRESH.as_millis() as i64
}

/// What the file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub pid: u32,
    /// When it was written (Unix ms).
    pub written_ms: i64,
    pub db: String,
    pub position: u64,
    pub replicas: Vec<ReplicaState>,
}

/// One replica in the state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaState {
    pub name: String,
    pub position: u64,
    pub lag_ms: i64,
    /// When it last answered (Unix ms; 0 = never).
    pub last_ok_ms: i64,
    pub errors: u64,
}

impl State {
    /// The state of `db` read at `now_ms` by process `pid`.
    pub fn of(db: &DbReading, pid: u32, now_ms: i64) -> State {
        State {
            pid,
            written_ms: now_ms,
            db: db.db.clone(),
            position: db.position,
            replicas: db
                .replicas
                .iter()
                .map(|r| ReplicaState {
                    name: r.name.clone(),
                    position: r.position,
                    lag_ms: r.lag_ms,
                    last_ok_ms: r.last_ok_ms,
                    errors: r.errors,
                })
                .collect(),
        }
    }
}

/// Path of the state file in `meta_dir`.
pub fn path(meta_dir: &Path) -> PathBuf {
    meta_dir.join(FILE)
}

/// Writes `state` into `meta_dir`, over the previous state in place (padded with spaces to its
/// length), not through a temp file: a rename frees an inode on every write, and at hundreds
/// of databases that churn made file creation a third of memsync's CPU (ext4 without a
/// journal scans recently freed inodes on every allocation). Not fsynced: it is a hint,
/// rewritten every [`EVERY`]; [`read`] tells a torn read from a state.
///
/// Only a `first` write creates the file: a later one finding it gone (its database's folder
/// being removed, `rm -rf` of a tenant) must not make it again under the remover, whose
/// `rmdir` then failed; it answers `NotFound`.
pub fn write(meta_dir: &Path, state: &State, first: bool) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(state).map_err(io::Error::other)?;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(first)
        .truncate(false)
        .open(path(meta_dir))?;
    let len = usize::try_from(f.metadata()?.len()).unwrap_or(usize::MAX);
    if bytes.len() < len {
        bytes.resize(len, b' ');
    }
    crate::platform::write_all_at(&f, &bytes, 0)
}

/// The state file in `meta_dir`, if there is one. It is rewritten in place, so a read may
/// catch a write halfway: a state counts only when two reads in a row agree (a few tries).
pub fn read(meta_dir: &Path) -> io::Result<Option<State>> {
    let once = || match std::fs::read(path(meta_dir)) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    };
    let mut prev = once()?;
    let mut tries = 0;
    loop {
        let next = once()?;
        if next == prev || tries == 5 {
            return match next {
                Some(b) => serde_json::from_slice(&b)
                    .map(Some)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
                None => Ok(None),
            };
        }
        tries += 1;
        std::thread::sleep(Duration::from_millis(2));
        prev = next;
    }
}

/// Whether a process `pid` exists (it may belong to another user: that still counts).
fn alive(pid: u32) -> bool {
    crate::platform::process_alive(pid)
}

/// What a reader makes of a state file.
#[derive(Debug, Clone, PartialEq)]
pub enum Liveness {
    /// A replicator runs and wrote this.
    Running(State),
    /// None runs: why it is thought so.
    NotRunning(String),
}

/// Judges `state` at `now_ms`, `pid_alive` saying whether its pid exists.
pub fn judge(state: Option<State>, pid_alive: bool, now_ms: i64) -> Liveness {
    let Some(s) = state else {
        return Liveness::NotRunning("no replicator state".into());
    };
    let age = now_ms - s.written_ms;
    if !pid_alive {
        Liveness::NotRunning(format!("process {} is gone", s.pid))
    } else if age > STALE.as_millis() as i64 {
        Liveness::NotRunning(format!(
            "its state was last written {}s ago by process {}",
            age / 1000,
            s.pid
        ))
    } else {
        Liveness::Running(s)
    }
}

/// Lines for `memsync status`: the replication of the database whose meta directory is
/// `meta_dir`, at `now_ms`.
pub fn describe(meta_dir: &Path, now_ms: i64) -> Vec<String> {
    let state = match read(meta_dir) {
        Ok(s) => s,
        Err(e) => {
            return vec![format!(
                "replication  unknown: {}: {e}",
                path(meta_dir).display()
            )];
        }
    };
    let alive = state.as_ref().is_some_and(|s| alive(s.pid));
    match judge(state, alive, now_ms) {
        Liveness::NotRunning(why) => vec![format!("replication  not running ({why})")],
        Liveness::Running(s) => {
            let mut out = vec![format!(
                "replication  running (pid {}), position {:016x}",
                s.pid, s.position
            )];
            for r in &s.replicas {
                let answered = match r.last_ok_ms {
                    0 => "not reached yet".to_owned(),
                    t => format!("answered {}s ago", (now_ms - t).max(0) / 1000),
                };
                out.push(format!(
                    "  replica    {}  lag {:.1}s  position {:016x}  {answered}  {} errors",
                    r.name,
                    r.lag_ms as f64 / 1000.0,
                    r.position,
                    r.errors
                ));
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(written_ms: i64) -> State {
        State {
            pid: 42,
            written_ms,
            db: "/d.db".into(),
            position: 7,
            replicas: vec![ReplicaState {
                name: "s3".into(),
                position: 5,
                lag_ms: 1_500,
                last_ok_ms: 9_000,
                errors: 1,
            }],
        }
    }

    #[test]
    fn a_file_is_rewritten_on_a_change_or_once_a_minute() {
        let prev = state(1_000);
        assert!(!due(&prev, &state(3_000)), "nothing changed");
        assert!(due(&prev, &state(1_000 + 60_000)), "a minute old");
        let mut moved = state(3_000);
        moved.replicas[0].lag_ms = 2_000;
        assert!(due(&prev, &moved), "the lag moved");
    }

    #[test]
    fn a_state_is_live_only_while_its_process_runs_and_it_is_fresh() {
        let now = 1_000_000;
        assert_eq!(
            judge(None, true, now),
            Liveness::NotRunning("no replicator state".into())
        );
        assert_eq!(
            judge(Some(state(999_000)), true, now),
            Liveness::Running(state(999_000))
        );
        assert_eq!(
            judge(Some(state(999_000)), false, now),
            Liveness::NotRunning("process 42 is gone".into())
        );
        let old = now - STALE.as_millis() as i64 - 20_000;
        assert_eq!(
            judge(Some(state(old)), true, now),
            Liveness::NotRunning(format!(
                "its state was last written {}s ago by process 42",
                (now - old) / 1000
            ))
        );
    }

    #[test]
    fn the_file_round_trips_and_reads_as_lines() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read(d.path()).unwrap(), None);
        let mut s = state(10_000);
        s.pid = std::process::id();
        write(d.path(), &s, true).unwrap();
        assert_eq!(read(d.path()).unwrap(), Some(s));
        let lines = describe(d.path(), 11_000);
        assert_eq!(
            lines,
            [
                format!(
                    "replication  running (pid {}), position 0000000000000007",
                    std::process::id()
                ),
                "  replica    s3  lag 1.5s  position 0000000000000005  answered 2s ago  1 errors"
                    .to_owned()
            ]
        );
        std::fs::write(path(d.path()), b"{").unwrap();
        assert!(describe(d.path(), 0)[0].starts_with("replication  unknown: "));
    }

    #[test]
    fn a_rewrite_keeps_the_file_and_a_shorter_state_reads_whole() {
        let d = tempfile::tempdir().unwrap();
        let mut long = state(10_000);
        long.db = "/a/much/longer/database/path/than/the/next/one.db".into();
        write(d.path(), &long, true).unwrap();
        let ino = crate::platform::file_id(&path(d.path())).unwrap();
        let short = state(12_000);
        write(d.path(), &short, false).unwrap();
        assert_eq!(read(d.path()).unwrap(), Some(short.clone()));
        assert_eq!(crate::platform::file_id(&path(d.path())).unwrap(), ino);
        // A rewrite never makes the file again once it is gone (its folder being removed).
        std::fs::remove_file(path(d.path())).unwrap();
        let err = write(d.path(), &short, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(!path(d.path()).exists());
    }
}
