//! The three-way comparison behind pull: the server's memory now, the local row now, and the
//! server's fields at the last pull (the base). A side "changed" when it differs from the base;
//! only a change on both sides that disagrees is a conflict.

use std::collections::{HashMap, HashSet};

use super::super::MemoryError;
use super::super::conflict;
use super::super::hash::ContentHash;
use super::super::localdb::{LocalDb, LocalMemory, RowStamp};
use super::super::record::Fields;
use super::super::settle::{self, Kind};
use super::super::staging::{Operation, Staged, Staging, State};
use super::{PullOptions, RemoteState};

/// The local side of a conflict: a staged row, or an edit made in the local database.
#[derive(Debug, Clone)]
pub enum ConflictSide {
    Staged(Staged),
    LocalEdit(LocalMemory),
}

impl ConflictSide {
    pub fn hash(&self) -> &ContentHash {
        match self {
            ConflictSide::Staged(s) => &s.hash,
            ConflictSide::LocalEdit(l) => &l.hash,
        }
    }
    pub fn content(&self) -> &str {
        match self {
            ConflictSide::Staged(s) => &s.content,
            ConflictSide::LocalEdit(l) => &l.content,
        }
    }
}

/// One conflict to settle; `remote` indexes the server's record (`None`: deleted there);
/// `base` is the common base when known (a three-way merge then keeps both sides' changes).
#[derive(Debug, Clone)]
pub struct PlannedConflict {
    pub side: ConflictSide,
    pub kind: Kind,
    pub remote: Option<usize>,
    pub base: Option<Fields>,
    /// With a staged side: an edit of the local database not folded into the row yet, folded
    /// in before the conflict is settled (settled without it, it was written over).
    pub local_edit: Option<LocalMemory>,
}

/// What a pull will do.
#[derive(Debug, Default)]
pub struct Plan {
    /// Server records to write locally, with the fields the local row should show.
    pub add: Vec<(usize, Fields)>,
    pub change: Vec<(usize, Fields)>,
    /// Local memories the server deleted.
    pub remove: Vec<ContentHash>,
    /// Local edits on memories the server has not changed since the last pull: staged as
    /// updates for push.
    pub stage_local: Vec<LocalMemory>,
    /// Local memories the server had at an earlier pull and now shows neither live nor
    /// deleted (its tombstones listed): lost there, not deleted. Kept here and staged as
    /// stores, so the server gets them back.
    pub lost: Vec<LocalMemory>,
    /// Staged rows the server turned out to hold already, identically.
    pub confirmed: Vec<Staged>,
    pub conflicts: Vec<PlannedConflict>,
    pub unchanged: usize,
    /// The live server records this plan looked at (the tag filter's selection): they become
    /// the new base.
    pub seen: Vec<usize>,
    /// Local memories whose base must survive a full pull's replacement of the base set: removal
    /// candidates (a vetoed removal or an open deleted-remotely conflict must still be known
    /// as "seen on the server" next time).
    pub keep_base: Vec<ContentHash>,
    /// Whether this plan covers the whole server (no tag filter): then the pulled set is
    /// replaced, and removals are possible at all.
    pub full: bool,
    /// Each local row the plan looked at, as it read it (`None`: absent): a row the local
    /// service changed before the pull writes it is left as it is (see `apply`).
    pub read: HashMap<ContentHash, Option<RowStamp>>,
}

fn has_any_tag(fields: &Fields, want: &[String]) -> bool {
    let have = conflict::normalize_tags(&fields.tags);
    want.iter().any(|t| have.contains(t))
}

/// Compares the server's state with the local and staging databases.
pub fn plan(
    remote: &RemoteState,
    local: &LocalDb,
    staging: &Staging,
    opts: &PullOptions,
) -> Result<Plan, MemoryError> {
    let want = conflict::normalize_tags(&opts.tags);
    let selected = |f: &Fields| want.is_empty() || has_any_tag(f, &want);
    let base: HashMap<ContentHash, Option<Fields>> = staging.book().pulled()?;
    let based_at = staging.book().pulled_at()?;
    let mut plan = Plan {
        full: want.is_empty(),
        ..Plan::default()
    };
    let mut live_remote: HashSet<&ContentHash> = HashSet::new();
    let mut tombstones: HashMap<&ContentHash, f64> = HashMap::new();
    for (i, r) in remote.records.iter().enumerate() {
        // A replica's record the server could not confirm: left as it is, base and all.
        if remote.unconfirmed.contains(&r.hash) {
            plan.keep_base.push(r.hash.clone());
            plan.unchanged += 1;
            live_remote.insert(&r.hash);
            continue;
        }
        if let Some(at) = r.deleted_at {
            tombstones.insert(&r.hash, at);
            continue;
        }
        live_remote.insert(&r.hash);
        if !selected(&r.fields) {
            continue;
        }
        let b = base.get(&r.hash).and_then(Option::as_ref);
        // Never pulled (or pulled before the base was kept): count it as changed on the server.
        let remote_changed = b.is_none_or(|b| conflict::differs(b, &r.fields));
        let staged = staging.open_for(&r.hash)?;
        // A staged delete (issue 11, defect 15) waits for push: the memory is not written back
        // locally, and it stays in the base so a later pull takes its absence for a delete.
        if staged.as_ref().is_some_and(|s| s.op == Operation::Delete) {
            plan.seen.push(i);
            plan.unchanged += 1;
            continue;
        }
        let l = local.get(&r.hash)?;
        plan.read
            .insert(r.hash.clone(), l.as_ref().map(LocalMemory::stamp));
        // A local memory created after its base was recorded (the same content stored here
        // through the local service, once memsync had pushed it) was not edited from that
        // base: without one, the two versions are a conflict `merge` unions. Taken for an
        // edit, it removed every tag it lacked.
        let made_here = l.as_ref().is_some_and(|l| {
            l.deleted_at.is_none() && based_at.get(&r.hash).is_some_and(|&at| l.created_at > at)
        });
        let b = b.filter(|_| !made_here);
        let remote_changed = remote_changed || made_here;
        // What the local row should show, when it is written at all.
        let mut show = r.fields.clone();
        if let Some(s) = staged {
            if s.state == State::Conflict {
                // Already waiting for `resolve-conflicts` (even with `--force`); its base stays
                // the version the conflict was recorded against.
                plan.unchanged += 1;
                continue;
            }
            // What the row asks the server to hold: a staged store adds to the base.
            let wish = settle::version_of(&s, b);
            if !conflict::differs(&wish, &r.fields) {
                plan.confirmed.push(s);
            } else if remote_changed || opts.force {
                // (`--force` settles it with the server's version.) The server's version
                // becomes the base: the settled row is what this machine adds to it.
                let local_edit = l.clone().filter(|l| {
                    l.deleted_at.is_none()
                        && conflict::differs(&l.fields, &s.fields)
                        && b.is_none_or(|b| conflict::differs(b, &l.fields))
                });
                plan.conflicts.push(PlannedConflict {
                    side: ConflictSide::Staged(s),
                    kind: Kind::Diverged,
                    remote: Some(i),
                    base: b.cloned(),
                    local_edit,
                });
                plan.seen.push(i);
                continue;
            } else {
                // Only the local side changed: the staged change stands, push sends it, and
                // the local row shows what it sends (a store's tags added to the server's:
                // shown alone, the next sync took the row for an edit removing the others).
                // Staged without a type (`store` without `--type`), it keeps the server's.
                show = wish.typed_as(Some(&r.fields));
            }
        }
        // From here on the record is reconciled: it becomes the new base.
        plan.seen.push(i);
        match l {
            None => plan.add.push((i, show)),
            Some(l) if l.deleted_at.is_some() => {
                // The later of the local delete and the server's last change wins.
                if r.updated_at > l.deleted_at.unwrap_or(0.0) {
                    plan.add.push((i, show));
                } else {
                    plan.unchanged += 1;
                }
            }
            Some(l) if !conflict::differs(&l.fields, &show) => {
                // A row pulled without its vector (REST) gets it once a replica provides one.
                if l.embedding_pending && r.embedding.is_some() {
                    plan.change.push((i, show));
                } else {
                    plan.unchanged += 1;
                }
            }
            Some(l) => {
                // Without a base (never pulled, or pulled before v2) a difference counts as a
                // change on both sides: a conflict keeps both rather than guess.
                // A local version `memsync drop` took out of the queue is not offered again:
                // it stays here as it is until the server changes the memory (the dropped row
                // keeps it either way).
                let dropped = staging.dropped_as(&l.hash, &l.fields)?;
                let local_changed = b.is_none_or(|b| conflict::differs(b, &l.fields)) && !dropped;
                let already_staged = staging.knows_open(&l.hash)?;
                if dropped && !remote_changed && !opts.force {
                    plan.unchanged += 1;
                } else if !local_changed {
                    plan.change.push((i, show));
                } else if already_staged && !opts.force {
                    // Edited again while a staged change waits: folded into the staged row
                    // (staging merges), never written over.
                    plan.stage_local.push(l);
                } else if !remote_changed && !opts.force {
                    plan.stage_local.push(l);
                } else {
                    // Both sides changed (or `--force`): settled by the policy, both kept.
                    plan.conflicts.push(PlannedConflict {
                        side: ConflictSide::LocalEdit(l),
                        kind: Kind::Diverged,
                        remote: Some(i),
                        base: b.cloned(),
                        local_edit: None,
                    });
                }
            }
        }
    }
    if !plan.full {
        // A memory missing from a tag-filtered listing may just carry other tags now.
        return Ok(plan);
    }
    // Local memories the server no longer has. Only those seen on the server before (or with a
    // tombstone there) were deleted remotely; the others were created locally. A tombstone
    // without a time (REST) counts for a memory this staging database never saw on the server
    // when the memory is older than the staging database's knowledge (its epoch): it was synced
    // under a sync state since lost (a reset, a new staging file), so the deletion applies
    // rather than the memory being stored again.
    let epoch = staging.book().epoch()?;
    for l in local.all()? {
        if l.deleted_at.is_some() || live_remote.contains(&l.hash) {
            continue;
        }
        if remote.unconfirmed.contains(&l.hash) {
            plan.keep_base.push(l.hash.clone());
            plan.unchanged += 1;
            continue;
        }
        let deleted_there = match tombstones.get(&l.hash) {
            Some(&at) => base.contains_key(&l.hash) || l.updated_at <= at,
            None if remote.deleted.contains(&l.hash) => {
                base.contains_key(&l.hash) || l.created_at.max(l.updated_at) <= epoch
            }
            // Known there before, and the server's tombstones do not show it: the server lost
            // it (restored from an older backup, or another server at the same address).
            // Removing it here would lose it everywhere.
            None if remote.tombstones_listed => {
                if base.contains_key(&l.hash) {
                    match staging.open_for(&l.hash)? {
                        Some(s) if s.op == Operation::Delete => plan.remove.push(l.hash),
                        // A staged change (or an open conflict) is pushed or settled anyway.
                        Some(_) => plan.unchanged += 1,
                        None => plan.lost.push(l),
                    }
                }
                continue;
            }
            None => base.contains_key(&l.hash),
        };
        if !deleted_there {
            continue;
        }
        let staged = staging.open_for(&l.hash)?;
        plan.read.insert(l.hash.clone(), Some(l.stamp()));
        // Until a removal is carried out, the memory keeps its base.
        plan.keep_base.push(l.hash.clone());
        let edited = base
            .get(&l.hash)
            .and_then(Option::as_ref)
            .is_some_and(|b| conflict::differs(b, &l.fields));
        let b = base.get(&l.hash).cloned().flatten();
        match staged {
            Some(s) if s.state == State::Conflict => plan.unchanged += 1,
            // A decision to bring it back (a settled deleted-remotely conflict, or a store
            // meant to revive it) waits for push: not a new conflict to decide again.
            Some(s) if s.op == Operation::Store && s.restore_deleted => plan.unchanged += 1,
            // Deleted there while a delete waits here: the same wish, no conflict.
            Some(s) if s.op == Operation::Delete => plan.remove.push(l.hash),
            Some(s) => plan.conflicts.push(PlannedConflict {
                side: ConflictSide::Staged(s),
                kind: Kind::DeletedRemotely,
                remote: None,
                base: b,
                local_edit: None,
            }),
            // Edited here, deleted there: a conflict, not a silent delete.
            None if edited => plan.conflicts.push(PlannedConflict {
                side: ConflictSide::LocalEdit(l),
                kind: Kind::DeletedRemotely,
                remote: None,
                base: b,
                local_edit: None,
            }),
            None => plan.remove.push(l.hash),
        }
    }
    Ok(plan)
}

/// Drops planned removals (and deleted-remotely conflicts) of memories the server still has:
/// a paged listing can miss a memory while the server changes under it.
pub fn confirm_removals(
    plan: &mut Plan,
    mut still_there: impl FnMut(&ContentHash) -> Result<bool, MemoryError>,
) -> Result<(), MemoryError> {
    let mut keep = Vec::with_capacity(plan.remove.len());
    for h in plan.remove.drain(..) {
        if !still_there(&h)? {
            keep.push(h);
        }
    }
    plan.remove = keep;
    let mut conflicts = Vec::with_capacity(plan.conflicts.len());
    for c in plan.conflicts.drain(..) {
        if c.kind == Kind::DeletedRemotely && still_there(c.side.hash())? {
            continue;
        }
        conflicts.push(c);
    }
    plan.conflicts = conflicts;
    Ok(())
}
