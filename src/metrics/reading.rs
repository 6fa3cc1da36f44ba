//! One reading of the live counters at one instant: what `/metrics`, `/health` and the state
//! file show, so the three agree, and the lag computed in one place.
//!
//! **Lag** of a replica: the time since the monitor captured the oldest transaction the replica
//! does not hold yet (capture times are the spool files' timestamps, taken when the monitor
//! read the commit from the WAL, at most a `monitor-interval` after it), or 0 when the replica
//! holds the database's newest captured position. A replica not yet reached since start lacks
//! everything from the start on.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::stats::{DbStats, ShipStats};

/// One replica of a [`Source`].
#[derive(Clone)]
pub struct ReplicaSource {
    /// Replica name (the `replica` label).
    pub name: String,
    /// Its configured `sync-interval` (how stale it may be before `/health` says so).
    pub sync_interval: Duration,
    /// Its counters.
    pub stats: Arc<ShipStats>,
}

/// What one database exposes.
#[derive(Clone)]
pub struct Source {
    /// Database path (the `db` label).
    pub db: String,
    /// Its meta directory (where the state file for `memsync status` goes).
    pub meta_dir: PathBuf,
    /// Monitor counters.
    pub stats: Arc<DbStats>,
    /// Replicas.
    pub replicas: Vec<ReplicaSource>,
}

/// A replica at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaReading {
    pub name: String,
    pub sync_interval: Duration,
    /// Highest position it confirmed (0 = none known).
    pub position: u64,
    /// See the module's doc; milliseconds.
    pub lag_ms: i64,
    /// Capture time (Unix ms) of the oldest position it lacks; 0 = none.
    pub behind_since_ms: i64,
    /// When it last answered a whole pass (Unix ms); 0 = never.
    pub last_ok_ms: i64,
    /// When an attempt last failed; 0 = never.
    pub last_err_ms: i64,
    pub uploads: u64,
    pub bytes: u64,
    pub errors: u64,
    /// The database that took the replica over (memsync no longer ships to it).
    pub taken_by: Option<String>,
}

impl ReplicaReading {
    /// It holds the database's newest position.
    pub fn caught_up(&self, db_position: u64) -> bool {
        self.position >= db_position
    }
}

/// A database at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct DbReading {
    pub db: String,
    /// Newest position captured (or resumed from).
    pub position: u64,
    pub replicas: Vec<ReplicaReading>,
}

/// Lag in milliseconds (see the module's doc) of a replica at `rep_pos` whose oldest missing
/// position was captured at `behind_since_ms`, the database being at `db_pos`.
pub fn lag_ms(db_pos: u64, rep_pos: u64, behind_since_ms: i64, now_ms: i64) -> i64 {
    if rep_pos >= db_pos || behind_since_ms == 0 {
        0
    } else {
        (now_ms - behind_since_ms).max(0)
    }
}

/// Reads the counters of `sources` at `now_ms`.
pub fn read(sources: &[Source], now_ms: i64) -> Vec<DbReading> {
    let r = Ordering::Relaxed;
    sources
        .iter()
        .map(|s| {
            let position = s.stats.position.load(r);
            let replicas = s
                .replicas
                .iter()
                .map(|rep| {
                    let st = &rep.stats;
                    let pos = st.position.load(r);
                    let since = st.behind_since_ms.load(r);
                    ReplicaReading {
                        name: rep.name.clone(),
                        sync_interval: rep.sync_interval,
                        position: pos,
                        lag_ms: lag_ms(position, pos, since, now_ms),
                        behind_since_ms: since,
                        last_ok_ms: st.last_ok_ms.load(r),
                        last_err_ms: st.last_err_ms.load(r),
                        uploads: st.uploads.load(r),
                        bytes: st.bytes.load(r),
                        errors: st.errors.load(r),
                        taken_by: st.taken(),
                    }
                })
                .collect();
            DbReading {
                db: s.db.clone(),
                position,
                replicas,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_from_the_oldest_missing_capture_and_is_zero_when_caught_up() {
        // (db position, replica position, behind since, now) → lag
        let table = [
            (5, 5, 0, 10_000, 0),
            (5, 5, 9_000, 10_000, 0),
            (5, 7, 9_000, 10_000, 0),
            (5, 3, 9_000, 10_000, 1_000),
            (5, 3, 0, 10_000, 0),
            (5, 0, 4_000, 10_000, 6_000),
            // A clock that stepped back never makes a negative lag.
            (5, 3, 11_000, 10_000, 0),
        ];
        for (db, rep, since, now, want) in table {
            assert_eq!(
                lag_ms(db, rep, since, now),
                want,
                "{db} {rep} {since} {now}"
            );
        }
    }

    #[test]
    fn a_reading_takes_every_counter() {
        let stats = Arc::new(DbStats::default());
        stats.position.store(9, Ordering::Relaxed);
        let ship = Arc::new(ShipStats::default());
        ship.position.store(4, Ordering::Relaxed);
        ship.set_behind_since(Some(1_000));
        ship.uploads.store(2, Ordering::Relaxed);
        let src = Source {
            db: "/d.db".into(),
            meta_dir: "/.d.db-memsync".into(),
            stats,
            replicas: vec![ReplicaSource {
                name: "s3".into(),
                sync_interval: Duration::from_secs(1),
                stats: ship,
            }],
        };
        let r = read(&[src], 3_500);
        assert_eq!(r[0].position, 9);
        let rep = &r[0].replicas[0];
        assert_eq!((rep.position, rep.lag_ms, rep.uploads), (4, 2_500, 2));
        assert!(!rep.caught_up(9));
    }
}
