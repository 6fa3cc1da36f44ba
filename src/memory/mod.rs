//! Memory sync with an mcp-memory-service server, git-like: `store` (remote first, staged when
//! the server is away), `pull` (server → local database), `push` (staging → server), `sync`
//! (stage → pull → apply → push), with content-hash dedup and explicit conflict policies.
//! Nothing a user stores is dropped: a row leaves staging only when the server confirmed it, and
//! a conflict's losing side is kept in the conflict record.

pub(crate) mod cli;
pub mod client;
mod clock;
pub(crate) mod commands;
pub(crate) mod conflict;
mod ctx;
pub mod hash;
pub mod host;
pub(crate) mod localdb;
pub(crate) mod lock;
pub(crate) mod maintenance;
pub(crate) mod outcome;
pub(crate) mod progress;
pub(crate) mod pull;
pub(crate) mod push;
pub(crate) mod queue;
mod readonly;
mod record;
pub(crate) mod runner;
pub(crate) mod settings;
pub(crate) mod settle;
pub(crate) mod staging;
pub(crate) mod status;
mod store;
pub(crate) mod synclog;

/// A memory-sync failure, by where it happened; each renders as one line.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error(transparent)]
    Settings(#[from] settings::SettingsError),
    #[error(transparent)]
    Remote(#[from] client::RemoteError),
    #[error(transparent)]
    Staging(#[from] staging::StagingError),
    #[error(transparent)]
    Local(#[from] localdb::LocalDbError),
    #[error("replica {0}")]
    Replica(String),
    #[error("{0}")]
    Io(String),
    /// The command did what it could and says what is left (e.g. stored locally, not remotely).
    #[error("{0}")]
    Incomplete(String),
    /// Push stopped part-way because the server became unusable; the rest stays pending.
    #[error("push stopped after {pushed} of the staged memories: {cause}; {rest}")]
    Stopped {
        pushed: usize,
        /// Rows left pending, when they could be counted.
        left: Option<usize>,
        /// What is left and what to do (the count, or why none can be given).
        rest: String,
        cause: Box<MemoryError>,
    },
    /// Another memsync holds the staging database.
    #[error(transparent)]
    Lock(#[from] lock::LockError),
}

impl MemoryError {
    /// The exit code's meaning (see [`outcome`]): 6 when another run holds the staging
    /// database, 5 when the server could not be reached (run again later), else 1.
    pub fn outcome(&self) -> outcome::Outcome {
        use outcome::Outcome;
        match self {
            MemoryError::Lock(lock::LockError::Held { .. }) => Outcome::Locked,
            MemoryError::Remote(e) if e.is_transient() => Outcome::Stopped,
            MemoryError::Stopped { cause, .. } => match cause.outcome() {
                Outcome::Stopped => Outcome::Stopped,
                _ => Outcome::Error,
            },
            _ => Outcome::Error,
        }
    }
}
