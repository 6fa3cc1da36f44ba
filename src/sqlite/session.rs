//! memsync's hold on the database: its two connections, the long read transaction that keeps
//! unshipped frames in the WAL, the brief write lock, and the `-shm` probe that sees another
//! process's checkpoint. Knows nothing of what is captured; the monitor composes these steps
//! (see the module docs of `monitor.rs` for why they make a protected state).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::monitor::MonitorError;
use super::shm::ShmProbe;

/// memsync's two connections to the database.
pub(super) struct Conns {
    /// Connection holding the long read transaction.
    pub(super) r: Connection,
    /// Connection used for `BEGIN IMMEDIATE` and checkpoints.
    pub(super) w: Connection,
}

/// The connections and the locks held through them.
pub(super) struct Session {
    db: PathBuf,
    busy_timeout: Duration,
    /// `None` while memsync has stepped aside (see `idle.rs`).
    conns: Option<Conns>,
    /// The read transaction is open.
    r_active: bool,
    /// The read transaction was (re)started under the write lock with every committed frame
    /// seen: no WAL restart can then lose a frame (see `monitor.rs`).
    protected: bool,
    /// Lock probe on the `-shm` file, opened lazily. Shared with the pool's reactor, which
    /// probes while the monitor waits between turns; the pool drops its copy whenever a worker
    /// takes the monitor, so the session's copy is the last and the descriptor is only ever
    /// closed here, where it is safe (closing any descriptor of the file drops every POSIX
    /// lock the process holds on it, SQLite's included).
    shm: Option<Arc<ShmProbe>>,
}

impl Session {
    /// A session over connections already open.
    pub(super) fn new(db: &Path, busy_timeout: Duration, conns: Conns) -> Self {
        Session {
            db: db.to_owned(),
            busy_timeout,
            conns: Some(conns),
            r_active: false,
            protected: false,
            shm: ShmProbe::open(db).map(Arc::new),
        }
    }

    /// True while the connections are open.
    pub(super) fn is_open(&self) -> bool {
        self.conns.is_some()
    }

    /// True while the read transaction is open.
    pub(super) fn reading(&self) -> bool {
        self.r_active
    }

    /// True while the state is protected (see `monitor.rs`).
    pub(super) fn protected(&self) -> bool {
        self.protected
    }

    /// Closes both connections (and the probe): memsync steps aside. They never checkpoint
    /// on close (`conn::open`).
    pub(super) fn close(&mut self) {
        self.release_read();
        self.conns = None;
        self.shm = None;
    }

    /// Drops the probe's descriptor before connections open: closing one later, while SQLite
    /// holds locks on the file, would drop those (POSIX locks are per process).
    pub(super) fn drop_probe(&mut self) {
        self.shm = None;
    }

    /// Installs freshly opened connections (after stepping aside) and reopens the probe.
    pub(super) fn reopen(&mut self, conns: Conns) {
        self.conns = Some(conns);
        self.shm = ShmProbe::open(&self.db).map(Arc::new);
    }

    /// The lock probe, opened if it was not yet (the `-shm` file may appear late).
    pub(super) fn probe(&mut self) -> Option<&ShmProbe> {
        self.shared_probe_ref().map(|p| &**p)
    }

    /// The lock probe to share with the pool's reactor (see `shm` above).
    pub(super) fn shared_probe(&mut self) -> Option<Arc<ShmProbe>> {
        self.shared_probe_ref().cloned()
    }

    fn shared_probe_ref(&mut self) -> Option<&Arc<ShmProbe>> {
        if self.shm.is_none() {
            self.shm = ShmProbe::open(&self.db).map(Arc::new);
        }
        self.shm.as_ref()
    }

    /// At the final stop: memsync's connections may merge the WAL into the database and
    /// remove it when they close, as SQLite does at a last close (`lastclose.rs`).
    pub(super) fn checkpoint_on_close(&self) {
        if let Some(c) = &self.conns {
            for conn in [&c.r, &c.w] {
                let _ = conn.set_db_config(
                    rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                    false,
                );
            }
        }
    }

    /// memsync's connections; an error while it has stepped aside (callers attach first).
    pub(super) fn conns(&self) -> Result<&Conns, MonitorError> {
        self.conns
            .as_ref()
            .ok_or_else(|| MonitorError::Detached(self.db.display().to_string()))
    }

    pub(super) fn sql_err(&self, source: rusqlite::Error) -> MonitorError {
        MonitorError::Sqlite {
            db: self.db.display().to_string(),
            source,
        }
    }

    /// Takes the write lock if it is free right now; false if another connection holds it.
    pub(super) fn try_begin_immediate(&self) -> Result<bool, MonitorError> {
        let w = &self.conns()?.w;
        let _ = w.busy_timeout(Duration::ZERO);
        let begun = w.execute_batch("BEGIN IMMEDIATE");
        let _ = w.busy_timeout(self.busy_timeout);
        match begun {
            Ok(()) => Ok(true),
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => Ok(false),
            Err(e) => Err(self.sql_err(e)),
        }
    }

    /// Takes the write lock, waiting up to the busy timeout in short steps: while memsync waits
    /// it still holds its read transaction, and an application's blocking checkpoint that took
    /// the write lock first waits for that read transaction. Such a checkpoint ends the wait at
    /// once with SQLITE_BUSY, so the caller gives up this pass and the next one steps aside
    /// (`maybe_yield`) instead of both sides waiting out a busy timeout. (Without a read
    /// transaction, as at startup, nothing waits on memsync and it simply waits its turn.)
    pub(super) fn begin_immediate(&self) -> Result<(), MonitorError> {
        const STEP: Duration = Duration::from_millis(20);
        let deadline = Instant::now() + self.busy_timeout;
        let w = &self.conns()?.w;
        let _ = w.busy_timeout(STEP);
        let res = loop {
            match w.execute_batch("BEGIN IMMEDIATE") {
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && Instant::now() < deadline
                        && !(self.r_active
                            && self
                                .shm
                                .as_ref()
                                .is_some_and(|p| p.foreign_blocking_checkpoint())) => {}
                other => break other,
            }
        };
        let _ = w.busy_timeout(self.busy_timeout);
        res.map_err(|e| self.sql_err(e))
    }

    /// Ends the write transaction `begin_immediate` started.
    pub(super) fn rollback_write(&self) -> Result<(), MonitorError> {
        self.conns()?
            .w
            .execute_batch("ROLLBACK")
            .map_err(|e| self.sql_err(e))
    }

    /// Ends a write-locked section in which every committed frame was seen: the read
    /// transaction (restarted in it) now protects every later frame.
    pub(super) fn mark_protected(&mut self) {
        self.protected = true;
    }

    /// Starts the read transaction afresh (ending the one held, if any).
    pub(super) fn restart_read(&mut self) -> Result<(), MonitorError> {
        self.release_read();
        self.conns()?
            .r
            .execute_batch("BEGIN")
            .map_err(|e| self.sql_err(e))?;
        // From here on a failure must still roll back (`release_read`), or every later BEGIN
        // on this connection would fail.
        self.r_active = true;
        let mut stmt = self
            .conns()?
            .r
            .prepare_cached("SELECT 1 FROM sqlite_schema LIMIT 1")
            .map_err(|e| self.sql_err(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.sql_err(e))?;
        rows.next().map_err(|e| self.sql_err(e))?;
        drop(rows);
        drop(stmt);
        self.r_active = true;
        Ok(())
    }

    /// Ends the read transaction; the WAL is no longer protected.
    pub(super) fn release_read(&mut self) {
        if self.r_active {
            if let Some(c) = &self.conns {
                let _ = c.r.execute_batch("ROLLBACK");
            }
            self.r_active = false;
        }
        self.protected = false;
    }
}
