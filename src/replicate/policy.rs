//! When to compact the spool and when a fresh snapshot is due: the cadence, kept apart from the
//! merge itself (`compact.rs`).

use replica_formats::{FAN_IN, Level, ObjectKey, PageSize};

use super::compact::Compacted;

/// Decides when to compact the spool's segments (level by level, `FAN_IN` at a time) and when a
/// fresh snapshot is due, so a restore reads about one database's worth of data however long
/// the history is.
#[derive(Debug)]
pub struct Compactor {
    /// How often a compaction pass runs (time buckets close as time passes).
    pub interval: std::time::Duration,
    last: std::time::Instant,
    /// Bytes of segments written since the last snapshot (what a restore reads on top of it).
    pub since_snapshot: u64,
    /// Size of the last snapshot.
    pub snapshot_bytes: u64,
    /// Position of the last snapshot: merges below it change nothing a restore reads.
    snapshot_txid: Option<replica_formats::TxId>,
    /// Snapshot at least this often, if set (`snapshot-interval`, else `retention`).
    pub snapshot_interval: Option<std::time::Duration>,
    /// When the last snapshot was taken (Unix ms, its key's time): across restarts, so that
    /// a process restarted more often than the interval still takes one.
    last_snapshot_ms: i64,
    /// Database size in pages at the last snapshot, and now.
    snapshot_pages: u32,
    db_pages: u32,
    /// Database page size.
    page_size: PageSize,
    /// Level-0 files spooled since the last compaction.
    l0_files: usize,
}

/// Fewest pages a snapshot must have for its compression ratio to predict a fresh one's.
const RELIABLE_SNAPSHOT_PAGES: u32 = 1024;

/// Segments since the last snapshot may add up to this much before a new snapshot is taken,
/// or the last snapshot's size if larger. Each snapshot is a full copy kept for the whole
/// retention window; below this much, the segments restore in a fraction of a second at
/// memsync's local restore speed, so a copy would cost more storage than it saves time.
/// (A smaller floor made a small busy database take full copies far too often;
/// `docs/measurements.md`.)
pub const SNAPSHOT_MIN_BYTES: u64 = 64 << 20;

impl Compactor {
    /// A compactor merging partial level-0 groups every `interval`.
    pub fn new(interval: std::time::Duration) -> Self {
        let now = std::time::Instant::now();
        Compactor {
            interval,
            last: now,
            since_snapshot: 0,
            snapshot_bytes: 0,
            snapshot_txid: None,
            snapshot_interval: None,
            last_snapshot_ms: crate::stats::unix_ms(),
            snapshot_pages: 0,
            db_pages: 0,
            page_size: PageSize::new(4096).expect("a valid page size"),
            l0_files: 0,
        }
    }

    /// The newest snapshot a previous run left in the spool was taken at `ms` (Unix ms).
    pub fn snapshot_taken_at(&mut self, ms: i64) {
        self.last_snapshot_ms = ms;
    }

    /// Records the database size, to estimate what a fresh snapshot would weigh.
    pub fn set_db_size(&mut self, pages: u32, page_size: PageSize) {
        self.db_pages = pages;
        self.page_size = page_size;
    }

    /// Records a spooled file.
    pub fn note(&mut self, key: &ObjectKey, size: u64) {
        if key.is_snapshot() {
            self.since_snapshot = 0;
            self.snapshot_bytes = size;
            self.snapshot_txid = Some(key.max_txid());
            self.snapshot_pages = self.db_pages;
            self.last_snapshot_ms = key.timestamp().get();
        } else if key.level() == Some(Level::ZERO) {
            self.since_snapshot += size;
            self.l0_files += 1;
        }
    }

    /// Records a compacted file of `size` bytes that replaces files totalling `merged` bytes.
    fn note_merge(&mut self, merged: u64, size: u64) {
        self.since_snapshot = self.since_snapshot.saturating_sub(merged) + size;
    }

    /// What a snapshot taken now would weigh, extrapolated from the last one. A snapshot of an
    /// almost empty database (fewer than [`RELIABLE_SNAPSHOT_PAGES`]) says nothing about how the
    /// grown one compresses: then half the raw size is assumed. (Extrapolating from a new
    /// database's tiny first snapshot took needless full snapshots.)
    fn snapshot_estimate(&self) -> u64 {
        if self.snapshot_pages < RELIABLE_SNAPSHOT_PAGES {
            return u64::from(self.db_pages) * u64::from(self.page_size.get()) / 2;
        }
        self.snapshot_bytes / self.snapshot_pages as u64 * self.db_pages as u64
    }

    /// True when the files piled on the last snapshot outweigh a fresh one (a restore would read
    /// more than twice the database), or the snapshot interval passed and something was written
    /// since (an idle database took the same full copy again each interval).
    pub fn snapshot_due(&self) -> bool {
        self.since_snapshot > self.snapshot_estimate().max(SNAPSHOT_MIN_BYTES)
            || self.snapshot_interval_passed()
    }

    /// The part of [`snapshot_due`](Self::snapshot_due) that is a matter of time alone:
    /// `snapshot-interval` passed since the last snapshot, and something was written since.
    pub fn snapshot_interval_passed(&self) -> bool {
        self.since_snapshot > 0
            && self.snapshot_interval.is_some_and(|i| {
                crate::stats::unix_ms().saturating_sub(self.last_snapshot_ms)
                    >= i.as_millis() as i64
            })
    }

    /// True when a compaction pass should run: the interval passed (or `force`), or a full group
    /// of level-0 segments is waiting.
    pub fn due(&self, force: bool) -> bool {
        force || self.last.elapsed() >= self.interval || self.l0_files >= FAN_IN
    }

    /// Starts a pass: resets the level-0 count and, for a timed pass, the interval.
    pub fn begin_pass(&mut self, force: bool) {
        if force || self.last.elapsed() >= self.interval {
            self.last = std::time::Instant::now();
        }
        self.l0_files = 0;
    }

    /// Records the files a pass wrote.
    pub fn finish_pass(&mut self, written: &[Compacted]) {
        for c in written {
            // A group closed by the last snapshot lies before it: not read on top of it.
            if Some(c.key.max_txid()) > self.snapshot_txid {
                self.note_merge(c.replaced, c.size);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use replica_formats::{Timestamp, TxId};

    /// The snapshot interval counts from the last snapshot's own time, also one a previous run
    /// took (a process restarted more often than the interval took none before).
    #[test]
    fn the_snapshot_interval_counts_from_the_snapshots_time() {
        let now = crate::stats::unix_ms();
        let snap = |ts: i64| ObjectKey::Snapshot {
            txid: TxId::new(1).unwrap(),
            ts: Timestamp::from_millis(ts),
        };
        let seg = ObjectKey::Segment {
            level: Level::ZERO,
            min: TxId::new(2).unwrap(),
            max: TxId::new(2).unwrap(),
            ts: Timestamp::from_millis(now),
        };
        let mut c = Compactor::new(std::time::Duration::from_secs(30));
        c.snapshot_interval = Some(std::time::Duration::from_secs(60));
        c.note(&seg, 10);
        assert!(!c.snapshot_due(), "a new process waits the interval");
        c.snapshot_taken_at(now - 61_000);
        assert!(
            c.snapshot_due(),
            "the spool's newest snapshot is older than the interval"
        );
        c.note(&snap(now), 100);
        assert!(!c.snapshot_due());
        c.note(&snap(now - 120_000), 100);
        assert!(
            !c.snapshot_due(),
            "nothing written since: the same copy again"
        );
        c.note(&seg, 10);
        assert!(c.snapshot_due());
    }

    /// The snapshot policy: files piled on a snapshot may outweigh a fresh one, then a snapshot
    /// is due; the first, near-empty snapshot of a new database does not set the estimate.
    #[test]
    fn snapshot_due_when_segments_outweigh_a_fresh_snapshot() {
        let ps = PageSize::new(4096).unwrap();
        let snap = |txid| ObjectKey::Snapshot {
            txid: TxId::new(txid).unwrap(),
            ts: Timestamp::from_millis(0),
        };
        let seg = |txid| ObjectKey::Segment {
            level: Level::ZERO,
            min: TxId::new(txid).unwrap(),
            max: TxId::new(txid).unwrap(),
            ts: Timestamp::from_millis(0),
        };
        let mb = |n: u64| n << 20;
        let mut c = Compactor::new(std::time::Duration::from_secs(30));
        // A new database: 20 pages snapshotted into a few hundred bytes.
        c.set_db_size(20, ps);
        c.note(&snap(1), 400);
        // It grew to 64 000 pages (262 MB); 120 MB of segments is less than half of that raw.
        c.set_db_size(64_000, ps);
        for t in 2..32 {
            c.note(&seg(t), mb(4));
        }
        assert!(!c.snapshot_due(), "extrapolated from a near-empty snapshot");
        for t in 32..36 {
            c.note(&seg(t), mb(4));
        }
        assert!(
            c.snapshot_due(),
            "136 MB of segments outweigh a ~131 MB snapshot"
        );
        // A real snapshot sets the ratio: 262 MB raw into 80 MB.
        c.note(&snap(36), mb(80));
        for t in 37..56 {
            c.note(&seg(t), mb(4));
        }
        assert!(!c.snapshot_due());
        c.note(&seg(56), mb(8));
        assert!(c.snapshot_due());
        // Compaction shrinks what piles up.
        c.finish_pass(&[Compacted {
            key: seg(57),
            size: mb(5),
            replaced: mb(21),
        }]);
        assert!(!c.snapshot_due());
        // A group closed by the snapshot lies before it: merging it changes nothing on top.
        c.note(&seg(58), mb(14));
        c.finish_pass(&[Compacted {
            key: seg(30),
            size: mb(2),
            replaced: mb(40),
        }]);
        assert!(
            c.snapshot_due(),
            "a merge below the snapshot is not counted"
        );

        // A small database: a restore may read up to SNAPSHOT_MIN_BYTES on top of its snapshot
        // rather than the replica storing a full copy for every few MB of changes.
        let mut c = Compactor::new(std::time::Duration::from_secs(30));
        c.set_db_size(2_000, ps);
        c.note(&snap(1), mb(5));
        for t in 2..17 {
            c.note(&seg(t), mb(4));
        }
        assert!(!c.snapshot_due(), "60 MB is under the floor");
        c.note(&seg(17), mb(8));
        assert!(c.snapshot_due(), "68 MB is over it");
    }
}
