//! Everything that touches the user's SQLite database: WAL parsing, lock probes, the page map
//! of the replicated state, consistent reads, and the monitor that owns checkpointing. It knows
//! SQLite and the replica format only: what it captures goes to a [`sink::Sink`] it is given.

pub mod capture;
mod carry;
pub mod checkpoint;
pub mod conn;
mod cursor;
mod diskfull;
mod gone;
mod idle;
mod lastclose;
pub mod monitor;
pub mod monitor_config;
pub mod pacer;
pub mod pagemap;
pub mod pool;
pub mod reader;
mod recover;
mod release;
pub(crate) mod run;
mod session;
pub mod shm;
pub mod sink;
mod snapshot;
#[cfg(test)]
pub(crate) mod testsink;
pub mod wal;
pub mod walindex;
pub mod watch;
mod yielding;

use std::path::{Path, PathBuf};

/// `<db><suffix>`, e.g. the `-wal` or `-shm` file next to a database.
pub fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}
