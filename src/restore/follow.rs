//! A restored copy kept current: restored once, then each new segment of the replica's chain is
//! verified and applied as it appears, exactly as a restore would apply it.
//!
//! The benchmark's lag probe uses it: a full restore per probe measures the restore as much as
//! the lag (tens of milliseconds), while following measures when a commit became restorable.

use std::path::{Path, PathBuf};

use replica_formats::{Target as PlanTarget, TxId};
use tokio::runtime::Handle;

use super::apply::{self, Target};
use super::{RestoreError, RestoreOptions};
use crate::replica::ReplicaClient;

/// A database file following a replica.
pub struct Follower {
    client: ReplicaClient,
    target: Target,
    txid: TxId,
    path: PathBuf,
}

impl Follower {
    /// Restores the latest state into `path` (which must not exist) and starts following.
    pub fn start(
        client: ReplicaClient,
        rt: &Handle,
        path: &Path,
    ) -> Result<Follower, RestoreError> {
        let keys = rt.block_on(client.list())?;
        let plan = replica_formats::plan_restore(&keys, PlanTarget::Latest).map_err(|source| {
            RestoreError::Plan {
                replica: client.name().to_owned(),
                source,
                held: String::new(),
            }
        })?;
        let opts = RestoreOptions::latest(path);
        let (built, target) = apply::build(&client, rt, &plan, path, &opts)?;
        Ok(Follower {
            client,
            target,
            txid: built.txid,
            path: path.to_path_buf(),
        })
    }

    /// Applies every segment that continues the chain; returns how many were applied.
    pub fn catch_up(&mut self, rt: &Handle) -> Result<usize, RestoreError> {
        let keys = rt.block_on(self.client.list())?;
        let chain = replica_formats::chain_from(&keys, self.txid, PlanTarget::Latest);
        if chain.is_empty()
            && let Some(next) = keys
                .iter()
                .filter(|k| !k.is_snapshot() && k.max_txid() > self.txid)
                .map(|k| k.min_txid())
                .min()
        {
            // Compaction or a new snapshot chain left nothing that continues from here: the
            // caller starts over rather than wait forever.
            return Err(RestoreError::Plan {
                replica: self.client.name().to_owned(),
                source: replica_formats::PlanError::Gap {
                    at: self.txid,
                    next_available: Some(next),
                },
                held: String::new(),
            });
        }
        for key in &chain {
            // A failure leaves the copy half-applied: the caller must start over.
            let (txid, _) = apply::apply_segment(&self.client, rt, key, &mut self.target)?;
            self.txid = txid;
        }
        Ok(chain.len())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
