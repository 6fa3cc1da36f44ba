//! A staged row: what it asks of the server, where it stands, and how it is read from and shown
//! out of the `staged_memories` table.

use rusqlite::{Connection, OptionalExtension};
use serde_json::{Value, json};

use crate::memory::clock::iso;
use crate::memory::hash::ContentHash;
use crate::memory::record::Fields;

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
    pub(super) fn parse(s: &str) -> Operation {
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
    pub(super) fn parse(s: &str) -> State {
        match s {
            "pushed" => State::Pushed,
            "failed" => State::Failed,
            "conflict" => State::Conflict,
            "resolved" => State::Resolved,
            _ => State::Pending,
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
    pub hash: ContentHash,
    pub kind: String,
    pub local: Fields,
    pub remote: Option<Fields>,
    pub detected_at: f64,
    pub resolution: Option<String>,
}

pub(super) const COLS: &str = "id, content_hash, content, tags, memory_type, metadata, operation, state, \
                    outcome, attempts, last_error, restore_deleted, source_machine, staged_at";

/// A hash column as stored. A row written by something else than memsync (the upstream
/// scripts' rows, hand-made fixtures) may hold a value that is no content hash: it gets a
/// stand-in derived from that text, so the row stays readable and matches no memory.
pub(super) fn stored_hash(s: &str) -> ContentHash {
    ContentHash::parse(s).unwrap_or_else(|| ContentHash::of(s))
}

pub(super) fn row_to_staged(r: &rusqlite::Row<'_>) -> rusqlite::Result<Staged> {
    let tags: String = r.get(3)?;
    let meta: String = r.get(5)?;
    let op: String = r.get(6)?;
    let state: String = r.get(7)?;
    let hash: String = r.get(1)?;
    Ok(Staged {
        id: r.get(0)?,
        hash: stored_hash(&hash),
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
pub(super) fn open_row(conn: &Connection, hash: &str) -> rusqlite::Result<Option<Staged>> {
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

/// A row as JSON, for the copies destructive commands write and for `export`.
pub fn staged_json(s: &Staged) -> Value {
    json!({
        "id": s.id, "content": s.content, "content_hash": s.hash.as_str(),
        "tags": s.fields.tags, "memory_type": s.fields.memory_type, "metadata": s.fields.metadata,
        "operation": s.op.as_str(),
        "state": s.state.as_str(), "outcome": s.outcome, "attempts": s.attempts,
        "last_error": s.last_error, "restore_deleted": s.restore_deleted,
        "source_machine": s.source_machine, "staged_at": iso(s.staged_at),
    })
}

/// What is about to be tried with a row (for `SYNC_DEBUG`): `#5 3f2a9c1b7d4e: store (2 tags,
/// attempt 1)`.
pub fn describe(s: &Staged) -> String {
    format!(
        "#{} {}: {} ({} tags, attempt {}{})",
        s.id,
        s.hash.short(),
        s.op.as_str(),
        s.fields.tags.len(),
        s.attempts + 1,
        if s.restore_deleted {
            ", reviving a server-side delete"
        } else {
            ""
        }
    )
}
