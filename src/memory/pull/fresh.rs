//! A replica lags the server: by its sync interval at best, by hours while the server's
//! replicator is down. What it shows of a memory this machine also holds may be older than what
//! this machine pushed since, and taken as the server's word it would revert the push locally (a
//! pushed edit changed back, a memory stored here and pushed removed as "deleted there"). So
//! before a replica's record changes, conflicts with or removes a local memory, the server is
//! asked (`GET /api/memories/{hash}`, one per such memory): its answer stands in for the
//! replica's record. The embedding stays the replica's (same content, same vector). A memory
//! the server cannot be asked about is left out of this pull, base and all, for the next one.

use std::collections::{HashMap, HashSet};

use super::super::MemoryError;
use super::super::client::RemoteMemory;
use super::super::conflict;
use super::super::hash::ContentHash;
use super::super::localdb::LocalDb;
use super::super::record::Fields;
use super::super::staging::Staging;
use super::{RemoteRecord, RemoteState};

/// What asking the server gave.
#[derive(Debug, Default)]
pub struct Freshened {
    /// Memories the server was asked about.
    pub asked: usize,
    /// Those where the server's version differed from the replica's (the replica was behind).
    pub newer: usize,
    /// Why the server could not be asked, when it could not (the memories are then in
    /// [`RemoteState::unconfirmed`]).
    pub failure: Option<String>,
    /// Memories known on the server before that it and the replica both no longer show:
    /// deleted, or lost by the server (its tombstones tell which).
    pub gone: usize,
}

/// Brings the replica's records of memories this machine holds up to the server's answers.
/// `ask` is `GET /api/memories/{hash}` (`None`: 404); after its first error the rest are not
/// asked.
pub fn freshen(
    remote: &mut RemoteState,
    local: &LocalDb,
    staging: &Staging,
    mut ask: impl FnMut(&ContentHash) -> Result<Option<RemoteMemory>, MemoryError>,
) -> Result<Freshened, MemoryError> {
    let base: HashMap<ContentHash, Option<Fields>> = staging.book().pulled()?;
    let mut doubtful: Vec<(ContentHash, Option<usize>)> = Vec::new();
    let mut in_replica = HashSet::new();
    for (i, r) in remote.records.iter().enumerate() {
        in_replica.insert(r.hash.clone());
        let Some(l) = local.get(&r.hash)?.filter(|l| l.deleted_at.is_none()) else {
            // Not held here: an addition (or nothing), whatever the server did since.
            // A staged row for it meets this record: a conflict if they differ.
            if r.deleted_at.is_none()
                && staging
                    .open_for(&r.hash)?
                    .is_some_and(|s| conflict::differs(&s.fields, &r.fields))
            {
                doubtful.push((r.hash.clone(), Some(i)));
            }
            continue;
        };
        if r.deleted_at.is_some() {
            // A tombstone removes the local memory: the server may hold it again since.
            doubtful.push((r.hash.clone(), Some(i)));
            continue;
        }
        let b = base.get(&r.hash).and_then(Option::as_ref);
        let remote_changed = b.is_none_or(|b| conflict::differs(b, &r.fields));
        let staged_differs = staging
            .open_for(&r.hash)?
            .is_some_and(|s| conflict::differs(&s.fields, &r.fields));
        if remote_changed && (conflict::differs(&l.fields, &r.fields) || staged_differs) {
            doubtful.push((r.hash.clone(), Some(i)));
        }
    }
    // Local memories the replica does not show at all, known on the server before: removals
    // unless the server still holds them.
    for l in local.all()? {
        if l.deleted_at.is_none() && !in_replica.contains(&l.hash) && base.contains_key(&l.hash) {
            doubtful.push((l.hash, None));
        }
    }
    let mut out = Freshened::default();
    for (hash, at) in doubtful {
        if out.failure.is_some() {
            remote.unconfirmed.insert(hash);
            continue;
        }
        out.asked += 1;
        let answer = match ask(&hash) {
            Ok(a) => a,
            Err(e) => {
                out.failure = Some(e.to_string());
                remote.unconfirmed.insert(hash);
                continue;
            }
        };
        match (answer, at) {
            (Some(m), Some(i)) => {
                let r = &mut remote.records[i];
                let fields = m.fields();
                if r.deleted_at.is_some() || conflict::differs(&r.fields, &fields) {
                    out.newer += 1;
                }
                r.fields = fields;
                r.updated_at = m.updated_at.unwrap_or(r.updated_at);
                r.deleted_at = None;
            }
            (Some(m), None) => {
                out.newer += 1;
                let created = m.created_at.unwrap_or(0.0);
                remote.records.push(RemoteRecord {
                    hash: m.content_hash.clone(),
                    fields: m.fields(),
                    content: m.content,
                    created_at: created,
                    updated_at: m.updated_at.unwrap_or(created),
                    deleted_at: None,
                    embedding: None,
                    store: None,
                });
            }
            (None, Some(i)) => {
                let r = &mut remote.records[i];
                if r.deleted_at.is_none() {
                    // Deleted on the server since the replica was written (at most now).
                    out.newer += 1;
                    r.deleted_at = Some(now());
                }
            }
            // Gone from the server as from the replica: removed if the server deleted it.
            (None, None) => out.gone += 1,
        }
    }
    Ok(out)
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
