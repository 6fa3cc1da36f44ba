//! Command-line interface. Flags are accepted with one dash (Litestream's spelling, e.g.
//! `-config`) or two (`--config`).
//!
//! One file per family of commands: `replication` (replicate, databases, snapshots, wal),
//! `restore`, `serve`, `bench` (bench and demo), `service` (install-service and the
//! commands around it); the memory commands live in `crate::memory::cli`;
//! `common` holds what they share (config and replica arguments, the runtime); `error` what a
//! failure means and its exit code; `logging` the log flags every command takes.

mod bench;
mod common;
mod dryrun;
mod error;
mod exit;
mod foreign;
mod logging;
mod pick;
mod replication;
mod restore;
mod restore_all;
mod run;
mod serve;
mod service;
mod source;

use std::ffi::OsString;

use clap::{Parser, Subcommand};

use crate::service::Action;
use common::normalize_args;
use error::CliError;

/// memsync: SQLite replication and memory sync.
#[derive(Debug, Parser)]
#[command(
    name = "memsync",
    version,
    about,
    after_help = crate::memory::outcome::HELP
)]
pub struct Cli {
    #[command(flatten)]
    log: logging::LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Continuously replicate databases (from -config, or DB_PATH REPLICA_URL...).
    Replicate(replication::ReplicateArgs),
    /// One long-running process: replicate (litestream.yml, or LITESTREAM_REPLICA_PATH) and
    /// sync memories every SYNC_INTERVAL, until SIGTERM/SIGINT; -exec runs an application.
    Run(run::RunArgs),
    /// Rebuild a database from a replica, latest or at a point in time.
    Restore(restore::RestoreArgs),
    /// List the snapshots a replica holds.
    Snapshots(replication::ListArgs),
    /// List the WAL segments a replica holds.
    #[command(alias = "segments", alias = "ltx")]
    Wal(replication::ListArgs),
    /// List the databases of a config file (those found in `dir` entries too, or of
    /// LITESTREAM_REPLICA_PATH), their replicas and where their settings came from.
    Databases(replication::DatabasesArgs),
    /// Serve a directory of replicas over HTTP(S) (WebDAV), the backup server for HTTP replicas.
    Serve(serve::ServeArgs),
    /// Print the version.
    Version(VersionArgs),
    /// Replicate a demo memory database to a local file replica, restore and verify it.
    Demo(bench::DemoArgs),
    /// Measure memsync (and Litestream, when found) on an mcp-memory-service workload.
    Bench(bench::BenchArgs),
    /// Install memsync as a service running `memsync run` (systemd user unit by default,
    /// launchd agent on macOS), restarted on failure; --dry-run prints what it would do.
    InstallService(service::ServiceArgs),
    /// Stop and remove the service and its environment file.
    UninstallService(service::ServiceArgs),
    /// Start the installed service.
    StartService(service::ServiceArgs),
    /// Stop the installed service.
    StopService(service::ServiceArgs),
    /// Restart the installed service.
    RestartService(service::ServiceArgs),
    /// Show the service manager's status of the service (exits with systemctl's or launchctl's
    /// own code: systemctl exits 3 for a stopped service).
    StatusService(service::ServiceArgs),
    /// Show the service's logs (journal on Linux, ~/Library/Logs/mcp-memory-sync on macOS, %ProgramData%\memsync\memsync.log on Windows).
    Logs(service::LogsArgs),
    #[command(flatten)]
    Memory(crate::memory::cli::MemoryCommand),
}

/// Runs the command line; returns the process exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    crate::log::init();
    // An installed service runs in the folder `install-service` was run in, so that relative
    // paths in its config (and its `exec` command) mean what they meant there.
    if let Some(dir) = std::env::var_os("MEMSYNC_WORKDIR").filter(|d| !d.is_empty())
        && let Err(e) = std::env::set_current_dir(&dir)
    {
        crate::stdout::errln!(
            "memsync: error: MEMSYNC_WORKDIR {}: {e}",
            std::path::Path::new(&dir).display()
        );
        return 1;
    }
    let args = common::go_bools(
        &<Cli as clap::CommandFactory>::command(),
        normalize_args(args),
    );
    if let Some(why) = foreign::refusal(&args) {
        crate::stdout::errln!("memsync: error: {why}");
        return exit::USAGE;
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(mut e) => {
            exit::best_suggestion_only(&mut e);
            match exit::usage_line(&e) {
                Some(line) => crate::stdout::errln!("{line}"),
                None => {
                    let _ = e.print();
                }
            }
            return exit::usage_code(&e);
        }
    };
    let res = logging::Overrides::from_args(
        &cli.log,
        std::env::var("LOG_LEVEL").ok(),
        std::env::var("LOG_FORMAT").ok(),
    )
    .and_then(|log| run(cli.command, &log));
    match res {
        Ok(code) => code,
        Err(e) => {
            // With JSON logs, the line that says why memsync stopped is JSON too, where the
            // logs go (a collector got every line but that one).
            if crate::log::is_json() {
                tracing::error!("memsync: error: {e}");
            } else {
                crate::stdout::errln!("memsync: error: {e}");
            }
            exit::exit_code(&e)
        }
    }
}

/// A memory command: its text on stdout, its outcome as the exit code (a finished run that left
/// failed rows or open conflicts still prints its summary, and exits 3 or 4).
fn run_memory(m: crate::memory::cli::MemoryCommand) -> Result<i32, CliError> {
    let (text, outcome) = crate::memory::cli::run(m)?;
    if !text.is_empty() {
        crate::stdout::outln!("{text}");
    }
    Ok(outcome.code())
}

/// `version`'s flags.
#[derive(Debug, clap::Args)]
pub(super) struct VersionArgs {
    /// Also say what it was built for (Litestream's `version -verbose`).
    #[arg(long = "verbose")]
    verbose: bool,
}

/// Runs one command; its exit code (0, or a memory command's outcome).
fn run(command: Command, log: &logging::Overrides) -> Result<i32, CliError> {
    log.apply();
    match &command {
        // Long-running (the service runs `run` with this environment): refused, as ever.
        Command::Replicate(_)
        | Command::Run(_)
        | Command::Serve(_)
        | Command::InstallService(_) => log.check_env()?,
        _ => log.warn_bad_env(),
    }
    match command {
        Command::Replicate(a) => return replication::cmd_replicate(a, log),
        Command::Run(a) => return run::cmd_run(a, log),
        Command::Restore(a) => restore::cmd_restore(a)?,
        Command::Snapshots(a) => replication::cmd_list(a, true)?,
        Command::Wal(a) => replication::cmd_list(a, false)?,
        Command::Databases(a) => replication::cmd_databases(&a)?,
        Command::Serve(a) => serve::cmd_serve(a)?,
        Command::Demo(a) => crate::stdout::outln!(
            "{}",
            crate::demo::run(&a.dir, a.seconds).map_err(CliError::Tool)?
        ),
        Command::Bench(a) => bench::cmd_bench(a)?,
        Command::Memory(m) => return run_memory(m),
        Command::InstallService(a) => return service::cmd_service(Action::Install, &a),
        Command::UninstallService(a) => return service::cmd_service(Action::Uninstall, &a),
        Command::StartService(a) => return service::cmd_service(Action::Start, &a),
        Command::StopService(a) => return service::cmd_service(Action::Stop, &a),
        Command::RestartService(a) => return service::cmd_service(Action::Restart, &a),
        Command::StatusService(a) => return service::cmd_service(Action::Status, &a),
        Command::Logs(a) => {
            let (action, a) = a.split();
            return service::cmd_service(action, a);
        }
        Command::Version(v) => {
            crate::stdout::outln!("memsync {}", env!("CARGO_PKG_VERSION"));
            if v.verbose {
                crate::stdout::outln!(
                    "built for {}-{}; SQLite {} (bundled); replica format: memsync's own (not Litestream's LTX)",
                    std::env::consts::ARCH,
                    std::env::consts::OS,
                    rusqlite::version()
                );
            }
        }
    }
    Ok(0)
}
