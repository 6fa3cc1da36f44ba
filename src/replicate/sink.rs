//! The per-database end of the capture seam: what the monitor captures goes into the spool, the
//! shippers are told about each new position, and the spool's housekeeping runs here, beside
//! the monitor's loop but outside it: level-0 compaction on the shared job threads and the policy
//! deciding when a fresh snapshot pays off (`policy.rs`).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use replica_formats::{DbChecksum, EncodeOptions, Header, ObjectKey, TxId};
use tokio::sync::watch;

use super::compact::{CompactEncoding, Compacted, compact_spool};
use super::placer::Placer;
use super::policy::Compactor;
use super::spool::Spool;
use crate::sqlite::sink::{Captured, DbShape, Sink, SinkError};
use crate::stats::DbStats;

/// How the spool is compacted and when a fresh snapshot is taken.
#[derive(Debug, Clone)]
pub struct CompactionConfig {
    /// How often a compaction pass runs (besides whenever `FAN_IN` level-0 files wait).
    pub interval: Duration,
    /// Restore-point tiers: how compaction groups files, by time, at each level.
    pub tiers: crate::config::Tiers,
    /// Take a snapshot at least this often (the smallest replica snapshot-interval), if set.
    pub snapshot_interval: Option<Duration>,
    /// zstd level of compacted segments, which stay for a tier's retention: level 1, where
    /// higher levels save little for much more CPU and lower ones cost bytes without saving
    /// CPU that matters (`docs/measurements.md`).
    pub keep_level: i32,
    /// Pages per run of compacted segments: 1, so a restore reading through the run index
    /// skips every page newer files replace (it fetches whole runs); at zstd level 1 single
    /// pages compress about as well as longer runs, and the merge holds less
    /// (`docs/measurements.md`).
    pub keep_run_pages: usize,
}

impl CompactionConfig {
    /// A pass every 30 s (or as often as level-1 buckets close, if more often), no timed
    /// snapshot.
    pub fn new(tiers: crate::config::Tiers) -> Self {
        CompactionConfig {
            interval: Duration::from_secs(30).min(tiers.interval(1)),
            tiers,
            snapshot_interval: None,
            keep_level: 1,
            keep_run_pages: 1,
        }
    }
}

/// The spool as the monitor's [`Sink`], with compaction and the snapshot cadence.
pub struct SpoolSink {
    /// Where the spool lives (created by [`Sink::prepare`]).
    meta_dir: PathBuf,
    spool: Spool,
    cfg: CompactionConfig,
    /// Level-0 compaction and snapshot cadence.
    compactor: Compactor,
    /// The compaction pass running on its worker thread, if any.
    compaction: Option<crate::jobs::Job<io::Result<Vec<Compacted>>>>,
    /// Newest position, for the shippers.
    positions: watch::Sender<Option<TxId>>,
    /// Position of the page map last saved to disk; the spool keeps the files above it so a
    /// restart after a crash can replay them instead of taking a snapshot.
    map_saved: watch::Sender<Option<TxId>>,
    stats: Arc<DbStats>,
    /// Level-0 files placed on file replicas as they are captured (`placer.rs`).
    placer: Placer,
}

/// The file in a database's meta directory holding its newest snapshot's time (Unix ms); a
/// hint, written without an `fsync`.
const SNAPSHOT_MARK: &str = "last-snapshot";

impl SpoolSink {
    /// A sink writing into the spool in `meta_dir` (created by [`Sink::prepare`]).
    pub fn new(
        meta_dir: &Path,
        cfg: CompactionConfig,
        positions: watch::Sender<Option<TxId>>,
        map_saved: watch::Sender<Option<TxId>>,
        stats: Arc<DbStats>,
    ) -> Self {
        let mut compactor = Compactor::new(cfg.interval);
        compactor.snapshot_interval = cfg.snapshot_interval;
        let spool = Spool::existing(meta_dir);
        // The newest snapshot's time, across restarts: the spool lets go of a snapshot once
        // every replica has it, so the time is also kept in a mark of its own (without it, a
        // replicator restarted more often than `snapshot-interval` never took a snapshot, and
        // retention, which deletes only what a newer snapshot covers, never deleted anything).
        let in_spool = spool.keys().ok().and_then(|keys| {
            keys.iter()
                .filter(|k| k.is_snapshot())
                .map(|k| k.timestamp().get())
                .max()
        });
        let marked = std::fs::read_to_string(meta_dir.join(SNAPSHOT_MARK))
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok());
        if let Some(ms) = in_spool.max(marked) {
            compactor.snapshot_taken_at(ms);
        }
        SpoolSink {
            meta_dir: meta_dir.to_owned(),
            spool,
            cfg,
            compactor,
            compaction: None,
            positions,
            map_saved,
            stats,
            placer: Placer::default(),
        }
    }

    /// Places captured level-0 files on the file replicas that take them (`placer.rs`).
    pub fn with_placer(mut self, placer: Placer) -> Self {
        self.placer = placer;
        self
    }

    /// Waits for the running pass and records it; whether a snapshot is due now (checked after
    /// every pass, merged or not: time buckets close only every 30 s, and `snapshot-interval`
    /// must not wait for one).
    fn join_pass(&mut self, db: DbShape) -> Result<bool, SinkError> {
        let Some(job) = self.compaction.take() else {
            return Ok(false);
        };
        let written = job
            .join()
            .map_err(|_| io::Error::other("compaction panicked"))
            .and_then(|r| r)
            .map_err(|source| SinkError {
                what: "compacting spool",
                source,
            })?;
        self.finish_pass(&written);
        self.compactor.set_db_size(db.pages, db.page_size);
        Ok(self.compactor.snapshot_due())
    }

    /// Records a finished compaction pass.
    fn finish_pass(&mut self, written: &[Compacted]) {
        self.compactor.finish_pass(written);
        // The compaction code is not needed again for a while.
        crate::resident::shed();
        for c in written {
            self.stats.compactions.fetch_add(1, Ordering::Relaxed);
            self.stats
                .spooled_bytes
                .fetch_add(c.size, Ordering::Relaxed);
            self.stats.spool_bytes.fetch_add(c.size, Ordering::Relaxed);
            tracing::debug!("compacted into {} ({} bytes)", c.key, c.size);
        }
        if !written.is_empty() {
            // Nothing new to read, but new files to ship.
            self.positions.send_modify(|_| {});
        }
    }

    /// Starts a compaction pass on the shared job threads (`jobs.rs`).
    fn start_pass(&mut self) -> io::Result<()> {
        self.compactor.begin_pass(false);
        let opts = |zstd_level| EncodeOptions {
            zstd_level,
            pages_per_run: self.cfg.keep_run_pages,
        };
        let enc = CompactEncoding {
            level1: opts(self.cfg.keep_level),
            above: opts(self.cfg.keep_level),
        };
        let spool = self.spool.clone();
        let tiers = self.cfg.tiers.clone();
        let job = crate::jobs::spawn(move || {
            let now = crate::sqlite::capture::now_ms();
            compact_spool(&spool, enc, &tiers, now)
        });
        self.compaction = Some(job);
        Ok(())
    }
}

impl Sink for SpoolSink {
    fn prepare(&mut self) -> io::Result<()> {
        self.spool = Spool::open(&self.meta_dir)?;
        // The one walk of the spool for its gauge; tracked from here on.
        let held = self.spool.bytes(&self.spool.keys()?);
        self.stats.spool_bytes.store(held, Ordering::Relaxed);
        Ok(())
    }

    fn dir(&self) -> &Path {
        self.spool.dir()
    }

    fn keys(&self) -> io::Result<Vec<ObjectKey>> {
        self.spool.keys()
    }

    fn header(&self, key: &ObjectKey) -> io::Result<Header> {
        self.spool.header(key)
    }

    fn post_checksum(&self, key: &ObjectKey) -> io::Result<DbChecksum> {
        self.spool.post_checksum(key)
    }

    fn read(&self, key: &ObjectKey) -> io::Result<Vec<u8>> {
        std::fs::read(self.spool.path(key))
    }

    fn write(
        &self,
        key: &ObjectKey,
        fill: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<u64> {
        self.spool.write(key, |w| fill(w))
    }

    fn captured(&mut self, file: &Captured) {
        self.compactor.set_db_size(file.db.pages, file.db.page_size);
        self.compactor.note(&file.key, file.size);
        if file.key.is_snapshot() {
            let ms = file.key.timestamp().get().to_string();
            if let Err(e) =
                crate::fsutil::replace_hint(&self.meta_dir.join(SNAPSHOT_MARK), ms.as_bytes())
            {
                // Only the cadence depends on it: a restart would snapshot later than due.
                tracing::warn!(
                    "{}: cannot record the snapshot's time: {e}",
                    self.meta_dir.display()
                );
            }
        }
        self.stats
            .spool_bytes
            .fetch_add(file.size, Ordering::Relaxed);
        let pos = Some(file.key.max_txid());
        if self
            .placer
            .place(&file.key, &self.spool.path(&file.key), file.size)
        {
            // Every replica has it: no shipper needs waking (they see the position when
            // something else wakes them).
            self.positions.send_if_modified(|p| {
                *p = pos;
                false
            });
        } else {
            self.positions.send_replace(pos);
        }
    }

    fn resumed(&mut self, pos: TxId) {
        self.stats.position.store(pos.get(), Ordering::Relaxed);
        self.positions.send_replace(Some(pos));
    }

    fn map_saved(&mut self, pos: TxId) {
        self.map_saved.send_replace(Some(pos));
    }

    /// Compaction runs on a worker thread; this starts a pass when one is due and, when a pass
    /// finished, records it and calls for a snapshot if the files piled on the last one
    /// outweigh a fresh one (before the next pass starts, so that pass sees it). With `wait`,
    /// blocks until the running pass (if any) is done.
    fn maintain(&mut self, db: DbShape, wait: bool) -> Result<bool, SinkError> {
        let err = |what| move |source| SinkError { what, source };
        if self
            .compaction
            .as_ref()
            .is_some_and(|j| wait || j.is_finished())
            && self.join_pass(db)?
        {
            return Ok(true);
        }
        // A snapshot due by time does not wait for a compaction pass: passes come at most
        // every `interval` (30 s) counted from the process start, so a replicator restarted
        // more often than that never reached one and never took its interval snapshot. (Not
        // at shutdown: a due snapshot is taken by the next run. The size rule stays with the
        // passes, whose merges change what it weighs.)
        if !wait && self.compaction.is_none() && self.compactor.snapshot_interval_passed() {
            return Ok(true);
        }
        if self.compaction.is_none() && self.compactor.due(false) {
            self.start_pass().map_err(err("starting compaction"))?;
            if wait {
                // This pass to its end, and no other after it (with a zero interval another
                // would always be due).
                return self.join_pass(db);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::sink::CaptureKind;
    use replica_formats::{PageSize, Timestamp};

    #[test]
    fn what_is_captured_reaches_the_shippers_and_the_cadence_asks_for_snapshots() {
        let d = tempfile::tempdir().unwrap();
        let (pos_tx, pos_rx) = watch::channel(None);
        let (map_tx, map_rx) = watch::channel(None);
        let mut cfg = CompactionConfig::new(crate::config::Tiers::default());
        // A pass at every call, and a snapshot due after each.
        cfg.interval = Duration::ZERO;
        cfg.snapshot_interval = Some(Duration::ZERO);
        let mut sink = SpoolSink::new(d.path(), cfg, pos_tx, map_tx, Arc::default());
        sink.prepare().unwrap();
        let txid = TxId::new(3).unwrap();
        let key = ObjectKey::Snapshot {
            txid,
            ts: Timestamp::from_millis(0),
        };
        let size = sink.write(&key, &mut |w| w.write_all(b"snap")).unwrap();
        assert_eq!((size, sink.keys().unwrap()), (4, vec![key]));
        assert_eq!(sink.read(&key).unwrap(), b"snap");
        let db = DbShape {
            pages: 1,
            page_size: PageSize::new(4096).unwrap(),
        };
        sink.captured(&Captured {
            key,
            kind: CaptureKind::Snapshot,
            size,
            db,
        });
        assert_eq!(*pos_rx.borrow(), Some(txid));
        sink.map_saved(txid);
        assert_eq!(*map_rx.borrow(), Some(txid));
        // Nothing written since the snapshot: the interval calls for no copy of the same state.
        assert!(!sink.maintain(db, true).unwrap());
        let seg = ObjectKey::Segment {
            level: replica_formats::Level::ZERO,
            min: TxId::new(4).unwrap(),
            max: TxId::new(4).unwrap(),
            ts: Timestamp::from_millis(1),
        };
        let size = sink.write(&seg, &mut |w| w.write_all(b"seg")).unwrap();
        sink.captured(&Captured {
            key: seg,
            kind: CaptureKind::Segment,
            size,
            db,
        });
        // The pass (nothing to merge) runs to its end, then the snapshot interval calls for one.
        assert!(sink.maintain(db, true).unwrap());
        assert!(sink.compaction.is_none());
    }
}
