//! `memsync run`: the long-running process a service starts. Replication as `replicate` does
//! it (the config file, else `LITESTREAM_REPLICA_PATH`; switched off by `LITESTREAM_ENABLED` /
//! `litestream_enabled` false) and, when a memory server is configured, a `sync` round every
//! `SYNC_INTERVAL`, with one shutdown and an optional `-exec` child (`crate::supervise`).

use clap::Args;

use super::common::ConfigArgs;
use super::error::CliError;
use super::logging::Overrides;
use crate::exec::ExecCommand;
use crate::memory::MemoryError;
use crate::memory::cli::RemoteArgs;
use crate::memory::rounds::Round;
use crate::memory::settings::Settings;
use crate::replicate::ReplicateOptions;
use crate::stats::{SyncRound, SyncStats};
use crate::supervise::{self, Plan};
use std::sync::Arc;

#[derive(Debug, Args)]
pub(super) struct RunArgs {
    #[command(flatten)]
    cfg: ConfigArgs,
    /// Run this command as a child once replication runs, forward stop signals to it, and
    /// exit with its code when it exits (over the config's `exec`).
    #[arg(long = "exec", value_name = "CMD")]
    exec: Option<String>,
    /// Switch a rollback-journal database to WAL mode instead of refusing it.
    #[arg(long = "convert-to-wal")]
    convert_to_wal: bool,
    /// Replace replicas that belong to another database (deletes their files).
    #[arg(long = "takeover")]
    takeover: bool,
    #[command(flatten)]
    remote: RemoteArgs,
    /// Run under the Windows service manager (what `install-service` registers; logs go to
    /// `%ProgramData%\memsync\memsync.log`).
    #[arg(long = "windows-service", hide = true)]
    windows_service: bool,
    /// With --windows-service: the secret settings `install-service` wrote (the path is given
    /// rather than looked up: a service's `%ProgramData%` need not be the installer's).
    #[arg(long = "secrets-file", hide = true, value_name = "FILE")]
    secrets_file: Option<std::path::PathBuf>,
}

/// A sync round in the log: its summary lines, or why it failed.
///
fn log_round(r: &Round, interval: std::time::Duration, replicating: bool) {
    match &r.result {
        Ok(rep) => {
            for l in &rep.lines {
                tracing::info!("sync round {}: {l}", r.number);
            }
            for n in &rep.notes {
                tracing::warn!(
                    "sync round {}: {}",
                    r.number,
                    n.trim_start_matches("memsync: ")
                );
            }
            let c = rep.counts;
            tracing::info!(
                "sync round {} done in {:.2}s: pulled {} new, {} changed, {} removed; pushed {}, failed {}, conflicts {} (as `sync` it would exit {})",
                r.number,
                r.duration.as_secs_f64(),
                c.added,
                c.changed,
                c.removed,
                c.pushed,
                c.failed,
                c.conflicts,
                rep.outcome.code()
            );
        }
        Err(e) => tracing::warn!(
            "sync round {} failed (next round in {}s{}): {e}",
            r.number,
            interval.as_secs(),
            if replicating {
                "; replication goes on"
            } else {
                ""
            }
        ),
    }
}

/// A round as the metrics count it.
fn counted(r: &Round) -> SyncRound {
    match &r.result {
        Ok(rep) => {
            let c = rep.counts;
            SyncRound {
                error: None,
                pulled: (c.added + c.changed + c.removed) as u64,
                pushed: c.pushed as u64,
                conflicts: c.conflicts as u64,
                failed_rows: c.failed as u64,
                duration: r.duration,
            }
        }
        Err(e) => SyncRound {
            error: Some(e.to_string()),
            pulled: 0,
            pushed: 0,
            conflicts: 0,
            failed_rows: 0,
            duration: r.duration,
        },
    }
}

pub(super) fn cmd_run(mut a: RunArgs, log: &Overrides) -> Result<i32, CliError> {
    if std::mem::take(&mut a.windows_service) {
        return as_windows_service(a, log.clone());
    }
    let overrides = a.remote.overrides();
    let settings = Settings::load(&overrides).map_err(MemoryError::from)?;
    let found = super::source::find_with(&a.cfg, &overrides)?;
    super::replication::apply_logging(
        found.as_ref().map(|f| f.config.logging).unwrap_or_default(),
        log,
    )?;
    if let Some(n) = found.as_ref().and_then(|f| f.note.as_deref()) {
        tracing::info!("{n}");
    }
    let exec = a
        .exec
        .or_else(|| found.as_ref().and_then(|f| f.config.exec.clone()));
    let sync = if settings.remote_named {
        Some(crate::memory::rounds::Rounds::new(settings.clone()))
    } else {
        tracing::info!(
            "memory sync off: no server configured (REMOTE_MEMORY_HOST or REMOTE_MEMORY_PORT, or remote.host in the settings file)"
        );
        None
    };
    // Rounds are counted for /metrics and /health (`addr`).
    let sync_stats = sync.as_ref().map(|_| Arc::new(SyncStats::default()));
    // A config file's `addr` is served even when replication is switched off.
    let found_addr = found.as_ref().and_then(|f| f.config.addr.clone());
    let replication = match (found, &settings.litestream_enabled) {
        (_, Some((false, from))) => {
            tracing::info!("replication off: {from} is false");
            None
        }
        (Some(mut f), _) => {
            // Directory entries: the databases found now are replicated like configured ones
            // (as `replicate` does; a watched directory also picks up later ones).
            for s in crate::config::discover::expand(&mut f.config, a.convert_to_wal)? {
                tracing::warn!("{}: {}; not replicated", s.path.display(), s.why);
            }
            Some((
                f.config,
                ReplicateOptions {
                    convert_to_wal: a.convert_to_wal,
                    takeover: a.takeover,
                    ..Default::default()
                },
            ))
        }
        (None, _) => {
            tracing::info!(
                "replication off: no config file and no {}",
                crate::config::zeroconf::REPLICA_VAR
            );
            None
        }
    };
    if replication.is_none() && sync.is_none() {
        return Err(CliError::Arguments(
            "run: nothing to run: no replication (no config file, no LITESTREAM_REPLICA_PATH, or LITESTREAM_ENABLED=false) and no memory server (REMOTE_MEMORY_HOST)",
        ));
    }
    // The config's `addr` (zero-config: `MEMSYNC_ADDR`), else `MEMSYNC_ADDR` when only
    // memory sync runs.
    let addr = found_addr.or_else(|| {
        std::env::var(crate::config::zeroconf::ADDR_VAR)
            .ok()
            .filter(|v| !v.trim().is_empty())
    });
    let serve = addr.map(|addr| supervise::Serve {
        addr,
        exposed: Arc::new(crate::metrics::Exposed::new(Vec::new(), sync_stats.clone())),
    });
    let interval = sync.as_ref().map(|s| s.interval()).unwrap_or_default();
    let replicating = replication.is_some();
    let plan = Plan {
        serve,
        replication,
        sync,
        exec: exec.as_deref().map(ExecCommand::parse).transpose()?,
        // Counted before it is logged: whoever reads the log line finds /metrics agreeing.
        observe: Box::new(move |r| {
            if let Some(stats) = &sync_stats {
                stats.record_round(&counted(r));
            }
            log_round(r, interval, replicating);
        }),
    };
    Ok(supervise::run(plan)?)
}

/// `run --windows-service`: the same process, started and stopped by the service manager.
#[cfg(windows)]
fn as_windows_service(a: RunArgs, log: Overrides) -> Result<i32, CliError> {
    let path = crate::service::windows_log_path();
    crate::log::to_file(&path).map_err(|source| CliError::Path { path, source })?;
    if let Some(f) = &a.secrets_file {
        load_service_secrets(f);
    }
    // A service has no console: a panic's message would be lost with its stderr.
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!("panic: {info}");
        default(info);
    }));
    let body = Box::new(move || match cmd_run(a, &log) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e}");
            super::exit::exit_code(&e)
        }
    });
    Ok(crate::service::host::run(body)?)
}

/// The secret settings `install-service` wrote for the service (a file only SYSTEM and
/// Administrators may read), into the environment where they are not set already.
#[cfg(windows)]
fn load_service_secrets(path: &std::path::Path) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::error!(
                "{}: {e}; the service runs without its secret settings",
                path.display()
            );
            return;
        }
    };
    match crate::service::parse_windows_secrets(&text) {
        Ok(vars) => {
            let mut names = Vec::new();
            for (k, v) in vars {
                if std::env::var_os(&k).is_none() {
                    // SAFETY: before the service's threads start; Windows guards its
                    // environment block itself.
                    unsafe { std::env::set_var(&k, v) };
                    names.push(k);
                }
            }
            tracing::info!(
                "secret settings from {}: {}",
                path.display(),
                names.join(", ")
            );
        }
        Err(e) => tracing::error!(
            "{}: {e}; the service runs without its secret settings",
            path.display()
        ),
    }
}

#[cfg(not(windows))]
fn as_windows_service(_: RunArgs, _: Overrides) -> Result<i32, CliError> {
    Err(crate::service::ServiceError::Unsupported {
        what: "--windows-service outside Windows",
    }
    .into())
}
