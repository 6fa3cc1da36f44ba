//! What can go wrong with a replica, named by what it means to the caller.

use thiserror::Error;

/// A failed replica operation, named by what it means to the caller.
#[derive(Debug, Error)]
pub enum ReplicaError {
    /// The object does not exist.
    #[error("replica {replica}: {key} not found")]
    NotFound {
        /// Replica name and location.
        replica: String,
        /// Key.
        key: String,
    },
    /// A file with that key already exists (another writer, or a retried upload).
    #[error("replica {replica}: {key} already exists")]
    AlreadyExists {
        /// Replica.
        replica: String,
        /// Key.
        key: String,
    },
    /// The storage could not be reached or refused the request.
    #[error("replica {replica}: {what}: {source}")]
    Storage {
        /// Replica.
        replica: String,
        /// Operation.
        what: String,
        /// Cause.
        source: object_store::Error,
    },
    /// The request did not finish in time.
    #[error("replica {replica}: {what} timed out after {secs}s")]
    Timeout {
        /// Replica.
        replica: String,
        /// Operation.
        what: String,
        /// Seconds waited.
        secs: u64,
    },
    /// Reading a local file to upload failed.
    #[error("replica {replica}: reading {path}: {source}")]
    Local {
        /// Replica.
        replica: String,
        /// Local file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Writing into a file replica failed (disk full, read-only, permissions).
    #[error("replica {replica}: writing {path}: {source}")]
    Write {
        /// Replica.
        replica: String,
        /// File in the replica.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// This build has no client for the replica's kind.
    #[error(
        "replica {replica}: {kind} replicas are not available in this build yet (file replicas are)"
    )]
    Unsupported {
        /// Replica.
        replica: String,
        /// `S3`, `HTTP`.
        kind: &'static str,
    },
}
