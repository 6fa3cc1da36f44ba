//! Configuration for memsync: a Litestream-compatible `litestream.yml`.
//!
//! Loading goes in four steps:
//! 1. `expand`: `$VAR` / `${VAR}` are replaced by environment values (an unset variable is
//!    an error, `$$` is a literal `$`), unless expansion is switched off (`-no-expand-env`).
//! 2. YAML is deserialized into private "raw" structs that reject unknown keys.
//! 3. The raw structs are converted into the typed structs below, applying defaults.
//! 4. `validate` checks cross-field rules (duplicate paths, overlapping replicas, ...).
//!
//! Every error is a single line that starts with `FILE:LINE[:COL]: `.

mod convert;
mod dir;
pub mod discover;
mod duration;
mod expand;
pub mod keys_set;
pub use expand::referenced as referenced_vars;
mod glob;
mod raw;
mod s3host;
mod scalars;
mod tiers;
mod toplevel;
mod url;
mod validate;
pub mod zeroconf;

#[cfg(test)]
mod tests;

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

pub use dir::DirConfig;
pub use duration::parse_duration;
pub use glob::Glob;
pub use scalars::parse_size;
pub use tiers::{LevelTier, Tiers};
pub use url::{names_a_url, replica_from_url};

/// Default `monitor-interval`: how often the WAL is polled when no inotify event arrives.
pub const DEFAULT_MONITOR_INTERVAL: Duration = Duration::from_secs(1);
/// Default `checkpoint-interval`.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);
/// Default `min-checkpoint-page-count`.
pub const DEFAULT_MIN_CHECKPOINT_PAGE_COUNT: u32 = 1000;
/// Default `truncate-page-n` (WAL pages after which a TRUNCATE checkpoint is forced).
pub const DEFAULT_TRUNCATE_PAGE_N: u32 = 121_359;
/// Default `spool-budget`: 1 GiB, hours of a busy memory database's changes.
pub const DEFAULT_SPOOL_BUDGET: u64 = 1 << 30;
/// Default `busy-timeout`.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(1);
/// Default replica `sync-interval`.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Default replica `retention`.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Default replica `retention-check-interval`.
pub const DEFAULT_RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(3600);

/// A whole configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Databases to replicate, each named by its own `path`. With `dirs` it may be empty after
    /// loading; [`discover::expand`] adds the databases found in the directories.
    pub dbs: Vec<DbConfig>,
    /// Directory entries (`dir`, `pattern`, ...); their databases join `dbs` on expansion.
    pub dirs: Vec<DirConfig>,
    /// Address of the metrics/HTTP server (`addr`, e.g. `":9090"`), if any.
    pub addr: Option<String>,
    /// `logging` section.
    pub logging: LoggingConfig,
    /// The file this configuration came from.
    pub source: PathBuf,
    /// Restore-point tiers (`l0-retention`, `levels`).
    pub tiers: Tiers,
    /// `exec`: the application to run as a child once replication runs (checked to split).
    pub exec: Option<String>,
}

/// One entry of `dbs`.
#[derive(Debug, Clone, PartialEq)]
pub struct DbConfig {
    /// Absolute path of the SQLite database (`~` expanded, made absolute against the cwd).
    pub path: PathBuf,
    /// Directory for memsync's own state (`meta-path`); `None` = next to the database.
    pub meta_path: Option<PathBuf>,
    /// Poll interval for WAL changes (inotify wakes us earlier). Default 1s.
    pub monitor_interval: Duration,
    /// Interval between PASSIVE checkpoints. Default 60s.
    pub checkpoint_interval: Duration,
    /// WAL size in pages that triggers a PASSIVE checkpoint. Default 1000, never 0.
    pub min_checkpoint_page_count: u32,
    /// WAL size in pages that forces a TRUNCATE checkpoint. Default 121359; 0 disables.
    pub truncate_page_n: u32,
    /// SQLite busy timeout. Default 1s.
    pub busy_timeout: Duration,
    /// `spool-budget` (memsync only): bytes the spool may hold for replicas that are behind
    /// (unreachable); past it, what they lack is dropped and they get a fresh snapshot when
    /// they return. Default 1 GiB.
    pub spool_budget: u64,
    /// Replicas of this database (at least one).
    pub replicas: Vec<ReplicaConfig>,
    /// Found by a `dir` entry rather than named by a `path` one: a watched directory may drop
    /// it and pick it up again (a file moved over it starts afresh).
    pub found_in_dir: bool,
}

impl DbConfig {
    /// A database with every setting at its default (the command line's and the
    /// environment's configurations).
    pub fn with_defaults(path: PathBuf, replicas: Vec<ReplicaConfig>) -> DbConfig {
        DbConfig {
            path,
            meta_path: None,
            monitor_interval: DEFAULT_MONITOR_INTERVAL,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            min_checkpoint_page_count: DEFAULT_MIN_CHECKPOINT_PAGE_COUNT,
            truncate_page_n: DEFAULT_TRUNCATE_PAGE_N,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            spool_budget: DEFAULT_SPOOL_BUDGET,
            replicas,
            found_in_dir: false,
        }
    }
}

/// One replica of a database.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaConfig {
    /// Name, unique within its database. Default: the target kind (`file`, `s3`, `http`).
    pub name: String,
    /// Where the replica lives.
    pub target: ReplicaTarget,
    /// How often new WAL frames are shipped. Default 1s; 0 = as soon as possible.
    pub sync_interval: Duration,
    /// How long snapshots and WAL are kept. Default 24h.
    pub retention: Duration,
    /// How often retention is enforced. Default 1h.
    pub retention_check_interval: Duration,
    /// Forced snapshot interval; `None` = only when retention or restore cost needs one.
    pub snapshot_interval: Option<Duration>,
    /// memsync only: if the replica belongs to another database (its lineage record names
    /// another), delete its files and make it this database's. Default false: refuse.
    pub takeover: bool,
}

/// The storage behind a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaTarget {
    /// A directory on a local (or mounted) file system; absolute.
    File { path: PathBuf },
    /// An S3-compatible bucket.
    S3 {
        bucket: String,
        /// Key prefix inside the bucket, without leading or trailing `/` (may be empty).
        path: String,
        endpoint: Option<String>,
        region: Option<String>,
        force_path_style: bool,
        skip_verify: bool,
        access_key_id: Option<String>,
        secret_access_key: Option<String>,
    },
    /// A WebDAV/HTTP object store; `url` is `http://` or `https://` (webdav(s) rewritten).
    Http { url: String },
}

impl ReplicaTarget {
    /// Short kind name: `"file"`, `"s3"` or `"http"` (also the default replica name).
    pub fn kind(&self) -> &'static str {
        match self {
            ReplicaTarget::File { .. } => "file",
            ReplicaTarget::S3 { .. } => "s3",
            ReplicaTarget::Http { .. } => "http",
        }
    }
}

/// `logging` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoggingConfig {
    /// `level`: debug, info (default), warn or error.
    pub level: LogLevel,
    /// `type`: text (default) or json.
    pub format: LogFormat,
    /// `stderr`: log to stderr instead of stdout. Default false.
    pub stderr: bool,
}

/// Log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A configuration error. Its message is one line starting with the file (and line) concerned.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read config: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// YAML syntax or type error (`line`/`col` are 1-based, 0 when unknown).
    #[error("{}: {msg}", loc(file, Some(*line), Some(*col)))]
    Yaml {
        file: PathBuf,
        line: u64,
        col: u64,
        msg: String,
    },
    /// A key that is not part of the format (probably misspelled).
    #[error("{}: unknown key {key:?} in {context}{}", loc(file, Some(*line), Some(*col)),
        suggestion.as_ref().map(|s| format!(" (did you mean {s:?}?)")).unwrap_or_default())]
    UnknownKey {
        file: PathBuf,
        line: u64,
        col: u64,
        key: String,
        /// Where the key was found: `top level`, `db`, `replica` or `logging`.
        context: String,
        suggestion: Option<String>,
    },
    /// A Litestream key that memsync deliberately does not implement.
    #[error("{}: key {key:?} in {context} is a Litestream setting that memsync does not support; remove it{}",
        loc(file, Some(*line), Some(*col)), unsupported_hint(key))]
    Unsupported {
        file: PathBuf,
        line: u64,
        col: u64,
        key: String,
        context: String,
    },
    /// `$VAR` / `${VAR}` names an unset environment variable.
    #[error("{}: environment variable {var:?} is not set (write $$ for a literal $, or disable expansion with -no-expand-env)",
        loc(file, Some(*line), None))]
    UnsetVar {
        file: PathBuf,
        line: u64,
        var: String,
    },
    /// Any other invalid setting.
    #[error("{}: {what}", loc(file, *line, None))]
    Invalid {
        file: PathBuf,
        line: Option<u64>,
        what: String,
    },
    /// A duration that is not Go syntax, negative, or an integer without unit.
    #[error("{}: invalid duration {value:?} for {key:?}: {msg}", loc(file, Some(*line), None))]
    BadDuration {
        file: PathBuf,
        line: u64,
        key: String,
        value: String,
        msg: String,
    },
    /// A replica URL that cannot be used. `file` is `None` for URLs given on the command line.
    #[error("{}invalid replica URL {:?}: {msg}",
        file.as_ref().map(|f| format!("{}: ", loc(f, *line, None))).unwrap_or_default(),
        url::hide_password(url))]
    BadUrl {
        file: Option<PathBuf>,
        line: Option<u64>,
        url: String,
        msg: String,
    },
}

/// Formats `file:line:col`, leaving out unknown (None or 0) parts.
fn loc(file: &Path, line: Option<u64>, col: Option<u64>) -> String {
    let mut s = file.display().to_string();
    if let Some(l) = line.filter(|l| *l > 0) {
        s.push_str(&format!(":{l}"));
        if let Some(c) = col.filter(|c| *c > 0) {
            s.push_str(&format!(":{c}"));
        }
    }
    s
}

/// The config file used when none is named: `MEMSYNC_CONFIG`, `LITESTREAM_CONFIG`, else
/// `litestream.yml` in the working directory, else `/etc/litestream.yml`, if it exists.
pub fn default_path() -> Option<std::path::PathBuf> {
    for var in ["MEMSYNC_CONFIG", "LITESTREAM_CONFIG"] {
        if let Some(p) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            return Some(std::path::PathBuf::from(p));
        }
    }
    ["litestream.yml", "/etc/litestream.yml"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
}

/// What memsync has in place of an unsupported Litestream key, when it has something.
fn unsupported_hint(key: &str) -> &'static str {
    match key {
        "snapshot" => {
            " (memsync's `snapshot-interval` and `retention` keys, at the top level or per replica, set how often a snapshot is taken and how long history is kept)"
        }
        "restore-if-db-not-exists" => {
            " (run `memsync restore -if-db-not-exists -if-replica-exists DB` before `memsync replicate`)"
        }
        "validation-interval" | "validation" => {
            " (`memsync restore -integrity-check full` checks what a replica restores)"
        }
        _ => "",
    }
}

/// Reads and parses the config file at `path` using the process environment.
///
/// `expand_env = false` corresponds to `-no-expand-env`: the text is parsed as is.
pub fn load(path: &Path, expand_env: bool) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path, expand_env, &|name| {
        // `$PID`, as Litestream 0.5.8+ expands it: this process's id (a per-process path).
        std::env::var(name)
            .ok()
            .or_else(|| (name == "PID").then(|| std::process::id().to_string()))
    })
}

/// Parses config `text` that came from `source`; `env` looks up environment variables
/// (for `$VAR` expansion and `HOME` for `~`).
pub fn parse(
    text: &str,
    source: &Path,
    expand_env: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let expanded;
    let text = if expand_env {
        expanded = expand::expand_env(text, source, env)?;
        expanded.as_str()
    } else {
        text
    };
    let cwd = std::env::current_dir().map_err(|source| ConfigError::Io {
        path: PathBuf::from("."),
        source,
    })?;
    let ctx = convert::Ctx {
        file: source,
        cwd: &cwd,
        home: crate::platform::home_with(&mut |v| env(v)),
    };
    let (config, spans) = convert::parse_and_convert(text, &ctx)?;
    validate::validate(&config, Some(&spans))?;
    // A directory entry's settings are checked now, not only once a database turns up.
    for d in &config.dirs {
        let alone = Config {
            dbs: vec![d.template.clone()],
            dirs: Vec::new(),
            addr: None,
            logging: config.logging,
            source: config.source.clone(),
            tiers: config.tiers.clone(),
            exec: None,
        };
        validate::validate(&alone, None)?;
    }
    Ok(config)
}

/// Expands `~`/`~/...` with `home`, makes `p` absolute against `cwd` and removes `.`/`..`
/// lexically (symlinks are not resolved). Returns a message on error.
pub(crate) fn resolve_path(p: &str, cwd: &Path, home: Option<&str>) -> Result<PathBuf, String> {
    let expanded = if p == "~" || p.starts_with("~/") {
        let home = home.ok_or_else(|| format!("cannot expand ~ in {p:?}: HOME is not set"))?;
        PathBuf::from(home).join(p.trim_start_matches('~').trim_start_matches('/'))
    } else if p.starts_with('~') {
        return Err(format!("{p:?}: ~user paths are not supported"));
    } else {
        PathBuf::from(p)
    };
    let joined = if expanded.is_absolute() {
        expanded
    } else {
        cwd.join(expanded)
    };
    Ok(clean_path(&joined))
}

/// `path` with its `.` and `..` components resolved by name, as Litestream (Go's
/// `filepath.Clean`) reads a database path: `/srv/a/../a/app.db` is `/srv/a/app.db`.
pub fn clean_path(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The configuration of `memsync replicate DB_PATH REPLICA_URL...`: one database with default
/// settings, validated like a file (so two URLs naming one place are refused too).
pub fn from_cli(db: &str, urls: &[String]) -> Result<Config, ConfigError> {
    let cwd = std::env::current_dir().map_err(|source| ConfigError::Io {
        path: PathBuf::from("."),
        source,
    })?;
    let home = crate::platform::home();
    let path = resolve_path(db, &cwd, home.as_deref()).map_err(|what| ConfigError::Invalid {
        file: PathBuf::from("(command line)"),
        line: None,
        what,
    })?;
    let mut replicas = Vec::new();
    for (i, u) in urls.iter().enumerate() {
        let mut r = replica_from_url(u)?;
        if urls.len() > 1 {
            r.name = format!("{}{}", r.name, i + 1);
        }
        replicas.push(r);
    }
    let config = Config {
        dbs: vec![DbConfig::with_defaults(path, replicas)],
        dirs: Vec::new(),
        // With no config file, the `addr` endpoint comes from memsync's own variable, as in
        // the zero-config form.
        addr: std::env::var(zeroconf::ADDR_VAR)
            .ok()
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty()),
        logging: LoggingConfig::default(),
        source: PathBuf::from("(command line)"),
        tiers: Tiers::default(),
        exec: None,
    };
    validate::validate(&config, None)?;
    Ok(config)
}

/// The meta directory memsync keeps beside the database file `real` (symlinks already
/// resolved) when no `meta-path` is configured: `.<name>-memsync`.
pub fn meta_dir_beside(real: &std::path::Path) -> PathBuf {
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    real.with_file_name(format!(".{name}-memsync"))
}
