//! memsync's own connections to the user's database, and the checks made before touching it.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use thiserror::Error;

/// Why a database cannot be replicated.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The database file does not exist.
    #[error("database {0} does not exist")]
    Missing(String),
    /// The directory holding the database does not exist.
    #[error("directory of database {0} does not exist")]
    MissingDir(String),
    /// The file is not an SQLite database.
    #[error("{0} is not an SQLite database (bad header)")]
    NotSqlite(String),
    /// The file is empty: a database opened but never written (SQLite gives it a header and
    /// its journal mode at the first write).
    #[error(
        "{0} is empty (a database not written yet): start replicating it once the application has created it in WAL mode (`restore` fills an empty file)"
    )]
    Empty(String),
    /// A pipe, socket or device.
    #[error("{0} is not a regular file (a pipe, socket or device), so not an SQLite database")]
    NotAFile(String),
    /// The database uses a rollback journal and converting was not allowed.
    #[error(
        "{path} is in {mode} journal mode, not WAL; rerun with -convert-to-wal to switch it (this changes how the application's database works)"
    )]
    NotWal {
        /// Database path.
        path: String,
        /// Its current journal mode.
        mode: String,
    },
    /// SQLite refused.
    #[error("{path}: {source}")]
    Sqlite {
        /// Database path.
        path: String,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// Reading the file failed.
    #[error("{path}: {source}")]
    Io {
        /// Database path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Checks that `path` exists and starts with the SQLite header, before SQLite opens it (SQLite
/// would happily create a missing file or treat garbage lazily).
pub fn check_file(path: &Path) -> Result<(), OpenError> {
    let shown = path.display().to_string();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(OpenError::MissingDir(shown));
    }
    // A pipe would block the open until someone writes it; a device is nobody's database.
    if let Ok(m) = std::fs::metadata(path)
        && !m.is_file()
        && !m.is_dir()
    {
        return Err(OpenError::NotAFile(shown));
    }
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(OpenError::Missing(shown));
        }
        Err(source) => {
            return Err(OpenError::Io {
                path: shown,
                source,
            });
        }
    };
    let mut magic = [0u8; 16];
    match f.read_exact(&mut magic) {
        Ok(()) if &magic == b"SQLite format 3\0" => Ok(()),
        Ok(()) => Err(OpenError::NotSqlite(shown)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            match f.metadata().map(|m| m.len()) {
                Ok(0) => Err(OpenError::Empty(shown)),
                _ => Err(OpenError::NotSqlite(shown)),
            }
        }
        Err(source) => Err(OpenError::Io {
            path: shown,
            source,
        }),
    }
}

/// Refuses a database whose header says it uses a rollback journal (bytes 18-19 are 2 in WAL
/// mode), before anything of memsync's exists for it: a start refused later left its meta
/// directory and the replica's lineage record behind. The mode is read through a read-only
/// connection only for the message.
pub fn check_wal_header(path: &Path) -> Result<(), OpenError> {
    let mut head = [0u8; 20];
    let read = File::open(path).and_then(|mut f| f.read_exact(&mut head));
    if read.is_err() || (head[18] == 2 && head[19] == 2) {
        // Unreadable here: the start says why soon enough.
        return Ok(());
    }
    let mode = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0)))
        .unwrap_or_else(|_| "a rollback".into());
    Err(OpenError::NotWal {
        path: path.display().to_string(),
        mode,
    })
}

/// Opens one of memsync's connections: never creates the file, never checkpoints on close
/// (closing must not rewrite the WAL the application and the replica depend on), and never
/// auto-checkpoints.
pub fn open(path: &Path, busy: Duration) -> Result<Connection, OpenError> {
    let wrap = |source| OpenError::Sqlite {
        path: path.display().to_string(),
        source,
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(wrap)?;
    no_lookaside(&conn);
    conn.busy_timeout(busy).map_err(wrap)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(wrap)?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(wrap)?;
    // memsync reads pages itself; SQLite's page cache on its connections would only cost memory.
    conn.pragma_update(None, "cache_size", -64).map_err(wrap)?;
    Ok(conn)
}

/// Gives back the connection's lookaside memory (about 120 KB: a pool that speeds up the
/// small allocations of many statements, which memsync's connections do not run). Each
/// attached database holds two connections: at 500 databases starting at once the pools were
/// a quarter of the start's peak memory (`docs/measurements.md`). Right after the open nothing
/// uses the pool yet; if something did, SQLite refuses and the pool stays (harmless).
fn no_lookaside(conn: &Connection) {
    // SAFETY: the handle is the open connection's (borrowed for the call), and
    // SQLITE_DBCONFIG_LOOKASIDE takes exactly (void *buf, int size, int count): a null buffer
    // with size 0 and count 0 turns the pool off.
    unsafe {
        rusqlite::ffi::sqlite3_db_config(
            conn.handle(),
            rusqlite::ffi::SQLITE_DBCONFIG_LOOKASIDE,
            std::ptr::null_mut::<std::ffi::c_void>(),
            0 as std::ffi::c_int,
            0 as std::ffi::c_int,
        );
    }
}

/// Ensures the database is in WAL mode, converting only if `convert` is set.
pub fn ensure_wal(conn: &Connection, path: &Path, convert: bool) -> Result<(), OpenError> {
    let wrap = |source| OpenError::Sqlite {
        path: path.display().to_string(),
        source,
    };
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(wrap)?;
    if mode.eq_ignore_ascii_case("wal") {
        return Ok(());
    }
    if !convert {
        return Err(OpenError::NotWal {
            path: path.display().to_string(),
            mode,
        });
    }
    let now: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(wrap)?;
    if now.eq_ignore_ascii_case("wal") {
        Ok(())
    } else {
        Err(OpenError::NotWal {
            path: path.display().to_string(),
            mode: now,
        })
    }
}
