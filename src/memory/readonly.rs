//! Read-only opens that leave no trace: a dry run must not even create a database's `-wal`
//! file. SQLite creates an empty `-wal` (and `-shm`) when it opens a WAL database read-only and
//! none exists; no `-wal` means no connection has the database open, so it is read as immutable
//! then (a writer arriving meanwhile writes into its new `-wal`, not into the file read here).

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if Path::new(&wal).exists() {
        return Connection::open_with_flags(path, flags);
    }
    let abs = std::path::absolute(path).map_err(|_| rusqlite::Error::InvalidPath(path.into()))?;
    let mut uri = String::from("file:");
    for b in abs.to_string_lossy().bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                uri.push(b as char)
            }
            _ => uri.push_str(&format!("%{b:02X}")),
        }
    }
    uri.push_str("?immutable=1");
    Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)
}
