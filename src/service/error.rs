//! Why a service command failed: one line saying what and where.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ServiceError {
    /// A user service's files go under the home directory.
    #[error(
        "no home directory (HOME is unset or not absolute) for the user service's files: set HOME, or use --system"
    )]
    NoHome,
    /// The running executable's path is needed for the service's command line.
    #[error("cannot find memsync's own executable: {0}")]
    Exe(#[source] std::io::Error),
    /// No service manager memsync knows on this system.
    #[error(
        "no service manager memsync knows on this system (systemd, launchd or Windows services)"
    )]
    NoPlatform,
    /// `--platform` names another system's service manager.
    #[error("--platform {0}: not this system's service manager; only with --dry-run")]
    ForeignPlatform(&'static str),
    /// The Windows service manager refused to run memsync as its service (typically: started
    /// from a console rather than by the service manager).
    #[cfg_attr(not(windows), allow(dead_code))]
    #[error("the Windows service manager: {0}")]
    Host(String),
    /// Something memsync cannot do (yet) on this platform.
    #[cfg_attr(windows, allow(dead_code))]
    #[error("{what}: not supported yet")]
    Unsupported { what: &'static str },
    #[error("creating directory {}: {source}", path.display())]
    Mkdir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("removing {}: {source}", path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The config the service would load does not: installing it would make a service that
    /// fails at every start, so nothing is installed.
    #[error("the service would not start, nothing installed: {0}")]
    Config(#[source] Box<crate::config::ConfigError>),
    /// Neither replication nor memory sync is configured: `memsync run` would exit at once.
    #[error(
        "the service would not start, nothing installed: nothing to run (no litestream.yml here or in /etc, no LITESTREAM_REPLICA_PATH, and no memory server: REMOTE_MEMORY_HOST)"
    )]
    NothingToRun,
    /// A program the plan runs is not there.
    #[error("{program} not found ({looked}){hint}")]
    ProgramMissing {
        program: &'static str,
        /// Where it was looked for.
        looked: String,
        /// What to do about it.
        hint: String,
    },
    /// A program could not be started.
    #[error("running {command}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// A program ran and failed; `detail` is the first line it printed on stderr.
    #[error("{command} failed ({status}): {detail}")]
    Failed {
        command: String,
        status: String,
        detail: String,
    },
    /// The service was asked to stop and had not after the stop timeout.
    #[cfg_attr(not(windows), allow(dead_code))]
    #[error(
        "the service \"{service}\" had not stopped {secs} s after it was asked to (its log says what it is doing: memsync logs)"
    )]
    StopTimeout { service: String, secs: u64 },
}
