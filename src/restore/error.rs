//! Why a restore failed, by meaning: the replica's files (corrupt, missing, of another
//! history), the output (there already, not a file), the plan, or local I/O.

use replica_formats::{FormatError, PlanError};
use thiserror::Error;

use crate::replica::ReplicaError;

/// Why a restore failed.
#[derive(Debug, Error)]
pub enum RestoreError {
    /// Refusing to overwrite.
    #[error(
        "output {0} already exists (remove it, pass -force to replace it, or -if-db-not-exists to leave it)"
    )]
    OutputExists(String),
    /// A WAL, index or rollback journal of the output's name exists without the database.
    #[error(
        "{0} exists without its database: SQLite would apply it to the restored file; remove it (it belongs to no database memsync restored), or pass -force"
    )]
    Leftover(String),
    /// The output's directory could not be made.
    #[error("output directory {0}")]
    NoOutputDir(String),
    /// The output's directory, or the output itself, is not what its place says.
    #[error("output {0}")]
    OutputNotAFile(String),
    /// Nothing to restore from.
    #[error("replica {0} holds no backup")]
    NoBackup(String),
    /// The replica holds another tool's backup, which memsync cannot read.
    #[error(
        "replica {replica} holds no memsync backup but a Litestream one (its `{dir}/` folder), which memsync cannot read: restore it with `litestream restore`, then let memsync replicate the database to a new place"
    )]
    Foreign { replica: String, dir: &'static str },
    /// No restorable chain for the target.
    #[error("replica {replica}: {source}{held}")]
    Plan {
        /// Replica.
        replica: String,
        /// Why.
        source: PlanError,
        /// What the replica can restore instead, when the target is older than all of it
        /// (`; restorable: T1 .. T2, ...`), else empty.
        held: String,
    },
    /// Storage failure.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// The replica URL given to [`from_url`] is not one.
    #[error(transparent)]
    Url(#[from] crate::config::ConfigError),
    /// A replica file failed verification.
    #[error("replica {replica}: {key} is corrupt: {source}")]
    Corrupt {
        /// Replica.
        replica: String,
        /// File.
        key: String,
        /// What was wrong.
        source: FormatError,
    },
    /// A replica file takes the database past what the output's file system can hold (the
    /// size it declares, or the pages written so far as the disk fills).
    #[error(
        "{key}: not enough space for {path}: reaching page {pages} ({bytes} bytes) takes more than the {free} bytes free"
    )]
    TooLarge {
        /// File.
        key: String,
        /// Pages it declares.
        pages: u32,
        /// Their size.
        bytes: u64,
        /// Free space at the output.
        free: u64,
        /// Output (temporary) file.
        path: String,
    },
    /// A segment does not apply to the state built so far.
    #[error(
        "replica {replica}: {key} does not follow the files before it (database checksum {found} expected {expected}); the replica mixes histories"
    )]
    Diverged {
        /// Replica.
        replica: String,
        /// File.
        key: String,
        /// Checksum the file expects.
        expected: String,
        /// Checksum reached.
        found: String,
    },
    /// Local I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Error.
        source: std::io::Error,
    },
    /// SQLite's check of the result failed.
    #[error("restored database {output} failed {check}, so it was not put in place: {result}")]
    Integrity {
        /// The output the restore was for.
        output: String,
        /// Which check.
        check: &'static str,
        /// What SQLite said.
        result: String,
    },
}
