//! Cross-field validation of a converted [`Config`].

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};

use super::convert::DbSpan;
use super::{Config, ConfigError, ReplicaTarget};
use crate::fsutil;

/// Where a replica stores data: a namespace (`root`) and a path inside it. Two replicas
/// conflict when their roots are equal and one path is a prefix of (or equal to) the other.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Place {
    root: String,
    segments: Vec<String>,
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
        },
        // The origin as the URL parser gives it: scheme, lowercased host, port unless the
        // scheme's default.
        ReplicaTarget::Http { url } => match url::Url::parse(url) {
            Ok(u) => Place {
                root: u.origin().ascii_serialization(),
                // Decoded, as the replica client stores it: `%64b` is `db`.
                segments: split(
                    &percent_encoding::percent_decode_str(u.path()).decode_utf8_lossy(),
                ),
            },
            Err(_) => Place {
                root: url.clone(),
                segments: Vec::new(),
            },
        },
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
    // Checked here, not when the listener binds (which told neither file nor key).
    if let Some(a) = &config.addr
        && a.rsplit_once(':')
            .is_none_or(|(_, port)| port.parse::<u16>().is_err())
    {
        return Err(err(
            None,
            format!("`addr` {a:?} is not HOST:PORT (or :PORT for every interface)"),
        ));
    }
    if config.dbs.is_empty() && config.dirs.is_empty() {
        return Err(err(None, "no databases configured".to_owned()));
    }
    let db_line = |i: usize| spans.and_then(|s| s.get(i)).map(|s| s.line);
    let rep_line = |i: usize, j: usize| {
        spans
            .and_then(|s| s.get(i))
            .and_then(|s| s.replicas.get(j))
            .copied()
    };
    let at = |line: Option<u64>| line.map(|l| format!(" (line {l})")).unwrap_or_default();

    // Every check below is a lookup in a sorted or hashed index, never a scan of the other
    // databases: thousands of databases validate in milliseconds (a scan per entry took a
    // minute for 20 000).
    // Databases are compared by the file SQLite opens: symlinks resolved, and device + inode
    // where it exists (a second name of one database makes two monitors fight over its
    // checkpoints); file replicas likewise.
    let real: Vec<(PathBuf, Option<(u64, u64)>)> = config
        .dbs
        .iter()
        .map(|d| (fsutil::canonical(&d.path), fsutil::file_id(&d.path)))
        .collect();
    let mut seen: HashMap<&Path, usize> = HashMap::with_capacity(config.dbs.len());
    let mut seen_ids: HashMap<(u64, u64), usize> = HashMap::new();
    let db_paths: BTreeMap<&Path, usize> = real
        .iter()
        .enumerate()
        .map(|(i, (c, _))| (c.as_path(), i))
        .collect();
    // memsync's own directories (spool, lineage, lock): a file replica there would be
    // pruned with the spool.
    let metas: Vec<PathBuf> = config
        .dbs
        .iter()
        .zip(&real)
        .map(|(d, (c, _))| match &d.meta_path {
            Some(m) => fsutil::canonical(m),
            None => super::meta_dir_beside(c),
        })
        .collect();
    let meta_paths: BTreeMap<&Path, usize> = metas
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_path(), i))
        .collect();
    let mut places: BTreeMap<Place, (usize, usize)> = BTreeMap::new();
    let mut place_ids: HashMap<(u64, u64), (usize, usize)> = HashMap::new();
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
            if r.retention.is_zero() {
                return Err(err(
                    line,
                    format!(
                        "{what}: `retention` must not be 0 (history must stay restorable for some time)"
                    ),
                ));
            }
            if r.snapshot_interval.is_some_and(|d| d.is_zero()) {
                return Err(err(
                    line,
                    format!(
                        "{what}: `snapshot-interval` must not be 0 (omit it to snapshot once per retention and when a restore needs one)"
                    ),
                ));
            }
            if let ReplicaTarget::File { path } = &r.target
                && let Some(d) = first_within(&db_paths, &fsutil::canonical(path))
            {
                return Err(err(
                    line,
                    format!(
                        "{what}: replica path {} is or contains the database file {}",
                        path.display(),
                        config.dbs[d].path.display()
                    ),
                ));
            }
            if let ReplicaTarget::File { path } = &r.target {
                let rp = fsutil::canonical(path);
                let inside = rp.ancestors().find_map(|a| meta_paths.get(a).copied());
                if let Some(d) = inside.or_else(|| first_within(&meta_paths, &rp)) {
                    return Err(err(
                        line,
                        format!(
                            "{what}: replica path {} overlaps {}, memsync's own directory for db {} (its spool would prune the replica); choose another place",
                            path.display(),
                            metas[d].display(),
                            config.dbs[d].path.display()
                        ),
                    ));
                }
            }
            let p = place(&r.target);
            let id = match &r.target {
                ReplicaTarget::File { path } => fsutil::file_id(path),
                _ => None,
            };
            let same_dir = id
                .and_then(|id| place_ids.get(&id))
                .map(|&at| ("points at the same place as", at));
            if let Some((relation, (oi, oj))) = same_dir.or_else(|| conflict(&places, &p)) {
                let other = &config.dbs[oi].replicas[oj];
                let other = format!(
                    "replica {:?} of db {}{}",
                    other.name,
                    config.dbs[oi].path.display(),
                    at(rep_line(oi, oj))
                );
                return Err(err(
                    line,
                    format!(
                        "{what} {relation} {other}; replicas sharing a location corrupt each other"
                    ),
                ));
            }
            places.insert(p, (i, j));
            if let Some(id) = id {
                place_ids.insert(id, (i, j));
            }
        }
    }
    Ok(())
}

/// A database path that is `outer` or lies below it (lexically). Paths order component by
/// component, so everything below `outer` sorts right after it: the first path at or after
/// `outer` is below it if any is.
fn first_within(paths: &BTreeMap<&Path, usize>, outer: &Path) -> Option<usize> {
    paths
        .range::<Path, _>((Bound::Included(outer), Bound::Unbounded))
        .next()
        .filter(|(p, _)| p.starts_with(outer))
        .map(|(_, &i)| i)
}

/// How `p` overlaps a place already taken, and by which (db, replica): the same place, inside
/// one (one of `p`'s ancestors is taken), or containing one (the first taken place after `p`
/// in order lies below it, by the same ordering argument as [`first_within`]).
fn conflict(
    places: &BTreeMap<Place, (usize, usize)>,
    p: &Place,
) -> Option<(&'static str, (usize, usize))> {
    if let Some(&at) = places.get(p) {
        return Some(("points at the same place as", at));
    }
    for n in 0..p.segments.len() {
        let up = Place {
            root: p.root.clone(),
            segments: p.segments[..n].to_vec(),
        };
        if let Some(&at) = places.get(&up) {
            return Some(("is inside", at));
        }
    }
    places
        .range((Bound::Excluded(p), Bound::Unbounded))
        .next()
        .filter(|(q, _)| q.root == p.root && q.segments.starts_with(&p.segments))
        .map(|(_, &at)| ("contains", at))
}
