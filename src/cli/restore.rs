//! `memsync restore`: from the configured replica with the newest restorable position (or the
//! one named), or a replica URL.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use replica_formats::{Target, Timestamp, TxId};

use super::common::{ConfigArgs, fmt_ts, open_client, resolve, runtime};
use super::error::CliError;
use crate::config::ReplicaConfig;
use crate::restore::{self, IntegrityCheck, RestoreOptions, RestoreOutcome};

#[derive(Debug, Args)]
pub(super) struct RestoreArgs {
    #[command(flatten)]
    pub(super) cfg: ConfigArgs,
    /// Output path (default: the database's own path).
    #[arg(short = 'o', long = "o")]
    pub(super) output: Option<PathBuf>,
    /// Restore the state as of this time (RFC 3339 with a zone: Z or an offset such as +02:00).
    #[arg(long = "timestamp")]
    timestamp: Option<String>,
    /// Read a -timestamp without a zone in the local zone (TZ) instead of refusing it.
    #[arg(long = "timestamp-local", requires = "timestamp")]
    timestamp_local: bool,
    /// Restore exactly this position (hex, as listed by `memsync wal`).
    #[arg(long = "txid", alias = "index", conflicts_with = "all")]
    txid: Option<String>,
    /// Replica to restore from, by name (default: the one with the newest restorable position).
    #[arg(long = "replica")]
    pub(super) replica: Option<String>,
    /// Succeed without doing anything if the output exists.
    #[arg(long = "if-db-not-exists")]
    if_db_not_exists: bool,
    /// Succeed without doing anything if the replica holds no backup.
    #[arg(long = "if-replica-exists")]
    pub(super) if_replica_exists: bool,
    /// SQLite check of the result before it is put in place.
    #[arg(long = "integrity-check", value_enum, default_value = "none")]
    integrity_check: CheckArg,
    /// If a replica file is corrupt, restore the newest consistent state before it.
    #[arg(long = "fallback")]
    fallback: bool,
    /// Every database of a directory replica (a replica URL or directory, or a configured
    /// `dir`), each into the output directory at its path under it.
    #[arg(long = "all")]
    all: bool,
    /// One database of a directory replica, by its path under the directory (`sub/x.db`).
    #[arg(long = "db", conflicts_with = "all")]
    db: Option<String>,
    /// Say which replica, position and files the restore would use, and write nothing
    /// (Litestream's `restore -dry-run`).
    #[arg(long = "dry-run", conflicts_with = "all")]
    dry_run: bool,
    /// Replace an existing output, removing its -wal, -shm and -journal (Litestream's -force).
    #[arg(long = "force")]
    force: bool,
    /// Downloads kept in flight at once [default: 4] (Litestream's -parallelism).
    #[arg(long = "parallelism", value_parser = clap::value_parser!(u16).range(1..=64))]
    parallelism: Option<u16>,
    /// Print what was restored as JSON on stdout (Litestream's -json).
    #[arg(long = "json", conflicts_with = "all")]
    pub(super) json: bool,
    /// Litestream's follow mode: refused (see the README).
    #[arg(short = 'f', long = "follow", hide = true)]
    follow: bool,
    /// Litestream's follow-mode interval: refused with -f.
    #[arg(long = "follow-interval", hide = true)]
    follow_interval: Option<String>,
    /// Database path (uses the config) or replica URL.
    pub(super) target: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum CheckArg {
    None,
    Quick,
    Full,
}

pub(super) fn cmd_restore(a: RestoreArgs) -> Result<(), CliError> {
    if a.follow || a.follow_interval.is_some() {
        return Err(CliError::Arguments(
            "restore -f (Litestream's follow mode) is not supported: restore once, or replicate to this machine with memsync replicate",
        ));
    }
    if a.all {
        return super::restore_all::cmd_restore_all(&a);
    }
    let (db_path, reps) = match &a.db {
        Some(rel) => {
            super::restore_all::one_of_directory(&a.cfg, &a.target, rel, a.replica.as_deref())?
        }
        None => match resolve(&a.cfg, &a.target, a.replica.as_deref()) {
            // A plain path to a replica directory that was never made (a first boot, as the
            // guide writes it): no backup, as for `file://` URLs.
            Err(CliError::Path { path, source })
                if a.if_replica_exists && source.kind() == std::io::ErrorKind::NotFound =>
            {
                tracing::info!("{}: no replica there; nothing to do", path.display());
                return Ok(());
            }
            Err(CliError::NotAReplica { path }) if a.if_replica_exists => {
                tracing::info!("{}: no replica in it; nothing to do", path.display());
                return Ok(());
            }
            r => r?,
        },
    };
    let output = match (&a.output, &db_path) {
        (Some(o), _) => std::path::absolute(o).map_err(|source| CliError::Path {
            path: o.clone(),
            source,
        })?,
        (None, Some(p)) => p.clone(),
        (None, None) => {
            return Err(CliError::Arguments(
                "restoring from a replica URL or directory needs -o OUTPUT",
            ));
        }
    };
    let opts = a.options(output.clone(), true)?;
    let rt = runtime()?;
    if a.dry_run {
        return super::dryrun::restore_dry_run(&reps, &rt, &opts, a.json);
    }
    crate::restore::clean_up_on_stop(&rt).map_err(CliError::Runtime)?;
    let started = std::time::Instant::now();
    let (name, outcome) = restore_from(&reps, &rt, &opts)?;
    match outcome {
        RestoreOutcome::Restored {
            txid,
            at,
            files,
            bytes,
            fell_back,
        } => {
            if let Some(bad) = &fell_back {
                crate::stdout::errln!(
                    "memsync: warning: {bad} was corrupt; restored position {txid} without it, the newest state the other files reach"
                );
            }
            tracing::info!(
                "restored {} at position {txid} from {name} ({files} files, {bytes} bytes){}",
                output.display(),
                asked_for(&opts.target)
            );
            let want = match opts.target {
                Target::Timestamp(want) => Some(want),
                _ => None,
            };
            if a.json {
                // Litestream's keys (`db_path`, `replica`, `txid`, `duration_ms`,
                // `integrity_check`) and memsync's; stdout holds this object alone.
                let j = serde_json::json!({
                    "restored": true,
                    "db_path": output,
                    "output": output,
                    "replica": name,
                    "txid": txid.to_string(),
                    "timestamp": fmt_ts(at),
                    "requested": want.map(fmt_ts),
                    "files": files,
                    "bytes": bytes,
                    "duration_ms": started.elapsed().as_millis() as u64,
                    "integrity_check": format!("{:?}", opts.integrity_check).to_lowercase(),
                    "fell_back_before": fell_back,
                });
                crate::stdout::outln!("{j}");
            } else if let Some(want) = want {
                crate::stdout::noteln!("{}", restore_point_note(txid, at, want));
            }
        }
        RestoreOutcome::OutputExists => {
            tracing::info!("{} already exists; nothing to do", output.display());
            if a.json {
                let j = serde_json::json!({"restored": false, "output": output, "reason": "the output exists"});
                crate::stdout::outln!("{j}");
            }
        }
        RestoreOutcome::NoReplica => {
            tracing::info!("{name} holds no backup; nothing to do");
            if a.json {
                let j = serde_json::json!({"restored": false, "output": output, "replica": name, "reason": "no backup"});
                crate::stdout::outln!("{j}");
            }
        }
    }
    Ok(())
}

impl RestoreArgs {
    /// The restore options the flags ask for, into `output`.
    pub(super) fn options(
        &self,
        output: PathBuf,
        progress: bool,
    ) -> Result<RestoreOptions, CliError> {
        let a = self;
        let target = match (&a.timestamp, &a.txid) {
            (Some(_), Some(_)) => {
                return Err(CliError::Arguments("-timestamp and -txid are exclusive"));
            }
            (Some(ts), None) => {
                let ms = crate::timearg::parse_millis(ts, a.timestamp_local).map_err(|e| {
                    CliError::BadFlag {
                        flag: "-timestamp",
                        value: format!("{ts:?}"),
                        why: e.to_string(),
                    }
                })?;
                Target::Timestamp(Timestamp::from_millis(ms))
            }
            (None, Some(t)) => Target::TxId(t.parse::<TxId>().map_err(|e| CliError::BadFlag {
                flag: "-txid",
                value: format!("{t:?}"),
                why: e.to_string(),
            })?),
            (None, None) => Target::Latest,
        };
        Ok(RestoreOptions {
            output,
            target,
            if_db_not_exists: a.if_db_not_exists,
            if_replica_exists: a.if_replica_exists,
            integrity_check: match a.integrity_check {
                CheckArg::None => IntegrityCheck::None,
                CheckArg::Quick => IntegrityCheck::Quick,
                CheckArg::Full => IntegrityCheck::Full,
            },
            fallback: a.fallback,
            progress,
            force: a.force,
            parallelism: a
                .parallelism
                .map_or(crate::restore::DEFAULT_PARALLELISM, usize::from),
        })
    }
}

/// Restores from the first of `reps` that can (with several, the one holding the newest state
/// first, the others in turn if it fails); the name of the replica used and the outcome.
pub(super) fn restore_from(
    reps: &[ReplicaConfig],
    rt: &tokio::runtime::Runtime,
    opts: &RestoreOptions,
) -> Result<(String, RestoreOutcome), CliError> {
    let reps = super::pick::answering(reps, rt, opts.target)?;
    let mut last_err = None;
    let mut missing = None;
    for r in &reps {
        let client = match open_client(r) {
            Ok(c) => c,
            // A replica never created holds no backup, like an empty one.
            Err(CliError::MissingReplica(name)) if opts.if_replica_exists => {
                missing = Some(name);
                continue;
            }
            Err(e) if reps.len() > 1 => {
                tracing::warn!("{e}; trying the next replica");
                continue;
            }
            Err(e) => return Err(e),
        };
        match restore::restore(&client, rt.handle(), opts) {
            Ok(outcome) => return Ok((client.name().to_owned(), outcome)),
            // Another replica may still have it (this one empty, gone unreachable, or holding
            // a corrupt file: the next one says which it restored from).
            Err(
                e @ (restore::RestoreError::NoBackup(_)
                | restore::RestoreError::Replica(_)
                | restore::RestoreError::Foreign { .. }
                | restore::RestoreError::Corrupt { .. }
                | restore::RestoreError::Diverged { .. }),
            ) if reps.len() > 1 => {
                tracing::warn!("{e}; trying the next replica");
                last_err = Some(e)
            }
            Err(source) => {
                return Err(CliError::Restore {
                    source: Box::new(source),
                    asked: asked_for(&opts.target),
                });
            }
        }
    }
    match (last_err, missing) {
        (None, Some(name)) => Ok((name, RestoreOutcome::NoReplica)),
        (e, _) => Err(e.map_or(CliError::Arguments("no replica"), Into::into)),
    }
}

/// `replicate -restore-if-db-not-exists`: each configured database missing on disk is restored
/// from its replicas (the one holding the newest state) before replication starts; a replica
/// holding no backup is no error (the application starts a new database).
pub(super) fn restore_missing(dbs: &[crate::config::DbConfig]) -> Result<(), CliError> {
    let missing: Vec<_> = dbs.iter().filter(|d| !d.path.exists()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let rt = runtime()?;
    crate::restore::clean_up_on_stop(&rt).map_err(CliError::Runtime)?;
    for db in missing {
        let opts = RestoreOptions {
            if_db_not_exists: true,
            if_replica_exists: true,
            ..RestoreOptions::latest(&db.path)
        };
        match restore_from(&db.replicas, &rt, &opts)? {
            (name, RestoreOutcome::Restored { txid, .. }) => tracing::info!(
                "{} was missing: restored position {txid} from {name} before replicating",
                db.path.display()
            ),
            (name, RestoreOutcome::NoReplica) => tracing::info!(
                "{} is missing and {name} holds no backup: nothing restored",
                db.path.display()
            ),
            (_, RestoreOutcome::OutputExists) => {}
        }
    }
    Ok(())
}

/// The instant a `-timestamp` asked for, in UTC, for the messages that answer it.
fn asked_for(t: &Target) -> String {
    match t {
        Target::Timestamp(ts) => format!(
            " (asked for the state as of {})",
            crate::timearg::format_utc(ts.get())
        ),
        _ => String::new(),
    }
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
