//! Progress of long memory work ("push 120/500") on a terminal: one stderr line rewritten in
//! place, at most ten times a second, cleared when the work ends or before any other line is
//! written to stderr. Off a terminal nothing is drawn: the command's summary line says it all.
//!
//! Process-wide, like `crate::log`: push and pull report through it without carrying a handle.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct State {
    /// Whether stderr is a terminal (decided once).
    tty: bool,
    /// Whether a progress line is on screen now.
    shown: bool,
    last: Option<Instant>,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn with<T>(f: impl FnOnce(&mut State) -> T) -> T {
    let mut g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let s = g.get_or_insert_with(|| State {
        tty: std::io::stderr().is_terminal(),
        shown: false,
        last: None,
    });
    f(s)
}

/// Shows "`what` done/total" (the last step is always drawn).
pub fn show(what: &str, done: usize, total: usize) {
    with(|s| {
        if !s.tty {
            return;
        }
        let now = Instant::now();
        if done < total && s.last.is_some_and(|t| now - t < Duration::from_millis(100)) {
            return;
        }
        s.last = Some(now);
        s.shown = true;
        let mut e = std::io::stderr().lock();
        let _ = write!(e, "\r\x1b[2K{what} {done}/{}", total.max(done));
        let _ = e.flush();
    });
}

/// Removes the progress line, if one is shown (before other output, and at the end).
pub fn clear() {
    with(|s| {
        if s.shown {
            s.shown = false;
            s.last = None;
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[2K");
            let _ = e.flush();
        }
    });
}

/// No progress line for the rest of the process (`SYNC_VERBOSE`/`SYNC_DEBUG` echo every step
/// on stderr already; a line rewritten in between would garble them).
pub fn disable() {
    with(|s| s.tty = false);
}
