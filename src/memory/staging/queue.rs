//! The queue itself: staging a memory, reading rows by state, and moving a row through its
//! states as the server answers.

use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use super::row::{COLS, Operation, Staged, State, open_row, row_to_staged};
use super::{Staging, StagingError};
use crate::memory::clock::now;
use crate::memory::conflict;
use crate::memory::hash::ContentHash;
use crate::memory::record::Fields;

impl Staging {
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
                let mut merged = conflict::merge(fields, &old.fields);
                merged.tags = conflict::merge(&old.fields, fields).tags;
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
    pub fn knows_open(&self, hash: &ContentHash) -> Result<bool, StagingError> {
        Ok(self.open_for(hash)?.is_some())
    }

    /// Whether any row (in any state) is about `hash`.
    pub fn knows(&self, hash: &ContentHash) -> Result<bool, StagingError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM staged_memories WHERE content_hash = ?1)",
                [hash],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Whether a row `memsync drop` took out of the queue holds `fields` for `hash`: a local
    /// version the user chose not to send, which pull must not stage again.
    pub fn dropped_as(&self, hash: &ContentHash, fields: &Fields) -> Result<bool, StagingError> {
        let rows: Vec<Staged> = self
            .conn
            .prepare(&format!(
                "SELECT {COLS} FROM staged_memories WHERE content_hash = ?1
                   AND state = 'resolved' AND outcome = 'dropped' ORDER BY id DESC"
            ))
            .and_then(|mut s| s.query_map([hash], row_to_staged)?.collect())
            .map_err(|e| self.err(e))?;
        Ok(rows.iter().any(|r| !conflict::differs(&r.fields, fields)))
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

    /// Runs `write` on row `item.id` in one write transaction if the row still holds what
    /// `item` was read with (operation and fields); returns whether it ran. `store` takes no
    /// lock: the same content stored again merges its tags into a waiting row at any moment, also
    /// while push sends that row or pull settles it, and what they then write about the row must
    /// not undo the merge. A row that changed stays as it is, to be sent (or settled) again.
    fn if_as_read(
        &self,
        item: &Staged,
        write: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<usize>,
    ) -> Result<bool, StagingError> {
        let run = || -> rusqlite::Result<bool> {
            let tx = rusqlite::Transaction::new_unchecked(
                &self.conn,
                rusqlite::TransactionBehavior::Immediate,
            )?;
            let now_row = tx
                .query_row(
                    &format!("SELECT {COLS} FROM staged_memories WHERE id = ?1"),
                    [item.id],
                    row_to_staged,
                )
                .optional()?;
            let same = now_row.is_some_and(|r| r.op == item.op && r.fields == item.fields);
            if same {
                write(&tx)?;
            }
            tx.commit()?;
            Ok(same)
        };
        run().map_err(|e| self.err(e))
    }

    /// The server confirmed the row as `item` holds it: it leaves the queue. `false` (nothing
    /// written) when the row changed meanwhile: it stays pending, to be sent again.
    pub fn mark_pushed(&self, item: &Staged, outcome: &str) -> Result<bool, StagingError> {
        self.if_as_read(item, |c| {
            c.execute(
                "UPDATE staged_memories SET state = 'pushed', outcome = ?2, last_error = NULL,
                   attempts = attempts + 1, pushed_at = ?3, updated_at = ?3 WHERE id = ?1",
                params![item.id, outcome, now()],
            )
        })
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

    /// Rewrites a row after a conflict decision, an edit or a fold of a local edit; `false`
    /// (nothing written) when the row changed since `item` was read (see `if_as_read`).
    pub fn rewrite(
        &self,
        item: &Staged,
        op: Operation,
        fields: &Fields,
        state: State,
        restore_deleted: bool,
    ) -> Result<bool, StagingError> {
        self.if_as_read(item, |c| {
            c.execute(
                "UPDATE staged_memories SET operation = ?2, tags = ?3, memory_type = ?4, metadata = ?5,
                   state = ?6, restore_deleted = ?7, last_error = NULL, updated_at = ?8 WHERE id = ?1",
                params![
                    item.id,
                    op.as_str(),
                    serde_json::to_string(&fields.tags).unwrap_or_default(),
                    fields.memory_type,
                    Value::Object(fields.metadata.clone()).to_string(),
                    state.as_str(),
                    restore_deleted as i64,
                    now()
                ],
            )
        })
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
