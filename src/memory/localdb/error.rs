//! What can go wrong with the local memory database.

use std::path::PathBuf;

use crate::memory::kind::ErrorKind;

/// A failure on the local memory database.
#[derive(Debug, thiserror::Error)]
pub enum LocalDbError {
    #[error(
        "local memory database {0} does not exist (start mcp-memory-service once to create it, set MCP_MEMORY_SQLITE_PATH if it lives elsewhere, or set REMOTE_MEMORY_REPLICA so pull creates it from the server's replica)"
    )]
    NotFound(PathBuf),
    #[error("{path} is not an mcp-memory-service database: {reason}")]
    NotMemoryDb { path: PathBuf, reason: String },
    #[error("local memory database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

impl LocalDbError {
    /// What the failure means: missing, not the service's database, busy, damaged, or I/O.
    pub fn kind(&self) -> ErrorKind {
        match self {
            LocalDbError::NotFound(_) => ErrorKind::NotFound,
            LocalDbError::NotMemoryDb { .. } => ErrorKind::Invalid,
            LocalDbError::Sqlite { source, .. } => match source.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                    ErrorKind::Busy
                }
                Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
                    ErrorKind::Corrupt
                }
                _ => ErrorKind::Io,
            },
        }
    }
}
