//! The database monitor: follows the WAL, writes what was committed into the spool, and owns
//! checkpointing while it runs.
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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use replica_formats::{ObjectKey, TxId};
use rusqlite::Connection;

pub use super::monitor_config::{MonitorConfig, MonitorError};

use super::conn;
use super::pacer::SyncPacer;
use super::pagemap::PageMap;
use super::reader::Source;
use super::shm::ShmProbe;
use super::sink::{DbShape, Sink};
use super::wal::{Scan, WalError};
use super::watch::WalWatch;
use crate::stats::DbStats;

/// Second looks after a file event that found nothing committed yet (see `run`).
const RECHECKS: u32 = 3;

/// memsync's two connections to the database.
pub(super) struct Conns {
    /// Connection holding the long read transaction.
    pub(super) r: Connection,
    /// Connection used for `BEGIN IMMEDIATE` and checkpoints.
    pub(super) w: Connection,
}

/// One monitored database.
pub struct Monitor {
    pub(super) cfg: MonitorConfig,
    pub(super) src: Source,
    /// memsync's connections; `None` while it has stepped aside (see `idle.rs`).
    pub(super) conns: Option<Conns>,
    /// Set while memsync has stepped aside.
    pub(super) away: Option<super::idle::Away>,
    pub(super) r_active: bool,
    pub(super) shm: Option<ShmProbe>,
    pub(super) map: PageMap,
    /// Last position written to the spool.
    pub(super) pos: Option<TxId>,
    /// Where captured files go (see `sink.rs`).
    pub(super) sink: Box<dyn Sink>,
    /// See the module docs.
    pub(super) protected: bool,
    /// WAL frames at the last checkpoint of this generation (checkpoint thresholds are relative).
    pub(super) frames_at_checkpoint: u64,
    pub(super) last_checkpoint: Instant,
    /// When the next sync may run (see `pacer.rs`).
    pub(super) pacer: SyncPacer,
    /// Set when a spool write failed: the next sync resynchronises.
    pub(super) needs_resync: bool,
    /// Frames polled but not yet written (see `gather_wal`).
    pub(super) pending: Option<Scan>,
    /// The tail a checkpoint drained under the write lock, for the next segment (`carry.rs`).
    pub(super) carry: Option<super::carry::Carry>,
    pub(super) stats: Arc<DbStats>,
    last_map_save: Instant,
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
        let ino = file_id(&cfg.db_path).map_err(io(format!("stat {}", cfg.db_path.display())))?;
        let map = PageMap::new(src.page_size());
        let pacer = SyncPacer::new(cfg.min_sync_gap, Instant::now());
        let mut m = Monitor {
            shm: ShmProbe::open(&cfg.db_path),
            cfg,
            src,
            conns: Some(Conns { r, w }),
            away: None,
            r_active: false,
            map,
            pos: None,
            sink,
            protected: false,
            frames_at_checkpoint: 0,
            last_checkpoint: Instant::now(),
            pacer,
            needs_resync: false,
            pending: None,
            carry: None,
            stats,
            // The first checkpoint may save at once.
            last_map_save: Instant::now() - Duration::from_secs(3600),
            ino,
        };
        m.recover_waiting_for_space(floor)?;
        Ok(m)
    }

    /// Last position written to the spool.
    pub fn position(&self) -> Option<TxId> {
        self.pos
    }

    /// The database as replicated now.
    pub(super) fn shape(&self) -> DbShape {
        DbShape {
            pages: self.map.commit(),
            page_size: self.map.page_size(),
        }
    }

    pub(super) fn recover(&mut self, floor: Option<TxId>) -> Result<(), MonitorError> {
        let keys = self
            .sink
            .keys()
            .map_err(|e| self.io_err("listing spool", e))?;
        let last = keys.iter().max_by_key(|k| k.max_txid()).cloned();
        let floor = floor.max(last.as_ref().map(ObjectKey::max_txid));
        let map_path = self.cfg.meta_dir.join("pagemap");
        let saved = PageMap::load(&map_path);
        if let Some(last) = last.filter(|k| Some(k.max_txid()) == floor) {
            let header = self
                .sink
                .header(&last)
                .map_err(|e| self.io_err("reading spool", e))?;
            let post = self
                .sink
                .post_checksum(&last)
                .map_err(|e| self.io_err("reading spool", e))?;
            let saved = saved.and_then(|(m, t)| self.replay(m, t, &keys, last.max_txid()));
            let saved = saved.filter(|(m, t)| {
                *t == last.max_txid()
                    && m.checksum() == post
                    && m.page_size() == self.src.page_size()
            });
            if let Some((map, _)) = saved {
                self.map = map;
                self.pos = Some(last.max_txid());
                let resumed =
                    self.with_write_lock(|m| m.src.resume(&header.wal).map_err(|e| m.wal_err(e)))?;
                let db = self.cfg.db_path.display().to_string();
                match resumed {
                    Some(scan) => {
                        crate::log::info(&format!(
                            "{db}: resuming at position {} (WAL unchanged)",
                            last.max_txid()
                        ));
                        if !scan.frames.is_empty() {
                            self.write_frames(&scan)?;
                        }
                    }
                    None => {
                        crate::log::info(&format!(
                            "{db}: WAL changed while stopped; shipping the pages that differ"
                        ));
                        self.resync()?;
                    }
                }
                if self.cfg.snapshot_wanted.swap(false, Ordering::Relaxed) {
                    self.snapshot_current()?;
                }
                if let Some(pos) = self.pos {
                    self.sink.resumed(pos);
                }
                return Ok(());
            }
        }
        self.with_write_lock(|m| {
            m.src.reset();
            m.drain_wal()
        })?;
        self.pos = floor;
        // This snapshot also serves any replica that asked for one.
        self.cfg.snapshot_wanted.store(false, Ordering::Relaxed);
        self.snapshot()?;
        crate::log::info(&format!(
            "{}: snapshot at position {:016x} ({} pages)",
            self.cfg.db_path.display(),
            self.pos.map_or(0, TxId::get),
            self.map.commit()
        ));
        Ok(())
    }

    /// Runs until `stop` is set, then ships what is committed and saves the page map. Errors
    /// of one pass (a full disk, a busy database) are logged and retried with backoff: the read
    /// transaction keeps every unshipped frame in the WAL meanwhile.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), MonitorError> {
        let mut watch = WalWatch::new(&super::sidecar(&self.cfg.db_path, "-wal"));
        let mut dirty = true;
        let mut last_poll = Instant::now();
        let mut backoff = Duration::ZERO;
        let mut retry_at = Instant::now();
        // Quick second looks left after a file event that found no new commit.
        let mut rechecks = 0u32;
        let mut disk_full = false;
        // Since when nothing was committed (see `idle.rs`).
        let mut quiet_since = Instant::now();
        let mut maintain_away = false;
        // One line per quiet period when memsync cannot step aside.
        let mut refusal_logged = false;
        while !stop.load(Ordering::Relaxed) {
            let probe = self.cfg.probe_interval;
            if dirty {
                // Pacing: do not read the watch (it would wake us for every write); just wait
                // for the gap to pass, still probing for application checkpoints meanwhile.
                let now = Instant::now();
                let left = self
                    .pacer
                    .wait(now)
                    .max(retry_at.saturating_duration_since(now));
                if !left.is_zero() {
                    std::thread::sleep(left.min(probe));
                }
            } else if watch.wait(probe) {
                dirty = true;
                rechecks = RECHECKS;
                quiet_since = Instant::now();
            }
            if last_poll.elapsed() >= self.cfg.monitor_interval {
                last_poll = Instant::now();
                self.check_replaced()?;
                watch.refresh();
                // While away, only a change is worth reopening the connections for; compaction
                // and the snapshot policy go on all the same.
                if !self.is_away() || self.changed_while_away() {
                    dirty = true;
                } else {
                    maintain_away = true;
                }
            }
            if Instant::now() < retry_at {
                continue;
            }
            let pass = (|| {
                self.maybe_yield()?;
                if !self.is_paused() && self.cfg.snapshot_wanted.swap(false, Ordering::Relaxed) {
                    // Asked again on failure: the replica waiting for it has nothing else.
                    self.snapshot_current().inspect_err(|_| {
                        self.cfg.snapshot_wanted.store(true, Ordering::Relaxed);
                    })?;
                }
                let (mut idle, mut spooled) = (false, false);
                if dirty && self.pacer.wait(Instant::now()).is_zero() {
                    dirty = false;
                    spooled = self.sync_pass()?;
                    idle = !spooled;
                    self.maintain(false)?;
                } else if std::mem::take(&mut maintain_away) {
                    self.maintain(false)?;
                }
                if spooled {
                    quiet_since = Instant::now();
                    refusal_logged = false;
                } else if !dirty
                    && rechecks == 0
                    && !self.is_away()
                    && quiet_since.elapsed() >= self.cfg.idle_release
                {
                    // Let the application have the database to itself (see `idle.rs`).
                    if let Err(why) = self.step_aside()
                        && !std::mem::replace(&mut refusal_logged, true)
                    {
                        crate::log::debug(&format!(
                            "{}: idle, but connections kept open: {why}",
                            self.cfg.db_path.display()
                        ));
                    }
                }
                Ok::<bool, MonitorError>(idle)
            })();
            match pass {
                Ok(idle) => {
                    // A carried tail goes out at the next paced sync even if nothing new
                    // is committed.
                    dirty |= self.carry.is_some();
                    if std::mem::take(&mut disk_full) {
                        crate::log::info(&self.space_again_line());
                    }
                    backoff = Duration::ZERO;
                    // The writer's last WAL write can wake us before it publishes the commit in
                    // the WAL index (shared memory: no file event follows). Look again in 2, 8
                    // and 32 ms instead of leaving the commit to the next poll, up to a whole
                    // monitor-interval later.
                    if idle && rechecks > 0 {
                        rechecks -= 1;
                        dirty = true;
                        retry_at = Instant::now()
                            + Duration::from_millis(2 << (2 * (RECHECKS - 1 - rechecks)));
                    }
                }
                Err(e @ MonitorError::Replaced(_)) => return Err(e),
                Err(e) if e.is_busy() => {
                    // Contention, not a failure: the application holds the write lock (a long
                    // transaction). Retry soon; the read transaction keeps every frame.
                    backoff = Duration::from_millis(100);
                    retry_at = Instant::now() + backoff;
                    dirty = true;
                    crate::log::info(&format!(
                        "{e}: the application holds the write lock; retrying"
                    ));
                }
                Err(e) => {
                    backoff =
                        (backoff * 2).clamp(Duration::from_millis(100), Duration::from_secs(30));
                    retry_at = Instant::now() + backoff;
                    dirty = true;
                    if !e.is_disk_full() {
                        crate::log::error(&format!("{e} (retrying in {backoff:?})"));
                    } else if !std::mem::replace(&mut disk_full, true) {
                        // One line per episode, not one per retry.
                        crate::log::error(&self.disk_full_line(backoff));
                    }
                }
            }
        }
        // Everything committed is shipped, in rollback mode too (see `idle.rs`).
        self.attach(true)?;
        self.sync()?;
        self.maintain(true)?;
        self.shutdown();
        Ok(())
    }

    /// Final bookkeeping: release the read transaction and save the page map so the next start
    /// can resynchronise cheaply.
    pub fn shutdown(&mut self) {
        self.release_read();
        let st = &self.stats;
        let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        crate::log::info(&format!(
            "{}: stopped at position {:016x}: {} transactions, {} bytes spooled, {} snapshots, {} resyncs, {} checkpoints, {} compactions, {} yields to application checkpoints ({} ms), write lock held {} ms in total, {} idle releases",
            self.cfg.db_path.display(),
            self.pos.map_or(0, TxId::get),
            g(&st.transactions),
            g(&st.spooled_bytes),
            g(&st.snapshots),
            g(&st.resyncs),
            g(&st.checkpoints),
            g(&st.compactions),
            g(&st.yields),
            g(&st.yield_us) / 1000,
            g(&st.write_lock_us) / 1000,
            g(&st.idle_releases),
        ));
        self.save_map(true);
    }

    /// Reads what was committed since the last call and writes it to the spool; true if it
    /// spooled anything.
    pub fn sync(&mut self) -> Result<bool, MonitorError> {
        self.paced(|m| {
            if !m.attach(false)? {
                return Ok(());
            }
            if !m.needs_resync {
                m.drain_wal()?;
            }
            if m.needs_resync {
                m.resync()?;
            }
            Ok(())
        })
    }

    /// Runs `f`; true if it spooled anything. Only then does it spend from the pacing budget
    /// (and start uploads): the idle poll every monitor-interval used to make the next commit
    /// wait up to a whole sync interval.
    pub(super) fn paced(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<(), MonitorError>,
    ) -> Result<bool, MonitorError> {
        let before = self.pos;
        let res = f(self);
        let spooled = self.pos != before;
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
        self.write_pending()
    }

    /// The sink's housekeeping between passes (compaction, in `replicate/`), and the snapshot
    /// it may call for. With `wait` (shutdown), whatever it runs is finished first.
    pub fn maintain(&mut self, wait: bool) -> Result<(), MonitorError> {
        while self
            .sink
            .maintain(self.shape(), wait)
            .map_err(|e| self.io_err(e.what, e.source))?
        {
            self.snapshot_current()?;
        }
        Ok(())
    }

    /// Brings a page map saved at position `from` forward to `to` by applying the spooled
    /// segments in between, checking every file's pre- and post-state checksums; `None` if the
    /// spool no longer holds an unbroken, consistent chain.
    fn replay(
        &self,
        mut map: PageMap,
        from: TxId,
        keys: &[ObjectKey],
        to: TxId,
    ) -> Option<(PageMap, TxId)> {
        if from == to {
            return Some((map, to));
        }
        let chain = replica_formats::chain_from(keys, from, replica_formats::Target::Latest);
        if chain.last().map(ObjectKey::max_txid) != Some(to) {
            return None;
        }
        for key in &chain {
            let bytes = self.sink.read(key).ok()?;
            let file = replica_formats::decode_file(&bytes).ok()?;
            if file.header.check_key(key).is_err() || file.header.pre_checksum != map.checksum() {
                return None;
            }
            for (pgno, data) in file.pages() {
                map.set(pgno, data);
            }
            map.resize(file.header.commit);
            if map.checksum() != file.trailer.post_checksum {
                return None;
            }
        }
        crate::log::info(&format!(
            "{}: page map replayed from position {from} to {to}",
            self.cfg.db_path.display()
        ));
        Some((map, to))
    }

    /// Saves the page map (at most every few seconds), so a crash costs a replay of the spool
    /// files after it rather than a full snapshot.
    pub(super) fn save_map(&mut self, force: bool) {
        let Some(pos) = self.pos else {
            return;
        };
        if !force && self.last_map_save.elapsed() < Duration::from_secs(10) {
            return;
        }
        self.last_map_save = Instant::now();
        match self.map.save(&self.cfg.meta_dir.join("pagemap"), pos) {
            Ok(()) => self.sink.map_saved(pos),
            Err(e) => crate::log::warn(&format!(
                "{}: cannot save page map: {e}",
                self.cfg.db_path.display()
            )),
        }
    }

    fn check_replaced(&self) -> Result<(), MonitorError> {
        match file_id(&self.cfg.db_path) {
            Ok(id) if id == self.ino => Ok(()),
            _ => Err(MonitorError::Replaced(
                self.cfg.db_path.display().to_string(),
            )),
        }
    }

    /// memsync's connections; an error while it has stepped aside (callers attach first).
    pub(super) fn conns(&self) -> Result<&Conns, MonitorError> {
        self.conns
            .as_ref()
            .ok_or_else(|| MonitorError::Detached(self.cfg.db_path.display().to_string()))
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
        MonitorError::Sqlite {
            db: self.cfg.db_path.display().to_string(),
            source,
        }
    }
}

fn file_id(p: &std::path::Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p)?;
    Ok((m.dev(), m.ino()))
}
