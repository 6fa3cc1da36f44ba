//! `install-service`, `uninstall-service`, `start-service`, `stop-service`, `restart-service`,
//! `status-service` and `logs`: memsync as a systemd, launchd or Windows service.

use std::path::PathBuf;

use clap::Args;

use super::error::CliError;
use crate::service::{self, Action, Env, Layout, Platform, Scope, ServiceError, Spec};

#[derive(Debug, Args)]
pub(super) struct ServiceArgs {
    /// Print every file (secrets masked) and command instead of writing and running them.
    #[arg(long = "dry-run")]
    dry_run: bool,
    /// A per-user service (the default): ~/.config/systemd/user, ~/Library/LaunchAgents.
    #[arg(long = "user", conflicts_with = "system")]
    user: bool,
    /// A system-wide service: /etc/systemd/system, /Library/LaunchDaemons.
    #[arg(long = "system")]
    system: bool,
    /// Generate for another service manager (systemd, launchd, windows); with --dry-run.
    #[arg(long = "platform", hide = true)]
    platform: Option<String>,
}

#[derive(Debug, Args)]
pub(super) struct LogsArgs {
    /// Keep printing new lines as they come.
    #[arg(short = 'f', long = "follow")]
    follow: bool,
    #[command(flatten)]
    service: ServiceArgs,
}

impl LogsArgs {
    pub(super) fn split(&self) -> (Action, &ServiceArgs) {
        (
            Action::Logs {
                follow: self.follow,
            },
            &self.service,
        )
    }
}

/// The service manager asked for: `--platform` (another one only with `--dry-run`), else this
/// system's.
fn platform(a: &ServiceArgs) -> Result<Platform, CliError> {
    let native = Platform::native();
    let Some(name) = &a.platform else {
        return Ok(native.ok_or(ServiceError::NoPlatform)?);
    };
    let p = Platform::parse(name).ok_or_else(|| CliError::BadFlag {
        flag: "--platform",
        value: name.clone(),
        why: "not systemd, launchd or windows".into(),
    })?;
    if Some(p) != native && !a.dry_run {
        return Err(ServiceError::ForeignPlatform(p.as_str()).into());
    }
    Ok(p)
}

/// The environment the service carries, taken from this process's: memsync's settings, the
/// variables the config file refers to (`$BUCKET`: an unset one would stop the service), and
/// PATH when the config runs an `exec` child (it would get the service manager's).
fn environment() -> Env {
    let vars = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let config = PathBuf::from("litestream.yml");
    let found = cwd.join(&config).is_file().then_some(config.as_path());
    let mut also = Vec::new();
    if let Some(path) = crate::config::default_path()
        && let Ok(text) = std::fs::read_to_string(&path)
    {
        also = crate::config::referenced_vars(&text);
        if crate::config::load(&path, true).is_ok_and(|c| c.exec.is_some()) {
            also.push("PATH".into());
        }
    }
    Env::collect(vars, &cwd, found, &also)
}

/// Refuses to install a service whose `memsync run` would exit at once for having nothing to
/// do (no replication, no memory server): the service manager would restart it in a loop.
fn something_to_run() -> Result<(), CliError> {
    use crate::memory::settings::{Overrides, Settings};
    let overrides = Overrides::default();
    // Settings or a config that do not load are said by the checks made for them.
    let Ok(settings) = Settings::load(&overrides) else {
        return Ok(());
    };
    let cfg = super::common::ConfigArgs {
        config: None,
        no_expand_env: false,
    };
    let Ok(found) = super::source::find_with(&cfg, &overrides) else {
        return Ok(());
    };
    let replicating = found.is_some() && !matches!(settings.litestream_enabled, Some((false, _)));
    if replicating || settings.remote_named {
        return Ok(());
    }
    Err(ServiceError::NothingToRun.into())
}

fn uid() -> u32 {
    #[cfg(unix)]
    let uid = rustix::process::getuid().as_raw();
    #[cfg(not(unix))]
    let uid = 0;
    uid
}

/// Runs one service command; its exit code (a passthrough command's own, for status and logs).
pub(super) fn cmd_service(action: Action, a: &ServiceArgs) -> Result<i32, CliError> {
    let platform = platform(a)?;
    let layout = Layout::from_env();
    let explicit = match (a.user, a.system) {
        (true, _) => Some(Scope::User),
        (_, true) => Some(Scope::System),
        _ => None,
    };
    let scope = match (platform, action) {
        (Platform::Windows, _) => Scope::System,
        (_, Action::Install) => explicit.unwrap_or(Scope::User),
        _ => Scope::pick(
            explicit,
            service::installed(platform, &layout, Scope::User),
            service::installed(platform, &layout, Scope::System),
        ),
    };
    if action == Action::Install
        && let Some(path) = crate::config::default_path()
    {
        crate::config::load(&path, true).map_err(|e| ServiceError::Config(Box::new(e)))?;
    }
    let exe = std::env::current_exe().map_err(ServiceError::Exe)?;
    let env = environment();
    let spec = Spec {
        exe,
        args: vec!["run".into()],
        env: if a.dry_run { env.masked() } else { env },
        scope,
        layout,
        uid: uid(),
        // `sudo memsync install-service --system`: the service runs as the user who asked.
        run_as: std::env::var("SUDO_USER")
            .ok()
            .filter(|u| !u.is_empty() && u != "root"),
    };
    let plan = service::plan(platform, action, &spec)?;
    if action == Action::Install {
        something_to_run()?;
    }
    if a.dry_run {
        crate::stdout::text(&service::render(platform, &plan));
        return Ok(0);
    }
    Ok(service::apply(platform, &plan)?.code)
}
