//! Restore planning: latest, by position and by time, gaps and holes.

use super::*;
use crate::key::Level;
use crate::testkit::{seg, seg_at, snap, snap_at, tx};

fn maxes(p: &RestorePlan) -> Vec<(u64, u64)> {
    p.segments
        .iter()
        .map(|k| (k.min_txid().get(), k.max_txid().get()))
        .collect()
}

#[test]
fn latest_simple_chain() {
    let keys = [snap(1), seg(0, 2, 2), seg(0, 3, 4), seg(0, 5, 5)];
    let p = plan_restore(&keys, Target::Latest).unwrap();
    assert_eq!(p.snapshot, snap(1));
    assert_eq!(maxes(&p), vec![(2, 2), (3, 4), (5, 5)]);
    assert_eq!(p.txid, tx(5));
    assert_eq!(p.files().count(), 4);
}

#[test]
fn prefers_newest_snapshot_and_higher_levels() {
    let keys = [
        snap(1),
        snap(4),
        seg(0, 2, 2),
        seg(0, 3, 4),
        seg(0, 5, 5),
        seg(0, 6, 6),
        seg(0, 7, 7),
        seg(1, 5, 7),
        seg(2, 5, 7),
        seg(0, 8, 8),
    ];
    let p = plan_restore(&keys, Target::Latest).unwrap();
    assert_eq!(p.snapshot, snap(4));
    assert_eq!(p.segments, vec![seg(2, 5, 7), seg(0, 8, 8)]);
    assert_eq!(p.txid, tx(8));
}

#[test]
fn gap_is_an_error_not_an_older_database() {
    let keys = [snap(1), seg(0, 2, 2), seg(0, 4, 4), seg(0, 5, 5)];
    assert_eq!(
        plan_restore(&keys, Target::Latest),
        Err(PlanError::Gap {
            at: tx(2),
            next_available: Some(tx(4))
        })
    );
    // Before the gap is fine.
    assert_eq!(
        plan_restore(&keys, Target::TxId(tx(2))).unwrap().txid,
        tx(2)
    );
    // At or after it is not.
    assert!(matches!(
        plan_restore(&keys, Target::TxId(tx(4))),
        Err(PlanError::Gap { at, .. }) if at == tx(2)
    ));
}

#[test]
fn gap_after_newest_snapshot_does_not_fall_back_to_shorter_chain() {
    // Snapshot 5's successor 6 is missing; snapshot 1 cannot reach 7 either.
    let keys = [snap(1), seg(0, 2, 5), snap(5), seg(0, 7, 7)];
    assert_eq!(
        plan_restore(&keys, Target::Latest),
        Err(PlanError::Gap {
            at: tx(5),
            next_available: Some(tx(7))
        })
    );
}

#[test]
fn older_snapshot_used_only_when_it_reaches_the_same_end() {
    // Segment 6..6 after snapshot 5 is missing, but a compacted 2..7 from
    // snapshot 1 covers it: same end, so falling back is safe.
    let keys = [snap(1), seg(1, 2, 7), snap(5)];
    let p = plan_restore(&keys, Target::Latest).unwrap();
    assert_eq!(p.snapshot, snap(1));
    assert_eq!(p.txid, tx(7));
}

#[test]
fn pitr_by_txid() {
    let keys = [
        snap(1),
        seg(0, 2, 3),
        seg(0, 4, 6),
        seg(1, 2, 6),
        snap(7),
        seg(0, 8, 9),
    ];
    let p = plan_restore(&keys, Target::TxId(tx(3))).unwrap();
    assert_eq!(
        (p.snapshot, maxes(&p), p.txid),
        (snap(1), vec![(2, 3)], tx(3))
    );
    let p = plan_restore(&keys, Target::TxId(tx(6))).unwrap();
    assert_eq!((p.snapshot, maxes(&p)), (snap(1), vec![(2, 6)]));
    // Snapshot 7 is newer than the target and ignored.
    let p = plan_restore(&keys, Target::TxId(tx(1))).unwrap();
    assert_eq!((p.snapshot, p.segments.len(), p.txid), (snap(1), 0, tx(1)));
    let p = plan_restore(&keys, Target::TxId(tx(9))).unwrap();
    assert_eq!((p.snapshot, maxes(&p)), (snap(7), vec![(8, 9)]));
    // 5 lies inside segment 4..6: no file boundary there.
    assert_eq!(
        plan_restore(&keys, Target::TxId(tx(5))),
        Err(PlanError::NotFound {
            target: tx(5),
            before: Some(tx(3)),
            after: Some(tx(6))
        })
    );
    assert_eq!(
        plan_restore(&keys, Target::TxId(tx(10))),
        Err(PlanError::NotFound {
            target: tx(10),
            before: Some(tx(9)),
            after: None
        })
    );
}

#[test]
fn pitr_by_timestamp() {
    let keys = [snap(1), seg(0, 2, 3), seg(0, 4, 6), snap(7), seg(0, 8, 9)];
    let at = |ms| Target::Timestamp(Timestamp::from_millis(ms));
    assert_eq!(plan_restore(&keys, at(5_999)).unwrap().txid, tx(3));
    assert_eq!(plan_restore(&keys, at(6_000)).unwrap().txid, tx(6));
    let p = plan_restore(&keys, at(7_500)).unwrap();
    assert_eq!((p.snapshot, p.txid), (snap(7), tx(7)));
    assert_eq!(plan_restore(&keys, at(1_000_000)).unwrap().txid, tx(9));
    assert_eq!(
        plan_restore(&keys, at(999)),
        Err(PlanError::NoSnapshot {
            oldest: Some(tx(1))
        })
    );
    // A missing segment before the target time is a gap.
    let holed = [snap(1), seg(0, 4, 6)];
    assert_eq!(
        plan_restore(&holed, at(6_000)),
        Err(PlanError::Gap {
            at: tx(1),
            next_available: Some(tx(4))
        })
    );
    // So is one right after the point a time before the next file picks: what is missing
    // may have been committed before that time.
    assert_eq!(
        plan_restore(&holed, at(5_000)),
        Err(PlanError::Gap {
            at: tx(1),
            next_available: Some(tx(4))
        })
    );
}

/// The oldest kept snapshot was written 1 ms after the segment ending at its position,
/// whose older chain retention removed: the listing's first point (the segment's time)
/// restores, from that snapshot.
#[test]
fn pitr_at_a_snapshot_written_after_its_position() {
    use crate::testkit::{seg_at, snap_at};
    let keys = [
        seg_at(1, 40, 48, 48_000),
        snap_at(48, 48_001),
        seg(0, 49, 50),
    ];
    let at = |ms| Target::Timestamp(Timestamp::from_millis(ms));
    let first = crate::restore_points(&keys).unwrap().first;
    assert_eq!((first.txid, first.ts.get()), (tx(48), 48_000));
    let p = plan_restore(&keys, at(48_000)).unwrap();
    assert_eq!((p.snapshot, p.txid), (snap_at(48, 48_001), tx(48)));
    assert!(matches!(
        plan_restore(&keys, at(47_999)),
        Err(PlanError::NoSnapshot { .. })
    ));
}

/// A segment that continues the history only from an older snapshot (it starts at a newer
/// snapshot's position, as one written again after a restart can): a time after it
/// restores its end, as `-txid` does, not the newer snapshot.
#[test]
fn pitr_through_a_chain_from_an_older_snapshot() {
    let keys = [
        snap(1),
        seg(1, 2, 9),
        snap(10),
        seg(1, 10, 14),
        seg(2, 2, 14),
    ];
    let at = |ms| Target::Timestamp(Timestamp::from_millis(ms));
    let by_txid = plan_restore(&keys, Target::TxId(tx(14))).unwrap();
    let by_time = plan_restore(&keys, at(14_000)).unwrap();
    assert_eq!((by_time.txid, &by_time), (tx(14), &by_txid));
    assert_eq!(plan_restore(&keys, at(13_999)).unwrap().txid, tx(10));
}

/// A tier's files age out one by one: of a level-1 bucket merged into a level-2 file, the
/// older files are gone while newer ones remain, unreachable. A time between them and the
/// level-2 file restores the newest point before them (what the listing calls restorable),
/// not a gap; an uncovered missing file still is one.
#[test]
fn pitr_past_what_a_tier_kept_of_a_bucket() {
    let keys = [
        snap(1),
        seg(2, 2, 6),
        // Level 1 of 7..20: 7..9 aged out, 10..12 and 13..15 remain; level 2 covers it all.
        seg(1, 10, 12),
        seg(1, 13, 15),
        seg(2, 7, 20),
        seg(0, 21, 21),
    ];
    let at = |ms| Target::Timestamp(Timestamp::from_millis(ms));
    for t in [6_000, 12_000, 15_000, 19_999] {
        let p = plan_restore(&keys, at(t)).unwrap();
        assert_eq!(
            (p.snapshot, maxes(&p), p.txid),
            (snap(1), vec![(2, 6)], tx(6)),
            "{t}"
        );
    }
    assert_eq!(plan_restore(&keys, at(20_000)).unwrap().txid, tx(20));
    assert_eq!(plan_restore(&keys, Target::Latest).unwrap().txid, tx(21));
    let uncovered = [snap(1), seg(2, 2, 6), seg(1, 10, 12)];
    assert!(matches!(
        plan_restore(&uncovered, at(12_000)),
        Err(PlanError::Gap { .. })
    ));
    let points = crate::restore_points(&keys).unwrap();
    assert_eq!((points.count, points.last.txid), (4, tx(21)));
}

#[test]
fn a_point_followed_by_a_hole_is_no_timestamp_restore() {
    // Snapshot 1, segments 2 and 4: segment 3 is missing. A time before segment 4's
    // picks point 2, but segment 3 may have been committed before that time.
    let keys = [snap_at(1, 100), seg_at(0, 2, 2, 200), seg_at(0, 4, 4, 400)];
    let at = |ms| Target::Timestamp(Timestamp::from_millis(ms));
    assert!(matches!(
        plan_restore(&keys, at(250)),
        Err(PlanError::Gap { at, next_available: Some(n) }) if at == tx(2) && n == tx(4)
    ));
    assert_eq!(hole_after(&keys, tx(2)), Some(tx(4)));
    // A coarser file spanning the position is no hole: compaction thinned the points.
    let mut thinned = keys.to_vec();
    thinned.push(seg_at(1, 2, 4, 500));
    assert_eq!(hole_after(&thinned, tx(2)), None);
    assert!(plan_restore(&thinned, at(250)).is_ok());
    // Nothing after the end: no hole either.
    assert_eq!(hole_after(&keys, tx(4)), None);
}

#[test]
fn no_snapshot() {
    assert_eq!(
        plan_restore(&[], Target::Latest),
        Err(PlanError::NoSnapshot { oldest: None })
    );
    assert_eq!(
        plan_restore(&[seg(0, 2, 3)], Target::Latest),
        Err(PlanError::NoSnapshot { oldest: None })
    );
    assert_eq!(
        plan_restore(&[snap(5)], Target::TxId(tx(4))),
        Err(PlanError::NoSnapshot {
            oldest: Some(tx(5))
        })
    );
}

#[test]
fn chain_from_respects_limit_and_terminates() {
    let keys = [seg(0, 2, 2), seg(0, 3, 5), seg(1, 2, 5), seg(0, 6, 6)];
    assert_eq!(
        chain_from(&keys, tx(1), Target::Latest),
        vec![seg(1, 2, 5), seg(0, 6, 6)]
    );
    assert_eq!(
        chain_from(&keys, tx(1), Target::TxId(tx(4))),
        vec![seg(0, 2, 2)]
    );
    assert_eq!(chain_from(&keys, tx(6), Target::Latest), vec![]);
    let top = [ObjectKey::Segment {
        level: Level::ZERO,
        min: tx(u64::MAX),
        max: tx(u64::MAX),
        ts: Timestamp::from_millis(0),
    }];
    assert_eq!(chain_from(&top, tx(u64::MAX - 1), Target::Latest).len(), 1);
    // A malformed key (min > max) built by hand is ignored, not looped on.
    let bad = [ObjectKey::Segment {
        level: Level::ZERO,
        min: tx(2),
        max: tx(1),
        ts: Timestamp::from_millis(0),
    }];
    assert!(chain_from(&bad, tx(1), Target::Latest).is_empty());
}

/// A `-txid` between restore points names the next restorable one, never a file boundary
/// past a hole (which a restore would refuse).
#[test]
fn not_found_names_the_next_restorable_point() {
    let keys = [snap(1), seg(1, 2, 5), seg(0, 6, 6)];
    assert_eq!(
        plan_restore(&keys, Target::TxId(tx(3))),
        Err(PlanError::NotFound {
            target: tx(3),
            before: Some(tx(1)),
            after: Some(tx(5)),
        })
    );
    let holed = [snap(1), seg(0, 2, 2), seg(0, 4, 4), seg(0, 5, 5)];
    match plan_restore(&holed, Target::TxId(tx(3))) {
        Err(PlanError::NotFound { after, .. }) => assert_eq!(after, None),
        other => panic!("{other:?}"),
    }
}
