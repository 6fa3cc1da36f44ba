//! The maintenance commands: `init`, `reset`, `repair`, `export`, `verify-db`, `optimize`,
//! `archive`, `metrics`, `resolve-conflicts`. Anything that removes data writes a copy first.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::MemoryError;
use super::clock::iso;
use super::clock::now;
use super::ctx::Ctx;
use super::localdb::LocalDb;
use super::staging::Staging;
use super::synclog;

mod copies;
mod repair;
mod reset;
mod resolve;

pub use repair::repair;
pub use reset::reset;
pub use resolve::resolve_conflicts;

fn io_err(path: &Path, e: std::io::Error) -> MemoryError {
    MemoryError::file(path, e)
}

fn write_json(path: &Path, v: &Value) -> Result<(), MemoryError> {
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).map_err(|e| io_err(d, e))?;
    }
    let text = serde_json::to_vec_pretty(v)?;
    crate::fsutil::write_atomic(path, &text).map_err(|e| io_err(path, e))
}

/// `init`: creates (or migrates) the staging database; `write_config` also writes the effective
/// settings (without the API key) where memsync reads its settings file, unless one is there.
pub fn init(ctx: &Ctx, write_config: bool) -> Result<String, MemoryError> {
    let st = ctx.staging()?;
    let mut out = vec![format!("staging database ready: {}", st.path().display())];
    if write_config {
        let p = ctx.settings.config_path.as_deref().ok_or_else(|| {
            MemoryError::Invalid(
                "no place for the settings file: HOME is unset; give --sync-config or SYNC_CONFIG_PATH".into(),
            )
        })?;
        if let Some(d) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).map_err(|e| io_err(d, e))?;
        }
        let text = serde_json::to_vec_pretty(&copies::settings_json(ctx))?;
        match crate::fsutil::write_new_at(p, &text) {
            Ok(()) => out.push(format!(
                "wrote {}, the settings file memsync reads (the API key is not written: keep it in REMOTE_MEMORY_API_KEY)",
                p.display()
            )),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                out.push(format!("{} exists; left as it is", p.display()))
            }
            Err(e) => return Err(io_err(p, e)),
        }
    }
    ctx.log.line("init", &out.join("; "));
    Ok(out.join("\n"))
}

/// `export`: settings (without the key), staged rows and conflicts as JSON.
pub fn export(ctx: &Ctx, out: Option<&Path>) -> Result<String, MemoryError> {
    let st = ctx.staging()?;
    let v = copies::export_value(ctx, &st)?;
    match out {
        Some(p) => {
            write_json(p, &v)?;
            Ok(format!("exported to {}", p.display()))
        }
        None => Ok(serde_json::to_string_pretty(&v).unwrap_or_default()),
    }
}

/// `verify-db`: the local memory database and the staging database, checked in full.
pub fn verify_db(ctx: &Ctx) -> Result<String, MemoryError> {
    let mut out = Vec::new();
    let mut bad = false;
    match LocalDb::open_read_only(&ctx.settings.memory_db) {
        Ok(db) => {
            let p = db.check(false)?;
            bad |= p.iter().any(|x| !x.contains("no embedding"));
            out.push(format!(
                "local db   {}: {}",
                db.path().display(),
                crate::errtext::problems(&p)
            ));
        }
        Err(super::localdb::LocalDbError::NotFound(p)) => {
            out.push(format!("local db   {}: not found", p.display()))
        }
        Err(e) => {
            bad = true;
            out.push(format!("local db   {e}"));
        }
    }
    match Staging::open_existing(&ctx.settings.staging_db) {
        Ok(Some(st)) => {
            let p = st.upkeep().check().unwrap_or_else(|e| vec![e.to_string()]);
            bad |= !p.is_empty();
            out.push(format!(
                "staging db {}: {}",
                st.path().display(),
                if p.is_empty() {
                    "ok".into()
                } else {
                    format!("{} (memsync repair)", crate::errtext::problems(&p))
                }
            ));
        }
        Ok(None) => out.push(format!(
            "staging db {}: not created yet",
            ctx.settings.staging_db.display()
        )),
        Err(e) => {
            bad = true;
            out.push(format!("staging db {e}"));
        }
    }
    if bad {
        Err(MemoryError::Damaged(out.join("; ")))
    } else {
        Ok(out.join("\n"))
    }
}

/// `optimize`: prunes confirmed staging rows older than 30 days, then lets SQLite tidy up both
/// databases (no VACUUM of the service's database: it may be in use).
pub fn optimize(ctx: &Ctx) -> Result<String, MemoryError> {
    let mut out = Vec::new();
    if let Some(st) = Staging::open_existing(&ctx.settings.staging_db)? {
        let mut copy = None;
        let pruned = st.upkeep().prune_done(30.0 * 86400.0, |rows| {
            let want = copies::copy_name(ctx, "staging-pruned");
            copy = Some(copies::write_copy(&want, &copies::pruned_value(rows))?);
            Ok::<_, MemoryError>(())
        })?;
        st.upkeep().optimize()?;
        out.push(match copy {
            Some(p) => format!(
                "staging: {pruned} confirmed rows older than 30 days pruned, vacuumed; a copy is in {}",
                p.display()
            ),
            None => "staging: no confirmed rows older than 30 days, vacuumed".into(),
        });
    }
    if ctx.settings.memory_db.is_file() {
        LocalDb::open(&ctx.settings.memory_db)?.optimize()?;
        out.push("local db: optimized, WAL checkpointed".into());
    }
    ctx.log.line("optimize", &out.join("; "));
    Ok(if out.is_empty() {
        "nothing to optimize".into()
    } else {
        out.join("\n")
    })
}

/// `archive --older-than`: local memories created before the cutoff go to a JSON archive
/// (written, fsynced and read back first), then leave the local database as tombstones.
pub fn archive(
    ctx: &Ctx,
    older_than: Duration,
    out: Option<&Path>,
    dry_run: bool,
) -> Result<String, MemoryError> {
    let mut db = LocalDb::open(&ctx.settings.memory_db)?;
    let cutoff = now() - older_than.as_secs_f64();
    // Only memories the server holds as they are here leave the local database: a local-only
    // memory would then exist nowhere but in the archive file, and one edited here since the
    // last sync (its fields differ from the common base, or a staged row waits) would take
    // the edit with it, leaving the server's older version as the only live one.
    let staging = Staging::open_existing(&ctx.settings.staging_db)?;
    let on_server = staging
        .as_ref()
        .map(|s| s.book().pulled())
        .transpose()?
        .unwrap_or_default();
    let mut old = Vec::new();
    let (mut local_only, mut unsynced) = (0usize, 0usize);
    for m in db.all()? {
        if m.deleted_at.is_some() || m.created_at >= cutoff {
            continue;
        }
        match on_server.get(&m.hash) {
            None => local_only += 1,
            Some(base) => {
                let waiting = match &staging {
                    Some(s) => s.knows_open(&m.hash)?,
                    None => false,
                };
                let as_here = base
                    .as_ref()
                    .is_some_and(|b| !super::conflict::differs(b, &m.fields));
                if waiting || !as_here {
                    unsynced += 1;
                } else {
                    old.push(m);
                }
            }
        }
    }
    let mut note = String::new();
    if local_only > 0 {
        note.push_str(&format!(
            "; {local_only} older memories exist only locally and were kept (memsync sync sends them to the server)"
        ));
    }
    if unsynced > 0 {
        note.push_str(&format!(
            "; {unsynced} older memories have changes the server does not have yet and were kept (run memsync sync, then archive again)"
        ));
    }
    if old.is_empty() {
        return Ok(format!(
            "no memory older than {} that the server holds as it is here{note}",
            humantime::format_duration(older_than)
        ));
    }
    if dry_run {
        return Ok(format!(
            "would archive {} memories created before {}{}",
            old.len(),
            iso(cutoff),
            note.replace("were kept", "would be kept")
        ));
    }
    let mut memories = Vec::with_capacity(old.len());
    for m in &old {
        let emb = db.embedding(m.id)?.map(|b| {
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect::<Vec<f32>>()
        });
        memories.push(json!({
            "content": m.content, "content_hash": m.hash, "tags": m.fields.tags,
            "memory_type": m.fields.memory_type, "metadata": m.fields.metadata,
            "created_at": m.created_at, "updated_at": m.updated_at, "embedding": emb,
        }));
    }
    let path = match out {
        Some(p) => p.to_path_buf(),
        None => ctx
            .settings
            .staging_db
            .parent()
            .unwrap_or(Path::new("."))
            .join("archive")
            .join(format!("archive-{}.json", crate::fsutil::unique_stamp())),
    };
    let doc = json!({
        "export_metadata": {
            "source_machine": super::host::hostname(), "export_timestamp": iso(now()),
            "total_memories": memories.len(), "database_path": ctx.settings.memory_db,
            "include_embeddings": true, "exporter": concat!("memsync ", env!("CARGO_PKG_VERSION")),
            "archived_before": iso(cutoff),
        },
        "memories": memories,
    });
    // Written as a new file (never over an earlier archive) and read back before anything
    // leaves the database.
    let path = copies::write_copy(&path, &doc)?;
    let t = now();
    for chunk in old.chunks(ctx.settings.batch_size) {
        db.write(|w| {
            for m in chunk {
                w.soft_delete(&m.hash, t)?;
            }
            Ok(())
        })?;
    }
    let msg = format!(
        "archived {} memories created before {} to {}{note}",
        old.len(),
        iso(cutoff),
        path.display()
    );
    ctx.log.line("archive", &msg);
    Ok(msg)
}

/// `metrics`: counts and timings read back from the sync log.
pub fn metrics(ctx: &Ctx) -> Result<String, MemoryError> {
    let path = ctx.log.path();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io_err(path, e)),
    };
    let m = synclog::metrics(&text);
    let mut d = m.durations.clone();
    d.sort_by(f64::total_cmp);
    let avg = if d.is_empty() {
        0.0
    } else {
        d.iter().sum::<f64>() / d.len() as f64
    };
    Ok([
        format!("sync log        {} ({} lines)", path.display(), m.lines),
        format!(
            "syncs           {} (last {})",
            m.syncs,
            m.last_sync.as_deref().unwrap_or("never")
        ),
        format!(
            "sync duration   avg {avg:.2}s, max {:.2}s",
            d.last().copied().unwrap_or(0.0)
        ),
        format!(
            "pushes          {} on their own (last {})",
            m.pushes,
            m.last_push.as_deref().unwrap_or("never")
        ),
        format!(
            "pulls           {} on their own (last {})",
            m.pulls,
            m.last_pull.as_deref().unwrap_or("never")
        ),
        format!(
            "pulled in       {} memories added, {} changed, {} removed",
            m.added, m.changed, m.removed
        ),
        format!("pushed          {} memories, {} failed", m.pushed, m.failed),
        format!("conflicts       {}", m.conflicts),
        format!("stores          {} ({} staged offline)", m.stores, m.staged),
        format!("errors          {}", m.errors),
    ]
    .join("\n"))
}
