//! Replica URLs, as given on the command line (`memsync replicate DB URL...`,
//! `memsync restore URL`) or as a replica's `url` key.
//!
//! - `file:///abs/path`, or a bare path (absolute or relative; made absolute)
//! - `s3://bucket/path?endpoint=URL&region=R&forcePathStyle=true&skipVerify=true`; a provider's
//!   host names the bucket and the endpoint (`s3://bkt.nyc3.digitaloceanspaces.com/path`)
//! - `http://host[:port]/path`, `https://...`; `webdav://` and `webdavs://` are aliases
//!   for `http://` and `https://`.

use std::path::Path;

use url::Url;

use super::{
    ConfigError, DEFAULT_RETENTION, DEFAULT_RETENTION_CHECK_INTERVAL, DEFAULT_SYNC_INTERVAL,
    ReplicaConfig, ReplicaTarget, resolve_path,
};

/// Replica types memsync knows, as written in `type:` or a URL scheme.
pub(crate) const SUPPORTED_TYPES: &str = "file, s3, http, https, webdav, webdavs";

/// Litestream replica types that memsync does not implement.
const LITESTREAM_ONLY_TYPES: &[&str] = &["gs", "gcs", "abs", "sftp", "nats", "oss", "alioss"];

/// `url` with the password of its user info (if any) shown as `***`: an error naming a URL
/// lands in logs and journals. Works on text, so also on a URL that does not parse.
pub(crate) fn hide_password(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    match authority[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..start],
            &authority[..colon],
            &url[start + at..]
        ),
        None => url.to_string(),
    }
}

/// Builds a replica with default settings from a command-line URL or path.
pub fn replica_from_url(url: &str) -> Result<ReplicaConfig, ConfigError> {
    let bad = |msg: String| ConfigError::BadUrl {
        file: None,
        line: None,
        url: url.to_string(),
        msg,
    };
    let cwd = std::env::current_dir().map_err(|e| bad(format!("cannot get current dir: {e}")))?;
    let home = crate::platform::home();
    let normal = file_colon(url).map_err(bad)?;
    let target = if is_url(&normal) {
        parse_target(&normal, &cwd, home.as_deref()).map_err(bad)?
    } else if url.is_empty() {
        return Err(bad("empty replica path".into()));
    } else {
        ReplicaTarget::File {
            path: resolve_path(url, &cwd, home.as_deref()).map_err(bad)?,
        }
    };
    Ok(ReplicaConfig {
        name: target.kind().to_string(),
        target,
        sync_interval: DEFAULT_SYNC_INTERVAL,
        retention: DEFAULT_RETENTION,
        retention_check_interval: DEFAULT_RETENTION_CHECK_INTERVAL,
        snapshot_interval: None,
        takeover: false,
    })
}

/// A `file:/abs` URL (no `//`, as Go's URL parser and so Litestream accept) in the
/// `file:///abs` form; `file:` with a relative path or nothing is an error, never a
/// directory named `file:`. Anything else as it is.
pub(crate) fn file_colon(s: &str) -> Result<std::borrow::Cow<'_, str>, String> {
    let Some(rest) = s
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("file:"))
        .map(|_| &s[5..])
        .filter(|r| !r.starts_with("//"))
    else {
        return Ok(s.into());
    };
    if rest.starts_with('/') {
        Ok(format!("file://{rest}").into())
    } else {
        Err("a file: URL takes an absolute path (file:///dir or file:/dir); give a relative directory as a plain path".into())
    }
}

/// True if a command-line target is a replica URL rather than a path: `scheme://...`, or
/// `file:` in any form (a relative `file:dir` is then refused rather than taken for a folder
/// named `file:dir`).
pub fn names_a_url(s: &str) -> bool {
    s.contains("://") || s.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("file:"))
}

/// True if `s` looks like `scheme://...` rather than a file path.
pub(crate) fn is_url(s: &str) -> bool {
    s.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

/// Maps a `type:` value or URL scheme to the target kind (`file`, `s3`, `http`).
pub(crate) fn kind_of_type(t: &str) -> Result<&'static str, String> {
    match t.to_ascii_lowercase().as_str() {
        "file" => Ok("file"),
        "s3" => Ok("s3"),
        "http" | "https" | "webdav" | "webdavs" => Ok("http"),
        other if LITESTREAM_ONLY_TYPES.contains(&other) => Err(format!(
            "replica type {other:?} is not supported by memsync (supported: {SUPPORTED_TYPES})"
        )),
        other => Err(format!(
            "unknown replica type {other:?} (supported: {SUPPORTED_TYPES})"
        )),
    }
}

/// Parses a `scheme://...` replica URL into a target. Errors are short messages.
///
/// The `url` crate does the parsing (percent-decoding, ports, IPv6 hosts, `..` in paths); what is
/// checked here is what memsync asks of each kind of replica. `webdav[s]://` is read as
/// `http[s]://`, so its host and port are parsed as a web URL's.
pub(crate) fn parse_target(
    url: &str,
    cwd: &Path,
    home: Option<&str>,
) -> Result<ReplicaTarget, String> {
    let (scheme, rest) = url.split_once("://").ok_or("missing scheme")?;
    let scheme = scheme.to_ascii_lowercase();
    kind_of_type(&scheme)?;
    if rest.contains('#') {
        return Err("URL fragments (#...) are not allowed".into());
    }
    // What stands between `://` and the path: the parser fills in or drops an empty one
    // (`http:///x` reads as host `x`), so it is checked on the text.
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let scheme = match scheme.as_str() {
        "webdav" => "http",
        "webdavs" => "https",
        s => s,
    };
    let parsed = Url::parse(&format!("{scheme}://{rest}")).map_err(|e| e.to_string())?;
    match scheme {
        "file" => {
            if parsed.query().is_some() {
                return Err("file URLs take no query parameters".into());
            }
            if !authority.is_empty() && !authority.eq_ignore_ascii_case("localhost") {
                return Err(format!(
                    "file URL has host {authority:?}; use file:///absolute/path"
                ));
            }
            if !rest.contains('/') {
                return Err("file URL has no path".into());
            }
            Ok(ReplicaTarget::File {
                path: resolve_path(&decode(parsed.path())?, cwd, home)?,
            })
        }
        "s3" => parse_s3(authority, &parsed),
        _ => {
            if let Some(q) = parsed.query() {
                return Err(format!(
                    "unknown query parameters {q:?} (http replicas take none)"
                ));
            }
            if parsed.host_str().is_none_or(str::is_empty) || authority.is_empty() {
                return Err("missing host".into());
            }
            Ok(ReplicaTarget::Http {
                url: parsed.to_string(),
            })
        }
    }
}

fn parse_s3(bucket: &str, url: &Url) -> Result<ReplicaTarget, String> {
    if bucket.is_empty() {
        return Err("missing bucket (s3://BUCKET/PATH)".into());
    }
    // A provider's host (`bkt.s3.us-west-2.amazonaws.com`) as Litestream reads it; the query
    // parameters below win over what it says.
    let host = super::s3host::parse(bucket)?;
    let mut endpoint = host.endpoint;
    let mut region = host.region;
    let mut force_path_style = false;
    let mut skip_verify = false;
    // Decoded as a form (`+` is a space), as Litestream's Go `url.Query()` does.
    for (key, value) in url.query_pairs() {
        let value = value.into_owned();
        match key.as_ref() {
            "endpoint" => endpoint = Some(value).filter(|v| !v.is_empty()),
            "region" => region = Some(value).filter(|v| !v.is_empty()),
            // Litestream's spelling, and the config key's.
            "forcePathStyle" | "force-path-style" => force_path_style = parse_bool(&key, &value)?,
            "skipVerify" => skip_verify = parse_bool(&key, &value)?,
            _ => {
                return Err(format!(
                    "unknown query parameter {key:?} (allowed: endpoint, region, forcePathStyle, skipVerify)"
                ));
            }
        }
    }
    Ok(ReplicaTarget::S3 {
        bucket: decode(&host.bucket)?,
        path: decode(url.path().trim_matches('/'))?,
        endpoint,
        region,
        force_path_style,
        skip_verify,
        access_key_id: None,
        secret_access_key: None,
    })
}

fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "" | "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("{key}={value:?} is not a boolean (true or false)")),
    }
}

/// A path as the parser leaves it (percent-encoded), decoded.
fn decode(s: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| "%-escapes are not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> ReplicaTarget {
        replica_from_url(url).unwrap().target
    }

    #[test]
    fn passwords_are_hidden_in_shown_urls() {
        assert_eq!(
            hide_password("https://me:TOPSECRET@h:99999/db?x=1"),
            "https://me:***@h:99999/db?x=1"
        );
        assert_eq!(
            hide_password("webdavs://me:p@ss@h/db"),
            "webdavs://me:***@h/db"
        );
        assert_eq!(hide_password("https://me@h/a@b"), "https://me@h/a@b");
        assert_eq!(hide_password("s3://b/p"), "s3://b/p");
        let e = replica_from_url("https://me:TOPSECRET@h/db?x=1")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("TOPSECRET") && e.contains("me:***@h"), "{e}");
    }

    #[test]
    fn file_urls_and_paths() {
        assert_eq!(
            target("file:///var/backups/db"),
            ReplicaTarget::File {
                path: "/var/backups/db".into()
            }
        );
        assert_eq!(
            target("file:///a/b/../c/"),
            ReplicaTarget::File {
                path: "/a/c".into()
            }
        );
        assert_eq!(
            target("/abs/x"),
            ReplicaTarget::File {
                path: "/abs/x".into()
            }
        );
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            target("rel/x"),
            ReplicaTarget::File {
                path: cwd.join("rel/x")
            }
        );
        let r = replica_from_url("/abs/x").unwrap();
        assert_eq!(r.name, "file");
        assert_eq!(r.sync_interval, DEFAULT_SYNC_INTERVAL);
        assert_eq!(r.retention, DEFAULT_RETENTION);
        assert_eq!(r.retention_check_interval, DEFAULT_RETENTION_CHECK_INTERVAL);
        assert_eq!(r.snapshot_interval, None);
        assert!(replica_from_url("file://host/x").is_err());
        assert!(replica_from_url("").is_err());
        assert!(replica_from_url("file://").is_err());
        assert!(replica_from_url("file:///x?a=b").is_err());
        // `file:/abs` as Go's URL parser reads it; never a directory named `file:`.
        assert_eq!(
            target("file:/var/backups/db"),
            ReplicaTarget::File {
                path: "/var/backups/db".into()
            }
        );
        for bad in ["file:", "file:rel", "FILE:x/y"] {
            let e = replica_from_url(bad).unwrap_err().to_string();
            assert!(e.contains("absolute path"), "{bad}: {e}");
        }
        assert_eq!(
            target("file://localhost/a%20b/c"),
            ReplicaTarget::File {
                path: "/a b/c".into()
            }
        );
        assert!(replica_from_url("file:///a%ff").is_err());
    }

    #[test]
    fn s3_urls() {
        let t = target(
            "s3://bkt/some/path/?endpoint=http%3A%2F%2Flocalhost%3A9000&region=eu-west-1&forcePathStyle=true&skipVerify=true",
        );
        assert_eq!(
            t,
            ReplicaTarget::S3 {
                bucket: "bkt".into(),
                path: "some/path".into(),
                endpoint: Some("http://localhost:9000".into()),
                region: Some("eu-west-1".into()),
                force_path_style: true,
                skip_verify: true,
                access_key_id: None,
                secret_access_key: None,
            }
        );
        assert_eq!(replica_from_url("s3://bkt").unwrap().name, "s3");
        assert!(matches!(target("s3://bkt"), ReplicaTarget::S3 { path, .. } if path.is_empty()));
        let e = replica_from_url("s3://bkt/p?foo=1")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "invalid replica URL \"s3://bkt/p?foo=1\": unknown query parameter \"foo\""
            ),
            "{e}"
        );
        assert!(replica_from_url("s3:///path").is_err());
        assert!(replica_from_url("s3://?region=x").is_err());
        assert_eq!(
            target("s3://b/a%2Fb/c?region="),
            ReplicaTarget::S3 {
                bucket: "b".into(),
                path: "a/b/c".into(),
                endpoint: None,
                region: None,
                force_path_style: false,
                skip_verify: false,
                access_key_id: None,
                secret_access_key: None,
            }
        );
        assert!(replica_from_url("s3://b/p?forcePathStyle=maybe").is_err());
    }

    #[test]
    fn http_and_webdav_urls() {
        assert_eq!(
            target("https://example.com:8443/dav/db"),
            ReplicaTarget::Http {
                url: "https://example.com:8443/dav/db".into()
            }
        );
        assert_eq!(
            target("webdav://h/x"),
            ReplicaTarget::Http {
                url: "http://h/x".into()
            }
        );
        assert_eq!(
            target("WEBDAVS://h/x"),
            ReplicaTarget::Http {
                url: "https://h/x".into()
            }
        );
        assert_eq!(replica_from_url("http://h/x").unwrap().name, "http");
        assert!(replica_from_url("http:///x").is_err());
        assert!(replica_from_url("http://h:port/x").is_err());
        assert!(replica_from_url("http://h/x?a=b").is_err());
        // Parsed as web URLs: the host is lowercased, the default port dropped, IPv6 understood.
        assert_eq!(
            target("webdavs://H:443/x"),
            ReplicaTarget::Http {
                url: "https://h/x".into()
            }
        );
        assert_eq!(
            target("http://[::1]:8080/x"),
            ReplicaTarget::Http {
                url: "http://[::1]:8080/x".into()
            }
        );
        assert!(replica_from_url("http://h:99999/x").is_err());
        assert!(replica_from_url("http://").is_err());
    }

    #[test]
    fn unsupported_schemes() {
        let e = replica_from_url("gs://bkt/db").unwrap_err().to_string();
        assert!(e.contains("not supported by memsync"), "{e}");
        assert!(
            replica_from_url("ftp://h/x")
                .unwrap_err()
                .to_string()
                .contains("unknown replica type")
        );
    }
}
