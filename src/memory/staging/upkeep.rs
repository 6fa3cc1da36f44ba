//! Upkeep of the staging database: pruning, reset, checks and repair.

use rusqlite::params;

use serde_json::Value;

use super::row::{COLS, row_to_staged};
use super::{ConflictRecord, EPOCH_KEY, Staged, Staging, StagingError};
use crate::memory::clock::now;
use crate::memory::hash::{ContentHash, python_strip};

/// Rows of a damaged file that could not be read.
#[derive(Debug, Default, Clone, Copy)]
pub struct Lost {
    pub count: usize,
    /// False when the count is a lower bound (the index that lists the ids was unreadable too).
    pub exact: bool,
}

/// What [`Staging::salvage`] read back.
#[derive(Debug, Default)]
pub struct Salvage {
    pub rows: Vec<Staged>,
    pub conflicts: Vec<ConflictRecord>,
    pub lost_rows: Lost,
    pub lost_conflicts: Lost,
    /// The merge base (`None`: it did not read back whole). Without it the next sync compares
    /// with no base and takes the union of both sides, which brings back what another machine
    /// removed.
    pub pulled: Option<Vec<PulledRow>>,
    /// The sync state (last pull and push, the staging database's epoch).
    pub state: Option<Vec<StateRow>>,
    /// The highest id each table ever handed out: a rebuilt file does not hand a lost row's
    /// id to a new one (`edit` and `drop` take ids, and their JSON copies are named by them).
    pub sequences: Vec<(String, i64)>,
}

/// A row of the merge base: hash, when it was pulled, the server's fields then (JSON).
pub type PulledRow = (String, f64, Option<String>);

/// A row of the sync state: key, value, when it was set.
pub type StateRow = (String, String, f64);

/// Upkeep of one staging database's file.
pub struct Upkeep<'a> {
    pub(super) st: &'a Staging,
}

impl Upkeep<'_> {
    /// Copies a row as it is (its id, operation, state, flags), for a rebuild: the id is what
    /// `edit`, `drop` and the JSON copies named after rows know it by.
    pub fn insert_copy(&self, s: &Staged) -> Result<(), StagingError> {
        self.st
            .exec(
                "INSERT INTO staged_memories (content_hash, content, tags, memory_type, metadata,
                   operation, state, outcome, attempts, last_error, restore_deleted, source_machine,
                   staged_at, updated_at, id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
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
                    now(),
                    s.id
                ],
            )
            .map(drop)
    }

    /// Runs `f` in an IMMEDIATE transaction, committed only when `f` succeeds: no other
    /// process writes between what `f` reads and what it deletes.
    fn write_tx<T, E: From<StagingError>>(
        &self,
        f: impl FnOnce(&Staging) -> Result<T, E>,
    ) -> Result<T, E> {
        self.st
            .conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.st.err(e))?;
        match f(self.st) {
            Ok(v) => {
                self.st
                    .conn
                    .execute_batch("COMMIT")
                    .map_err(|e| self.st.err(e))?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.st.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Deletes pushed and resolved rows older than `age_secs` (their conflict records stay),
    /// after `copy` kept them; nothing is deleted when `copy` fails. Returns how many went.
    pub fn prune_done<E: From<StagingError>>(
        &self,
        age_secs: f64,
        copy: impl FnOnce(&[Staged]) -> Result<(), E>,
    ) -> Result<usize, E> {
        self.write_tx(|st| {
            let old: Vec<Staged> = st
                .conn
                .prepare(&format!(
                    "SELECT {} FROM staged_memories WHERE state IN ('pushed', 'resolved')
                       AND COALESCE(outcome, '') <> 'dropped'
                       AND updated_at < ?1 AND id NOT IN (SELECT staged_id FROM conflicts)
                     ORDER BY id",
                    COLS
                ))
                .and_then(|mut s| s.query_map([now() - age_secs], row_to_staged)?.collect())
                .map_err(|e| st.err(e))?;
            if old.is_empty() {
                return Ok(0);
            }
            copy(&old)?;
            let ids: Vec<i64> = old.iter().map(|s| s.id).collect();
            st.exec(
                "DELETE FROM staged_memories WHERE id IN (SELECT value FROM json_each(?1))",
                [serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into())],
            )?;
            Ok(old.len())
        })
    }

    /// Drops every staged row and conflict and the bookkeeping (`reset`), after `copy` kept
    /// them (it reads inside the same transaction); nothing is dropped when `copy` fails.
    pub fn clear<T, E: From<StagingError>>(
        &self,
        copy: impl FnOnce(&Staging) -> Result<T, E>,
    ) -> Result<T, E> {
        // From now on this staging database knows nothing of the server (see `epoch`).
        let t = now();
        self.write_tx(|st| {
            let kept = copy(st)?;
            st.conn
                .execute_batch(&format!(
                    "DELETE FROM conflicts; DELETE FROM staged_memories;
                     DELETE FROM pulled; DELETE FROM sync_state;
                     INSERT INTO sync_state (key, value, updated_at) VALUES ('{}', '{t}', {t});",
                    EPOCH_KEY
                ))
                .map_err(|e| st.err(e))?;
            Ok(kept)
        })
    }

    /// SQLite's own `PRAGMA integrity_check`: damage to the file.
    pub fn integrity(&self) -> Result<Vec<String>, StagingError> {
        let mut problems: Vec<String> = self
            .st
            .conn
            .prepare("PRAGMA integrity_check")
            .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect())
            .map_err(|e| self.st.err(e))?;
        problems.retain(|p| p != "ok");
        Ok(problems)
    }

    /// SQLite's `PRAGMA quick_check` (the page structure without the index cross-checks): fast
    /// enough for `status`.
    pub fn quick_check(&self) -> Result<Vec<String>, StagingError> {
        let mut problems: Vec<String> = self
            .st
            .conn
            .prepare("PRAGMA quick_check")
            .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect())
            .map_err(|e| self.st.err(e))?;
        problems.retain(|p| p != "ok");
        Ok(problems)
    }

    /// Every staged row and conflict record that can still be read, even from a damaged file,
    /// with a count of those that could not.
    pub fn salvage(&self) -> Salvage {
        let (rows, lost_rows) = self.salvage_table(
            "staged_memories",
            "idx_staged_state",
            Staging::all,
            Staging::get,
        );
        let (conflicts, lost_conflicts) = self.salvage_table(
            "conflicts",
            "idx_conflicts_open",
            |s| s.conflict_log().list(false),
            |s, id| s.conflict_log().get(id),
        );
        let read = |sql: &str| self.st.conn.prepare(sql);
        let pulled = read("SELECT content_hash, pulled_at, fields FROM pulled")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .ok();
        let state = read("SELECT key, value, updated_at FROM sync_state")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .ok();
        let sequences = read("SELECT name, seq FROM sqlite_sequence")
            .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .unwrap_or_default();
        Salvage {
            rows,
            conflicts,
            lost_rows,
            lost_conflicts,
            pulled,
            state,
            sequences,
        }
    }

    /// Writes a salvaged merge base and sync state into this (fresh) database, in one
    /// transaction.
    pub fn insert_book(
        &self,
        pulled: &[PulledRow],
        state: &[StateRow],
    ) -> Result<(), StagingError> {
        self.write_tx(|st| {
            for (h, at, f) in pulled {
                st.exec(
                    "INSERT OR REPLACE INTO pulled (content_hash, pulled_at, fields) VALUES (?1, ?2, ?3)",
                    params![h, at, f],
                )?;
            }
            for (k, v, at) in state {
                st.exec(
                    "INSERT OR REPLACE INTO sync_state (key, value, updated_at) VALUES (?1, ?2, ?3)",
                    params![k, v, at],
                )?;
            }
            Ok::<_, StagingError>(())
        })
    }

    /// Raises each table's id sequence to at least the salvaged one (see
    /// [`Salvage::sequences`]); run after the rows are copied.
    pub fn raise_sequences(&self, seqs: &[(String, i64)]) -> Result<(), StagingError> {
        for (name, seq) in seqs {
            if self.st.exec(
                "UPDATE sqlite_sequence SET seq = max(seq, ?2) WHERE name = ?1",
                params![name, seq],
            )? == 0
            {
                self.st.exec(
                    "INSERT INTO sqlite_sequence (name, seq) SELECT ?1, ?2
                       WHERE EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
                    params![name, seq],
                )?;
            }
        }
        Ok(())
    }

    /// A table's readable rows: a full scan, or id by id when the scan fails part way. The ids
    /// that exist come from an index on the table when it is readable (then the count of lost
    /// rows is exact), else ids are tried up to the highest one handed out.
    fn salvage_table<T>(
        &self,
        table: &str,
        index: &str,
        all: impl Fn(&Staging) -> Result<Vec<T>, StagingError>,
        one: impl Fn(&Staging, i64) -> Result<Option<T>, StagingError>,
    ) -> (Vec<T>, Lost) {
        if let Ok(v) = all(self.st) {
            return (
                v,
                Lost {
                    count: 0,
                    exact: true,
                },
            );
        }
        let mut out = Vec::new();
        let indexed: Option<Vec<i64>> = self
            .st
            .conn
            .prepare(&format!("SELECT id FROM {table} INDEXED BY {index}"))
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .ok();
        if let Some(ids) = indexed {
            let mut lost = 0;
            for id in ids {
                match one(self.st, id) {
                    Ok(Some(x)) => out.push(x),
                    _ => lost += 1,
                }
            }
            return (
                out,
                Lost {
                    count: lost,
                    exact: true,
                },
            );
        }
        // AUTOINCREMENT keeps the highest id ever handed out in sqlite_sequence.
        let top: Option<i64> = self
            .st
            .conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = ?1",
                [table],
                |r| r.get(0),
            )
            .ok();
        let (mut failed, mut last_read, mut misses, mut id) = (Vec::new(), 0, 0, 1);
        while top.map_or(misses < 1000, |t| id <= t) {
            match one(self.st, id) {
                Ok(Some(x)) => {
                    out.push(x);
                    last_read = id;
                    misses = 0;
                }
                Ok(None) => misses += 1,
                Err(_) => {
                    failed.push(id);
                    misses += 1;
                }
            }
            id += 1;
        }
        // An unreadable id may have been a deleted row: without the index, a lower bound.
        let count = match top {
            Some(_) => failed.len(),
            None => failed.iter().filter(|&&i| i < last_read).count(),
        };
        (
            out,
            Lost {
                count,
                exact: false,
            },
        )
    }

    /// [`Staging::integrity`] plus the checks the schema cannot express.
    pub fn check(&self) -> Result<Vec<String>, StagingError> {
        let mut problems = self.integrity()?;
        let orphans: i64 = self
            .st.conn
            .query_row(
                "SELECT COUNT(*) FROM conflicts WHERE staged_id NOT IN (SELECT id FROM staged_memories)",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.st.err(e))?;
        if orphans > 0 {
            problems.push(format!("{orphans} conflict records point at no staged row"));
        }
        let stuck: i64 = self
            .st.conn
            .query_row(
                "SELECT COUNT(*) FROM staged_memories s WHERE state = 'conflict'
                   AND NOT EXISTS (SELECT 1 FROM conflicts c WHERE c.staged_id = s.id AND c.resolution IS NULL)",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.st.err(e))?;
        if stuck > 0 {
            problems.push(format!(
                "{stuck} rows in conflict without an open conflict record"
            ));
        }
        let bad_hash: i64 = self
            .st
            .conn
            .query_row(
                "SELECT COUNT(*) FROM staged_memories WHERE length(content_hash) <> 64",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.st.err(e))?;
        if bad_hash > 0 {
            problems.push(format!("{bad_hash} rows with a malformed content hash"));
        }
        Ok(problems)
    }

    /// Repairs what `check` reports that can be repaired without losing a memory: orphan
    /// conflicts are closed, rows stuck in conflict go back to pending, hashes are recomputed.
    pub fn repair(&self) -> Result<usize, StagingError> {
        let rows: Vec<(i64, String, String)> = self
            .st
            .conn
            .prepare("SELECT id, content, content_hash FROM staged_memories")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .map_err(|e| self.st.err(e))?;
        let mut fixed = 0;
        for (id, content, hash) in rows {
            // A delete without content is known by its hash alone: nothing to recompute from.
            if python_strip(&content).is_empty() && ContentHash::parse(&hash).is_some() {
                continue;
            }
            let want = ContentHash::of(&content);
            if want.as_str() != hash {
                self.st.exec(
                    "UPDATE staged_memories SET content_hash = ?2 WHERE id = ?1",
                    params![id, want.as_str()],
                )?;
                fixed += 1;
            }
        }
        fixed += self
            .st.conn
            .execute(
                "UPDATE staged_memories SET state = 'pending' WHERE state = 'conflict'
                   AND NOT EXISTS (SELECT 1 FROM conflicts c WHERE c.staged_id = staged_memories.id AND c.resolution IS NULL)",
                [],
            )
            .map_err(|e| self.st.err(e))?;
        fixed += self
            .st
            .conn
            .execute(
                "UPDATE conflicts SET resolution = 'local', resolved_at = ?1
                 WHERE resolution IS NULL AND staged_id NOT IN (SELECT id FROM staged_memories)",
                [now()],
            )
            .map_err(|e| self.st.err(e))?;
        Ok(fixed)
    }

    /// VACUUM and ANALYZE.
    pub fn optimize(&self) -> Result<(), StagingError> {
        self.st
            .conn
            .execute_batch("PRAGMA optimize; VACUUM;")
            .map_err(|e| self.st.err(e))
    }
}
