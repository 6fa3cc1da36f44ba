//! What a failed command means and how memsync exits: each [`CliError`] classified by what to
//! do about it ([`Kind`]), the exit code, and clap's own usage errors.

use super::error::CliError;
use crate::exec::ExecError;
use crate::memory::outcome::Outcome;
use crate::replica::ReplicaError;
use crate::replicate::ReplicateError;
use crate::restore::RestoreError;
use crate::serve::ServeError;
use crate::service::ServiceError;
use crate::supervise::SuperviseError;

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
            | CliError::EnvLogLevel(_)
            | CliError::LogFormat(_)
            | CliError::EnvLogFormat(_) => Kind::Usage,
            CliError::NoConfigFile | CliError::Config(_) => Kind::Config,
            CliError::NotAReplica { .. }
            | CliError::NotInConfig { .. }
            | CliError::NoSuchReplica { .. }
            | CliError::NotThatReplica { .. }
            | CliError::NotADirectory { .. }
            | CliError::NoDatabases(_)
            | CliError::LitestreamDatabases { .. }
            | CliError::MissingReplica(_)
            | CliError::MissingProgram { .. } => Kind::NotFound,
            CliError::Path { .. } | CliError::RestoreAll { .. } => Kind::Io,
            CliError::OnceIncomplete(_) | CliError::NoReplicaAnswered { .. } => Kind::Unreachable,
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
                ServiceError::Config(_) | ServiceError::NothingToRun => Kind::Config,
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

/// The exit code of a command line memsync does not run (as one that does not parse).
pub const USAGE: i32 = Outcome::Usage as i32;

/// The exit code when the command line itself does not parse (or asked for help).
pub fn usage_code(e: &clap::Error) -> i32 {
    if e.use_stderr() {
        Outcome::Usage.code()
    } else {
        Outcome::Done.code()
    }
}

/// A usage error as one line, as every other error (`None` for help and version, printed as
/// clap writes them): clap's message, what it lists below it, its tip and the usage line.
pub fn usage_line(e: &clap::Error) -> Option<String> {
    use clap::error::ErrorKind;
    if !e.use_stderr() || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return None;
    }
    let text = e.render().to_string();
    let (mut main, mut listed, mut notes) = (String::new(), Vec::new(), Vec::new());
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(m) = line.strip_prefix("error: ") {
            main = m.to_owned();
        } else if let Some(tip) = line.strip_prefix("tip: ") {
            notes.push(format!("tip: {tip}"));
        } else if let Some(u) = line.strip_prefix("Usage: ") {
            notes.push(format!("usage: {u}"));
        } else if !line.starts_with("For more information") {
            listed.push(line.to_owned());
        }
    }
    if !listed.is_empty() {
        main = format!("{main} {}", listed.join(", "));
    }
    notes.push("see --help".to_owned());
    Some(one_dash_letters(&format!(
        "memsync: error: {main} ({})",
        notes.join("; ")
    )))
}

/// clap writes a one-letter long flag with two dashes (`--o`); people write `-o`, as
/// Litestream's help does, so the message does too.
fn one_dash_letters(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.char_indices() {
        let starts_flag = c == '-'
            && b.get(i + 1) == Some(&b'-')
            && b.get(i + 2).is_some_and(u8::is_ascii_alphabetic)
            && !b
                .get(i + 3)
                .is_some_and(|n| n.is_ascii_alphanumeric() || *n == b'-')
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric() && b[i - 1] != b'-');
        if !starts_flag {
            out.push(c);
        }
    }
    out
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
            LineageError::Foreign { .. }
            | LineageError::Copy { .. }
            | LineageError::Litestream { .. } => Kind::Config,
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
        | ReplicateError::MonitorPanicked { .. }
        | ReplicateError::ShipperPanicked { .. } => Kind::Internal,
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
            OpenError::Missing(_) | OpenError::MissingDir(_) | OpenError::Empty(_) => {
                Kind::NotFound
            }
            OpenError::NotSqlite(_) | OpenError::NotAFile(_) => Kind::Corrupt,
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
        RestoreError::OutputExists(_)
        | RestoreError::Leftover(_)
        | RestoreError::OutputNotAFile(_) => Kind::Usage,
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
    use crate::memory::MemoryError;
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

    /// Usage errors are one line, like every other error; help stays clap's.
    #[test]
    fn usage_errors_are_one_line() {
        use clap::Parser;
        for args in [
            &["memsync", "bogus"][..],
            &["memsync", "push", "--bogus"],
            &["memsync", "restore"],
            &["memsync", "restore", "--timestamp"],
        ] {
            let e = super::super::Cli::try_parse_from(args).unwrap_err();
            let line = usage_line(&e).unwrap();
            assert!(!line.contains('\n'), "{args:?}: {line}");
            assert!(line.starts_with("memsync: error: "), "{line}");
        }
        let e = super::super::Cli::try_parse_from(["memsync", "restore"]).unwrap_err();
        let line = usage_line(&e).unwrap();
        assert!(
            line.contains("<TARGET>") && line.contains("usage: memsync restore <TARGET>"),
            "{line}"
        );
        let help = super::super::Cli::try_parse_from(["memsync", "--help"]).unwrap_err();
        assert!(usage_line(&help).is_none());
        // A one-letter flag is written as people type it.
        let e = super::super::Cli::try_parse_from(["memsync", "restore", "--bogus"]).unwrap_err();
        let line = usage_line(&e).unwrap();
        assert!(line.contains("memsync restore -o <OUTPUT>"), "{line}");
        assert!(!line.contains("--o"), "{line}");
        assert!(
            line.contains("'--bogus'") && line.contains("see --help"),
            "{line}"
        );
    }

    #[test]
    fn restore_errors_repeat_the_target() {
        let e = CliError::Restore {
            source: Box::new(RestoreError::NoBackup("r".into())),
            asked: " (asked for the state as of 2026-01-01T00:00:00Z)".into(),
        };
        assert_eq!(
            e.to_string(),
            "replica r holds no backup (asked for the state as of 2026-01-01T00:00:00Z)"
        );
    }
}
