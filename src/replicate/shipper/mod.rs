//! One replica's shipping loop: uploads spooled files in position order at the replica's own
//! sync interval, retries with backoff, and reports what the replica confirmed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use replica_formats::{ObjectKey, TxId, chain_after};
use tokio::sync::watch;

use super::catchup::Restart;
use super::placer::Inline;
use super::spool::Spool;
use crate::replica::{ReplicaClient, ReplicaError};
use crate::stats::ShipStats;

/// Shortest time files replaced by a compacted one stay readable before they are deleted (so
/// restores already reading them finish undisturbed); their tier's retention may keep them
/// longer (see [`crate::config::Tiers`]).
pub const DELETE_GRACE: Duration = Duration::from_secs(5);

/// Longest pause between retries of a failing replica.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long an idle replica goes without a request before a probe (one HEAD: two requests a
/// minute per idle replica).
const PROBE_IDLE: Duration = Duration::from_secs(30);
/// The same while its last attempt failed.
const PROBE_FAILING: Duration = Duration::from_secs(5);

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
    /// Files the replica holds (listed at start, then tracked).
    pub known: BTreeSet<ObjectKey>,
    /// Files replaced by a compacted one, with when their tier's retention is over (their
    /// boundaries are restore points until then) and when their [`DELETE_GRACE`] is: they are
    /// deleted once both passed (at shutdown, once the first did).
    pub doomed: Vec<(Instant, Instant, Vec<ObjectKey>)>,
    /// How long history must stay restorable.
    pub retention: Duration,
    /// How often retention is enforced.
    pub retention_check: Duration,
    /// How long covered files of each level stay.
    pub tiers: crate::config::Tiers,
    /// Published after every upload (the spool prunes what every replica has).
    pub confirmed: watch::Sender<Option<TxId>>,
    /// Counters.
    pub stats: Arc<ShipStats>,
    /// Why this replica starts over from a fresh snapshot, until that snapshot is shipped
    /// (logged then).
    pub restart: Option<Restart>,
    /// Asks the monitor for a snapshot of the current position.
    pub snapshot_wanted: Arc<AtomicBool>,
    /// Position of the snapshot this replica started over from: older files are of no use
    /// to it (nothing before that snapshot is restorable from this replica).
    pub since: Option<TxId>,
    /// A snapshot was asked for and has not shown up in the spool yet.
    pub asked: bool,
    /// Level-0 files placed on this (file) replica as they are captured, while caught up
    /// (`placer.rs`).
    pub inline: Option<Arc<Inline>>,
    /// The database's lineage ([`presence`]).
    pub lineage: Arc<replica_formats::Lineage>,
    /// Deletions failing (a store that refuses DELETE, an append-only bucket): when to try
    /// again, and the pause after that ([`upkeep`]).
    pub deletes_held: Option<(Instant, Duration)>,
    /// Lineage checks left that also sweep out files this replicator did not write
    /// ([`presence`]): a replica claimed afresh may still get a few files from the replicator
    /// it was taken from, until that one sees the new record.
    pub sweeps: u8,
}

/// Everything a [`Shipper`] needs but what the replica's start finds out.
pub struct ShipperParts {
    /// The replica.
    pub client: ReplicaClient,
    /// Where files come from.
    pub spool: Spool,
    /// Minimum time between two uploads.
    pub sync_interval: Duration,
    /// How long history must stay restorable.
    pub retention: Duration,
    /// How often retention is enforced.
    pub retention_check: Duration,
    /// How long covered files of each level stay.
    pub tiers: crate::config::Tiers,
    /// Published after every upload.
    pub confirmed: watch::Sender<Option<TxId>>,
    /// Counters.
    pub stats: Arc<ShipStats>,
    /// Asks the monitor for a snapshot of the current position.
    pub snapshot_wanted: Arc<AtomicBool>,
    /// Placement as files are captured, if this replica takes it.
    pub inline: Option<Arc<Inline>>,
    /// The database's lineage, written again if the replica loses its record.
    pub lineage: Arc<replica_formats::Lineage>,
}

impl ShipperParts {
    /// The shipper of a replica found `ready`.
    pub fn build(self, ready: super::startup::Ready) -> Shipper {
        let remote = ready.remote();
        self.confirmed.send_replace(remote);
        self.stats
            .position
            .store(remote.map_or(0, |t| t.get()), Ordering::Relaxed);
        self.stats.answered(crate::stats::unix_ms());
        Shipper {
            client: self.client,
            spool: self.spool,
            sync_interval: self.sync_interval,
            remote,
            known: ready.listing.into_iter().collect(),
            doomed: Vec::new(),
            retention: self.retention,
            retention_check: self.retention_check,
            tiers: self.tiers,
            confirmed: self.confirmed,
            stats: self.stats,
            sweeps: if ready.restart == Some(Restart::Empty) {
                presence::SWEEPS
            } else {
                0
            },
            restart: ready.restart,
            snapshot_wanted: self.snapshot_wanted,
            since: None,
            asked: false,
            inline: self.inline,
            lineage: self.lineage,
            deletes_held: None,
        }
    }
}

impl Shipper {
    /// Uploads one spooled file; false if it left the spool meanwhile (merged into a higher
    /// level and pruned), in which case the caller lists the spool again.
    async fn put(&mut self, key: &ObjectKey) -> Result<bool, ReplicaError> {
        let size = match self.client.upload(key, &self.spool.path(key)).await {
            Ok(size) => size,
            Err(ReplicaError::AlreadyExists { .. }) => 0,
            Err(ReplicaError::Local { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                self.spool.forget(key);
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        crate::fault::point("upload").map_err(|source| ReplicaError::Local {
            replica: self.client.name().to_owned(),
            path: key.path(),
            source,
        })?;
        self.known.insert(*key);
        self.stats.uploads.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes.fetch_add(size, Ordering::Relaxed);
        Ok(true)
    }

    /// Uploads every spooled file above the replica's position, in order, then the compacted
    /// segments and snapshots of positions it already has (deleting the level-0 segments a
    /// compacted one replaces). A file the replica already has counts as uploaded.
    pub async fn ship_pending(&mut self) -> Result<usize, ReplicaError> {
        // What was placed while this shipper slept is on the replica; placement waits until
        // this pass is done.
        if let Some(inline) = &self.inline {
            let (placed, remote) = inline.take_over().await;
            self.known.extend(placed);
            self.remote = self.remote.max(remote);
        }
        let mut total = 0;
        // A file can leave the spool between listing and upload (merged and pruned); list again.
        for _ in 0..8 {
            match self.ship_listed().await? {
                (n, true) => return Ok(total + n),
                (n, false) => total += n,
            }
        }
        Ok(total)
    }

    /// One pass over a spool listing; the flag is false if a listed file had vanished.
    async fn ship_listed(&mut self) -> Result<(usize, bool), ReplicaError> {
        // A replica that refuses deletions still gets every new file.
        self.shed_doomed().await;
        let keys = self.spool.keys().map_err(|e| ReplicaError::Local {
            replica: self.client.name().to_owned(),
            path: self.spool.dir().display().to_string(),
            source: e,
        })?;
        let mut n = 0;
        self.note_behind(&keys);
        let chain = self.finest(chain_after(&keys, self.remote), &keys);
        // A way forward answers any earlier ask; if it is dropped again (spool budget), ask anew.
        if !chain.is_empty() {
            self.asked = false;
        }
        if chain.is_empty() && self.needs_snapshot(&keys) {
            // Only a replica that answers gets one: while it is down, a snapshot would only
            // grow the spool (and one dropped to keep within the budget would be asked for
            // again and again).
            self.client.get_raw(replica_formats::LINEAGE_OBJECT).await?;
            self.ask_for_snapshot();
        }
        for key in chain {
            if key.is_snapshot() {
                self.since = self.since.max(Some(key.max_txid()));
                if let Some(why) = self.restart {
                    tracing::info!(
                        "replica {}: {why}, shipping a new snapshot at position {}",
                        self.client.name(),
                        key.max_txid()
                    );
                }
            }
            if !self.put(&key).await? {
                return Ok((n, false));
            }
            if key.is_snapshot() {
                self.restart = None;
            }
            self.drop_covered(&key).await?;
            self.remote = Some(key.max_txid());
            self.stats
                .position
                .store(key.max_txid().get(), Ordering::Relaxed);
            self.confirmed.send_replace(self.remote);
            self.note_behind(&keys);
            n += 1;
        }
        let extras: Vec<ObjectKey> = keys
            .iter()
            .filter(|k| !self.known.contains(k) && Some(k.max_txid()) <= self.remote)
            // A compacted segment reaching below the restart snapshot does not apply on top of
            // it, and uploading it would doom the level-0 segments this replica needs.
            .filter(|k| {
                Some(k.min_txid()) > self.since
                    || (k.is_snapshot() && Some(k.max_txid()) >= self.since)
            })
            .filter(|k| k.is_snapshot() || k.level().is_some_and(|l| l.get() > 0))
            // A second snapshot of a state the replica has a snapshot of is only a copy.
            .filter(|k| {
                !k.is_snapshot()
                    || !self
                        .known
                        .iter()
                        .any(|h| h.is_snapshot() && h.max_txid() == k.max_txid())
            })
            .cloned()
            .collect();
        let mut compacted = false;
        for key in extras {
            if !self.put(&key).await? {
                continue;
            }
            n += 1;
            compacted = true;
            self.drop_covered(&key).await?;
        }
        if compacted {
            // Tell the pruner again: the segments these replace may now leave the spool too
            // (not after every upload: each tell wakes the pruner).
            self.confirmed.send_replace(self.remote);
        }
        Ok((n, true))
    }

    /// `chain` through the finest spooled files this replica's tiers would still keep: a
    /// replica that was behind while the spool merged gets the level-0 files of that stretch
    /// (its per-sync restore points), not only their merge, which follows as a compacted file.
    fn finest(&self, chain: Vec<ObjectKey>, keys: &[ObjectKey]) -> Vec<ObjectKey> {
        let wall = crate::sqlite::capture::now_ms().get();
        replica_formats::refine_chain(&chain, keys, |k| {
            let keep = self
                .tiers
                .keep(k.level().map_or(0, |l| l.get()))
                .min(self.retention);
            k.timestamp().get() + keep.as_millis() as i64 > wall
        })
    }

    /// Records, for the lag figure, when the oldest spooled file holding a position this
    /// replica lacks was captured.
    fn note_behind(&self, keys: &[ObjectKey]) {
        let oldest = keys
            .iter()
            .filter(|k| Some(k.max_txid()) > self.remote)
            .map(|k| k.timestamp().get().max(1))
            .min();
        self.stats.set_behind_since(oldest);
    }

    /// The spool holds positions past this replica's but no way to them (no segment right
    /// after its position, no snapshot beyond it), and no snapshot was asked for yet.
    fn needs_snapshot(&self, keys: &[ObjectKey]) -> bool {
        let newest = keys.iter().map(ObjectKey::max_txid).max();
        newest > self.remote && !self.asked
    }

    /// Asks the monitor for a snapshot, once, so the replica is not stuck while the spool
    /// keeps everything for it.
    fn ask_for_snapshot(&mut self) {
        self.asked = true;
        if self.restart.is_none() {
            self.restart = Some(match self.remote {
                None => Restart::Empty,
                Some(r) => Restart::Behind { newest: r },
            });
        }
        self.snapshot_wanted.store(true, Ordering::Relaxed);
    }

    /// Ships whenever the monitor publishes, no more often than the sync interval, enforces
    /// retention periodically, until `stop` turns true; then a last attempt bounded by
    /// `flush_timeout`.
    pub async fn run(
        mut self,
        mut positions: watch::Receiver<Option<TxId>>,
        mut stop: watch::Receiver<bool>,
        flush_timeout: Duration,
    ) -> Option<TxId> {
        // Files a previous run left behind although a compacted file replaces them.
        let compacted: Vec<ObjectKey> = self
            .known
            .iter()
            .filter(|k| k.level().is_some_and(|l| l.get() > 0))
            .copied()
            .collect();
        for k in compacted {
            let _ = self.drop_covered(&k).await;
        }
        let mut backoff = Duration::ZERO;
        let mut last = Instant::now() - self.sync_interval;
        let mut last_retention = Instant::now();
        // The last idle probe (apart from `last`, which paces shipping), and the last look at
        // the lineage record (every probe is one).
        let mut probed = Instant::now();
        let mut lineage_checked = Instant::now();
        let lineage_every = presence::lineage_check();
        let mut pending = true;
        loop {
            // Ready only once replication was stopping (a replica back at the last moment):
            // straight to the final flush.
            if *stop.borrow() {
                break;
            }
            if self.stats.taken().is_some() {
                // Another database's now: nothing more goes to it, not even at the stop.
                while !*stop.borrow() {
                    if stop.changed().await.is_err() {
                        break;
                    }
                }
                return self.remote;
            }
            if pending {
                let due = last + self.sync_interval.max(backoff);
                tokio::select! {
                    _ = tokio::time::sleep_until(due.into()) => {}
                    _ = stop.changed() => break,
                }
                last = Instant::now();
                positions.borrow_and_update();
                let was_failing = self.stats.failing();
                match self.ship_pending().await {
                    Ok(_) => {
                        if was_failing {
                            tracing::info!(
                                "replica {}: answers again; what waited in the spool is shipped",
                                self.client.name()
                            );
                        }
                        self.stats.answered(crate::stats::unix_ms());
                        backoff = Duration::ZERO;
                        pending = false;
                        // Caught up: what is captured next may go straight onto the replica
                        // (not while it waits for a snapshot of its own).
                        if let Some(inline) = &self.inline
                            && self.restart.is_none()
                        {
                            inline.open_at(self.remote);
                        }
                    }
                    Err(e) => {
                        self.stats.failed(crate::stats::unix_ms());
                        // Whatever failed, a replica lacking the newest position is behind
                        // from now on if it was not already (the lag and /health see it).
                        if *positions.borrow() > self.remote {
                            self.stats.fell_behind(crate::stats::unix_ms());
                        }
                        backoff = super::startup::jitter(
                            (backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF),
                        );
                        // An outage is a warning (the spool keeps what waits); a refusal
                        // (a key, a bucket) needs a person.
                        if e.is_transient() {
                            tracing::warn!("{e} (retrying in {:.1}s)", backoff.as_secs_f64());
                        } else {
                            tracing::error!("{e} (retrying in {:.1}s)", backoff.as_secs_f64());
                        }
                    }
                }
                if last_retention.elapsed() >= self.retention_check {
                    last_retention = Instant::now();
                    self.retention_pass().await;
                }
                continue;
            }
            // Idle: a probe now and then, so that /health sees a replica that went away while
            // there was nothing to ship (sooner while it is failing, to see it come back).
            let probe_every = if self.stats.failing() {
                PROBE_FAILING
            } else {
                PROBE_IDLE
            };
            let wake = (last.max(probed) + probe_every).min(lineage_checked + lineage_every);
            // Retention and the deletion of replaced files keep their schedule while nothing
            // is shipped: an idle database's replica still sheds what its tiers let go.
            let upkeep = self.upkeep_due(last_retention);
            tokio::select! {
                _ = tokio::time::sleep_until(upkeep.into()) => pending = true,
                _ = tokio::time::sleep_until(wake.into()) => {
                    probed = Instant::now();
                    // A placement that answered meanwhile says as much as a probe, except of
                    // the lineage record (a wiped replica takes uploads all the same).
                    let answered = self.stats.last_ok_ms.load(Ordering::Relaxed);
                    if crate::stats::unix_ms() - answered >= probe_every.as_millis() as i64
                        || lineage_checked.elapsed() >= lineage_every
                    {
                        lineage_checked = Instant::now();
                        self.probe().await;
                        pending |= self.restart.is_some();
                    }
                },
                r = positions.changed() => if r.is_err() { break } else {
                    // Captured just now (this wakes at once): the lag counts from here.
                    if *positions.borrow() > self.remote {
                        self.stats.fell_behind(crate::stats::unix_ms());
                    }
                    pending = true
                },
                // A placement failed: the file is this shipper's to ship.
                _ = Inline::failed_in(self.inline.as_deref()) => {
                    self.stats.fell_behind(crate::stats::unix_ms());
                    pending = true
                },
                _ = stop.changed() => break,
            }
        }
        let flush = async {
            self.ship_pending().await?;
            // Only what its tier lets go: the rest stays restorable, scheduled again at next
            // start (as does what cannot be deleted now: nothing is lost by keeping it).
            if let Err(e) = self.delete_doomed(true).await {
                tracing::warn!("{e}; the replaced files stay until a later run deletes them");
            }
            Ok::<(), ReplicaError>(())
        };
        match tokio::time::timeout(flush_timeout, flush).await {
            Ok(Ok(_)) => {}
            // Nothing is lost either way: the spool keeps it for the next start.
            Ok(Err(e)) if e.is_transient() => tracing::warn!(
                "final sync failed: {e}; unshipped changes stay in the spool and ship on next start"
            ),
            Ok(Err(e)) => tracing::error!(
                "final sync failed: {e}; unshipped changes stay in the spool and ship on next start"
            ),
            Err(_) => tracing::error!(
                "replica {}: final sync did not finish within {}s; unshipped changes stay in the spool and ship on next start",
                self.client.name(),
                flush_timeout.as_secs()
            ),
        }
        self.remote
    }
}

mod presence;
#[cfg(test)]
mod tests;
mod upkeep;
