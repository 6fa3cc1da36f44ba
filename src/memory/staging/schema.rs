//! The staging schema, version by version, and the migrations between versions.

use std::path::Path;

use rusqlite::{Connection, params};
use serde_json::{Map, Value};

use super::{APPLICATION_ID, SCHEMA_VERSION, StagingError, now};

/// Version 2: `pulled.fields` keeps the server's tags, type and metadata as of the last pull,
/// the common base that tells a local edit from a remote one.
const V1_TO_V2: &str = "ALTER TABLE pulled ADD COLUMN fields TEXT;";

/// Brings the database to [`SCHEMA_VERSION`] in one IMMEDIATE transaction. The version is read
/// again inside it: another process opening the same new file at the same moment may have
/// migrated it first, and then there is nothing left to do.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StagingError> {
    let err = |source| StagingError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(err)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(err)?;
    let app: i64 = tx
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(err)?;
    if version > SCHEMA_VERSION {
        return Err(StagingError::Unusable {
            path: path.to_path_buf(),
            reason: format!(
                "schema version {version} is newer than this memsync knows ({SCHEMA_VERSION}); upgrade memsync"
            ),
        });
    }
    if version >= 1 && app != APPLICATION_ID {
        return Err(StagingError::Unusable {
            path: path.to_path_buf(),
            reason: "not a memsync staging database (wrong application id)".into(),
        });
    }
    if version == 0 {
        migrate_from_v0(&tx, path)?;
    }
    if version <= 1 {
        tx.execute_batch(V1_TO_V2).map_err(err)?;
    }
    if version == 0 {
        // A new (or upstream) staging database knows nothing of the server yet.
        let t = now();
        tx.execute(
            "INSERT OR IGNORE INTO sync_state (key, value, updated_at) VALUES (?1, ?2, ?3)",
            params![super::EPOCH_KEY, t.to_string(), t],
        )
        .map_err(err)?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)
        .and_then(|_| tx.pragma_update(None, "user_version", SCHEMA_VERSION))
        .map_err(err)?;
    tx.commit().map_err(err)
}
use crate::memory::hash::ContentHash;

/// A row of the upstream scripts' `staged_memories`: content, tags, metadata, type, machine.
type UpstreamRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

pub(super) const SCHEMA_V1: &str = "
CREATE TABLE staged_memories (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  content_hash TEXT NOT NULL,
  content TEXT NOT NULL,
  tags TEXT NOT NULL DEFAULT '[]',
  memory_type TEXT,
  metadata TEXT NOT NULL DEFAULT '{}',
  operation TEXT NOT NULL CHECK (operation IN ('store', 'update')),
  state TEXT NOT NULL DEFAULT 'pending'
    CHECK (state IN ('pending', 'pushed', 'failed', 'conflict', 'resolved')),
  outcome TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT,
  restore_deleted INTEGER NOT NULL DEFAULT 0,
  source_machine TEXT NOT NULL,
  staged_at REAL NOT NULL,
  updated_at REAL NOT NULL,
  pushed_at REAL
);
CREATE INDEX idx_staged_state ON staged_memories(state, id);
CREATE INDEX idx_staged_hash ON staged_memories(content_hash);
CREATE TABLE conflicts (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  staged_id INTEGER NOT NULL REFERENCES staged_memories(id),
  content_hash TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('diverged', 'deleted_remotely')),
  local TEXT NOT NULL,
  remote TEXT,
  detected_at REAL NOT NULL,
  resolution TEXT CHECK (resolution IN ('merge', 'local', 'remote')),
  resolved_at REAL
);
CREATE INDEX idx_conflicts_open ON conflicts(resolution, id);
CREATE TABLE pulled (
  content_hash TEXT PRIMARY KEY,
  pulled_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE sync_state (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL,
  updated_at REAL NOT NULL
);
";

/// Version 0 → 1. Version 0 is either an empty file or the upstream scripts' schema (`staged_memories` with
/// a TEXT id and `conflict_status`); its rows are carried over as pending stores.
fn migrate_from_v0(tx: &rusqlite::Transaction<'_>, path: &Path) -> Result<(), StagingError> {
    let path = path.to_path_buf();
    let err = |source| StagingError::Sqlite {
        path: path.clone(),
        source,
    };
    let tables: Vec<String> = tx
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(err)?;
    let upstream = tables.iter().any(|t| t == "staged_memories");
    let foreign: Vec<&String> = tables
        .iter()
        .filter(|t| !["staged_memories", "sync_status"].contains(&t.as_str()))
        .collect();
    if !foreign.is_empty() {
        return Err(StagingError::Unusable {
            path: path.clone(),
            reason: format!(
                "not a staging database (it has tables {foreign:?}); point STAGING_DB_PATH elsewhere"
            ),
        });
    }
    if upstream {
        tx.execute_batch(
            "ALTER TABLE staged_memories RENAME TO upstream_staged_memories;
             DROP TRIGGER IF EXISTS update_staged_count_insert;
             DROP TRIGGER IF EXISTS update_staged_count_delete;
             DROP INDEX IF EXISTS idx_staged_memories_hash;
             DROP INDEX IF EXISTS idx_staged_memories_staged_at;
             DROP INDEX IF EXISTS idx_staged_memories_operation;",
        )
        .map_err(err)?;
    }
    tx.execute_batch(SCHEMA_V1).map_err(err)?;
    if upstream {
        let rows: Vec<UpstreamRow> = tx
            .prepare(
                "SELECT content, tags, metadata, memory_type, source_machine
                 FROM upstream_staged_memories WHERE operation IN ('INSERT', 'UPDATE')
                 ORDER BY staged_at",
            )
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect()
            })
            .map_err(err)?;
        let t = now();
        for (content, tags, meta, mtype, machine) in rows {
            // Upstream stored tags as a JSON array or as comma text, depending on the script.
            let tags: Vec<String> = tags
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_else(|| {
                    tags.unwrap_or_default()
                        .split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect()
                });
            let meta: Map<String, Value> = meta
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default();
            tx.execute(
                "INSERT INTO staged_memories (content_hash, content, tags, memory_type, metadata,
                   operation, source_machine, staged_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'store', ?6, ?7, ?7)",
                params![
                    ContentHash::of(&content).as_str(),
                    content,
                    serde_json::to_string(&tags).unwrap_or_else(|_| "[]".into()),
                    mtype,
                    Value::Object(meta).to_string(),
                    machine.unwrap_or_else(crate::memory::client::hostname),
                    t
                ],
            )
            .map_err(err)?;
        }
        tx.execute_batch(
            "INSERT INTO sync_state (key, value, updated_at)
               SELECT key, value, 0 FROM sync_status WHERE key IN ('last_remote_sync', 'last_push_attempt') AND value <> '';
             DROP TABLE sync_status;",
        )
        .map_err(err)?;
    }
    Ok(())
}
