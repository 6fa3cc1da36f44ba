//! Cross-field validation of a converted [`Config`].

use std::path::Path;

use super::convert::DbSpan;
use super::{Config, ConfigError, ReplicaTarget};
use crate::fsutil;

/// Where a replica stores data: a namespace (`root`) and a path inside it. Two replicas
/// conflict when their roots are equal and one path is a prefix of (or equal to) the other,
/// or (file replicas that exist) when they are one directory by device and inode.
#[derive(Debug, PartialEq, Eq)]
struct Place {
    root: String,
    segments: Vec<String>,
    file_id: Option<(u64, u64)>,
}

fn place(t: &ReplicaTarget) -> Place {
    let split = |p: &str| -> Vec<String> {
        p.split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .map(str::to_string)
            .collect()
    };
    match t {
        // Symlinks resolved: two paths reaching one directory are one place.
        ReplicaTarget::File { path } => Place {
            root: "file".into(),
            segments: fsutil::canonical(path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect(),
            file_id: fsutil::file_id(path),
        },
        ReplicaTarget::S3 {
            bucket,
            path,
            endpoint,
            ..
        } => Place {
            root: format!(
                "s3 {} {bucket}",
                endpoint
                    .as_deref()
                    .unwrap_or("")
                    .trim_end_matches('/')
                    .to_ascii_lowercase()
            ),
            segments: split(path),
            file_id: None,
        },
        ReplicaTarget::Http { url } => {
            let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let mut authority = authority.to_ascii_lowercase();
            let default_port = if scheme == "https" { ":443" } else { ":80" };
            if let Some(a) = authority.strip_suffix(default_port) {
                authority = a.to_string();
            }
            Place {
                root: format!("{scheme}://{authority}"),
                segments: split(path),
                file_id: None,
            }
        }
    }
}

/// Checks the rules that span fields, dbs and replicas. `spans` (absent for configs built
/// in code) gives the line of each db and replica for error messages.
pub(crate) fn validate(config: &Config, spans: Option<&[DbSpan]>) -> Result<(), ConfigError> {
    let file = &config.source;
    let err = |line: Option<u64>, what: String| ConfigError::Invalid {
        file: file.clone(),
        line,
        what,
    };
    if config.dbs.is_empty() {
        return Err(err(
            None,
            format!("no databases configured in {}", file.display()),
        ));
    }
    let db_line = |i: usize| spans.and_then(|s| s.get(i)).map(|s| s.line);
    let rep_line = |i: usize, j: usize| {
        spans
            .and_then(|s| s.get(i))
            .and_then(|s| s.replicas.get(j))
            .copied()
    };
    let at = |line: Option<u64>| line.map(|l| format!(" (line {l})")).unwrap_or_default();

    // Databases by the file SQLite opens: symlinks resolved, and device + inode where it exists
    // (a second name of one database makes two monitors fight over its checkpoints).
    let real: Vec<(std::path::PathBuf, Option<(u64, u64)>)> = config
        .dbs
        .iter()
        .map(|d| (fsutil::canonical(&d.path), fsutil::file_id(&d.path)))
        .collect();
    let mut seen: std::collections::HashMap<&std::path::Path, usize> = Default::default();
    let mut seen_ids: std::collections::HashMap<(u64, u64), usize> = Default::default();
    // (db index, replica index, place)
    let mut places: Vec<(usize, usize, Place)> = Vec::new();
    for (i, db) in config.dbs.iter().enumerate() {
        let dbname = db.path.display();
        let line = db_line(i);
        let (canon, id) = &real[i];
        let first = seen
            .get(canon.as_path())
            .or_else(|| id.as_ref().and_then(|id| seen_ids.get(id)))
            .copied();
        if let Some(first) = first {
            let other = &config.dbs[first].path;
            let alias = if *other == db.path {
                String::new()
            } else {
                format!(" as {}; both are {}", other.display(), canon.display())
            };
            return Err(err(
                line,
                format!(
                    "db {dbname} is configured twice (first at dbs[{first}]{}{alias})",
                    at(db_line(first))
                ),
            ));
        }
        seen.insert(canon.as_path(), i);
        if let Some(id) = id {
            seen_ids.insert(*id, i);
        }
        for (key, zero) in [
            ("monitor-interval", db.monitor_interval.is_zero()),
            ("checkpoint-interval", db.checkpoint_interval.is_zero()),
            ("busy-timeout", db.busy_timeout.is_zero()),
            (
                "min-checkpoint-page-count",
                db.min_checkpoint_page_count == 0,
            ),
        ] {
            if zero {
                return Err(err(line, format!("db {dbname}: `{key}` must not be 0")));
            }
        }
        for (j, r) in db.replicas.iter().enumerate() {
            let line = rep_line(i, j);
            let what = format!("replica {:?} of db {dbname}", r.name);
            if db.replicas[..j].iter().any(|o| o.name == r.name) {
                return Err(err(
                    line,
                    format!("{what}: duplicate replica name; give each replica a distinct `name`"),
                ));
            }
            if r.retention_check_interval.is_zero() {
                return Err(err(
                    line,
                    format!("{what}: `retention-check-interval` must not be 0"),
                ));
            }
            if r.snapshot_interval.is_some_and(|d| d.is_zero()) {
                return Err(err(
                    line,
                    format!(
                        "{what}: `snapshot-interval` must not be 0 (omit it to snapshot only when needed)"
                    ),
                ));
            }
            if let ReplicaTarget::File { path } = &r.target
                && let Some(d) = {
                    let rp = fsutil::canonical(path);
                    config
                        .dbs
                        .iter()
                        .zip(&real)
                        .find(|(d, (c, _))| is_within(&d.path, path) || is_within(c, &rp))
                        .map(|(d, _)| d)
                }
            {
                return Err(err(
                    line,
                    format!(
                        "{what}: replica path {} is or contains the database file {}",
                        path.display(),
                        d.path.display()
                    ),
                ));
            }
            let p = place(&r.target);
            for (oi, oj, op) in &places {
                if op.root != p.root {
                    continue;
                }
                let other = &config.dbs[*oi].replicas[*oj];
                let other = format!(
                    "replica {:?} of db {}{}",
                    other.name,
                    config.dbs[*oi].path.display(),
                    at(rep_line(*oi, *oj))
                );
                let relation = if op.segments == p.segments
                    || (op.file_id.is_some() && op.file_id == p.file_id)
                {
                    "points at the same place as"
                } else if p.segments.starts_with(&op.segments) {
                    "is inside"
                } else if op.segments.starts_with(&p.segments) {
                    "contains"
                } else {
                    continue;
                };
                return Err(err(
                    line,
                    format!(
                        "{what} {relation} {other}; replicas sharing a location corrupt each other"
                    ),
                ));
            }
            places.push((i, j, p));
        }
    }
    Ok(())
}

/// True if `inner` is `outer` or lies below it (lexically).
fn is_within(inner: &Path, outer: &Path) -> bool {
    inner.starts_with(outer)
}
