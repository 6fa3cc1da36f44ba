//! The conflicts met on the way: recorded with both sides, listed, settled.

use rusqlite::{OptionalExtension, params};

use super::row::stored_hash;
use super::{ConflictRecord, Staging, StagingError};
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

/// The `conflicts` table of a staging database.
pub struct ConflictLog<'a> {
    pub(super) st: &'a Staging,
}

impl ConflictLog<'_> {
    /// Records a conflict; `resolution` is set when the policy settled it at once.
    pub fn record(
        &self,
        staged_id: i64,
        hash: &ContentHash,
        kind: &str,
        local: &Fields,
        remote: Option<&Fields>,
        resolution: Option<&str>,
    ) -> Result<i64, StagingError> {
        let t = now();
        self.st.exec(
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
        Ok(self.st.conn.last_insert_rowid())
    }

    /// Copies a salvaged record as it was (its id, which `resolve-conflicts --id` takes, and
    /// when it was detected, which tells a local edit made since from the recorded side), for
    /// a rebuild.
    pub fn copy(&self, c: &ConflictRecord) -> Result<(), StagingError> {
        self.st
            .exec(
                "INSERT INTO conflicts (id, staged_id, content_hash, kind, local, remote,
                   detected_at, resolution, resolved_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    c.id,
                    c.staged_id,
                    c.hash.as_str(),
                    c.kind,
                    c.local.to_json(),
                    c.remote.as_ref().map(Fields::to_json),
                    c.detected_at,
                    c.resolution,
                    c.resolution.as_ref().map(|_| now())
                ],
            )
            .map(drop)
    }

    pub fn list(&self, open_only: bool) -> Result<Vec<ConflictRecord>, StagingError> {
        let sql = format!(
            "SELECT {CONFLICT_COLS} FROM conflicts {} ORDER BY id",
            if open_only {
                "WHERE resolution IS NULL"
            } else {
                ""
            }
        );
        self.st
            .conn
            .prepare(&sql)
            .and_then(|mut s| s.query_map([], row_to_conflict)?.collect())
            .map_err(|e| self.st.err(e))
    }

    /// One conflict record by id (row by row salvage of a damaged file).
    pub fn get(&self, id: i64) -> Result<Option<ConflictRecord>, StagingError> {
        self.st
            .conn
            .query_row(
                &format!("SELECT {CONFLICT_COLS} FROM conflicts WHERE id = ?1"),
                [id],
                row_to_conflict,
            )
            .optional()
            .map_err(|e| self.st.err(e))
    }

    /// Closes the open records of staged row `staged_id` other than `keep`: a newer record of
    /// the same row holds its current local side (which took in the older one's), so settling
    /// the newer one settles them all. Left open, they would keep `sync` exiting 4 with nothing
    /// to decide, and `resolve-conflicts` would replay a stale side over the newer decision.
    pub fn supersede(&self, staged_id: i64, keep: i64) -> Result<usize, StagingError> {
        self.st.exec(
            "UPDATE conflicts SET resolution = 'superseded', resolved_at = ?3
             WHERE staged_id = ?1 AND id != ?2 AND resolution IS NULL",
            params![staged_id, keep, now()],
        )
    }

    pub fn close(&self, id: i64, resolution: &str) -> Result<(), StagingError> {
        self.st
            .exec(
                "UPDATE conflicts SET resolution = ?2, resolved_at = ?3 WHERE id = ?1",
                params![id, resolution, now()],
            )
            .map(drop)
    }
}
