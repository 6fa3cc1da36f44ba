//! Replica clients: one small interface over `object_store`, so file, S3 and HTTP replicas share
//! every line above the storage call. Keys are always the format crate's typed
//! [`ObjectKey`](replica_formats::ObjectKey)s.

mod client;
mod error;
mod local;
pub(crate) mod reader;

use std::time::Duration;

pub use client::ReplicaClient;
pub use error::ReplicaError;

/// Files at most this large are uploaded in one request; larger ones in parts of this size.
pub const PART_SIZE: usize = 5 << 20;
/// Longest a single storage request may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds the client for a configured replica.
pub fn client_for(
    cfg: &crate::config::ReplicaConfig,
    create: bool,
) -> Result<ReplicaClient, ReplicaError> {
    match &cfg.target {
        crate::config::ReplicaTarget::File { path } => ReplicaClient::file(&cfg.name, path, create),
        other => Err(ReplicaError::Unsupported {
            replica: cfg.name.clone(),
            kind: target_kind(other),
        }),
    }
}

fn target_kind(t: &crate::config::ReplicaTarget) -> &'static str {
    match t {
        crate::config::ReplicaTarget::File { .. } => "file",
        crate::config::ReplicaTarget::S3 { .. } => "S3",
        crate::config::ReplicaTarget::Http { .. } => "HTTP",
    }
}
