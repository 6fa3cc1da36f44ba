//! Minimal leveled logging to stderr: one line per event, timestamped, no dependency.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

static LEVEL: AtomicU8 = AtomicU8::new(2);
static TO_STDOUT: AtomicBool = AtomicBool::new(false);
static JSON: AtomicBool = AtomicBool::new(false);

/// Where and how lines are written (the config's `logging.stderr` and `logging.type`).
pub fn set_output(stdout: bool, json: bool) {
    TO_STDOUT.store(stdout, Ordering::Relaxed);
    JSON.store(json, Ordering::Relaxed);
}

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
    let line = if JSON.load(Ordering::Relaxed) {
        let esc: String = msg
            .chars()
            .flat_map(|c| match c {
                '"' => vec!['\\', '"'],
                '\\' => vec!['\\', '\\'],
                '\n' => vec!['\\', 'n'],
                c if (c as u32) < 0x20 => format!("\\u{:04x}", c as u32).chars().collect(),
                c => vec![c],
            })
            .collect();
        format!("{{\"time\":\"{now}\",\"level\":\"{tag}\",\"msg\":\"{esc}\"}}")
    } else {
        format!("{now} {tag} {msg}")
    };
    if TO_STDOUT.load(Ordering::Relaxed) {
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    } else {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
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
