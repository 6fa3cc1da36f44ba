//! Where replication's configuration comes from: a config file (`-config`, `$MEMSYNC_CONFIG`,
//! `$LITESTREAM_CONFIG`, `./litestream.yml`, `/etc/litestream.yml`) when there is one, which
//! wins; else the guide's `LITESTREAM_*` variables for the local memory database (zero-config).

use crate::config::{self, Config, zeroconf};
use crate::memory::settings::{Overrides, Settings};

use super::common::{ConfigArgs, default_config_path};
use super::error::CliError;

/// Where a configuration came from.
pub(super) enum Origin {
    File,
    /// The environment, setting by setting.
    Env(Vec<zeroconf::Origin>),
}

pub(super) struct Found {
    pub config: Config,
    pub origin: Origin,
    /// A line for the log, said by the caller once its logging is set up (the config's own
    /// `logging` section decides its format and stream).
    pub note: Option<String>,
}

/// The config file when there is one, else the environment's configuration (the memory
/// database as `settings` resolve it), else `None`.
pub(super) fn find_with(a: &ConfigArgs, settings: &Overrides) -> Result<Option<Found>, CliError> {
    let path = a.config.clone().or_else(default_config_path);
    if let Some(path) = path {
        let config = config::load(&path, !a.no_expand_env)?;
        let note = std::env::var_os(zeroconf::REPLICA_VAR)
            .is_some_and(|v| !v.is_empty())
            .then(|| {
                format!(
                    "config file {} wins over {}: the LITESTREAM_* replica variables are not used",
                    path.display(),
                    zeroconf::REPLICA_VAR
                )
            });
        return Ok(Some(Found {
            config,
            origin: Origin::File,
            note,
        }));
    }
    if std::env::var_os(zeroconf::REPLICA_VAR).is_none_or(|v| v.is_empty()) {
        return Ok(None);
    }
    let s = Settings::load(settings).map_err(crate::memory::MemoryError::from)?;
    let env = |n: &str| std::env::var(n).ok();
    Ok(
        zeroconf::from_env(&env, &s.memory_db, &s.memory_db_from)?.map(|e| Found {
            config: e.config,
            origin: Origin::Env(e.origins),
            note: None,
        }),
    )
}

/// [`find_with`] with memory sync's settings from the environment and its settings file.
pub(super) fn find(a: &ConfigArgs) -> Result<Option<Found>, CliError> {
    find_with(a, &Overrides::default())
}

/// `memsync databases`: where the settings came from, and whether `memsync run` replicates.
pub(super) fn describe(found: &Found) -> Vec<String> {
    let mut out = describe_origin(found);
    match Settings::load(&Overrides::default()).map(|s| s.litestream_enabled) {
        Ok(Some((on, from))) => out.push(format!(
            "replication in `memsync run`: {} ({from} is {on})",
            if on { "on" } else { "off" }
        )),
        Ok(None) => out.push("replication in `memsync run`: on (neither LITESTREAM_ENABLED nor litestream_enabled is set)".into()),
        Err(e) => out.push(format!("replication in `memsync run`: unknown ({e})")),
    }
    out
}

fn describe_origin(found: &Found) -> Vec<String> {
    match &found.origin {
        Origin::File => {
            let mut out = vec![format!(
                "settings from config file {}",
                found.config.source.display()
            )];
            out.extend(file_settings(&found.config));
            if std::env::var_os(zeroconf::REPLICA_VAR).is_some_and(|v| !v.is_empty()) {
                out.push(format!(
                    "  ({} and the other LITESTREAM_* replica variables are set, and not used: the config file wins)",
                    zeroconf::REPLICA_VAR
                ));
            }
            out
        }
        Origin::Env(origins) => {
            let mut out = vec!["settings from the environment (no config file found):".to_owned()];
            for o in origins {
                out.push(format!(
                    "  {:<14} {:<40} from {}",
                    o.setting, o.value, o.from
                ));
            }
            out
        }
    }
}

/// Each database's and replica's settings, and whether the file set them: each `path` entry's,
/// then each `dir` entry's (which all its databases take).
fn file_settings(c: &Config) -> Vec<String> {
    use config::keys_set::KeysSet;
    let Some(keys) = std::fs::read_to_string(&c.source)
        .ok()
        .and_then(|t| KeysSet::read(&t))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let paths = c.dbs.iter().filter(|d| !d.found_in_dir);
    for (i, db) in paths.enumerate().take(keys.entries.len()) {
        out.push(format!("  {}", db.path.display()));
        settings_of(&mut out, db, &keys, keys.entries.get(i));
    }
    // A directory entry's databases all take its settings: shown once, for the entry.
    for (i, d) in c.dirs.iter().enumerate().take(keys.dirs.len()) {
        out.push(format!(
            "  {}/{} (every database the `dir` entry finds)",
            d.dir.display(),
            d.pattern.as_str()
        ));
        settings_of(&mut out, &d.template, &keys, keys.dirs.get(i));
    }
    out
}

/// One database entry's settings and where each came from.
fn settings_of(
    out: &mut Vec<String>,
    db: &config::DbConfig,
    keys: &config::keys_set::KeysSet,
    entry: Option<&config::keys_set::EntryKeys>,
) {
    use config::keys_set::KeysSet;
    use zeroconf::go_duration as d;
    let line = |out: &mut Vec<String>, indent: &str, key: &str, value: String, by: &str| {
        let w = 31 - indent.len();
        out.push(format!("{indent}{key:<w$} {value:<12} {by}"));
    };
    let rows = [
        ("monitor-interval", d(db.monitor_interval)),
        ("checkpoint-interval", d(db.checkpoint_interval)),
        (
            "min-checkpoint-page-count",
            db.min_checkpoint_page_count.to_string(),
        ),
        ("truncate-page-n", db.truncate_page_n.to_string()),
        ("busy-timeout", d(db.busy_timeout)),
        ("spool-budget", format!("{} MiB", db.spool_budget >> 20)),
    ];
    for (k, v) in rows {
        line(out, "    ", k, v, KeysSet::db_in(entry, k).as_str());
    }
    for (j, r) in db.replicas.iter().enumerate() {
        out.push(format!("    replica {}", r.name));
        let rows = [
            ("sync-interval", d(r.sync_interval)),
            ("retention", d(r.retention)),
            ("retention-check-interval", d(r.retention_check_interval)),
            (
                "snapshot-interval",
                r.snapshot_interval.map_or_else(|| "none".into(), d),
            ),
        ];
        for (k, v) in rows {
            line(out, "      ", k, v, keys.replica_in(entry, j, k).as_str());
        }
    }
}
