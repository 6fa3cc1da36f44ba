//! The staging schema, version by version, and the migrations between versions.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::{APPLICATION_ID, SCHEMA_VERSION, StagingError};
use crate::memory::clock::now;

/// Version 2: `pulled.fields` keeps the server's tags, type and metadata as of the last pull,
/// the common base that tells a local edit from a remote one.
pub(super) const V1_TO_V2: &str = "ALTER TABLE pulled ADD COLUMN fields TEXT;";

/// Version 3: `staged_memories.operation` also allows 'delete' (the upstream scripts' DELETE
/// rows, carried as pending deletes). SQLite cannot alter a CHECK, so the table is rebuilt
/// (new table, copy, drop, rename, indexes again); ids are kept, so conflict records still
/// point at their rows.
const V2_TO_V3: &str = "
CREATE TABLE staged_memories_v3 (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  content_hash TEXT NOT NULL,
  content TEXT NOT NULL,
  tags TEXT NOT NULL DEFAULT '[]',
  memory_type TEXT,
  metadata TEXT NOT NULL DEFAULT '{}',
  operation TEXT NOT NULL CHECK (operation IN ('store', 'update', 'delete')),
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
INSERT INTO staged_memories_v3 (id, content_hash, content, tags, memory_type, metadata, operation,
    state, outcome, attempts, last_error, restore_deleted, source_machine, staged_at, updated_at,
    pushed_at)
  SELECT id, content_hash, content, tags, memory_type, metadata, operation, state, outcome,
    attempts, last_error, restore_deleted, source_machine, staged_at, updated_at, pushed_at
  FROM staged_memories;
DROP TABLE staged_memories;
ALTER TABLE staged_memories_v3 RENAME TO staged_memories;
CREATE INDEX idx_staged_state ON staged_memories(state, id);
CREATE INDEX idx_staged_hash ON staged_memories(content_hash);
";

/// Version 4: a conflict may be `changed_remotely` (a staged delete meets a server version
/// changed since), and a record may be `superseded` (a newer record of the same row holds
/// its current local side). The table is rebuilt as in [`V2_TO_V3`], ids kept.
const V3_TO_V4: &str = "
CREATE TABLE conflicts_v4 (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  staged_id INTEGER NOT NULL REFERENCES staged_memories(id),
  content_hash TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('diverged', 'deleted_remotely', 'changed_remotely')),
  local TEXT NOT NULL,
  remote TEXT,
  detected_at REAL NOT NULL,
  resolution TEXT CHECK (resolution IN ('merge', 'local', 'remote', 'superseded')),
  resolved_at REAL
);
INSERT INTO conflicts_v4 (id, staged_id, content_hash, kind, local, remote, detected_at,
    resolution, resolved_at)
  SELECT id, staged_id, content_hash, kind, local, remote, detected_at, resolution, resolved_at
  FROM conflicts;
DROP TABLE conflicts;
ALTER TABLE conflicts_v4 RENAME TO conflicts;
CREATE INDEX idx_conflicts_open ON conflicts(resolution, id);
";

/// Brings the database to [`SCHEMA_VERSION`] in one IMMEDIATE transaction. The version is read
/// again inside it: another process opening the same new file at the same moment may have
/// migrated it first, and then there is nothing left to do. Any failure (a refused upstream
/// row included) rolls the whole migration back.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StagingError> {
    let err = |source| StagingError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    // Rebuilding `staged_memories` drops the table `conflicts` points at, which enforced
    // foreign keys refuse (the bundled SQLite enforces them by default). The setting cannot
    // change inside a transaction: off around it, then back as it was. Ids are copied as they
    // are, so no reference is broken.
    let fk: bool = conn
        .pragma_query_value(None, "foreign_keys", |r| r.get(0))
        .map_err(err)?;
    conn.pragma_update(None, "foreign_keys", false)
        .map_err(err)?;
    let result = migrate_in_tx(conn, path);
    conn.pragma_update(None, "foreign_keys", fk).map_err(err)?;
    result
}

fn migrate_in_tx(conn: &mut Connection, path: &Path) -> Result<(), StagingError> {
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
    let upstream = version == 0 && migrate_from_v0(&tx, path)?;
    if version <= 1 {
        tx.execute_batch(V1_TO_V2).map_err(err)?;
    }
    if version <= 2 {
        rebuild(&tx, "staged_memories", V2_TO_V3).map_err(err)?;
    }
    if version <= 3 {
        rebuild(&tx, "conflicts", V3_TO_V4).map_err(err)?;
    }
    // Upstream rows go in once the table takes every operation they can carry.
    if upstream {
        super::upstream::carry_rows(&tx, path)?;
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

/// Rebuilds `table` by `sql` (new table, copy, drop, rename), keeping its AUTOINCREMENT
/// counter: ids of rows deleted earlier (pruned, reset) are never handed out again.
fn rebuild(tx: &rusqlite::Transaction<'_>, table: &str, sql: &str) -> rusqlite::Result<()> {
    let seq: Option<i64> = tx
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = ?1",
            [table],
            |r| r.get(0),
        )
        .optional()?;
    tx.execute_batch(sql)?;
    if let Some(seq) = seq {
        tx.execute("DELETE FROM sqlite_sequence WHERE name = ?1", [table])?;
        tx.execute(
            &format!(
                "INSERT INTO sqlite_sequence (name, seq)
                   VALUES (?1, MAX(?2, (SELECT COALESCE(MAX(id), 0) FROM {table})))"
            ),
            params![table, seq],
        )?;
    }
    Ok(())
}

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

/// Version 0 → 1. Version 0 is either an empty file or the upstream scripts' schema
/// (`staged_memories` with a TEXT id and `conflict_status`), which is renamed
/// `upstream_staged_memories` and kept; returns whether it was (its rows are carried by
/// [`super::upstream::carry_rows`] once the schema is current).
fn migrate_from_v0(tx: &rusqlite::Transaction<'_>, path: &Path) -> Result<bool, StagingError> {
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
        tx.execute_batch(
            "INSERT INTO sync_state (key, value, updated_at)
               SELECT key, value, 0 FROM sync_status WHERE key IN ('last_remote_sync', 'last_push_attempt') AND value <> '';
             DROP TABLE sync_status;",
        )
        .map_err(err)?;
    }
    Ok(upstream)
}
