//! What differs between Unix and Windows, in one place: positioned reads and writes, a file's
//! identity, whether a process lives, the host name, signals to a child, the free space of a
//! file system. Everything else in memsync is written once; each function here has one
//! implementation per platform with the same meaning.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

/// Why memsync stops, whatever the platform calls it: on Unix the signal, on Windows a console
/// event or the service manager's Stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM; on Windows the service manager's Stop or a console close or shutdown.
    Term,
    /// SIGINT; on Windows Ctrl+C.
    Int,
    /// SIGHUP (Unix only).
    #[cfg_attr(not(unix), allow(dead_code))]
    Hup,
}

impl Stop {
    /// Its name in logs.
    pub fn name(self) -> &'static str {
        match self {
            Stop::Term => "SIGTERM",
            Stop::Int => "SIGINT",
            Stop::Hup => "SIGHUP",
        }
    }
}

/// The variables naming the user's home directory, in the order they are asked: `HOME`, and on
/// Windows then `USERPROFILE` (a service running as LocalSystem has its profile there).
#[cfg(unix)]
pub const HOME_VARS: &[&str] = &["HOME"];
#[cfg(not(unix))]
pub const HOME_VARS: &[&str] = &["HOME", "USERPROFILE"];

/// The home directory through `lookup` (see [`HOME_VARS`]); empty values do not count.
pub fn home_with(lookup: &mut dyn FnMut(&str) -> Option<String>) -> Option<String> {
    HOME_VARS
        .iter()
        .find_map(|v| lookup(v).filter(|h| !h.is_empty()))
}

/// The home directory from the process's environment.
pub fn home() -> Option<String> {
    home_with(&mut |v| std::env::var(v).ok())
}

/// True if `e` says the disk or the quota is full (`fsutil::is_disk_full` looks through wrappers).
pub fn is_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}
