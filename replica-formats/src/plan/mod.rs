//! Restore planning: which snapshot and which segments, in what order, bring
//! a database to the requested position. Pure: works on a listing of keys.

use std::collections::HashMap;

use crate::error::PlanError;
use crate::key::ObjectKey;
use crate::pos::{Timestamp, TxId};

/// What state to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// The newest position any file in the replica reaches.
    Latest,
    /// Exactly this position.
    TxId(TxId),
    /// The newest position committed at or before this time.
    Timestamp(Timestamp),
}

impl Target {
    /// Whether a file may take part in reaching this target: its end lies at
    /// or before the target.
    pub fn admits(&self, key: &ObjectKey) -> bool {
        match *self {
            Target::Latest => true,
            Target::TxId(t) => key.max_txid() <= t,
            Target::Timestamp(ts) => key.timestamp() <= ts,
        }
    }
}

/// The files to apply, in order: the snapshot, then each segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePlan {
    /// The snapshot to start from.
    pub snapshot: ObjectKey,
    /// Segments to apply after the snapshot, each starting right after the
    /// previous one ends.
    pub segments: Vec<ObjectKey>,
    /// The position the restored database will be at.
    pub txid: TxId,
}

impl RestorePlan {
    /// Every file of the plan, in application order.
    pub fn files(&self) -> impl Iterator<Item = &ObjectKey> {
        std::iter::once(&self.snapshot).chain(&self.segments)
    }
}

/// The longest contiguous chain of segments starting right after `start`.
///
/// At each position `pos`, among segments admitted by `limit` with
/// `min == pos + 1`, takes the one reaching furthest (largest `max`; on a
/// tie, the higher level, as it replaces more files; then the newer
/// timestamp), and stops when none continues the chain. The replicator's
/// retention uses this to prove a chain stays restorable before deleting.
pub fn chain_from(keys: &[ObjectKey], start: TxId, limit: Target) -> Vec<ObjectKey> {
    // Best segment for each starting position; the choice does not depend on
    // how the chain got there, so one pass suffices (O(keys), not O(keys²)).
    let mut by_min: HashMap<TxId, ObjectKey> = HashMap::new();
    for k in keys {
        let ObjectKey::Segment {
            level,
            min,
            max,
            ts,
        } = *k
        else {
            continue;
        };
        if max < min || !limit.admits(k) {
            continue;
        }
        let rank = (max, level, ts);
        by_min
            .entry(min)
            .and_modify(|best| {
                if rank
                    > (
                        best.max_txid(),
                        best.level().unwrap_or_default(),
                        best.timestamp(),
                    )
                {
                    *best = *k;
                }
            })
            .or_insert(*k);
    }
    let mut chain = Vec::new();
    let mut pos = start;
    while let Some(next) = pos.get().checked_add(1).and_then(TxId::new) {
        let Some(seg) = by_min.get(&next) else { break };
        chain.push(*seg);
        pos = seg.max_txid(); // >= next > pos: always progresses
    }
    chain
}

/// Chooses the files that restore `target`.
///
/// Snapshots admitted by the target are tried newest first; from each, the
/// chain of [`chain_from`] is followed. A chain is accepted only if nothing
/// admitted by the target lies beyond its end (and, for `TxId(t)`, it ends
/// exactly at `t`), so a missing or skipped file can never yield an older
/// database than asked for. An older snapshot is used only if its chain
/// meets that same bar; otherwise the newest snapshot's error is returned.
pub fn plan_restore(keys: &[ObjectKey], target: Target) -> Result<RestorePlan, PlanError> {
    if let Target::Timestamp(ts) = target {
        return plan_at(keys, ts);
    }
    let mut snapshots: Vec<&ObjectKey> = keys
        .iter()
        .filter(|k| k.is_snapshot() && target.admits(k))
        .collect();
    snapshots.sort_by(|a, b| b.cmp(a));
    if snapshots.is_empty() {
        return Err(no_snapshot(keys));
    }
    let mut first_err = None;
    for snap in snapshots {
        match try_snapshot(keys, *snap, target) {
            Ok(plan) => return Ok(plan),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or(PlanError::NoSnapshot { oldest: None }))
}

/// A timestamp restore: the newest restore point at or before `ts` (the same points
/// `memsync wal` lists), restored by its position. Choosing among the files admitted by their
/// own times instead missed points whose snapshot was written after them (a segment ending at
/// a snapshot's position is older than the snapshot) or that a chain reaches only from an
/// older snapshot. A file at or before `ts` that ends past the point, with no higher level
/// over it, is a hole: an error, never an older database.
fn plan_at(keys: &[ObjectKey], ts: Timestamp) -> Result<RestorePlan, PlanError> {
    let target = Target::Timestamp(ts);
    let Some(point) = crate::points::point_at_or_before(keys, ts) else {
        return Err(no_snapshot(keys));
    };
    if let Some(gap) = gap_after(keys, point.txid, target) {
        return Err(gap);
    }
    // A hole right after the point: whatever was there may have been committed at or before
    // `ts` (its time is gone with it), so the point cannot be proven to be the state at `ts`.
    if let Some(next) = hole_after(keys, point.txid) {
        return Err(PlanError::Gap {
            at: point.txid,
            next_available: Some(next),
        });
    }
    plan_restore(keys, Target::TxId(point.txid))
}

/// Where history resumes when nothing holds the position right after `end` yet some file
/// starts further on: the files between are missing (not thinned by compaction, whose coarser
/// file spans the position). `None`: no hole there.
pub fn hole_after(keys: &[ObjectKey], end: TxId) -> Option<TxId> {
    let next = end.next();
    if keys
        .iter()
        .any(|k| k.min_txid() <= next && next <= k.max_txid())
    {
        return None;
    }
    keys.iter()
        .map(ObjectKey::min_txid)
        .filter(|&m| m > next)
        .min()
}

/// No snapshot serves the target: the error names the oldest one there is.
fn no_snapshot(keys: &[ObjectKey]) -> PlanError {
    let oldest = keys
        .iter()
        .filter(|k| k.is_snapshot())
        .map(ObjectKey::max_txid)
        .min();
    PlanError::NoSnapshot { oldest }
}

/// A hole after `end`: a file the target admits ends past `end`, and no file of a higher level
/// covers it (then it is what is left of a finer tier whose older files aged out: retention
/// drops a level's files one by one, and `end` is the newest restore point at or before the
/// target).
fn gap_after(keys: &[ObjectKey], end: TxId, target: Target) -> Option<PlanError> {
    let beyond = |k: &ObjectKey| target.admits(k) && k.max_txid() > end && !covered(keys, k);
    keys.iter().any(beyond).then(|| PlanError::Gap {
        at: end,
        next_available: keys
            .iter()
            .map(ObjectKey::min_txid)
            .filter(|&m| m > end)
            .min(),
    })
}

fn try_snapshot(
    keys: &[ObjectKey],
    snapshot: ObjectKey,
    target: Target,
) -> Result<RestorePlan, PlanError> {
    let segments = chain_from(keys, snapshot.max_txid(), target);
    let end = segments
        .last()
        .map_or(snapshot.max_txid(), ObjectKey::max_txid);
    if let Some(gap) = gap_after(keys, end, target) {
        return Err(gap);
    }
    if let Target::TxId(t) = target
        && end != t
    {
        let after = crate::points::first_point_after(keys, t);
        return Err(PlanError::NotFound {
            target: t,
            before: Some(end),
            after,
        });
    }
    Ok(RestorePlan {
        snapshot,
        segments,
        txid: end,
    })
}

/// Whether a segment of a higher level than `k` spans all of `k`'s positions.
fn covered(keys: &[ObjectKey], k: &ObjectKey) -> bool {
    let Some(level) = k.level() else {
        return false;
    };
    keys.iter().any(|c| {
        c.level().is_some_and(|l| l > level)
            && c.min_txid() <= k.min_txid()
            && k.max_txid() <= c.max_txid()
    })
}

#[cfg(test)]
mod tests;
