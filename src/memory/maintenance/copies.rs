//! The JSON copies that destructive commands write before they remove anything, and `export`'s
//! document they share: staged rows, conflict records, the pulled base, the settings.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::super::MemoryError;
use super::super::clock::iso;
use super::super::clock::now;
use super::super::ctx::Ctx;
use super::super::hash::ContentHash;
use super::super::staging::{self, Staged, Staging, staged_json};
use super::io_err;

/// The effective settings in `sync_config.json`'s shape, so that the file (or an export's
/// `config`) can be given back with `--sync-config`. The API key is never written out, nor a password in the replica URL.
pub(super) fn settings_json(ctx: &Ctx) -> Value {
    let s = &ctx.settings;
    json!({
        "remote": {
            "host": s.host, "port": s.port, "protocol": s.protocol,
            "timeout": s.timeout.as_secs_f64(), "retry_attempts": s.retry_attempts,
            "offline_threshold": s.offline_threshold.as_secs_f64(),
            "ca_file": s.ca_file, "insecure": s.insecure, "replica": s.replica.as_deref().map(super::super::settings::shown_url),
        },
        "local": {
            "staging_db": s.staging_db, "log_file": s.log_file, "batch_size": s.batch_size,
            "memory_db": s.memory_db,
        },
        "conflict_resolution": s.conflict.as_str(),
        "auto_sync_interval": s.interval.as_secs(),
    })
}

/// Everything staged, with the conflicts, the pulled base and the (key-less) settings.
pub(super) fn export_value(ctx: &Ctx, st: &Staging) -> Result<Value, MemoryError> {
    let staged: Vec<Value> = st.all()?.iter().map(staged_json).collect();
    let conflicts: Vec<Value> = st
        .conflict_log().list(false)?
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
    let mut pulled: Vec<(ContentHash, Value)> = st
        .book()
        .pulled()?
        .into_iter()
        .map(|(h, f)| {
            let fields = f.map_or(Value::Null, |f| {
                serde_json::from_str(&f.to_json()).unwrap_or(Value::Null)
            });
            (h, fields)
        })
        .collect();
    pulled.sort_by(|a, b| a.0.cmp(&b.0));
    let pulled: Vec<Value> = pulled
        .into_iter()
        .map(|(h, f)| json!({"content_hash": h, "fields": f}))
        .collect();
    Ok(json!({
        "exported_at": iso(now()),
        "memsync_version": env!("CARGO_PKG_VERSION"),
        "staging_schema_version": staging::SCHEMA_VERSION,
        "config": settings_json(ctx),
        "staged": staged,
        "conflicts": conflicts,
        "pulled": pulled,
    }))
}

/// Rows pruned by `optimize`, as they were.
pub(super) fn pruned_value(rows: &[Staged]) -> Value {
    json!({
        "pruned_at": iso(now()),
        "memsync_version": env!("CARGO_PKG_VERSION"),
        "staged": rows.iter().map(staged_json).collect::<Vec<_>>(),
    })
}

/// `<staging folder>/<prefix>-<UTC time>-<pid>.json`: a copy's name no other run picks.
pub(super) fn copy_name(ctx: &Ctx, prefix: &str) -> PathBuf {
    ctx.settings
        .staging_db
        .parent()
        .unwrap_or(Path::new("."))
        .join(format!("{prefix}-{}.json", crate::fsutil::unique_stamp()))
}

/// Writes `v` to a new file at `want` (or a numbered name beside it: a copy never replaces
/// another file), fsynced, then reads it back: every top-level list must come back whole.
/// Returns where it is.
pub(super) fn write_copy(want: &Path, v: &Value) -> Result<PathBuf, MemoryError> {
    if let Some(d) = want.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).map_err(|e| io_err(d, e))?;
    }
    let bytes = serde_json::to_vec_pretty(v)?;
    let path = crate::fsutil::write_new(want, &bytes).map_err(|e| io_err(want, e))?;
    let back: Value = std::fs::read(&path)
        .map_err(|e| io_err(&path, e))
        .and_then(|b| {
            serde_json::from_slice(&b).map_err(|e| MemoryError::Unverified {
                path: path.clone(),
                reason: e.to_string(),
            })
        })?;
    for (key, list) in v.as_object().into_iter().flatten() {
        if let Some(list) = list.as_array()
            && back[key].as_array().map(Vec::len) != Some(list.len())
        {
            return Err(MemoryError::Unverified {
                path,
                reason: format!("the copy did not read back complete ({key}); nothing was removed"),
            });
        }
    }
    Ok(path)
}
