//! Carrying out a pull plan: conflicts first (their outcome decides what the local rows show),
//! then the local writes in short transactions, then the new base.

use super::super::MemoryError;
use super::super::clock::iso;
use super::super::clock::now;
use super::super::conflict;
use super::super::hash::ContentHash;
use super::super::host::hostname;
use super::super::localdb::{LocalDb, NewMemory};
use super::super::record::Fields;
use super::super::settings::{ConflictPolicy, Settings};
use super::super::settle::{self, Kind, LocalView};
use super::super::staging::{Operation, Staging, State};
use super::{ConflictSide, Plan, PullOptions, PullReport, RemoteRecord, RemoteState};

fn preview(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut p: String = one.chars().take(60).collect();
    if one.chars().count() > 60 {
        p.push('…');
    }
    p
}

enum Write<'a> {
    Upsert(&'a RemoteRecord, Fields),
    Delete(ContentHash),
}

/// Stages a local edit as an update; returns its row, and whether the local database was made
/// to show the fold (memsync's own write, not an edit made while the pull ran).
///
/// A row already waiting for the memory holds more than the local database shows: what
/// `store` merged into it since it was staged (tags, keys). The edit is folded in three ways
/// against the server's version (the base): what the edit removed from the base goes, what
/// either side added stays. Taking the local fields as they are dropped those `store`s at the
/// next pull; a plain union would undo the edit's removals.
///
/// When the fold holds more than the local database shows, the local database is made to show
/// it: otherwise, once pushed, the server's version would differ from the local row, and the
/// next pull would take the local row for an edit made since and send it back over the push.
fn stage_update(
    staging: &mut Staging,
    memory_db: &std::path::Path,
    content: &str,
    fields: &Fields,
) -> Result<(super::super::staging::Staged, bool), MemoryError> {
    let hash = ContentHash::of(content);
    let waiting = staging.open_for(&hash)?.is_some();
    let base = staging.book().base(&hash)?;
    let (id, _) = staging.stage(content, fields, &hostname())?;
    let row = staging.get(id)?.ok_or(MemoryError::RowVanished { id })?;
    let folded = match (waiting, &base) {
        (false, _) => fields.clone(),
        // The row wins where both changed a key: it already took this edit at an earlier pull.
        // (`stage` keeps a waiting row's operation: a store still adds to the base.)
        (true, Some(b)) => conflict::merge3(&settle::version_of(&row, Some(b)), fields, b),
        // No base: `stage` merged them (a union) already.
        (true, None) => row.fields.clone(),
    };
    // A row that changed since it was read (a `store` merged into it) keeps that merge.
    let shown = staging.rewrite(&row, Operation::Update, &folded, State::Pending, false)?
        && conflict::differs(&folded, fields);
    if shown {
        settle::show_locally(memory_db, &hash, &LocalView::Live(folded))?;
    }
    let row = staging.get(id)?.ok_or(MemoryError::RowVanished { id })?;
    Ok((row, shown))
}

/// After memsync itself wrote `hash`'s local row, the row as it reads now is the one the
/// pull's writes expect (else they took memsync's write for the local service's edit and
/// left the row, with its old base, to conflict again at the next pull).
fn reread(
    local: &LocalDb,
    read: &mut std::collections::HashMap<ContentHash, Option<super::super::localdb::RowStamp>>,
    hash: &ContentHash,
) -> Result<(), MemoryError> {
    if read.contains_key(hash) {
        read.insert(hash.clone(), local.get(hash)?.as_ref().map(|l| l.stamp()));
    }
    Ok(())
}

/// Carries out a plan (or only describes it, with `dry_run`).
pub fn apply(
    remote: &RemoteState,
    plan: Plan,
    local: &mut LocalDb,
    staging: &mut Staging,
    settings: &Settings,
    opts: &PullOptions,
) -> Result<PullReport, MemoryError> {
    let r = &remote.records;
    let policy = if opts.force {
        ConflictPolicy::Remote
    } else {
        settings.conflict
    };
    let mut rep = PullReport {
        source: remote.source.clone(),
        added: plan.add.len(),
        changed: plan.change.len(),
        removed: plan.remove.len(),
        staged_local: plan.stage_local.len(),
        resent: plan.lost.len(),
        confirmed: plan.confirmed.len(),
        conflicts: plan.conflicts.len(),
        unchanged: plan.unchanged,
        dry_run: opts.dry_run,
        ..PullReport::default()
    };
    if opts.dry_run {
        rep.server_live = r
            .iter()
            .filter(|x| x.deleted_at.is_none())
            .map(|x| x.hash.clone())
            .collect();
        rep.removals = plan.remove.clone();
        rep.removals.extend(
            plan.conflicts
                .iter()
                .filter(|c| c.kind == Kind::DeletedRemotely)
                .map(|c| c.side.hash().clone()),
        );
        let line = |verb: &str, h: &ContentHash, c: &str| {
            format!("{verb:<8} {}  {}", h.short(), preview(c))
        };
        rep.details.extend(
            plan.add
                .iter()
                .map(|(i, _)| line("add", &r[*i].hash, &r[*i].content)),
        );
        rep.details.extend(
            plan.change
                .iter()
                .map(|(i, _)| line("change", &r[*i].hash, &r[*i].content)),
        );
        rep.details.extend(
            plan.remove
                .iter()
                .map(|h| format!("remove   {}", h.short())),
        );
        rep.details.extend(
            plan.stage_local
                .iter()
                .map(|l| line("stage", &l.hash, &l.content)),
        );
        rep.details.extend(
            plan.lost
                .iter()
                .map(|l| line("resend", &l.hash, &l.content)),
        );
        rep.details.extend(plan.conflicts.iter().map(|c| {
            line(
                &format!("conflict ({})", c.kind.as_str()),
                c.side.hash(),
                c.side.content(),
            )
        }));
        rep.conflicts_to_push = plan
            .conflicts
            .iter()
            .filter(|c| matches!(c.side, ConflictSide::LocalEdit(_)))
            .filter(|c| settle::pushes(c.kind, policy))
            .count();
        return Ok(rep);
    }
    let mut read = plan.read;
    let mut writes: Vec<Write<'_>> = Vec::new();
    // Conflicts left open (`manual`) keep their common base, for `resolve-conflicts --strategy
    // merge` to merge three ways.
    let mut left_open: Vec<ContentHash> = Vec::new();
    for c in plan.conflicts {
        let item = match (c.side, c.local_edit) {
            // The local edit joins the staged row (three ways against the base) before the
            // conflict is settled, or settling would write the row's version over it.
            (ConflictSide::Staged(_), Some(l)) | (ConflictSide::LocalEdit(l), _) => {
                let (row, shown) =
                    stage_update(staging, &settings.memory_db, &l.content, &l.fields)?;
                if shown {
                    reread(local, &mut read, &l.hash)?;
                }
                row
            }
            (ConflictSide::Staged(s), None) => s,
        };
        let remote_fields = c.remote.map(|i| &r[i].fields);
        let view = settle::settle(
            staging,
            &item,
            c.kind,
            remote_fields,
            c.base.as_ref(),
            policy,
        )?;
        if policy == ConflictPolicy::Manual {
            rep.open_conflicts += 1;
            left_open.push(item.hash.clone());
        }
        match (view, c.remote) {
            (LocalView::Live(f), Some(i)) => writes.push(Write::Upsert(&r[i], f)),
            (LocalView::Deleted, _) if c.kind == Kind::DeletedRemotely => {
                writes.push(Write::Delete(item.hash.clone()))
            }
            _ => {}
        }
    }
    for s in &plan.confirmed {
        staging.mark_pushed(s, "already on server")?;
    }
    for l in &plan.stage_local {
        if stage_update(staging, &settings.memory_db, &l.content, &l.fields)?.1 {
            reread(local, &mut read, &l.hash)?;
        }
    }
    for l in &plan.lost {
        staging.stage(&l.content, &l.fields, &hostname())?;
    }
    for (i, f) in plan.add.into_iter().chain(plan.change) {
        writes.push(Write::Upsert(&r[i], f));
    }
    for h in &plan.remove {
        writes.push(Write::Delete(h.clone()));
    }
    // Each batch is one transaction: the local service's readers see every memory whole.
    // A row the local service changed since the plan read it is not written over: it keeps
    // its old base, so the next sync meets that edit as a local change.
    let t = now();
    let read = &read;
    crate::fault::point("pull-apply").map_err(|e| MemoryError::Io {
        what: "pull".into(),
        source: e,
    })?;
    let mut edited: Vec<ContentHash> = Vec::new();
    for chunk in writes.chunks(settings.batch_size.max(1)) {
        let skipped = local.write(|w| {
            let mut skipped = Vec::new();
            for op in chunk {
                let hash = match op {
                    Write::Upsert(rec, _) => &rec.hash,
                    Write::Delete(h) => h,
                };
                if let Some(was) = read.get(hash)
                    && w.stamp(hash)? != *was
                {
                    skipped.push(hash.clone());
                    continue;
                }
                match op {
                    Write::Upsert(rec, f) => w.upsert(&NewMemory {
                        hash: &rec.hash,
                        content: &rec.content,
                        fields: f,
                        created_at: rec.created_at,
                        updated_at: rec.updated_at,
                        embedding: rec.embedding.as_deref(),
                        store: rec.store.as_deref(),
                    })?,
                    Write::Delete(h) => w.soft_delete(h, t)?,
                }
            }
            Ok(skipped)
        })?;
        edited.extend(skipped);
    }
    rep.edited_meanwhile = edited.len();
    // The new base: what the server has now, but for the rows edited meanwhile and the
    // conflicts left open.
    let old_base: std::collections::HashSet<ContentHash> =
        edited.into_iter().chain(left_open).collect();
    let seen = plan
        .seen
        .iter()
        .filter(|&&i| !old_base.contains(&r[i].hash))
        .map(|&i| (&r[i].hash, &r[i].fields));
    let removed: Vec<ContentHash> = plan
        .remove
        .iter()
        .filter(|h| !old_base.contains(*h))
        .cloned()
        .collect();
    let mut keep_base = plan.keep_base.clone();
    keep_base.extend(old_base.iter().cloned());
    staging
        .book()
        .set_pulled(seen, &removed, plan.full, &keep_base)?;
    staging.book().state_set("last_pull", &iso(t))?;
    Ok(rep)
}
