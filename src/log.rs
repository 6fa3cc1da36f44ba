//! Minimal leveled logging to stderr: one line per event, timestamped, no dependency.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

static LEVEL: AtomicU8 = AtomicU8::new(2);

/// Verbosity: 0 error, 1 warn, 2 info, 3 debug.
pub fn set_level(level: u8) {
    LEVEL.store(level, Ordering::Relaxed);
}

/// Parses `error|warn|info|debug|trace`.
pub fn parse_level(s: &str) -> Option<u8> {
    match s.to_ascii_lowercase().as_str() {
        "error" => Some(0),
        "warn" | "warning" => Some(1),
        "info" => Some(2),
        "debug" | "trace" => Some(3),
        _ => None,
    }
}

fn emit(level: u8, tag: &str, msg: &str) {
    if level > LEVEL.load(Ordering::Relaxed) {
        return;
    }
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now());
    let _ = writeln!(std::io::stderr().lock(), "{now} {tag} {msg}");
}

/// Logs an error.
pub fn error(msg: &str) {
    emit(0, "ERROR", msg);
}

/// Logs a warning.
pub fn warn(msg: &str) {
    emit(1, "WARN", msg);
}

/// Logs progress.
pub fn info(msg: &str) {
    emit(2, "INFO", msg);
}

/// Logs details.
pub fn debug(msg: &str) {
    emit(3, "DEBUG", msg);
}
