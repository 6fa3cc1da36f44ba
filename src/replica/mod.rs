//! Replica clients: one small interface over `object_store`, so file, S3 and HTTP replicas share
//! every line above the storage call. Keys are always the format crate's typed
//! [`ObjectKey`](replica_formats::ObjectKey)s.

mod client;
mod davput;
mod error;
mod grouped;
mod listing;
mod local;
mod multipart;
pub(crate) mod reader;
mod remote;

use std::time::Duration;

pub use client::{ReplicaClient, StoreKind};
pub use error::ReplicaError;
pub use grouped::GROUP_MAX;
pub use remote::Trust;

/// Files at most this large are uploaded in one request from memory; larger ones to S3 in
/// parts, to WebDAV streamed from disk.
pub const SINGLE_PUT_MAX: u64 = 8 << 20;
/// Part size of multipart uploads (S3's minimum is 5 MiB).
pub const PART_SIZE: usize = 8 << 20;
/// Longest a single storage request may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds the client for a configured replica. `create` makes a missing file replica
/// directory (remote stores need nothing made: keys are created by their uploads).
pub fn client_for(
    cfg: &crate::config::ReplicaConfig,
    create: bool,
) -> Result<ReplicaClient, ReplicaError> {
    client_trusting(cfg, create, &Trust::default())
}

/// [`client_for`], trusting `trust`'s certificates too (remote replicas only).
pub fn client_trusting(
    cfg: &crate::config::ReplicaConfig,
    create: bool,
    trust: &Trust,
) -> Result<ReplicaClient, ReplicaError> {
    use crate::config::ReplicaTarget;
    match &cfg.target {
        ReplicaTarget::File { path } => ReplicaClient::file(&cfg.name, path, create),
        ReplicaTarget::S3 {
            bucket,
            path,
            endpoint,
            region,
            force_path_style,
            skip_verify,
            access_key_id,
            secret_access_key,
        } => {
            let shown = format!("{} (s3://{bucket}/{path})", cfg.name);
            let store = remote::s3_store(
                &shown,
                &remote::S3Settings {
                    bucket,
                    endpoint: endpoint.as_deref(),
                    region: region.as_deref(),
                    force_path_style: *force_path_style,
                    skip_verify: *skip_verify,
                    access_key_id: access_key_id.as_deref(),
                    secret_access_key: secret_access_key.as_deref(),
                },
                trust,
            )?;
            Ok(ReplicaClient::new(&shown, store, path, StoreKind::S3))
        }
        ReplicaTarget::Http { url } => {
            let (store, clean, root, dav) = remote::http_store(&cfg.name, url, trust)?;
            let shown = format!("{} ({clean})", cfg.name);
            Ok(ReplicaClient::new(&shown, store, &root, StoreKind::Http).with_dav(dav))
        }
    }
}
