//! The databases of a directory replica (the replicas of a `dir` entry: one per database, at
//! the database's path under the directory): `restore -db sub/x.db` restores one of them,
//! `restore -all` every one into a target directory, a few at a time.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::common::{ConfigArgs, load_config, open_client, runtime};
use super::error::CliError;
use super::restore::{RestoreArgs, restore_from};
use crate::config::{self, ReplicaConfig};
use crate::restore::RestoreOutcome;

/// Databases restored at once by `-all`: enough to overlap the waits on a remote store, few
/// enough not to flood it (each restore reads up to 4 ranges at a time itself).
const CONCURRENCY: usize = 4;

/// A directory replica: its replicas (one for a URL or directory, those of the entry for a
/// configured `dir`) and where its databases go unless `-o` says otherwise.
struct Source {
    bases: Vec<ReplicaConfig>,
    home: Option<PathBuf>,
}

/// The directory replica `target` names: a replica URL, the `dir` of a config entry (its
/// replicas, or the one `-replica` names), or a directory holding replicas.
fn source(cfg: &ConfigArgs, target: &str, replica: Option<&str>) -> Result<Source, CliError> {
    if config::names_a_url(target) {
        return Ok(Source {
            bases: vec![config::replica_from_url(target)?],
            home: None,
        });
    }
    let path = std::path::absolute(target).map_err(|source| CliError::Path {
        path: target.into(),
        source,
    })?;
    match load_config(cfg) {
        Ok(c) => {
            if let Some(d) = c.dirs.iter().find(|d| d.dir == path) {
                let bases: Vec<ReplicaConfig> = d
                    .template
                    .replicas
                    .iter()
                    .filter(|r| replica.is_none_or(|n| n == r.name))
                    .cloned()
                    .collect();
                if bases.is_empty() {
                    return Err(CliError::NoSuchReplica {
                        db: path,
                        name: replica.unwrap_or_default().to_owned(),
                    });
                }
                return Ok(Source {
                    bases,
                    home: Some(d.dir.clone()),
                });
            }
        }
        // A config asked for by name must load; the default one may be absent or unrelated.
        Err(e) if cfg.config.is_some() => return Err(e),
        Err(_) => {}
    }
    if path.is_dir() {
        return Ok(Source {
            bases: vec![config::replica_from_url(&path.to_string_lossy())?],
            home: None,
        });
    }
    Err(CliError::NotADirectory { path })
}

/// A database's path under the directory, if it is a plain relative one (no `..`, no root).
fn plain(rel: &str) -> Option<PathBuf> {
    // `./x.db` is `x.db`; `..` or a root never.
    let p: PathBuf = Path::new(rel)
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    let ok = p.components().next().is_some()
        && p.components().all(|c| matches!(c, Component::Normal(_)));
    ok.then_some(p)
}

/// `restore -db REL TARGET`: the database at `rel` of the directory replica `target`; its own
/// path when `target` is a configured `dir`.
pub(super) fn one_of_directory(
    cfg: &ConfigArgs,
    target: &str,
    rel: &str,
    replica: Option<&str>,
) -> Result<(Option<PathBuf>, Vec<ReplicaConfig>), CliError> {
    let rel = plain(rel).ok_or_else(|| CliError::BadFlag {
        flag: "-db",
        value: format!("{rel:?}"),
        why: "expected a path under the directory, such as sub/x.db".into(),
    })?;
    let src = source(cfg, target, replica)?;
    let reps = src.bases.iter().map(|b| joined(b, &rel)).collect();
    Ok((src.home.map(|h| h.join(&rel)), reps))
}

/// The replica of the database at `rel` under the directory replica `base`.
fn joined(base: &ReplicaConfig, rel: &Path) -> ReplicaConfig {
    let mut r = base.clone();
    r.target = base.target.join(rel);
    r
}

/// `restore -all TARGET`: every database of the directory replica into the output directory
/// (`-o`, or the configured `dir`), at its relative path, [`CONCURRENCY`] at a time. Each
/// database is restored through a temporary file renamed into place, so one that fails leaves
/// nothing; it is reported with its name and the others go on.
pub(super) fn cmd_restore_all(a: &RestoreArgs) -> Result<(), CliError> {
    let src = match source(&a.cfg, &a.target, a.replica.as_deref()) {
        // A directory replica never made (a first boot) holds nothing.
        Err(CliError::NotADirectory { .. })
            if a.if_replica_exists && !Path::new(&a.target).exists() =>
        {
            crate::stdout::noteln!("{}: does not exist; nothing to restore", a.target);
            return Ok(());
        }
        r => r?,
    };
    let out_dir = match (&a.output, &src.home) {
        (Some(o), _) => std::path::absolute(o).map_err(|source| CliError::Path {
            path: o.clone(),
            source,
        })?,
        (None, Some(h)) => h.clone(),
        (None, None) => {
            return Err(CliError::Arguments(
                "restore -all from a replica URL or directory needs -o TARGET_DIR",
            ));
        }
    };
    a.options(out_dir.clone(), false)?; // flag errors once, before any work
    let rt = runtime()?;
    crate::restore::clean_up_on_stop(&rt).map_err(CliError::Runtime)?;
    let mut names = BTreeSet::new();
    let mut litestream = 0;
    let mut listed = 0;
    let mut last_err = None;
    for b in &src.bases {
        let found = open_client(b).and_then(|c| Ok(rt.block_on(c.databases())?));
        match found {
            Ok(found) => {
                listed += 1;
                names.extend(found.memsync);
                litestream += found.litestream.len();
            }
            // A directory replica never made (a first boot) holds nothing, like an empty one.
            Err(CliError::MissingReplica(_)) if a.if_replica_exists => listed += 1,
            Err(e) => {
                tracing::warn!("{e}");
                last_err = Some(e);
            }
        }
    }
    if listed == 0
        && let Some(e) = last_err
    {
        return Err(e);
    }
    if names.is_empty() && a.if_replica_exists {
        crate::stdout::noteln!("{}: no database replicas; nothing to restore", a.target);
        return Ok(());
    }
    if names.is_empty() && litestream > 0 {
        return Err(CliError::LitestreamDatabases {
            target: a.target.clone(),
            count: litestream,
        });
    }
    if names.is_empty() {
        let shown = src
            .bases
            .iter()
            .map(|b| b.name.as_str())
            .collect::<Vec<_>>();
        return Err(CliError::NoDatabases(format!(
            "{} ({})",
            a.target,
            shown.join(", ")
        )));
    }
    // Directories are made before the workers start and, for the databases that failed,
    // removed after they end when empty (the output directory too, if this made it): made or removed while another worker writes into
    // them, they would race.
    let names: Vec<String> = names.into_iter().collect();
    let made = make_dirs(&out_dir, &names)?;
    let next = AtomicUsize::new(0);
    let failed = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..CONCURRENCY.min(names.len()) {
            s.spawn(|| {
                while let Some(name) = names.get(next.fetch_add(1, Ordering::Relaxed)) {
                    match restore_one(a, &src, &rt, &out_dir, name) {
                        Ok(line) => crate::stdout::noteln!("{line}"),
                        Err(e) => {
                            crate::stdout::errln!("memsync: error: {name}: {e}");
                            failed.lock().unwrap_or_else(|p| p.into_inner()).push(name);
                        }
                    }
                }
            });
        }
    });
    // Deepest first; those holding a restored database are not empty and stay.
    for d in made.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
    let failed = failed.into_inner().unwrap_or_else(|p| p.into_inner());
    if failed.is_empty() {
        return Ok(());
    }
    Err(CliError::RestoreAll {
        failed: failed.len(),
        total: names.len(),
    })
}

/// Makes `out_dir` and the directories the databases `names` go in; those that did not exist,
/// sorted (a directory before those below it).
fn make_dirs(out_dir: &Path, names: &[String]) -> Result<BTreeSet<PathBuf>, CliError> {
    if out_dir.exists() && !out_dir.is_dir() {
        return Err(CliError::Path {
            path: out_dir.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "a file is there; -o names the directory the databases go in",
            ),
        });
    }
    let mut made = BTreeSet::new();
    let wanted = names
        .iter()
        .filter_map(|n| plain(n))
        .filter_map(|rel| out_dir.join(rel).parent().map(Path::to_path_buf));
    for dir in std::iter::once(out_dir.to_path_buf()).chain(wanted) {
        let missing: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|d| !d.exists())
            .map(Path::to_path_buf)
            .collect();
        std::fs::create_dir_all(&dir).map_err(|source| CliError::Path {
            path: dir.clone(),
            source,
        })?;
        // The output directory is among them when it did not exist: when every database
        // fails it goes as well, leaving nothing behind.
        made.extend(missing);
    }
    Ok(made)
}

/// Restores the database `name` of `src` under `out_dir`; the line that says what was done.
fn restore_one(
    a: &RestoreArgs,
    src: &Source,
    rt: &tokio::runtime::Runtime,
    out_dir: &Path,
    name: &str,
) -> Result<String, CliError> {
    let rel = plain(name).ok_or(CliError::Arguments(
        "the replica lists a database path that is not a plain relative path",
    ))?;
    let output = out_dir.join(&rel);
    let reps: Vec<ReplicaConfig> = src.bases.iter().map(|b| joined(b, &rel)).collect();
    let opts = a.options(output.clone(), false)?;
    Ok(match restore_from(&reps, rt, &opts)? {
        (from, RestoreOutcome::Restored { txid, .. }) => format!(
            "restored {name} at position {txid} to {} from {from}",
            output.display()
        ),
        (_, RestoreOutcome::OutputExists) => {
            format!("{name}: {} already exists; left as is", output.display())
        }
        (from, RestoreOutcome::NoReplica) => format!("{name}: {from} holds no backup; skipped"),
    })
}
