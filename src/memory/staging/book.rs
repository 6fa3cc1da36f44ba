//! The sync bookkeeping: what the server held at the last pull (the base each memory's
//! changes are measured from), when this database started knowing the server, and the
//! `sync_state` values (last pull, last push).

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use super::row::stored_hash;
use super::{EPOCH_KEY, Staging, StagingError};
use crate::memory::clock::now;
use crate::memory::hash::ContentHash;
use crate::memory::record::Fields;

/// The `pulled` and `sync_state` tables of a staging database.
pub struct Bookkeeping<'a> {
    pub(super) st: &'a Staging,
}

impl Bookkeeping<'_> {
    /// What the server had at the last pull: hash → its tags, type and metadata then (`None`
    /// for rows pulled before schema version 2). A local memory among them that the server no
    /// longer has was deleted there (rather than created locally); the fields are the common
    /// base that tells a local edit from a remote one.
    pub fn pulled(&self) -> Result<HashMap<ContentHash, Option<Fields>>, StagingError> {
        self.st
            .conn
            .prepare("SELECT content_hash, fields FROM pulled")
            .and_then(|mut s| {
                s.query_map([], |r| {
                    let h: String = r.get(0)?;
                    let f: Option<String> = r.get(1)?;
                    Ok((stored_hash(&h), f.as_deref().map(Fields::from_json)))
                })?
                .collect()
            })
            .map_err(|e| self.st.err(e))
    }

    /// When each base was recorded (Unix seconds): a local memory created after its base was
    /// made by the local service on its own, not edited from the base.
    pub fn pulled_at(&self) -> Result<HashMap<ContentHash, f64>, StagingError> {
        self.st
            .conn
            .prepare("SELECT content_hash, pulled_at FROM pulled")
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok((stored_hash(&r.get::<_, String>(0)?), r.get(1)?))
                })?
                .collect()
            })
            .map_err(|e| self.st.err(e))
    }

    /// Records what a pull saw: replaces the whole set (`full`, except the `keep` rows) or
    /// extends it, and forgets `removed`.
    pub fn set_pulled<'b>(
        &self,
        seen: impl Iterator<Item = (&'b ContentHash, &'b Fields)>,
        removed: &[ContentHash],
        full: bool,
        keep: &[ContentHash],
    ) -> Result<(), StagingError> {
        let path = self.st.path.clone();
        let err = |source| StagingError::Sqlite {
            path: path.clone(),
            source,
        };
        // Unchecked: a plain BEGIN on the shared connection, which nothing else has open now.
        let tx = self.st.conn.unchecked_transaction().map_err(err)?;
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
        self.st.exec(
            "INSERT OR REPLACE INTO pulled (content_hash, pulled_at, fields) VALUES (?1, ?2, ?3)",
            params![hash, now(), fields.to_json()],
        )
        .map(drop)
    }

    /// The base of one memory: its fields when this machine last agreed with the server
    /// (`None` when unknown, or recorded before schema version 2 kept fields).
    pub fn base(&self, hash: &ContentHash) -> Result<Option<Fields>, StagingError> {
        self.st
            .conn
            .query_row(
                "SELECT fields FROM pulled WHERE content_hash = ?1",
                [hash],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
            .map(|o| o.flatten().as_deref().map(Fields::from_json))
            .map_err(|e| self.st.err(e))
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
        self.st
            .conn
            .query_row("SELECT value FROM sync_state WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.st.err(e))
    }

    pub fn state_set(&self, key: &str, value: &str) -> Result<(), StagingError> {
        self.st
            .exec(
                "INSERT OR REPLACE INTO sync_state (key, value, updated_at) VALUES (?1, ?2, ?3)",
                params![key, value, now()],
            )
            .map(drop)
    }
}
