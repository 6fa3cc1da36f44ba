//! Running memsync as a service: a systemd unit, a launchd agent or a Windows service that runs
//! `memsync run`, restarts it on failure and carries the settings it needs.
//!
//! The generators (`systemd`, `launchd`, `windows`) are pure: from a [`Spec`] they return a
//! [`Plan`] (directories, files and commands, in order), so every platform is tested on any
//! host. `apply` carries a plan out (or prints it, for `--dry-run`); `env` picks the
//! environment and tells secrets apart.

mod apply;
pub mod env;
mod error;
#[cfg(windows)]
pub mod host;
mod launchd;
mod layout;
mod quote;
mod systemd;
mod windows;
#[cfg(windows)]
pub use windows::log_path as windows_log_path;
#[cfg(windows)]
pub use windows::parse_secrets as parse_windows_secrets;

use std::path::PathBuf;

pub use apply::{apply, render};
pub use env::Env;
pub use error::ServiceError;
pub use layout::Layout;

/// The name of the service: the systemd unit's and the log directories' name.
pub const NAME: &str = "mcp-memory-sync";
/// The launchd label.
pub const LABEL: &str = "com.mcp.memory.sync";
/// The Windows service's name (and display name).
pub const WINDOWS_NAME: &str = "MCP Memory Sync";
/// What the service says it is.
pub const DESCRIPTION: &str = "MCP Memory Sync: memsync replication and memory sync";
/// Seconds a failed service waits before it is started again.
pub const RESTART_SECS: u32 = 10;
/// How long a stop may take to ship what is committed (systemd's `TimeoutStopSec`, the wait
/// after a Windows `sc stop`).
pub const STOP_SECS: u64 = 60;

/// The service manager a plan is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Systemd,
    Launchd,
    Windows,
}

impl Platform {
    /// The platform of the running system, if memsync knows its service manager.
    pub fn native() -> Option<Platform> {
        if cfg!(target_os = "macos") {
            Some(Platform::Launchd)
        } else if cfg!(windows) {
            Some(Platform::Windows)
        } else if cfg!(target_os = "linux") {
            Some(Platform::Systemd)
        } else {
            None
        }
    }

    pub fn parse(s: &str) -> Option<Platform> {
        match s {
            "systemd" => Some(Platform::Systemd),
            "launchd" => Some(Platform::Launchd),
            "windows" => Some(Platform::Windows),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Systemd => "systemd",
            Platform::Launchd => "launchd",
            Platform::Windows => "windows",
        }
    }
}

/// A per-user service (runs while the user's service manager does) or a system-wide one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    User,
    System,
}

impl Scope {
    /// `--user`/`--system` if given, else the scope whose service file exists (user first),
    /// else user.
    pub fn pick(explicit: Option<Scope>, user_installed: bool, system_installed: bool) -> Scope {
        match explicit {
            Some(s) => s,
            None if !user_installed && system_installed => Scope::System,
            None => Scope::User,
        }
    }
}

/// What the service runs and with which settings: the generators' whole input.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Absolute path of the memsync binary.
    pub exe: PathBuf,
    /// Its arguments (`run`).
    pub args: Vec<String>,
    pub env: Env,
    pub scope: Scope,
    /// Where files go.
    pub layout: Layout,
    /// The numeric user id (launchd's `gui/<uid>` domain).
    pub uid: u32,
    /// A system-wide systemd service runs as this user (`User=`), when set.
    pub run_as: Option<String>,
}

/// A file to write: temp file, fsync, rename.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileWrite {
    pub path: PathBuf,
    pub mode: u32,
    pub content: String,
}

/// A program a plan runs, found on `PATH` unless its variable names it (tests point
/// `MEMSYNC_SYSTEMCTL` at `/bin/true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    Systemctl,
    Journalctl,
    Launchctl,
    Tail,
    Sc,
    Reg,
    /// Windows' ACL tool: the secrets directory is made readable by SYSTEM and Administrators
    /// only.
    Icacls,
    PowerShell,
}

impl Program {
    /// The name looked up on `PATH`.
    pub fn name(self) -> &'static str {
        match self {
            Program::Systemctl => "systemctl",
            Program::Journalctl => "journalctl",
            Program::Launchctl => "launchctl",
            Program::Tail => "tail",
            Program::Sc => "sc.exe",
            Program::Reg => "reg.exe",
            Program::Icacls => "icacls.exe",
            Program::PowerShell => "powershell.exe",
        }
    }

    /// The variable that names the program's path instead.
    pub fn override_var(self) -> Option<&'static str> {
        match self {
            Program::Systemctl => Some("MEMSYNC_SYSTEMCTL"),
            Program::Journalctl => Some("MEMSYNC_JOURNALCTL"),
            Program::Launchctl => Some("MEMSYNC_LAUNCHCTL"),
            Program::Tail | Program::Sc | Program::Reg | Program::Icacls | Program::PowerShell => {
                None
            }
        }
    }
}

/// A command a plan runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub program: Program,
    pub args: Vec<String>,
    /// A failure stops the plan (else it is reported and the plan goes on: stopping a service
    /// that is not running before removing it).
    pub check: bool,
    /// The command talks to the user (status, logs): its output is not captured and its exit
    /// code is memsync's.
    pub passthrough: bool,
}

impl Cmd {
    fn new(program: Program, args: &[&str]) -> Cmd {
        Cmd {
            program,
            args: args.iter().map(|s| s.to_string()).collect(),
            check: true,
            passthrough: false,
        }
    }

    fn lenient(mut self) -> Cmd {
        self.check = false;
        self
    }

    fn passthrough(mut self) -> Cmd {
        self.passthrough = true;
        self
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create a directory (and its parents) with this mode if it is missing.
    Mkdir {
        path: PathBuf,
        mode: u32,
    },
    Write(FileWrite),
    /// Remove a file if it is there.
    Remove(PathBuf),
    /// Remove a directory the install made, if nothing else is in it.
    RemoveDirIfEmpty(PathBuf),
    Run(Cmd),
    /// Wait until the Windows service has stopped: `sc stop` only asks, so a `start` right
    /// after it would find the old instance still shipping what is committed.
    AwaitStopped {
        service: String,
        secs: u64,
    },
}

/// What a command does, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Said to the user after the plan ran (or was printed).
    pub notes: Vec<String>,
}

#[cfg(test)]
impl Plan {
    /// The files the plan writes.
    pub fn files(&self) -> impl Iterator<Item = &FileWrite> {
        self.steps.iter().filter_map(|s| match s {
            Step::Write(f) => Some(f),
            _ => None,
        })
    }

    /// The commands the plan runs.
    pub fn commands(&self) -> impl Iterator<Item = &Cmd> {
        self.steps.iter().filter_map(|s| match s {
            Step::Run(c) => Some(c),
            _ => None,
        })
    }
}

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Install,
    Uninstall,
    Start,
    Stop,
    Restart,
    Status,
    Logs { follow: bool },
}

/// The plan for `action` on `platform`.
pub fn plan(platform: Platform, action: Action, spec: &Spec) -> Result<Plan, ServiceError> {
    match platform {
        Platform::Systemd => systemd::plan(action, spec),
        Platform::Launchd => launchd::plan(action, spec),
        Platform::Windows => windows::plan(action, spec),
    }
}

/// True if the service file for `scope` is there (which scope a control command acts on).
pub fn installed(platform: Platform, layout: &Layout, scope: Scope) -> bool {
    match platform {
        Platform::Systemd => layout.systemd_unit(scope).is_ok_and(|p| p.exists()),
        Platform::Launchd => layout.launchd_plist(scope).is_ok_and(|p| p.exists()),
        Platform::Windows => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_follows_flag_then_what_is_installed() {
        assert_eq!(Scope::pick(Some(Scope::System), true, false), Scope::System);
        assert_eq!(Scope::pick(None, false, true), Scope::System);
        assert_eq!(Scope::pick(None, true, true), Scope::User);
        assert_eq!(Scope::pick(None, false, false), Scope::User);
    }
}
