//! Restore points: which positions of a replica can be restored, and how far apart they are
//! in each stretch of history. Pure: works on a listing of keys, like [`crate::plan`].

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::key::ObjectKey;
use crate::pos::{Timestamp, TxId};

/// A restorable position and the earliest commit time a file ending there records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// Position.
    pub txid: TxId,
    /// Commit time of that position: a timestamp restore at or after it can reach it.
    pub ts: Timestamp,
}

/// A stretch of history whose consecutive restore points are made by files of one level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stretch {
    /// First point of the stretch.
    pub from: Point,
    /// Last point of the stretch.
    pub to: Point,
    /// Level of the files between consecutive points: 0 means every sync is a point.
    pub level: u8,
    /// Longest time between two consecutive points of the stretch, in milliseconds.
    pub max_gap_ms: i64,
    /// Restore points in the stretch, `from` and `to` included.
    pub points: usize,
}

/// Every restore point of a replica, summarised by stretch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePoints {
    /// Oldest restorable point (the oldest snapshot a chain starts from).
    pub first: Point,
    /// Newest restorable point.
    pub last: Point,
    /// Number of restorable positions.
    pub count: usize,
    /// Oldest first; empty when only one point exists.
    pub stretches: Vec<Stretch>,
    /// Stretches of history the replica does not hold, oldest first: the last point before
    /// each and the snapshot history resumes at (positions in between were never shipped, as
    /// when an outage outlasted the spool budget). A timestamp inside one restores nothing.
    pub gaps: Vec<(Point, Point)>,
}

/// The restorable positions of `keys`: every position reachable from a snapshot through a
/// contiguous chain of segments (exactly the positions `plan_restore(keys, TxId(p))` accepts),
/// summarised by stretches of equal granularity. `None` when nothing is restorable.
pub fn restore_points(keys: &[ObjectKey]) -> Option<RestorePoints> {
    let points = reachable(keys);
    let first = points.first()?.0;
    let last = points.last()?.0;
    let mut stretches: Vec<Stretch> = Vec::new();
    let mut gaps = Vec::new();
    let mut after_gap = false;
    for w in points.windows(2) {
        let (a, (b, l)) = (w[0].0, w[1]);
        let gap = b.ts.get() - a.ts.get();
        // A point only a snapshot reaches, positions past the one before, and no segment
        // holding any of them: what lies between is not held. (A merged file that runs
        // across the snapshot holds them; there is just no point between.)
        if l.is_none() && b.txid.get() > a.txid.get() + 1 && !held_between(keys, a.txid, b.txid) {
            gaps.push((a, b));
            after_gap = true;
            continue;
        }
        if std::mem::take(&mut after_gap) {
            stretches.push(Stretch {
                from: a,
                to: b,
                level: l.unwrap_or(0),
                max_gap_ms: gap,
                points: 2,
            });
            continue;
        }
        match (stretches.last_mut(), l) {
            // A point reached by a snapshot alone, or by the same level: the stretch goes on.
            (Some(s), None) => extend(s, b, gap),
            (Some(s), Some(l)) if s.level == l => extend(s, b, gap),
            _ => stretches.push(Stretch {
                from: a,
                to: b,
                level: l.unwrap_or(0),
                max_gap_ms: gap,
                points: 2,
            }),
        }
    }
    Some(RestorePoints {
        first,
        last,
        count: points.len(),
        stretches,
        gaps,
    })
}

/// The newest restore point whose time is at or before `ts`: what a timestamp restore
/// brings back. A point's time is the earliest any file ending there records, so a snapshot
/// taken after its position's segment was written does not hide that point.
pub fn point_at_or_before(keys: &[ObjectKey], ts: Timestamp) -> Option<Point> {
    reachable(keys)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.ts <= ts)
        .max_by_key(|p| p.txid)
}

/// The oldest restore point past `t`, if any: what a `-txid` between points can ask for
/// instead (a file boundary past a hole is not one).
pub(crate) fn first_point_after(keys: &[ObjectKey], t: TxId) -> Option<TxId> {
    reachable(keys)
        .into_iter()
        .map(|(p, _)| p.txid)
        .find(|&p| p > t)
}

/// Every reachable position, oldest first, with its point and the finest level of a segment
/// reaching it (`None`: reached by a snapshot alone).
/// The restorable positions of `keys` (those `plan_restore` accepts as a txid), for telling
/// the files that end at a restore point from those a coarser tier made obsolete.
pub fn restorable_positions(keys: &[ObjectKey]) -> std::collections::BTreeSet<TxId> {
    reachable(keys).into_iter().map(|(p, _)| p.txid).collect()
}

fn reachable(keys: &[ObjectKey]) -> Vec<(Point, Option<u8>)> {
    // Segments by the position they start after, and the earliest time of each end position.
    let mut from: HashMap<TxId, Vec<&ObjectKey>> = HashMap::new();
    let mut ts: HashMap<TxId, Timestamp> = HashMap::new();
    for k in keys {
        if k.min_txid() > k.max_txid() {
            continue;
        }
        ts.entry(k.max_txid())
            .and_modify(|t| *t = (*t).min(k.timestamp()))
            .or_insert(k.timestamp());
        if !k.is_snapshot()
            && let Some(before) = TxId::new(k.min_txid().get() - 1)
        {
            from.entry(before).or_default().push(k);
        }
    }
    // Reachable positions, with the finest level of a file reaching each one.
    let mut level: BTreeMap<TxId, Option<u8>> = BTreeMap::new();
    let mut todo: Vec<TxId> = keys
        .iter()
        .filter(|k| k.is_snapshot())
        .map(ObjectKey::max_txid)
        .collect();
    for &t in &todo {
        level.insert(t, None);
    }
    let mut seen: HashSet<TxId> = todo.iter().copied().collect();
    while let Some(p) = todo.pop() {
        for k in from.get(&p).into_iter().flatten() {
            let l = k.level().map_or(0, |l| l.get());
            let e = level.entry(k.max_txid()).or_insert(Some(l));
            *e = Some(e.map_or(l, |old| old.min(l)));
            if seen.insert(k.max_txid()) {
                todo.push(k.max_txid());
            }
        }
    }
    level
        .into_iter()
        .map(|(txid, l)| {
            let ts = ts.get(&txid).copied().unwrap_or(Timestamp::from_millis(0));
            (Point { txid, ts }, l)
        })
        .collect()
}

/// Whether a segment holds any position strictly between `a` and `b`.
fn held_between(keys: &[ObjectKey], a: TxId, b: TxId) -> bool {
    keys.iter()
        .any(|k| !k.is_snapshot() && k.min_txid().get() < b.get() && k.max_txid().get() > a.get())
}

fn extend(s: &mut Stretch, to: Point, gap: i64) {
    s.to = to;
    s.max_gap_ms = s.max_gap_ms.max(gap);
    s.points += 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{seg, snap, tx};

    /// Old history merged into level 1 (its level-0 files gone), recent history still one
    /// file per sync, level-1 files over it too: two stretches, the recent one every sync.
    #[test]
    fn stretches_by_finest_level() {
        let keys = [
            snap(1),
            seg(1, 2, 10),
            seg(1, 11, 40),
            seg(1, 41, 43),
            seg(0, 41, 41),
            seg(0, 42, 42),
            seg(0, 43, 43),
            seg(0, 44, 44),
        ];
        let p = restore_points(&keys).unwrap();
        assert_eq!((p.first.txid, p.last.txid, p.count), (tx(1), tx(44), 7));
        let s: Vec<(u64, u64, u8, i64, usize)> = p
            .stretches
            .iter()
            .map(|s| {
                (
                    s.from.txid.get(),
                    s.to.txid.get(),
                    s.level,
                    s.max_gap_ms,
                    s.points,
                )
            })
            .collect();
        assert_eq!(s, vec![(1, 40, 1, 30_000, 3), (40, 44, 0, 1_000, 5)]);
    }

    /// A snapshot after positions the replica never got (an outage past the spool budget):
    /// a gap between the point before and the snapshot, not one stretch across it.
    #[test]
    fn a_snapshot_after_missing_positions_is_a_gap() {
        let keys = [
            snap(1),
            seg(0, 2, 2),
            seg(0, 3, 3),
            snap(10),
            seg(0, 11, 11),
            seg(0, 12, 12),
        ];
        let p = restore_points(&keys).unwrap();
        let g: Vec<(u64, u64)> = p
            .gaps
            .iter()
            .map(|(a, b)| (a.txid.get(), b.txid.get()))
            .collect();
        assert_eq!(g, vec![(3, 10)]);
        let s: Vec<(u64, u64)> = p
            .stretches
            .iter()
            .map(|s| (s.from.txid.get(), s.to.txid.get()))
            .collect();
        assert_eq!(s, vec![(1, 3), (10, 12)]);
        // A snapshot right after the point before leaves nothing out.
        let p = restore_points(&[snap(1), seg(0, 2, 2), snap(3), seg(0, 4, 4)]).unwrap();
        assert!(p.gaps.is_empty());
    }

    /// A merged file that runs across a later process's snapshot holds the positions before
    /// that snapshot: no point between, but no gap either (a timestamp there restores the
    /// point before, as it should).
    #[test]
    fn a_merged_file_across_a_snapshot_is_no_gap() {
        let keys = [snap(1), seg(1, 2, 30), snap(10), seg(1, 31, 40)];
        let p = restore_points(&keys).unwrap();
        assert!(p.gaps.is_empty(), "{:?}", p.gaps);
        assert_eq!(p.count, 4);
    }

    /// A position inside a compacted file, or past a gap, is no restore point.
    #[test]
    fn only_reachable_positions() {
        let keys = [snap(1), seg(1, 2, 5), seg(0, 4, 4), seg(0, 7, 7)];
        let p = restore_points(&keys).unwrap();
        assert_eq!((p.last.txid, p.count), (tx(5), 2));
        assert!(restore_points(&[seg(0, 2, 2)]).is_none());
    }
}
