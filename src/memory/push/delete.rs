//! The delete step of `push`: a staged delete (an upstream script's DELETE row) is carried out
//! with `DELETE /api/memories/{hash}`, then as the same soft delete in the local service's
//! database, so the memory is gone on both sides even where no pull ever saw it (pull alone
//! would take a local memory it never saw on the server for a local creation and keep it).

use super::super::MemoryError;
use super::super::client::{DeleteOutcome, RemoteClient, RemoteError};
use super::super::clock::now;
use super::super::conflict;
use super::super::hash::ContentHash;
use super::super::localdb::LocalDb;
use super::super::settings::{ConflictPolicy, Settings};
use super::super::settle::{self, Kind, LocalView};
use super::super::staging::{Staged, Staging};
use super::report::PushReport;

/// Removes the memory from the local database, when there is one (the service's soft delete).
fn delete_locally(settings: &Settings, hash: &ContentHash) -> Result<(), MemoryError> {
    if !settings.memory_db.is_file() {
        return Ok(());
    }
    let mut local = LocalDb::open(&settings.memory_db)?;
    local.write(|w| w.soft_delete(hash, now()))?;
    Ok(())
}

/// One staged delete; `Err` only for failures that should stop the whole push. The server
/// answers 200 whether it deleted the memory or had none: both confirm the row. A local
/// database that cannot be updated leaves the row failed (retried by `push --retry-failed`;
/// the server's second answer is "not found", which confirms it again).
pub fn push_delete(
    staging: &Staging,
    client: &RemoteClient,
    settings: &Settings,
    item: &Staged,
    rep: &mut PushReport,
) -> Result<String, MemoryError> {
    let (id, short) = (item.id, item.hash.short());
    let fail = |rep: &mut PushReport, reason: &str| -> Result<String, MemoryError> {
        staging.mark_failed(id, reason)?;
        rep.failed += 1;
        Ok(format!("#{id} {short} failed: {reason}"))
    };
    // `local` on a conflict rewrites the row: what follows works on it as it is now.
    let rewritten;
    let item = match changed_since(staging, client, settings, item, rep)? {
        Go::Ahead => item,
        Go::AheadRewritten => {
            rewritten = staging.get(id)?.ok_or(MemoryError::RowVanished { id })?;
            &rewritten
        }
        Go::Settled(line) => return Ok(line),
    };
    let outcome = match client.delete(&item.hash) {
        Ok(DeleteOutcome::Deleted) => "deleted",
        Ok(DeleteOutcome::NotFound) => "deleted (already gone on the server)",
        Ok(DeleteOutcome::Refused(reason)) => return fail(rep, &reason),
        Err(RemoteError::Rejected { status, detail, .. }) => {
            return fail(rep, &format!("HTTP {status}: {detail}"));
        }
        Err(e) => return Err(e.into()),
    };
    if let Err(e) = delete_locally(settings, &item.hash) {
        return fail(
            rep,
            &format!("deleted on the server, but not in the local database: {e}"),
        );
    }
    rep.deleted += 1;
    if !staging.mark_pushed(item, outcome)? {
        // Stored again while its delete was sent: the store waits, and brings it back.
        return Ok(format!(
            "#{id} {short} {outcome}; stored again meanwhile: the store is sent next"
        ));
    }
    Ok(format!("#{id} {short} {outcome}"))
}

/// Whether a staged delete is sent.
enum Go {
    Ahead,
    /// After a conflict settled `local`, which rewrote the row.
    AheadRewritten,
    /// Settled otherwise (or left open): this line says how.
    Settled(String),
}

/// A delete wished before the server's latest change to the memory meets that change as a
/// conflict (`changed_remotely`) the policy settles, rather than deleting an edit nobody here
/// saw. "Changed since": against the version this machine last saw (its base) when it knows
/// one, else the server's `updated_at` against when the delete was staged.
fn changed_since(
    staging: &Staging,
    client: &RemoteClient,
    settings: &Settings,
    item: &Staged,
    rep: &mut PushReport,
) -> Result<Go, MemoryError> {
    let Some(r) = client.get(&item.hash)? else {
        return Ok(Go::Ahead);
    };
    let server = r.fields();
    let changed = match staging.book().base(&item.hash)? {
        Some(base) => conflict::differs(&base, &server),
        None => r.updated_at.is_some_and(|u| u > item.staged_at),
    };
    if !changed {
        return Ok(Go::Ahead);
    }
    let view = settle::settle(
        staging,
        item,
        Kind::ChangedRemotely,
        Some(&server),
        None,
        settings.conflict,
    )?;
    rep.conflicts += 1;
    let line = format!(
        "#{} {} conflict (changed on the server since it was deleted here), policy {}",
        item.id,
        item.hash.short(),
        settings.conflict.as_str()
    );
    match (settings.conflict, view) {
        // Left for `resolve-conflicts`; the local database stays as it is.
        (ConflictPolicy::Manual, _) => Ok(Go::Settled(line)),
        (_, LocalView::Deleted) => {
            // `local`: the delete goes ahead, against the version now known.
            staging.book().set_base(&item.hash, &server)?;
            Ok(Go::AheadRewritten)
        }
        (_, view @ LocalView::Live(_)) => {
            staging.book().set_base(&item.hash, &server)?;
            settle::show_locally(&settings.memory_db, &item.hash, &view)?;
            Ok(Go::Settled(format!("{line}: the server's version stays")))
        }
    }
}
