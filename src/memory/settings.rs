//! Memory-sync settings: the guide's environment variables and `sync_config.json`.
//!
//! Precedence, highest first: command-line flag, environment variable, `sync_config.json`,
//! built-in default. Every value is checked here, so a typo fails before anything is sent.

use std::path::PathBuf;
use std::time::Duration;

mod file;
mod sources;

use file::{SettingsFile, load_file};
use sources::Sources;

/// How a memory present on both sides with different tags, type or metadata is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictPolicy {
    /// Union of tags, metadata merged key by key (the local value wins on a shared key), the
    /// local type unless it is unset.
    Merge,
    /// The local version replaces the remote one.
    Local,
    /// The remote version wins; the local one is kept in the conflict record.
    Remote,
    /// Nothing is decided automatically: `memsync resolve-conflicts` decides.
    Manual,
}

impl ConflictPolicy {
    pub fn parse(s: &str) -> Option<ConflictPolicy> {
        match s.trim().to_ascii_lowercase().as_str() {
            "merge" => Some(ConflictPolicy::Merge),
            "local" => Some(ConflictPolicy::Local),
            "remote" => Some(ConflictPolicy::Remote),
            "manual" | "ask" => Some(ConflictPolicy::Manual),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ConflictPolicy::Merge => "merge",
            ConflictPolicy::Local => "local",
            ConflictPolicy::Remote => "remote",
            ConflictPolicy::Manual => "manual",
        }
    }
}

/// Everything the memory commands need to know.
#[derive(Debug, Clone)]
pub struct Settings {
    pub protocol: String,
    pub host: String,
    pub port: u16,
    pub api_key: Option<String>,
    /// PEM file with extra trusted roots (a private CA or the server's self-signed certificate).
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate (self-signed servers without a CA file).
    pub insecure: bool,
    /// Per-request timeout for pull and push.
    pub timeout: Duration,
    pub retry_attempts: u32,
    /// `store` gives up on the server after this long and stages the memory instead.
    pub offline_threshold: Duration,
    pub batch_size: usize,
    pub conflict: ConflictPolicy,
    pub staging_db: PathBuf,
    pub log_file: PathBuf,
    /// The local mcp-memory-service database that `pull` brings the remote's memories into.
    pub memory_db: PathBuf,
    /// A replica of the server's database (`memsync replicate` on the server): `pull` reads
    /// memories with their embeddings from it instead of the REST API.
    pub replica: Option<String>,
    pub interval: Duration,
    pub debug: bool,
    pub verbose: bool,
    /// Where the settings file was read from, if one was.
    pub source: Option<PathBuf>,
    /// Where memsync reads its settings file (`--sync-config`, else `SYNC_CONFIG_PATH`, else
    /// `~/.mcp_memory_staging/sync_config.json`), whether or not one is there; `None` without
    /// a home directory.
    pub config_path: Option<PathBuf>,
    /// Where `memory_db` came from: a flag, a variable, the settings file, or "default".
    pub memory_db_from: String,
    /// Whether a server was named (host or port by flag, variable or settings file) rather
    /// than left at the default: `memsync run` syncs only then.
    pub remote_named: bool,
    /// `LITESTREAM_ENABLED`, else the settings file's `litestream_enabled`, with its source:
    /// switches replication in `memsync run`.
    pub litestream_enabled: Option<(bool, String)>,
}

/// Values given on the command line (highest precedence).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub protocol: Option<String>,
    pub api_key: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub insecure: bool,
    pub staging_db: Option<PathBuf>,
    pub memory_db: Option<PathBuf>,
    pub replica: Option<String>,
    pub conflict: Option<String>,
    pub verbose: bool,
    /// A named settings file may be missing (`init --write-config` creates it).
    pub config_may_be_missing: bool,
}

/// A setting that cannot be used, with where it came from.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{source_name}: {value:?} is not valid: {expected}")]
    Invalid {
        source_name: String,
        value: String,
        expected: &'static str,
    },
    #[error("settings file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("cannot find the home directory (HOME is unset) for the default {what}")]
    NoHome { what: &'static str },
}

/// `~/x` → `$HOME/x`; other paths unchanged.
fn expand_tilde(p: &str, home: Option<&PathBuf>) -> Result<PathBuf, SettingsError> {
    match p.strip_prefix("~/") {
        Some(rest) => Ok(home
            .ok_or(SettingsError::NoHome { what: "path" })?
            .join(rest)),
        None => Ok(PathBuf::from(p)),
    }
}

impl Settings {
    /// The TLS trust of the memory server, for the server's replica as well.
    pub fn trust(&self) -> crate::replica::Trust {
        crate::replica::Trust {
            ca_file: self.ca_file.clone(),
            insecure: self.insecure,
        }
    }

    /// Settings from flags, environment, settings file and defaults.
    pub fn load(o: &Overrides) -> Result<Settings, SettingsError> {
        Settings::load_from(o, &|name| std::env::var(name).ok())
    }

    /// [`Settings::load`] with the environment as a lookup.
    fn load_from(
        o: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, SettingsError> {
        let mut src = Sources::new(env);
        let home = crate::platform::home_with(&mut |v| src.var(v)).map(PathBuf::from);
        let staging_dir = || {
            home.as_ref()
                .map(|h| h.join(".mcp_memory_staging"))
                .ok_or(SettingsError::NoHome {
                    what: "staging folder",
                })
        };
        // The settings file: --sync-config, SYNC_CONFIG_PATH, or the staging folder's one.
        let named = o
            .config
            .clone()
            .or_else(|| src.var("SYNC_CONFIG_PATH").map(PathBuf::from));
        let config_path = named
            .clone()
            .or_else(|| staging_dir().ok().map(|d| d.join("sync_config.json")));
        let (file, source) = match (&named, &config_path) {
            (Some(p), _) if o.config_may_be_missing && !p.exists() => {
                (SettingsFile::default(), None)
            }
            (Some(p), _) => (load_file(p)?, Some(p.clone())),
            (None, Some(p)) if p.is_file() => (load_file(p)?, Some(p.clone())),
            (None, _) => (SettingsFile::default(), None),
        };
        if let Some(p) = &source {
            src.set_file(p);
        }
        let fr = file.remote;
        let fl = file.local;
        let num = |v: Option<f64>| v.map(|v| v.to_string());

        let protocol = src
            .pick(
                src.layers(
                    o.protocol.clone().map(|v| (v, "--protocol")),
                    &["REMOTE_MEMORY_PROTOCOL"],
                    fr.protocol,
                    "remote.protocol",
                ),
                "http or https",
                sources::protocol,
            )?
            .unwrap_or_else(|| "http".into());
        let host_named =
            o.host.is_some() || src.var("REMOTE_MEMORY_HOST").is_some() || fr.host.is_some();
        let port_named =
            o.port.is_some() || src.var("REMOTE_MEMORY_PORT").is_some() || fr.port.is_some();
        let host = src
            .pick(
                src.layers(
                    o.host.clone().map(|v| (v, "--host")),
                    &["REMOTE_MEMORY_HOST"],
                    fr.host,
                    "remote.host",
                ),
                "a host name or IP address, without scheme, port or path",
                sources::host,
            )?
            .unwrap_or_else(|| "localhost".into());
        let port = src
            .pick(
                src.layers(
                    o.port.map(|p| (p.to_string(), "--port")),
                    &["REMOTE_MEMORY_PORT"],
                    fr.port.map(|p| p.to_string()),
                    "remote.port",
                ),
                "a port number 1-65535",
                sources::port,
            )?
            .unwrap_or(8000);
        let api_key = src.pick(
            src.layers(
                o.api_key.clone().map(|v| (v, "--api-key")),
                &["REMOTE_MEMORY_API_KEY", "MCP_API_KEY"],
                fr.api_key,
                "remote.api_key",
            ),
            "a key of printable characters (no newline or other control character inside; an HTTP header cannot carry one), not the placeholder an older `memsync export` wrote",
            sources::api_key,
        )
        // A secret is never echoed, not even a malformed one.
        .map_err(|e| match e {
            SettingsError::Invalid {
                source_name,
                expected,
                ..
            } => SettingsError::Invalid {
                source_name,
                value: "***".into(),
                expected,
            },
            e => e,
        })?;
        let ca_file = match o.ca_file.clone() {
            Some(p) => Some(p),
            None => src
                .var("REMOTE_MEMORY_CA_FILE")
                .or(fr.ca_file)
                .map(|p| expand_tilde(&p, home.as_ref()))
                .transpose()?,
        };
        let insecure = o.insecure
            || src
                .flag("REMOTE_MEMORY_INSECURE")?
                .unwrap_or(fr.insecure.unwrap_or(false));
        let timeout = src
            .pick(
                src.layers(None, &[], num(fr.timeout), "remote.timeout"),
                "a positive number of seconds",
                sources::seconds,
            )?
            .unwrap_or(Duration::from_secs(30));
        let retry_attempts = src
            .pick(
                src.layers(
                    None,
                    &["SYNC_RETRY_ATTEMPTS"],
                    fr.retry_attempts.map(|n| n.to_string()),
                    "remote.retry_attempts",
                ),
                "a whole number",
                sources::count,
            )?
            .unwrap_or(3);
        let offline_threshold = src
            .pick(
                src.layers(
                    None,
                    &["SYNC_OFFLINE_THRESHOLD"],
                    num(fr.offline_threshold),
                    "remote.offline_threshold",
                ),
                "a positive number of seconds",
                sources::seconds,
            )?
            .unwrap_or(Duration::from_secs(5));
        let batch_size = src
            .pick(
                src.layers(
                    None,
                    &["SYNC_BATCH_SIZE"],
                    fl.batch_size.map(|n| n.to_string()),
                    "local.batch_size",
                ),
                "a positive whole number",
                sources::positive,
            )?
            .unwrap_or(100);
        let conflict = src
            .pick(
                src.layers(
                    o.conflict.clone().map(|v| (v, "--conflict")),
                    &["SYNC_CONFLICT_RESOLUTION"],
                    file.conflict_resolution,
                    "conflict_resolution",
                ),
                "merge, local, remote or manual",
                ConflictPolicy::parse,
            )?
            .unwrap_or(ConflictPolicy::Merge);
        let staging_db = match o.staging_db.clone() {
            Some(p) => p,
            None => match src.var("STAGING_DB_PATH").or(fl.staging_db) {
                Some(p) => expand_tilde(&p, home.as_ref())?,
                None => staging_dir()?.join("staging.db"),
            },
        };
        let log_file = match src.var("SYNC_LOG_PATH").or(fl.log_file) {
            Some(p) => expand_tilde(&p, home.as_ref())?,
            None => staging_db
                .parent()
                .map_or_else(|| PathBuf::from("sync.log"), |d| d.join("sync.log")),
        };
        let memory_db_from = if o.memory_db.is_some() {
            "--memory-db".to_owned()
        } else if src.var("MCP_MEMORY_SQLITE_PATH").is_some() {
            "MCP_MEMORY_SQLITE_PATH".to_owned()
        } else if fl.memory_db.is_some() {
            src.file_key("local.memory_db")
        } else if src.var("MCP_MEMORY_BASE_DIR").is_some() {
            "MCP_MEMORY_BASE_DIR".to_owned()
        } else {
            "default".to_owned()
        };
        let memory_db = match o.memory_db.clone() {
            Some(p) => p,
            None => match src.var("MCP_MEMORY_SQLITE_PATH").or(fl.memory_db) {
                Some(p) => expand_tilde(&p, home.as_ref())?,
                None => match src.var("MCP_MEMORY_BASE_DIR") {
                    Some(d) => expand_tilde(&d, home.as_ref())?.join("sqlite_vec.db"),
                    None => home
                        .as_ref()
                        .ok_or(SettingsError::NoHome {
                            what: "memory database",
                        })?
                        .join(".local/share/mcp-memory/sqlite_vec.db"),
                },
            },
        };
        let litestream_enabled = match src.flag("LITESTREAM_ENABLED")? {
            Some(on) => Some((on, "LITESTREAM_ENABLED".to_owned())),
            None => file
                .litestream_enabled
                .map(|on| (on, src.file_key("litestream_enabled"))),
        };
        let replica = o
            .replica
            .clone()
            .or_else(|| src.var("REMOTE_MEMORY_REPLICA"))
            .or(fr.replica);
        let interval = src
            .pick(
                src.layers(
                    None,
                    &["SYNC_INTERVAL"],
                    file.auto_sync_interval.map(|n| n.to_string()),
                    "auto_sync_interval",
                ),
                "a positive whole number of seconds",
                sources::whole_seconds,
            )?
            .unwrap_or(Duration::from_secs(900));
        Ok(Settings {
            protocol,
            host,
            port,
            api_key,
            ca_file,
            insecure,
            timeout,
            retry_attempts,
            offline_threshold,
            batch_size,
            conflict,
            staging_db,
            log_file,
            memory_db,
            replica,
            interval,
            debug: src.flag("SYNC_DEBUG")?.unwrap_or(false),
            verbose: o.verbose || src.flag("SYNC_VERBOSE")?.unwrap_or(false),
            source,
            config_path,
            memory_db_from,
            remote_named: host_named || port_named,
            litestream_enabled,
        })
    }

    /// The server's base URL, e.g. `https://narrowbox.local:8443`.
    pub fn base_url(&self) -> String {
        let host = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]", self.host) // an IPv6 literal
        } else {
            self.host.clone()
        };
        format!("{}://{}:{}", self.protocol, host, self.port)
    }
}

#[cfg(test)]
mod tests;

/// `url` as memsync shows and writes it: a password in it (`https://user:KEY@host/…`, the
/// backup server's key) is replaced with `***`, in every message, log line, export and written
/// settings file, as the API key is never written out.
pub fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod shown_url_tests {
    #[test]
    fn a_password_in_a_url_is_never_shown() {
        let s = super::shown_url("https://memsync:TOPSECRET@backup:8080/sqlite_vec.db");
        assert_eq!(s, "https://memsync:***@backup:8080/sqlite_vec.db");
        assert_eq!(super::shown_url("s3://bucket/db"), "s3://bucket/db");
        assert_eq!(super::shown_url("file:///srv/r"), "file:///srv/r");
    }
}
