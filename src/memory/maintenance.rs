//! The maintenance commands: `init`, `reset`, `repair`, `export`, `verify-db`, `optimize`,
//! `archive`, `metrics`, `resolve-conflicts`. Anything that removes data writes a copy first.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::MemoryError;
use super::commands::Ctx;
use super::hash::ContentHash;
use super::localdb::{LocalDb, iso};
use super::settings::ConflictPolicy;
use super::settle::{self, Kind};
use super::staging::{Staged, Staging, State, now};
use super::synclog;

fn io_err(path: &Path, e: std::io::Error) -> MemoryError {
    MemoryError::Io(format!("{}: {e}", path.display()))
}

fn write_json(path: &Path, v: &Value) -> Result<(), MemoryError> {
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).map_err(|e| io_err(d, e))?;
    }
    let text = serde_json::to_vec_pretty(v).map_err(|e| MemoryError::Io(e.to_string()))?;
    crate::fsutil::write_atomic(path, &text).map_err(|e| io_err(path, e))
}

pub(super) fn staged_json(s: &Staged) -> Value {
    json!({
        "id": s.id, "content": s.content, "content_hash": s.hash.as_str(),
        "tags": s.fields.tags, "memory_type": s.fields.memory_type, "metadata": s.fields.metadata,
        "operation": s.op.as_str(),
        "state": s.state.as_str(), "outcome": s.outcome, "attempts": s.attempts,
        "last_error": s.last_error, "restore_deleted": s.restore_deleted,
        "source_machine": s.source_machine, "staged_at": iso(s.staged_at),
    })
}

fn settings_json(ctx: &Ctx) -> Value {
    let s = &ctx.settings;
    json!({
        "remote": {
            "host": s.host, "port": s.port, "protocol": s.protocol,
            "api_key": s.api_key.as_ref().map(|_| "(set, not exported)"),
            "timeout": s.timeout.as_secs_f64(), "retry_attempts": s.retry_attempts,
            "offline_threshold": s.offline_threshold.as_secs_f64(),
            "ca_file": s.ca_file, "insecure": s.insecure, "replica": s.replica,
        },
        "local": {
            "staging_db": s.staging_db, "log_file": s.log_file, "batch_size": s.batch_size,
            "memory_db": s.memory_db,
        },
        "conflict_resolution": s.conflict.as_str(),
        "auto_sync_interval": s.interval.as_secs(),
    })
}

/// Everything staged, with the conflicts and the (key-less) settings.
fn export_value(ctx: &Ctx, st: &Staging) -> Result<Value, MemoryError> {
    let staged: Vec<Value> = st.all()?.iter().map(staged_json).collect();
    let conflicts: Vec<Value> = st
        .conflicts(false)?
        .iter()
        .map(|c| {
            json!({
                "id": c.id, "staged_id": c.staged_id, "content_hash": c.hash, "kind": c.kind,
                "local": serde_json::from_str::<Value>(&c.local.to_json()).unwrap_or(Value::Null),
                "remote": c.remote.as_ref().map(|r| serde_json::from_str::<Value>(&r.to_json()).unwrap_or(Value::Null)),
                "detected_at": iso(c.detected_at), "resolution": c.resolution,
            })
        })
        .collect();
    Ok(json!({
        "exported_at": iso(now()),
        "memsync_version": env!("CARGO_PKG_VERSION"),
        "staging_schema_version": super::staging::SCHEMA_VERSION,
        "config": settings_json(ctx),
        "staged": staged,
        "conflicts": conflicts,
    }))
}

/// `init`: creates (or migrates) the staging database; `write_config` also writes the effective
/// settings to `sync_config.json` next to it, unless one exists.
pub fn init(ctx: &Ctx, write_config: bool) -> Result<String, MemoryError> {
    let st = ctx.staging()?;
    let mut out = vec![format!("staging database ready: {}", st.path().display())];
    if write_config {
        let dir = st.path().parent().unwrap_or(Path::new("."));
        let p = dir.join("sync_config.json");
        if p.exists() {
            out.push(format!("{} exists; left as it is", p.display()));
        } else {
            let mut v = settings_json(ctx);
            v["remote"].as_object_mut().map(|m| m.remove("api_key"));
            write_json(&p, &v)?;
            out.push(format!("wrote {}", p.display()));
        }
    }
    ctx.log.line("init", &out.join("; "));
    Ok(out.join("\n"))
}

fn confirm(question: &str) -> bool {
    eprint!("{question} [type yes] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).is_ok() && line.trim().eq_ignore_ascii_case("yes")
}

/// `reset`: drops staged rows and bookkeeping, after a JSON copy and a confirmation.
pub fn reset(ctx: &Ctx, yes: bool) -> Result<String, MemoryError> {
    let Some(mut st) = Staging::open_existing(&ctx.settings.staging_db)? else {
        return Ok("nothing to reset: no staging database".into());
    };
    let waiting = st
        .all()?
        .iter()
        .filter(|s| {
            matches!(
                s.state,
                super::staging::State::Pending
                    | super::staging::State::Failed
                    | super::staging::State::Conflict
            )
        })
        .count();
    if waiting > 0 && !yes {
        if !std::io::stdin().is_terminal() {
            return Err(MemoryError::Incomplete(format!(
                "reset would drop {waiting} staged memories not yet on the server; rerun with --yes (a JSON copy is written first)"
            )));
        }
        if !confirm(&format!(
            "Drop {waiting} staged memories not yet on the server (a JSON copy is kept)?"
        )) {
            return Ok("reset cancelled; nothing changed".into());
        }
    }
    let dir = st.path().parent().unwrap_or(Path::new(".")).to_path_buf();
    let backup = dir.join(format!("staging-backup-{}.json", now() as u64));
    write_json(&backup, &export_value(ctx, &st)?)?;
    st.clear()?;
    let msg = format!(
        "staging reset; {waiting} waiting memories were dropped, a copy is in {}",
        backup.display()
    );
    ctx.log.line("reset", &msg);
    Ok(msg)
}

/// `repair`: rebuilds a staging database that fails its integrity check (rows are salvaged into
/// a fresh file, the damaged one is kept aside), then fixes what the schema cannot prevent.
pub fn repair(ctx: &Ctx) -> Result<String, MemoryError> {
    let path = ctx.settings.staging_db.clone();
    let mut out = Vec::new();
    let (damaged, salvaged, records) = match Staging::open_existing(&path) {
        Ok(None) => return Ok("nothing to repair: no staging database".into()),
        Ok(Some(st)) => match st.integrity() {
            Ok(p) if p.is_empty() => (false, Vec::new(), Vec::new()),
            _ => (true, st.salvage(), st.conflicts(false).unwrap_or_default()),
        },
        // Only damage is repaired by rebuilding; a busy, newer or foreign file is reported.
        Err(e) if e.is_damage() => (true, Vec::new(), Vec::new()),
        Err(e) => return Err(e.into()),
    };
    if damaged {
        // The damaged file (with its WAL) is kept aside, never deleted.
        let stamp = now() as u64;
        let aside = path.with_extension(format!("corrupt-{stamp}"));
        for ext in ["", "-wal", "-shm"] {
            let mut from = path.clone().into_os_string();
            from.push(ext);
            let mut to = aside.clone().into_os_string();
            to.push(ext);
            let from = PathBuf::from(from);
            if from.exists() {
                std::fs::rename(&from, PathBuf::from(to)).map_err(|e| io_err(&from, e))?;
            }
        }
        let fresh = Staging::open(&path)?;
        let mut kept = 0;
        let mut ids = std::collections::HashMap::new();
        for s in &salvaged {
            ids.insert(s.id, fresh.insert_copy(s)?);
            if matches!(s.state, State::Pending | State::Failed | State::Conflict) {
                kept += 1;
            }
        }
        // The conflict records (the losing sides) come along when they can be read.
        for c in &records {
            if let (Some(&id), Some(h)) = (ids.get(&c.staged_id), ContentHash::parse(&c.hash)) {
                fresh.record_conflict(
                    id,
                    &h,
                    &c.kind,
                    &c.local,
                    c.remote.as_ref(),
                    c.resolution.as_deref(),
                )?;
            }
        }
        out.push(format!(
            "rebuilt {} ({kept} waiting rows salvaged); the damaged file is kept as {}",
            path.display(),
            aside.display()
        ));
    }
    let mut st = Staging::open(&path)?;
    let fixed = st.repair()?;
    out.push(format!("{fixed} inconsistencies fixed"));
    let left = st.check()?;
    if !left.is_empty() {
        return Err(MemoryError::Incomplete(format!(
            "still wrong after repair: {}",
            left.join("; ")
        )));
    }
    ctx.log.line("repair", &out.join("; "));
    Ok(out.join("\n"))
}

/// `export`: settings (without the key), staged rows and conflicts as JSON.
pub fn export(ctx: &Ctx, out: Option<&Path>) -> Result<String, MemoryError> {
    let st = ctx.staging()?;
    let v = export_value(ctx, &st)?;
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
                if p.is_empty() {
                    "ok".into()
                } else {
                    p.join("; ")
                }
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
            let p = st.check().unwrap_or_else(|e| vec![e.to_string()]);
            bad |= !p.is_empty();
            out.push(format!(
                "staging db {}: {}",
                st.path().display(),
                if p.is_empty() {
                    "ok".into()
                } else {
                    format!("{} (memsync repair)", p.join("; "))
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
        Err(MemoryError::Incomplete(out.join("; ")))
    } else {
        Ok(out.join("\n"))
    }
}

/// `optimize`: prunes confirmed staging rows older than 30 days, then lets SQLite tidy up both
/// databases (no VACUUM of the service's database: it may be in use).
pub fn optimize(ctx: &Ctx) -> Result<String, MemoryError> {
    let mut out = Vec::new();
    if let Some(st) = Staging::open_existing(&ctx.settings.staging_db)? {
        let pruned = st.prune_done(30.0 * 86400.0)?;
        st.optimize()?;
        out.push(format!(
            "staging: {pruned} confirmed rows older than 30 days pruned, vacuumed"
        ));
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
    // Only memories the server holds (seen there at a pull) leave the local database: a
    // local-only memory would then exist nowhere but in the archive file.
    let on_server = Staging::open_existing(&ctx.settings.staging_db)?
        .map(|s| s.pulled())
        .transpose()?
        .unwrap_or_default();
    let (old, local_only): (Vec<_>, Vec<_>) = db
        .all()?
        .into_iter()
        .filter(|m| m.deleted_at.is_none() && m.created_at < cutoff)
        .partition(|m| on_server.contains_key(&m.hash));
    let note = if local_only.is_empty() {
        String::new()
    } else {
        format!(
            "; {} older memories exist only locally and were kept (memsync sync sends them to the server)",
            local_only.len()
        )
    };
    if old.is_empty() {
        return Ok(format!(
            "no memory older than {} that the server also holds{note}",
            humantime::format_duration(older_than)
        ));
    }
    if dry_run {
        return Ok(format!(
            "would archive {} memories created before {}",
            old.len(),
            iso(cutoff)
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
            .join(format!("archive-{}.json", now() as u64)),
    };
    let doc = json!({
        "export_metadata": {
            "source_machine": super::client::hostname(), "export_timestamp": iso(now()),
            "total_memories": memories.len(), "database_path": ctx.settings.memory_db,
            "include_embeddings": true, "exporter": concat!("memsync ", env!("CARGO_PKG_VERSION")),
            "archived_before": iso(cutoff),
        },
        "memories": memories,
    });
    write_json(&path, &doc)?;
    // Read back before anything leaves the database.
    let back: Value = std::fs::read(&path)
        .map_err(|e| io_err(&path, e))
        .and_then(|b| {
            serde_json::from_slice(&b)
                .map_err(|e| MemoryError::Io(format!("{}: {e}", path.display())))
        })?;
    if back["memories"].as_array().map(Vec::len) != Some(old.len()) {
        return Err(MemoryError::Io(format!(
            "{}: archive did not read back complete; nothing removed",
            path.display()
        )));
    }
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

/// `resolve-conflicts`: lists open conflicts; settles them with `strategy` (all, or `id`), or
/// asks for each one on a terminal.
pub fn resolve_conflicts(
    ctx: &Ctx,
    strategy: Option<ConflictPolicy>,
    id: Option<i64>,
) -> Result<String, MemoryError> {
    let st = ctx.staging()?;
    let open: Vec<_> = st
        .conflicts(true)?
        .into_iter()
        .filter(|c| id.is_none_or(|i| c.id == i))
        .collect();
    if open.is_empty() {
        return Ok(match id {
            Some(i) => format!("no open conflict #{i}"),
            None => "no open conflicts".into(),
        });
    }
    let interactive = strategy.is_none() && std::io::stdin().is_terminal();
    let mut out = Vec::new();
    let mut settled = 0;
    for c in &open {
        let remote = c
            .remote
            .as_ref()
            .map_or_else(|| "deleted on the server".to_owned(), |r| r.to_json());
        let line = format!(
            "#{} {} {}: local {} / remote {}",
            c.id,
            c.hash.get(..12).unwrap_or(&c.hash),
            c.kind,
            c.local.to_json(),
            remote
        );
        let choice = match strategy {
            Some(s) => Some(s),
            None if interactive => {
                eprintln!("{line}");
                eprint!("  [m]erge, [l]ocal, [r]emote, [s]kip? ");
                let _ = std::io::stderr().flush();
                let mut a = String::new();
                let _ = std::io::stdin().lock().read_line(&mut a);
                match a.trim().chars().next() {
                    Some('m') => Some(ConflictPolicy::Merge),
                    Some('l') => Some(ConflictPolicy::Local),
                    Some('r') => Some(ConflictPolicy::Remote),
                    _ => None,
                }
            }
            None => None,
        };
        let Some(policy) = choice.filter(|p| *p != ConflictPolicy::Manual) else {
            out.push(line);
            continue;
        };
        let Some(item) = st.get(c.staged_id)? else {
            st.close_conflict(c.id, policy.as_str())?;
            continue;
        };
        // The conflict record keeps both sides but not their common base: `merge` unions here.
        let view = settle::apply(
            &st,
            &item,
            Kind::parse(&c.kind),
            c.remote.as_ref(),
            None,
            policy,
        )?;
        settle::show_locally(&ctx.settings.memory_db, &c.hash, &view)?;
        st.close_conflict(c.id, policy.as_str())?;
        settled += 1;
        out.push(format!("#{} settled: {}", c.id, policy.as_str()));
    }
    if settled > 0 {
        out.push(format!(
            "{settled} settled; run memsync push (and pull) to carry it out"
        ));
        ctx.log
            .line("resolve", &format!("{settled} conflicts settled"));
    }
    Ok(out.join("\n"))
}
