//! Memory-sync settings: the guide's environment variables and `sync_config.json`.
//!
//! Precedence, highest first: command-line flag, environment variable, `sync_config.json`,
//! built-in default. Every value is checked here, so a typo fails before anything is sent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRemote {
    host: Option<String>,
    port: Option<u16>,
    protocol: Option<String>,
    api_key: Option<String>,
    timeout: Option<f64>,
    retry_attempts: Option<u32>,
    offline_threshold: Option<f64>,
    ca_file: Option<String>,
    insecure: Option<bool>,
    replica: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLocal {
    staging_db: Option<String>,
    log_file: Option<String>,
    batch_size: Option<usize>,
    memory_db: Option<String>,
}

/// `sync_config.json` as the guide shows it, plus a few keys of ours (documented in the README).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    #[serde(default)]
    remote: FileRemote,
    #[serde(default)]
    local: FileLocal,
    conflict_resolution: Option<String>,
    auto_sync_interval: Option<u64>,
    /// Accepted for compatibility with the guide; replication is configured in litestream.yml.
    #[allow(dead_code)]
    litestream_enabled: Option<bool>,
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// `~/x` → `$HOME/x`; other paths unchanged.
fn expand_tilde(p: &str) -> Result<PathBuf, SettingsError> {
    match p.strip_prefix("~/") {
        Some(rest) => Ok(home()
            .ok_or(SettingsError::NoHome { what: "path" })?
            .join(rest)),
        None => Ok(PathBuf::from(p)),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn invalid(source_name: &str, value: &str, expected: &'static str) -> SettingsError {
    SettingsError::Invalid {
        source_name: source_name.to_owned(),
        value: value.to_owned(),
        expected,
    }
}

fn env_parse<T: std::str::FromStr>(
    name: &str,
    expected: &'static str,
) -> Result<Option<T>, SettingsError> {
    env(name)
        .map(|v| {
            v.trim()
                .parse::<T>()
                .map_err(|_| invalid(name, &v, expected))
        })
        .transpose()
}

fn env_flag(name: &str) -> Result<Option<bool>, SettingsError> {
    env(name)
        .map(|v| match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(invalid(name, &v, "1/true/yes/on or 0/false/no/off")),
        })
        .transpose()
}

fn seconds(name: &str, v: f64) -> Result<Duration, SettingsError> {
    if v.is_finite() && v > 0.0 && v < 1e7 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(invalid(
            name,
            &v.to_string(),
            "a positive number of seconds",
        ))
    }
}

fn load_file(path: &Path) -> Result<SettingsFile, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|e| SettingsError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| SettingsError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

impl Settings {
    /// Settings from flags, environment, settings file and defaults.
    pub fn load(o: &Overrides) -> Result<Settings, SettingsError> {
        let staging_dir = || {
            home()
                .map(|h| h.join(".mcp_memory_staging"))
                .ok_or(SettingsError::NoHome {
                    what: "staging folder",
                })
        };
        // The settings file: --sync-config, SYNC_CONFIG_PATH, or the staging folder's one.
        let named = o
            .config
            .clone()
            .or_else(|| env("SYNC_CONFIG_PATH").map(PathBuf::from));
        let (file, source) = match named {
            Some(p) => (load_file(&p)?, Some(p)),
            None => match staging_dir().map(|d| d.join("sync_config.json")) {
                Ok(p) if p.is_file() => (load_file(&p)?, Some(p)),
                _ => (SettingsFile::default(), None),
            },
        };
        let fr = file.remote;
        let fl = file.local;

        // Where a layered value came from, for error messages.
        let file_name = source.as_ref().map(|p| p.display().to_string());
        let layered =
            |flag: Option<String>, flag_name: &str, var: &str, file: Option<String>, key: &str| {
                if let Some(v) = flag {
                    return Some((v, flag_name.to_owned()));
                }
                if let Some(v) = env(var) {
                    return Some((v, var.to_owned()));
                }
                file.map(|v| {
                    (
                        v,
                        format!(
                            "{} key {key}",
                            file_name.as_deref().unwrap_or("settings file")
                        ),
                    )
                })
            };
        let (protocol, from) = layered(
            o.protocol.clone(),
            "--protocol",
            "REMOTE_MEMORY_PROTOCOL",
            fr.protocol,
            "remote.protocol",
        )
        .unwrap_or_else(|| ("http".into(), "default".into()));
        let protocol = protocol.to_ascii_lowercase();
        if protocol != "http" && protocol != "https" {
            return Err(invalid(&from, &protocol, "http or https"));
        }
        let (host, from) = layered(
            o.host.clone(),
            "--host",
            "REMOTE_MEMORY_HOST",
            fr.host,
            "remote.host",
        )
        .unwrap_or_else(|| ("localhost".into(), "default".into()));
        let host = host.trim().to_owned();
        let ipv6 = host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::Ipv6Addr>()
            .is_ok();
        if host.is_empty()
            || host.contains('/')
            || host.contains('@')
            || (host.contains(':') && !ipv6)
        {
            return Err(invalid(
                &from,
                &host,
                "a host name or IP address, without scheme, port or path",
            ));
        }
        let port = match o.port {
            Some(p) => p,
            None => match env_parse::<u16>("REMOTE_MEMORY_PORT", "a port number 1-65535")? {
                Some(p) => p,
                None => fr.port.unwrap_or(8000),
            },
        };
        if port == 0 {
            return Err(invalid("port", "0", "a port number 1-65535"));
        }
        let api_key = o
            .api_key
            .clone()
            .or_else(|| env("REMOTE_MEMORY_API_KEY"))
            .or_else(|| env("MCP_API_KEY"))
            .or(fr.api_key);
        let ca_file = match o.ca_file.clone() {
            Some(p) => Some(p),
            None => env("REMOTE_MEMORY_CA_FILE")
                .or(fr.ca_file)
                .map(|p| expand_tilde(&p))
                .transpose()?,
        };
        let insecure = o.insecure
            || env_flag("REMOTE_MEMORY_INSECURE")?.unwrap_or(fr.insecure.unwrap_or(false));
        let timeout = seconds("remote.timeout", fr.timeout.unwrap_or(30.0))?;
        let retry_attempts = match env_parse::<u32>("SYNC_RETRY_ATTEMPTS", "a whole number")? {
            Some(n) => n,
            None => fr.retry_attempts.unwrap_or(3),
        };
        let offline_threshold = match env_parse::<f64>("SYNC_OFFLINE_THRESHOLD", "seconds")? {
            Some(v) => seconds("SYNC_OFFLINE_THRESHOLD", v)?,
            None => seconds(
                "remote.offline_threshold",
                fr.offline_threshold.unwrap_or(5.0),
            )?,
        };
        let batch_size = match env_parse::<usize>("SYNC_BATCH_SIZE", "a positive whole number")? {
            Some(n) => n,
            None => fl.batch_size.unwrap_or(100),
        };
        if batch_size == 0 {
            let from = if env("SYNC_BATCH_SIZE").is_some() {
                "SYNC_BATCH_SIZE".to_owned()
            } else {
                format!(
                    "{} key local.batch_size",
                    file_name.as_deref().unwrap_or("settings file")
                )
            };
            return Err(invalid(&from, "0", "a positive whole number"));
        }
        let (conflict_text, from) = layered(
            o.conflict.clone(),
            "--conflict",
            "SYNC_CONFLICT_RESOLUTION",
            file.conflict_resolution,
            "conflict_resolution",
        )
        .unwrap_or_else(|| ("merge".into(), "default".into()));
        let conflict = ConflictPolicy::parse(&conflict_text)
            .ok_or_else(|| invalid(&from, &conflict_text, "merge, local, remote or manual"))?;
        let staging_db = match o.staging_db.clone() {
            Some(p) => p,
            None => match env("STAGING_DB_PATH").or(fl.staging_db) {
                Some(p) => expand_tilde(&p)?,
                None => staging_dir()?.join("staging.db"),
            },
        };
        let log_file = match env("SYNC_LOG_PATH").or(fl.log_file) {
            Some(p) => expand_tilde(&p)?,
            None => staging_db
                .parent()
                .map_or_else(|| PathBuf::from("sync.log"), |d| d.join("sync.log")),
        };
        let memory_db = match o.memory_db.clone() {
            Some(p) => p,
            None => match env("MCP_MEMORY_SQLITE_PATH").or(fl.memory_db) {
                Some(p) => expand_tilde(&p)?,
                None => match env("MCP_MEMORY_BASE_DIR") {
                    Some(d) => expand_tilde(&d)?.join("sqlite_vec.db"),
                    None => home()
                        .ok_or(SettingsError::NoHome {
                            what: "memory database",
                        })?
                        .join(".local/share/mcp-memory/sqlite_vec.db"),
                },
            },
        };
        let replica = o
            .replica
            .clone()
            .or_else(|| env("REMOTE_MEMORY_REPLICA"))
            .or(fr.replica);
        let interval = match env_parse::<u64>("SYNC_INTERVAL", "a whole number of seconds")? {
            Some(s) => Duration::from_secs(s),
            None => Duration::from_secs(file.auto_sync_interval.unwrap_or(900)),
        };
        if interval.is_zero() {
            return Err(invalid(
                "SYNC_INTERVAL",
                "0",
                "a positive number of seconds",
            ));
        }
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
            debug: env_flag("SYNC_DEBUG")?.unwrap_or(false),
            verbose: o.verbose || env_flag("SYNC_VERBOSE")?.unwrap_or(false),
            source,
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
mod tests {
    use super::*;

    #[test]
    fn policies_parse() {
        assert_eq!(
            ConflictPolicy::parse(" Merge "),
            Some(ConflictPolicy::Merge)
        );
        assert_eq!(
            ConflictPolicy::parse("remote"),
            Some(ConflictPolicy::Remote)
        );
        assert_eq!(ConflictPolicy::parse("newest"), None);
    }

    #[test]
    fn settings_file_rejects_unknown_keys_with_position() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sync_config.json");
        std::fs::write(&p, "{\n  \"remote\": {\"hots\": \"x\"}\n}").unwrap();
        let e = load_file(&p).unwrap_err().to_string();
        assert!(e.contains("hots") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn the_example_settings_file_parses() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("sync_config.example.json");
        let f = load_file(&p).unwrap();
        assert_eq!(f.remote.port, Some(8443));
        assert_eq!(f.conflict_resolution.as_deref(), Some("merge"));
    }

    #[test]
    fn a_named_settings_file_that_is_missing_is_an_error() {
        let e = Settings::load(&Overrides {
            config: Some(PathBuf::from("/nonexistent/sync_config.json")),
            ..Overrides::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("/nonexistent/sync_config.json"), "{e}");
    }
}
