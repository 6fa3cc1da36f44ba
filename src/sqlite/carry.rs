//! Committed pages read from the WAL but not yet written to the spool, carried to the next sync.
//!
//! A PASSIVE checkpoint ships what it gathered, backfills, then takes the write lock to copy
//! the few commits made meanwhile before letting the WAL restart; an application's blocking
//! checkpoint makes memsync copy what is committed before it steps aside. Written at once, each
//! was a level-0 file of its own, a few milliseconds from the sync's: under a steady load one
//! or two more files per sync interval, each an upload, a compaction input and one more copy of
//! the hot pages (`docs/measurements.md`). Read instead, they go out with the next sync's
//! segment. Nothing is lost if memsync dies before that: the pages are not in the page map
//! until written, so the restart's resynchronisation finds them in the database (the
//! checkpoint copied them there) and ships them.
//!
//! The first [`MEM_PAGES`] pages are held in memory; more go to an unnamed temporary file in
//! the spool directory (the page cache, not memsync's memory, holds them; the file vanishes
//! with the process). An application checkpointing in the middle of a busy second can leave
//! hundreds of pages to carry, which a memory-only carry either had to hold (resident memory
//! is one of memsync's figures) or write as a file of their own.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::Path;

use replica_formats::PageNo;

/// Pages held in memory; more are spilled to a temporary file.
pub const MEM_PAGES: usize = 64;

/// Most pages carried; a larger tail is written at once (it bounds the temporary file).
pub const MAX_PAGES: usize = 16_384;

/// Page images of committed transactions not yet written to the spool.
#[derive(Debug, Default)]
pub struct Carry {
    /// Newest image of pages in memory, by page number.
    mem: BTreeMap<PageNo, Vec<u8>>,
    /// Pages beyond [`MEM_PAGES`].
    spill: Option<Spill>,
    /// Database size in pages after the last carried commit.
    pub commit: u32,
    /// Transactions carried.
    pub transactions: u64,
}

/// Carried pages in a temporary file: one slot per page, rewritten in place by newer images.
#[derive(Debug)]
struct Spill {
    file: File,
    slots: BTreeMap<PageNo, u64>,
    end: u64,
}

impl Carry {
    /// Pages carried.
    pub fn len(&self) -> usize {
        self.mem.len() + self.spill.as_ref().map_or(0, |s| s.slots.len())
    }

    /// True when no page is carried.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records the newest image of page `pgno` (past [`MEM_PAGES`] pages, in a temporary file
    /// in `dir`). Pages are taken one at a time, so carrying a long tail never holds it all in
    /// memory at once.
    pub fn put(&mut self, pgno: PageNo, data: &[u8], dir: &Path) -> io::Result<()> {
        if let Some(s) = &self.spill
            && let Some(&at) = s.slots.get(&pgno)
        {
            return crate::platform::write_all_at(&s.file, data, at);
        }
        if let Some(held) = self.mem.get_mut(&pgno) {
            held.copy_from_slice(data);
            return Ok(());
        }
        if self.mem.len() < MEM_PAGES {
            self.mem.insert(pgno, data.to_vec());
            return Ok(());
        }
        let s = match &mut self.spill {
            Some(s) => s,
            None => self.spill.insert(Spill {
                file: tempfile::tempfile_in(dir)?,
                slots: BTreeMap::new(),
                end: 0,
            }),
        };
        crate::platform::write_all_at(&s.file, data, s.end)?;
        s.slots.insert(pgno, s.end);
        s.end += data.len() as u64;
        Ok(())
    }

    /// Records the size the carried transactions committed, and how many there were.
    pub fn committed(&mut self, commit: u32, txs: u64) {
        // A commit that shrank the database drops the pages past its end.
        self.mem.retain(|p, _| p.get() <= commit);
        if let Some(s) = &mut self.spill {
            s.slots.retain(|p, _| p.get() <= commit);
        }
        self.commit = commit;
        self.transactions += txs;
    }

    /// The carried page numbers, ascending.
    pub fn pgnos(&self) -> Vec<PageNo> {
        let mut all: Vec<PageNo> = self.mem.keys().copied().collect();
        if let Some(s) = &self.spill {
            all.extend(s.slots.keys().copied());
            all.sort_unstable();
        }
        all
    }

    /// Reads the carried image of `pgno` into `buf` (one page).
    pub fn read(&self, pgno: PageNo, buf: &mut [u8]) -> io::Result<()> {
        if let Some(data) = self.mem.get(&pgno) {
            buf.copy_from_slice(data);
            return Ok(());
        }
        match &self.spill {
            Some(s) if s.slots.contains_key(&pgno) => {
                crate::platform::read_exact_at(&s.file, buf, s.slots[&pgno])
            }
            _ => Err(io::Error::other(format!("page {pgno} is not carried"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(n: u32) -> PageNo {
        PageNo::new(n).unwrap()
    }

    fn image(c: &Carry, n: u32) -> Vec<u8> {
        let mut buf = vec![0u8; 4];
        c.read(pg(n), &mut buf).unwrap();
        buf
    }

    #[test]
    fn newer_images_win_and_truncation_drops_pages() {
        let d = tempfile::tempdir().unwrap();
        let mut c = Carry::default();
        c.put(pg(1), &[1; 4], d.path()).unwrap();
        c.put(pg(5), &[5; 4], d.path()).unwrap();
        c.committed(5, 2);
        c.put(pg(1), &[2; 4], d.path()).unwrap();
        c.committed(3, 1);
        assert_eq!(c.pgnos(), [pg(1)]);
        assert_eq!(image(&c, 1), [2; 4]);
        assert!(c.read(pg(5), &mut [0u8; 4]).is_err());
        assert_eq!((c.commit, c.transactions), (3, 3));
    }

    /// Past [`MEM_PAGES`] pages go to the temporary file, are rewritten in place there, and
    /// come back in page order with the ones in memory.
    #[test]
    fn pages_past_the_memory_share_spill_to_a_file() {
        let d = tempfile::tempdir().unwrap();
        let n = MEM_PAGES as u32 + 10;
        let mut c = Carry::default();
        // Odd pages first (into memory), then even ones (past the share: spilled).
        for i in (1..=2 * n).step_by(2).chain((2..=2 * n).step_by(2)) {
            c.put(pg(i), &[i as u8; 4], d.path()).unwrap();
        }
        c.committed(2 * n, 1);
        assert_eq!(c.len(), 2 * n as usize);
        assert!(c.spill.is_some());
        c.put(pg(2 * n), &[0xaa; 4], d.path()).unwrap();
        c.put(pg(1), &[0xbb; 4], d.path()).unwrap();
        assert_eq!(c.pgnos(), (1..=2 * n).map(pg).collect::<Vec<_>>());
        assert_eq!(image(&c, 2 * n), [0xaa; 4]);
        assert_eq!(image(&c, 1), [0xbb; 4]);
        assert_eq!(image(&c, 2), [2; 4]);
        c.committed(n, 1);
        assert_eq!(c.len(), n as usize);
        assert!(c.read(pg(2 * n), &mut [0u8; 4]).is_err());
        // Unnamed: nothing is left in the directory.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }
}
