//! Memory sync with an mcp-memory-service server, git-like: `store` (remote first, staged when
//! the server is away), `pull` (server → local database), `push` (staging → server), `sync`
//! (stage → pull → apply → push), with content-hash dedup and explicit conflict policies.
//! Nothing a user stores is dropped: a row leaves staging only when the server confirmed it, and
//! a conflict's losing side is kept in the conflict record.

pub mod cli;
pub mod client;
pub mod commands;
pub mod conflict;
pub mod hash;
pub mod localdb;
pub mod maintenance;
pub mod pull;
pub mod push;
pub mod settings;
pub mod settle;
pub mod staging;
pub mod status;
pub mod synclog;

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
}
