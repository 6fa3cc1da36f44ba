//! Compaction planning: which segments a pass merges into which higher-level file. Pure: works
//! on a listing of keys, the tiers' bucket widths and the time; the replicator then carries the
//! plan out with [`merge_segments`](crate::merge::merge_segments).
//!
//! Segments of each level are merged by the wall-clock bucket of their commit time (one bucket
//! of the next level's interval becomes one file of the next level), once the bucket is closed:
//! `now` or a later file is past it, or a snapshot ends the group. A bucket holding more than
//! [`FAN_IN`] files is merged `FAN_IN` at a time and its pieces consolidated into one file of
//! their level once it closes; a closed bucket holding one file is copied up as it is, so every
//! level's chain stays contiguous and every file gets covered.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::key::{Level, ObjectKey};
use crate::plan::{Target, chain_from};
use crate::pos::{Timestamp, TxId};

/// Most files merged into one: bounds memory (one decoded run per input, a few pages) and, when
/// a time bucket holds more, makes several files of it. A default 30 s bucket at a 1 s sync
/// interval holds 30-35 level-0 files: at 16 it took three merges and a consolidation, each an
/// upload (the pieces' bytes uploaded twice); at 48 it is one.
pub const FAN_IN: usize = 48;

/// One file a compaction pass writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    /// The contiguous segments it replaces, in position order.
    pub inputs: Vec<ObjectKey>,
    /// Its key: the inputs' range at the new level, with the newest input's timestamp.
    pub output: ObjectKey,
}

impl Merge {
    /// A single input is copied as it is (the header has no level, so its bytes are the same).
    pub fn is_copy(&self) -> bool {
        self.inputs.len() == 1
    }
}

/// The merges of one compaction pass over `keys`, in the order they are to be made (later
/// ones may read earlier ones' outputs). `intervals[i]` is the bucket width of level `i + 1`;
/// the top level, `intervals.len()`, is never merged further. At every level below the top,
/// the closed buckets of the chain after the level's [`watermark`] are merged into the next
/// level, then that level's busy buckets consolidated.
pub fn plan_compaction(keys: &[ObjectKey], intervals: &[Duration], now: Timestamp) -> Vec<Merge> {
    let mut pass = Pass {
        keys: keys.to_vec(),
        now,
        merges: Vec::new(),
    };
    for (level, interval) in (0u8..).zip(intervals) {
        let width = interval.as_millis().max(1) as i64;
        pass.merge_buckets(level, level + 1, width);
        pass.merge_buckets(level + 1, level + 1, width);
    }
    pass.merges
}

/// State of one planned pass: the keys as they will be once the planned merges are made.
struct Pass {
    keys: Vec<ObjectKey>,
    now: Timestamp,
    merges: Vec<Merge>,
}

impl Pass {
    /// Plans the merge of the closed time buckets (`width` ms) of the chain of `from`-level
    /// segments after its watermark into `to`-level segments. With `from == to`
    /// (consolidation) a bucket already in one file is left alone.
    fn merge_buckets(&mut self, from: u8, to: u8, width: i64) {
        let Some(start) = watermark(&self.keys, from).or_else(|| first_start(&self.keys, from))
        else {
            return;
        };
        let bucket = |k: &ObjectKey| k.timestamp().get().div_euclid(width);
        let at_level: Vec<ObjectKey> = self
            .keys
            .iter()
            .filter(|k| k.level().is_some_and(|l| l.get() == from))
            .copied()
            .collect();
        let chain = chain_from(&at_level, start, Target::Latest);
        let snapshots: BTreeSet<TxId> = self
            .keys
            .iter()
            .filter(|k| k.is_snapshot())
            .map(ObjectKey::max_txid)
            .collect();
        let mut rest = &chain[..];
        while let Some(first) = rest.first() {
            // The group: files of one bucket, ending at a snapshot at the latest.
            let b = bucket(first);
            let mut len = 0;
            let mut closed = false;
            for k in rest.iter().take(FAN_IN) {
                if bucket(k) != b {
                    closed = true;
                    break;
                }
                len += 1;
                if snapshots.contains(&k.max_txid()) {
                    closed = true;
                    break;
                }
            }
            let group = &rest[..len];
            closed |= len == FAN_IN || self.now.get().div_euclid(width) > b;
            if !closed {
                break;
            }
            rest = &rest[len..];
            if from == to && len < 2 {
                continue;
            }
            let level = Level::new(to).expect("valid level");
            self.push(group, level);
        }
    }

    /// Plans `group` as one segment at `level`.
    fn push(&mut self, group: &[ObjectKey], level: Level) {
        let last = group.last().expect("a group has a file");
        let output = ObjectKey::Segment {
            level,
            min: group[0].min_txid(),
            max: last.max_txid(),
            ts: last.timestamp(),
        };
        self.keys.push(output);
        self.merges.push(Merge {
            inputs: group.to_vec(),
            output,
        });
    }
}

/// Position up to which the segments of `level` are settled: merged into a higher level, or
/// left behind by a snapshot with nothing more to merge before it. The next merge of that level
/// starts after it. Level-0 segments that lead up to a snapshot are merged before the snapshot
/// settles them: they never gain another member, and left alone they would stay in the replica
/// as overlapping, lightly compressed files for the whole retention window.
pub fn watermark(keys: &[ObjectKey], level: u8) -> Option<TxId> {
    let mut mark = keys
        .iter()
        .filter(|k| k.level().is_some_and(|l| l.get() > level))
        .map(ObjectKey::max_txid)
        .max();
    let mut snaps: Vec<TxId> = keys
        .iter()
        .filter(|k| k.is_snapshot())
        .map(ObjectKey::max_txid)
        .collect();
    snaps.sort_unstable();
    snaps.dedup();
    for s in snaps {
        if mark >= Some(s) {
            continue;
        }
        if level == 0 && closed_run_len(keys, mark, s) >= 2 {
            break;
        }
        mark = Some(s);
    }
    mark
}

/// How many level-0 segments lead from `start` (or from the first of them) exactly to the
/// snapshot position `snap`; 0 if they do not reach it.
fn closed_run_len(keys: &[ObjectKey], start: Option<TxId>, snap: TxId) -> usize {
    let l0: Vec<ObjectKey> = keys
        .iter()
        .filter(|k| k.level() == Some(Level::ZERO) && k.max_txid() <= snap)
        .copied()
        .collect();
    let Some(start) = start.or_else(|| first_start(&l0, 0)) else {
        return 0;
    };
    let chain = chain_from(&l0, start, Target::Latest);
    if chain.last().map(ObjectKey::max_txid) == Some(snap) {
        chain.len()
    } else {
        0
    }
}

/// Where the chain of `level` segments starts when nothing was compacted yet: just before the
/// first of them.
fn first_start(keys: &[ObjectKey], level: u8) -> Option<TxId> {
    let first = keys
        .iter()
        .filter(|k| k.level().is_some_and(|l| l.get() == level))
        .min_by_key(|k| k.min_txid())?;
    TxId::new(first.min_txid().get() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::tx;

    /// A level-0 segment of the single position `t`, committed at `ms`.
    fn l0(t: u64, ms: i64) -> ObjectKey {
        seg(0, t, t, ms)
    }

    fn seg(level: u8, min: u64, max: u64, ms: i64) -> ObjectKey {
        ObjectKey::Segment {
            level: Level::new(level).unwrap(),
            min: tx(min),
            max: tx(max),
            ts: Timestamp::from_millis(ms),
        }
    }

    fn snap(t: u64, ms: i64) -> ObjectKey {
        ObjectKey::Snapshot {
            txid: tx(t),
            ts: Timestamp::from_millis(ms),
        }
    }

    /// The plan as `(level, min, max, inputs)` rows.
    fn rows(plan: &[Merge]) -> Vec<(u8, u64, u64, usize)> {
        plan.iter()
            .map(|m| {
                let k = m.output;
                (
                    k.level().unwrap().get(),
                    k.min_txid().get(),
                    k.max_txid().get(),
                    m.inputs.len(),
                )
            })
            .collect()
    }

    #[test]
    fn watermark_table() {
        // (keys, level, expected)
        let cases: Vec<(Vec<ObjectKey>, u8, Option<u64>)> = vec![
            (vec![], 0, None),
            (vec![l0(2, 0), l0(3, 0)], 0, None),
            // Merged up to 5: level 0 settled there, level 1 not.
            (vec![seg(1, 2, 5, 0), l0(6, 0)], 0, Some(5)),
            (vec![seg(1, 2, 5, 0), l0(6, 0)], 1, None),
            // A snapshot settles what comes before it...
            (vec![snap(1, 0), l0(2, 0)], 0, Some(1)),
            (vec![snap(1, 0), seg(1, 2, 2, 0), snap(4, 0)], 1, Some(4)),
            // ...but two or more level-0 files leading up to it are merged first.
            (vec![snap(1, 0), l0(2, 0), l0(3, 0), snap(3, 0)], 0, Some(1)),
            // One file alone is settled as it is.
            (vec![snap(1, 0), l0(2, 0), snap(2, 0), l0(3, 0)], 0, Some(2)),
            // Files not reaching the snapshot exactly do not hold it back.
            (vec![snap(1, 0), l0(2, 0), l0(4, 0), snap(5, 0)], 0, Some(5)),
        ];
        for (i, (keys, level, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                watermark(&keys, level),
                want.map(tx),
                "case {i}: {keys:?} at level {level}"
            );
        }
    }

    #[test]
    fn plan_table() {
        let two_s = [Duration::from_secs(2)];
        let three = [
            Duration::from_secs(2),
            Duration::from_secs(10),
            Duration::from_secs(100),
        ];
        // (keys, intervals, now, expected (level, min, max, inputs))
        type Case<'a> = (
            Vec<ObjectKey>,
            &'a [Duration],
            i64,
            Vec<(u8, u64, u64, usize)>,
        );
        let busy: Vec<ObjectKey> = std::iter::once(snap(1, 0))
            .chain((2..=FAN_IN as u64 + 3).map(|t| l0(t, 4000 + t as i64)))
            .collect();
        let full = FAN_IN as u64 + 1;
        let cases: Vec<Case> = vec![
            (vec![], &two_s, 10_000, vec![]),
            // The bucket `now` is in stays open.
            (
                vec![snap(1, 0), l0(2, 100), l0(3, 200)],
                &two_s,
                1000,
                vec![],
            ),
            (
                vec![snap(1, 0), l0(2, 100), l0(3, 200)],
                &two_s,
                2000,
                vec![(1, 2, 3, 2)],
            ),
            // A later file closes a bucket; a bucket of one file is copied up.
            (
                vec![snap(1, 0), l0(2, 100), l0(3, 2100), l0(4, 4100)],
                &two_s,
                4200,
                vec![(1, 2, 2, 1), (1, 3, 3, 1)],
            ),
            // A snapshot closes a group.
            (
                vec![snap(1, 0), l0(2, 100), l0(3, 200), snap(3, 300), l0(4, 400)],
                &two_s,
                500,
                vec![(1, 2, 3, 2)],
            ),
            // FAN_IN at a time; the open remainder waits, then the closed bucket is consolidated.
            (busy.clone(), &two_s, 5000, vec![(1, 2, full, FAN_IN)]),
            (
                busy,
                &two_s,
                6000,
                vec![
                    (1, 2, full, FAN_IN),
                    (1, full + 1, full + 2, 2),
                    (1, 2, full + 2, 2),
                ],
            ),
            // Copied up through every level once all buckets are over.
            (
                vec![snap(1, 0), l0(2, 100), l0(3, 200)],
                &three,
                1_000_000,
                vec![(1, 2, 3, 2), (2, 2, 3, 1), (3, 2, 3, 1)],
            ),
            // Merged files are not merged again.
            (
                vec![snap(1, 0), l0(2, 100), l0(3, 200), seg(1, 2, 3, 200)],
                &two_s,
                1_000_000,
                vec![],
            ),
        ];
        for (i, (keys, intervals, now, want)) in cases.into_iter().enumerate() {
            let plan = plan_compaction(&keys, intervals, Timestamp::from_millis(now));
            assert_eq!(rows(&plan), want, "case {i}");
            for m in &plan {
                assert_eq!(m.output.min_txid(), m.inputs[0].min_txid());
                assert_eq!(m.output.max_txid(), m.inputs.last().unwrap().max_txid());
                assert_eq!(m.output.timestamp(), m.inputs.last().unwrap().timestamp());
            }
        }
    }
}
