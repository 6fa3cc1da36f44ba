//! `push`: staged rows to the server, oldest first, in batches of `SYNC_BATCH_SIZE`. A row
//! leaves the queue only once the server confirmed it (stored, already there, or updated), so an
//! interrupted push is simply run again: what was stored comes back as "already there".

use std::collections::HashMap;

use super::MemoryError;
use super::client::{RemoteClient, RemoteError, StoreOutcome, StoreRequest, UpdateOutcome};
use super::conflict;
use super::record::{DEFAULT_TYPE, Fields};
use super::settings::Settings;
use super::settle::{self, Kind};
use super::staging::{Operation, Staged, Staging, State};
use super::synclog::SyncLog;

mod delete;
mod report;

pub use report::PushReport;

fn request<'a>(item: &'a Staged, tags: &'a [String], host: &'a str) -> StoreRequest<'a> {
    StoreRequest {
        content: &item.content,
        tags,
        // A row staged without a type (the server could not be asked) is new there when it
        // is stored: the default, as an online `store` gives it.
        memory_type: item.fields.memory_type.as_deref().or(Some(DEFAULT_TYPE)),
        metadata: &item.fields.metadata,
        client_hostname: Some(host),
        restore_deleted: item.restore_deleted,
    }
}

/// Pushes every pending row. Stops at the first failure that says the server is unusable
/// (unreachable after retries, wrong API key, unreadable answers), leaving the rest pending and
/// the reason in [`PushReport::stopped`].
pub fn push(
    staging: &mut Staging,
    client: &RemoteClient,
    settings: &Settings,
    log: &SyncLog,
) -> PushReport {
    let mut rep = PushReport::default();
    // Rows handled in this run (a row settled back to pending, e.g. to be stored again after
    // a remote delete, gets one more pass).
    let mut done: HashMap<i64, u8> = HashMap::new();
    let total = staging.count(State::Pending).unwrap_or(0) as usize;
    // Read once per push (a store meeting the same content there, see `held_differently`).
    let local = settings
        .memory_db
        .is_file()
        .then(|| super::localdb::LocalDb::open_read_only(&settings.memory_db).ok())
        .flatten();
    loop {
        let batch: Vec<Staged> =
            match staging.in_state(State::Pending, settings.batch_size + done.len()) {
                Ok(b) => b
                    .into_iter()
                    .filter(|s| done.get(&s.id).is_none_or(|&n| n < 2))
                    .take(settings.batch_size)
                    .collect(),
                Err(e) => {
                    rep.stopped = Some(e.into());
                    return rep;
                }
            };
        if batch.is_empty() {
            break;
        }
        for item in batch {
            *done.entry(item.id).or_insert(0) += 1;
            tracing::debug!("push {}", super::staging::describe(&item));
            match push_one(staging, client, settings, &item, &mut rep, local.as_ref()) {
                Ok(line) => {
                    log.line("push", &line);
                    rep.lines.push(line);
                    super::progress::show("push", done.len(), total);
                }
                Err(e) => {
                    let _ = staging.note_attempt(item.id, &e.to_string());
                    rep.left_pending = staging.count(State::Pending).ok().map(|n| n as usize);
                    log.line("push", &format!("#{} stopped: {e}", item.id));
                    rep.stopped = Some(e);
                    return rep;
                }
            }
        }
    }
    let _ = staging
        .book()
        .state_set("last_push", &super::clock::iso(super::clock::now()));
    rep
}

/// One row; `Err` only for failures that should stop the whole push. `local`: the local
/// database, read-only, when there is one.
pub fn push_one(
    staging: &Staging,
    client: &RemoteClient,
    settings: &Settings,
    item: &Staged,
    rep: &mut PushReport,
    local: Option<&super::localdb::LocalDb>,
) -> Result<String, MemoryError> {
    let base = staging.book().base(&item.hash)?;
    // A store of content the local service holds with fields of its own (made there, or
    // edited since the base) adds to that version: sent alone, the store's fields replaced
    // them on the server and, at the next sync, on the local side too.
    // With a base the server has the memory: the fold is a whole version, an update (still a
    // store, a base tag it lacks would read as not named rather than removed).
    let folded = match item.op {
        Operation::Store => {
            let op = match base {
                Some(_) => Operation::Update,
                None => Operation::Store,
            };
            settle::fold_unseen_edit(staging, local, item, base.as_ref(), op)?
        }
        _ => None,
    };
    if let Some(f) = &folded {
        // The local database shows what is sent: its own older row would otherwise meet the
        // stored version at the next pull as a local edit (and win under `local`).
        settle::show_locally(
            &settings.memory_db,
            &f.hash,
            &settle::LocalView::Live(f.fields.clone()),
        )?;
    }
    let pre_folded = folded.is_some();
    let item = folded.as_ref().unwrap_or(item);
    let tags = conflict::normalize_tags(&item.fields.tags);
    let id = item.id;
    let short = item.hash.short();
    if item.op == Operation::Store
        && let Some(why) = conflict::tags_beyond_server_limits(&tags)
    {
        // Sent as it is, the server would keep less than the row holds, and say nothing.
        let why = format!("not sent: {why}; memsync edit {id} --tags ... to fit");
        staging.mark_failed(id, &why)?;
        rep.failed += 1;
        return Ok(format!("#{id} {short} failed: {why}"));
    }
    let mut metadata = item.fields.metadata.clone();
    if item.op == Operation::Update {
        match check_update(staging, client, settings, item, base.as_ref(), rep, local)? {
            Checked::Settled(line) => return Ok(line),
            Checked::Send { server_metadata } => {
                // Keys removed here go as `null` (the server's PUT keeps a key left out).
                for k in conflict::removed_keys(&metadata, &server_metadata) {
                    metadata.insert(k, serde_json::Value::Null);
                }
            }
        }
    }
    let result = match item.op {
        Operation::Store => client
            .store_retrying(&request(item, &tags, client.hostname()))
            .map(Ok),
        Operation::Update => client
            .update(
                &item.hash,
                &tags,
                item.fields.memory_type.as_deref(),
                &metadata,
            )
            .map(Err),
        Operation::Delete => {
            return delete::push_delete(staging, client, settings, item, rep);
        }
    };
    match result {
        Ok(Ok(StoreOutcome::Stored(h))) => {
            if h != item.hash {
                rep.hash_mismatches += 1;
            }
            // The server holds what was sent, whatever happens to the row; it becomes the base
            // unless the local database holds the content with other fields (its service made
            // the memory too). Then the next pull meets the two versions as a conflict the
            // policy settles (the union under `merge`), as after an online `store`: with the
            // sent version as the base, the local row looked like an edit made since, and its
            // tags replaced the stored ones.
            if !held_differently(local, item) {
                staging.book().set_base(&item.hash, &item.fields)?;
            }
            rep.stored += 1;
            if staging.mark_pushed(item, "stored")? {
                Ok(format!("#{id} {short} stored"))
            } else {
                Ok(format!(
                    "#{id} {short} stored; the row changed while it was sent (the same content stored again): it is sent again"
                ))
            }
        }
        Ok(Ok(StoreOutcome::Duplicate)) => {
            // Already there: but with the same tags, type and metadata?
            let remote = client.get(&item.hash)?;
            match remote {
                Some(r) => {
                    let rf = r.fields();
                    if settle::store_adds_to_unchanged(staging, item, &rf, base.as_ref())? {
                        // Sent again, as the update it now is, in this push.
                        Ok(format!(
                            "#{id} {short} already on the server, unchanged since the last sync: the store's tags go as an update"
                        ))
                    } else if conflict::differs(&item.fields, &rf) {
                        // A store is not an edit of the version this machine last saw:
                        // `merge` unions it with the server's (no base). An edit of the local
                        // database not folded yet joins the row first, against the base it
                        // was made from (settled without it, it was written over).
                        let folded = settle::fold_unseen_edit(
                            staging,
                            local,
                            item,
                            base.as_ref(),
                            Operation::Update,
                        )?;
                        // Folded (here or before it was sent) against the base: settled
                        // against it too, so that what the local edit removed stays removed.
                        let (item, base) = match &folded {
                            Some(f) => (f, base.as_ref()),
                            None if pre_folded => (item, base.as_ref()),
                            None => (item, None),
                        };
                        let view = settle::settle(
                            staging,
                            item,
                            Kind::Diverged,
                            Some(&rf),
                            base,
                            settings.conflict,
                        )?;
                        settle::show_locally(&settings.memory_db, &item.hash, &view)?;
                        // The server's version is now known: the settled row changes it.
                        staging.book().set_base(&item.hash, &rf)?;
                        rep.conflicts += 1;
                        Ok(format!(
                            "#{id} {short} conflict (diverged), policy {}",
                            settings.conflict.as_str()
                        ))
                    } else {
                        staging.mark_pushed(item, "already on server")?;
                        staging.book().set_base(&item.hash, &rf)?;
                        rep.duplicates += 1;
                        Ok(format!("#{id} {short} already on server"))
                    }
                }
                None => {
                    // A duplicate that GET cannot find: stored under another hash form.
                    staging.mark_pushed(item, "already on server")?;
                    rep.duplicates += 1;
                    Ok(format!("#{id} {short} already on server"))
                }
            }
        }
        Ok(Ok(StoreOutcome::DeletedRemotely(_))) | Ok(Err(UpdateOutcome::NotFound))
            if !item.restore_deleted =>
        {
            let view = settle::settle(
                staging,
                item,
                Kind::DeletedRemotely,
                None,
                base.as_ref(),
                settings.conflict,
            )?;
            settle::show_locally(&settings.memory_db, &item.hash, &view)?;
            rep.conflicts += 1;
            Ok(format!(
                "#{id} {short} conflict (deleted on the server), policy {}",
                settings.conflict.as_str()
            ))
        }
        Ok(Ok(StoreOutcome::DeletedRemotely(detail))) => {
            staging.mark_failed(id, &detail)?;
            rep.failed += 1;
            Ok(format!("#{id} {short} failed: {detail}"))
        }
        Ok(Err(UpdateOutcome::NotFound)) => {
            // Asked to revive, but an update cannot: store it again.
            staging.rewrite(item, Operation::Store, &item.fields, State::Pending, true)?;
            Ok(format!("#{id} {short} will be stored again"))
        }
        Ok(Err(UpdateOutcome::Updated)) => {
            // As for a store: with the local database showing other fields (a `store` merged
            // into the row since the local edit it carries), the sent version is no base the
            // local row was edited from; the next pull meets the two as a conflict the policy
            // settles (three-way under `merge`) rather than sending the local row back over
            // what was just pushed.
            if !held_differently(local, item) {
                staging.book().set_base(&item.hash, &item.fields)?;
            }
            rep.updated += 1;
            if staging.mark_pushed(item, "updated")? {
                Ok(format!("#{id} {short} updated"))
            } else {
                Ok(format!(
                    "#{id} {short} updated; the row changed while it was sent: it is sent again"
                ))
            }
        }
        Ok(Err(UpdateOutcome::Refused(reason))) | Ok(Ok(StoreOutcome::Refused(reason))) => {
            staging.mark_failed(id, &reason)?;
            rep.failed += 1;
            Ok(format!("#{id} {short} failed: {reason}"))
        }
        Err(RemoteError::Rejected { status, detail, .. }) => {
            let reason = format!("HTTP {status}: {detail}");
            staging.mark_failed(id, &reason)?;
            rep.failed += 1;
            Ok(format!("#{id} {short} failed: {reason}"))
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether the local database holds `item`'s content, live, with other fields. A local
/// database that cannot be read counts as not holding it.
fn held_differently(local: Option<&super::localdb::LocalDb>, item: &Staged) -> bool {
    local
        .and_then(|db| db.get(&item.hash).ok().flatten())
        .is_some_and(|l| l.deleted_at.is_none() && conflict::differs(&l.fields, &item.fields))
}

/// What [`check_update`] found.
enum Checked {
    /// Settled without a PUT: the report line.
    Settled(String),
    /// To be sent; the server's metadata now (empty when it has no such memory).
    Send {
        server_metadata: serde_json::Map<String, serde_json::Value>,
    },
}

/// Before an update replaces the server's tags, type and metadata: did someone change them since
/// this machine last agreed with the server (its base)? Then it is a conflict settled by the
/// policy (three-way under `merge`), never a silent revert of the other edit.
fn check_update(
    staging: &Staging,
    client: &RemoteClient,
    settings: &Settings,
    item: &Staged,
    base: Option<&Fields>,
    rep: &mut PushReport,
    local: Option<&super::localdb::LocalDb>,
) -> Result<Checked, MemoryError> {
    let (id, short) = (item.id, item.hash.short());
    let Some(r) = client.get(&item.hash)? else {
        // Deleted there: the update's NotFound path settles it.
        return Ok(Checked::Send {
            server_metadata: Default::default(),
        });
    };
    let rf = r.fields();
    let server_metadata = r.metadata;
    if !conflict::differs(&item.fields, &rf) {
        staging.mark_pushed(item, "already on server")?;
        staging.book().set_base(&item.hash, &rf)?;
        rep.duplicates += 1;
        return Ok(Checked::Settled(format!("#{id} {short} already on server")));
    }
    match base {
        Some(b) if conflict::differs(b, &rf) => {
            // An edit of the local database not folded yet joins the row first.
            let folded =
                settle::fold_unseen_edit(staging, local, item, Some(b), Operation::Update)?;
            let item = folded.as_ref().unwrap_or(item);
            let view = settle::settle(
                staging,
                item,
                Kind::Diverged,
                Some(&rf),
                Some(b),
                settings.conflict,
            )?;
            settle::show_locally(&settings.memory_db, &item.hash, &view)?;
            staging.book().set_base(&item.hash, &rf)?;
            rep.conflicts += 1;
            Ok(Checked::Settled(format!(
                "#{id} {short} conflict (changed on the server since the last sync), policy {}",
                settings.conflict.as_str()
            )))
        }
        _ => Ok(Checked::Send { server_metadata }),
    }
}
