//! The upstream shell scripts' staged rows (`staging_db_init.sql`, kept as
//! `upstream_staged_memories`), carried into the current schema: INSERT and UPDATE rows become
//! pending stores, DELETE rows pending deletes. No row is dropped: one that cannot be carried
//! refuses the whole migration, naming the row, and the transaction leaves the file as it was.

use std::path::Path;

use rusqlite::params;
use serde_json::{Map, Value};

use super::{Operation, StagingError};
use crate::memory::clock::now;
use crate::memory::hash::{ContentHash, python_strip};

/// One upstream row, as its columns hold it.
struct UpstreamRow {
    id: String,
    operation: String,
    content: String,
    content_hash: String,
    tags: Option<String>,
    metadata: Option<String>,
    memory_type: Option<String>,
    source_machine: Option<String>,
    /// When the script staged it, in seconds since the epoch, when its column says.
    staged_at: Option<f64>,
}

/// What a row becomes, or why it cannot be carried.
fn carry(row: &UpstreamRow) -> Result<(Operation, ContentHash), String> {
    let has_content = !python_strip(&row.content).is_empty();
    let named = || format!("upstream row {:?} ({})", row.id, row.operation);
    match row.operation.trim().to_ascii_uppercase().as_str() {
        // The scripts hashed the raw content, the server hashes it normalised: the content's
        // own hash is the one the server knows.
        "INSERT" | "UPDATE" if has_content => Ok((Operation::Store, ContentHash::of(&row.content))),
        "INSERT" | "UPDATE" => Err(format!("{} has no content to store", named())),
        "DELETE" if has_content => Ok((Operation::Delete, ContentHash::of(&row.content))),
        // A delete may name the memory by its hash alone.
        "DELETE" => ContentHash::parse(row.content_hash.trim())
            .map(|h| (Operation::Delete, h))
            .ok_or_else(|| {
                format!(
                    "{} has no content and its content_hash {:?} is not a 64-digit hash",
                    named(),
                    row.content_hash
                )
            }),
        _ => Err(format!("{} is an operation memsync cannot carry", named())),
    }
}

/// Tags as the scripts wrote them: a JSON array or comma text, depending on the script.
fn tags_of(tags: Option<&str>) -> Vec<String> {
    tags.and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_else(|| {
            tags.unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
}

/// Copies every upstream row into `staged_memories` as a pending row, oldest first.
pub(super) fn carry_rows(tx: &rusqlite::Transaction<'_>, path: &Path) -> Result<(), StagingError> {
    let err = |source| StagingError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let rows: Vec<UpstreamRow> = tx
        .prepare(
            "SELECT CAST(id AS TEXT), CAST(operation AS TEXT), COALESCE(content, ''),
               COALESCE(content_hash, ''), tags, metadata, memory_type, source_machine,
               CASE typeof(staged_at)
                 WHEN 'text' THEN (julianday(staged_at) - 2440587.5) * 86400.0 + 1.0
                 WHEN 'integer' THEN CAST(staged_at AS REAL)
                 WHEN 'real' THEN staged_at
               END
             FROM upstream_staged_memories ORDER BY staged_at, rowid",
        )
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok(UpstreamRow {
                    id: r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                    operation: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    content: r.get(2)?,
                    content_hash: r.get(3)?,
                    tags: r.get(4)?,
                    metadata: r.get(5)?,
                    memory_type: r.get(6)?,
                    source_machine: r.get(7)?,
                    staged_at: r.get(8)?,
                })
            })?
            .collect()
        })
        .map_err(err)?;
    let t = now();
    for row in rows {
        // When the wish was made: a later change on the server then meets a staged delete as
        // a conflict (`push`). The scripts' `CURRENT_TIMESTAMP` has whole seconds, so the
        // end of that second (above), and never later than now.
        let staged_at = row
            .staged_at
            .filter(|s| s.is_finite())
            .map_or(t, |s| s.min(t));
        let (op, hash) = carry(&row).map_err(|why| StagingError::Unusable {
            path: path.to_path_buf(),
            reason: format!(
                "{why}; fix or remove that row (sqlite3), then run memsync again (nothing was changed)"
            ),
        })?;
        let meta: Map<String, Value> = row
            .metadata
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        tx.execute(
            "INSERT INTO staged_memories (content_hash, content, tags, memory_type, metadata,
               operation, source_machine, staged_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                hash.as_str(),
                row.content,
                serde_json::to_string(&tags_of(row.tags.as_deref()))
                    .unwrap_or_else(|_| "[]".into()),
                row.memory_type,
                Value::Object(meta).to_string(),
                op.as_str(),
                row.source_machine
                    .unwrap_or_else(crate::memory::host::hostname),
                staged_at,
                t
            ],
        )
        .map_err(err)?;
    }
    Ok(())
}
