//! Where a service's files go, per platform and scope.

use std::path::PathBuf;

use super::{LABEL, NAME, Scope, ServiceError};

/// The directories the paths are built from (from `HOME` and `XDG_CONFIG_HOME`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    pub home: Option<PathBuf>,
    /// `XDG_CONFIG_HOME`, when set to an absolute path.
    pub config_home: Option<PathBuf>,
}

impl Layout {
    /// The layout of the current user's environment.
    pub fn from_env() -> Layout {
        let var = |n: &str| {
            std::env::var_os(n)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        Layout {
            home: var("HOME"),
            config_home: var("XDG_CONFIG_HOME"),
        }
    }

    fn home(&self) -> Result<&PathBuf, ServiceError> {
        self.home.as_ref().ok_or(ServiceError::NoHome)
    }

    /// `$XDG_CONFIG_HOME`, else `~/.config`.
    fn config_dir(&self) -> Result<PathBuf, ServiceError> {
        match &self.config_home {
            Some(c) => Ok(c.clone()),
            None => Ok(self.home()?.join(".config")),
        }
    }

    /// The systemd unit file.
    pub fn systemd_unit(&self, scope: Scope) -> Result<PathBuf, ServiceError> {
        let file = format!("{NAME}.service");
        Ok(match scope {
            Scope::User => self.config_dir()?.join("systemd/user").join(file),
            Scope::System => PathBuf::from("/etc/systemd/system").join(file),
        })
    }

    /// The directory of the service's environment file (mode 0700).
    pub fn env_dir(&self, scope: Scope) -> Result<PathBuf, ServiceError> {
        Ok(match scope {
            Scope::User => self.config_dir()?.join(NAME),
            Scope::System => PathBuf::from("/etc").join(NAME),
        })
    }

    /// The systemd environment file (mode 0600).
    pub fn env_file(&self, scope: Scope) -> Result<PathBuf, ServiceError> {
        Ok(self.env_dir(scope)?.join("service.env"))
    }

    /// The launchd property list.
    pub fn launchd_plist(&self, scope: Scope) -> Result<PathBuf, ServiceError> {
        let file = format!("{LABEL}.plist");
        Ok(match scope {
            Scope::User => self.home()?.join("Library/LaunchAgents").join(file),
            Scope::System => PathBuf::from("/Library/LaunchDaemons").join(file),
        })
    }

    /// The launchd service's log directory.
    pub fn launchd_log_dir(&self, scope: Scope) -> Result<PathBuf, ServiceError> {
        Ok(match scope {
            Scope::User => self.home()?.join("Library/Logs").join(NAME),
            Scope::System => PathBuf::from("/Library/Logs").join(NAME),
        })
    }

    /// The launchd service's log file (its standard output and error both).
    pub fn launchd_log(&self, scope: Scope) -> Result<PathBuf, ServiceError> {
        Ok(self.launchd_log_dir(scope)?.join("memsync.log"))
    }
}
