//! Writing memories as the service writes them: the `memories` row (with the columns this
//! database has), its vec0 embedding under the same rowid, and the service's soft delete.

use std::collections::HashSet;

use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use crate::memory::clock::iso;
use crate::memory::hash::ContentHash;
use crate::memory::record::Fields;

/// A memory to write, with its embedding when one is known.
#[derive(Debug, Clone)]
pub struct NewMemory<'a> {
    pub hash: &'a ContentHash,
    pub content: &'a str,
    pub fields: &'a Fields,
    pub created_at: f64,
    pub updated_at: f64,
    /// Little-endian f32s, as sqlite-vec stores them.
    pub embedding: Option<&'a [u8]>,
    /// The `store` partition (v12) when known; else a new row gets the service's default and
    /// an existing one keeps its own.
    pub store: Option<&'a str>,
}

/// Writes inside one transaction of [`LocalDb::write`].
pub struct Writer<'a> {
    pub(super) tx: &'a rusqlite::Transaction<'a>,
    pub(super) columns: &'a HashSet<String>,
    pub(super) vec: Option<(usize, bool)>,
}

impl Writer<'_> {
    /// Inserts a memory (or revives its tombstone) with its embedding. Without a usable
    /// embedding the row is flagged `embedding_pending` where the schema has that flag.
    pub fn upsert(&self, m: &NewMemory<'_>) -> rusqlite::Result<()> {
        let tags = m.fields.tags.join(",");
        let meta = Value::Object(m.fields.metadata.clone()).to_string();
        // The row, and whether it still has its vector (a tombstone's went with the delete).
        let deleted = if self.columns.contains("deleted_at") {
            "deleted_at IS NOT NULL"
        } else {
            "0"
        };
        let existing: Option<(i64, bool)> = self
            .tx
            .query_row(
                &format!("SELECT id, {deleted} FROM memories WHERE content_hash = ?1"),
                [m.hash],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let had_vector = existing.is_some_and(|(_, tombstone)| !tombstone);
        let existing = existing.map(|(id, _)| id);
        let usable = match (self.vec, m.embedding) {
            (Some((dim, _)), Some(e)) => e.len() == dim * 4,
            _ => false,
        };
        let mut cols = vec![
            "content_hash",
            "content",
            "tags",
            "memory_type",
            "metadata",
            "created_at",
        ];
        let mut vals: Vec<rusqlite::types::Value> = vec![
            m.hash.as_str().to_owned().into(),
            m.content.to_owned().into(),
            tags.into(),
            m.fields.memory_type.clone().into(),
            meta.into(),
            m.created_at.into(),
        ];
        let mut opt = |c: &'static str, v: rusqlite::types::Value| {
            if self.columns.contains(c) {
                cols.push(c);
                vals.push(v);
            }
        };
        opt("updated_at", m.updated_at.into());
        opt("created_at_iso", iso(m.created_at).into());
        opt("updated_at_iso", iso(m.updated_at).into());
        opt("deleted_at", rusqlite::types::Value::Null);
        if let Some(store) = m.store {
            opt("store", store.to_owned().into());
        }
        // A row without a vector is flagged as the service does; a live row keeps its flag
        // (and its vector) unless a vector comes with it.
        if usable || !had_vector {
            opt(
                "embedding_pending",
                i64::from(!usable && self.vec.is_some()).into(),
            );
        }
        let id = match existing {
            Some(id) => {
                let set: Vec<String> = cols
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{c} = ?{}", i + 1))
                    .collect();
                vals.push(id.into());
                self.tx.execute(
                    &format!(
                        "UPDATE memories SET {} WHERE id = ?{}",
                        set.join(", "),
                        vals.len()
                    ),
                    rusqlite::params_from_iter(vals.iter()),
                )?;
                id
            }
            None => {
                let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
                self.tx.execute(
                    &format!(
                        "INSERT INTO memories ({}) VALUES ({})",
                        cols.join(", "),
                        marks.join(", ")
                    ),
                    rusqlite::params_from_iter(vals.iter()),
                )?;
                self.tx.last_insert_rowid()
            }
        };
        if let (Some((_, partitioned)), true) = (self.vec, usable) {
            self.tx
                .execute("DELETE FROM memory_embeddings WHERE rowid = ?1", [id])?;
            if partitioned {
                // The row's own partition: the service searches one store at a time.
                let store: String = if self.columns.contains("store") {
                    self.tx.query_row(
                        "SELECT COALESCE(store, 'default') FROM memories WHERE id = ?1",
                        [id],
                        |r| r.get(0),
                    )?
                } else {
                    "default".to_owned()
                };
                self.tx.execute(
                    "INSERT INTO memory_embeddings (rowid, content_embedding, store) VALUES (?1, ?2, ?3)",
                    params![id, m.embedding, store],
                )?;
            } else {
                self.tx.execute(
                    "INSERT INTO memory_embeddings (rowid, content_embedding) VALUES (?1, ?2)",
                    params![id, m.embedding],
                )?;
            }
        }
        Ok(())
    }

    /// The row of `hash` as it is now (see [`super::RowStamp`]).
    pub fn stamp(&self, hash: &ContentHash) -> rusqlite::Result<Option<super::RowStamp>> {
        self.tx
            .query_row(
                &format!("{} WHERE content_hash = ?1", super::select(self.columns)),
                [hash],
                super::row,
            )
            .optional()
            .map(|m| m.map(|m| m.stamp()))
    }

    /// Replaces a memory's tags, type and metadata.
    pub fn set_fields(
        &self,
        hash: &ContentHash,
        f: &Fields,
        updated_at: f64,
    ) -> rusqlite::Result<()> {
        let mut sets = vec!["tags = ?", "memory_type = ?", "metadata = ?"];
        let mut vals: Vec<rusqlite::types::Value> = vec![
            f.tags.join(",").into(),
            f.memory_type.clone().into(),
            Value::Object(f.metadata.clone()).to_string().into(),
        ];
        if self.columns.contains("updated_at") {
            sets.push("updated_at = ?");
            vals.push(updated_at.into());
        }
        if self.columns.contains("updated_at_iso") {
            sets.push("updated_at_iso = ?");
            vals.push(iso(updated_at).into());
        }
        vals.push(hash.as_str().to_owned().into());
        self.tx.execute(
            &format!(
                "UPDATE memories SET {} WHERE content_hash = ?",
                sets.join(", ")
            ),
            rusqlite::params_from_iter(vals.iter()),
        )?;
        Ok(())
    }

    /// The service's soft delete: a tombstone, and the embedding goes.
    pub fn soft_delete(&self, hash: &ContentHash, at: f64) -> rusqlite::Result<()> {
        let id: Option<i64> = self
            .tx
            .query_row(
                "SELECT id FROM memories WHERE content_hash = ?1",
                [hash],
                |r| r.get(0),
            )
            .optional()?;
        let Some(id) = id else { return Ok(()) };
        if self.columns.contains("deleted_at") {
            self.tx.execute(
                "UPDATE memories SET deleted_at = ?2 WHERE id = ?1",
                params![id, at],
            )?;
        } else {
            self.tx
                .execute("DELETE FROM memories WHERE id = ?1", [id])?;
        }
        if self.vec.is_some() {
            self.tx
                .execute("DELETE FROM memory_embeddings WHERE rowid = ?1", [id])?;
        }
        Ok(())
    }
}
