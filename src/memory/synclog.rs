//! The sync log (`SYNC_LOG_PATH`): one line per operation, appended, so `grep "sync completed"`
//! works as the guide shows and `memsync metrics` can read it back.
//!
//! Line format: `<RFC 3339 UTC> <operation> <message>`. `metrics` counts what was done from
//! the lines each step writes as it goes, so a round cut short (a push stopped by a signal, a
//! sync whose push found the server gone after its pull) counts what it did:
//! - each pushed row: `push #ID HASH stored|updated|already on server|conflict (…)|failed: …`;
//! - each applied pull: `pull from SOURCE: added N, changed N, removed N, …, conflicts N`;
//! - summaries, counted as runs (and sync durations): `sync completed …`, `push completed …`,
//!   `push stopped …`, `pull completed …`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// An append-only log file. Logging never fails a command: a log that cannot be written is
/// reported once on stderr.
pub struct SyncLog {
    path: PathBuf,
    /// SYNC_VERBOSE / SYNC_DEBUG: lines are echoed to stderr too.
    echo: bool,
    warned: std::cell::Cell<bool>,
}

impl SyncLog {
    pub fn new(path: &Path, echo: bool) -> SyncLog {
        SyncLog {
            path: path.to_owned(),
            echo,
            warned: std::cell::Cell::new(false),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line (newlines in `message` are escaped so a line stays a line).
    pub fn line(&self, op: &str, message: &str) {
        let ts = humantime::format_rfc3339_millis(SystemTime::now());
        let msg = message.replace('\n', "\\n");
        let text = format!("{ts} {op} {msg}\n");
        if self.echo {
            super::progress::clear();
            if crate::log::is_json() {
                let s = |x: &str| serde_json::Value::from(x).to_string();
                crate::stdout::errln!(
                    "{{\"time\":{},\"level\":\"INFO\",\"msg\":{},\"op\":{}}}",
                    s(&ts.to_string()),
                    s(&msg),
                    s(op)
                );
            } else {
                eprint!("{text}");
            }
        }
        let res = (|| {
            if let Some(d) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(d)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            f.write_all(text.as_bytes())
        })();
        if let Err(e) = res
            && !self.warned.replace(true)
        {
            crate::stdout::errln!(
                "memsync: warning: cannot write sync log {}: {e}",
                self.path.display()
            );
        }
    }
}

/// Figures read back from a sync log.
#[derive(Debug, Default, PartialEq)]
pub struct LogMetrics {
    pub lines: usize,
    pub syncs: usize,
    pub last_sync: Option<String>,
    pub durations: Vec<f64>,
    /// Standalone `push` runs (finished or stopped part-way) and the last one's time.
    pub pushes: usize,
    pub last_push: Option<String>,
    /// Standalone `pull` runs and the last one's time.
    pub pulls: usize,
    pub last_pull: Option<String>,
    pub added: u64,
    pub changed: u64,
    pub removed: u64,
    pub pushed: u64,
    pub conflicts: u64,
    pub failed: u64,
    pub errors: usize,
    pub stores: usize,
    pub staged: usize,
}

fn field(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim_end_matches('s'))
        .and_then(|v| v.parse().ok())
}

/// Reads a sync log's figures.
pub fn metrics(text: &str) -> LogMetrics {
    let mut m = LogMetrics::default();
    for line in text.lines() {
        m.lines += 1;
        let mut parts = line.splitn(3, ' ');
        let (ts, op, rest) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        if op == "sync" && rest.starts_with("sync completed") {
            m.syncs += 1;
            m.last_sync = Some(ts.to_owned());
            m.durations.extend(field(rest, "duration"));
        } else if op == "push"
            && (rest.starts_with("push completed") || rest.starts_with("push stopped"))
        {
            m.pushes += 1;
            m.last_push = Some(ts.to_owned());
        } else if op == "pull" && rest.starts_with("pull completed") {
            m.pulls += 1;
            m.last_pull = Some(ts.to_owned());
        } else if op == "push" && rest.starts_with('#') {
            // `#ID HASH outcome`.
            let outcome = rest.splitn(3, ' ').nth(2).unwrap_or("");
            if outcome.starts_with("stored")
                || outcome.starts_with("updated")
                || outcome.starts_with("already on server")
            {
                m.pushed += 1;
            } else if outcome.starts_with("conflict") {
                m.conflicts += 1;
            } else if outcome.starts_with("failed") {
                m.failed += 1;
            }
        } else if op == "pull"
            && !rest.starts_with("dry run")
            && let Some(i) = rest.find(": added ")
        {
            let counts = &rest[i + 2..];
            let n = |key: &str| counted(counts, key);
            m.added += n("added");
            m.changed += n("changed");
            m.removed += n("removed");
            m.conflicts += n("conflicts");
        }
        // A store staged because the server could not be reached did its job: not an error.
        let staged_store = op == "store" && rest.starts_with("staged");
        if op == "error" || (rest.contains(" error:") && !staged_store) {
            m.errors += 1;
        }
        if op == "store" {
            m.stores += 1;
            if staged_store {
                m.staged += 1;
            }
        }
    }
    m
}

/// `N` in `… key N, …`, also when a note follows the number (`conflicts 3 (3 open: …)`).
fn counted(text: &str, key: &str) -> u64 {
    text.split(", ")
        .find_map(|part| {
            let rest = part.strip_prefix(key)?.trim_start();
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            rest[..digits].parse().ok()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_followed_by_a_note_is_read() {
        let line =
            "from http://x (REST API): added 0, conflicts 3 (3 open: memsync resolve-conflicts)";
        assert_eq!(counted(line, "conflicts"), 3);
        assert_eq!(counted(line, "added"), 0);
        assert_eq!(counted("changed x", "changed"), 0);
    }

    #[test]
    fn metrics_read_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let log = SyncLog::new(&dir.path().join("a/sync.log"), false);
        log.line("store", "stored 1234 on http://x");
        log.line("store", "staged #3: server unreachable");
        log.line("pull", "from http://x (REST API): added 2, changed 0, removed 0, unchanged 0, local edits staged 0, staged rows already on server 0, conflicts 1");
        log.line("push", "#3 1234 stored");
        log.line("sync", "sync completed added=2 changed=0 removed=0 conflicts=1 pushed=1 failed=0 duration=1.50s");
        log.line("error", "pull: boom\nsecond line");
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert_eq!(text.lines().count(), 6);
        let m = metrics(&text);
        assert_eq!(
            (m.syncs, m.added, m.pushed, m.conflicts, m.errors),
            (1, 2, 1, 1, 1)
        );
        assert_eq!((m.stores, m.staged), (2, 1));
        assert_eq!(m.durations, vec![1.5]);
    }

    #[test]
    fn what_each_step_did_is_counted_even_when_its_round_was_cut() {
        let text = "\
2026-12-02T01:00:00.000Z push #1 1234 stored
2026-12-02T01:00:00.100Z push #2 5678 updated
2026-12-02T01:00:00.200Z push #3 9abc already on server
2026-12-02T01:00:00.300Z push #4 def0 conflict (diverged), policy merge
2026-12-02T01:00:00.400Z push #5 1111 failed: HTTP 400: bad
2026-12-02T01:00:01.000Z push push completed pushed=3 stored=1 duplicates=1 updated=1 failed=1 conflicts=1 duration=0.40s
2026-12-02T01:00:02.000Z push #6 2222 stored
2026-12-02T01:00:02.100Z push #7 stopped: server gone
2026-12-02T01:00:02.200Z push push stopped pushed=1 left_pending=6 duration=0.10s
2026-12-02T01:00:03.000Z pull from http://x (REST API): added 9, changed 2, removed 1, unchanged 4, local edits staged 0, staged rows already on server 0, conflicts 1
2026-12-02T01:00:03.500Z pull dry run, nothing changed; from http://x (REST API): added 50, changed 0, removed 0, unchanged 4, local edits staged 0, staged rows already on server 0, conflicts 0
2026-12-02T01:00:04.000Z pull pull completed added=9 changed=2 removed=1 conflicts=1 duration=0.20s
2026-12-02T01:00:05.000Z sync sync completed staged=0 added=0 changed=0 removed=0 conflicts=0 pushed=0 failed=0 duration=1.00s
2026-12-02T01:00:06.000Z pull from file:///r (replica): added 5, changed 0, removed 0, unchanged 13, local edits staged 0, staged rows already on server 0, conflicts 0
2026-12-02T01:00:07.000Z store staged #8 3333: GET http://x/api/health: cannot connect: error: refused
";
        let m = metrics(text);
        assert_eq!((m.pushes, m.pulls, m.syncs), (2, 1, 1));
        assert_eq!(m.last_push.as_deref(), Some("2026-12-02T01:00:02.200Z"));
        assert_eq!(m.last_pull.as_deref(), Some("2026-12-02T01:00:04.000Z"));
        // Row by row, the cut push included; a sync whose round never completed still counts
        // its pull.
        assert_eq!((m.pushed, m.failed, m.conflicts), (4, 1, 1 + 1));
        assert_eq!((m.added, m.changed, m.removed), (9 + 5, 2, 1));
        assert_eq!(m.durations, vec![1.0], "sync durations only");
        assert_eq!((m.stores, m.staged, m.errors), (1, 1, 0));
    }
}
