//! Answers written to standard output. A reader that stops early (`memsync wal … | head`)
//! closes the pipe: a listing then ends quietly instead of panicking in `println!`, and
//! progress lines of work that must finish (restores, service installs) are dropped while the
//! work goes on.

use std::fmt::Arguments;
use std::io::{ErrorKind, Write};

/// Writes one line of a listing; a closed pipe ends the process quietly (exit 0, as the reader
/// wanted no more), another write error (a full disk under a redirect) with a one-line error.
pub fn line(args: Arguments) {
    if let Err(e) = writeln!(std::io::stdout().lock(), "{args}") {
        if e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        err(format_args!(
            "memsync: error: writing to standard output: {e}"
        ));
        std::process::exit(1);
    }
}

/// Writes text as it is (no newline added), like [`line`].
pub fn text(s: &str) {
    line(format_args!("{}", s.strip_suffix('\n').unwrap_or(s)));
}

/// Writes a progress line of work that goes on whether or not anyone reads it.
pub fn note(args: Arguments) {
    let _ = writeln!(std::io::stdout().lock(), "{args}");
}

/// Writes a line to standard error; one that cannot be written (a closed pipe) is dropped:
/// `eprintln!` panicked there, turning the command's own exit code into 101.
pub fn err(args: Arguments) {
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

/// `eprintln!` that never panics (see [`err`]).
macro_rules! errln {
    ($($t:tt)*) => { $crate::stdout::err(format_args!($($t)*)) };
}

/// `println!` for listings (see [`line`]).
macro_rules! outln {
    () => { $crate::stdout::line(format_args!("")) };
    ($($t:tt)*) => { $crate::stdout::line(format_args!($($t)*)) };
}

/// `println!` for progress (see [`note`]).
macro_rules! noteln {
    ($($t:tt)*) => { $crate::stdout::note(format_args!($($t)*)) };
}

pub(crate) use {errln, noteln, outln};
