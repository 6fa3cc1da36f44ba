//! Startup: where the last run stopped. Resumes from the spool's newest file when the WAL still
//! holds its position, brings the saved page map forward over the files after it, and falls
//! back to a resynchronisation or a fresh snapshot.

use std::path::Path;
use std::sync::atomic::Ordering;

use replica_formats::{ObjectKey, TxId};

use super::monitor::{Monitor, MonitorError};
use super::pagemap::PageMap;

/// Meta-directory file holding when the last run stopped (milliseconds since the epoch, by its
/// clock): the next run stamps its files after it (`capture/stamp.rs`).
const STOPPED_AT: &str = "stopped-at";

/// Records that this run stops now. Without an fsync: lost in a crash, the newest file's time
/// stands in.
pub(super) fn mark_stopped(meta_dir: &Path) {
    let mark = meta_dir.join(STOPPED_AT);
    let now = super::capture::now_ms().get().to_string();
    if let Err(e) = crate::fsutil::replace_hint(&mark, now.as_bytes()) {
        tracing::debug!("{}: {e}", mark.display());
    }
}

/// When the last run stopped, if it recorded it.
fn stopped_at(meta_dir: &Path) -> Option<i64> {
    let text = std::fs::read_to_string(meta_dir.join(STOPPED_AT)).ok()?;
    text.trim().parse().ok()
}

impl Monitor {
    /// Brings the spool up to date with the database (see [`Monitor::start`]).
    pub(super) fn recover(&mut self, floor: Option<TxId>) -> Result<(), MonitorError> {
        let keys = self
            .cap
            .sink
            .keys()
            .map_err(|e| self.io_err("listing spool", e))?;
        let last = keys.iter().max_by_key(|k| k.max_txid()).cloned();
        let stopped = stopped_at(&self.cfg.meta_dir);
        if let Some(newest) = keys
            .iter()
            .map(|k| k.timestamp().get())
            .chain(stopped)
            .max()
        {
            self.cap.stamps.after(newest, &self.cfg.db_path);
        }
        let floor = floor.max(last.as_ref().map(ObjectKey::max_txid));
        let map_path = self.cfg.meta_dir.join("pagemap");
        let saved = PageMap::load(&map_path);
        if let Some(last) = last.filter(|k| Some(k.max_txid()) == floor) {
            let header = self
                .cap
                .sink
                .header(&last)
                .map_err(|e| self.io_err("reading spool", e))?;
            let post = self
                .cap
                .sink
                .post_checksum(&last)
                .map_err(|e| self.io_err("reading spool", e))?;
            let saved = saved.and_then(|(m, t)| self.replay(m, t, &keys, last.max_txid()));
            let saved = saved.filter(|(m, t)| {
                *t == last.max_txid()
                    && m.checksum() == post
                    && m.page_size() == self.cap.src.page_size()
            });
            if let Some((map, _)) = saved {
                self.cap.cur.map = map;
                self.cap.cur.pos = Some(last.max_txid());
                let resumed = self
                    .with_write_lock(|m| m.cap.src.resume(&header.wal).map_err(|e| m.wal_err(e)))?;
                let db = self.cfg.db_path.display().to_string();
                match resumed {
                    Some(scan) => {
                        tracing::info!(
                            "{db}: resuming at position {} (WAL unchanged)",
                            last.max_txid()
                        );
                        if !scan.frames.is_empty() {
                            self.cap.write_frames(&scan)?;
                        }
                    }
                    None => {
                        tracing::info!(
                            "{db}: WAL changed while stopped; shipping the pages that differ"
                        );
                        self.resync()?;
                    }
                }
                if self.cfg.snapshot_wanted.swap(false, Ordering::Relaxed) {
                    self.snapshot_current()?;
                }
                if let Some(pos) = self.cap.cur.pos {
                    self.cap.sink.resumed(pos);
                }
                return Ok(());
            }
        }
        self.with_write_lock(|m| {
            m.cap.src.reset();
            m.drain_wal()
        })?;
        self.cap.cur.pos = floor;
        // This snapshot also serves any replica that asked for one.
        self.cfg.snapshot_wanted.store(false, Ordering::Relaxed);
        self.cap.snapshot()?;
        tracing::info!(
            "{}: snapshot at position {:016x} ({} pages)",
            self.cfg.db_path.display(),
            self.cap.cur.pos.map_or(0, TxId::get),
            self.cap.cur.map.commit()
        );
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
            let bytes = self.cap.sink.read(key).ok()?;
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
        tracing::info!(
            "{}: page map replayed from position {from} to {to}",
            self.cfg.db_path.display()
        );
        Some((map, to))
    }
}
