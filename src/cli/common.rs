//! What the command families share: the config-file arguments, finding the replicas a
//! DB_PATH-or-URL argument names, and the runtime.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Args;
use replica_formats::Timestamp;

use crate::config::{self, Config, ReplicaConfig};
use crate::replica::{self, ReplicaClient};
use crate::restore;

use super::error::CliError;

#[derive(Debug, Args)]
pub(super) struct ConfigArgs {
    /// Config file (default: $MEMSYNC_CONFIG, $LITESTREAM_CONFIG, ./litestream.yml, /etc/litestream.yml).
    #[arg(long = "config")]
    pub(super) config: Option<PathBuf>,
    /// Do not expand $VAR in the config file.
    #[arg(long = "no-expand-env")]
    pub(super) no_expand_env: bool,
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

/// Go's flag package takes `-once=true` and `-if-db-not-exists=false` for its booleans, and
/// scripts written for Litestream use them: a boolean flag of `cmd` (any of its commands) with
/// a value Go's `strconv.ParseBool` reads becomes the flag (true) or nothing (false).
pub fn go_bools(cmd: &clap::Command, args: Vec<OsString>) -> Vec<OsString> {
    fn bools(cmd: &clap::Command, into: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            if matches!(a.get_action(), clap::ArgAction::SetTrue)
                && let Some(l) = a.get_long()
            {
                into.push(l.to_owned());
            }
        }
        for sub in cmd.get_subcommands() {
            bools(sub, into);
        }
    }
    let mut names = Vec::new();
    bools(cmd, &mut names);
    let mut rest = false;
    let mut out = Vec::with_capacity(args.len());
    for a in args {
        let s = a.to_string_lossy().into_owned();
        rest |= s == "--";
        let split = s
            .strip_prefix("--")
            .and_then(|f| f.split_once('='))
            .filter(|(name, _)| !rest && names.iter().any(|n| n == name));
        match split {
            Some((name, "1" | "t" | "T" | "TRUE" | "true" | "True")) => {
                out.push(OsString::from(format!("--{name}")))
            }
            Some((_, "0" | "f" | "F" | "FALSE" | "false" | "False")) => {}
            _ => out.push(a),
        }
    }
    out
}

pub(super) fn default_config_path() -> Option<PathBuf> {
    config::default_path()
}

/// The config file, else the configuration `LITESTREAM_REPLICA_PATH` describes
/// (`super::source`).
pub(super) fn load_config(a: &ConfigArgs) -> Result<Config, CliError> {
    super::source::find(a)?
        .map(|f| f.config)
        .ok_or(CliError::NoConfigFile)
}

/// The replica(s) a DB_PATH-or-URL argument designates.
pub(super) fn resolve(
    cfg: &ConfigArgs,
    target: &str,
    replica: Option<&str>,
) -> Result<(Option<PathBuf>, Vec<ReplicaConfig>), CliError> {
    // A URL or a replica directory is one replica: `-replica` may only name it.
    let only = |r: ReplicaConfig| match replica {
        Some(n) if n != r.name => Err(CliError::NotThatReplica {
            name: n.to_owned(),
            target: target.to_owned(),
            has: r.name.clone(),
        }),
        _ => Ok((None, vec![r])),
    };
    if config::names_a_url(target) {
        return only(config::replica_from_url(target)?);
    }
    let path = std::path::absolute(target)
        .map(|p| config::clean_path(&p))
        .map_err(|source| CliError::Path {
            path: target.into(),
            source,
        })?;
    // A plain path that is not a database of the config (or with no config at all) but a
    // directory holding a replica is that file replica, as the guide writes it
    // (`memsync snapshots backup/sqlite_vec.db`).
    let as_replica = || -> Option<ReplicaConfig> {
        // Litestream's folders (0.5's `ltx/`, 0.3's `generations/`) too: the restore then
        // says whose backup it is.
        let is_replica = path.is_dir()
            && [
                replica_formats::SNAPSHOTS_DIR,
                replica_formats::SEGMENTS_DIR,
                "ltx",
                "generations",
            ]
            .iter()
            .any(|d| path.join(d).is_dir())
            // A replicator that stopped before its first snapshot left only its record.
            || path.join("lineage").is_file();
        if !is_replica {
            return None;
        }
        config::replica_from_url(&path.to_string_lossy()).ok()
    };
    let cfg = match load_config(cfg) {
        Ok(c) => c,
        Err(e) => {
            return match as_replica() {
                Some(r) => only(r),
                None if cfg.config.is_none() && default_config_path().is_none() => {
                    // A directory that cannot be read is that, not "no replica in it".
                    // So is a path that does not exist.
                    match std::fs::read_dir(&path) {
                        Err(source)
                            if matches!(
                                source.kind(),
                                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::NotFound
                            ) =>
                        {
                            Err(CliError::Path { path, source })
                        }
                        _ => Err(CliError::NotAReplica { path }),
                    }
                }
                None => Err(e),
            };
        }
    };
    // The same file by another name (a symlinked folder) is the same database, also once
    // the file is gone (a restore after its loss): its folder is resolved then.
    let real = real_or_folder(&path);
    // A database of a `dir` entry is found by its path under the directory, whether or not
    // the file exists (a restore after its loss), also through a symlinked folder.
    let in_dir = || {
        cfg.dirs.iter().find_map(|d| {
            d.relative(&path)
                .or_else(|| {
                    real.strip_prefix(real_or_folder(&d.dir))
                        .ok()
                        .and_then(|rel| d.relative(&d.dir.join(rel)))
                })
                .map(|rel| d.db_at(&rel))
        })
    };
    let Some(db) = cfg
        .dbs
        .iter()
        .find(|d| d.path == path)
        .or_else(|| cfg.dbs.iter().find(|d| real_or_folder(&d.path) == real))
        .cloned()
        .or_else(in_dir)
    else {
        if let Some(r) = as_replica() {
            return only(r);
        }
        return Err(CliError::NotInConfig {
            db: path,
            config: cfg.source.clone(),
        });
    };
    let reps: Vec<ReplicaConfig> = db
        .replicas
        .iter()
        .filter(|r| replica.is_none_or(|n| n == r.name))
        .cloned()
        .collect();
    if reps.is_empty() {
        return Err(CliError::NoSuchReplica {
            db: path,
            name: replica.unwrap_or("").to_owned(),
        });
    }
    Ok((Some(path), reps))
}

/// `path` with every symlink resolved: the file's real path, or, when the file does not
/// exist, its folder's real path joined with its name.
fn real_or_folder(path: &std::path::Path) -> PathBuf {
    if let Ok(p) = crate::platform::canonicalize(path) {
        return p;
    }
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => crate::platform::canonicalize(dir)
            .map(|d| d.join(name))
            .unwrap_or_else(|_| path.to_path_buf()),
        _ => path.to_path_buf(),
    }
}

pub(super) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    crate::runtime().map_err(CliError::Runtime)
}

pub(super) fn open_client(r: &ReplicaConfig) -> Result<ReplicaClient, CliError> {
    match replica::client_for(r, false) {
        Ok(c) => Ok(c),
        Err(replica::ReplicaError::NotFound { replica, .. }) => {
            Err(CliError::MissingReplica(replica))
        }
        Err(e) => Err(e.into()),
    }
}

pub(super) fn fmt_ts(ts: Timestamp) -> String {
    restore::history::fmt_ts(ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    /// `-once=true` and `-if-db-not-exists=false`, as Go's flag package takes them.
    #[test]
    fn go_style_booleans_are_read() {
        let cmd = <super::super::Cli as clap::CommandFactory>::command();
        let got = go_bools(
            &cmd,
            normalize_args(args(&[
                "memsync",
                "restore",
                "-if-db-not-exists=true",
                "-if-replica-exists=false",
                "-o=out.db",
                "-timestamp=true",
                "--",
                "--fallback=true",
            ])),
        );
        assert_eq!(
            got,
            args(&[
                "memsync",
                "restore",
                "--if-db-not-exists",
                "--o=out.db",
                "--timestamp=true",
                "--",
                "--fallback=true",
            ])
        );
    }
}
