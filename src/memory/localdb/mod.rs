//! The local mcp-memory-service database (`sqlite_vec.db`), written through SQLite while the
//! local service may have it open: short IMMEDIATE transactions, the service's own busy timeout,
//! and rows shaped as the service writes them (memories row, vec0 embedding with the same rowid,
//! FTS kept by the service's own triggers).
//!
//! Columns are discovered, not assumed, so databases from older service versions work too.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde_json::{Map, Value};

use super::hash::ContentHash;
use super::record::Fields;

mod error;
mod writer;

pub use error::LocalDbError;
pub use writer::{NewMemory, Writer};

/// A memory as the local database holds it.
#[derive(Debug, Clone)]
pub struct LocalMemory {
    pub id: i64,
    pub hash: ContentHash,
    pub content: String,
    pub fields: Fields,
    pub created_at: f64,
    pub updated_at: f64,
    pub deleted_at: Option<f64>,
    /// Written without its embedding (the service's `embedding_pending` flag).
    pub embedding_pending: bool,
    /// The service's `store` partition (v12; `None` where the table has no such column).
    pub store: Option<String>,
}

/// What a pull compares before it writes a row: the row as it was read when the pull was
/// planned. The local service may edit the row meanwhile; such an edit is never written over.
#[derive(Debug, Clone, PartialEq)]
pub struct RowStamp {
    fields: Fields,
    updated_at: f64,
    deleted_at: Option<f64>,
}

impl LocalMemory {
    /// The row's stamp (see [`RowStamp`]).
    pub fn stamp(&self) -> RowStamp {
        RowStamp {
            fields: self.fields.clone(),
            updated_at: self.updated_at,
            deleted_at: self.deleted_at,
        }
    }
}

/// mcp-memory-service 12.4's `memories` table (the columns pull reads and writes), for the
/// empty stand-in a dry run plans against.
const SERVICE_MEMORIES: &str = "CREATE TABLE memories (
  id INTEGER PRIMARY KEY AUTOINCREMENT, content_hash TEXT UNIQUE NOT NULL, content TEXT NOT NULL,
  tags TEXT, memory_type TEXT, metadata TEXT, created_at REAL, updated_at REAL,
  created_at_iso TEXT, updated_at_iso TEXT, deleted_at REAL DEFAULT NULL,
  embedding_pending INTEGER NOT NULL DEFAULT 0);";

/// The open local database.
pub struct LocalDb {
    conn: Connection,
    path: PathBuf,
    columns: HashSet<String>,
    /// The embedding table's dimension and whether it is partitioned by `store` (v12).
    vec: Option<(usize, bool)>,
}

fn parse_tags(s: Option<String>) -> Vec<String> {
    let s = s.unwrap_or_default();
    if s.trim_start().starts_with('[')
        && let Ok(v) = serde_json::from_str::<Vec<String>>(&s)
    {
        return v;
    }
    s.split(',')
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The dimension in `... vec0(content_embedding FLOAT[384] ...)`.
fn vec_dimension(ddl: &str) -> Option<usize> {
    let up = ddl.to_ascii_uppercase();
    let i = up.find("FLOAT[")? + 6;
    let end = up[i..].find(']')? + i;
    up[i..end].trim().parse().ok()
}

impl LocalDb {
    pub fn open(path: &Path) -> Result<LocalDb, LocalDbError> {
        Self::open_with(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
    }

    pub fn open_read_only(path: &Path) -> Result<LocalDb, LocalDbError> {
        Self::open_with(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
    }

    /// What `pull --dry-run` plans against: the database at `path` read-only or, where the
    /// local service has not created it yet, an empty one in memory with the service's
    /// `memories` columns (a dry run creates no file; every server memory is an addition).
    pub fn open_for_dry_run(path: &Path) -> Result<LocalDb, LocalDbError> {
        if path.exists() {
            return Self::open_read_only(path);
        }
        let err = |source| LocalDbError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open_in_memory().map_err(err)?;
        conn.execute_batch(SERVICE_MEMORIES).map_err(err)?;
        Self::from_conn(conn, path)
    }

    fn open_with(path: &Path, flags: OpenFlags) -> Result<LocalDb, LocalDbError> {
        if !path.is_file() {
            return Err(LocalDbError::NotFound(path.to_owned()));
        }
        crate::vec::register_vec();
        let err = |source| LocalDbError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let conn = if flags.contains(OpenFlags::SQLITE_OPEN_READ_ONLY) {
            crate::memory::readonly::open(path)
        } else {
            Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        }
        .map_err(err)?;
        // The service's own busy timeout is 5 s; waiting a little longer than it never makes us
        // the one that gives up first.
        conn.busy_timeout(Duration::from_secs(15)).map_err(err)?;
        Self::from_conn(conn, path)
    }

    /// Checks that `conn` holds the service's `memories` table and learns its columns.
    fn from_conn(conn: Connection, path: &Path) -> Result<LocalDb, LocalDbError> {
        let err = |source| LocalDbError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let not_memory = |reason: String| LocalDbError::NotMemoryDb {
            path: path.to_owned(),
            reason,
        };
        let columns: HashSet<String> = match conn
            .prepare("SELECT name FROM pragma_table_info('memories')")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        {
            Ok(c) => c,
            Err(rusqlite::Error::SqliteFailure(e, m))
                if e.code == rusqlite::ErrorCode::NotADatabase =>
            {
                return Err(not_memory(
                    m.unwrap_or_else(|| "not a SQLite database".into()),
                ));
            }
            Err(e) => return Err(err(e)),
        };
        for need in [
            "content_hash",
            "content",
            "tags",
            "memory_type",
            "metadata",
            "created_at",
        ] {
            if !columns.contains(need) {
                return Err(not_memory(format!("table memories has no column {need}")));
            }
        }
        let ddl: Option<String> = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'memory_embeddings'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?;
        let vec = ddl.and_then(|d| {
            let dim = vec_dimension(&d)?;
            Some((dim, d.to_ascii_lowercase().contains("store")))
        });
        Ok(LocalDb {
            conn,
            path: path.to_owned(),
            columns,
            vec,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> LocalDbError {
        LocalDbError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn select(&self) -> String {
        select(&self.columns)
    }

    fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LocalMemory> {
        row(r)
    }

    pub fn get(&self, hash: &ContentHash) -> Result<Option<LocalMemory>, LocalDbError> {
        self.conn
            .query_row(
                &format!("{} WHERE content_hash = ?1", self.select()),
                [hash],
                Self::row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every memory, tombstones included.
    pub fn all(&self) -> Result<Vec<LocalMemory>, LocalDbError> {
        self.conn
            .prepare(&format!("{} ORDER BY id", self.select()))
            .and_then(|mut s| s.query_map([], Self::row)?.collect())
            .map_err(|e| self.err(e))
    }

    /// The embedding stored for a memory row, if any.
    pub fn embedding(&self, id: i64) -> Result<Option<Vec<u8>>, LocalDbError> {
        if self.vec.is_none() {
            return Ok(None);
        }
        self.conn
            .query_row(
                "SELECT content_embedding FROM memory_embeddings WHERE rowid = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Runs `f` in one IMMEDIATE transaction: the local service's readers see all of it or none.
    pub fn write<T>(
        &mut self,
        f: impl FnOnce(&Writer<'_>) -> Result<T, rusqlite::Error>,
    ) -> Result<T, LocalDbError> {
        let path = self.path.clone();
        let err = |source| LocalDbError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let w = Writer {
            tx: &tx,
            columns: &self.columns,
            vec: self.vec,
        };
        let out = f(&w).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(out)
    }

    /// `PRAGMA integrity_check` (or quick_check): the problems found, empty when sound.
    pub fn check(&self, quick: bool) -> Result<Vec<String>, LocalDbError> {
        let pragma = if quick {
            "quick_check"
        } else {
            "integrity_check"
        };
        let mut out: Vec<String> = self
            .conn
            .prepare(&format!("PRAGMA {pragma}"))
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| self.err(e))?;
        out.retain(|p| p != "ok");
        if let Some(missing) = self.unembedded()?.filter(|&n| n > 0) {
            out.push(format!(
                "{missing} live memories have no embedding (semantic search will not find them)"
            ));
        }
        Ok(out)
    }

    /// Live memories without an embedding (pulled over REST, which carries none): the
    /// service's semantic search cannot find them. `None` without an embedding table.
    pub fn unembedded(&self) -> Result<Option<i64>, LocalDbError> {
        if self.vec.is_none() {
            return Ok(None);
        }
        let live = if self.columns.contains("deleted_at") {
            "m.deleted_at IS NULL AND"
        } else {
            ""
        };
        self.conn
            .query_row(
                &format!(
                    "SELECT COUNT(*) FROM memories m WHERE {live}
                       NOT EXISTS (SELECT 1 FROM memory_embeddings e WHERE e.rowid = m.id)"
                ),
                [],
                |r| r.get(0),
            )
            .map(Some)
            .map_err(|e| self.err(e))
    }

    /// ANALYZE-style upkeep the service does not do itself, done under its busy timeout.
    pub fn optimize(&self) -> Result<(), LocalDbError> {
        self.conn
            .execute_batch("PRAGMA optimize; PRAGMA wal_checkpoint(PASSIVE);")
            .map_err(|e| self.err(e))
    }
}

/// The `SELECT` of a memory row with the columns this database has.
fn select(columns: &HashSet<String>) -> String {
    // A column an older schema lacks reads as a stand-in.
    let col = |name: &'static str, instead: &'static str| {
        if columns.contains(name) {
            name
        } else {
            instead
        }
    };
    format!(
        "SELECT id, content_hash, content, tags, memory_type, metadata, created_at, {}, {}, {}, {} FROM memories",
        col("updated_at", "created_at"),
        col("deleted_at", "NULL"),
        col("embedding_pending", "0"),
        col("store", "NULL"),
    )
}

/// A memory row as [`select`] reads it.
pub(super) fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LocalMemory> {
    let meta: Option<String> = r.get(5)?;
    Ok(LocalMemory {
        id: r.get(0)?,
        hash: r.get(1)?,
        content: r.get(2)?,
        fields: Fields {
            tags: parse_tags(r.get(3)?),
            memory_type: r.get(4)?,
            metadata: meta
                .as_deref()
                .and_then(|m| serde_json::from_str::<Map<String, Value>>(m).ok())
                .unwrap_or_default(),
        },
        created_at: r.get::<_, Option<f64>>(6)?.unwrap_or(0.0),
        updated_at: r.get::<_, Option<f64>>(7)?.unwrap_or(0.0),
        deleted_at: r.get(8)?,
        embedding_pending: r.get::<_, Option<i64>>(9)?.unwrap_or(0) != 0,
        store: r.get(10)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_dimension_is_read_from_the_ddl() {
        assert_eq!(
            vec_dimension(
                "CREATE VIRTUAL TABLE memory_embeddings USING vec0(content_embedding FLOAT[384] distance_metric=cosine)"
            ),
            Some(384)
        );
        assert_eq!(vec_dimension("CREATE TABLE x(a)"), None);
    }

    #[test]
    fn tags_are_read_as_csv_or_json() {
        assert_eq!(parse_tags(Some("a,b".into())), vec!["a", "b"]);
        assert_eq!(parse_tags(Some("[\"a\",\"b\"]".into())), vec!["a", "b"]);
        assert!(parse_tags(None).is_empty());
    }
}
