//! The database monitor: follows the WAL, writes what was committed through its [`Sink`] (the
//! spool, in `replicate/`), and owns checkpointing while it runs.
//!
//! # Why nothing committed can be lost
//! memsync holds a read transaction `R` on its own connection. While any reader holds a WAL read
//! lock, SQLite cannot restart the WAL over frames (a restart needs every reader gone, or, for a
//! reader on read-mark 0, it cannot backfill frames appended after that reader began). So frames
//! committed after `R` began stay readable until `R` is released. `R` is only ever (re)started
//! while memsync also holds the write lock `W` (`BEGIN IMMEDIATE` on a second connection, rolled
//! back right after; no table is written) and has copied every committed frame: the state is
//! *protected*. While protected, any WAL restart memsync observes happened with nothing uncopied,
//! and the next generation is read from its first frame. Whenever `R` had to be released without
//! that guarantee (an application's blocking checkpoint, an emergency TRUNCATE, a restart of
//! memsync), the monitor *resynchronises*: it reads the database and ships exactly the pages whose
//! hash differs from the replicated state ([`super::pagemap::PageMap`]). Nothing is lost, and
//! nothing is re-uploaded that the replica already has. After stepping aside for an application's
//! checkpoint it first tries a cheaper proof: SQLite's WAL index counts commits and the WAL salt
//! counts restarts, so when exactly one restart happened and the new generation holds exactly the
//! commits made since memsync's last read, reading on from its first frame misses nothing
//! ([`super::reader::Source::continue_after`]).
//!
//! The same proof lets memsync step aside while the database is idle (`idle.rs`): with every
//! commit up to the WAL index's last frame spooled and nothing committed for `idle_release`, it
//! keeps that index header as its mark and closes both connections (holding no lock, the
//! application may even leave WAL mode). On the next change it reopens, and under the write lock
//! either proves from the mark that the WAL still holds every commit made since, or
//! resynchronises; a database that left WAL mode is resynchronised when it is back, or at
//! shutdown, read under a rollback-mode read lock.
//!
//! New commits are found through SQLite's WAL index (`walindex.rs`), which names the last
//! committed frame and each frame's page, so only the newest frame of each changed page is read
//! (and verified); the full checksum scan of every frame is the fallback.
//!
//! # Where each concern lives
//! - `session.rs`: the connections, the read transaction and the brief write lock.
//! - `cursor.rs`: the capture position, its page map, frames read but not yet written.
//! - `capture/`: turning frames and database reads into segments, snapshots and resyncs
//!   (`Capture`: the database view, the cursor, the sink); `snapshot.rs` runs the latter two
//!   under the write lock.
//! - `checkpoint.rs`: when a checkpoint is due (pure) and how it runs without losing frames.
//! - `yielding.rs`, `idle.rs`: stepping aside for an application's checkpoint, or while idle.
//! - `reader/`: the consistent view of the database; `reader/continuity.rs` decides (pure)
//!   whether the WAL still holds every commit since a known point.
//! - `recover.rs`: startup; `run.rs`: the loop that decides when each step runs.
//! - `sink.rs`: the one seam to `replicate/`, which owns compaction and the snapshot cadence.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use replica_formats::TxId;

pub use super::monitor_config::{MonitorConfig, MonitorError};

use super::capture::{Capture, CaptureSettings};
use super::checkpoint::CheckpointPolicy;
use super::conn;
use super::pacer::SyncPacer;
use super::reader::Source;
use super::session::{Conns, Session};
use super::sink::Sink;
use super::wal::WalError;
use crate::stats::DbStats;

/// One monitored database.
pub struct Monitor {
    pub(super) cfg: MonitorConfig,
    /// The database view, the capture cursor and the sink (see `capture/`).
    pub(super) cap: Capture,
    /// memsync's connections and the locks it holds (see `session.rs`).
    pub(super) session: Session,
    /// Set while memsync has stepped aside.
    pub(super) away: Option<super::idle::Away>,
    /// How long a quiet database keeps the connections (see `release.rs`).
    pub(super) release: super::release::ReleaseDelay,
    /// When a checkpoint is due (see `checkpoint.rs`).
    pub(super) checkpoints: CheckpointPolicy,
    /// When the next sync may run (see `pacer.rs`).
    pub(super) pacer: SyncPacer,
    pub(super) stats: Arc<DbStats>,
    ino: (u64, u64),
}

impl Monitor {
    /// Opens the database and brings the spool up to date with it: resumes where the spool
    /// stopped when the WAL still holds that position, resynchronises against the saved page map
    /// when it does not, and writes a snapshot when neither is possible. `floor` is the highest
    /// position any replica already holds; new positions are above it. Every file goes to
    /// `sink`, which already holds what earlier runs wrote.
    pub fn start(
        cfg: MonitorConfig,
        floor: Option<TxId>,
        mut sink: Box<dyn Sink>,
        stats: Arc<DbStats>,
    ) -> Result<Self, MonitorError> {
        conn::check_file(&cfg.db_path)?;
        let w = conn::open(&cfg.db_path, cfg.busy_timeout)?;
        conn::ensure_wal(&w, &cfg.db_path, cfg.convert_to_wal)?;
        let r = conn::open(&cfg.db_path, cfg.busy_timeout)?;
        let io = |what: String| move |source| MonitorError::Io { what, source };
        let src =
            Source::open(&cfg.db_path).map_err(io(format!("reading {}", cfg.db_path.display())))?;
        sink.prepare()
            .map_err(io(format!("creating spool in {}", cfg.meta_dir.display())))?;
        let ino = crate::platform::file_id(&cfg.db_path)
            .map_err(io(format!("stat {}", cfg.db_path.display())))?;
        let cap = Capture::new(src, sink, stats.clone(), CaptureSettings::new(&cfg));
        let pacer = SyncPacer::new(cfg.min_sync_gap, Instant::now());
        let session = Session::new(&cfg.db_path, cfg.busy_timeout, Conns { r, w });
        let checkpoints = CheckpointPolicy::new(&cfg, Instant::now());
        let release = super::release::ReleaseDelay::new(cfg.idle_release);
        let mut m = Monitor {
            cfg,
            cap,
            session,
            away: None,
            release,
            checkpoints,
            pacer,
            stats,
            ino,
        };
        m.recover_waiting(floor)?;
        Ok(m)
    }

    /// Last position written to the spool.
    pub fn position(&self) -> Option<TxId> {
        self.cap.cur.pos
    }

    /// Final bookkeeping: release the read transaction and save the page map so the next start
    /// can resynchronise cheaply.
    pub fn shutdown(&mut self) {
        self.session.release_read();
        let st = &self.stats;
        let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        tracing::info!(
            "{}: stopped at position {:016x}: {} transactions, {} bytes spooled, {} snapshots, {} resyncs, {} checkpoints, {} compactions, {} yields to application checkpoints ({} ms), write lock held {} ms in total, {} idle releases",
            self.cfg.db_path.display(),
            self.cap.cur.pos.map_or(0, TxId::get),
            g(&st.transactions),
            g(&st.spooled_bytes),
            g(&st.snapshots),
            g(&st.resyncs),
            g(&st.checkpoints),
            g(&st.compactions),
            g(&st.yields),
            g(&st.yield_us) / 1000,
            g(&st.write_lock_us) / 1000,
            g(&st.idle_releases)
        );
        self.cap.save_map(true);
        super::recover::mark_stopped(&self.cfg.meta_dir);
        self.merge_wal_at_exit();
    }

    /// Reads what was committed since the last call and writes it to the spool; true if it
    /// spooled anything.
    pub fn sync(&mut self) -> Result<bool, MonitorError> {
        self.paced(|m| {
            if !m.attach(false)? {
                return Ok(());
            }
            if !m.cap.cur.needs_resync {
                m.drain_wal()?;
            }
            if m.cap.cur.needs_resync {
                m.resync()?;
            }
            Ok(())
        })
    }

    /// Runs `f` while holding the write lock, then restarts the read transaction before
    /// releasing it: afterwards every committed frame has been seen by `f`'s caller and all
    /// later frames are protected. The write lock is held only for `f` and a `BEGIN`.
    pub(super) fn with_write_lock<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, MonitorError>,
    ) -> Result<T, MonitorError> {
        self.session.begin_immediate()?;
        self.locked(f)
    }

    /// [`Self::with_write_lock`] if the lock is free right now; `None` if another connection
    /// holds it.
    pub(super) fn try_write_lock<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, MonitorError>,
    ) -> Result<Option<T>, MonitorError> {
        match self.session.try_begin_immediate()? {
            true => self.locked(f).map(Some),
            false => Ok(None),
        }
    }

    /// The body of a write-locked section: `f`, the read transaction restarted, the lock
    /// released.
    fn locked<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, MonitorError>,
    ) -> Result<T, MonitorError> {
        let t0 = Instant::now();
        let res = f(self).and_then(|v| {
            self.session.restart_read()?;
            Ok(v)
        });
        let rb = self.session.rollback_write();
        self.stats
            .write_lock_us
            .fetch_add(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
        let v = res?;
        rb?;
        self.session.mark_protected();
        Ok(v)
    }

    /// Runs `f`; true if it spooled anything. Only then does it spend from the pacing budget
    /// (and start uploads): the idle poll every monitor-interval used to make the next commit
    /// wait up to a whole sync interval.
    pub(super) fn paced(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<(), MonitorError>,
    ) -> Result<bool, MonitorError> {
        let before = self.cap.cur.pos;
        let res = f(self);
        let spooled = self.cap.cur.pos != before;
        if spooled {
            self.pacer.take(Instant::now());
        }
        res.map(|()| spooled)
    }

    /// Polls the WAL until nothing new is committed and writes it as one segment. A restart that
    /// cannot be proven lossless only sets `needs_resync`: callers may hold the write lock, and
    /// the resynchronisation takes it itself.
    pub(super) fn drain_wal(&mut self) -> Result<(), MonitorError> {
        self.gather_wal()?;
        self.cap.write_pending()
    }

    /// Gathers what the WAL committed (see [`Capture::gather_wal`]); a WAL restart seen there
    /// starts the checkpoint thresholds afresh.
    pub(super) fn gather_wal(&mut self) -> Result<(), MonitorError> {
        if self.cap.gather_wal(self.session.protected())? {
            // A restarted WAL may be another database's (one moved over this one): nothing
            // gathered after the restart is written before the file is known to be the same.
            self.check_replaced()?;
            self.checkpoints.wal_restarted();
        }
        Ok(())
    }

    /// The sink's housekeeping between passes (compaction, in `replicate/`), and the snapshot
    /// it may call for. With `wait` (shutdown), whatever it runs is finished first.
    pub fn maintain(&mut self, wait: bool) -> Result<(), MonitorError> {
        while self
            .cap
            .sink
            .maintain(self.cap.cur.shape(), wait)
            .map_err(|e| self.io_err(e.what, e.source))?
        {
            self.snapshot_current()?;
        }
        Ok(())
    }

    /// `Err(Replaced)` once the database's path names another file or nothing. A path that
    /// cannot be looked at (a directory turned unreadable) says neither: the files memsync
    /// holds open are still the database's, so replication goes on through them.
    pub(super) fn check_replaced(&self) -> Result<(), MonitorError> {
        match crate::platform::file_id(&self.cfg.db_path) {
            Ok(id) if crate::platform::same_file(id, self.ino) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                tracing::debug!("{}: cannot look at it: {e}", self.cfg.db_path.display());
                Ok(())
            }
            other => {
                tracing::debug!(
                    "{}: identity {:?}, was {:?}",
                    self.cfg.db_path.display(),
                    other,
                    self.ino
                );
                Err(MonitorError::Replaced(
                    self.cfg.db_path.display().to_string(),
                ))
            }
        }
    }

    /// memsync's connections; an error while it has stepped aside (callers attach first).
    pub(super) fn conns(&self) -> Result<&Conns, MonitorError> {
        self.session.conns()
    }

    pub(super) fn io_err(&self, what: &str, source: std::io::Error) -> MonitorError {
        MonitorError::Io {
            what: format!("{} ({})", what, self.cfg.db_path.display()),
            source,
        }
    }

    pub(super) fn wal_err(&self, source: WalError) -> MonitorError {
        MonitorError::Wal {
            db: self.cfg.db_path.display().to_string(),
            source,
        }
    }

    pub(super) fn sql_err(&self, source: rusqlite::Error) -> MonitorError {
        self.session.sql_err(source)
    }
}

#[cfg(test)]
mod tests {
    use replica_formats::{DbChecksum, ObjectKey};

    use super::*;
    use crate::sqlite::sink::CaptureKind;
    use crate::sqlite::testsink::MemSink;

    /// A snapshot at start, then one segment per sync, each continuing the state the file
    /// before it left (pre-checksum = previous post-checksum), through any sink.
    #[test]
    fn captured_files_chain_through_a_sink_of_our_own() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("x.db");
        let c = rusqlite::Connection::open(&db).unwrap();
        c.pragma_update(None, "journal_mode", "wal").unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        let sink = MemSink::default();
        let cfg = MonitorConfig::new(db.clone(), d.path().join("meta"));
        let stats = Arc::new(DbStats::default());
        let mut m = Monitor::start(cfg, None, Box::new(sink.clone()), stats).unwrap();
        for i in 0..3 {
            c.execute("INSERT INTO t VALUES (randomblob(3000))", [])
                .unwrap();
            assert!(m.sync().unwrap(), "sync {i} captured the commit");
        }
        m.shutdown();
        let kinds: Vec<CaptureKind> = sink.captured.lock().unwrap().iter().map(|c| c.1).collect();
        assert_eq!(
            kinds,
            [
                CaptureKind::Snapshot,
                CaptureKind::Segment,
                CaptureKind::Segment,
                CaptureKind::Segment
            ]
        );
        let files = sink.files.lock().unwrap();
        let mut post = DbChecksum::EMPTY;
        for (i, bytes) in files.values().enumerate() {
            let f = replica_formats::decode_file(bytes).unwrap();
            if i > 0 {
                assert_eq!(f.header.pre_checksum, post, "file {i} continues the chain");
            }
            post = f.trailer.post_checksum;
        }
        assert_eq!(m.position(), files.keys().last().map(ObjectKey::max_txid));
    }
}
