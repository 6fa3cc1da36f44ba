//! Why replication stopped (or never started), by what it means: the caller (the CLI) decides
//! what each is worth from the variant, not from the text.

use std::path::PathBuf;

use thiserror::Error;

use super::{fdlimit, lineage, lock};
use crate::replica::ReplicaError;
use crate::sqlite::monitor::MonitorError;

/// Why replication stopped.
#[derive(Debug, Error)]
pub enum ReplicateError {
    /// A database could not be monitored.
    #[error(transparent)]
    Monitor(#[from] MonitorError),
    /// A replica could not be set up.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// Another replicator runs on the database.
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    /// A replica belongs to another database.
    #[error(transparent)]
    Lineage(Box<lineage::LineageError>),
    /// The open-file limit cannot be raised far enough for the databases configured.
    #[error(transparent)]
    FileLimit(#[from] fdlimit::TooFew),
    /// Starting failed because the process ran out of file descriptors.
    #[error("{limit} (first failure: {first})")]
    OutOfFiles {
        /// The limit and the databases it must hold.
        limit: fdlimit::TooFew,
        /// The failure it caused.
        #[source]
        first: Box<ReplicateError>,
    },
    /// An environment setting cannot be used.
    #[error("{var}={value:?}: {why}")]
    Env {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        why: String,
    },
    /// The metrics address cannot be listened on.
    #[error("metrics address {addr}: {source}")]
    Metrics {
        /// `addr` as configured.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The spool left by an earlier run cannot be read.
    #[error("listing {}: {source}", path.display())]
    Spool {
        /// The spool directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The async runtime could not start.
    #[error("starting runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The stop signals could not be caught (they would kill memsync with data unshipped).
    #[error("catching stop signals: {0}")]
    Signals(#[source] std::io::Error),
    /// The monitor thread could not be started.
    #[error("starting monitor: {0}")]
    Thread(#[source] std::io::Error),
    /// A monitor thread panicked (a bug).
    #[error("monitor thread of {} panicked", db.display())]
    MonitorPanicked {
        /// Its database.
        db: PathBuf,
    },
    /// A replica's shipping task panicked (a bug): replication stops rather than go on
    /// without that replica while reporting nothing.
    #[error(
        "shipping to a replica of {} panicked; replication stops (a service manager restarts it)",
        db.display()
    )]
    ShipperPanicked {
        /// Its database.
        db: PathBuf,
    },
}

impl From<lineage::LineageError> for ReplicateError {
    fn from(e: lineage::LineageError) -> Self {
        ReplicateError::Lineage(Box::new(e))
    }
}
