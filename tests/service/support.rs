//! What the service tests share: a temporary host (home, working directory, a linked memsync),
//! a snapshot of a directory tree, and reading what a dry run shows.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::common::BIN;

pub const API_KEY: &str = "mcp-key-7f3a9c1e";
pub const S3_SECRET: &str = "s3-secret-42bd0e";

/// A home directory with a space and a `%` in its path (both need quoting in a unit), and a
/// memsync binary (a hard link to the one under test) under a path with a space.
pub struct Host {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    pub work: PathBuf,
    pub exe: PathBuf,
}

impl Host {
    pub fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home dir 100%");
        let work = dir.path().join("work");
        let bin_dir = dir.path().join("my tools");
        for d in [&home, &work, &bin_dir] {
            std::fs::create_dir_all(d).unwrap();
        }
        let exe = bin_dir.join("memsync");
        if std::fs::hard_link(BIN, &exe).is_err() {
            std::fs::copy(BIN, &exe).unwrap();
        }
        Host {
            dir,
            home,
            work,
            exe,
        }
    }

    /// Runs the linked memsync with a clean environment: PATH, HOME, the settings a user would
    /// have set (a memory server and its API key, one S3 secret, one plain setting) and `extra`.
    pub fn memsync(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut c = Command::new(&self.exe);
        c.env_clear()
            .current_dir(&self.work)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("REMOTE_MEMORY_API_KEY", API_KEY)
            .env("LITESTREAM_SECRET_ACCESS_KEY", S3_SECRET)
            .env("SYNC_INTERVAL", "60")
            .env("REMOTE_MEMORY_HOST", "memories.example")
            .args(args);
        for (k, v) in extra {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    pub fn ok(&self, args: &[&str], extra: &[(&str, &str)]) -> String {
        let o = self.memsync(args, extra);
        assert!(
            o.status.success(),
            "memsync {args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    pub fn unit_path(&self) -> PathBuf {
        self.home
            .join(".config/systemd/user/mcp-memory-sync.service")
    }

    pub fn env_path(&self) -> PathBuf {
        self.home.join(".config/mcp-memory-sync/service.env")
    }
}

/// Every file and directory under `dir`: path → (kind, size, mode, mtime).
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, (bool, u64, u32, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                todo.push(e.path());
            }
            out.insert(
                e.path(),
                (
                    m.is_dir(),
                    m.len(),
                    m.permissions().mode(),
                    m.modified().unwrap(),
                ),
            );
        }
    }
    out
}

/// The content of the file a dry run shows for `path`.
pub fn shown_file(out: &str, path: &Path) -> String {
    let head = format!("=== write {} (mode ", path.display());
    let start = out
        .find(&head)
        .unwrap_or_else(|| panic!("no {head} in:\n{out}"));
    let body = &out[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    let end = body.find("=== end\n").expect("file not closed");
    body[..end].to_string()
}

pub fn assert_no_secret(text: &str) {
    for s in [API_KEY, S3_SECRET] {
        assert!(!text.contains(s), "secret {s} printed:\n{text}");
    }
}

/// Runs `systemd-analyze verify` (Debian's systemd package, from scripts/harness.sh) on a unit
/// named like ours; returns its exit status and stderr.
pub fn verify(unit_text: &str, user: bool) -> (bool, String) {
    let d = tempfile::tempdir().unwrap();
    let unit = d.path().join("mcp-memory-sync.service");
    std::fs::write(&unit, unit_text).unwrap();
    // A user manager needs a runtime directory; no running systemd is needed.
    let rt = d.path().join("runtime");
    std::fs::create_dir(&rt).unwrap();
    std::fs::set_permissions(&rt, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut c = Command::new("systemd-analyze");
    c.arg("verify");
    if user {
        c.arg("--user").env("XDG_RUNTIME_DIR", &rt);
    }
    let o = c.arg(&unit).output().unwrap_or_else(|e| {
        panic!("systemd-analyze not runnable ({e}): scripts/harness.sh installs Debian's systemd")
    });
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Asserts a failure with one line on stderr holding every needle.
pub fn assert_one_line_error(o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected a failure: {err}");
    assert_ne!(o.status.code(), Some(101), "panicked: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "want one line: {err}");
    for n in needles {
        assert!(err.contains(n), "{err:?} should mention {n:?}");
    }
}
