//! The staging database: memories waiting for the server, their state, the conflicts met on
//! the way, and the sync bookkeeping. Its schema is documented in the README and versioned with
//! `PRAGMA user_version`; `open` migrates older versions (including the upstream shell scripts'
//! `staging_db_init.sql` schema) in one transaction.
//!
//! [`Staging`] opens the file and is the queue ([`queue`]); the file's other jobs each have a
//! type borrowing the same connection: the [`ConflictLog`], the [`Bookkeeping`] of what the
//! server held, and the [`Upkeep`] of the file (prune, check, salvage, repair, reset).

use std::path::{Path, PathBuf};

use rusqlite::Connection;

mod book;
mod conflicts;
mod error;
mod queue;
mod row;
mod schema;
mod upkeep;
mod upstream;

pub use book::Bookkeeping;
pub use conflicts::ConflictLog;
pub use error::StagingError;
pub use row::{ConflictRecord, Operation, Staged, State, describe, staged_json};
pub use upkeep::{Lost, Salvage, Upkeep};

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 4;
/// `PRAGMA application_id`: "MSYN", so another SQLite file is not mistaken for a staging db.
pub(super) const APPLICATION_ID: i64 = 0x4d53_594e;

/// `sync_state` key of [`Staging::epoch`].
pub(super) const EPOCH_KEY: &str = "epoch";

/// The open staging database.
pub struct Staging {
    conn: Connection,
    path: PathBuf,
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
        Self::check_path(path)?;
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

    /// Refuses a path that cannot be a staging database (a directory, a text file) before
    /// anything is made beside it (the lock files were, for a refused path).
    pub fn check_path(path: &Path) -> Result<(), StagingError> {
        let reason = if path.is_dir() {
            "it is a directory; point STAGING_DB_PATH at the staging database file"
        } else if holds_text(path) {
            "not a staging database: the file holds text, not SQLite; point STAGING_DB_PATH at the staging database"
        } else {
            return Ok(());
        };
        Err(StagingError::Unusable {
            path: path.to_owned(),
            reason: reason.into(),
        })
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
        let conn = crate::memory::readonly::open(path).map_err(err)?;
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

    /// The conflicts recorded in this database.
    pub fn conflict_log(&self) -> ConflictLog<'_> {
        ConflictLog { st: self }
    }

    /// Pruning, checks, repair and reset of this database's file.
    pub fn upkeep(&self) -> Upkeep<'_> {
        Upkeep { st: self }
    }

    /// What this database knows of the server: the pulled base and the sync state.
    pub fn book(&self) -> Bookkeeping<'_> {
        Bookkeeping { st: self }
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
}

#[cfg(test)]
mod tests;

/// Whether `path` is a text file (a settings file named by mistake, say) rather than an SQLite
/// database, damaged or not: a damaged database keeps binary pages, which `repair` salvages;
/// a text file is someone else's, which `repair` must not replace.
fn holds_text(path: &Path) -> bool {
    use std::io::Read;
    let mut head = Vec::with_capacity(4096);
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    if f.take(4096).read_to_end(&mut head).is_err() || head.is_empty() {
        return false;
    }
    if head.starts_with(b"SQLite format 3\0") || head.contains(&0) {
        return false;
    }
    // Text, but for a character cut at the end of what was read.
    match std::str::from_utf8(&head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}
