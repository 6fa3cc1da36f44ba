//! The sync commands: `store`, `push`, `pull`, `sync`, `status`.

use std::path::Path;
use std::time::Instant;

use serde_json::{Map, Value};

use super::MemoryError;
use super::client::{RemoteClient, RemoteError, StoreOutcome, StoreRequest, hostname};
use super::conflict;
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
            ctx.log
                .line("store", &format!("already on server {}", hash.short()));
            Ok(format!("already on the server: {hash}"))
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
        Some(e) => ctx.fail(
            "push",
            MemoryError::Incomplete(format!(
                "push stopped after {} of the staged memories: {e}; {} left pending (nothing lost; run push again)",
                r.pushed(),
                r.left_pending
            )),
        ),
    }
}

pub fn push_summary(r: &PushReport) -> String {
    let mut s = format!(
        "pushed {} (stored {}, already on server {}, updated {}), failed {}, conflicts {}",
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
        let mut local = LocalDb::open(&ctx.settings.memory_db)?;
        let mut st = ctx.staging()?;
        let remote = match &ctx.settings.replica {
            Some(url) => {
                let work = ctx
                    .settings
                    .staging_db
                    .parent()
                    .map_or_else(std::env::temp_dir, Path::to_path_buf);
                pull::fetch_replica(url, &work)?
            }
            None => pull::fetch_rest(&ctx.client()?, &opts.tags)?,
        };
        let plan = pull::plan(&remote, &local, &st, opts)?;
        pull::apply(&remote, plan, &mut local, &mut st, &ctx.settings, opts)
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

/// `sync`'s first step: local memories that the server never had and staging does not know.
pub fn stage_local(ctx: &Ctx) -> Result<usize, MemoryError> {
    let local = LocalDb::open_read_only(&ctx.settings.memory_db)?;
    let mut st = ctx.staging()?;
    let pulled = st.pulled()?;
    let host = hostname();
    let mut n = 0;
    for m in local.all()? {
        if m.deleted_at.is_some() || pulled.contains(&m.hash) || st.knows(&m.hash)? {
            continue;
        }
        st.stage(&m.content, &m.fields, &host)?;
        n += 1;
    }
    Ok(n)
}

/// `sync` = stage → pull → apply → push; stops at the first failing step.
pub fn sync(ctx: &Ctx, opts: &PullOptions) -> Result<String, MemoryError> {
    let t0 = Instant::now();
    let have_local = ctx.settings.memory_db.is_file();
    let mut out = Vec::new();
    let mut staged = 0;
    let mut pulled = PullReport::default();
    if have_local {
        staged = stage_local(ctx).or_else(|e| ctx.fail("sync", e))?;
        out.push(format!("staged {staged} local memories"));
        pulled = pull(ctx, opts)?;
        out.push(pull_summary(&pulled));
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

/// `status`.
pub fn status(ctx: &Ctx) -> Result<String, MemoryError> {
    let s = &ctx.settings;
    let mut out = Vec::new();
    let remote = match ctx.client() {
        Ok(c) => match c.health(s.offline_threshold) {
            Ok(()) => {
                let v = c
                    .version(s.offline_threshold)
                    .unwrap_or_else(|e| format!("version unknown: {e}"));
                format!("reachable, mcp-memory-service {v}")
            }
            Err(e) => format!("NOT reachable: {e}"),
        },
        Err(e) => format!("NOT usable: {e}"),
    };
    out.push(format!("remote       {}  {remote}", s.base_url()));
    match Staging::open_existing(&s.staging_db)? {
        None => out.push(format!(
            "staging      {} (not created yet: memsync init)",
            s.staging_db.display()
        )),
        Some(st) => {
            out.push(format!("staging      {}", s.staging_db.display()));
            let count = |state| st.count(state).unwrap_or(0);
            out.push(format!("  pending    {}", count(State::Pending)));
            out.push(format!(
                "  failed     {}{}",
                count(State::Failed),
                if count(State::Failed) > 0 {
                    "  (see memsync export; retry: memsync push --retry-failed)"
                } else {
                    ""
                }
            ));
            out.push(format!("  conflicts  {} open", st.conflicts(true)?.len()));
            out.push(format!("  pushed     {}", count(State::Pushed)));
            let get = |k| {
                st.state_get(k)
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| "never".into())
            };
            out.push(format!("last pull    {}", get("last_pull")));
            out.push(format!("last push    {}", get("last_push")));
        }
    }
    match std::fs::metadata(&s.memory_db) {
        Ok(m) => out.push(format!(
            "local db     {}  {:.1} MB",
            s.memory_db.display(),
            m.len() as f64 / 1e6
        )),
        Err(_) => out.push(format!(
            "local db     {} (not found)",
            s.memory_db.display()
        )),
    }
    out.push(format!("policy       {}", s.conflict.as_str()));
    if let Some(r) = &s.replica {
        out.push(format!("replica      {r}"));
    }
    Ok(out.join("\n"))
}
