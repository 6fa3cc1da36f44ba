//! How a command fails: [`CliError`] keeps the library error it came from (its one-line message
//! is what the user reads), [`Kind`] says what it means, and [`exit_code`] is the one place that
//! turns that into the process's exit code.

use std::path::PathBuf;

use thiserror::Error;

use crate::config::ConfigError;
use crate::exec::ExecError;
use crate::memory::MemoryError;
use crate::replica::ReplicaError;
use crate::replicate::ReplicateError;
use crate::restore::RestoreError;
use crate::serve::ServeError;
use crate::service::ServiceError;
use crate::supervise::SuperviseError;

/// A command failure; `memsync: error: <message>` on stderr.
#[derive(Debug, Error)]
pub enum CliError {
    /// Arguments that each parse but do not go together, or one that is missing.
    #[error("{0}")]
    Arguments(&'static str),
    /// A flag's value is not one memsync understands.
    #[error("{flag} {value}: {why}")]
    BadFlag {
        /// The flag, as written in help.
        flag: &'static str,
        /// Its value, quoted where that helps.
        value: String,
        /// What is wrong with it.
        why: String,
    },
    /// `-log-level` or `LOG_LEVEL` names no level.
    #[error("unknown log level {0:?}")]
    LogLevel(String),
    /// `LOG_LEVEL` names no level.
    #[error("LOG_LEVEL={0:?}: unknown log level (error, warn, info, debug, trace)")]
    EnvLogLevel(String),
    /// `-log-format` names no format.
    #[error("unknown log format {0:?} (text or json)")]
    LogFormat(String),
    /// `LOG_FORMAT` names no format.
    #[error("LOG_FORMAT={0:?}: unknown log format (text or json)")]
    EnvLogFormat(String),
    /// No `-config` and no config file at the default places.
    #[error(
        "no config file: pass -config FILE (none found at ./litestream.yml or /etc/litestream.yml), or set LITESTREAM_REPLICA_PATH to replicate the memory database"
    )]
    NoConfigFile,
    /// A plain path argument is neither a replica directory nor a database of a config.
    #[error(
        "{}: not a replica directory (no {}/ or {}/ in it), and no config file names it as a database (pass -config FILE, or a replica URL)",
        path.display(),
        replica_formats::SNAPSHOTS_DIR,
        replica_formats::SEGMENTS_DIR
    )]
    NotAReplica {
        /// The argument, made absolute.
        path: PathBuf,
    },
    /// The database argument is not one of the config's databases.
    #[error(
        "database {} is not in config {}, nor a replica directory",
        db.display(),
        config.display()
    )]
    NotInConfig {
        /// The database.
        db: PathBuf,
        /// The config file.
        config: PathBuf,
    },
    /// A `restore -all` / `-db` argument is neither a replica URL, a directory, nor a configured `dir`.
    #[error(
        "{}: not a directory replica (a replica URL or directory) nor the `dir` of a config entry",
        path.display()
    )]
    NotADirectory {
        /// The argument, made absolute.
        path: PathBuf,
    },
    /// A directory replica holds no database's replica.
    #[error(
        "{0} holds no database replicas (expected <path>/snapshots/ or <path>/segments/ below it)"
    )]
    NoDatabases(String),
    /// None of a database's replicas could be listed.
    #[error("none of the {count} replicas could be listed: {why}")]
    NoReplicaAnswered {
        /// How many replicas.
        count: usize,
        /// Each one's error.
        why: String,
    },
    /// A directory replica holds Litestream's database replicas only.
    #[error(
        "{target} holds no memsync backup but Litestream backups of {count} database(s) (`ltx/` files), which memsync cannot read: restore them with `litestream restore`"
    )]
    LitestreamDatabases {
        /// The replica as given.
        target: String,
        /// How many databases.
        count: usize,
    },
    /// Some databases of a `restore -all` failed (each was reported with its name).
    #[error(
        "{failed} of {total} databases failed to restore (each is named above){}",
        if failed < total { "; the others were restored" } else { "" }
    )]
    RestoreAll {
        /// How many failed.
        failed: usize,
        /// How many there were.
        total: usize,
    },
    /// `replicate -once` ended with some replica lacking what was committed; what it lacks
    /// stays in the spool for the next run.
    #[error("{0}; what they lack stays in the spool for the next run")]
    OnceIncomplete(String),
    /// `-replica NAME` names none of the database's replicas.
    #[error("database {} has no replica named {name:?}", db.display())]
    NoSuchReplica {
        /// The database.
        db: PathBuf,
        /// The name asked for.
        name: String,
    },
    /// `-replica NAME` with a replica URL or directory, which is one replica of another name.
    #[error(
        "-replica {name}: {target} is itself a replica (named {has:?}); -replica chooses among the replicas a config gives a database"
    )]
    NotThatReplica {
        /// The name asked for, the URL or directory given, and that replica's name.
        name: String,
        target: String,
        has: String,
    },
    /// The replica to read from does not exist.
    #[error("replica {0} does not exist")]
    MissingReplica(String),
    /// A program the command runs was not found.
    #[cfg_attr(not(unix), allow(dead_code))]
    #[error("{what} {} not found", path.display())]
    MissingProgram {
        /// Which program.
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A local path could not be used.
    #[error("{}: {source}", path.display())]
    Path {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The async runtime could not start.
    #[error("starting runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The config file (or a replica URL) is wrong.
    #[error(transparent)]
    Config(Box<ConfigError>),
    /// Replication stopped.
    #[error(transparent)]
    Replicate(Box<ReplicateError>),
    /// A replica could not be read.
    #[error(transparent)]
    Replica(Box<ReplicaError>),
    /// A restore failed; `asked` repeats a point in time asked for (` (asked for the state as of ...)`).
    #[error("{source}{asked}")]
    Restore {
        /// Why.
        #[source]
        source: Box<RestoreError>,
        /// The target, or empty.
        asked: String,
    },
    /// `serve` could not start.
    #[error(transparent)]
    Serve(Box<ServeError>),
    /// A service command failed.
    #[error(transparent)]
    Service(Box<ServiceError>),
    /// A memory command failed (its exit code is its own outcome).
    #[error(transparent)]
    Memory(Box<MemoryError>),
    /// `run` or `replicate -exec` could not run its jobs or its child.
    #[error(transparent)]
    Supervise(Box<SuperviseError>),
    /// The demo or the benchmark failed (their errors are messages, not kinds).
    #[error("{0}")]
    Tool(String),
}

// The library errors are boxed: they are large, and a `Result<(), CliError>` is returned
// everywhere in the CLI.
macro_rules! boxed_from {
    ($($ty:ty => $variant:ident),*) => {$(
        impl From<$ty> for CliError {
            fn from(e: $ty) -> Self {
                CliError::$variant(Box::new(e))
            }
        }
    )*};
}
boxed_from!(ConfigError => Config, ReplicateError => Replicate, ReplicaError => Replica, MemoryError => Memory, ServeError => Serve, ServiceError => Service, SuperviseError => Supervise);
impl From<ExecError> for CliError {
    fn from(e: ExecError) -> Self {
        CliError::Supervise(Box::new(e.into()))
    }
}

impl From<RestoreError> for CliError {
    fn from(source: RestoreError) -> Self {
        CliError::Restore {
            source: Box::new(source),
            asked: String::new(),
        }
    }
}
