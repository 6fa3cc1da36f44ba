//! What can go wrong with the staging database.

use std::path::PathBuf;

use crate::memory::kind::ErrorKind;

/// A staging-database failure.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error("staging database {path}: {source}{}", repair_hint(source))]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("staging database {path}: cannot create its folder: {source}")]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("staging database {path}: {reason}")]
    Unusable { path: PathBuf, reason: String },
}

impl StagingError {
    /// What the failure means: busy, damaged, or a file that cannot be used.
    pub fn kind(&self) -> ErrorKind {
        match self {
            _ if self.is_busy() => ErrorKind::Busy,
            _ if self.is_damage() => ErrorKind::Corrupt,
            StagingError::Sqlite { .. } | StagingError::Folder { .. } => ErrorKind::Io,
            StagingError::Unusable { .. } => ErrorKind::Invalid,
        }
    }

    /// Another connection holds the lock SQLite needed.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            StagingError::Sqlite { source, .. } if matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            )
        )
    }

    /// The file is damaged (what `memsync repair` rebuilds), as opposed to busy or foreign.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            StagingError::Sqlite { source, .. } if matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
            )
        )
    }
}

/// Damage to the file is what `memsync repair` is for: say so.
fn repair_hint(e: &rusqlite::Error) -> &'static str {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
            " (the file is damaged: run memsync repair, which salvages what can be read and keeps the damaged file)"
        }
        _ => "",
    }
}
