//! The replicated database state, one 64-bit hash per page.
//!
//! Holding only hashes (8 bytes per page: 400 KB for a 200 MB database) lets the monitor compute
//! each segment's pre/post database checksum in O(changed pages) and, after the WAL was reset
//! behind memsync's back, diff the live database against what the replica holds and ship only
//! the pages that differ instead of a full snapshot.

use std::fs;
use std::io;
use std::path::Path;

use replica_formats::{DbChecksum, PageNo, PageSize, TxId, page_hash};

/// Page hashes of the database state at a replication position.
#[derive(Debug, Clone)]
pub struct PageMap {
    page_size: PageSize,
    hashes: Vec<u64>,
    checksum: DbChecksum,
    /// Journal of changes since [`PageMap::begin`], so a failed spool write leaves the map as it was.
    undo: Option<Undo>,
}

#[derive(Debug, Clone)]
struct Undo {
    len: usize,
    checksum: DbChecksum,
    old: Vec<(usize, u64)>,
}

impl PageMap {
    /// An empty database of the given page size.
    pub fn new(page_size: PageSize) -> Self {
        PageMap {
            page_size,
            hashes: Vec::new(),
            checksum: DbChecksum::EMPTY,
            undo: None,
        }
    }

    /// Starts journaling changes; [`PageMap::rollback`] undoes them, [`PageMap::commit_changes`]
    /// keeps them.
    pub fn begin(&mut self) {
        self.undo = Some(Undo {
            len: self.hashes.len(),
            checksum: self.checksum,
            old: Vec::new(),
        });
    }

    /// Keeps the changes made since [`PageMap::begin`].
    pub fn commit_changes(&mut self) {
        self.undo = None;
    }

    /// Reverts to the state at [`PageMap::begin`].
    pub fn rollback(&mut self) {
        if let Some(u) = self.undo.take() {
            // Entries past the old length are simply cut; earlier ones are restored newest-last
            // first so the oldest recorded value wins.
            self.hashes.resize(self.hashes.len().max(u.len), 0);
            for &(i, h) in u.old.iter().rev() {
                if i < self.hashes.len() {
                    self.hashes[i] = h;
                }
            }
            self.hashes.truncate(u.len);
            self.checksum = u.checksum;
        }
    }

    /// Page size of the database.
    pub fn page_size(&self) -> PageSize {
        self.page_size
    }

    /// Database size in pages.
    pub fn commit(&self) -> u32 {
        self.hashes.len() as u32
    }

    /// Whole-database checksum (XOR of the page hashes).
    pub fn checksum(&self) -> DbChecksum {
        self.checksum
    }

    /// Hash of `pgno`, if within the database.
    pub fn hash(&self, pgno: PageNo) -> Option<u64> {
        self.hashes.get(pgno.get() as usize - 1).copied()
    }

    /// Sets page `pgno` (growing the database if needed) and returns whether it changed.
    pub fn set(&mut self, pgno: PageNo, data: &[u8]) -> bool {
        if pgno.is_lock_page(self.page_size) {
            return false;
        }
        let h = page_hash(pgno, data);
        let i = pgno.get() as usize - 1;
        if i >= self.hashes.len() {
            self.grow(pgno.get());
        }
        let old = self.hashes[i];
        if old == h {
            return false;
        }
        if let Some(u) = &mut self.undo
            && i < u.len
        {
            u.old.push((i, old));
        }
        self.checksum.toggle(old);
        self.checksum.toggle(h);
        self.hashes[i] = h;
        true
    }

    /// Changes the database size to `commit` pages: pages past it are dropped, new pages are
    /// zero-filled (what a file extended by SQLite reads as until written).
    pub fn resize(&mut self, commit: u32) {
        let n = commit as usize;
        if n < self.hashes.len() {
            for (i, &h) in self.hashes.iter().enumerate().skip(n) {
                self.checksum.toggle(h);
                if let Some(u) = &mut self.undo
                    && i < u.len
                {
                    u.old.push((i, h));
                }
            }
            self.hashes.truncate(n);
        } else {
            self.grow(commit);
        }
    }

    fn grow(&mut self, to: u32) {
        let zero = vec![0u8; self.page_size.as_usize()];
        for p in self.hashes.len() as u32 + 1..=to {
            let pgno = PageNo::new(p).expect("page numbers start at 1");
            let h = if pgno.is_lock_page(self.page_size) {
                0
            } else {
                page_hash(pgno, &zero)
            };
            self.checksum.toggle(h);
            self.hashes.push(h);
        }
    }

    /// Writes the map (temp file, rename) tagged with the position it describes, so a
    /// restarted monitor can diff against it instead of snapshotting. Without an `fsync`: a
    /// restart uses a map only if it replays, checksum by checksum, up to the spool's newest
    /// file (`recover.rs`), so a map lost or stale after a power cut costs a snapshot, never a
    /// wrong diff; the spool files it would replay are not fsynced either.
    pub fn save(&self, path: &Path, txid: TxId) -> io::Result<()> {
        let mut buf = Vec::with_capacity(32 + self.hashes.len() * 8);
        buf.extend_from_slice(b"MSPM");
        buf.extend_from_slice(&self.page_size.get().to_le_bytes());
        buf.extend_from_slice(&txid.get().to_le_bytes());
        buf.extend_from_slice(&self.checksum.get().to_le_bytes());
        buf.extend_from_slice(&(self.hashes.len() as u32).to_le_bytes());
        for h in &self.hashes {
            buf.extend_from_slice(&h.to_le_bytes());
        }
        let crc = crc32(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        crate::fault::point("pagemap-save")?;
        crate::fsutil::replace_hint(path, &buf)
    }

    /// Loads a map saved by [`PageMap::save`]; `None` if missing, corrupt or inconsistent.
    pub fn load(path: &Path) -> Option<(PageMap, TxId)> {
        let b = fs::read(path).ok()?;
        if b.len() < 32 || &b[..4] != b"MSPM" {
            return None;
        }
        let (body, tail) = b.split_at(b.len() - 4);
        if crc32(body).to_le_bytes() != tail {
            return None;
        }
        let u32at = |i: usize| u32::from_le_bytes(body[i..i + 4].try_into().unwrap());
        let u64at = |i: usize| u64::from_le_bytes(body[i..i + 8].try_into().unwrap());
        let page_size = PageSize::new(u32at(4)).ok()?;
        let txid = TxId::new(u64at(8))?;
        let checksum = u64at(16);
        let n = u32at(24) as usize;
        if body.len() != 28 + n * 8 {
            return None;
        }
        let hashes: Vec<u64> = (0..n).map(|i| u64at(28 + i * 8)).collect();
        let mut map = PageMap {
            page_size,
            hashes,
            checksum: DbChecksum::EMPTY,
            undo: None,
        };
        for &h in &map.hashes {
            map.checksum.toggle(h);
        }
        (map.checksum.get() == checksum).then_some((map, txid))
    }
}

fn crc32(b: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(b);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(n: u32) -> PageNo {
        PageNo::new(n).unwrap()
    }

    #[test]
    fn checksum_tracks_state_and_rollback_restores_it() {
        let ps = PageSize::new(512).unwrap();
        let mut m = PageMap::new(ps);
        m.set(pg(1), &[1u8; 512]);
        m.set(pg(2), &[2u8; 512]);
        let (c0, n0) = (m.checksum(), m.commit());
        m.begin();
        m.set(pg(2), &[9u8; 512]);
        m.set(pg(5), &[5u8; 512]);
        m.resize(1);
        m.set(pg(1), &[7u8; 512]);
        m.rollback();
        assert_eq!((m.checksum(), m.commit()), (c0, n0));
        assert_eq!(m.hash(pg(2)), Some(page_hash(pg(2), &[2u8; 512])));
        // Same state reached by another route gives the same checksum.
        let mut other = PageMap::new(ps);
        other.set(pg(2), &[2u8; 512]);
        other.set(pg(1), &[1u8; 512]);
        assert_eq!(other.checksum(), m.checksum());
    }

    #[test]
    fn save_load_round_trip_and_corruption() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("map");
        let mut m = PageMap::new(PageSize::new(1024).unwrap());
        m.set(pg(3), &[3u8; 1024]);
        m.save(&p, TxId::new(42).unwrap()).unwrap();
        let (l, t) = PageMap::load(&p).unwrap();
        assert_eq!((l.checksum(), l.commit(), t.get()), (m.checksum(), 3, 42));
        let mut b = std::fs::read(&p).unwrap();
        b[30] ^= 1;
        std::fs::write(&p, b).unwrap();
        assert!(PageMap::load(&p).is_none());
    }
}
