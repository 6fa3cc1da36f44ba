//! Refusals: a failing command's one line on stderr, and a `replicate` bounded in time.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use super::BIN;

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a failure with exactly one line on stderr containing every `needle`.
pub fn assert_fails(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, got success: {err}");
    assert_ne!(o.status.code(), Some(101), "panicked: {err}");
    assert!(!err.contains("panicked"), "panicked: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "want one line, got: {err}");
    for n in needles {
        assert!(err.contains(n), "{err:?} should mention {n:?}");
    }
}

pub fn replicate_with(dir: &Path, yaml: &str) -> Output {
    let cfg = dir.join("litestream.yml");
    std::fs::write(&cfg, yaml).unwrap();
    // A valid config would run forever; bound it so a wrongly accepted one fails the test.
    let child = std::process::Command::new(BIN)
        .args(["replicate", "-config", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(10));
        // SAFETY: kill(2) takes two integers and reads or writes no memory of this process.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let out = child.wait_with_output().unwrap();
    drop(killer);
    out
}
