//! The tail a checkpoint drains under the write lock, carried in memory into the next sync.
//!
//! A PASSIVE checkpoint ships what it gathered, backfills, then takes the write lock to copy
//! the few commits made meanwhile before letting the WAL restart. Written at once, that tail
//! was a level-0 file of its own right after the sync's: two files per sync interval under a
//! steady load, each an upload, a compaction input and one more copy of the hot pages
//! (`docs/measurements.md`). Read into memory instead, it goes out with the next sync's
//! segment. Nothing is lost if memsync dies before that: the pages are not in the page map
//! until written, so the restart's resynchronisation finds them in the database (the
//! checkpoint copied them there) and ships them.

use std::collections::BTreeMap;

use replica_formats::PageNo;

/// Most pages carried; a larger tail is written at once (it bounds the memory held).
pub const MAX_PAGES: usize = 256;

/// Page images of committed transactions not yet written to the spool.
#[derive(Debug, Default)]
pub struct Carry {
    /// Newest image of each page, by page number.
    pub pages: BTreeMap<PageNo, Vec<u8>>,
    /// Database size in pages after the last carried commit.
    pub commit: u32,
    /// Transactions carried.
    pub transactions: u64,
}

impl Carry {
    /// Records the newest images of a scan's pages and the size it committed.
    pub fn add(
        &mut self,
        pages: impl IntoIterator<Item = (PageNo, Vec<u8>)>,
        commit: u32,
        txs: u64,
    ) {
        self.pages.extend(pages);
        // A commit that shrank the database drops the pages past its end.
        self.pages.retain(|p, _| p.get() <= commit);
        self.commit = commit;
        self.transactions += txs;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_images_win_and_truncation_drops_pages() {
        let pg = |n| PageNo::new(n).unwrap();
        let mut c = Carry::default();
        c.add([(pg(1), vec![1]), (pg(5), vec![5])], 5, 2);
        c.add([(pg(1), vec![2])], 3, 1);
        assert_eq!(c.pages.len(), 1);
        assert_eq!(c.pages[&pg(1)], vec![2]);
        assert_eq!((c.commit, c.transactions), (3, 3));
    }
}
