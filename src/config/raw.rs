//! Raw serde structs mirroring the YAML (unknown keys rejected), and the mapping of
//! YAML errors to [`ConfigError`]s with did-you-mean suggestions.

use std::path::Path;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::ConfigError;

/// Litestream keys that memsync deliberately does not implement (any level).
const UNSUPPORTED_KEYS: &[&str] = &[
    "age",
    // `logging.source` (source locations in log lines).
    "source",
    "mcp-addr",
    "max-checkpoint-page-count",
    "validation-interval",
    "socket",
    "snapshot",
    "l0-retention-check-interval",
    "shutdown-sync-timeout",
    "shutdown-sync-interval",
    "host",
    "user",
    "password",
    "key-path",
    "host-key",
    "host-key-path",
    "account-name",
    "account-key",
    "concurrent-writes",
    "part-size",
    "sse-customer-algorithm",
    "sse-customer-key",
    "sse-customer-key-path",
    "sse-kms-key-id",
    "storage-class",
    "sign-payload",
    "require-content-md5",
    "heartbeat-url",
    "heartbeat-interval",
    "auto-recover",
    "concurrency",
    "client-cert",
    "restore-if-db-not-exists",
    "verify-compaction",
    "validation",
    "meta-dir",
    "max-sync-wal-bytes",
    "max-sync-ltx-files",
];

/// A scalar whose YAML type matters (durations: strings vs bare integers).
pub(super) enum Scalar {
    Str(String),
    Int(i128),
    Other(String),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'v> serde::de::Visitor<'v> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration such as \"1s\"")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Other(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Other(v.to_string()))
            }
            // Litestream's `retention: {enabled: false}` (pruning left to the bucket's
            // lifecycle rules) has no counterpart: memsync prunes past a duration, always.
            fn visit_map<A: serde::de::MapAccess<'v>>(self, _: A) -> Result<Scalar, A::Error> {
                Err(serde::de::Error::custom(
                    "a block where a duration such as \"24h\" belongs (Litestream's `retention: {enabled: false}` is not supported: memsync prunes what is older than its `retention` duration)",
                ))
            }
        }
        d.deserialize_any(V)
    }
}

pub(super) type S<T> = Option<Spanned<T>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawConfig {
    pub(super) dbs: Option<Vec<Spanned<RawDb>>>,
    pub(super) addr: Option<String>,
    pub(super) logging: Option<RawLogging>,
    /// The application `replicate` and `run` start as their child (`-exec`).
    pub(super) exec: S<String>,
    pub(super) access_key_id: Option<String>,
    pub(super) secret_access_key: Option<String>,
    // Global defaults for replicas (Litestream v0.5).
    pub(super) sync_interval: S<Scalar>,
    pub(super) retention: S<Scalar>,
    pub(super) retention_check_interval: S<Scalar>,
    pub(super) snapshot_interval: S<Scalar>,
    pub(super) bucket: Option<String>,
    pub(super) region: Option<String>,
    pub(super) endpoint: Option<String>,
    pub(super) force_path_style: Option<bool>,
    pub(super) skip_verify: Option<bool>,
    // Restore-point tiers (Litestream v0.5 names; a level's `retention` is memsync's).
    pub(super) l0_retention: S<Scalar>,
    pub(super) levels: S<Vec<Spanned<RawLevel>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawLevel {
    pub(super) interval: S<Scalar>,
    pub(super) retention: S<Scalar>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawLogging {
    pub(super) level: S<String>,
    #[serde(rename = "type")]
    pub(super) kind: S<String>,
    pub(super) stderr: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawDb {
    pub(super) path: S<String>,
    /// Directory replication (Litestream v0.5.3+): every database in `dir` matching `pattern`.
    pub(super) dir: S<String>,
    pub(super) pattern: S<String>,
    pub(super) recursive: S<bool>,
    pub(super) watch: S<bool>,
    pub(super) meta_path: S<String>,
    pub(super) monitor_interval: S<Scalar>,
    pub(super) checkpoint_interval: S<Scalar>,
    pub(super) min_checkpoint_page_count: S<i64>,
    pub(super) truncate_page_n: S<i64>,
    pub(super) busy_timeout: S<Scalar>,
    /// memsync only: disk the spool may use while a replica cannot take what it holds.
    pub(super) spool_budget: S<Scalar>,
    pub(super) replicas: Option<Vec<Spanned<RawReplica>>>,
    pub(super) replica: S<RawReplica>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawReplica {
    pub(super) name: S<String>,
    #[serde(rename = "type")]
    pub(super) kind: S<String>,
    pub(super) path: S<String>,
    pub(super) url: S<String>,
    pub(super) sync_interval: S<Scalar>,
    pub(super) retention: S<Scalar>,
    pub(super) retention_check_interval: S<Scalar>,
    pub(super) snapshot_interval: S<Scalar>,
    /// memsync only: replace the replica if it belongs to another database.
    pub(super) takeover: Option<bool>,
    pub(super) bucket: S<String>,
    pub(super) endpoint: Option<String>,
    pub(super) region: Option<String>,
    pub(super) force_path_style: Option<bool>,
    pub(super) skip_verify: Option<bool>,
    pub(super) access_key_id: Option<String>,
    pub(super) secret_access_key: Option<String>,
    /// Litestream's WebDAV keys: the server URL with its path, and Basic auth.
    pub(super) webdav_url: S<String>,
    pub(super) webdav_username: Option<String>,
    pub(super) webdav_password: Option<String>,
}

/// Maps a serde-saphyr error to an UnknownKey / Unsupported / Yaml error.
pub(super) fn yaml_error(e: &serde_saphyr::Error, file: &Path) -> ConfigError {
    let (line, col) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
    let file = file.to_path_buf();
    let mut inner = e;
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = inner
    {
        inner = error;
    }
    if let serde_saphyr::Error::SerdeUnknownField {
        field, expected, ..
    } = inner
    {
        let context = if expected.contains(&"dbs") {
            "top level"
        } else if expected.contains(&"monitor-interval") {
            "db"
        } else if expected.contains(&"bucket") {
            "replica"
        } else if expected.contains(&"stderr") {
            "logging"
        } else if expected.contains(&"interval") {
            "levels"
        } else {
            "config"
        }
        .to_string();
        let key = field.clone();
        if UNSUPPORTED_KEYS.contains(&key.as_str()) {
            return ConfigError::Unsupported {
                file,
                line,
                col,
                key,
                context,
            };
        }
        let suggestion = suggest(&key, expected);
        return ConfigError::UnknownKey {
            file,
            line,
            col,
            key,
            context,
            suggestion,
        };
    }
    // Display is "error: line L column C: MSG" plus maybe a source snippet; keep MSG.
    let text = inner.to_string();
    let first = text.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let msg = match first.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((_, m)) => m,
        None => first,
    };
    // Some messages end in " at line L, column C" instead; the location is in the prefix.
    let msg = match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(", column ") => &msg[..i],
        _ => msg,
    };
    // The parser's advice on its own options means nothing to someone editing a config.
    let msg = match msg.split_once(", set DuplicateKeyPolicy") {
        Some((m, _)) => match m.strip_prefix("duplicate mapping key: ") {
            Some(key) => format!("`{key}` is set twice here (keep one)"),
            None => m.to_string(),
        },
        None if msg.starts_with("multiple YAML documents") => {
            "the file holds more than one YAML document (a `---` line between them); memsync reads one: merge them".to_string()
        }
        None => msg.to_string(),
    };
    ConfigError::Yaml {
        file,
        line,
        col,
        msg,
    }
}

/// The closest candidate within a small edit distance, for "did you mean".
fn suggest(key: &str, candidates: &[&str]) -> Option<String> {
    let limit = (key.chars().count() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|c| (edit_distance(key, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

/// Levenshtein distance (case-insensitive, `_` counted as `-`).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let norm = |s: &str| -> Vec<char> {
        s.chars()
            .map(|c| {
                if c == '_' {
                    '-'
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    };
    let (a, b) = (norm(a), norm(b));
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_and_suggestions() {
        assert_eq!(edit_distance("sync-intervall", "sync-interval"), 1);
        assert_eq!(edit_distance("sync_interval", "sync-interval"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
        let keys = ["path", "url", "sync-interval", "retention"];
        assert_eq!(suggest("retension", &keys).as_deref(), Some("retention"));
        assert_eq!(suggest("pth", &keys).as_deref(), Some("path"));
        assert_eq!(suggest("completely-different", &keys), None);
    }
}
