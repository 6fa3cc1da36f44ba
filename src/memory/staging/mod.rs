//! The staging database: memories waiting for the server, their state, the conflicts met on
//! the way, and the sync bookkeeping. Its schema is documented in the README and versioned with
//! `PRAGMA user_version`; `open` migrates older versions (including the upstream shell scripts'
//! `staging_db_init.sql` schema) in one transaction.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};

use super::hash::ContentHash;

mod records;
mod schema;
mod upkeep;
mod upstream;

pub use upkeep::{Lost, Salvage};

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 3;
/// `PRAGMA application_id`: "MSYN", so another SQLite file is not mistaken for a staging db.
pub(super) const APPLICATION_ID: i64 = 0x4d53_594e;

/// `sync_state` key of [`Staging::epoch`].
pub(super) const EPOCH_KEY: &str = "epoch";

/// What a staged row asks of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Store a new memory.
    Store,
    /// Replace the tags, type and metadata of a memory the server has.
    Update,
    /// Delete the memory with this hash (the upstream scripts' DELETE rows). The content may
    /// be empty: the hash is what names the memory.
    Delete,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Store => "store",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }
    fn parse(s: &str) -> Operation {
        match s {
            "update" => Operation::Update,
            "delete" => Operation::Delete,
            _ => Operation::Store,
        }
    }
}

/// Where a staged row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for the server.
    Pending,
    /// Confirmed by the server (stored, already there, or updated).
    Pushed,
    /// Refused by the server for a reason a retry will not fix (kept, with the reason).
    Failed,
    /// Waiting for `resolve-conflicts`.
    Conflict,
    /// Settled by a conflict resolution that kept the remote version (the local one stays in
    /// the conflict record), or dropped by the user (outcome `dropped`, a JSON copy kept).
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Pushed => "pushed",
            State::Failed => "failed",
            State::Conflict => "conflict",
            State::Resolved => "resolved",
        }
    }
    fn parse(s: &str) -> State {
        match s {
            "pushed" => State::Pushed,
            "failed" => State::Failed,
            "conflict" => State::Conflict,
            "resolved" => State::Resolved,
            _ => State::Pending,
        }
    }
}

/// A memory's fields other than its content: what conflicts are about.
#[derive(Debug, Clone, PartialEq)]
pub struct Fields {
    pub tags: Vec<String>,
    pub memory_type: Option<String>,
    pub metadata: Map<String, Value>,
}

impl Fields {
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "tags": self.tags, "memory_type": self.memory_type, "metadata": self.metadata
        })
        .to_string()
    }

    pub fn from_json(s: &str) -> Fields {
        let v: Value = serde_json::from_str(s).unwrap_or(Value::Null);
        Fields {
            tags: v
                .get("tags")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            memory_type: v
                .get("memory_type")
                .and_then(Value::as_str)
                .map(str::to_owned),
            metadata: v
                .get("metadata")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        }
    }
}

/// One staged row.
#[derive(Debug, Clone)]
pub struct Staged {
    pub id: i64,
    pub hash: ContentHash,
    pub content: String,
    pub fields: Fields,
    pub op: Operation,
    pub state: State,
    pub outcome: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub restore_deleted: bool,
    pub source_machine: String,
    pub staged_at: f64,
}

/// A recorded conflict.
#[derive(Debug, Clone)]
pub struct ConflictRecord {
    pub id: i64,
    pub staged_id: i64,
    pub hash: String,
    pub kind: String,
    pub local: Fields,
    pub remote: Option<Fields>,
    pub detected_at: f64,
    pub resolution: Option<String>,
}

/// A staging-database failure.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error("staging database {path}: {source}{}", repair_hint(source))]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("staging database {path}: cannot create its folder: {source}")]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("staging database {path}: {reason}")]
    Unusable { path: PathBuf, reason: String },
}

impl StagingError {
    /// Another connection holds the lock SQLite needed.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            StagingError::Sqlite { source, .. } if matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            )
        )
    }

    /// The file is damaged (what `memsync repair` rebuilds), as opposed to busy or foreign.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            StagingError::Sqlite { source, .. } if matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
            )
        )
    }
}

/// Damage to the file is what `memsync repair` is for: say so.
fn repair_hint(e: &rusqlite::Error) -> &'static str {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
            " (the file is damaged: run memsync repair, which salvages what can be read and keeps the damaged file)"
        }
        _ => "",
    }
}

/// Seconds since the epoch, as the server stores timestamps.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The open staging database.
pub struct Staging {
    conn: Connection,
    path: PathBuf,
}

const COLS: &str = "id, content_hash, content, tags, memory_type, metadata, operation, state, \
                    outcome, attempts, last_error, restore_deleted, source_machine, staged_at";

fn row_to_staged(r: &rusqlite::Row<'_>) -> rusqlite::Result<Staged> {
    let tags: String = r.get(3)?;
    let meta: String = r.get(5)?;
    let op: String = r.get(6)?;
    let state: String = r.get(7)?;
    let hash: String = r.get(1)?;
    Ok(Staged {
        id: r.get(0)?,
        hash: ContentHash::parse(&hash).unwrap_or_else(|| ContentHash::of(&hash)),
        content: r.get(2)?,
        fields: Fields {
            tags: serde_json::from_str(&tags).unwrap_or_default(),
            memory_type: r.get(4)?,
            metadata: serde_json::from_str(&meta).unwrap_or_default(),
        },
        op: Operation::parse(&op),
        state: State::parse(&state),
        outcome: r.get(8)?,
        attempts: r.get(9)?,
        last_error: r.get(10)?,
        restore_deleted: r.get::<_, i64>(11)? != 0,
        source_machine: r.get(12)?,
        staged_at: r.get(13)?,
    })
}

/// The oldest row still waiting on something (pending, failed, conflict) for `hash`.
fn open_row(conn: &Connection, hash: &str) -> rusqlite::Result<Option<Staged>> {
    conn.query_row(
        &format!(
            "SELECT {COLS} FROM staged_memories WHERE content_hash = ?1
             AND state IN ('pending', 'failed', 'conflict') ORDER BY id LIMIT 1"
        ),
        [hash],
        row_to_staged,
    )
    .optional()
}

impl Staging {
    /// Opens (creating and migrating as needed) the staging database at `path`.
    pub fn open(path: &Path) -> Result<Staging, StagingError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StagingError::Folder {
                path: path.to_owned(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(|source| StagingError::Sqlite {
            path: path.to_owned(),
            source,
        })?;
        let mut s = Staging {
            conn,
            path: path.to_owned(),
        };
        // Switching a new file to WAL can answer "locked" at once, without waiting, while
        // another process sets it up at the same moment: wait for that one instead.
        let t0 = std::time::Instant::now();
        loop {
            match s.setup() {
                Ok(()) => return Ok(s),
                Err(e) if e.is_busy() && t0.elapsed() < std::time::Duration::from_secs(15) => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// An empty staging database in memory: what `pull --dry-run` plans against when no
    /// staging database exists yet (a dry run creates no file).
    pub fn in_memory() -> Result<Staging, StagingError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| StagingError::Sqlite {
            path: path.clone(),
            source,
        })?;
        let mut s = Staging { conn, path };
        s.setup()?;
        Ok(s)
    }

    /// Opens an existing staging database read-only (for `pull --dry-run`): nothing is created
    /// or migrated; a database that needs migrating is reported instead.
    pub fn open_read_only(path: &Path) -> Result<Option<Staging>, StagingError> {
        if !path.exists() {
            return Ok(None);
        }
        let err = |source| StagingError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let conn = super::readonly::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(15))
            .map_err(err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        let app: i64 = conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(err)?;
        if version != SCHEMA_VERSION || app != APPLICATION_ID {
            return Err(StagingError::Unusable {
                path: path.to_owned(),
                reason: format!(
                    "schema version {version}, this memsync uses {SCHEMA_VERSION}: run `memsync init` first (a dry run changes nothing, not even this)"
                ),
            });
        }
        Ok(Some(Staging {
            conn,
            path: path.to_owned(),
        }))
    }

    /// Opens an existing staging database without creating one.
    pub fn open_existing(path: &Path) -> Result<Option<Staging>, StagingError> {
        if !path.exists() {
            return Ok(None);
        }
        Staging::open(path).map(Some)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One statement, its error carrying the database's path.
    fn exec(&self, sql: &str, params: impl rusqlite::Params) -> Result<usize, StagingError> {
        self.conn.execute(sql, params).map_err(|e| self.err(e))
    }

    fn err(&self, source: rusqlite::Error) -> StagingError {
        StagingError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn setup(&mut self) -> Result<(), StagingError> {
        let c = &self.conn;
        c.busy_timeout(std::time::Duration::from_secs(15))
            .map_err(|e| self.err(e))?;
        // A file something else wrote (the upstream scripts' schema, another program's
        // database) is migrated or refused before it is switched to WAL: a refusal leaves it
        // byte for byte as it was.
        let written_elsewhere: bool = c
            .query_row(
                "SELECT (SELECT user_version FROM pragma_user_version) = 0
                   AND EXISTS (SELECT 1 FROM sqlite_master)",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        if written_elsewhere {
            schema::migrate(&mut self.conn, &self.path)?;
        }
        let c = &self.conn;
        c.pragma_update(None, "journal_mode", "WAL")
            .and_then(|_| c.pragma_update(None, "synchronous", "FULL"))
            .map_err(|e| self.err(e))?;
        let version: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let app: i64 = c
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if version == SCHEMA_VERSION && app == APPLICATION_ID {
            return Ok(());
        }
        schema::migrate(&mut self.conn, &self.path)
    }

    /// Stages a store. The same content already waiting is not staged twice: its tags and
    /// metadata are merged into the waiting row. Returns the row id and whether it was new.
    pub fn stage(
        &mut self,
        content: &str,
        fields: &Fields,
        machine: &str,
    ) -> Result<(i64, bool), StagingError> {
        let hash = ContentHash::of(content);
        let path = self.path.clone();
        let err = |source| StagingError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let existing = open_row(&tx, hash.as_str()).map_err(err)?;
        let t = now();
        let result = match existing {
            // Stored again while its delete waits: the later wish wins, the delete becomes
            // this store (pushing both would delete and re-create it, or meet a 409).
            Some(old) if old.op == Operation::Delete => {
                tx.execute(
                    "UPDATE staged_memories SET operation = 'store', content = ?2, tags = ?3,
                       memory_type = ?4, metadata = ?5, state = 'pending', last_error = NULL,
                       source_machine = ?6, updated_at = ?7
                     WHERE id = ?1",
                    params![
                        old.id,
                        content,
                        serde_json::to_string(&fields.tags).unwrap_or_default(),
                        fields.memory_type,
                        Value::Object(fields.metadata.clone()).to_string(),
                        machine,
                        t
                    ],
                )
                .map_err(err)?;
                (old.id, false)
            }
            Some(old) => {
                // The newer values win on shared keys; tags keep their first-seen order.
                let mut merged = super::conflict::merge(fields, &old.fields);
                merged.tags = super::conflict::merge(&old.fields, fields).tags;
                tx.execute(
                    "UPDATE staged_memories SET tags = ?2, memory_type = ?3, metadata = ?4, updated_at = ?5,
                       state = CASE state WHEN 'failed' THEN 'pending' ELSE state END,
                       last_error = CASE state WHEN 'failed' THEN NULL ELSE last_error END
                     WHERE id = ?1",
                    params![
                        old.id,
                        serde_json::to_string(&merged.tags).unwrap_or_default(),
                        merged.memory_type,
                        Value::Object(merged.metadata).to_string(),
                        t
                    ],
                )
                .map_err(err)?;
                (old.id, false)
            }
            None => {
                tx.execute(
                    "INSERT INTO staged_memories (content_hash, content, tags, memory_type, metadata,
                       operation, source_machine, staged_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'store', ?6, ?7, ?7)",
                    params![
                        hash.as_str(),
                        content,
                        serde_json::to_string(&fields.tags).unwrap_or_default(),
                        fields.memory_type,
                        Value::Object(fields.metadata.clone()).to_string(),
                        machine,
                        t
                    ],
                )
                .map_err(err)?;
                (tx.last_insert_rowid(), true)
            }
        };
        tx.commit().map_err(err)?;
        Ok(result)
    }

    /// Rows in `state`, oldest first.
    pub fn in_state(&self, state: State, limit: usize) -> Result<Vec<Staged>, StagingError> {
        self.conn
            .prepare(&format!(
                "SELECT {COLS} FROM staged_memories WHERE state = ?1 ORDER BY id LIMIT ?2"
            ))
            .and_then(|mut s| {
                s.query_map(params![state.as_str(), limit as i64], row_to_staged)?
                    .collect()
            })
            .map_err(|e| self.err(e))
    }

    /// Rows still waiting on something (pending, failed or in conflict) for `hash`.
    pub fn open_for(&self, hash: &ContentHash) -> Result<Option<Staged>, StagingError> {
        open_row(&self.conn, hash.as_str()).map_err(|e| self.err(e))
    }

    /// Whether a row still waiting on something (pending, failed, conflict) is about `hash`.
    pub fn knows_open(&self, hash: &str) -> Result<bool, StagingError> {
        match ContentHash::parse(hash) {
            Some(h) => Ok(self.open_for(&h)?.is_some()),
            None => Ok(false),
        }
    }

    /// Whether any row (in any state) is about `hash`.
    pub fn knows(&self, hash: &str) -> Result<bool, StagingError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM staged_memories WHERE content_hash = ?1)",
                [hash],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    pub fn get(&self, id: i64) -> Result<Option<Staged>, StagingError> {
        self.conn
            .query_row(
                &format!("SELECT {COLS} FROM staged_memories WHERE id = ?1"),
                [id],
                row_to_staged,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every row, for export.
    pub fn all(&self) -> Result<Vec<Staged>, StagingError> {
        self.conn
            .prepare(&format!("SELECT {COLS} FROM staged_memories ORDER BY id"))
            .and_then(|mut s| s.query_map([], row_to_staged)?.collect())
            .map_err(|e| self.err(e))
    }

    /// The server confirmed the row: it leaves the queue.
    pub fn mark_pushed(&self, id: i64, outcome: &str) -> Result<(), StagingError> {
        self.exec(
            "UPDATE staged_memories SET state = 'pushed', outcome = ?2, last_error = NULL,
                   attempts = attempts + 1, pushed_at = ?3, updated_at = ?3 WHERE id = ?1",
            params![id, outcome, now()],
        )
        .map(drop)
    }

    /// A lasting refusal: the row stays, with the reason, until retried.
    pub fn mark_failed(&self, id: i64, reason: &str) -> Result<(), StagingError> {
        self.exec(
            "UPDATE staged_memories SET state = 'failed', last_error = ?2,
                   attempts = attempts + 1, updated_at = ?3 WHERE id = ?1",
            params![id, reason, now()],
        )
        .map(drop)
    }

    /// `memsync drop`: a pending or failed row stops waiting. It stays as `resolved` with the
    /// outcome `dropped`, so `sync` does not stage the same memory again from the local
    /// database. Returns whether the row was still pending or failed.
    pub fn mark_dropped(&self, id: i64) -> Result<bool, StagingError> {
        self.exec(
            "UPDATE staged_memories SET state = 'resolved', outcome = 'dropped', updated_at = ?2
                 WHERE id = ?1 AND state IN ('pending', 'failed')",
            params![id, now()],
        )
        .map(|n| n == 1)
    }

    /// A transient failure: the row stays pending, with the error for `status`.
    pub fn note_attempt(&self, id: i64, error: &str) -> Result<(), StagingError> {
        self.exec(
            "UPDATE staged_memories SET last_error = ?2, attempts = attempts + 1, updated_at = ?3
                 WHERE id = ?1",
            params![id, error, now()],
        )
        .map(drop)
    }

    /// Rewrites a row after a conflict decision.
    pub fn rewrite(
        &self,
        id: i64,
        op: Operation,
        fields: &Fields,
        state: State,
        restore_deleted: bool,
    ) -> Result<(), StagingError> {
        self.exec("UPDATE staged_memories SET operation = ?2, tags = ?3, memory_type = ?4, metadata = ?5,
                   state = ?6, restore_deleted = ?7, last_error = NULL, updated_at = ?8 WHERE id = ?1",
                params![
                    id,
                    op.as_str(),
                    serde_json::to_string(&fields.tags).unwrap_or_default(),
                    fields.memory_type,
                    Value::Object(fields.metadata.clone()).to_string(),
                    state.as_str(),
                    restore_deleted as i64,
                    now()
                ]).map(drop)
    }

    /// Failed rows go back to pending (`push --retry-failed`).
    pub fn retry_failed(&self) -> Result<usize, StagingError> {
        self.exec(
            "UPDATE staged_memories SET state = 'pending' WHERE state = 'failed'",
            [],
        )
    }

    /// Pending rows that delete a memory rather than store or update one.
    pub fn pending_deletes(&self) -> Result<i64, StagingError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM staged_memories WHERE state = 'pending' AND operation = 'delete'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    pub fn count(&self, state: State) -> Result<i64, StagingError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM staged_memories WHERE state = ?1",
                [state.as_str()],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests;
