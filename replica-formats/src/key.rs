//! Typed object keys: where each replica file lives, relative to the replica
//! root, and how keys order by replication position.
//!
//! Everything a restore planner needs (kind, level, txid range, timestamp) is
//! in the name, so planning needs one LIST and no per-object HEAD or GET.

use std::cmp::Ordering;
use std::fmt;

use crate::pos::{Timestamp, TxId};

/// Directory (key prefix) holding snapshots.
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// Directory (key prefix) holding segments, one subdirectory per level.
pub const SEGMENTS_DIR: &str = "segments";

const SNAPSHOT_EXT: &str = ".snap";
const SEGMENT_EXT: &str = ".seg";

/// Compaction level of a segment: 0 for segments shipped straight from the
/// WAL, higher for segments merged from lower levels. One decimal digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Level(u8);

impl Level {
    /// Segments shipped directly from the WAL.
    pub const ZERO: Level = Level(0);
    /// Highest level (keeps the level a single digit in paths).
    pub const MAX: Level = Level(9);

    /// Wraps `v`; `None` above 9.
    pub const fn new(v: u8) -> Option<Self> {
        if v <= Self::MAX.0 {
            Some(Self(v))
        } else {
            None
        }
    }

    /// The raw value.
    pub const fn get(self) -> u8 {
        self.0
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One replica file, identified by its path.
///
/// Paths (all numbers fixed-width lowercase hex, so listings sort sensibly):
/// - snapshot: `snapshots/<txid:016x>-<ts_ms:016x>.snap`
/// - segment: `segments/<level>/<min:016x>-<max:016x>-<ts_ms:016x>.seg`
///
/// `ts` is the wall-clock time at which the last transaction in the file
/// (`max_txid`) was committed, also for compacted files, so that
/// point-in-time restore picks the same history whichever level it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKey {
    /// A full copy of the database at `txid`.
    Snapshot {
        /// Position the snapshot captures.
        txid: TxId,
        /// Commit time of `txid`.
        ts: Timestamp,
    },
    /// Changed pages taking the database from `min - 1` to `max`.
    Segment {
        /// Compaction level.
        level: Level,
        /// First position covered.
        min: TxId,
        /// Last position covered (inclusive).
        max: TxId,
        /// Commit time of `max`.
        ts: Timestamp,
    },
}

impl ObjectKey {
    /// The path relative to the replica root, `/`-separated.
    pub fn path(&self) -> String {
        match *self {
            ObjectKey::Snapshot { txid, ts } => {
                format!(
                    "{SNAPSHOTS_DIR}/{txid}-{:016x}{SNAPSHOT_EXT}",
                    ts.get() as u64
                )
            }
            ObjectKey::Segment {
                level,
                min,
                max,
                ts,
            } => format!(
                "{SEGMENTS_DIR}/{level}/{min}-{max}-{:016x}{SEGMENT_EXT}",
                ts.get() as u64
            ),
        }
    }

    /// Parses a path produced by [`ObjectKey::path`]. Anything not exactly in
    /// canonical form (uppercase hex, temp files, `min > max`, extra
    /// components) is `None`, so stray objects in the replica are ignored
    /// rather than misread.
    pub fn parse(path: &str) -> Option<ObjectKey> {
        let key = if let Some(rest) = path.strip_prefix(SNAPSHOTS_DIR) {
            let name = rest.strip_prefix('/')?.strip_suffix(SNAPSHOT_EXT)?;
            let (txid, ts) = name.split_once('-')?;
            ObjectKey::Snapshot {
                txid: TxId::new(hex16(txid)?)?,
                ts: Timestamp::from_millis(hex16(ts)? as i64),
            }
        } else {
            let rest = path.strip_prefix(SEGMENTS_DIR)?.strip_prefix('/')?;
            let (level, name) = rest.split_once('/')?;
            let level = match level.as_bytes() {
                [d @ b'0'..=b'9'] => Level(d - b'0'),
                _ => return None,
            };
            let mut parts = name.strip_suffix(SEGMENT_EXT)?.split('-');
            let min = TxId::new(hex16(parts.next()?)?)?;
            let max = TxId::new(hex16(parts.next()?)?)?;
            let ts = Timestamp::from_millis(hex16(parts.next()?)? as i64);
            if parts.next().is_some() || min > max {
                return None;
            }
            ObjectKey::Segment {
                level,
                min,
                max,
                ts,
            }
        };
        // Belt and braces: only the canonical spelling is a key.
        (key.path() == path).then_some(key)
    }

    /// First position the file covers (the txid, for a snapshot).
    pub fn min_txid(&self) -> TxId {
        match *self {
            ObjectKey::Snapshot { txid, .. } => txid,
            ObjectKey::Segment { min, .. } => min,
        }
    }

    /// Last position the file covers (the txid, for a snapshot).
    pub fn max_txid(&self) -> TxId {
        match *self {
            ObjectKey::Snapshot { txid, .. } => txid,
            ObjectKey::Segment { max, .. } => max,
        }
    }

    /// Commit time of [`max_txid`](Self::max_txid).
    pub fn timestamp(&self) -> Timestamp {
        match *self {
            ObjectKey::Snapshot { ts, .. } | ObjectKey::Segment { ts, .. } => ts,
        }
    }

    /// Whether this is a snapshot.
    pub fn is_snapshot(&self) -> bool {
        matches!(self, ObjectKey::Snapshot { .. })
    }

    /// The compaction level, for segments.
    pub fn level(&self) -> Option<Level> {
        match *self {
            ObjectKey::Snapshot { .. } => None,
            ObjectKey::Segment { level, .. } => Some(level),
        }
    }

    fn sort_key(&self) -> (TxId, bool, u8, TxId, Timestamp) {
        let level = self.level().map_or(0, Level::get);
        (
            self.max_txid(),
            self.is_snapshot(),
            level,
            self.min_txid(),
            self.timestamp(),
        )
    }
}

/// Orders by position: max txid first; at equal max, segments before
/// snapshots (a snapshot at `t` supersedes the segments ending at `t`); then
/// by level (lower first); then min txid and timestamp, only to make the
/// order total. Sorting a listing therefore replays history in order.
impl Ord for ObjectKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

impl PartialOrd for ObjectKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// Exactly 16 lowercase hex digits.
fn hex16(s: &str) -> Option<u64> {
    if s.len() != 16 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tx(v: u64) -> TxId {
        TxId::new(v).unwrap()
    }

    fn arb_key() -> impl Strategy<Value = ObjectKey> {
        prop_oneof![
            (1..=u64::MAX, any::<i64>()).prop_map(|(t, ts)| ObjectKey::Snapshot {
                txid: tx(t),
                ts: Timestamp::from_millis(ts),
            }),
            (0..=9u8, 1..=u64::MAX, 1..=u64::MAX, any::<i64>()).prop_map(|(l, a, b, ts)| {
                ObjectKey::Segment {
                    level: Level::new(l).unwrap(),
                    min: tx(a.min(b)),
                    max: tx(a.max(b)),
                    ts: Timestamp::from_millis(ts),
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(key in arb_key()) {
            prop_assert_eq!(ObjectKey::parse(&key.path()), Some(key));
        }

        #[test]
        fn garbage_never_panics(s in ".{0,80}") {
            if let Some(k) = ObjectKey::parse(&s) {
                prop_assert_eq!(k.path(), s);
            }
        }

        #[test]
        fn mutated_paths_never_panic(key in arb_key(), idx in any::<usize>(), ch in any::<char>()) {
            let mut p: Vec<char> = key.path().chars().collect();
            let i = idx % p.len();
            p[i] = ch;
            let s: String = p.into_iter().collect();
            if let Some(k) = ObjectKey::parse(&s) {
                prop_assert_eq!(k.path(), s);
            }
        }
    }

    #[test]
    fn canonical_examples() {
        let s = ObjectKey::Snapshot {
            txid: tx(0x10),
            ts: Timestamp::from_millis(0x18f),
        };
        assert_eq!(s.path(), "snapshots/0000000000000010-000000000000018f.snap");
        let g = ObjectKey::Segment {
            level: Level::new(2).unwrap(),
            min: tx(5),
            max: tx(9),
            ts: Timestamp::from_millis(1),
        };
        assert_eq!(
            g.path(),
            "segments/2/0000000000000005-0000000000000009-0000000000000001.seg"
        );
    }

    #[test]
    fn rejects_non_canonical() {
        for bad in [
            "",
            "snapshots",
            "snapshots/",
            "snapshots/0000000000000010-000000000000018f.snap.tmp",
            "snapshots/0000000000000010-000000000000018F.snap",
            "snapshots/0000000000000000-000000000000018f.snap",
            "snapshots/000000000000010-000000000000018f.snap",
            "/snapshots/0000000000000010-000000000000018f.snap",
            "snapshots/x/0000000000000010-000000000000018f.snap",
            "segments/10/0000000000000005-0000000000000009-0000000000000001.seg",
            "segments/a/0000000000000005-0000000000000009-0000000000000001.seg",
            "segments/2/0000000000000009-0000000000000005-0000000000000001.seg",
            "segments/2/0000000000000005-0000000000000009-0000000000000001-0000000000000001.seg",
            "segments/2/0000000000000005-0000000000000009.seg",
            "segments/2/0000000000000005-0000000000000009-0000000000000001.snap",
            "segments/2/0000000000000005-0000000000000009-0000000000000001.seg/",
            "segments//0000000000000005-0000000000000009-0000000000000001.seg",
            "segments/2/+000000000000005-0000000000000009-0000000000000001.seg",
        ] {
            assert_eq!(ObjectKey::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ordering() {
        let ts = Timestamp::from_millis(0);
        let seg = |l, a, b| ObjectKey::Segment {
            level: Level::new(l).unwrap(),
            min: tx(a),
            max: tx(b),
            ts,
        };
        let snap = |t| ObjectKey::Snapshot { txid: tx(t), ts };
        let mut keys = vec![snap(5), seg(1, 1, 5), seg(0, 5, 5), snap(1), seg(0, 2, 3)];
        keys.sort();
        assert_eq!(
            keys,
            vec![snap(1), seg(0, 2, 3), seg(0, 5, 5), seg(1, 1, 5), snap(5)]
        );
    }
}
