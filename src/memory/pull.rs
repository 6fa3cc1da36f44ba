//! `pull`: brings the server's memories into the local mcp-memory-service database.
//!
//! The server's state comes from one of two sources:
//! - a **replica** of the server's database (`memsync replicate` running on the server): it is
//!   restored to a temporary file and read with its embeddings, so pulled memories are found by
//!   the local service's semantic search at once, and deletions are seen as tombstones;
//! - the **REST API** (no replica configured): memories without embeddings, written with the
//!   service's own `embedding_pending` flag.
//!
//! Both become a list of [`RemoteRecord`]s, compared with the local database and the staging
//! database into a [`Plan`] (`--dry-run` prints it), which is applied in short transactions.
//! Staged rows are never dropped: a staged change that meets a different remote version is a
//! conflict, settled by the configured policy with the losing side kept in the conflict record.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::MemoryError;
use super::client::RemoteClient;
use super::conflict;
use super::hash::ContentHash;
use super::localdb::{LocalDb, LocalMemory, NewMemory};
use super::settings::{ConflictPolicy, Settings};
use super::settle::{self, Kind, LocalView};
use super::staging::{Fields, Staged, Staging};

/// One memory as the server holds it.
#[derive(Debug, Clone)]
pub struct RemoteRecord {
    pub hash: String,
    pub content: String,
    pub fields: Fields,
    pub created_at: f64,
    pub updated_at: f64,
    /// Set for a tombstone (only a replica shows them).
    pub deleted_at: Option<f64>,
    pub embedding: Option<Vec<u8>>,
}

/// The server's memories as read from one source.
pub struct RemoteState {
    pub records: Vec<RemoteRecord>,
    /// Where they came from, for messages.
    pub source: String,
}

/// Options of one pull.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    pub dry_run: bool,
    pub force: bool,
    /// Only memories carrying any of these tags (normalised as the server does).
    pub tags: Vec<String>,
}

/// What a pull will do (or did).
#[derive(Debug, Default)]
pub struct Plan {
    pub add: Vec<usize>,
    pub change: Vec<usize>,
    pub remove: Vec<String>,
    /// Local edits newer than the server's version: staged as updates, not overwritten.
    pub stage_local: Vec<LocalMemory>,
    /// Staged rows the server turned out to hold already, identically.
    pub confirmed: Vec<i64>,
    pub conflicts: Vec<(Staged, Kind, Option<usize>)>,
    pub unchanged: usize,
}

/// The outcome of a pull.
#[derive(Debug, Default)]
pub struct PullReport {
    pub source: String,
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    pub staged_local: usize,
    pub confirmed: usize,
    pub conflicts: usize,
    pub open_conflicts: usize,
    pub unchanged: usize,
    pub dry_run: bool,
    /// `--dry-run`: one line per planned change.
    pub details: Vec<String>,
}

/// Reads every live memory (or those with any of `tags`) through the REST API.
pub fn fetch_rest(client: &RemoteClient, tags: &[String]) -> Result<RemoteState, MemoryError> {
    let tag_arg = (!tags.is_empty()).then(|| tags.join(","));
    let mut seen: HashMap<String, RemoteRecord> = HashMap::new();
    let mut page = 1;
    loop {
        let p = client.list(page, 100, tag_arg.as_deref())?;
        for m in p.memories {
            let created = m.created_at.unwrap_or(0.0);
            seen.entry(m.content_hash.clone()).or_insert(RemoteRecord {
                hash: m.content_hash,
                content: m.content,
                fields: Fields {
                    tags: m.tags,
                    memory_type: m.memory_type,
                    metadata: m.metadata,
                },
                created_at: created,
                updated_at: m.updated_at.unwrap_or(created),
                deleted_at: None,
                embedding: None,
            });
        }
        if !p.has_more {
            break;
        }
        page += 1;
    }
    let mut records: Vec<RemoteRecord> = seen.into_values().collect();
    records.sort_by(|a, b| a.created_at.total_cmp(&b.created_at));
    Ok(RemoteState {
        records,
        source: format!("{} (REST API)", client.base_url()),
    })
}

/// Restores the server's replica into `work_dir` and reads its memories with their embeddings.
pub fn fetch_replica(url: &str, work_dir: &Path) -> Result<RemoteState, MemoryError> {
    let rc = crate::config::replica_from_url(url)
        .map_err(|e| MemoryError::Replica(format!("{url}: {e}")))?;
    let client = crate::replica::client_for(&rc, false)
        .map_err(|e| MemoryError::Replica(format!("{url}: {e}")))?;
    std::fs::create_dir_all(work_dir)
        .map_err(|e| MemoryError::Io(format!("{}: {e}", work_dir.display())))?;
    let tmp = tempfile_in(work_dir)?;
    let out = tmp.path().join("remote.db");
    let rt = crate::runtime().map_err(|e| MemoryError::Io(e.to_string()))?;
    let opts = crate::restore::RestoreOptions {
        output: out.clone(),
        target: replica_formats::Target::Latest,
        if_db_not_exists: false,
        if_replica_exists: false,
        integrity_check: crate::restore::IntegrityCheck::Quick,
        fallback: false,
        progress: false,
    };
    match crate::restore::restore(&client, rt.handle(), &opts) {
        Ok(crate::restore::RestoreOutcome::Restored { .. }) => {}
        Ok(_) => {
            return Err(MemoryError::Replica(format!(
                "{url}: the replica holds no backup"
            )));
        }
        Err(e) => return Err(MemoryError::Replica(format!("{url}: {e}"))),
    }
    let db = LocalDb::open_read_only(&out)?;
    let mut records = Vec::new();
    for m in db.all()? {
        let embedding = if m.deleted_at.is_none() {
            db.embedding(m.id)?
        } else {
            None
        };
        records.push(RemoteRecord {
            hash: m.hash,
            content: m.content,
            fields: m.fields,
            created_at: m.created_at,
            updated_at: m.updated_at,
            deleted_at: m.deleted_at,
            embedding,
        });
    }
    Ok(RemoteState {
        records,
        source: format!("{url} (replica)"),
    })
}

fn tempfile_in(dir: &Path) -> Result<TempDir, MemoryError> {
    let p = dir.join(format!(
        "pull-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir(&p).map_err(|e| MemoryError::Io(format!("{}: {e}", p.display())))?;
    Ok(TempDir(p))
}

/// A scratch folder removed on drop (the restored copy of the server's database).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
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
    let pulled = staging.pulled()?;
    let mut plan = Plan::default();
    let mut live_remote: HashSet<&str> = HashSet::new();
    let mut tombstones: HashMap<&str, f64> = HashMap::new();
    for (i, r) in remote.records.iter().enumerate() {
        if !selected(&r.fields) {
            continue;
        }
        if let Some(at) = r.deleted_at {
            tombstones.insert(&r.hash, at);
            continue;
        }
        live_remote.insert(&r.hash);
        let staged = match ContentHash::parse(&r.hash) {
            Some(h) => staging.open_for(&h)?,
            None => None,
        };
        let l = local.get(&r.hash)?;
        if let Some(s) = staged {
            if s.state == super::staging::State::Conflict {
                // Already waiting for `resolve-conflicts`: not recorded again.
                plan.unchanged += 1;
                continue;
            }
            if conflict::differs(&s.fields, &r.fields) {
                plan.conflicts.push((s, Kind::Diverged, Some(i)));
                continue;
            }
            plan.confirmed.push(s.id);
        }
        match l {
            None => plan.add.push(i),
            Some(l) if l.deleted_at.is_some() => {
                // The later of the local delete and the server's last change wins.
                if r.updated_at > l.deleted_at.unwrap_or(0.0) {
                    plan.add.push(i);
                } else {
                    plan.unchanged += 1;
                }
            }
            // A row pulled without its vector (REST) gets it once a replica provides one.
            Some(l) if l.embedding_pending && r.embedding.is_some() => plan.change.push(i),
            Some(l) if conflict::differs(&l.fields, &r.fields) => {
                if !opts.force && l.updated_at > r.updated_at + 0.001 {
                    plan.stage_local.push(l);
                } else {
                    plan.change.push(i);
                }
            }
            Some(_) => plan.unchanged += 1,
        }
    }
    // Local memories the server no longer has. Only those seen on the server before (or with a
    // tombstone there) were deleted remotely; the others were created locally.
    for l in local.all()? {
        if l.deleted_at.is_some() || live_remote.contains(l.hash.as_str()) || !selected(&l.fields) {
            continue;
        }
        let deleted_there = match tombstones.get(l.hash.as_str()) {
            Some(&at) => pulled.contains(&l.hash) || l.updated_at <= at,
            None => pulled.contains(&l.hash),
        };
        if !deleted_there {
            continue;
        }
        let staged = match ContentHash::parse(&l.hash) {
            Some(h) => staging.open_for(&h)?,
            None => None,
        };
        match staged {
            Some(s) => plan.conflicts.push((s, Kind::DeletedRemotely, None)),
            None => plan.remove.push(l.hash),
        }
    }
    Ok(plan)
}

fn preview(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut p: String = one.chars().take(60).collect();
    if one.chars().count() > 60 {
        p.push('…');
    }
    p
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
    let mut rep = PullReport {
        source: remote.source.clone(),
        added: plan.add.len(),
        changed: plan.change.len(),
        removed: plan.remove.len(),
        staged_local: plan.stage_local.len(),
        confirmed: plan.confirmed.len(),
        conflicts: plan.conflicts.len(),
        unchanged: plan.unchanged,
        dry_run: opts.dry_run,
        ..PullReport::default()
    };
    if opts.dry_run {
        let r = &remote.records;
        rep.details.extend(
            plan.add
                .iter()
                .map(|&i| format!("add     {}  {}", &r[i].hash[..12], preview(&r[i].content))),
        );
        rep.details.extend(
            plan.change
                .iter()
                .map(|&i| format!("change  {}  {}", &r[i].hash[..12], preview(&r[i].content))),
        );
        rep.details.extend(
            plan.remove
                .iter()
                .map(|h| format!("remove  {}", &h[..h.len().min(12)])),
        );
        rep.details.extend(plan.stage_local.iter().map(|l| {
            format!(
                "stage   {}  (changed locally)  {}",
                &l.hash[..l.hash.len().min(12)],
                preview(&l.content)
            )
        }));
        rep.details.extend(plan.conflicts.iter().map(|(s, k, _)| {
            format!(
                "conflict {} ({})  {}",
                s.hash.short(),
                k.as_str(),
                preview(&s.content)
            )
        }));
        return Ok(rep);
    }
    let policy = if opts.force {
        ConflictPolicy::Remote
    } else {
        settings.conflict
    };
    // Conflicts first: their outcome decides what the local rows show.
    let mut overrides: HashMap<String, LocalView> = HashMap::new();
    for (s, kind, idx) in &plan.conflicts {
        let remote_fields = idx.map(|i| &remote.records[i].fields);
        let view = settle::settle(staging, s, *kind, remote_fields, policy)?;
        if policy == ConflictPolicy::Manual {
            rep.open_conflicts += 1;
        }
        overrides.insert(s.hash.as_str().to_owned(), view);
    }
    for id in &plan.confirmed {
        staging.mark_pushed(*id, "already on server")?;
    }
    for l in &plan.stage_local {
        let (id, _) = staging.stage(&l.content, &l.fields, &super::client::hostname())?;
        if let Some(s) = staging.get(id)? {
            staging.rewrite(
                id,
                super::staging::Operation::Update,
                &s.fields,
                super::staging::State::Pending,
                false,
            )?;
        }
    }
    // Writes in batches: each one atomic for the local service's readers, none long.
    let now = super::staging::now();
    let mut writes: Vec<Write<'_>> = Vec::new();
    for &i in plan.add.iter().chain(&plan.change) {
        writes.push(Write::Upsert(&remote.records[i]));
    }
    for (s, kind, idx) in &plan.conflicts {
        match (overrides.get(s.hash.as_str()), idx) {
            (Some(LocalView::Live(f)), Some(i)) => {
                writes.push(Write::UpsertWith(&remote.records[*i], f.clone()))
            }
            (Some(LocalView::Deleted), _) if *kind == Kind::DeletedRemotely => {
                writes.push(Write::Delete(s.hash.as_str().to_owned()))
            }
            _ => {}
        }
    }
    for h in &plan.remove {
        writes.push(Write::Delete(h.clone()));
    }
    for chunk in writes.chunks(settings.batch_size.max(1)) {
        local.write(|w| {
            for op in chunk {
                match op {
                    Write::Upsert(r) => w.upsert(&new_memory(r, &r.fields))?,
                    Write::UpsertWith(r, f) => w.upsert(&new_memory(r, f))?,
                    Write::Delete(h) => w.soft_delete(h, now)?,
                }
            }
            Ok(())
        })?;
    }
    let live: Vec<&str> = remote
        .records
        .iter()
        .filter(|r| r.deleted_at.is_none())
        .map(|r| r.hash.as_str())
        .collect();
    staging.set_pulled(live.into_iter(), &plan.remove, opts.tags.is_empty())?;
    staging.state_set("last_pull", &super::localdb::iso(now))?;
    Ok(rep)
}

enum Write<'a> {
    Upsert(&'a RemoteRecord),
    UpsertWith(&'a RemoteRecord, Fields),
    Delete(String),
}

fn new_memory<'a>(r: &'a RemoteRecord, f: &'a Fields) -> NewMemory<'a> {
    NewMemory {
        hash: &r.hash,
        content: &r.content,
        fields: f,
        created_at: r.created_at,
        updated_at: r.updated_at,
        embedding: r.embedding.as_deref(),
    }
}
