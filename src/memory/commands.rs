//! The sync commands: `store`, `push`, `pull`, `sync`, `status`.

use std::path::Path;
use std::time::Instant;

use serde_json::{Map, Value};

use super::MemoryError;
use super::client::{RemoteClient, RemoteError, StoreOutcome, StoreRequest, hostname};
use super::conflict;
use super::hash::ContentHash;
use super::localdb::LocalDb;
use super::pull::{self, PullOptions, PullReport};
use super::push::{self, PushReport};
use super::settings::Settings;
use super::settle::{self, Kind};
use super::staging::{Fields, Staging, State};
use super::synclog::SyncLog;

/// What every command carries: the settings and the sync log.
pub struct Ctx {
    pub settings: Settings,
    pub log: SyncLog,
}

impl Ctx {
    pub fn new(settings: Settings) -> Ctx {
        let echo = settings.verbose || settings.debug;
        if settings.debug {
            crate::log::set_level(3);
        }
        let log = SyncLog::new(&settings.log_file, echo);
        Ctx { settings, log }
    }

    pub fn staging(&self) -> Result<Staging, MemoryError> {
        Ok(Staging::open(&self.settings.staging_db)?)
    }

    pub fn client(&self) -> Result<RemoteClient, MemoryError> {
        Ok(RemoteClient::new(&self.settings)?)
    }

    /// Logs a failure to the sync log and passes it on.
    fn fail<T>(&self, op: &str, e: MemoryError) -> Result<T, MemoryError> {
        self.log.line("error", &format!("{op}: {e}"));
        Err(e)
    }
}

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
        memory_type: Some(input.memory_type.clone().unwrap_or_else(|| "note".into())),
        metadata,
    }
}

/// `store`: to the server if it answers within the offline threshold, else into staging.
pub fn store(ctx: &Ctx, input: &StoreInput) -> Result<String, MemoryError> {
    if super::hash::python_strip(&input.content).is_empty() {
        return Err(MemoryError::Incomplete(
            "nothing to store: the content is empty".into(),
        ));
    }
    let host = hostname();
    let fields = with_context(input, &host);
    let hash = super::hash::ContentHash::of(&input.content);
    let stage = |why: &str| -> Result<(i64, bool), MemoryError> {
        let mut st = ctx.staging()?;
        let r = st.stage(&input.content, &fields, &host)?;
        ctx.log
            .line("store", &format!("staged #{} {}: {why}", r.0, hash.short()));
        Ok(r)
    };
    if input.offline {
        let (id, new) = stage("--offline")?;
        return Ok(staged_msg(id, new, &hash, "offline"));
    }
    let client = ctx.client()?;
    let req = StoreRequest {
        content: &input.content,
        tags: &fields.tags,
        memory_type: fields.memory_type.as_deref(),
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
                Ok(Some(r)) => Fields {
                    tags: r.tags,
                    memory_type: r.memory_type,
                    metadata: r.metadata,
                },
                _ => {
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
            let (id, _) = stage("already on the server with other fields")?;
            let st = ctx.staging()?;
            let Some(item) = st.get(id)? else {
                return Ok(format!("already on the server: {hash}"));
            };
            // Storing again adds to what the server has (no base: `merge` unions); it is not
            // an edit of the version this machine last saw.
            let view = settle::settle(
                &st,
                &item,
                Kind::Diverged,
                Some(&remote),
                None,
                ctx.settings.conflict,
            )?;
            // The server's version is now known: the settled row changes it.
            st.set_base(hash.as_str(), &remote)?;
            settle::show_locally(&ctx.settings.memory_db, hash.as_str(), &view)?;
            let policy = ctx.settings.conflict.as_str();
            match st.get(id)? {
                Some(item) if item.state == State::Pending => {
                    let mut rep = PushReport::default();
                    let line = push::push_one(&st, &client, &ctx.settings, &item, &mut rep)?;
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
            // Kept, and settled by the policy on the next push.
            let (id, new) = stage("deleted on the server")?;
            let st = ctx.staging()?;
            if let Some(item) = st.get(id)? {
                settle::settle(
                    &st,
                    &item,
                    Kind::DeletedRemotely,
                    None,
                    None,
                    ctx.settings.conflict,
                )?;
            }
            Ok(format!(
                "{}; the server had deleted this content ({detail}); conflict policy {} applies on push",
                staged_msg(id, new, &hash, "deleted on the server"),
                ctx.settings.conflict.as_str()
            ))
        }
        Ok(StoreOutcome::Refused(reason)) => {
            let (id, _) = stage(&format!("refused: {reason}"))?;
            let st = ctx.staging()?;
            st.mark_failed(id, &reason)?;
            Err(MemoryError::Incomplete(format!(
                "the server refused the memory ({reason}); kept in staging as #{id} (failed)"
            )))
        }
        Err(e) if e.is_transient() => {
            let (id, new) = stage(&e.to_string())?;
            Ok(format!(
                "{}; server not reachable ({e}); run `memsync push` later",
                staged_msg(id, new, &hash, "offline")
            ))
        }
        Err(
            e @ (RemoteError::Unauthorized { .. }
            | RemoteError::Rejected { .. }
            | RemoteError::Malformed { .. }
            | RemoteError::Tls { .. }),
        ) => {
            let (id, _) = stage(&e.to_string())?;
            ctx.log.line("error", &format!("store: {e}"));
            Err(MemoryError::Incomplete(format!(
                "{e}; the memory is kept in staging as #{id}"
            )))
        }
        Err(e) => Err(e.into()),
    }
}

fn staged_msg(id: i64, new: bool, hash: &super::hash::ContentHash, why: &str) -> String {
    if new {
        format!("staged locally as #{id} ({why}) {hash}")
    } else {
        format!("already staged as #{id} (tags merged) {hash}")
    }
}

/// `push`.
pub fn push(ctx: &Ctx, retry_failed: bool) -> Result<PushReport, MemoryError> {
    // The client first: a bad CA file or URL is reported even with nothing to push.
    let client = ctx.client()?;
    let mut st = ctx.staging()?;
    if retry_failed {
        st.retry_failed()?;
    }
    if st.count(State::Pending)? == 0 {
        return Ok(PushReport::default());
    }
    if let Err(e) = client.health(ctx.settings.offline_threshold.max(ctx.settings.timeout)) {
        return ctx.fail("push", e.into());
    }
    let mut r = push::push(&mut st, &client, &ctx.settings, &ctx.log);
    match r.stopped.take() {
        None => Ok(r),
        Some(e) => {
            // A damaged staging database: never a count it could not read, nor "run push again".
            let damaged = matches!(&e, MemoryError::Staging(s) if s.is_damage());
            let rest = match r.left_pending {
                _ if damaged => "nothing more was sent; push again after the repair".to_owned(),
                Some(n) => format!("{n} left pending (nothing lost; run push again)"),
                None => "the rows left pending could not be counted (memsync verify-db)".into(),
            };
            ctx.fail(
                "push",
                MemoryError::Stopped {
                    pushed: r.pushed(),
                    left: r.left_pending,
                    rest,
                    cause: Box::new(e),
                },
            )
        }
    }
}

pub fn push_summary(r: &PushReport) -> String {
    // Staged deletes only come from the upstream scripts' databases: named when there are any.
    let deleted = match r.deleted {
        0 => String::new(),
        n => format!(", deleted {n}"),
    };
    let mut s = format!(
        "pushed {} (stored {}, already on server {}, updated {}{deleted}), failed {}, conflicts {}",
        r.pushed(),
        r.stored,
        r.duplicates,
        r.updated,
        r.failed,
        r.conflicts
    );
    if r.hash_mismatches > 0 {
        s.push_str(&format!(
            "; {} hashes computed by the server differ from ours (its Unicode tables differ)",
            r.hash_mismatches
        ));
    }
    s
}

/// `pull`.
pub fn pull(ctx: &Ctx, opts: &PullOptions) -> Result<PullReport, MemoryError> {
    let run = || -> Result<PullReport, MemoryError> {
        // A new machine: with the server's replica at hand, the local database starts as a
        // restored copy of the server's (vectors included), then is pulled into as usual.
        let mut bootstrapped = false;
        if let (false, Some(url), false) = (
            ctx.settings.memory_db.exists(),
            &ctx.settings.replica,
            opts.dry_run,
        ) {
            pull::bootstrap_from_replica(url, &ctx.settings.memory_db)?;
            bootstrapped = true;
        }
        let mut local = if opts.dry_run {
            LocalDb::open_for_dry_run(&ctx.settings.memory_db)?
        } else {
            LocalDb::open(&ctx.settings.memory_db)?
        };
        // A dry run creates no staging file: it plans against an empty one.
        let mut st = if opts.dry_run {
            match Staging::open_read_only(&ctx.settings.staging_db)? {
                Some(st) => st,
                None => Staging::in_memory()?,
            }
        } else {
            ctx.staging()?
        };
        let client = ctx.client()?;
        let remote = match &ctx.settings.replica {
            Some(url) => {
                // A dry run restores the server's copy under the system's temp folder: it
                // writes nothing next to the user's files.
                let work = match ctx.settings.staging_db.parent() {
                    Some(d) if !opts.dry_run => d.to_path_buf(),
                    _ => std::env::temp_dir(),
                };
                pull::fetch_replica(url, &work)?
            }
            None => pull::fetch_rest(&client, &opts.tags)?,
        };
        let mut plan = pull::plan(&remote, &local, &st, opts)?;
        if remote.rest {
            pull::confirm_removals(&mut plan, |h| {
                Ok(match ContentHash::parse(h) {
                    Some(h) => client.get(&h)?.is_some(),
                    None => false,
                })
            })?;
        }
        let mut rep = pull::apply(&remote, plan, &mut local, &mut st, &ctx.settings, opts)?;
        rep.bootstrapped = bootstrapped;
        Ok(rep)
    };
    match run() {
        Ok(r) => {
            if !r.dry_run {
                ctx.log.line("pull", &pull_summary(&r));
            }
            Ok(r)
        }
        Err(e) => ctx.fail("pull", e),
    }
}

pub fn pull_summary(r: &PullReport) -> String {
    format!(
        "{}from {}: added {}, changed {}, removed {}, unchanged {}, local edits staged {}, staged rows already on server {}, conflicts {}{}",
        if r.dry_run {
            "dry run, nothing changed; "
        } else if r.bootstrapped {
            "local database created from the server's replica; "
        } else {
            ""
        },
        r.source,
        r.added,
        r.changed,
        r.removed,
        r.unchanged,
        r.staged_local,
        r.confirmed,
        r.conflicts,
        if r.open_conflicts > 0 {
            format!(" ({} open: memsync resolve-conflicts)", r.open_conflicts)
        } else {
            String::new()
        }
    )
}

/// Local memories that neither the server (as far as this machine knows) nor staging has seen:
/// what `sync` stages as new stores.
fn unseen_local(
    local: &LocalDb,
    st: &Staging,
) -> Result<Vec<super::localdb::LocalMemory>, MemoryError> {
    let pulled = st.pulled()?;
    let mut out = Vec::new();
    for m in local.all()? {
        if m.deleted_at.is_some() || pulled.contains_key(&m.hash) || st.knows(&m.hash)? {
            continue;
        }
        out.push(m);
    }
    Ok(out)
}

/// `sync`'s staging step: local memories the server never had and staging does not know. It
/// runs after the pull, which has learnt what the server holds and deleted: a memory the
/// server deleted is then removed here, never stored again as new.
pub fn stage_local(ctx: &Ctx) -> Result<usize, MemoryError> {
    let local = LocalDb::open_read_only(&ctx.settings.memory_db)?;
    let mut st = ctx.staging()?;
    let host = hostname();
    let new = unseen_local(&local, &st)?;
    for m in &new {
        st.stage(&m.content, &m.fields, &host)?;
    }
    Ok(new.len())
}

/// `sync` = pull → stage → push; stops at the first failing step. With `dry_run` it only says
/// what each step would do: nothing is written anywhere, and the sync log gets one line.
pub fn sync(ctx: &Ctx, opts: &PullOptions) -> Result<String, MemoryError> {
    if opts.dry_run {
        return sync_dry_run(ctx, opts);
    }
    let t0 = Instant::now();
    let have_local = ctx.settings.memory_db.is_file();
    let mut out = Vec::new();
    let mut staged = 0;
    let mut pulled = PullReport::default();
    if have_local {
        pulled = pull(ctx, opts)?;
        out.push(pull_summary(&pulled));
        staged = stage_local(ctx).or_else(|e| ctx.fail("sync", e))?;
        out.push(format!("staged {staged} local memories"));
    } else {
        out.push(format!(
            "no local memory database at {}: pull skipped",
            ctx.settings.memory_db.display()
        ));
    }
    let pushed = push(ctx, false)?;
    out.push(push_summary(&pushed));
    ctx.log.line(
        "sync",
        &format!(
            "sync completed staged={staged} added={} changed={} removed={} conflicts={} pushed={} failed={} duration={:.2}s",
            pulled.added,
            pulled.changed,
            pulled.removed,
            pulled.conflicts + pushed.conflicts,
            pushed.pushed(),
            pushed.failed,
            t0.elapsed().as_secs_f64()
        ),
    );
    Ok(out.join("\n"))
}

/// `sync --dry-run`: the pull's plan, the local memories that would be staged and the rows
/// that would be pushed. Opens every database read-only and creates none.
fn sync_dry_run(ctx: &Ctx, opts: &PullOptions) -> Result<String, MemoryError> {
    let mut out = Vec::new();
    let st = match Staging::open_read_only(&ctx.settings.staging_db)? {
        Some(st) => st,
        None => Staging::in_memory()?,
    };
    let mut would_stage = 0;
    if ctx.settings.memory_db.is_file() {
        let rep = pull(ctx, opts)?;
        out.extend(rep.details.iter().cloned());
        out.push(pull_summary(&rep));
        let local = LocalDb::open_read_only(&ctx.settings.memory_db)?;
        for m in unseen_local(&local, &st)? {
            if rep.server_live.contains(&m.hash) || rep.removals.contains(&m.hash) {
                continue;
            }
            out.push(format!("stage    {}", m.hash.get(..12).unwrap_or(&m.hash)));
            would_stage += 1;
        }
    } else {
        out.push(format!(
            "no local memory database at {}: pull skipped",
            ctx.settings.memory_db.display()
        ));
    }
    let pending = st.count(State::Pending)?;
    let would_push = pending as usize + would_stage;
    out.push(format!(
        "dry run, nothing changed: would stage {would_stage} local memories and push {would_push} ({pending} pending now)"
    ));
    ctx.log.line(
        "sync",
        &format!("dry run: would stage {would_stage}, push {would_push}"),
    );
    Ok(out.join("\n"))
}

pub use super::status::status;
