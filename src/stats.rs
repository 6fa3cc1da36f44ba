//! Counters a running replicator keeps per database, for logs, metrics and the benchmark, and
//! those a memory-sync loop keeps ([`SyncStats`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Milliseconds since the Unix epoch (0 if the clock is before it): the unit of every
/// timestamp kept here, comparable with the capture times in object keys.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Monotonic counters; all `Relaxed`, they are statistics, not synchronisation.
#[derive(Debug, Default)]
pub struct DbStats {
    /// Last position written to the spool (or resumed from at start).
    pub position: AtomicU64,
    /// SQLite transactions shipped.
    pub transactions: AtomicU64,
    /// Bytes written to the spool.
    pub spooled_bytes: AtomicU64,
    /// Bytes the spool holds now: measured once at start, then tracked as files are written
    /// and pruned (so a scrape never walks the directory).
    pub spool_bytes: AtomicU64,
    /// Snapshots taken.
    pub snapshots: AtomicU64,
    /// Resynchronisations (diffs after a discontinuity).
    pub resyncs: AtomicU64,
    /// Checkpoints run by memsync.
    pub checkpoints: AtomicU64,
    /// Microseconds spent in memsync's checkpoints.
    pub checkpoint_us: AtomicU64,
    /// Microseconds memsync held the write lock in total.
    pub write_lock_us: AtomicU64,
    /// Times memsync stepped aside for an application's blocking checkpoint.
    pub yields: AtomicU64,
    /// Microseconds memsync waited, read lock released, for those checkpoints.
    pub yield_us: AtomicU64,
    /// Times memsync closed its connections while the database was idle (`idle.rs`).
    pub idle_releases: AtomicU64,
    /// Level-0 compactions.
    pub compactions: AtomicU64,
    /// Failed passes (retried).
    pub errors: AtomicU64,
}

impl DbStats {
    /// Files left the spool: `bytes` fewer held (never below 0, should a file have been
    /// counted twice when a write replaced it).
    pub fn spool_shrunk(&self, bytes: u64) {
        let _ = self
            .spool_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(bytes))
            });
    }
}

/// Per-replica counters.
#[derive(Debug)]
pub struct ShipStats {
    /// Highest position the replica confirmed.
    pub position: AtomicU64,
    /// Files uploaded.
    pub uploads: AtomicU64,
    /// Bytes uploaded.
    pub bytes: AtomicU64,
    /// Failed attempts.
    pub errors: AtomicU64,
    /// Capture time (Unix ms) of the oldest spooled file holding a position this replica
    /// lacks, as its shipper last saw; 0 when it lacked nothing then. Starts at the time the
    /// counters are made: a replica is taken to lack everything until its shipper first looks.
    pub behind_since_ms: AtomicI64,
    /// When (Unix ms) the replica last answered a whole shipping pass, an idle probe, or was
    /// found at its start; 0 = never.
    pub last_ok_ms: AtomicI64,
    /// When (Unix ms) an attempt last failed; 0 = never.
    pub last_err_ms: AtomicI64,
    /// The database whose lineage record replaced this one's on the replica, once its shipper
    /// found it there: it ships nothing more to it.
    pub taken_by: std::sync::Mutex<Option<String>>,
}

impl Default for ShipStats {
    fn default() -> Self {
        ShipStats {
            position: AtomicU64::new(0),
            uploads: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            behind_since_ms: AtomicI64::new(unix_ms()),
            last_ok_ms: AtomicI64::new(0),
            last_err_ms: AtomicI64::new(0),
            taken_by: std::sync::Mutex::new(None),
        }
    }
}

impl ShipStats {
    /// The replica lacks positions since `since_ms` (Unix ms), or nothing (`None`).
    pub fn set_behind_since(&self, since_ms: Option<i64>) {
        self.behind_since_ms
            .store(since_ms.unwrap_or(0), Ordering::Relaxed);
    }

    /// A new position was captured while the replica lacked nothing: it lacks it from now.
    pub fn fell_behind(&self, now_ms: i64) {
        let _ = self.behind_since_ms.compare_exchange(
            0,
            now_ms.max(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// The replica answered (a whole pass shipped, an idle probe, or it was listed at start).
    pub fn answered(&self, now_ms: i64) {
        self.last_ok_ms.store(now_ms, Ordering::Relaxed);
    }

    /// An attempt failed.
    pub fn failed(&self, now_ms: i64) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.last_err_ms.store(now_ms, Ordering::Relaxed);
    }

    /// The replica now belongs to the database `owner` (see `taken_by`).
    pub fn taken_over(&self, owner: String) {
        *self.taken_by.lock().unwrap_or_else(|p| p.into_inner()) = Some(owner);
    }

    /// Who took the replica over, if anyone did.
    pub fn taken(&self) -> Option<String> {
        self.taken_by
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The last attempt failed (and nothing answered since).
    pub fn failing(&self) -> bool {
        self.last_err_ms.load(Ordering::Relaxed) > self.last_ok_ms.load(Ordering::Relaxed)
    }
}

/// Upper bounds (seconds) of the sync-round duration histogram's buckets (`+Inf` added).
pub const SYNC_DURATION_BUCKETS: [f64; 10] =
    [0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// What one memory-sync round (pull → stage → push) did, as a loop records it. The figures
/// come from the round's reports: `pulled` = the pull's added + changed + removed, `pushed` =
/// the push's `pushed()`, `conflicts` = the pull's and the push's, `failed_rows` = rows the
/// server refused (they stay `failed` in staging).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncRound {
    /// Why the round did not finish (server unreachable, damaged staging, ...); `None` when it
    /// finished, leftovers (failed rows, open conflicts) included.
    pub error: Option<String>,
    /// Memories the pull brought (added, changed or removed locally).
    pub pulled: u64,
    /// Staged rows the server confirmed.
    pub pushed: u64,
    /// Conflicts found by the pull and the push.
    pub conflicts: u64,
    /// Rows the server refused.
    pub failed_rows: u64,
    /// How long the round took.
    pub duration: Duration,
}

/// Memory-sync counters of a long-running process (`memsync run`), shown at `/metrics` and
/// weighed by `/health` when present.
#[derive(Debug, Default)]
pub struct SyncStats {
    /// Rounds ended, finished or not.
    pub rounds: AtomicU64,
    /// Rounds that did not finish.
    pub failures: AtomicU64,
    /// Memories pulled, in total.
    pub pulled: AtomicU64,
    /// Rows pushed, in total.
    pub pushed: AtomicU64,
    /// Conflicts found, in total.
    pub conflicts: AtomicU64,
    /// Rows the server refused, in total.
    pub failed_rows: AtomicU64,
    /// Duration of the last round, in milliseconds.
    pub last_duration_ms: AtomicU64,
    /// Sum of every round's duration, in milliseconds.
    pub duration_sum_ms: AtomicU64,
    /// Rounds per duration bucket ([`SYNC_DURATION_BUCKETS`], then one past the last), not
    /// cumulative.
    pub duration_buckets: [AtomicU64; SYNC_DURATION_BUCKETS.len() + 1],
    /// When (Unix ms) the last finished round ended; 0 = none yet.
    pub last_success_ms: AtomicI64,
    /// When (Unix ms) the last round ended; 0 = none yet.
    pub last_round_ms: AtomicI64,
    /// Whether the last round finished.
    pub last_ok: AtomicBool,
    /// Why the last round did not finish (for `/health`).
    pub last_error: Mutex<Option<String>>,
}

impl SyncStats {
    /// Records a round that ended now.
    pub fn record_round(&self, round: &SyncRound) {
        self.record_round_at(round, unix_ms());
    }

    /// Records a round that ended at `now_ms` (Unix ms).
    pub fn record_round_at(&self, round: &SyncRound, now_ms: i64) {
        let r = Ordering::Relaxed;
        self.rounds.fetch_add(1, r);
        self.pulled.fetch_add(round.pulled, r);
        self.pushed.fetch_add(round.pushed, r);
        self.conflicts.fetch_add(round.conflicts, r);
        self.failed_rows.fetch_add(round.failed_rows, r);
        let ms = round.duration.as_millis() as u64;
        self.last_duration_ms.store(ms, r);
        self.duration_sum_ms.fetch_add(ms, r);
        let secs = round.duration.as_secs_f64();
        let bucket = SYNC_DURATION_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(SYNC_DURATION_BUCKETS.len());
        self.duration_buckets[bucket].fetch_add(1, r);
        self.last_round_ms.store(now_ms, r);
        self.last_ok.store(round.error.is_none(), r);
        match &round.error {
            None => self.last_success_ms.store(now_ms, r),
            Some(_) => {
                self.failures.fetch_add(1, r);
            }
        }
        if let Ok(mut e) = self.last_error.lock() {
            *e = round.error.clone();
        }
    }

    /// Why the last round failed, if it did; `None` after a finished round or before any.
    pub fn failing(&self) -> Option<String> {
        if self.rounds.load(Ordering::Relaxed) == 0 || self.last_ok.load(Ordering::Relaxed) {
            return None;
        }
        let why = self.last_error.lock().ok().and_then(|e| e.clone());
        Some(why.unwrap_or_else(|| "unknown error".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_lands_in_its_bucket_and_the_last_one_decides() {
        let s = SyncStats::default();
        assert_eq!(s.failing(), None);
        s.record_round_at(
            &SyncRound {
                pulled: 3,
                pushed: 2,
                conflicts: 1,
                duration: Duration::from_millis(700),
                ..SyncRound::default()
            },
            1_000,
        );
        s.record_round_at(
            &SyncRound {
                error: Some("server unreachable".into()),
                duration: Duration::from_secs(1000),
                ..SyncRound::default()
            },
            2_000,
        );
        let b: Vec<u64> = s
            .duration_buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        assert_eq!(b, [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(s.rounds.load(Ordering::Relaxed), 2);
        assert_eq!(s.failures.load(Ordering::Relaxed), 1);
        assert_eq!(s.last_success_ms.load(Ordering::Relaxed), 1_000);
        assert_eq!(s.failing().as_deref(), Some("server unreachable"));
        s.record_round_at(&SyncRound::default(), 3_000);
        assert_eq!(s.failing(), None);
    }

    #[test]
    fn the_spool_gauge_never_goes_below_zero() {
        let s = DbStats::default();
        s.spool_bytes.store(10, Ordering::Relaxed);
        s.spool_shrunk(4);
        assert_eq!(s.spool_bytes.load(Ordering::Relaxed), 6);
        s.spool_shrunk(40);
        assert_eq!(s.spool_bytes.load(Ordering::Relaxed), 0);
    }
}
