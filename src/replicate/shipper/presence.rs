//! Whether a replica is still there and still this database's: a read of its lineage record
//! while idle (for `/health`), and now and then under load too ([`LINEAGE_CHECK`]). A replica
//! wiped (or its record deleted) while memsync ships to it takes every upload all the same,
//! and the files restore nothing (no snapshot, no lineage): gone, the replica is started over
//! as at a start, the record written again, and a fresh snapshot. A record naming another
//! database (taken over) stops this replica's shipping for good.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::replica::ReplicaError;
use crate::replicate::catchup::Restart;

use super::Shipper;

/// How often the lineage record is looked at while uploads succeed (they say nothing of it):
/// one small GET per replica a minute, `MEMSYNC_LINEAGE_CHECK` (a duration) overriding. A
/// minute bounds how long a replicator that was taken over interleaves its files with the new
/// owner's.
pub(super) fn lineage_check() -> Duration {
    std::env::var("MEMSYNC_LINEAGE_CHECK")
        .ok()
        .and_then(|v| humantime::parse_duration(v.trim()).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(LINEAGE_CHECK)
}

const LINEAGE_CHECK: Duration = Duration::from_secs(60);

/// Lineage checks after a fresh claim that also sweep out another replicator's files: its
/// own check is at most [`LINEAGE_CHECK`] apart, so a few cover a late one.
pub(super) const SWEEPS: u8 = 3;

impl Shipper {
    /// An idle probe; its outcome goes to the stats, and into the log when it changes.
    pub(super) async fn probe(&mut self) {
        let was_failing = self.stats.failing();
        let now = crate::stats::unix_ms();
        match self.client.get_raw(replica_formats::LINEAGE_OBJECT).await {
            Ok(Some(bytes)) => {
                if was_failing {
                    tracing::info!("replica {}: answers again", self.client.name());
                }
                match replica_formats::Lineage::parse(&bytes) {
                    // Only a record that reads, and names another database, stops the
                    // shipping: an answer that is not a record (a proxy's error page with a
                    // 200) is a failed look, not a takeover.
                    None => {
                        tracing::warn!(
                            "replica {}: `{}` does not read as a lineage record (an answer from something other than the replica?)",
                            self.client.name(),
                            replica_formats::LINEAGE_OBJECT
                        );
                        self.stats.failed(now);
                    }
                    Some(l) if l.id != self.lineage.id => {
                        self.stats.answered(now);
                        self.taken_over(l).await;
                    }
                    Some(_) => {
                        self.stats.answered(now);
                        if self.sweeps > 0 {
                            self.sweeps -= 1;
                            self.sweep_foreign().await;
                        }
                    }
                }
            }
            Ok(None) | Err(ReplicaError::NotFound { .. }) => {
                if let Err(e) = self.start_over().await {
                    tracing::warn!("{e}");
                    self.stats.failed(now);
                }
            }
            Err(e) => {
                if !was_failing {
                    tracing::warn!("{e}");
                }
                self.stats.failed(now);
            }
        }
    }

    /// The replica's lineage record names another database (one started with `-takeover`, or
    /// one that claimed the place after it was wiped): this shipper stops for good, since
    /// segments of two databases interleaved at one place restore neither. Said at ERROR and
    /// at `/health`; what this database still captures stays in the spool for its other
    /// replicas.
    async fn taken_over(&mut self, record: replica_formats::Lineage) {
        let owner = format!("{} (lineage {})", record.source(), record.id);
        let name = self.client.name().to_owned();
        tracing::error!(
            "replica {name}: its lineage record now names database {owner}, not this one: another replicator took this place over (`-takeover`, or the replica was wiped and claimed); nothing more is shipped to it (point this replica elsewhere, or take it back with -takeover)",
        );
        if let Some(inline) = &self.inline {
            let (placed, _) = inline.take_over().await;
            self.known.extend(placed);
        }
        self.stats.taken_over(owner);
        // What this replicator shipped there since the new owner claimed it lies among the new
        // owner's files; that one sweeps them out only while it runs, so they go now too.
        // Its own: what it tracks, and the files a merge replaced that wait out their tier.
        let doomed: std::collections::HashSet<_> = self
            .doomed
            .iter()
            .flat_map(|(_, _, k)| k.iter())
            .copied()
            .collect();
        let mine: Vec<_> = match self.client.list().await {
            Ok(listed) => listed
                .into_iter()
                .filter(|k| self.known.contains(k) || doomed.contains(k))
                .collect(),
            Err(e) => {
                tracing::warn!("replica {name}: listing for this database's files: {e}");
                Vec::new()
            }
        };
        self.delete_said(
            &mine,
            "files this database had shipped there since it was taken over",
        )
        .await;
    }

    /// Deletes the files on the replica this replicator did not write: neither listed at its
    /// start, nor shipped or placed since, nor in its spool, nor waiting out their tier. Only
    /// while the place is newly claimed ([`SWEEPS`] lineage checks): the replicator it was
    /// taken from (or that shipped to it before it was wiped) goes on shipping until it sees
    /// this database's record, and its files, interleaved with this database's positions, made
    /// the replica restore neither (found by a tester).
    async fn sweep_foreign(&mut self) {
        let name = self.client.name().to_owned();
        // Placement closes meanwhile: what it placed joins `known` first.
        if let Some(inline) = &self.inline {
            let (placed, remote) = inline.take_over().await;
            self.known.extend(placed);
            self.remote = self.remote.max(remote);
        }
        let found = match (self.client.list().await, self.spool.keys()) {
            (Ok(listed), Ok(spooled)) => {
                let spooled: std::collections::HashSet<_> = spooled.into_iter().collect();
                let doomed: std::collections::HashSet<_> =
                    self.doomed.iter().flat_map(|(_, _, k)| k.iter()).collect();
                listed
                    .into_iter()
                    .filter(|k| {
                        !self.known.contains(k) && !spooled.contains(k) && !doomed.contains(k)
                    })
                    .collect::<Vec<_>>()
            }
            (Err(e), _) => {
                tracing::debug!("replica {name}: listing for files of another replicator: {e}");
                Vec::new()
            }
            (_, Err(e)) => {
                tracing::debug!("replica {name}: spool: {e}");
                Vec::new()
            }
        };
        self.delete_said(
            &found,
            "files another replicator wrote here after this database claimed the place",
        )
        .await;
        if let Some(inline) = &self.inline
            && self.restart.is_none()
        {
            inline.open_at(self.remote);
        }
    }

    /// Deletes `keys` (`what` they are), saying so at WARN; a failure is said too and left:
    /// the files only cost space and confuse restores of the newest state until a later look.
    async fn delete_said(&self, keys: &[replica_formats::ObjectKey], what: &str) {
        if keys.is_empty() {
            return;
        }
        let name = self.client.name();
        match self.client.delete(keys).await {
            Ok(()) => tracing::warn!("replica {name}: deleted {} {what}", keys.len()),
            Err(e) => tracing::warn!(
                "replica {name}: {} {what} could not be deleted: {e}",
                keys.len()
            ),
        }
    }

    /// Starts the replica over after its lineage record was found gone: the record is written
    /// again, what the replica holds listed afresh, and a snapshot asked for.
    pub(super) async fn start_over(&mut self) -> Result<(), ReplicaError> {
        tracing::warn!(
            "replica {}: its lineage record is gone (the replica was wiped or replaced while replicating); starting it over with a fresh snapshot",
            self.client.name()
        );
        if let Some(inline) = &self.inline {
            inline.take_over().await;
        }
        crate::replicate::lineage::claim(&self.client, &self.lineage, false)
            .await
            .map_err(|e| ReplicaError::Local {
                replica: self.client.name().to_owned(),
                path: "lineage".into(),
                source: std::io::Error::other(e.to_string()),
            })?;
        self.known = self.client.list().await?.into_iter().collect();
        self.remote = None;
        self.since = None;
        self.asked = false;
        self.restart = Some(Restart::Empty);
        self.sweeps = SWEEPS;
        self.stats.position.store(0, Ordering::Relaxed);
        self.confirmed.send_replace(None);
        self.ask_for_snapshot();
        Ok(())
    }
}
