//! The replication commands: `replicate`, `databases`, and the listings `snapshots` and `wal`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Args;

use super::common::{ConfigArgs, fmt_ts, open_client, resolve, runtime};
use super::error::CliError;
use super::logging::Overrides;
use crate::config;
use crate::replicate::{self, ReplicateOptions};
use crate::restore;

#[derive(Debug, Args)]
pub(super) struct ReplicateArgs {
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
    /// Run this command as a child once replication runs, forward stop signals to it, and
    /// exit with its code when it exits (over the config's `exec`).
    #[arg(long = "exec", value_name = "CMD")]
    exec: Option<String>,
    /// Restore each configured database missing on disk from its replicas first (a replica
    /// holding no backup is no error), as Litestream's flag of that name.
    #[arg(long = "restore-if-db-not-exists")]
    restore_if_db_not_exists: bool,
    /// Litestream's `-once` options: refused (see the README).
    #[arg(long = "force-snapshot", hide = true)]
    force_snapshot: bool,
    /// Litestream's `-once` options: refused (see the README).
    #[arg(long = "enforce-retention", hide = true)]
    enforce_retention: bool,
    /// Database path, then one or more replica URLs (instead of -config).
    args: Vec<String>,
}

#[derive(Debug, Args)]
pub(super) struct ListArgs {
    #[command(flatten)]
    cfg: ConfigArgs,
    /// Replica name (default: all of the database's replicas).
    #[arg(long = "replica")]
    replica: Option<String>,
    /// Print JSON: the files and the restore points of each replica.
    #[arg(long = "json")]
    json: bool,
    /// Only the segments of this level (`wal`/`ltx`; `all`, the default, lists every level),
    /// as Litestream's `ltx -level`.
    #[arg(long = "level", value_name = "N|all", value_parser = parse_level)]
    level: Option<LevelArg>,
    /// Database path (uses the config) or replica URL.
    target: String,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum LevelArg {
    All,
    Level(u8),
}

fn parse_level(s: &str) -> Result<LevelArg, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(LevelArg::All);
    }
    match s.parse::<u8>() {
        // Level 9 is the snapshots, as in Litestream.
        Ok(n) if n <= 9 => Ok(LevelArg::Level(n)),
        _ => Err(format!(
            "{s:?} is not a level: 0 to 9 (9: the snapshots), or all"
        )),
    }
}

impl ListArgs {
    /// Whether `k` is listed under `-level`.
    fn shows(&self, k: &replica_formats::ObjectKey) -> bool {
        match (self.level, k) {
            (None | Some(LevelArg::All), _) => true,
            (Some(LevelArg::Level(n)), replica_formats::ObjectKey::Segment { level, .. }) => {
                level.get() == n
            }
            (Some(LevelArg::Level(n)), _) => n == SNAPSHOT_LEVEL,
        }
    }

    /// Whether the segment listing shows the snapshots too, as Litestream's level 9: asked
    /// for by `-level 9` or `-level all` (without `-level`, `wal` lists the segments).
    fn with_snapshots(&self) -> bool {
        matches!(
            self.level,
            Some(LevelArg::All) | Some(LevelArg::Level(SNAPSHOT_LEVEL))
        )
    }
}

/// The level Litestream lists its snapshots at.
const SNAPSHOT_LEVEL: u8 = 9;

impl ListArgs {
    /// The files to list: snapshots (`snapshots`), or segments (with the snapshots when
    /// [`Self::with_snapshots`]), as `-level` selects them, oldest first.
    fn files(
        &self,
        client: &crate::replica::ReplicaClient,
        rt: &tokio::runtime::Runtime,
        snapshots: bool,
    ) -> Result<Vec<(replica_formats::ObjectKey, u64)>, CliError> {
        let mut files = restore::list(client, rt.handle(), snapshots)?;
        if !snapshots && self.with_snapshots() {
            files.extend(restore::list(client, rt.handle(), true)?);
            files.sort_by_key(|(k, _)| (k.max_txid(), k.timestamp()));
        }
        files.retain(|(k, _)| self.shows(k));
        Ok(files)
    }
}

/// Logging of the long-running commands: the config's `logging` section (stdout unless
/// `stderr: true`, as Litestream), then LOG_LEVEL (as Litestream) and -log-level, -log-format.
pub(super) fn apply_logging(l: config::LoggingConfig, log: &Overrides) -> Result<(), CliError> {
    crate::log::set_filter(match l.level {
        config::LogLevel::Debug => tracing::level_filters::LevelFilter::DEBUG,
        config::LogLevel::Info => tracing::level_filters::LevelFilter::INFO,
        config::LogLevel::Warn => tracing::level_filters::LevelFilter::WARN,
        config::LogLevel::Error => tracing::level_filters::LevelFilter::ERROR,
    });
    crate::log::set_output(!l.stderr, l.format == config::LogFormat::Json);
    log.check_env()?;
    log.apply();
    Ok(())
}

/// `memsync replicate`; its exit code (the child's, with `-exec`).
pub(super) fn cmd_replicate(a: ReplicateArgs, log: &Overrides) -> Result<i32, CliError> {
    if a.force_snapshot || a.enforce_retention {
        return Err(CliError::Arguments(
            "replicate -force-snapshot and -enforce-retention (Litestream's) are not supported: memsync takes snapshots and prunes by its config's snapshot-interval and retention",
        ));
    }
    let mut note = None;
    let mut cfg = if a.args.is_empty() {
        let found = super::source::find(&a.cfg)?.ok_or(CliError::NoConfigFile)?;
        note = found.note;
        found.config
    } else {
        if a.cfg.config.is_some() {
            return Err(CliError::Arguments(
                "give either -config or DB_PATH REPLICA_URL..., not both",
            ));
        }
        if a.args.len() < 2 {
            return Err(CliError::Arguments(
                "replicate DB_PATH needs at least one REPLICA_URL",
            ));
        }
        config::from_cli(&a.args[0], &a.args[1..])?
    };
    apply_logging(cfg.logging, log)?;
    if let Some(n) = note {
        tracing::info!("{n}");
    }
    if a.restore_if_db_not_exists {
        super::restore::restore_missing(&cfg.dbs)?;
    }
    // Directory entries: the databases found now are replicated like configured ones.
    for s in config::discover::expand(&mut cfg, a.convert_to_wal)? {
        tracing::warn!("{}: {}; not replicated", s.path.display(), s.why);
    }
    let opts = ReplicateOptions {
        convert_to_wal: a.convert_to_wal,
        once: a.once,
        takeover: a.takeover,
        ..Default::default()
    };
    if let Some(line) = a.exec.or_else(|| cfg.exec.clone()) {
        if a.once {
            return Err(CliError::Arguments("-exec cannot be used with -once"));
        }
        let plan = crate::supervise::Plan {
            exec: Some(crate::exec::ExecCommand::parse(&line)?),
            replication: Some((cfg, opts)),
            sync: None,
            observe: Box::new(|_| {}),
            // Replication serves `addr` itself.
            serve: None,
        };
        return Ok(crate::supervise::run(plan)?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let handles = replicate::run(&cfg, &opts, stop)?;
    if a.once {
        once_complete(&handles)?;
    }
    Ok(0)
}

/// After `-once`: every replica holds each database's last captured position, or the run
/// failed, naming each replica short of it.
fn once_complete(handles: &[replicate::DbHandle]) -> Result<(), CliError> {
    let mut short = Vec::new();
    for h in handles {
        let want = h.stats.position.load(Ordering::Relaxed);
        for (name, s) in &h.replicas {
            let have = s.position.load(Ordering::Relaxed);
            if have < want {
                short.push(format!(
                    "replica {name} of {} did not get everything committed (it holds position {have:016x}, the database {want:016x})",
                    h.path.display()
                ));
            }
        }
    }
    match short.is_empty() {
        true => Ok(()),
        false => Err(CliError::OnceIncomplete(short.join("; "))),
    }
}

/// `memsync databases`: the databases of a config file (those of `dir` entries as found now)
/// or of the environment's configuration, where each of their replicas lives, then where the
/// settings came from.
#[derive(Debug, Args)]
pub(super) struct DatabasesArgs {
    #[command(flatten)]
    cfg: ConfigArgs,
    /// Print JSON: each database's path and its replicas (name, type, location).
    #[arg(long = "json")]
    json: bool,
}

pub(super) fn cmd_databases(a: &DatabasesArgs) -> Result<(), CliError> {
    let mut found = super::source::find(&a.cfg)?.ok_or(CliError::NoConfigFile)?;
    for s in config::discover::expand(&mut found.config, false)? {
        crate::stdout::errln!(
            "memsync: warning: {}: {}; not replicated",
            s.path.display(),
            s.why
        );
    }
    if a.json {
        let dbs: Vec<serde_json::Value> = found
            .config
            .dbs
            .iter()
            .map(|db| {
                let reps: Vec<serde_json::Value> = db
                    .replicas
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "name": r.name,
                            "type": r.target.kind(),
                            "location": r.target.location(),
                        })
                    })
                    .collect();
                serde_json::json!({ "path": db.path, "replicas": reps })
            })
            .collect();
        crate::stdout::outln!("{}", serde_json::json!({ "databases": dbs }));
        return Ok(());
    }
    crate::stdout::outln!("{:<50} replicas", "path");
    for db in &found.config.dbs {
        let reps: Vec<String> = db
            .replicas
            .iter()
            .map(|r| format!("{}={}", r.name, r.target.location()))
            .collect();
        crate::stdout::outln!("{:<50} {}", db.path.display(), reps.join(" "));
    }
    crate::stdout::outln!();
    for l in super::source::describe(&found) {
        crate::stdout::outln!("{l}");
    }
    Ok(())
}

pub(super) fn cmd_list(a: ListArgs, snapshots: bool) -> Result<(), CliError> {
    let (_, reps) = resolve(&a.cfg, &a.target, a.replica.as_deref())?;
    let rt = runtime()?;
    if a.json {
        let mut out = Vec::new();
        for r in &reps {
            let client = open_client(r)?;
            let keys = rt.block_on(client.list())?;
            let points = replica_formats::restorable_positions(&keys);
            let files: Vec<serde_json::Value> = a
                .files(&client, &rt, snapshots)?
                .into_iter()
                .map(|(k, size)| {
                    let mut v = file_json(&k, size);
                    // Whether `-txid` of its last position restores (a file a coarser tier
                    // replaced may stay a while for its grace, not as a restore point).
                    v["restore_point"] = points.contains(&k.max_txid()).into();
                    v
                })
                .collect();
            let mut entry = serde_json::json!({
                "replica": r.name,
                "files": files,
                "restorable": restore::history::json(&keys),
            });
            if keys.is_empty()
                && let Some(dir) = rt.block_on(client.foreign_layout())?
            {
                entry["litestream_folder"] = dir.into();
            }
            out.push(entry);
        }
        crate::stdout::outln!("{}", serde_json::json!({ "replicas": out }));
        return Ok(());
    }
    // Everything is listed before anything is printed: a replica that fails leaves one error
    // line, not a header with nothing under it.
    let mut listed = Vec::new();
    for r in &reps {
        let client = open_client(r)?;
        let files = a.files(&client, &rt, snapshots)?;
        let keys = rt.block_on(client.list())?;
        let mut history = restore::history::text(&keys);
        // Litestream's files where memsync's would be: said, rather than "nothing restorable".
        if keys.is_empty()
            && let Some(dir) = rt.block_on(client.foreign_layout())?
        {
            history = vec![format!(
                "  nothing memsync can restore: a Litestream backup is there (its `{dir}/` folder); list it with `litestream ltx`, restore it with `litestream restore`"
            )];
        }
        listed.push((r.name.clone(), files, history));
    }
    if snapshots {
        crate::stdout::outln!("{:<10} {:<16} {:>12}  created", "replica", "txid", "size");
    } else {
        crate::stdout::outln!(
            "{:<10} {:<5} {:<16} {:<16} {:>12}  created",
            "replica",
            "level",
            "min_txid",
            "max_txid",
            "size"
        );
    }
    let mut summaries = Vec::new();
    for (name, files, history) in listed {
        for (k, size) in files {
            let created = fmt_ts(k.timestamp());
            match k {
                replica_formats::ObjectKey::Snapshot { txid, .. } if snapshots => {
                    crate::stdout::outln!("{:<10} {:<16} {:>12}  {created}", name, txid, size)
                }
                // Among the segments (`-level 9` or `all`): at Litestream's snapshot level.
                replica_formats::ObjectKey::Snapshot { .. } => crate::stdout::outln!(
                    "{:<10} {:<5} {:<16} {:<16} {:>12}  {created}",
                    name,
                    SNAPSHOT_LEVEL,
                    k.min_txid(),
                    k.max_txid(),
                    size
                ),
                replica_formats::ObjectKey::Segment {
                    level, min, max, ..
                } => crate::stdout::outln!(
                    "{:<10} {:<5} {:<16} {:<16} {:>12}  {created}",
                    name,
                    level.get(),
                    min,
                    max,
                    size
                ),
            }
        }
        summaries.push((name, history));
    }
    for (name, lines) in summaries {
        crate::stdout::outln!("\nreplica {name}:");
        for l in lines {
            crate::stdout::outln!("{l}");
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
