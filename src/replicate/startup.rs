//! Bringing one replica into replication: its lineage claimed, its files listed, and whether
//! it continues from the spool decided. Each replica does this on its own task, so one that
//! does not answer never holds the others (or the database) up: the start waits a bounded
//! time for all of them, and a replica still unready then keeps trying with backoff while the
//! others ship.

use std::sync::Arc;
use std::time::Duration;

use replica_formats::{ObjectKey, TxId};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::catchup::{self, Restart};
use replica_formats::Lineage;

use super::lineage::{self, LineageError};
use super::spool::Spool;
use crate::replica::ReplicaClient;

/// How long a start waits for every replica before going on without the slow ones.
pub const START_WAIT: Duration = Duration::from_secs(5);
/// Longest pause between two attempts at a replica that does not answer.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// A replica ready to ship.
#[derive(Debug, Clone)]
pub struct Ready {
    /// Every file it holds.
    pub listing: Vec<ObjectKey>,
    /// Why it must start over from a fresh snapshot, if it must.
    pub restart: Option<Restart>,
}

impl Ready {
    /// The position it restores to, unless it starts over (nothing of ours is appended to it
    /// then): a file past a hole is not counted, so the hole is filled (`catchup`).
    pub fn remote(&self) -> Option<TxId> {
        if self.restart.is_some() {
            return None;
        }
        replica_formats::restorable_end(&self.listing).map(|k| k.max_txid())
    }

    /// Its newest position, whatever it holds.
    pub fn newest(&self) -> Option<TxId> {
        self.listing.iter().map(ObjectKey::max_txid).max()
    }
}

/// What a replica's start needs, owned so it can run on its own task.
#[derive(Clone)]
pub struct Start {
    /// The replica.
    pub client: ReplicaClient,
    /// This database's lineage.
    pub me: Arc<Lineage>,
    /// Replace a replica that belongs to another database.
    pub takeover: bool,
    /// The spool as the start found it.
    pub spool: Spool,
    /// Its files then.
    pub spool_keys: Arc<Vec<ObjectKey>>,
    /// The replica's counters: a failed start counts as a failed attempt (a replica down at
    /// boot showed 0 errors while it was retried).
    pub stats: Arc<crate::stats::ShipStats>,
}

/// A start that failed: `permanent` ones (the replica belongs to another database) are not
/// retried.
#[derive(Debug)]
pub struct Failed {
    /// Why.
    pub error: LineageError,
    /// Retrying cannot help.
    pub permanent: bool,
}

impl Failed {
    /// The replica answered and said no (a refused key, a missing bucket): not a passing
    /// outage, so said at ERROR with what to check, though still tried again.
    fn refused(&self) -> bool {
        matches!(&self.error, LineageError::Replica(e) if !e.is_transient())
    }
}

/// What a failure that is not an outage asks of the user.
const CHECK: &str = "not a passing outage: check the replica's credentials, bucket and path";

impl Start {
    /// Counts a failed start and says it with what happens `then`: a refusal at ERROR with
    /// what to check, an outage at WARN.
    fn note_failure(&self, f: &Failed, then: &str) {
        self.stats.failed(crate::stats::unix_ms());
        if f.refused() {
            tracing::error!("{} ({CHECK}; {then})", f.error);
        } else {
            tracing::warn!("{} ({then})", f.error);
        }
    }

    /// One attempt.
    pub async fn attempt(&self) -> Result<Ready, Failed> {
        let transient = |e: crate::replica::ReplicaError| Failed {
            error: LineageError::Replica(e),
            permanent: false,
        };
        lineage::claim(&self.client, &self.me, self.takeover)
            .await
            .map_err(|error| Failed {
                permanent: !matches!(error, LineageError::Replica(_)),
                error,
            })?;
        // The replica is this replicator's now: what a killed one left half-copied goes.
        let stale = self.client.remove_stale_temps();
        if stale > 0 {
            tracing::info!(
                "{}: removed {stale} temporary files a replicator stopped part way left",
                self.client.name()
            );
        }
        let listing = self.client.list().await.map_err(transient)?;
        let restart = catchup::check(&self.client, &listing, &self.spool, &self.spool_keys)
            .await
            .map_err(transient)?;
        Ok(Ready { listing, restart })
    }

    /// Attempts until one succeeds, a permanent failure, or `stop`; logs each failure once
    /// with when it is tried again.
    pub async fn until_ready(self, mut stop: watch::Receiver<bool>) -> Option<Ready> {
        let mut wait = Duration::from_secs(1);
        loop {
            match self.attempt().await {
                Ok(r) => {
                    tracing::info!("replica {}: reachable, shipping", self.client.name());
                    return Some(r);
                }
                Err(f) if f.permanent => {
                    tracing::error!("{}; this replica is not replicated to", f.error);
                    return None;
                }
                Err(f) => self.note_failure(
                    &f,
                    &format!(
                        "retrying in {}s; the other replicas ship meanwhile, and what this one misses waits in the spool",
                        wait.as_secs()
                    ),
                ),
            }
            tokio::select! {
                _ = tokio::time::sleep(jitter(wait)) => {}
                _ = stop.changed() => return self.last_attempt().await,
            }
            wait = (wait * 2).min(MAX_RETRY);
        }
    }
}

impl Start {
    /// At shutdown, one more try (bounded like the final flush): a replica back since its last
    /// attempt still gets what was committed.
    async fn last_attempt(&self) -> Option<Ready> {
        match tokio::time::timeout(super::FLUSH_TIMEOUT, self.attempt()).await {
            Ok(Ok(r)) => Some(r),
            Ok(Err(f)) if f.refused() => {
                tracing::error!(
                    "replica {}: still refused at shutdown ({}; {CHECK}); what it lacks stays in the spool for the next start",
                    self.client.name(),
                    f.error
                );
                None
            }
            _ => {
                tracing::warn!(
                    "replica {}: still unreachable at shutdown; what it lacks stays in the spool for the next start",
                    self.client.name()
                );
                None
            }
        }
    }
}

/// `d` give or take up to a fifth, so replicas (and replicators) that failed together do not
/// retry in lockstep.
pub fn jitter(d: Duration) -> Duration {
    let f = 0.8 + rand::random::<f64>() * 0.4;
    d.mul_f64(f)
}

/// Starts every replica's first attempt at once and waits for them until `deadline` (one
/// deadline for every database of the process, [`START_WAIT`] after replication began, so that
/// a replica server that is down delays the start once, not once per database):
/// `Ok(Some)` for those ready, `Ok(None)` with their still-running attempt for the slow ones.
/// A replica refused outright (another database's) fails the start, as a configuration error
/// should.
pub fn first_attempts(
    rt: &tokio::runtime::Runtime,
    starts: &[Start],
    deadline: tokio::time::Instant,
) -> Result<Vec<Pending>, LineageError> {
    let handles: Vec<JoinHandle<Result<Ready, Failed>>> = starts
        .iter()
        .map(|s| {
            let s = s.clone();
            rt.spawn(async move { s.attempt().await })
        })
        .collect();
    let mut out = Vec::new();
    for (h, s) in handles.into_iter().zip(starts) {
        let mut h = h;
        let res = rt.block_on(async { tokio::time::timeout_at(deadline, &mut h).await });
        out.push(match res {
            Ok(Ok(Ok(ready))) => Pending::Ready(ready),
            Ok(Ok(Err(f))) if f.permanent => return Err(f.error),
            Ok(Ok(Err(f))) => {
                s.note_failure(
                    &f,
                    "retrying in the background; the other replicas ship meanwhile",
                );
                Pending::Retry
            }
            Ok(Err(_)) => Pending::Retry,
            Err(_) => {
                tracing::warn!(
                    "replica {} has not answered within {}s; starting without it (it is tried again in the background)",
                    s.client.name(),
                    START_WAIT.as_secs()
                );
                Pending::Slow(h)
            }
        });
    }
    Ok(out)
}

/// A replica's state after the first attempts.
pub enum Pending {
    /// Ready to ship.
    Ready(Ready),
    /// Failed: start over in the background.
    Retry,
    /// Still trying: the attempt under way.
    Slow(JoinHandle<Result<Ready, Failed>>),
}

impl Pending {
    /// The replica once ready: at once, or after its attempts succeed; `None` if it never
    /// will (refused, or replication stopped first).
    pub async fn resolve(self, start: Start, mut stop: watch::Receiver<bool>) -> Option<Ready> {
        match self {
            Pending::Ready(r) => Some(r),
            Pending::Retry => start.until_ready(stop).await,
            Pending::Slow(h) => {
                let res = tokio::select! {
                    r = h => r,
                    _ = stop.changed() => return start.last_attempt().await,
                };
                match res {
                    Ok(Ok(r)) => {
                        tracing::info!("replica {}: reachable, shipping", start.client.name());
                        Some(r)
                    }
                    Ok(Err(f)) if f.permanent => {
                        tracing::error!("{}; this replica is not replicated to", f.error);
                        None
                    }
                    Ok(Err(_)) => {
                        // The first attempt, slower than the start's wait, failed: it counts.
                        start.stats.failed(crate::stats::unix_ms());
                        start.until_ready(stop).await
                    }
                    _ => start.until_ready(stop).await,
                }
            }
        }
    }
}
