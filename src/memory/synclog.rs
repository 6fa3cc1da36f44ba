//! The sync log (`SYNC_LOG_PATH`): one line per operation, appended, so `grep "sync completed"`
//! works as the guide shows and `memsync metrics` can read it back.
//!
//! Line format: `<RFC 3339 UTC> <operation> <message>`. Summary lines, which `metrics` adds up:
//! - a finished sync: `sync completed added=… changed=… removed=… conflicts=… pushed=… failed=… duration=…s`;
//! - a standalone push: `push completed pushed=… failed=… conflicts=… duration=…s`, or
//!   `push stopped pushed=… left_pending=… duration=…s` when the server went away part-way;
//! - a standalone pull: `pull completed added=… changed=… removed=… conflicts=… duration=…s`.
//!
//! A sync's own pull and push write no such line: they are counted once, in the sync's.

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
                eprintln!(
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
            eprintln!(
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
        let n = |key| field(rest, key).unwrap_or(0.0) as u64;
        let summary = if op == "sync" && rest.starts_with("sync completed") {
            m.syncs += 1;
            m.last_sync = Some(ts.to_owned());
            m.durations.extend(field(rest, "duration"));
            true
        } else if op == "push"
            && (rest.starts_with("push completed") || rest.starts_with("push stopped"))
        {
            m.pushes += 1;
            m.last_push = Some(ts.to_owned());
            true
        } else if op == "pull" && rest.starts_with("pull completed") {
            m.pulls += 1;
            m.last_pull = Some(ts.to_owned());
            true
        } else {
            false
        };
        if summary {
            m.added += n("added");
            m.changed += n("changed");
            m.removed += n("removed");
            m.pushed += n("pushed");
            m.conflicts += n("conflicts");
            m.failed += n("failed");
        }
        if op == "error" || rest.contains(" error:") {
            m.errors += 1;
        }
        if op == "store" {
            m.stores += 1;
            if rest.contains("staged") {
                m.staged += 1;
            }
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_read_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let log = SyncLog::new(&dir.path().join("a/sync.log"), false);
        log.line("store", "stored 1234 on http://x");
        log.line("store", "staged #3: server unreachable");
        log.line("sync", "sync completed added=2 changed=0 removed=0 conflicts=1 pushed=3 failed=0 duration=1.50s");
        log.line("error", "pull: boom\nsecond line");
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert_eq!(text.lines().count(), 4);
        let m = metrics(&text);
        assert_eq!(
            (m.syncs, m.added, m.pushed, m.conflicts, m.errors),
            (1, 2, 3, 1, 1)
        );
        assert_eq!((m.stores, m.staged), (2, 1));
        assert_eq!(m.durations, vec![1.5]);
    }

    #[test]
    fn standalone_push_and_pull_lines_are_counted() {
        let text = "\
2026-12-02T01:00:00.000Z push #1 1234 stored
2026-12-02T01:00:01.000Z push push completed pushed=3 stored=2 duplicates=1 updated=0 failed=1 conflicts=2 duration=0.40s
2026-12-02T01:00:02.000Z push push stopped pushed=4 left_pending=6 duration=0.10s
2026-12-02T01:00:03.000Z pull pull from http://x (REST API): added 9, changed 9
2026-12-02T01:00:04.000Z pull pull completed added=5 changed=2 removed=1 conflicts=1 duration=0.20s
2026-12-02T01:00:05.000Z sync sync completed staged=0 added=1 changed=0 removed=0 conflicts=0 pushed=1 failed=0 duration=1.00s
";
        let m = metrics(text);
        assert_eq!((m.pushes, m.pulls, m.syncs), (2, 1, 1));
        assert_eq!(m.last_push.as_deref(), Some("2026-12-02T01:00:02.000Z"));
        assert_eq!(m.last_pull.as_deref(), Some("2026-12-02T01:00:04.000Z"));
        assert_eq!((m.pushed, m.failed, m.conflicts), (3 + 4 + 1, 1, 2 + 1));
        assert_eq!((m.added, m.changed, m.removed), (5 + 1, 2, 1));
        assert_eq!(m.durations, vec![1.0], "sync durations only");
    }
}
