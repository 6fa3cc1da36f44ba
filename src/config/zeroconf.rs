//! Zero-config replication: with no config file, the guide's `LITESTREAM_*` variables describe
//! one replica of the local mcp-memory-service database (the path memory sync resolves, given
//! by the caller: the config knows nothing of memory sync). Each setting remembers where it
//! came from, for `memsync databases`.

use std::path::{Path, PathBuf};

use super::{Config, ConfigError, DbConfig, LoggingConfig, Tiers, parse_duration};

/// The variable naming the replica; without it there is no zero-config replication.
pub const REPLICA_VAR: &str = "LITESTREAM_REPLICA_PATH";

/// The `addr` endpoint's address when no config file names one (zero-config, or `memsync run`
/// with only memory sync).
pub const ADDR_VAR: &str = "MEMSYNC_ADDR";

/// One setting of a configuration from the environment, and where its value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The setting, as litestream.yml names it (`path`, `replica`, `sync-interval`, ...).
    pub setting: &'static str,
    pub value: String,
    /// A variable's name, or "default".
    pub from: String,
}

/// A configuration made from the environment, with where each setting came from.
#[derive(Debug, Clone)]
pub struct EnvConfig {
    pub config: Config,
    pub origins: Vec<Origin>,
}

fn invalid(var: &str, what: String) -> ConfigError {
    ConfigError::Invalid {
        file: PathBuf::from(var),
        line: None,
        what,
    }
}

/// A default duration as litestream.yml writes it (`1s`, `24h`).
/// A duration as Go (and the config file) writes it: `1s`, `5m`, `24h`, `100ms`.
pub fn go_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if d.subsec_nanos() != 0 => format!("{}ms", d.as_millis()),
        _ if s > 0 && s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s > 0 && s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// The configuration `LITESTREAM_REPLICA_PATH` (a path or a replica URL),
/// `LITESTREAM_SYNC_INTERVAL` and `LITESTREAM_RETENTION` (Go durations) describe for the
/// database `db` (found through `db_from`); `None` when `LITESTREAM_REPLICA_PATH` is unset.
/// `LITESTREAM_COMPRESS=false` is refused: memsync's replica files are always compressed.
/// `MEMSYNC_ADDR` is the `addr` key.
pub fn from_env(
    env: &dyn Fn(&str) -> Option<String>,
    db: &Path,
    db_from: &str,
) -> Result<Option<EnvConfig>, ConfigError> {
    let var = |n: &str| env(n).filter(|v| !v.trim().is_empty());
    let Some(url) = var(REPLICA_VAR) else {
        return Ok(None);
    };
    let mut origins = vec![
        Origin {
            setting: "path",
            value: db.display().to_string(),
            from: db_from.to_owned(),
        },
        Origin {
            setting: "replica",
            value: url.clone(),
            from: REPLICA_VAR.into(),
        },
    ];
    if let Some(v) = var("LITESTREAM_COMPRESS") {
        match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => {}
            "0" | "false" | "no" | "off" => {
                return Err(invalid(
                    "LITESTREAM_COMPRESS",
                    format!(
                        "{v:?} is refused: memsync's replica files are always compressed (zstd); unset it or set it to true"
                    ),
                ));
            }
            _ => {
                return Err(invalid(
                    "LITESTREAM_COMPRESS",
                    format!("{v:?} is not true or false"),
                ));
            }
        }
    }
    let mut replica =
        super::replica_from_url(&url).map_err(|e| invalid(REPLICA_VAR, e.to_string()))?;
    let mut duration = |name: &'static str, setting: &'static str, default: std::time::Duration| {
        let (d, value, from) = match var(name) {
            Some(v) => (
                parse_duration(v.trim())
                    .map_err(|why| invalid(name, format!("invalid duration {v:?}: {why}")))?,
                v.trim().to_owned(),
                name.to_owned(),
            ),
            None => (default, go_duration(default), "default".to_owned()),
        };
        origins.push(Origin {
            setting,
            value,
            from,
        });
        Ok::<_, ConfigError>(d)
    };
    replica.sync_interval = duration(
        "LITESTREAM_SYNC_INTERVAL",
        "sync-interval",
        super::DEFAULT_SYNC_INTERVAL,
    )?;
    replica.retention = duration(
        "LITESTREAM_RETENTION",
        "retention",
        super::DEFAULT_RETENTION,
    )?;
    if replica.retention.is_zero() {
        return Err(invalid("LITESTREAM_RETENTION", "must not be 0".into()));
    }
    // The `addr` endpoint: a config file's key, here memsync's own variable.
    let addr = var(ADDR_VAR).map(|a| a.trim().to_owned());
    if let Some(a) = &addr {
        origins.push(Origin {
            setting: "addr",
            value: a.clone(),
            from: ADDR_VAR.into(),
        });
    }
    let config = Config {
        dbs: vec![DbConfig::with_defaults(db.to_path_buf(), vec![replica])],
        dirs: Vec::new(),
        addr,
        logging: LoggingConfig::default(),
        source: PathBuf::from(format!("(environment: {REPLICA_VAR})")),
        tiers: Tiers::default(),
        exec: None,
    };
    super::validate::validate(&config, None)?;
    Ok(Some(EnvConfig { config, origins }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ReplicaTarget;
    use std::time::Duration;

    fn load(vars: &[(&str, &str)]) -> Result<Option<EnvConfig>, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = move |n: &str| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        from_env(
            &env,
            Path::new("/m/sqlite_vec.db"),
            "MCP_MEMORY_SQLITE_PATH",
        )
    }

    #[test]
    fn the_guides_variables_make_one_replica() {
        assert!(load(&[]).unwrap().is_none());
        let e = load(&[
            ("LITESTREAM_REPLICA_PATH", "/backup/sqlite_vec.db"),
            ("LITESTREAM_SYNC_INTERVAL", "1s"),
            ("LITESTREAM_RETENTION", "72h"),
            ("LITESTREAM_COMPRESS", "true"),
        ])
        .unwrap()
        .unwrap();
        let db = &e.config.dbs[0];
        assert_eq!(db.path, Path::new("/m/sqlite_vec.db"));
        let r = &db.replicas[0];
        assert_eq!(
            r.target,
            ReplicaTarget::File {
                path: "/backup/sqlite_vec.db".into()
            }
        );
        assert_eq!(r.sync_interval, Duration::from_secs(1));
        assert_eq!(r.retention, Duration::from_secs(72 * 3600));
        let from: Vec<(&str, &str)> = e
            .origins
            .iter()
            .map(|o| (o.setting, o.from.as_str()))
            .collect();
        assert_eq!(
            from,
            [
                ("path", "MCP_MEMORY_SQLITE_PATH"),
                ("replica", "LITESTREAM_REPLICA_PATH"),
                ("sync-interval", "LITESTREAM_SYNC_INTERVAL"),
                ("retention", "LITESTREAM_RETENTION")
            ]
        );
        let e = load(&[(
            "LITESTREAM_REPLICA_PATH",
            "s3://b/p?endpoint=http://127.0.0.1:1",
        )])
        .unwrap()
        .unwrap();
        assert_eq!(
            e.config.dbs[0].replicas[0].retention,
            super::super::DEFAULT_RETENTION
        );
        assert_eq!(e.origins[3].from, "default");
        assert_eq!(e.origins[3].value, "24h");
        assert_eq!(e.origins[2].value, "1s");
    }

    #[test]
    fn bad_values_name_their_variable() {
        let r = ("LITESTREAM_REPLICA_PATH", "/backup/x");
        let e = |vars: &[(&str, &str)]| load(vars).unwrap_err().to_string();
        assert_eq!(
            e(&[r, ("LITESTREAM_COMPRESS", "false")]),
            "LITESTREAM_COMPRESS: \"false\" is refused: memsync's replica files are always compressed (zstd); unset it or set it to true"
        );
        assert!(
            e(&[r, ("LITESTREAM_SYNC_INTERVAL", "10")])
                .starts_with("LITESTREAM_SYNC_INTERVAL: invalid duration \"10\"")
        );
        assert!(e(&[r, ("LITESTREAM_RETENTION", "-1h")]).starts_with("LITESTREAM_RETENTION: "));
        assert!(
            e(&[("LITESTREAM_REPLICA_PATH", "gs://bucket/x")])
                .starts_with("LITESTREAM_REPLICA_PATH: ")
        );
    }
}
