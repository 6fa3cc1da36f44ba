//! Point-in-time restore checks shared by the short and the long restore-point tests: when
//! each commit was made, and restores at a time that must be a prefix of the commit order
//! between the state one sync (plus slack) before `T` and the state at `T`.

use std::time::{Duration, SystemTime};

use super::*;

/// Sync interval of these tests.
pub const SYNC: Duration = Duration::from_secs(1);
/// Scheduling noise on top of one sync (monitor wake-up, spool write) a commit may take to be
/// in a file: the lower bound of a restore is the state one sync and this much before `T`.
pub const NOISE: Duration = Duration::from_millis(500);

/// When each commit started and finished (commit `i + 1` is memory `i + 1`).
pub struct Commits(pub Vec<(SystemTime, SystemTime)>);

impl Commits {
    /// Commits certainly made by `t` (finished at or before it).
    pub fn done_by(&self, t: SystemTime) -> usize {
        self.0.iter().take_while(|(_, end)| *end <= t).count()
    }
    /// Commits that may be in a state as of `t` (started at or before it).
    pub fn started_by(&self, t: SystemTime) -> usize {
        self.0.iter().take_while(|(start, _)| *start <= t).count()
    }
}

/// Three phases of 2 s of writes (about 75 commits a second) with 3 s pauses between them.
pub fn write_phases(app: &rusqlite::Connection) -> (Commits, Vec<SystemTime>) {
    let mut commits = Vec::new();
    // Phase starts and ends.
    let mut marks = Vec::new();
    let mut n = 0;
    for phase in 0..3 {
        if phase > 0 {
            std::thread::sleep(Duration::from_secs(3));
        }
        let start = SystemTime::now();
        marks.push(start);
        while start.elapsed().unwrap() < Duration::from_secs(2) {
            n += 1;
            let before = SystemTime::now();
            insert_memory(app, n);
            commits.push((before, SystemTime::now()));
            std::thread::sleep(Duration::from_millis(12));
        }
        marks.push(SystemTime::now());
    }
    (Commits(commits), marks)
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Restores the state as of `t` and checks it is a prefix of the commit order between the
/// state one sync before `t` and the state at `t`; `slack` widens the lower bound (coarser
/// tiers). Returns the rows restored and the command's output.
pub fn restore_at(
    s: &Scene,
    name: &str,
    t: SystemTime,
    commits: &Commits,
    slack: Duration,
) -> (usize, String) {
    let out = s.dir.path().join(name);
    let o = run(&[
        "restore",
        "-o",
        out.to_str().unwrap(),
        "-timestamp",
        &rfc3339(t),
        &s.url(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "restore at {}: {}",
        rfc3339(t),
        String::from_utf8_lossy(&o.stderr)
    );
    let got = rows(&check_sound(&out)).len();
    let low = commits.done_by(t - slack);
    let high = commits.started_by(t);
    assert!(
        (low..=high).contains(&got),
        "restore at {} has {got} rows; committed by then: {high}, {} before: {low}\n{stdout}",
        rfc3339(t),
        humantime::format_duration(slack)
    );
    (got, stdout)
}

/// The `wal -json` listing of the replica.
pub fn wal_json(s: &Scene) -> serde_json::Value {
    let o = run(&["wal", "-json", &s.url()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}
