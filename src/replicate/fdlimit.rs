//! File descriptors: each database costs about [`PER_DB`] of them for as long as it is
//! replicated, so a config with hundreds of databases outgrows the usual soft limit of 1024.
//! Checked before anything opens, so the failure says why instead of naming whichever database
//! happened to be the first that SQLite could not open.

/// Descriptors one replicated database holds: two SQLite connections, each on the database,
/// its `-wal` and `-shm` (counted: 3 × 3 in a running process, one more for the connection
/// the page reader keeps), the WAL watch (inotify), plus headroom for the files opened for a
/// moment (a spool file being written, an upload's source and temp file, compaction inputs).
pub const PER_DB: u64 = 12;
/// Descriptors of the process itself: standard streams, the runtime's event loop, metrics
/// socket, log files.
pub const BASE: u64 = 32;

/// Descriptors needed for `dbs` databases.
pub fn needed(dbs: usize) -> u64 {
    BASE + PER_DB * dbs as u64
}

/// The open-file limit is too low for the databases configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "too many open files (limit {limit}, need about {} for {dbs} databases); raise it with `ulimit -n` or LimitNOFILE=",
    needed(*dbs)
)]
pub struct TooFew {
    /// The soft limit now.
    pub limit: u64,
    /// Databases configured.
    pub dbs: usize,
}

/// The soft and hard `RLIMIT_NOFILE` (`u64::MAX` for unlimited).
#[cfg(unix)]
fn limits() -> (u64, u64) {
    let r = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    (r.current.unwrap_or(u64::MAX), r.maximum.unwrap_or(u64::MAX))
}

/// Windows has no per-process descriptor limit to raise (handles run to millions).
#[cfg(not(unix))]
fn limits() -> (u64, u64) {
    (u64::MAX, u64::MAX)
}

/// Makes room for `dbs` databases: raises the soft limit (up to the hard limit) when it is
/// short; an error if even the hard limit is too low.
pub fn ensure(dbs: usize) -> Result<(), TooFew> {
    let (soft, hard) = limits();
    let need = needed(dbs);
    if soft >= need {
        return Ok(());
    }
    #[cfg(unix)]
    let ok = rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(need.min(hard)),
            maximum: (hard != u64::MAX).then_some(hard),
        },
    )
    .is_ok();
    #[cfg(not(unix))]
    let ok = false;
    let now = if ok { need.min(hard) } else { soft };
    if now >= need {
        tracing::info!("raised the open-file limit from {soft} to {now} for {dbs} databases");
        return Ok(());
    }
    Err(TooFew { limit: now, dbs })
}

/// True if `err` (or anything it wraps) is EMFILE/ENFILE, or if the process is at its
/// descriptor limit: SQLite reports "unable to open database file" without the errno.
pub fn exhausted(err: &(dyn std::error::Error + 'static)) -> bool {
    if crate::fsutil::has_errno(err, &[libc::EMFILE, libc::ENFILE]) {
        return true;
    }
    let (soft, _) = limits();
    match std::fs::read_dir("/proc/self/fd") {
        Ok(open) => open.count() as u64 + 4 >= soft,
        // Not even the listing could be opened: that is the answer.
        Err(e) => e.raw_os_error() == Some(libc::EMFILE),
    }
}

/// The limit currently in force, for the message.
pub fn current() -> u64 {
    limits().0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_limit_and_the_need() {
        let m = TooFew {
            limit: 1024,
            dbs: 200,
        }
        .to_string();
        assert!(
            m.starts_with("too many open files (limit 1024, need about 2432 for 200 databases)"),
            "{m}"
        );
    }

    #[test]
    fn emfile_is_recognised_through_wrappers() {
        let inner = std::io::Error::from_raw_os_error(libc::EMFILE);
        let wrapped = std::io::Error::other(inner);
        assert!(exhausted(&wrapped));
    }
}
