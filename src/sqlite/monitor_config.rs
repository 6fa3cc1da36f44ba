//! What configures a database monitor and why it stops: kept apart from the monitor's logic.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use thiserror::Error;

use super::conn::OpenError;
use super::wal::WalError;

/// Settings of one monitored database.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// Database path.
    pub db_path: PathBuf,
    /// Directory for the saved page map (and the sink's spool).
    pub meta_dir: PathBuf,
    /// Busy timeout of memsync's own connections.
    pub busy_timeout: Duration,
    /// Poll fallback when no file event arrives.
    pub monitor_interval: Duration,
    /// Average gap between two spool files: the smallest replica sync-interval. With 0 a pass
    /// runs on every WAL change, and what commits while one runs goes into the next one file.
    pub min_sync_gap: Duration,
    /// Time-based PASSIVE checkpoint.
    pub checkpoint_interval: Duration,
    /// WAL frames that trigger a PASSIVE checkpoint.
    pub min_checkpoint_pages: u32,
    /// WAL frames that trigger the emergency TRUNCATE checkpoint.
    pub truncate_pages: u32,
    /// Upper bound of WAL bytes put in one segment (a transaction is never split).
    pub max_segment_bytes: u64,
    /// Convert a rollback-journal database to WAL instead of refusing it.
    pub convert_to_wal: bool,
    /// zstd level of level-0 segments: fast mode −20, because they are written on the hot path
    /// and memsync's CPU is mostly this and the I/O around it. Level 1 would make them smaller
    /// for clearly more replicator CPU (figures: `docs/measurements.md`).
    pub zstd_level: i32,
    /// zstd level of snapshots, which stay for the retention window: level 1, as compacted
    /// segments (`replicate::sink::CompactionConfig`).
    pub keep_level: i32,
    /// How often to look for an application's checkpoint waiting on memsync right after a
    /// commit; the gap then grows with the quiet time, up to 8 times this (see `run.rs`).
    pub probe_interval: Duration,
    /// How long nothing must be committed before memsync closes its connections (see
    /// `idle.rs`), at first. One second: an application switching out of WAL mode, which
    /// SQLite allows only to the database's sole connection, succeeds when it retries for a
    /// second or two, while a steady writer (commits under a second apart) never pays the
    /// reopen. A writer a second or few apart makes it grow, up to 8 times (`release.rs`).
    pub idle_release: Duration,
    /// Set when memsync is stopping. With it, a full disk under the spool at start is waited
    /// out (retrying with backoff) instead of failing; without it (`-once`), it fails.
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Set when a replica cannot continue from the spool (empty, behind, another history):
    /// the monitor then writes a snapshot of the current position, at start or at its next
    /// pass, because the spool no longer holds one once every replica had it.
    pub snapshot_wanted: Arc<AtomicBool>,
}

impl MonitorConfig {
    /// Defaults matching Litestream's, for `db_path`.
    pub fn new(db_path: PathBuf, meta_dir: PathBuf) -> Self {
        MonitorConfig {
            db_path,
            meta_dir,
            busy_timeout: Duration::from_secs(1),
            monitor_interval: Duration::from_secs(1),
            min_sync_gap: Duration::from_secs(1),
            checkpoint_interval: Duration::from_secs(60),
            min_checkpoint_pages: 1000,
            truncate_pages: 121_359,
            max_segment_bytes: 64 << 20,
            convert_to_wal: false,
            zstd_level: -20,
            keep_level: 1,
            probe_interval: Duration::from_millis(50),
            idle_release: Duration::from_secs(1),
            stop: None,
            snapshot_wanted: Arc::default(),
        }
    }
}

/// Why the monitor stopped.
#[derive(Debug, Error)]
pub enum MonitorError {
    /// The database could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// SQLite failed on memsync's connection.
    #[error("{db}: {source}")]
    Sqlite {
        /// Database.
        db: String,
        /// Error.
        source: rusqlite::Error,
    },
    /// The WAL could not be read.
    #[error("{db}: {source}")]
    Wal {
        /// Database.
        db: String,
        /// Error.
        source: WalError,
    },
    /// Local I/O (database file, spool) failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the path.
        what: String,
        /// Error.
        source: std::io::Error,
    },
    /// A step needing memsync's connections ran while it had stepped aside (a bug).
    #[error("{0}: internal error: no connection open (memsync had stepped aside)")]
    Detached(String),
    /// The database file was deleted or replaced by another file while memsync ran.
    #[error("{0} was deleted or replaced by another file while being replicated; restart memsync")]
    Replaced(String),
}

impl MonitorError {
    /// True when the disk under the spool (or its quota) is full: retried, never fatal.
    pub fn is_disk_full(&self) -> bool {
        crate::fsutil::is_disk_full(self)
    }

    /// True for SQLITE_BUSY on memsync's own connection: another connection holds the lock.
    pub fn is_busy(&self) -> bool {
        matches!(self, MonitorError::Sqlite { source, .. }
            if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy))
    }
}
