//! How a command fails: [`CliError`] keeps the library error it came from (its one-line message
//! is what the user reads), [`Kind`] says what it means, and [`exit_code`] is the one place that
//! turns that into the process's exit code.

use std::path::PathBuf;

use thiserror::Error;

use crate::config::ConfigError;
use crate::exec::ExecError;
use crate::memory::MemoryError;
use crate::memory::outcome::Outcome;
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
    /// A restore failed; `asked` repeats a point in time asked for (` (state as of ...)`).
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

/// What a failure means to whoever runs memsync: what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Arguments or flags are wrong: fix the command line.
    Usage,
    /// The config file, a replica URL or a setting is wrong: fix it.
    Config,
    /// A database, replica, path or program named does not exist.
    NotFound,
    /// The replica exists but holds nothing to restore (for the target asked).
    NoBackup,
    /// Another process holds what is needed (a replicator's lock, SQLite's lock, an object
    /// written meanwhile): try again when it is done.
    Busy,
    /// Storage could not be reached or did not answer in time: try again later.
    Unreachable,
    /// Storage refused the credentials.
    Unauthorized,
    /// A file (database, WAL, replica file, lineage record) is damaged or mixes histories.
    Corrupt,
    /// Local I/O failed (disk full, permissions).
    Io,
    /// A bug or a failure memsync does not classify.
    Internal,
}

impl CliError {
    /// What this failure means.
    pub fn kind(&self) -> Kind {
        match self {
            CliError::Arguments(_)
            | CliError::BadFlag { .. }
            | CliError::LogLevel(_)
            | CliError::LogFormat(_)
            | CliError::EnvLogFormat(_) => Kind::Usage,
            CliError::NoConfigFile | CliError::Config(_) => Kind::Config,
            CliError::NotAReplica { .. }
            | CliError::NotInConfig { .. }
            | CliError::NoSuchReplica { .. }
            | CliError::NotThatReplica { .. }
            | CliError::NotADirectory { .. }
            | CliError::NoDatabases(_)
            | CliError::MissingReplica(_)
            | CliError::MissingProgram { .. } => Kind::NotFound,
            CliError::Path { .. } | CliError::RestoreAll { .. } => Kind::Io,
            CliError::OnceIncomplete(_) => Kind::Unreachable,
            CliError::Runtime(_) | CliError::Tool(_) => Kind::Internal,
            CliError::Replicate(e) => replicate_kind(e),
            CliError::Replica(e) => replica_kind(e),
            CliError::Restore { source, .. } => restore_kind(source),
            CliError::Serve(e) => match &**e {
                ServeError::Tls { .. } => Kind::Config,
                ServeError::Bind { .. } | ServeError::Dir { .. } => Kind::Io,
                ServeError::Start(_) => Kind::Internal,
            },
            CliError::Service(e) => match &**e {
                ServiceError::NoHome
                | ServiceError::NoPlatform
                | ServiceError::ForeignPlatform(_)
                | ServiceError::Unsupported { .. } => Kind::Usage,
                ServiceError::Host(_) => Kind::Internal,
                ServiceError::StopTimeout { .. } => Kind::Busy,
                ServiceError::ProgramMissing { .. } => Kind::NotFound,
                ServiceError::Exe(_)
                | ServiceError::Mkdir { .. }
                | ServiceError::Write { .. }
                | ServiceError::Remove { .. } => Kind::Io,
                ServiceError::Spawn { .. } | ServiceError::Failed { .. } => Kind::Internal,
            },
            CliError::Supervise(e) => match &**e {
                SuperviseError::Replicate(e) => replicate_kind(e),
                SuperviseError::Exec(ExecError::Words { .. }) => Kind::Config,
                SuperviseError::Exec(ExecError::Start { .. }) => Kind::NotFound,
                SuperviseError::Exec(ExecError::Wait { .. }) => Kind::Io,
                SuperviseError::Signals(_) | SuperviseError::Thread(_) => Kind::Internal,
                SuperviseError::Metrics { .. } => Kind::Config,
            },
            CliError::Memory(e) => match e.outcome() {
                Outcome::Locked => Kind::Busy,
                Outcome::Stopped => Kind::Unreachable,
                _ => Kind::Internal,
            },
        }
    }
}

/// The process's exit code for a failed command. Memory commands keep their own outcome table
/// (`memsync help`: 5 unreachable, 6 locked); every other failure exits 1, as Litestream's
/// commands do, whatever its kind; clap's usage errors exit 2 before any command runs.
pub fn exit_code(e: &CliError) -> i32 {
    if let CliError::Memory(m) = e {
        return m.outcome().code();
    }
    match e.kind() {
        Kind::Usage
        | Kind::Config
        | Kind::NotFound
        | Kind::NoBackup
        | Kind::Busy
        | Kind::Unreachable
        | Kind::Unauthorized
        | Kind::Corrupt
        | Kind::Io
        | Kind::Internal => Outcome::Error.code(),
    }
}

/// The exit code when the command line itself does not parse (or asked for help).
pub fn usage_code(e: &clap::Error) -> i32 {
    if e.use_stderr() {
        Outcome::Usage.code()
    } else {
        Outcome::Done.code()
    }
}

/// An unknown subcommand's tip names the closest command only (clap lists every one above its
/// threshold, least similar first: `install` showed `init` before `install-service`).
pub fn best_suggestion_only(e: &mut clap::Error) {
    use clap::error::{ContextKind, ContextValue};
    if let Some(ContextValue::Strings(names)) = e.get(ContextKind::SuggestedSubcommand)
        && let Some(best) = names.last().cloned()
    {
        e.insert(
            ContextKind::SuggestedSubcommand,
            ContextValue::Strings(vec![best]),
        );
    }
}

fn replicate_kind(e: &ReplicateError) -> Kind {
    use crate::replicate::lineage::LineageError;
    use crate::replicate::lock::LockError;
    match e {
        ReplicateError::Monitor(m) => monitor_kind(m),
        ReplicateError::Replica(r) => replica_kind(r),
        ReplicateError::Lock(LockError::Held { .. }) => Kind::Busy,
        ReplicateError::Lock(LockError::Io { .. }) => Kind::Io,
        ReplicateError::Lineage(l) => match &**l {
            // The user decides: -takeover, or another replica.
            LineageError::Foreign { .. } => Kind::Config,
            LineageError::Damaged { .. } => Kind::Corrupt,
            LineageError::Replica(r) => replica_kind(r),
            LineageError::Local { .. } => Kind::Io,
        },
        ReplicateError::FileLimit(_) | ReplicateError::OutOfFiles { .. } => Kind::Config,
        ReplicateError::Env { .. } => Kind::Config,
        ReplicateError::Metrics { .. } => Kind::Config,
        ReplicateError::Spool { .. } => Kind::Io,
        ReplicateError::Runtime(_)
        | ReplicateError::Signals(_)
        | ReplicateError::Thread(_)
        | ReplicateError::MonitorPanicked { .. } => Kind::Internal,
    }
}

fn monitor_kind(e: &crate::sqlite::monitor::MonitorError) -> Kind {
    use crate::sqlite::conn::OpenError;
    use crate::sqlite::monitor::MonitorError;
    if e.is_busy() {
        return Kind::Busy;
    }
    match e {
        MonitorError::Open(o) => match o {
            OpenError::Missing(_) | OpenError::MissingDir(_) => Kind::NotFound,
            OpenError::NotSqlite(_) => Kind::Corrupt,
            OpenError::NotWal { .. } => Kind::Config,
            OpenError::Sqlite { .. } => Kind::Internal,
            OpenError::Io { .. } => Kind::Io,
        },
        MonitorError::Wal { .. } => Kind::Corrupt,
        MonitorError::Io { .. } | MonitorError::Replaced(_) => Kind::Io,
        MonitorError::Sqlite { .. } | MonitorError::Detached(_) => Kind::Internal,
    }
}

fn replica_kind(e: &ReplicaError) -> Kind {
    match e {
        ReplicaError::NotFound { .. } => Kind::NotFound,
        ReplicaError::AlreadyExists { .. } => Kind::Busy,
        ReplicaError::Storage { source, .. } => match source {
            object_store::Error::Unauthenticated { .. }
            | object_store::Error::PermissionDenied { .. } => Kind::Unauthorized,
            _ => Kind::Unreachable,
        },
        ReplicaError::Timeout { .. } => Kind::Unreachable,
        ReplicaError::Local { .. } | ReplicaError::Write { .. } => Kind::Io,
        ReplicaError::Config { .. } => Kind::Config,
    }
}

fn restore_kind(e: &RestoreError) -> Kind {
    match e {
        RestoreError::OutputExists(_) | RestoreError::OutputNotAFile(_) => Kind::Usage,
        RestoreError::NoOutputDir(_) => Kind::NotFound,
        RestoreError::NoBackup(_) | RestoreError::Plan { .. } | RestoreError::Foreign { .. } => {
            Kind::NoBackup
        }
        RestoreError::Replica(r) => replica_kind(r),
        RestoreError::Url(_) => Kind::Config,
        RestoreError::Corrupt { .. }
        | RestoreError::Diverged { .. }
        | RestoreError::Integrity { .. } => Kind::Corrupt,
        RestoreError::TooLarge { .. } | RestoreError::Io { .. } => Kind::Io,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicate::lock::LockError;

    fn io() -> std::io::Error {
        std::io::Error::other("boom")
    }

    #[test]
    fn kinds_follow_meaning() {
        let held = CliError::from(ReplicateError::from(LockError::Held {
            db: "/d.db".into(),
            holder: "pid 7".into(),
            lock: "/l".into(),
        }));
        assert_eq!(held.kind(), Kind::Busy);
        let timeout = CliError::from(ReplicaError::Timeout {
            replica: "r".into(),
            what: "listing".into(),
            secs: 30,
        });
        assert_eq!(timeout.kind(), Kind::Unreachable);
        let denied = CliError::from(ReplicaError::Storage {
            replica: "r".into(),
            what: "listing".into(),
            source: object_store::Error::PermissionDenied {
                path: "x".into(),
                source: Box::new(io()),
            },
        });
        assert_eq!(denied.kind(), Kind::Unauthorized);
        let empty = CliError::from(RestoreError::NoBackup("r".into()));
        assert_eq!(empty.kind(), Kind::NoBackup);
        assert_eq!(empty.to_string(), "replica r holds no backup");
        assert_eq!(CliError::NoConfigFile.kind(), Kind::Config);
        assert_eq!(CliError::MissingReplica("r".into()).kind(), Kind::NotFound);
        assert_eq!(
            CliError::Arguments("-timestamp and -txid are exclusive").kind(),
            Kind::Usage
        );
        assert_eq!(CliError::Runtime(io()).kind(), Kind::Internal);
    }

    #[test]
    fn exit_codes_are_chosen_here() {
        // Replication and restore failures exit 1 whatever their kind.
        for e in [
            CliError::NoConfigFile,
            CliError::Arguments("x"),
            CliError::from(RestoreError::NoBackup("r".into())),
            CliError::from(ReplicateError::from(LockError::Io {
                path: "/l".into(),
                source: io(),
            })),
        ] {
            assert_eq!(exit_code(&e), 1, "{e}");
        }
        // Memory failures keep their outcome's code.
        let locked = CliError::from(MemoryError::Lock(crate::memory::lock::LockError::Held {
            db: "/s".into(),
            holder: "pid 7".into(),
            waited: 0,
        }));
        assert_eq!(exit_code(&locked), 6);
        assert_eq!(locked.kind(), Kind::Busy);
    }

    #[test]
    fn usage_errors_exit_2_and_help_exits_0() {
        use clap::Parser;
        let bad = super::super::Cli::try_parse_from(["memsync", "frobnicate"]).unwrap_err();
        assert_eq!(usage_code(&bad), 2);
        let help = super::super::Cli::try_parse_from(["memsync", "--help"]).unwrap_err();
        assert_eq!(usage_code(&help), 0);
    }

    #[test]
    fn restore_errors_repeat_the_target() {
        let e = CliError::Restore {
            source: Box::new(RestoreError::NoBackup("r".into())),
            asked: " (state as of 2026-01-01T00:00:00Z)".into(),
        };
        assert_eq!(
            e.to_string(),
            "replica r holds no backup (state as of 2026-01-01T00:00:00Z)"
        );
    }
}
