//! Settling a conflict met by pull or push under a policy: what happens to the staged row, and
//! what the local database should show. The losing side is always kept in the conflict record.

use std::path::Path;

use super::conflict;
use super::hash::ContentHash;
use super::localdb::{LocalDb, LocalDbError};
use super::record::Fields;
use super::settings::ConflictPolicy;
use super::staging::{Operation, Staged, Staging, StagingError, State};

/// The kinds of conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Same content hash, different tags, type or metadata.
    Diverged,
    /// Changed (or stored) locally, deleted on the server.
    DeletedRemotely,
    /// Deleted locally (a staged delete), changed on the server since.
    ChangedRemotely,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Diverged => "diverged",
            Kind::DeletedRemotely => "deleted_remotely",
            Kind::ChangedRemotely => "changed_remotely",
        }
    }
    pub fn parse(s: &str) -> Kind {
        match s {
            "deleted_remotely" => Kind::DeletedRemotely,
            "changed_remotely" => Kind::ChangedRemotely,
            _ => Kind::Diverged,
        }
    }
}

/// What the local database should hold for the memory after settling.
#[derive(Debug, Clone, PartialEq)]
pub enum LocalView {
    /// These fields (the memory stays live).
    Live(Fields),
    /// The memory is gone (the server's delete won).
    Deleted,
}

/// Applies `policy` to a conflict on `item`. Returns the view the local database should take.
/// `base` is the common base when known (the `merge` policy is then three-way).
pub fn settle(
    staging: &Staging,
    item: &Staged,
    kind: Kind,
    remote: Option<&Fields>,
    base: Option<&Fields>,
    policy: ConflictPolicy,
) -> Result<LocalView, StagingError> {
    let decided = (policy != ConflictPolicy::Manual).then(|| policy.as_str());
    let log = staging.conflict_log();
    let id = log.record(
        item.id,
        &item.hash,
        kind.as_str(),
        &item.fields,
        remote,
        decided,
    )?;
    // One open record per row: the new one holds the row as it is now.
    log.supersede(item.id, id)?;
    apply(staging, item, kind, remote, base, policy)
}

/// Whether settling a conflict of `kind` under `policy` leaves a row to push (what
/// [`apply`] makes pending): what `sync --dry-run` counts.
pub fn pushes(kind: Kind, policy: ConflictPolicy) -> bool {
    match (kind, policy) {
        (_, ConflictPolicy::Manual | ConflictPolicy::Remote) => false,
        (Kind::ChangedRemotely, ConflictPolicy::Merge) => false,
        (Kind::Diverged | Kind::DeletedRemotely, _) => true,
        (Kind::ChangedRemotely, ConflictPolicy::Local) => true,
    }
}

/// Carries out a decision (also used by `resolve-conflicts` on an open conflict).
pub fn apply(
    staging: &Staging,
    item: &Staged,
    kind: Kind,
    remote: Option<&Fields>,
    base: Option<&Fields>,
    policy: ConflictPolicy,
) -> Result<LocalView, StagingError> {
    let remote_view = || remote.cloned().map_or(LocalView::Deleted, LocalView::Live);
    // A local side without a type (`store` without `--type`) keeps the type the memory has:
    // the server's, else the common base's. Taken as it was, the local row lost its type
    // while the server kept it.
    // A staged store adds to the memory as it is (tags it did not name were not removed): with
    // a base, its side is the base with the store's fields added. Taken alone, `merge` read
    // every base tag it lacked as removed here (a tag another machine kept was lost).
    let mine = match kind {
        Kind::Diverged => version_of(item, base),
        _ => item.fields.clone(),
    };
    let local = mine.clone().typed_as(remote).typed_as(base);
    Ok(match (kind, policy) {
        (_, ConflictPolicy::Manual) => {
            staging.rewrite(
                item,
                item.op,
                &item.fields,
                State::Conflict,
                item.restore_deleted,
            )?;
            // Until someone decides, the local side keeps its own version (the server keeps
            // its own; both are in the conflict record).
            LocalView::Live(local)
        }
        // A change and a deletion the other way cannot be merged either: the later event, the
        // server's change, wins, and nothing is lost.
        (_, ConflictPolicy::Remote) | (Kind::ChangedRemotely, ConflictPolicy::Merge) => {
            staging.rewrite(item, item.op, &item.fields, State::Resolved, false)?;
            remote_view()
        }
        (Kind::Diverged, ConflictPolicy::Merge) => {
            let remote = remote.unwrap_or(&item.fields);
            let mut merged = match base {
                Some(b) => conflict::merge3(&mine, remote, b),
                None => conflict::merge(&mine, remote),
            };
            if item.op == Operation::Store {
                // The tags a store names are added to the memory as it is, as an online store
                // adds them to the server's version: a base tag the server removed since and
                // the user stored again is not the server's removal to keep.
                let mut tags = merged.tags.clone();
                tags.extend(item.fields.tags.iter().cloned());
                merged.tags = conflict::normalize_tags(&tags);
            }
            staging.rewrite(item, Operation::Update, &merged, State::Pending, false)?;
            LocalView::Live(merged)
        }
        (Kind::Diverged, ConflictPolicy::Local) => {
            staging.rewrite(item, Operation::Update, &local, State::Pending, false)?;
            LocalView::Live(local)
        }
        // A deletion cannot be merged with a change: keeping the local change means storing
        // the memory again, explicitly reviving it on the server.
        (Kind::DeletedRemotely, ConflictPolicy::Merge | ConflictPolicy::Local) => {
            staging.rewrite(item, Operation::Store, &local, State::Pending, true)?;
            LocalView::Live(local)
        }
        // `local` deletes it anyway.
        (Kind::ChangedRemotely, ConflictPolicy::Local) => {
            staging.rewrite(item, Operation::Delete, &item.fields, State::Pending, false)?;
            LocalView::Deleted
        }
    })
}

/// Makes the local memory database show a decision taken outside a pull (at push, store or
/// `resolve-conflicts`): otherwise the next pull would see the local row differ from the new
/// base and send it back, undoing the decision. A memory the local database does not hold
/// (stored remote-first) is left to the next pull; no local database, nothing to do.
pub fn show_locally(
    memory_db: &Path,
    hash: &ContentHash,
    view: &LocalView,
) -> Result<(), LocalDbError> {
    if !memory_db.is_file() {
        return Ok(());
    }
    let mut db = LocalDb::open(memory_db)?;
    let Some(l) = db.get(hash)? else {
        return Ok(());
    };
    if l.deleted_at.is_some() {
        return Ok(());
    }
    let t = super::clock::now();
    match view {
        LocalView::Live(f) if conflict::differs(&l.fields, f) => {
            db.write(|w| w.set_fields(hash, f, t))
        }
        LocalView::Live(_) => Ok(()),
        LocalView::Deleted => db.write(|w| w.soft_delete(hash, t)),
    }
}

/// The version of the memory a staged row stands for: a staged store adds to the memory as
/// the base has it (a base tag it does not name is not removed); any other row is a whole
/// version.
pub fn version_of(item: &Staged, base: Option<&Fields>) -> Fields {
    match (item.op, base) {
        (Operation::Store, Some(b)) => conflict::merge(&item.fields, b),
        _ => item.fields.clone(),
    }
}

/// The local database's fields for `hash` when they hold an edit no decision has seen: they
/// differ from `seen` (the staged row's) and from the common base (`None`: none known, such
/// as a memory the local service made itself). Settled without it, the decision's view
/// would be written over it.
fn unfolded_edit(
    local: Option<&LocalDb>,
    hash: &ContentHash,
    seen: &Fields,
    base: Option<&Fields>,
) -> Option<Fields> {
    let l = local?.get(hash).ok()??;
    (l.deleted_at.is_none()
        && conflict::differs(&l.fields, seen)
        && base.is_none_or(|b| conflict::differs(&l.fields, b)))
    .then_some(l.fields)
}

/// Folds `local` (an edit of the local database) into the staged row `item`, three ways
/// against `base`: what the edit removed from the base goes, what either side added stays,
/// the row wins a key both changed. A staged store is first widened with the base (it adds,
/// it removes nothing); without a base it is the union. The row becomes an update of the
/// memory (`op`: an update, or still a store for a memory the server lacks); returns it as it
/// is now.
pub fn fold_local_edit(
    staging: &Staging,
    item: &Staged,
    local: &Fields,
    base: Option<&Fields>,
    op: Operation,
) -> Result<Staged, StagingError> {
    let folded = match base {
        Some(b) => conflict::merge3(&version_of(item, base), local, b),
        None => conflict::merge(&item.fields, local),
    };
    staging.rewrite(item, op, &folded, State::Pending, item.restore_deleted)?;
    Ok(staging.get(item.id)?.unwrap_or_else(|| item.clone()))
}

/// The local database's edit no decision has seen ([`unfolded_edit`]), folded into `item`
/// ([`fold_local_edit`]) when there is one; the row as it is then.
pub fn fold_unseen_edit(
    staging: &Staging,
    local: Option<&LocalDb>,
    item: &Staged,
    base: Option<&Fields>,
    op: Operation,
) -> Result<Option<Staged>, StagingError> {
    unfolded_edit(local, &item.hash, &item.fields, base)
        .map(|l| fold_local_edit(staging, item, &l, base, op))
        .transpose()
}

/// A staged store of a memory the server holds as it was at the base (nobody changed it
/// since): no conflict, whatever the policy; the row becomes an update adding the store's
/// fields to the base (a side that did not change never overrides the side that did). `false`
/// when the server changed since the base, or no base is known: a conflict to settle.
pub fn store_adds_to_unchanged(
    staging: &Staging,
    item: &Staged,
    server: &Fields,
    base: Option<&Fields>,
) -> Result<bool, StagingError> {
    // A row in an open conflict is settled as one (its record closes with it).
    let Some(b) = base.filter(|b| {
        item.op == Operation::Store
            && item.state != State::Conflict
            && !conflict::differs(b, server)
    }) else {
        return Ok(false);
    };
    let widened = version_of(item, Some(b)).typed_as(Some(b));
    staging.rewrite(
        item,
        Operation::Update,
        &widened,
        State::Pending,
        item.restore_deleted,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A local side stored without a type keeps the memory's type under every policy that
    /// keeps the local side (it was written as NULL locally while the server kept its type).
    #[test]
    fn a_local_side_without_a_type_keeps_the_memorys_type() {
        let typed = |tag: &str, ty: Option<&str>| Fields {
            tags: vec![tag.to_owned()],
            memory_type: ty.map(str::to_owned),
            metadata: Default::default(),
        };
        for (kind, policy) in [
            (Kind::Diverged, ConflictPolicy::Local),
            (Kind::Diverged, ConflictPolicy::Manual),
            (Kind::Diverged, ConflictPolicy::Merge),
            (Kind::DeletedRemotely, ConflictPolicy::Local),
        ] {
            let mut st = Staging::in_memory().unwrap();
            let (id, _) = st.stage("a memory", &typed("mine", None), "host").unwrap();
            let item = st.get(id).unwrap().unwrap();
            let remote = typed("theirs", Some("decision"));
            let base = typed("base", Some("decision"));
            let remote = (kind != Kind::DeletedRemotely).then_some(&remote);
            let view = apply(&st, &item, kind, remote, Some(&base), policy).unwrap();
            let LocalView::Live(f) = view else {
                panic!("{kind:?} under {policy:?}: not live");
            };
            assert_eq!(
                f.memory_type.as_deref(),
                Some("decision"),
                "{kind:?} under {policy:?}"
            );
        }
    }

    /// What `sync --dry-run` counts as pushed is what settling leaves pending, for every kind
    /// and policy.
    #[test]
    fn pushes_says_what_apply_leaves_pending() {
        let fields = |tag: &str| Fields {
            tags: vec![tag.to_owned()],
            memory_type: None,
            metadata: Default::default(),
        };
        for kind in [Kind::Diverged, Kind::DeletedRemotely, Kind::ChangedRemotely] {
            for policy in [
                ConflictPolicy::Merge,
                ConflictPolicy::Local,
                ConflictPolicy::Remote,
                ConflictPolicy::Manual,
            ] {
                let mut st = Staging::in_memory().unwrap();
                let (id, _) = st.stage("a memory", &fields("local"), "host").unwrap();
                let item = st.get(id).unwrap().unwrap();
                st.rewrite(
                    &item,
                    Operation::Update,
                    &item.fields,
                    State::Conflict,
                    false,
                )
                .unwrap();
                let item = st.get(id).unwrap().unwrap();
                let remote = fields("remote");
                let remote = (kind != Kind::DeletedRemotely).then_some(&remote);
                apply(&st, &item, kind, remote, None, policy).unwrap();
                let after = st.get(id).unwrap().unwrap();
                assert_eq!(
                    after.state == State::Pending,
                    pushes(kind, policy),
                    "{kind:?} under {policy:?}: {:?}",
                    after.state
                );
            }
        }
    }
}
