//! Files read from the whole database rather than from WAL frames: snapshots (a new chain, or
//! the periodic self-check of the current position) and resynchronisation diffs (only the pages
//! whose hash differs from the replicated state).

use std::io;
use std::sync::atomic::Ordering;

use replica_formats::{DbChecksum, EncodeOptions, FileEncoder, FileKind, ObjectKey, TxId};

use super::{Capture, fmt_err};
use crate::sqlite::monitor::MonitorError;
use crate::sqlite::pagemap::PageMap;
use crate::sqlite::sink::CaptureKind;

/// Pages per run of snapshots: 4. A restore reading through the run index fetches whole runs,
/// so small runs let it skip the pages newer files replace; single pages skip a little more
/// but made a 214 MB database's initial sync cost 2.6x the CPU (`docs/measurements.md`).
const SNAPSHOT_RUN_PAGES: usize = 4;

impl Capture {
    /// Writes a snapshot of the database at the reader's cursor, as a new position, and
    /// replaces the page map.
    pub(in crate::sqlite) fn snapshot(&mut self) -> Result<(), MonitorError> {
        // The snapshot holds the database at the cursor, past anything gathered or carried.
        self.cur.discard_unwritten();
        self.write_snapshot_map(self.cur.next_txid()).map(|_| ())
    }

    /// Writes the snapshot file for `txid` and installs the fresh page map if `txid` is new.
    pub(in crate::sqlite) fn write_snapshot_map(
        &mut self,
        txid: TxId,
    ) -> Result<DbChecksum, MonitorError> {
        let commit = self
            .src
            .commit()
            .map_err(|e| self.io_err("reading database", e))?;
        let header = self.header(FileKind::Snapshot, txid, commit);
        let key = ObjectKey::Snapshot {
            txid,
            ts: header.timestamp,
        };
        // Snapshots stay for the retention window.
        let opts = EncodeOptions {
            zstd_level: self.set.keep_level,
            pages_per_run: SNAPSHOT_RUN_PAGES,
        };
        let src = &self.src;
        let mut fresh = PageMap::new(src.page_size());
        let res = self.sink.write(&key, &mut |w| {
            let mut enc = FileEncoder::new(w, &header, opts).map_err(fmt_err)?;
            src.for_each_page(commit, |pgno, page| {
                fresh.set(pgno, page);
                enc.write_page(pgno, page).map_err(fmt_err)
            })?;
            crate::fault::point("snapshot")?;
            fresh.resize(commit);
            enc.finish(fresh.checksum()).map_err(fmt_err)?;
            Ok(())
        });
        let sum = fresh.checksum();
        let is_new = Some(txid) != self.cur.pos;
        if res.is_ok() {
            self.stats.snapshots.fetch_add(1, Ordering::Relaxed);
            if is_new {
                self.cur.map = fresh;
                self.cur.needs_resync = false;
            }
        }
        self.cur.map.begin();
        self.finish_write(&key, CaptureKind::Snapshot, res, 0)?;
        if is_new {
            // A new chain: save its map now, so a crash before the first checkpoint restarts
            // by replaying the spool instead of taking yet another snapshot.
            self.save_map(true);
        }
        Ok(sum)
    }

    /// Writes, as the next segment, the pages of the database at the reader's cursor whose
    /// hash differs from the replicated state.
    pub(in crate::sqlite) fn write_diff(&mut self) -> Result<(), MonitorError> {
        let commit = self
            .src
            .commit()
            .map_err(|e| self.io_err("reading database", e))?;
        let (header, key) = self.next_segment(commit);
        let opts = self.segment_options();
        let src = &self.src;
        let map = &mut self.cur.map;
        let was = map.commit();
        map.begin();
        let res = self.sink.write(&key, &mut |w| {
            let mut enc = FileEncoder::new(w, &header, opts).map_err(fmt_err)?;
            let mut changed = false;
            src.for_each_page(commit, |pgno, page| {
                if map.set(pgno, page) {
                    changed = true;
                    enc.write_page(pgno, page).map_err(fmt_err)?;
                }
                Ok(())
            })?;
            if !changed && commit == was {
                // The replicated state already: no file (a failed write leaves none).
                return Err(io::Error::other(Unchanged));
            }
            map.resize(commit);
            enc.finish(map.checksum()).map_err(fmt_err)?;
            Ok(())
        });
        let unchanged = matches!(&res, Err(e) if e.get_ref().is_some_and(|i| i.is::<Unchanged>()));
        if res.is_ok() || unchanged {
            self.cur.needs_resync = false;
            self.stats.resyncs.fetch_add(1, Ordering::Relaxed);
        }
        if unchanged {
            // Every page as replicated: no new position (a restart after the application closed
            // cleanly, its WAL checkpointed and deleted, added an empty restore point each time).
            self.cur.map.commit_changes();
            tracing::info!(
                "{}: no page differs from the replicated state; nothing to ship",
                self.set.db.display()
            );
            return Ok(());
        }
        self.finish_write(&key, CaptureKind::Resync, res, 0)
    }
}

/// The full read found every page as replicated (see `write_diff`).
#[derive(Debug)]
struct Unchanged;

impl std::fmt::Display for Unchanged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no page differs from the replicated state")
    }
}

impl std::error::Error for Unchanged {}
