//! One replica's shipping loop: uploads spooled files in position order at the replica's own
//! sync interval, retries with backoff, and reports what the replica confirmed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use replica_formats::{ObjectKey, TxId};
use tokio::sync::watch;

use super::spool::Spool;
use crate::replica::{ReplicaClient, ReplicaError};

/// Longest pause between retries of a failing replica.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Per-replica counters.
#[derive(Debug, Default)]
pub struct ShipStats {
    /// Highest position the replica confirmed.
    pub position: AtomicU64,
    /// Files uploaded.
    pub uploads: AtomicU64,
    /// Bytes uploaded.
    pub bytes: AtomicU64,
    /// Failed attempts.
    pub errors: AtomicU64,
}

/// State of one replica's shipping.
pub struct Shipper {
    /// The replica.
    pub client: ReplicaClient,
    /// Where files come from.
    pub spool: Spool,
    /// Minimum time between two uploads (0 = as soon as a file is spooled).
    pub sync_interval: Duration,
    /// Highest position the replica holds.
    pub remote: Option<TxId>,
    /// Published after every upload (the spool prunes what every replica has).
    pub confirmed: watch::Sender<Option<TxId>>,
    /// Counters.
    pub stats: Arc<ShipStats>,
}

impl Shipper {
    /// Uploads every spooled file above the replica's position, in order. A file the replica
    /// already has counts as uploaded (an upload retried after a crash).
    pub async fn ship_pending(&mut self) -> Result<usize, ReplicaError> {
        let keys = self.spool.keys().map_err(|e| ReplicaError::Local {
            replica: self.client.name().to_owned(),
            path: self.spool.dir().display().to_string(),
            source: e,
        })?;
        let mut n = 0;
        for key in chain_after(&keys, self.remote) {
            let size = match self.client.upload(&key, &self.spool.path(&key)).await {
                Ok(size) => size,
                Err(ReplicaError::AlreadyExists { .. }) => 0,
                Err(e) => return Err(e),
            };
            self.remote = Some(key.max_txid());
            self.stats.uploads.fetch_add(1, Ordering::Relaxed);
            self.stats.bytes.fetch_add(size, Ordering::Relaxed);
            self.stats.position.store(key.max_txid().get(), Ordering::Relaxed);
            self.confirmed.send_replace(self.remote);
            n += 1;
        }
        Ok(n)
    }

    /// Ships whenever the monitor publishes a new position, no more often than the sync
    /// interval, until `stop` turns true; then makes a last attempt bounded by `flush_timeout`.
    pub async fn run(
        mut self,
        mut positions: watch::Receiver<Option<TxId>>,
        mut stop: watch::Receiver<bool>,
        flush_timeout: Duration,
    ) -> Option<TxId> {
        let mut backoff = Duration::ZERO;
        let mut last = Instant::now() - self.sync_interval;
        loop {
            let wanted = *positions.borrow_and_update();
            if wanted > self.remote {
                let due = last + self.sync_interval.max(backoff);
                tokio::select! {
                    _ = tokio::time::sleep_until(due.into()) => {}
                    _ = stop.changed() => break,
                }
                last = Instant::now();
                match self.ship_pending().await {
                    Ok(_) => backoff = Duration::ZERO,
                    Err(e) => {
                        self.stats.errors.fetch_add(1, Ordering::Relaxed);
                        backoff = (backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
                        crate::log::error(&format!("{e} (retrying in {}s)", backoff.as_secs()));
                    }
                }
                continue;
            }
            tokio::select! {
                r = positions.changed() => if r.is_err() { break },
                _ = stop.changed() => break,
            }
        }
        match tokio::time::timeout(flush_timeout, self.ship_pending()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => crate::log::error(&format!("final sync failed: {e}")),
            Err(_) => crate::log::error(&format!(
                "replica {}: final sync did not finish within {}s; unshipped changes stay in the spool and ship on next start",
                self.client.name(),
                flush_timeout.as_secs()
            )),
        }
        self.remote
    }
}

/// The spooled files that continue the replica from `remote`: the chain of files whose first
/// position follows the previous one, preferring the one reaching furthest; or, when the replica
/// cannot be continued (empty, or the spool no longer has the next file), everything from the
/// newest snapshot on.
pub fn chain_after(keys: &[ObjectKey], remote: Option<TxId>) -> Vec<ObjectKey> {
    let start = remote.and_then(|r| {
        let chain = replica_formats::chain_from(keys, r, replica_formats::Target::Latest);
        (!chain.is_empty() || keys.iter().all(|k| k.max_txid() <= r)).then_some(chain)
    });
    if let Some(chain) = start {
        return chain;
    }
    let Some(snap) = keys.iter().filter(|k| k.is_snapshot()).max_by_key(|k| k.max_txid()) else {
        return Vec::new();
    };
    if remote >= Some(snap.max_txid()) {
        return Vec::new();
    }
    let mut out = vec![snap.clone()];
    out.extend(replica_formats::chain_from(keys, snap.max_txid(), replica_formats::Target::Latest));
    out
}
