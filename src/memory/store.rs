//! `store`: a memory to the server when it answers within the offline threshold, else into
//! staging; a server that already has the content with other fields meets the conflict policy.

use std::path::Path;

use serde_json::{Map, Value};

use super::MemoryError;
use super::client::{RemoteError, StoreOutcome, StoreRequest};
use super::conflict;
use super::ctx::Ctx;
use super::hash::ContentHash;
use super::host::hostname;
use super::push::{self, PushReport};
use super::record::{DEFAULT_TYPE, Fields};
use super::settings::ConflictPolicy;
use super::settle::{self, Kind};
use super::staging::State;
use super::swaplock;

/// What `store` was given.
#[derive(Debug, Clone, Default)]
pub struct StoreInput {
    pub content: String,
    pub tags: Vec<String>,
    pub memory_type: Option<String>,
    pub project: Option<String>,
    pub offline: bool,
}

/// The guide's context: `source:<host>` and `project:<name>` tags, and project, hostname,
/// timestamp and working directory in the metadata.
fn with_context(input: &StoreInput, host: &str) -> Fields {
    let cwd = std::env::current_dir().ok();
    let project = input.project.clone().unwrap_or_else(|| {
        cwd.as_deref()
            .and_then(Path::file_name)
            .map_or_else(|| "unknown".into(), |n| n.to_string_lossy().into_owned())
    });
    let mut tags = input.tags.clone();
    tags.push(format!("source:{host}"));
    tags.push(format!("project:{project}"));
    let mut metadata = Map::new();
    metadata.insert("project".into(), Value::String(project));
    metadata.insert("hostname".into(), Value::String(host.to_owned()));
    metadata.insert(
        "timestamp".into(),
        Value::String(humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()),
    );
    if let Some(d) = cwd {
        metadata.insert("pwd".into(), Value::String(d.display().to_string()));
    }
    Fields {
        tags: conflict::normalize_tags(&tags),
        // Unset unless given: a store that only adds tags must not set the type of what it
        // is merged into (a new memory gets the default, see `new_type`).
        memory_type: input.memory_type.clone(),
        metadata,
    }
}

/// What `store` knows of the server's copy when it stages a memory.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Server {
    Holds,
    Lacks,
    /// Not asked, or no answer.
    Unknown,
}

/// `f` with the default type when it sets none.
fn new_type(f: &Fields) -> Fields {
    Fields {
        memory_type: f.memory_type.clone().or_else(|| Some(DEFAULT_TYPE.into())),
        ..f.clone()
    }
}

/// `store`: to the server if it answers within the offline threshold, else into staging.
pub fn store(ctx: &Ctx, input: &StoreInput) -> Result<String, MemoryError> {
    if super::hash::python_strip(&input.content).is_empty() {
        return Err(MemoryError::Invalid(
            "nothing to store: the content is empty".into(),
        ));
    }
    let host = hostname();
    let fields = with_context(input, &host);
    if let Some(why) = conflict::tags_beyond_server_limits(&fields.tags) {
        return Err(MemoryError::Invalid(format!(
            "nothing stored: {why} (with the source: and project: tags memsync adds)"
        )));
    }
    let hash = ContentHash::of(&input.content);
    // A memory known to be new to the server (`Server::Lacks`) and to staging gets the default
    // type; one merged into a staged row or a server version keeps theirs unless `--type`
    // says otherwise. When the server could not be asked, the type stays unset: the push
    // gives a memory new there the default, and one already there keeps its type.
    // Taken at the first write to staging, held to the end (every later write comes after).
    let swap = std::cell::OnceCell::new();
    let stage = |why: &str, server: Server| -> Result<(i64, bool), MemoryError> {
        if swap.get().is_none() {
            super::staging::Staging::check_path(&ctx.settings.staging_db)?;
            let _ = swap.set(swaplock::for_store(&ctx.settings.staging_db)?);
        }
        let mut st = ctx.staging()?;
        let new = server == Server::Lacks && st.open_for(&hash)?.is_none();
        let f = if new {
            new_type(&fields)
        } else {
            fields.clone()
        };
        let r = st.stage(&input.content, &f, &host)?;
        ctx.log
            .line("store", &format!("staged #{} {}: {why}", r.0, hash.short()));
        Ok(r)
    };
    if input.offline {
        let (id, new) = stage("--offline", Server::Unknown)?;
        return Ok(staged_msg(id, new, &hash, "offline"));
    }
    let client = ctx.client()?;
    let req = StoreRequest {
        content: &input.content,
        tags: &fields.tags,
        memory_type: fields.memory_type.as_deref().or(Some(DEFAULT_TYPE)),
        metadata: &fields.metadata,
        client_hostname: Some(&host),
        restore_deleted: false,
    };
    match client.store(&req, ctx.settings.offline_threshold) {
        Ok(StoreOutcome::Stored(h)) => {
            ctx.log.line(
                "store",
                &format!("stored {} on {}", h.short(), client.base_url()),
            );
            Ok(format!("stored {h} on {}", client.base_url()))
        }
        Ok(StoreOutcome::Duplicate) => {
            // Already there, but with these tags, type and metadata?
            let remote = match client.get(&hash) {
                Ok(Some(r)) => r.fields(),
                // What the server holds is unknown, so what this store adds may be missing
                // there: kept, for the push to compare and send.
                Err(e) => {
                    let (id, _) = stage(&format!("comparing with the server: {e}"), Server::Holds)?;
                    ctx.log.line("error", &format!("store: {e}"));
                    return Err(MemoryError::StagedOnly { id, cause: e });
                }
                Ok(None) => {
                    ctx.log
                        .line("store", &format!("already on server {}", hash.short()));
                    return Ok(format!("already on the server: {hash}"));
                }
            };
            if !conflict::differs(&fields, &remote) {
                ctx.log
                    .line("store", &format!("already on server {}", hash.short()));
                return Ok(format!("already on the server: {hash}"));
            }
            let (id, _) = stage("already on the server with other fields", Server::Holds)?;
            let st = ctx.staging()?;
            let Some(item) = st.get(id)? else {
                return Ok(format!("already on the server: {hash}"));
            };
            // Storing again adds to what the server has (no base: `merge` unions); it is not
            // an edit of the version this machine last saw. The local service's own version
            // of the memory (made there with its tags), or an edit of it not folded yet, joins
            // the row first: the view written back below would go over it.
            let local = super::localdb::LocalDb::open_read_only(&ctx.settings.memory_db).ok();
            let base = st.book().base(&hash)?;
            let folded = settle::fold_unseen_edit(
                &st,
                local.as_ref(),
                &item,
                base.as_ref(),
                super::staging::Operation::Update,
            )?;
            let (item, settle_base) = match folded {
                Some(f) => (f, base.clone()),
                None => (item, None),
            };
            drop(local);
            // Unchanged on the server since the last sync: no conflict, the store adds to it.
            if settle_base.is_none()
                && settle::store_adds_to_unchanged(&st, &item, &remote, base.as_ref())?
                && let Some(item) = st.get(id)?
            {
                // The local database shows it too: else the next pull took its older row for
                // an edit made since, and sent it back.
                settle::show_locally(
                    &ctx.settings.memory_db,
                    &hash,
                    &settle::LocalView::Live(item.fields.clone()),
                )?;
                let mut rep = PushReport::default();
                let line = push::push_one(&st, &client, &ctx.settings, &item, &mut rep, None)?;
                ctx.log.line("store", &line);
                return Ok(format!(
                    "already on the server with other tags/type/metadata, unchanged there since the last sync (no conflict): {}",
                    if rep.updated > 0 {
                        "the server's copy was updated with them"
                    } else {
                        "staged as an update"
                    }
                ));
            }
            let view = settle::settle(
                &st,
                &item,
                Kind::Diverged,
                Some(&remote),
                settle_base.as_ref(),
                ctx.settings.conflict,
            )?;
            // The server's version is now known: the settled row changes it.
            st.book().set_base(&hash, &remote)?;
            settle::show_locally(&ctx.settings.memory_db, &hash, &view)?;
            let policy = ctx.settings.conflict.as_str();
            match st.get(id)? {
                Some(item) if item.state == State::Pending => {
                    let mut rep = PushReport::default();
                    let line = push::push_one(&st, &client, &ctx.settings, &item, &mut rep, None)?;
                    ctx.log.line("store", &line);
                    Ok(format!(
                        "already on the server with other tags/type/metadata; conflict policy {policy}: {}",
                        if rep.updated > 0 {
                            "the server's copy was updated"
                        } else {
                            "staged as an update"
                        }
                    ))
                }
                _ => Ok(format!(
                    "already on the server with other tags/type/metadata; conflict policy {policy} kept the server's version (yours is in the conflict record; memsync resolve-conflicts)"
                )),
            }
        }
        Ok(StoreOutcome::DeletedRemotely(detail)) => {
            // Kept. The push meets the deletion again and its conflict policy decides (settled
            // here, `push --conflict remote` could no longer keep the deletion); only `manual`
            // is recorded now, for `resolve-conflicts`.
            let (id, new) = stage("deleted on the server", Server::Lacks)?;
            let staged = staged_msg(id, new, &hash, "deleted on the server");
            if ctx.settings.conflict != ConflictPolicy::Manual {
                return Ok(format!(
                    "{staged}; the server had deleted this content ({detail}); the conflict policy of the push decides whether it comes back (now: {})",
                    ctx.settings.conflict.as_str()
                ));
            }
            let st = ctx.staging()?;
            if let Some(item) = st.get(id)? {
                settle::settle(
                    &st,
                    &item,
                    Kind::DeletedRemotely,
                    None,
                    None,
                    ConflictPolicy::Manual,
                )?;
            }
            Ok(format!(
                "{staged}; the server had deleted this content ({detail}); recorded as a conflict (policy manual): memsync resolve-conflicts"
            ))
        }
        Ok(StoreOutcome::Refused(reason)) => {
            let (id, _) = stage(&format!("refused: {reason}"), Server::Lacks)?;
            let st = ctx.staging()?;
            st.mark_failed(id, &reason)?;
            Err(MemoryError::StoreRefused { id, reason })
        }
        Err(e) if e.is_transient() => {
            let (id, new) = stage(&e.to_string(), Server::Unknown)?;
            // A server that answered with its own failure is not "unreachable".
            let how = match e {
                RemoteError::Server { .. } => "the server failed",
                _ => "server not reachable",
            };
            Ok(format!(
                "{}; {how} ({e}); run `memsync push` later",
                staged_msg(id, new, &hash, "offline")
            ))
        }
        Err(
            e @ (RemoteError::Unauthorized { .. }
            | RemoteError::Rejected { .. }
            | RemoteError::Malformed { .. }
            | RemoteError::Tls { .. }
            | RemoteError::Protocol { .. }),
        ) => {
            let (id, _) = stage(&e.to_string(), Server::Unknown)?;
            ctx.log.line("error", &format!("store: {e}"));
            Err(MemoryError::StagedOnly { id, cause: e })
        }
        Err(e) => Err(e.into()),
    }
}

fn staged_msg(id: i64, new: bool, hash: &ContentHash, why: &str) -> String {
    if new {
        format!("staged locally as #{id} ({why}) {hash}")
    } else {
        format!("already staged as #{id} (tags merged) {hash}")
    }
}
