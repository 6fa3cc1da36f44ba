//! What a replica sheds: the files a compacted one replaces, once their tier's retention is
//! over (and a grace for restores reading them), and what lies outside `retention`. Runs on the
//! shipper's schedule, idle or not.

use std::time::{Duration, Instant};

use replica_formats::{ObjectKey, retention_victims};

use super::{DELETE_GRACE, Shipper};
use crate::replica::ReplicaError;

/// First pause after a failed deletion of replaced files.
const DELETE_RETRY_FIRST: Duration = Duration::from_secs(30);
/// Longest pause between attempts at such a deletion.
const DELETE_RETRY_MAX: Duration = Duration::from_secs(600);

impl Shipper {
    /// After uploading a compacted segment, schedules the deletion of the lower-level segments
    /// it replaces.
    pub(super) async fn drop_covered(&mut self, key: &ObjectKey) -> Result<(), ReplicaError> {
        if key.is_snapshot() || key.level().is_none_or(|l| l.get() == 0) {
            return Ok(());
        }
        // Lower levels, and pieces of a busy bucket consolidated at the same level.
        let covered: Vec<ObjectKey> = self
            .known
            .iter()
            .filter(|k| !k.is_snapshot() && k.level() <= key.level() && *k != key)
            .filter(|k| k.min_txid() >= key.min_txid() && k.max_txid() <= key.max_txid())
            .copied()
            .collect();
        let now = Instant::now();
        let wall = crate::sqlite::capture::now_ms().get();
        for k in covered {
            self.known.remove(&k);
            // A piece of a bucket adds nothing to its tier's points: it goes after the grace.
            let keep = match k.level() {
                l if l == key.level() => Duration::ZERO,
                l => self.tiers.keep(l.map_or(0, |l| l.get())),
            }
            .min(self.retention);
            let left = (k.timestamp().get() + keep.as_millis() as i64 - wall).max(0);
            let tier = now + Duration::from_millis(left as u64);
            let grace = now + DELETE_GRACE;
            match self.doomed.iter_mut().find(|(t, _, _)| *t == tier) {
                Some((_, _, keys)) => keys.push(k),
                None => self.doomed.push((tier, grace, vec![k])),
            }
        }
        Ok(())
    }

    /// [`Self::delete_doomed`] during shipping: a failure is said (once per episode) and
    /// tried again after a pause that grows to [`DELETE_RETRY_MAX`], never failing the pass:
    /// a store that refuses DELETE (an append-only bucket, a WebDAV server without it) held
    /// every later upload back, for good.
    pub(super) async fn shed_doomed(&mut self) {
        let now = Instant::now();
        if self.deletes_held.is_some_and(|(at, _)| now < at) {
            return;
        }
        match self.delete_doomed(false).await {
            Ok(()) => {
                if self.deletes_held.take().is_some() {
                    tracing::info!("replica {}: deleting again", self.client.name());
                }
            }
            Err(e) => {
                let pause = match self.deletes_held {
                    None => {
                        tracing::warn!(
                            "{e}; new files are still shipped, the replaced ones stay (retrying the deletion later)"
                        );
                        DELETE_RETRY_FIRST
                    }
                    Some((_, p)) => (p * 2).min(DELETE_RETRY_MAX),
                };
                self.deletes_held = Some((now + pause, pause));
            }
        }
    }

    /// Deletes the replaced files whose time is up; `shutdown` skips the grace (no restore of
    /// this process reads them any more; the rest is scheduled again at next start).
    pub async fn delete_doomed(&mut self, shutdown: bool) -> Result<(), ReplicaError> {
        let now = Instant::now();
        let is_due = |(tier, grace, _): &(Instant, Instant, Vec<ObjectKey>)| {
            *tier <= now && (shutdown || *grace <= now)
        };
        let due: Vec<ObjectKey> = self
            .doomed
            .iter()
            .filter(|d| is_due(d))
            .flat_map(|(_, _, keys)| keys.iter().copied())
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        self.client.delete(&due).await?;
        self.doomed.retain(|d| !is_due(d));
        Ok(())
    }

    /// A retention pass of the shipping loop, said in the log. What is not deleted now is
    /// tried at the next check: an outage is a warning, as it is for uploads.
    pub(super) async fn retention_pass(&mut self) {
        match self.enforce_retention().await {
            Ok(0) => {}
            Ok(n) => tracing::info!("{}: retention removed {n} files", self.client.name()),
            Err(e) if e.is_transient() => tracing::warn!(
                "retention: {e}; tried again in {}s",
                self.retention_check.as_secs()
            ),
            Err(e) => tracing::error!("retention: {e}"),
        }
    }

    /// Deletes what is older than the retention window, keeping everything a restore to any
    /// point inside the window needs: the newest snapshot taken before the window starts, and
    /// every file after it. Nothing is deleted unless the chain from that snapshot to the
    /// replica's newest position is intact.
    pub async fn enforce_retention(&mut self) -> Result<usize, ReplicaError> {
        let now = replica_formats::Timestamp::from_millis(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        );
        let keys: Vec<ObjectKey> = self.known.iter().cloned().collect();
        let doomed = retention_victims(&keys, now, self.retention);
        if doomed.is_empty() {
            return Ok(0);
        }
        self.client.delete(&doomed).await?;
        for k in &doomed {
            self.known.remove(k);
        }
        Ok(doomed.len())
    }

    /// When retention or a replaced file's deletion is next due (the shipping pass runs both).
    pub(super) fn upkeep_due(&self, last_retention: Instant) -> Instant {
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        let retention = last_retention
            .checked_add(self.retention_check)
            .unwrap_or(far)
            .min(far);
        let held = self.deletes_held.map(|(at, _)| at);
        self.doomed
            .iter()
            .map(|(tier, grace, _)| (*tier).max(*grace).max(held.unwrap_or(*tier)))
            .fold(retention, Instant::min)
    }
}
