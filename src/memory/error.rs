//! A memory-sync failure, by what the caller can do about it. Each layer keeps its own error
//! (settings, server, staging, local database, lock) as the source; [`MemoryError::kind`] says
//! what it means, which is what the command line picks its exit code from.

use std::path::PathBuf;

use super::client::RemoteError;
use super::kind::ErrorKind;
use super::localdb::LocalDbError;
use super::lock::LockError;
use super::settings::SettingsError;
use super::staging::StagingError;

/// A memory-sync failure; each renders as one line saying what and where.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error(transparent)]
    Staging(#[from] StagingError),
    #[error(transparent)]
    Local(#[from] LocalDbError),
    /// Another memsync holds the staging database (or its lock file failed).
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The server's replica could not be opened or restored.
    #[error("replica {url}: {source}")]
    Replica {
        url: String,
        #[source]
        source: Box<crate::restore::RestoreError>,
    },
    /// The replica answered but holds no backup to restore.
    #[error("replica {url}: the replica holds no backup")]
    NoBackup { url: String },
    /// A file, standard input or the system failed; `what` names it.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A JSON document (a copy, an export, the settings file) could not be encoded.
    #[error("{0}")]
    Encode(#[from] serde_json::Error),
    /// A copy written before removing anything did not read back as written.
    #[error("{}: {reason}", path.display())]
    Unverified { path: PathBuf, reason: String },
    /// A file memsync needs to create could not be given a name.
    #[error("{}: {reason}", path.display())]
    NoName { path: PathBuf, reason: String },
    /// Settings, flags or input that cannot be used as given.
    #[error("{0}")]
    Invalid(String),
    /// A destructive command without `--yes` and without a terminal to ask on.
    #[error("{0}")]
    Unconfirmed(String),
    /// No staging database at `path`.
    #[error("no staging database at {}: nothing is staged", path.display())]
    NoStaging { path: PathBuf },
    /// No staged row with this id.
    #[error("no staged row #{id} (memsync staged lists them)")]
    NoSuchRow { id: i64 },
    /// A staged row disappeared while it was being handled.
    #[error("staged row #{id} vanished")]
    RowVanished { id: i64 },
    /// A row or conflict that is not in the state the command needs (what and why in the text).
    #[error("{0}")]
    Conflict(String),
    /// A conflict id that names no conflict.
    #[error("no conflict #{id} (memsync resolve-conflicts lists the open ones)")]
    NoSuchConflict { id: i64 },
    /// A check found damage (the problems, one after the other).
    #[error("{0}")]
    Damaged(String),
    /// The server refused a stored memory for a reason a retry will not fix; it stays staged.
    #[error("the server refused the memory ({reason}); kept in staging as #{id} (failed)")]
    StoreRefused { id: i64, reason: String },
    /// The server could not take a memory; it is kept in staging.
    #[error("{cause}; the memory is kept in staging as #{id}")]
    StagedOnly {
        id: i64,
        #[source]
        cause: RemoteError,
    },
    /// Push stopped part-way because the server became unusable; the rest stays pending.
    #[error("push stopped after {pushed} of the staged memories: {cause}; {rest}")]
    Stopped {
        pushed: usize,
        /// Rows left pending, when they could be counted.
        left: Option<usize>,
        /// What is left and what to do (the count, or why none can be given).
        rest: String,
        #[source]
        cause: Box<MemoryError>,
    },
}

impl MemoryError {
    /// An I/O failure on the file at `path`.
    pub fn file(path: &std::path::Path, source: std::io::Error) -> MemoryError {
        MemoryError::Io {
            what: path.display().to_string(),
            source,
        }
    }

    /// What the failure means, for callers that branch on it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            MemoryError::Settings(_) => ErrorKind::Invalid,
            MemoryError::Remote(e) | MemoryError::StagedOnly { cause: e, .. } => e.kind(),
            MemoryError::Staging(e) => e.kind(),
            MemoryError::Local(e) => e.kind(),
            MemoryError::Lock(e) => e.kind(),
            MemoryError::Replica { source, .. } => match &**source {
                crate::restore::RestoreError::Replica(e) if e.is_transient() => {
                    ErrorKind::Unreachable
                }
                _ => ErrorKind::Io,
            },
            MemoryError::NoBackup { .. } => ErrorKind::NotFound,
            MemoryError::Io { .. } | MemoryError::NoName { .. } => ErrorKind::Io,
            MemoryError::Encode(_) => ErrorKind::Invalid,
            MemoryError::Unverified { .. } | MemoryError::Damaged(_) => ErrorKind::Corrupt,
            MemoryError::Invalid(_) | MemoryError::Unconfirmed(_) => ErrorKind::Invalid,
            MemoryError::NoStaging { .. }
            | MemoryError::NoSuchRow { .. }
            | MemoryError::RowVanished { .. }
            | MemoryError::NoSuchConflict { .. } => ErrorKind::NotFound,
            MemoryError::Conflict(_) => ErrorKind::Conflict,
            MemoryError::StoreRefused { .. } => ErrorKind::Refused,
            MemoryError::Stopped { cause, .. } => cause.kind(),
        }
    }

    /// The exit code's meaning (see [`super::outcome`]): 6 when another run holds the staging
    /// database, 5 when the server could not be reached (run again later), else 1.
    pub fn outcome(&self) -> super::outcome::Outcome {
        use super::outcome::Outcome;
        match (self, self.kind()) {
            // A push stopped by anything but an unreachable server needs a person.
            (MemoryError::Stopped { cause, .. }, _) => match cause.kind() {
                ErrorKind::Unreachable => Outcome::Stopped,
                _ => Outcome::Error,
            },
            (
                MemoryError::Remote(_)
                | MemoryError::Replica { .. }
                | MemoryError::StagedOnly { .. },
                ErrorKind::Unreachable,
            ) => Outcome::Stopped,
            (MemoryError::Lock(_), ErrorKind::Locked) => Outcome::Locked,
            _ => Outcome::Error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::outcome::Outcome;

    fn unreachable() -> RemoteError {
        RemoteError::Unreachable {
            url: "GET http://x/api/health".into(),
            reason: "refused".into(),
        }
    }

    fn unauthorized() -> RemoteError {
        RemoteError::Unauthorized {
            url: "GET http://x/api/memories".into(),
            status: 401,
        }
    }

    fn stopped(cause: MemoryError) -> MemoryError {
        MemoryError::Stopped {
            pushed: 1,
            left: Some(2),
            rest: "2 left pending".into(),
            cause: Box::new(cause),
        }
    }

    #[test]
    fn kinds_choose_the_exit_codes_they_did_before() {
        let held = MemoryError::Lock(LockError::Held {
            db: "s.db".into(),
            holder: "pid 1".into(),
            waited: 10,
        });
        let cases: Vec<(MemoryError, ErrorKind, Outcome)> = vec![
            (held, ErrorKind::Locked, Outcome::Locked),
            (
                unreachable().into(),
                ErrorKind::Unreachable,
                Outcome::Stopped,
            ),
            (
                unauthorized().into(),
                ErrorKind::Unauthorized,
                Outcome::Error,
            ),
            (
                stopped(unreachable().into()),
                ErrorKind::Unreachable,
                Outcome::Stopped,
            ),
            (
                stopped(unauthorized().into()),
                ErrorKind::Unauthorized,
                Outcome::Error,
            ),
            (
                MemoryError::NoSuchRow { id: 3 },
                ErrorKind::NotFound,
                Outcome::Error,
            ),
            (
                MemoryError::StagedOnly {
                    id: 4,
                    cause: unauthorized(),
                },
                ErrorKind::Unauthorized,
                Outcome::Error,
            ),
            (
                MemoryError::StagedOnly {
                    id: 5,
                    cause: unreachable(),
                },
                ErrorKind::Unreachable,
                Outcome::Stopped,
            ),
        ];
        for (e, kind, outcome) in cases {
            assert_eq!((e.kind(), e.outcome()), (kind, outcome), "{e}");
        }
    }

    #[test]
    fn messages_keep_their_wording() {
        assert_eq!(
            MemoryError::NoSuchRow { id: 7 }.to_string(),
            "no staged row #7 (memsync staged lists them)"
        );
        assert_eq!(
            MemoryError::StoreRefused {
                id: 2,
                reason: "too similar".into()
            }
            .to_string(),
            "the server refused the memory (too similar); kept in staging as #2 (failed)"
        );
        assert_eq!(
            MemoryError::file(
                std::path::Path::new("/x/y.json"),
                std::io::Error::from(std::io::ErrorKind::NotFound)
            )
            .to_string(),
            "/x/y.json: entity not found"
        );
    }
}
