//! Which files a replica needs: what to send it next ([`chain_after`]) and what retention may
//! delete from it ([`retention_victims`]). Pure: works on a listing of keys and the time.

use std::time::Duration;

use crate::key::ObjectKey;
use crate::plan::{Target, chain_from};
use crate::pos::{Timestamp, TxId};

/// Files that retention may delete from `keys` at time `now`: everything strictly older than
/// the newest snapshot created at or before `now - retention`, provided the chain from that
/// snapshot reaches the newest position.
pub fn retention_victims(
    keys: &[ObjectKey],
    now: Timestamp,
    retention: Duration,
) -> Vec<ObjectKey> {
    let cutoff = now.get() - retention.as_millis() as i64;
    let Some(base) = keys
        .iter()
        .filter(|k| k.is_snapshot() && k.timestamp().get() <= cutoff)
        .max_by_key(|k| (k.max_txid(), k.timestamp()))
    else {
        return Vec::new();
    };
    let newest = keys.iter().map(ObjectKey::max_txid).max();
    let chain = chain_from(keys, base.max_txid(), Target::Latest);
    let end = chain.last().map_or(base.max_txid(), ObjectKey::max_txid);
    if Some(end) != newest {
        return Vec::new();
    }
    keys.iter()
        .filter(|k| {
            k.max_txid() < base.max_txid()
                || (k.is_snapshot()
                    && k.max_txid() == base.max_txid()
                    && k.timestamp() < base.timestamp())
        })
        .cloned()
        .collect()
}

/// The last file of the longest chain a replica can restore from any of its snapshots: the
/// position it really holds. A file past a hole (placed after an earlier one failed, before a
/// crash) lies beyond it, and the replica is continued from before the hole instead of from
/// its newest file, so the missing file is sent rather than silently skipped. `None` without a
/// snapshot: nothing of the replica restores.
pub fn restorable_end(keys: &[ObjectKey]) -> Option<ObjectKey> {
    keys.iter()
        .filter(|k| k.is_snapshot())
        .map(|snap| {
            chain_from(keys, snap.max_txid(), Target::Latest)
                .last()
                .copied()
                .unwrap_or(*snap)
        })
        .max_by_key(|k| (k.max_txid(), *k))
}

/// The spooled files that bring the replica from `remote` to the spool's newest position: the
/// chain of segments whose first position follows the previous one, preferring the one reaching
/// furthest; and where that chain stops short (the replica is empty, the spool no longer has the
/// next file, or a restart began a new chain with a snapshot after it), the newest snapshot
/// beyond it and the chain from there.
pub fn chain_after(keys: &[ObjectKey], remote: Option<TxId>) -> Vec<ObjectKey> {
    let mut out = match remote {
        Some(r) => chain_from(keys, r, Target::Latest),
        None => Vec::new(),
    };
    let end = out.last().map(ObjectKey::max_txid).or(remote);
    if keys.iter().all(|k| Some(k.max_txid()) <= end) {
        return out;
    }
    let Some(snap) = keys
        .iter()
        .filter(|k| k.is_snapshot() && Some(k.max_txid()) > end)
        .max_by_key(|k| k.max_txid())
    else {
        return out;
    };
    out.push(*snap);
    out.extend(chain_from(keys, snap.max_txid(), Target::Latest));
    out
}

/// `chain`, each merged segment in it replaced, where `keys` allow, by the finer segments it
/// merged that `fine` accepts: the same positions, reached through more restore points. Why: a
/// replica that was down while the spool merged would otherwise get only the merged file for
/// that stretch, and lose every per-sync point in it for good. Among the ways through a merged
/// segment's range, the lowest levels win, then the shortest steps; a range that no finer files
/// cover exactly keeps its merged segment.
pub fn refine_chain(
    chain: &[ObjectKey],
    keys: &[ObjectKey],
    fine: impl Fn(&ObjectKey) -> bool,
) -> Vec<ObjectKey> {
    let mut out = Vec::with_capacity(chain.len());
    for seg in chain {
        match seg.level() {
            Some(l) if l.get() > 0 => {
                let inside: Vec<&ObjectKey> = keys
                    .iter()
                    .filter(|k| k.level().is_some_and(|kl| kl < l))
                    .filter(|k| k.min_txid() >= seg.min_txid() && k.max_txid() <= seg.max_txid())
                    .filter(|k| k.min_txid() <= k.max_txid() && fine(k))
                    .collect();
                match finest_path(&inside, seg.min_txid(), seg.max_txid()) {
                    Some(path) => out.extend(path),
                    None => out.push(*seg),
                }
            }
            _ => out.push(*seg),
        }
    }
    out
}

/// The segments of `inside` leading from `from` to exactly `to`, lowest levels and shortest
/// steps first; `None` if they do not cover the range. Decided from the end backwards, one
/// pass over the starting positions (every segment ends at or after its start).
fn finest_path(inside: &[&ObjectKey], from: TxId, to: TxId) -> Option<Vec<ObjectKey>> {
    use std::collections::BTreeMap;
    let mut by_min: BTreeMap<TxId, Vec<ObjectKey>> = BTreeMap::new();
    for k in inside {
        by_min.entry(k.min_txid()).or_default().push(**k);
    }
    // For each start position: the best segment from there that leads on to `to`.
    let mut best: BTreeMap<TxId, ObjectKey> = BTreeMap::new();
    for (min, segs) in by_min.iter().rev() {
        let leads_on =
            |k: &&ObjectKey| k.max_txid() == to || best.contains_key(&k.max_txid().next());
        if let Some(k) = segs
            .iter()
            .filter(leads_on)
            .min_by_key(|k| (k.level(), k.max_txid(), std::cmp::Reverse(k.timestamp())))
        {
            best.insert(*min, *k);
        }
    }
    let mut path = Vec::new();
    let mut at = from;
    loop {
        let k = *best.get(&at)?;
        path.push(k);
        if k.max_txid() == to {
            return Some(path);
        }
        at = k.max_txid().next();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Level;
    use crate::testkit::{seg_at as seg, snap_at as snap};

    #[test]
    fn a_merged_segment_is_replaced_by_the_level_0_files_it_merged() {
        let keys = vec![
            snap(1, 0),
            seg(0, 2, 2, 10),
            seg(0, 3, 4, 20),
            seg(0, 5, 5, 30),
            seg(1, 2, 5, 31),
            seg(0, 6, 6, 40),
        ];
        let coarse = chain_after(&keys, Some(TxId::new(1).unwrap()));
        assert_eq!(coarse, vec![seg(1, 2, 5, 31), seg(0, 6, 6, 40)]);
        assert_eq!(
            refine_chain(&coarse, &keys, |_| true),
            vec![
                seg(0, 2, 2, 10),
                seg(0, 3, 4, 20),
                seg(0, 5, 5, 30),
                seg(0, 6, 6, 40)
            ]
        );
        // Files `fine` turns down (past their tier's keep) are not sent for a moment.
        assert_eq!(
            refine_chain(&coarse, &keys, |k| k.timestamp().get() >= 20),
            coarse
        );
    }

    #[test]
    fn a_gap_among_the_finer_files_is_bridged_by_a_lower_merge_or_left_to_the_merged_one() {
        // Level 0 lacks 4 (pruned), but a level-1 piece covers 3..=4 inside the level-2 file.
        let keys = vec![
            seg(0, 2, 2, 10),
            seg(0, 3, 3, 20),
            seg(1, 3, 4, 25),
            seg(0, 5, 5, 30),
            seg(2, 2, 5, 35),
        ];
        assert_eq!(
            refine_chain(&[seg(2, 2, 5, 35)], &keys, |_| true),
            vec![seg(0, 2, 2, 10), seg(1, 3, 4, 25), seg(0, 5, 5, 30)]
        );
        // Without the piece there is no way through: the merged file stays.
        let holed: Vec<ObjectKey> = keys
            .iter()
            .filter(|k| k.level() != Level::new(1))
            .copied()
            .collect();
        assert_eq!(
            refine_chain(&[seg(2, 2, 5, 35)], &holed, |_| true),
            vec![seg(2, 2, 5, 35)]
        );
        // A finer file overrunning the merged one's end is not a way through either.
        let over = vec![seg(0, 2, 3, 10), seg(0, 4, 6, 20), seg(1, 2, 5, 25)];
        assert_eq!(
            refine_chain(&[seg(1, 2, 5, 25)], &over, |_| true),
            vec![seg(1, 2, 5, 25)]
        );
    }

    #[test]
    fn retention_keeps_the_snapshot_covering_the_window_and_everything_after() {
        let keys = vec![
            snap(1, 0),
            seg(1, 2, 10, 100),
            snap(10, 150),
            seg(0, 11, 11, 200),
            seg(0, 12, 12, 300),
            snap(12, 350),
            seg(0, 13, 13, 400),
        ];
        // Window starts at 360: the newest snapshot before it is 12 (350).
        let v = retention_victims(
            &keys,
            Timestamp::from_millis(1360),
            Duration::from_millis(1000),
        );
        assert_eq!(
            v,
            vec![
                snap(1, 0),
                seg(1, 2, 10, 100),
                snap(10, 150),
                seg(0, 11, 11, 200)
            ]
        );
        // Window starts at 160: snapshot 10 covers it; 12 must stay restorable too.
        let v = retention_victims(
            &keys,
            Timestamp::from_millis(1160),
            Duration::from_millis(1000),
        );
        assert_eq!(
            v,
            vec![snap(1, 0)],
            "the segment ending at the base snapshot is kept"
        );
        // No snapshot before the window: nothing may go.
        assert!(
            retention_victims(
                &keys,
                Timestamp::from_millis(50),
                Duration::from_millis(1000)
            )
            .is_empty()
        );
    }

    #[test]
    fn retention_deletes_nothing_when_the_chain_is_broken() {
        let keys = vec![snap(1, 0), seg(0, 2, 2, 10), snap(2, 20), seg(0, 4, 4, 30)];
        assert!(
            retention_victims(
                &keys,
                Timestamp::from_millis(10_000),
                Duration::from_millis(1)
            )
            .is_empty()
        );
    }

    #[test]
    fn a_replica_continues_from_its_position_or_restarts_at_the_newest_snapshot() {
        let keys = vec![
            snap(1, 0),
            seg(0, 2, 2, 1),
            seg(0, 3, 3, 2),
            snap(5, 3),
            seg(0, 6, 6, 4),
        ];
        // The old chain first (its history stays restorable), then on through snapshot 5.
        assert_eq!(
            chain_after(&keys, TxId::new(1)),
            vec![
                seg(0, 2, 2, 1),
                seg(0, 3, 3, 2),
                snap(5, 3),
                seg(0, 6, 6, 4)
            ]
        );
        assert_eq!(
            chain_after(&keys, TxId::new(3)),
            vec![snap(5, 3), seg(0, 6, 6, 4)]
        );
        assert_eq!(chain_after(&keys, None), vec![snap(5, 3), seg(0, 6, 6, 4)]);
        assert!(chain_after(&keys, TxId::new(6)).is_empty());
    }

    /// A restart that could not resume begins a new chain with a snapshot right after the
    /// spool's last segment; with nothing committed since, no segment follows it. The replica
    /// must still get the snapshot (it used to stop at the old chain's end and stay stale until
    /// the next commit: seen as a crash test whose final replica never caught up).
    #[test]
    fn a_snapshot_after_the_chain_end_is_shipped_even_with_no_segment_after_it() {
        let keys = vec![snap(1, 0), seg(0, 2, 2, 1), seg(0, 3, 3, 2), snap(4, 3)];
        assert_eq!(
            chain_after(&keys, TxId::new(1)),
            vec![seg(0, 2, 2, 1), seg(0, 3, 3, 2), snap(4, 3)]
        );
        assert_eq!(chain_after(&keys, TxId::new(3)), vec![snap(4, 3)]);
        assert!(chain_after(&keys, TxId::new(4)).is_empty());
    }

    /// A file placed past a hole (the one before it failed, then the process stopped) does not
    /// count as the replica's position: the hole is filled from there. A compacted file
    /// bridging the hole, or a later snapshot, does.
    #[test]
    fn the_restorable_end_stops_at_a_hole() {
        let holed = vec![
            snap(1, 0),
            seg(0, 2, 2, 1),
            seg(0, 3, 3, 2),
            seg(0, 5, 5, 4),
        ];
        assert_eq!(restorable_end(&holed), Some(seg(0, 3, 3, 2)));
        let mut bridged = holed.clone();
        bridged.push(seg(1, 2, 5, 4));
        assert_eq!(restorable_end(&bridged), Some(seg(1, 2, 5, 4)));
        let mut restarted = holed.clone();
        restarted.push(snap(7, 6));
        assert_eq!(restorable_end(&restarted), Some(snap(7, 6)));
        // An older snapshot's chain may reach further than the newest's (whose next level-0
        // file went once a compacted file covered it).
        let older_reaches = vec![snap(1, 0), seg(1, 2, 9, 8), snap(5, 4)];
        assert_eq!(restorable_end(&older_reaches), Some(seg(1, 2, 9, 8)));
        assert_eq!(restorable_end(&[seg(0, 2, 2, 1)]), None);
        assert_eq!(restorable_end(&[]), None);
    }
}
