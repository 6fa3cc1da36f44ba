//! Conflict records, the set of pulled hashes and the sync bookkeeping.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use super::row::stored_hash;
use super::{ConflictRecord, EPOCH_KEY, Staging, StagingError};
use crate::memory::clock::now;
use crate::memory::hash::ContentHash;
use crate::memory::record::Fields;

const CONFLICT_COLS: &str =
    "id, staged_id, content_hash, kind, local, remote, detected_at, resolution";

fn row_to_conflict(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConflictRecord> {
    let local: String = r.get(4)?;
    let remote: Option<String> = r.get(5)?;
    let hash: String = r.get(2)?;
    Ok(ConflictRecord {
        id: r.get(0)?,
        staged_id: r.get(1)?,
        hash: stored_hash(&hash),
        kind: r.get(3)?,
        local: Fields::from_json(&local),
        remote: remote.as_deref().map(Fields::from_json),
        detected_at: r.get(6)?,
        resolution: r.get(7)?,
    })
}

impl Staging {
    /// Records a conflict; `resolution` is set when the policy settled it at once.
    pub fn record_conflict(
        &self,
        staged_id: i64,
        hash: &ContentHash,
        kind: &str,
        local: &Fields,
        remote: Option<&Fields>,
        resolution: Option<&str>,
    ) -> Result<i64, StagingError> {
        let t = now();
        self.exec(
            "INSERT INTO conflicts (staged_id, content_hash, kind, local, remote, detected_at,
                   resolution, resolved_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                staged_id,
                hash.as_str(),
                kind,
                local.to_json(),
                remote.map(Fields::to_json),
                t,
                resolution,
                resolution.map(|_| t)
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn conflicts(&self, open_only: bool) -> Result<Vec<ConflictRecord>, StagingError> {
        let sql = format!(
            "SELECT {CONFLICT_COLS} FROM conflicts {} ORDER BY id",
            if open_only {
                "WHERE resolution IS NULL"
            } else {
                ""
            }
        );
        self.conn
            .prepare(&sql)
            .and_then(|mut s| s.query_map([], row_to_conflict)?.collect())
            .map_err(|e| self.err(e))
    }

    /// One conflict record by id (row by row salvage of a damaged file).
    pub fn conflict(&self, id: i64) -> Result<Option<ConflictRecord>, StagingError> {
        self.conn
            .query_row(
                &format!("SELECT {CONFLICT_COLS} FROM conflicts WHERE id = ?1"),
                [id],
                row_to_conflict,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn close_conflict(&self, id: i64, resolution: &str) -> Result<(), StagingError> {
        self.exec(
            "UPDATE conflicts SET resolution = ?2, resolved_at = ?3 WHERE id = ?1",
            params![id, resolution, now()],
        )
        .map(drop)
    }

    /// What the server had at the last pull: hash → its tags, type and metadata then (`None`
    /// for rows pulled before schema version 2). A local memory among them that the server no
    /// longer has was deleted there (rather than created locally); the fields are the common
    /// base that tells a local edit from a remote one.
    pub fn pulled(&self) -> Result<HashMap<ContentHash, Option<Fields>>, StagingError> {
        self.conn
            .prepare("SELECT content_hash, fields FROM pulled")
            .and_then(|mut s| {
                s.query_map([], |r| {
                    let h: String = r.get(0)?;
                    let f: Option<String> = r.get(1)?;
                    Ok((stored_hash(&h), f.as_deref().map(Fields::from_json)))
                })?
                .collect()
            })
            .map_err(|e| self.err(e))
    }

    /// Records what a pull saw: replaces the whole set (`full`, except the `keep` rows) or
    /// extends it, and forgets `removed`.
    pub fn set_pulled<'a>(
        &mut self,
        seen: impl Iterator<Item = (&'a ContentHash, &'a Fields)>,
        removed: &[ContentHash],
        full: bool,
        keep: &[ContentHash],
    ) -> Result<(), StagingError> {
        let path = self.path.clone();
        let err = |source| StagingError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let t = now();
        if full {
            let keep = serde_json::to_string(keep).unwrap_or_else(|_| "[]".into());
            tx.execute(
                "DELETE FROM pulled WHERE content_hash NOT IN (SELECT value FROM json_each(?1))",
                [keep],
            )
            .map_err(err)?;
        }
        for h in removed {
            tx.execute("DELETE FROM pulled WHERE content_hash = ?1", [h])
                .map_err(err)?;
        }
        {
            let mut ins = tx
                .prepare(
                    "INSERT OR REPLACE INTO pulled (content_hash, pulled_at, fields) VALUES (?1, ?2, ?3)",
                )
                .map_err(err)?;
            for (h, f) in seen {
                ins.execute(params![h, t, f.to_json()]).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// The server confirmed that it holds `hash` with `fields` (a push or store succeeded, or
    /// a conflict showed the server's version): the new common base, so the next pull does not
    /// take this machine's own change for someone else's, nor an older base for a change.
    pub fn set_base(&self, hash: &ContentHash, fields: &Fields) -> Result<(), StagingError> {
        self.exec(
            "INSERT OR REPLACE INTO pulled (content_hash, pulled_at, fields) VALUES (?1, ?2, ?3)",
            params![hash, now(), fields.to_json()],
        )
        .map(drop)
    }

    /// The base of one memory: its fields when this machine last agreed with the server
    /// (`None` when unknown, or recorded before schema version 2 kept fields).
    pub fn base(&self, hash: &ContentHash) -> Result<Option<Fields>, StagingError> {
        self.conn
            .query_row(
                "SELECT fields FROM pulled WHERE content_hash = ?1",
                [hash],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
            .map(|o| o.flatten().as_deref().map(Fields::from_json))
            .map_err(|e| self.err(e))
    }

    /// The moment this staging database started knowing nothing of the server (created, or
    /// reset): a local memory older than it that the server deleted was seen by an earlier
    /// sync state, so the deletion applies; a newer one is a new local store.
    pub fn epoch(&self) -> Result<f64, StagingError> {
        Ok(self
            .state_get(EPOCH_KEY)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0))
    }

    pub fn state_get(&self, key: &str) -> Result<Option<String>, StagingError> {
        self.conn
            .query_row("SELECT value FROM sync_state WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn state_set(&self, key: &str, value: &str) -> Result<(), StagingError> {
        self.exec(
            "INSERT OR REPLACE INTO sync_state (key, value, updated_at) VALUES (?1, ?2, ?3)",
            params![key, value, now()],
        )
        .map(drop)
    }
}
