//! Whether a replica is still there: a probe of its lineage record while idle (for `/health`),
//! and now and then under load too ([`LINEAGE_CHECK`]): a replica wiped (or its record deleted)
//! while memsync ships to it takes every upload all the same, and the files restore nothing (no
//! snapshot, no lineage). Gone, the replica is started over as at a start: the record written
//! again, and a fresh snapshot.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::replica::ReplicaError;
use crate::replicate::catchup::Restart;

use super::Shipper;

/// How often the lineage record is looked at while uploads succeed (they say nothing of it):
/// one HEAD per replica every few minutes, `MEMSYNC_LINEAGE_CHECK` (a duration) overriding.
pub(super) fn lineage_check() -> Duration {
    std::env::var("MEMSYNC_LINEAGE_CHECK")
        .ok()
        .and_then(|v| humantime::parse_duration(v.trim()).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(LINEAGE_CHECK)
}

const LINEAGE_CHECK: Duration = Duration::from_secs(5 * 60);

impl Shipper {
    /// An idle probe; its outcome goes to the stats, and into the log when it changes.
    pub(super) async fn probe(&mut self) {
        let was_failing = self.stats.failing();
        let now = crate::stats::unix_ms();
        match self.client.probe().await {
            Ok(()) => {
                if was_failing {
                    tracing::info!("replica {}: answers again", self.client.name());
                }
                self.stats.answered(now);
            }
            Err(ReplicaError::NotFound { .. }) => {
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
        self.stats.position.store(0, Ordering::Relaxed);
        self.confirmed.send_replace(None);
        self.ask_for_snapshot();
        Ok(())
    }
}
