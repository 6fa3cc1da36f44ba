//! Upkeep of the staging database: pruning, reset, checks and repair.

use rusqlite::params;

use serde_json::Value;

use super::{Staged, Staging, StagingError, now};
use crate::memory::hash::{ContentHash, python_strip};

impl Staging {
    /// Copies a row as it is (operation, state, flags), for a rebuild; returns its new id.
    pub fn insert_copy(&self, s: &Staged) -> Result<i64, StagingError> {
        self.exec(
            "INSERT INTO staged_memories (content_hash, content, tags, memory_type, metadata,
                   operation, state, outcome, attempts, last_error, restore_deleted, source_machine,
                   staged_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            params![
                s.hash.as_str(),
                s.content,
                serde_json::to_string(&s.fields.tags).unwrap_or_default(),
                s.fields.memory_type,
                Value::Object(s.fields.metadata.clone()).to_string(),
                s.op.as_str(),
                s.state.as_str(),
                s.outcome,
                s.attempts,
                s.last_error,
                s.restore_deleted as i64,
                s.source_machine,
                s.staged_at,
                now()
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Deletes pushed and resolved rows older than `age_secs` (their conflict records stay).
    /// Dropped rows stay: they keep `sync` from staging the dropped memory again.
    pub fn prune_done(&self, age_secs: f64) -> Result<usize, StagingError> {
        self.exec(
            "DELETE FROM staged_memories WHERE state IN ('pushed', 'resolved')
                   AND COALESCE(outcome, '') <> 'dropped'
                   AND updated_at < ?1 AND id NOT IN (SELECT staged_id FROM conflicts)",
            [now() - age_secs],
        )
    }

    /// Drops every staged row and conflict (`reset`); the bookkeeping goes too.
    pub fn clear(&mut self) -> Result<(), StagingError> {
        let t = now();
        self.conn
            .execute_batch(&format!(
                "BEGIN IMMEDIATE; DELETE FROM conflicts; DELETE FROM staged_memories;
                     DELETE FROM pulled; DELETE FROM sync_state;
                     INSERT INTO sync_state (key, value, updated_at) VALUES ('{}', '{t}', {t});
                     COMMIT;",
                super::EPOCH_KEY
            ))
            .map_err(|e| self.err(e))
    }

    /// SQLite's own `PRAGMA integrity_check`: damage to the file.
    pub fn integrity(&self) -> Result<Vec<String>, StagingError> {
        let mut problems: Vec<String> = self
            .conn
            .prepare("PRAGMA integrity_check")
            .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect())
            .map_err(|e| self.err(e))?;
        problems.retain(|p| p != "ok");
        Ok(problems)
    }

    /// Every row that can still be read, even from a damaged file: a full scan, or row by row
    /// when the scan fails part way.
    pub fn salvage(&self) -> Vec<super::Staged> {
        if let Ok(all) = self.all() {
            return all;
        }
        let mut out = Vec::new();
        let mut misses = 0;
        let mut id = 1;
        while misses < 1000 {
            match self.get(id) {
                Ok(Some(s)) => {
                    out.push(s);
                    misses = 0;
                }
                _ => misses += 1,
            }
            id += 1;
        }
        out
    }

    /// [`Staging::integrity`] plus the checks the schema cannot express.
    pub fn check(&self) -> Result<Vec<String>, StagingError> {
        let mut problems = self.integrity()?;
        let orphans: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM conflicts WHERE staged_id NOT IN (SELECT id FROM staged_memories)",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        if orphans > 0 {
            problems.push(format!("{orphans} conflict records point at no staged row"));
        }
        let stuck: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM staged_memories s WHERE state = 'conflict'
                   AND NOT EXISTS (SELECT 1 FROM conflicts c WHERE c.staged_id = s.id AND c.resolution IS NULL)",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        if stuck > 0 {
            problems.push(format!(
                "{stuck} rows in conflict without an open conflict record"
            ));
        }
        let bad_hash: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM staged_memories WHERE length(content_hash) <> 64",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        if bad_hash > 0 {
            problems.push(format!("{bad_hash} rows with a malformed content hash"));
        }
        Ok(problems)
    }

    /// Repairs what `check` reports that can be repaired without losing a memory: orphan
    /// conflicts are closed, rows stuck in conflict go back to pending, hashes are recomputed.
    pub fn repair(&mut self) -> Result<usize, StagingError> {
        let rows: Vec<(i64, String, String)> = self
            .conn
            .prepare("SELECT id, content, content_hash FROM staged_memories")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .map_err(|e| self.err(e))?;
        let mut fixed = 0;
        for (id, content, hash) in rows {
            // A delete without content is known by its hash alone: nothing to recompute from.
            if python_strip(&content).is_empty() && ContentHash::parse(&hash).is_some() {
                continue;
            }
            let want = ContentHash::of(&content);
            if want.as_str() != hash {
                self.exec(
                    "UPDATE staged_memories SET content_hash = ?2 WHERE id = ?1",
                    params![id, want.as_str()],
                )?;
                fixed += 1;
            }
        }
        fixed += self
            .conn
            .execute(
                "UPDATE staged_memories SET state = 'pending' WHERE state = 'conflict'
                   AND NOT EXISTS (SELECT 1 FROM conflicts c WHERE c.staged_id = staged_memories.id AND c.resolution IS NULL)",
                [],
            )
            .map_err(|e| self.err(e))?;
        fixed += self
            .conn
            .execute(
                "UPDATE conflicts SET resolution = 'local', resolved_at = ?1
                 WHERE resolution IS NULL AND staged_id NOT IN (SELECT id FROM staged_memories)",
                [now()],
            )
            .map_err(|e| self.err(e))?;
        Ok(fixed)
    }

    /// VACUUM and ANALYZE.
    pub fn optimize(&self) -> Result<(), StagingError> {
        self.conn
            .execute_batch("PRAGMA optimize; VACUUM;")
            .map_err(|e| self.err(e))
    }
}
