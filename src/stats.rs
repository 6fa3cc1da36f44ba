//! Counters a running replicator keeps per database, for logs, metrics and the benchmark.

use std::sync::atomic::AtomicU64;

/// Monotonic counters; all `Relaxed`, they are statistics, not synchronisation.
#[derive(Debug, Default)]
pub struct DbStats {
    /// Last position written to the spool.
    pub position: AtomicU64,
    /// SQLite transactions shipped.
    pub transactions: AtomicU64,
    /// Bytes written to the spool.
    pub spooled_bytes: AtomicU64,
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
