//! Turning database changes into files for the sink: segments from WAL frames here, snapshots
//! and resynchronisation diffs from a full read in `full.rs`. [`Capture`] owns what that needs
//! (the database view, the cursor, the sink) and no lock: the monitor holds the write lock
//! around the steps that need it.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use replica_formats::{
    EncodeOptions, FileEncoder, FileKind, Header, Level, ObjectKey, PageNo, Timestamp, TxId,
    WalPosition,
};

mod full;
mod stamp;

use super::carry::{self, Carry};
use super::cursor::Cursor;
use super::monitor::{MonitorConfig, MonitorError};
use super::pagemap::PageMap;
use super::reader::{AfterRestart, Poll, Source, after_restart};
use super::sink::{CaptureKind, Captured, Sink};
use super::wal::{Frame, Scan, WalError};
use crate::stats::DbStats;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Timestamp::from_millis(ms)
}

/// What capture writes with, from the monitor's settings.
#[derive(Debug, Clone)]
pub(super) struct CaptureSettings {
    /// The database, for messages.
    pub(super) db: PathBuf,
    /// Where the page map is saved.
    pub(super) map_path: PathBuf,
    /// zstd level of level-0 segments.
    pub(super) zstd_level: i32,
    /// zstd level of snapshots.
    pub(super) keep_level: i32,
    /// Upper bound of WAL bytes put in one segment.
    pub(super) max_segment_bytes: u64,
    /// With no gap between syncs, a checkpoint's tail is written at once, never carried.
    pub(super) carry_tail: bool,
}

impl CaptureSettings {
    /// The capture side of `cfg`.
    pub(super) fn new(cfg: &MonitorConfig) -> Self {
        CaptureSettings {
            db: cfg.db_path.clone(),
            map_path: cfg.meta_dir.join("pagemap"),
            zstd_level: cfg.zstd_level,
            keep_level: cfg.keep_level,
            max_segment_bytes: cfg.max_segment_bytes,
            carry_tail: !cfg.min_sync_gap.is_zero(),
        }
    }
}

/// Turns what the reader finds into files for the sink: the view of the database, the cursor
/// over it and the sink, and nothing of locks or timing (the monitor takes the write lock
/// where a step needs it).
pub(super) struct Capture {
    /// The consistent view of the database.
    pub(super) src: Source,
    /// Where capture stands.
    pub(super) cur: Cursor,
    /// Where files go.
    pub(super) sink: Box<dyn Sink>,
    pub(super) stats: Arc<DbStats>,
    set: CaptureSettings,
    last_map_save: Instant,
    /// The position the saved page map is at: the map changes only with the position, so a
    /// save at the same position (shutdown of an idle database) is skipped.
    map_saved_at: Option<TxId>,
    /// The files' timestamps (see `stamp.rs`).
    pub(super) stamps: stamp::Stamps,
}

impl Capture {
    /// Capture of the database `src` shows, nothing replicated yet.
    pub(super) fn new(
        src: Source,
        sink: Box<dyn Sink>,
        stats: Arc<DbStats>,
        set: CaptureSettings,
    ) -> Self {
        Capture {
            cur: Cursor::new(src.page_size()),
            src,
            sink,
            stats,
            set,
            // The first checkpoint may save at once.
            last_map_save: Instant::now() - Duration::from_secs(3600),
            map_saved_at: None,
            stamps: stamp::Stamps::default(),
        }
    }

    pub(super) fn io_err(&self, what: &str, source: io::Error) -> MonitorError {
        MonitorError::Io {
            what: format!("{} ({})", what, self.set.db.display()),
            source,
        }
    }

    pub(super) fn wal_err(&self, source: WalError) -> MonitorError {
        MonitorError::Wal {
            db: self.set.db.display().to_string(),
            source,
        }
    }

    /// Saves the page map (at most every few seconds), so a crash costs a replay of the spool
    /// files after it rather than a full snapshot.
    pub(super) fn save_map(&mut self, force: bool) {
        let Some(pos) = self.cur.pos else {
            return;
        };
        if self.map_saved_at == Some(pos)
            || (!force && self.last_map_save.elapsed() < Duration::from_secs(10))
        {
            return;
        }
        self.last_map_save = Instant::now();
        match self.cur.map.save(&self.set.map_path, pos) {
            Ok(()) => {
                self.map_saved_at = Some(pos);
                self.sink.map_saved(pos)
            }
            Err(e) => tracing::warn!("{}: cannot save page map: {e}", self.set.db.display()),
        }
    }

    fn wal_position(&self) -> WalPosition {
        match self.src.cursor() {
            Some(c) => WalPosition {
                salt1: c.header.salt1,
                salt2: c.header.salt2,
                offset: c.offset,
                cksum1: c.cksum.0,
                cksum2: c.cksum.1,
                ckpt_seq: c.header.ckpt_seq,
            },
            None => WalPosition::default(),
        }
    }

    fn header(&self, kind: FileKind, txid: TxId, commit: u32) -> Header {
        Header {
            kind,
            page_size: self.src.page_size(),
            commit,
            min_txid: txid,
            max_txid: txid,
            timestamp: self.stamps.next(),
            pre_checksum: match kind {
                FileKind::Snapshot => replica_formats::DbChecksum::EMPTY,
                FileKind::Segment => self.cur.map.checksum(),
            },
            wal: self.wal_position(),
        }
    }

    fn options(&self) -> EncodeOptions {
        EncodeOptions {
            zstd_level: self.set.zstd_level,
            ..EncodeOptions::default()
        }
    }

    /// Level-0 segments use small runs: compaction streams one decoded run per input, and a
    /// restore reading through the run index fetches whole runs, so 2 pages let it skip most
    /// replaced pages; at zstd's fast level, single pages would cost ~7 % more level-0 bytes
    /// for little more skipped (`docs/measurements.md`).
    fn segment_options(&self) -> EncodeOptions {
        EncodeOptions {
            pages_per_run: 2,
            ..self.options()
        }
    }

    /// Header and key of the next level-0 segment.
    fn next_segment(&self, commit: u32) -> (Header, ObjectKey) {
        let txid = self.cur.next_txid();
        let header = self.header(FileKind::Segment, txid, commit);
        let key = ObjectKey::Segment {
            level: Level::ZERO,
            min: txid,
            max: txid,
            ts: header.timestamp,
        };
        (header, key)
    }

    /// Polls the WAL until nothing new is committed and gathers the frames into `pending`, to be
    /// written as one segment by `write_pending`: a pass that checkpoints writes what it found
    /// together with the tail it drains under the write lock, one file instead of two or three
    /// (each costs a spool file, an upload and a compaction input). A segment's worth is written
    /// at once. The frames stay readable until written: memsync's read transaction keeps the WAL
    /// from being restarted (a read mark above 0) or backfilled (read mark 0) meanwhile.
    ///
    /// `protected` says whether memsync's read transaction protected the WAL all along (see
    /// `monitor.rs`); true is returned when the WAL was restarted meanwhile.
    pub(super) fn gather_wal(&mut self, protected: bool) -> Result<bool, MonitorError> {
        let mut restarted = false;
        let frame_len = self.src.page_size().as_usize() as u64 + super::wal::FRAME_HEADER_LEN;
        loop {
            match self
                .src
                .poll(self.set.max_segment_bytes)
                .map_err(|e| self.wal_err(e))?
            {
                Poll::Idle => return Ok(restarted),
                Poll::Frames(scan) => {
                    if self.cur.pos.is_some() && !self.cur.needs_resync {
                        let pending = self.cur.pending.get_or_insert_with(Scan::default);
                        pending.append(scan);
                        if pending.frames.len() as u64 * frame_len >= self.set.max_segment_bytes {
                            self.write_pending()?;
                        }
                    }
                }
                Poll::Restarted { prev, next } => {
                    restarted = true;
                    let gathered = self.cur.pending.take().is_some();
                    if after_restart(&prev, next.as_ref(), protected, gathered)
                        == AfterRestart::Resync
                    {
                        self.cur.needs_resync = true;
                    }
                }
            }
        }
    }

    /// Writes the gathered frames and the carried tail, if any, as one segment.
    pub(super) fn write_pending(&mut self) -> Result<(), MonitorError> {
        let scan = self.cur.pending.take();
        if self.cur.pos.is_none() || self.cur.needs_resync {
            // A snapshot or a resynchronisation covers them (both read the database).
            self.cur.carry = None;
            return Ok(());
        }
        match scan {
            Some(scan) => self.write_frames(&scan),
            None if self.cur.carry.is_some() => self.write_frames(&Scan::default()),
            None => Ok(()),
        }
    }

    /// [`Self::write_pending`] if frames were gathered; a carried tail alone stays carried.
    pub(super) fn write_gathered(&mut self) -> Result<(), MonitorError> {
        if self.cur.pending.is_none() {
            return Ok(());
        }
        self.write_pending()
    }

    /// Under the write lock, before a checkpoint lets the WAL restart: reads the gathered
    /// frames' pages into the carry (see `carry.rs`), to be written with the next sync's
    /// segment. With `sync-interval: 0`, or a tail too large to hold, they are written now.
    pub(super) fn carry_pending(&mut self) -> Result<(), MonitorError> {
        let Some(scan) = self.cur.pending.take() else {
            return Ok(());
        };
        if let Some(scan) = self.carry_scan(scan)? {
            self.cur.pending = Some(scan);
            return self.write_pending();
        }
        Ok(())
    }

    /// Reads the pages of `scan`'s committed frames into the carry, while nothing can
    /// overwrite them (the write lock is held, by memsync or by a checkpointing application).
    /// Gives the scan back when it cannot be carried (`sync-interval: 0`, or more than the carry
    /// holds): the caller writes it.
    pub(super) fn carry_scan(&mut self, scan: Scan) -> Result<Option<Scan>, MonitorError> {
        let Some(commit) = scan.commit else {
            return Ok(None);
        };
        if self.cur.pos.is_none() || self.cur.needs_resync {
            return Ok(None);
        }
        let latest = latest_frames(&scan, commit);
        let held = self.cur.carry.as_ref().map_or(0, Carry::len);
        if !self.set.carry_tail || held + latest.len() > carry::MAX_PAGES {
            return Ok(Some(scan));
        }
        let dir = self.sink.dir().to_path_buf();
        let io_err = |what: &str, source| MonitorError::Io {
            what: format!("{what} ({})", self.set.db.display()),
            source,
        };
        let mut page = vec![0u8; self.src.page_size().as_usize()];
        let carry = self.cur.carry.get_or_insert_with(Carry::default);
        for (pgno, f) in latest {
            if !self
                .src
                .read_frame(&f, &mut page)
                .map_err(|e| io_err("reading WAL", e))?
            {
                // Cannot happen under the write lock; if it does, the database is the truth.
                self.cur.carry = None;
                self.cur.needs_resync = true;
                return Ok(None);
            }
            if let Err(e) = carry.put(pgno, &page, &dir) {
                // Half carried: the database is the truth (the frames are gathered already).
                self.cur.carry = None;
                self.cur.needs_resync = true;
                return Err(io_err("carrying pages to the next sync", e));
            }
        }
        carry.committed(commit, scan.transactions);
        Ok(None)
    }

    /// Writes the committed frames of `scan`, over the carried tail if any, as one segment
    /// (the latest image of each page).
    pub(super) fn write_frames(&mut self, scan: &Scan) -> Result<(), MonitorError> {
        let carry = self.cur.carry.take().unwrap_or_default();
        let Some(commit) = scan.commit.or((!carry.is_empty()).then_some(carry.commit)) else {
            return Ok(());
        };
        let latest = latest_frames(scan, commit);
        let transactions = scan.transactions + carry.transactions;
        let (header, key) = self.next_segment(commit);
        tracing::debug!(
            "segment {key}: {transactions} transactions, {} frames, {} pages ({} carried)",
            scan.frames.len(),
            latest.len(),
            carry.len()
        );
        let opts = self.segment_options();
        let ps = self.src.page_size().as_usize();
        let src = &self.src;
        let map = &mut self.cur.map;
        map.begin();
        let res = self.sink.write(&key, &mut |w| {
            let mut enc = FileEncoder::new(w, &header, opts).map_err(fmt_err)?;
            let mut page = vec![0u8; ps];
            let pgnos = carry.pgnos();
            let mut carried = pgnos.iter().take_while(|c| c.get() <= commit).peekable();
            for (&pgno, f) in &latest {
                // Carried pages below this frame's, then the frame (newer than any carried).
                while let Some(&c) = carried.next_if(|c| **c < pgno) {
                    carry.read(c, &mut page)?;
                    write_page(&mut enc, map, c, &page)?;
                }
                carried.next_if(|c| **c == pgno);
                if !src.read_frame(f, &mut page)? {
                    return Err(io::Error::other(WalMoved));
                }
                write_page(&mut enc, map, pgno, &page)?;
            }
            for &c in carried {
                carry.read(c, &mut page)?;
                write_page(&mut enc, map, c, &page)?;
            }
            map.resize(commit);
            enc.finish(map.checksum()).map_err(fmt_err)?;
            Ok(())
        });
        self.finish_write(&key, CaptureKind::Segment, res, transactions)
    }

    fn finish_write(
        &mut self,
        key: &ObjectKey,
        kind: CaptureKind,
        res: io::Result<u64>,
        transactions: u64,
    ) -> Result<(), MonitorError> {
        let txid = key.max_txid();
        match res {
            Ok(size) => {
                self.cur.map.commit_changes();
                self.cur.pos = Some(txid);
                self.stats.spooled_bytes.fetch_add(size, Ordering::Relaxed);
                self.stats
                    .transactions
                    .fetch_add(transactions, Ordering::Relaxed);
                self.stats.position.store(txid.get(), Ordering::Relaxed);
                let db = self.cur.shape();
                self.sink.captured(&Captured {
                    key: *key,
                    kind,
                    size,
                    db,
                });
                Ok(())
            }
            Err(e) if e.get_ref().is_some_and(|i| i.is::<WalMoved>()) => {
                // The WAL was rewritten while unprotected: nothing wrong was written (the file
                // was discarded); the next sync diffs the database instead.
                self.cur.map.rollback();
                self.cur.needs_resync = true;
                tracing::info!(
                    "{}: the WAL changed under the reader; shipping the pages that differ",
                    self.set.db.display()
                );
                Ok(())
            }
            Err(e) => {
                self.cur.map.rollback();
                // The frames are still protected by the read transaction, but the cursor moved
                // past them: the next sync diffs the whole database instead.
                self.cur.needs_resync = true;
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                let what = format!("writing spool file in {}", self.sink.dir().display());
                Err(self.io_err(&what, e))
            }
        }
    }
}

/// The newest frame of each page of `scan` within `commit` pages.
fn latest_frames(scan: &Scan, commit: u32) -> BTreeMap<PageNo, Frame> {
    let mut latest = BTreeMap::new();
    for f in &scan.frames {
        if f.pgno.get() <= commit {
            latest.insert(f.pgno, *f);
        }
    }
    latest
}

/// Adds one page to a segment being written and to the page map.
fn write_page<W: io::Write>(
    enc: &mut FileEncoder<W>,
    map: &mut PageMap,
    pgno: PageNo,
    data: &[u8],
) -> io::Result<()> {
    map.set(pgno, data);
    enc.write_page(pgno, data).map_err(fmt_err)
}

/// A frame to ship no longer verifies: the WAL was restarted or rewritten under the reader.
#[derive(Debug)]
struct WalMoved;

impl std::fmt::Display for WalMoved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a WAL frame changed while being read")
    }
}

impl std::error::Error for WalMoved {}

fn fmt_err(e: replica_formats::FormatError) -> io::Error {
    io::Error::other(e)
}
