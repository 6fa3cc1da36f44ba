//! What can go wrong with the staging database.

use std::path::PathBuf;

use crate::memory::kind::ErrorKind;

/// A staging-database failure.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error("staging database {path}: {source}{}", hint(path, source))]
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

/// What to do about it: damage to the file is what `memsync repair` is for; a write that failed
/// on a full disk says so (SQLite says "disk I/O error" when it cannot make the WAL index).
fn hint(path: &std::path::Path, e: &rusqlite::Error) -> String {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
            " (the file is damaged: run memsync repair, which salvages what can be read and keeps the damaged file)".into()
        }
        Some(rusqlite::ErrorCode::DiskFull | rusqlite::ErrorCode::SystemIoFailure)
            if disk_full_at(path) =>
        {
            let dir = path.parent().unwrap_or(path);
            format!(
                " (no space left on the disk holding {}: free some, then run the command again)",
                dir.display()
            )
        }
        _ => String::new(),
    }
}

/// Whether the file system holding `path` has (next to) no space left.
fn disk_full_at(path: &std::path::Path) -> bool {
    const NEARLY_NONE: u64 = 1 << 20;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    std::fs::File::open(dir.unwrap_or(std::path::Path::new(".")))
        .ok()
        .and_then(|f| crate::platform::free_bytes(&f))
        .is_some_and(|free| free < NEARLY_NONE)
}
