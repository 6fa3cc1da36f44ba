//! Directory entries (`dir`, `pattern`, `recursive`, `watch`): one `dbs` entry standing for
//! every database in a directory. Each database found there is replicated like a configured
//! one, its replicas placed at `<replica>/<path under dir>` (Litestream's layout, so a
//! replica written by one tool is found by the other at the same place).

use std::path::{Component, Path, PathBuf};

use serde_saphyr::Spanned;

use super::glob::Glob;
use super::raw::{RawDb, S};
use super::{DbConfig, ReplicaTarget};

/// `pattern`, `recursive`, `watch` of a directory entry, as read from the YAML.
pub(super) type DirKeys = (Glob, bool, bool);

/// `pattern`, `recursive` and `watch` of entry `i` (at `line`) when it has `dir`; `None`
/// without. An error (its line and message) when they come without `dir`, or `dir` without a
/// valid `pattern`.
pub(super) fn keys(i: usize, line: u64, raw: &RawDb) -> Result<Option<DirKeys>, (u64, String)> {
    let line_of = |s: &Spanned<_>| s.referenced.line();
    let Some(dir) = &raw.dir else {
        let stray = [
            ("pattern", raw.pattern.as_ref().map(|s| s.referenced.line())),
            (
                "recursive",
                raw.recursive.as_ref().map(|s| s.referenced.line()),
            ),
            ("watch", raw.watch.as_ref().map(|s| s.referenced.line())),
        ];
        return match stray.into_iter().find_map(|(k, l)| Some((k, l?))) {
            Some((key, l)) => Err((
                l,
                format!("dbs[{i}]: `{key}` applies to a `dir` entry; this one has no `dir`"),
            )),
            None => Ok(None),
        };
    };
    let Some(pattern) = &raw.pattern else {
        return Err((
            line,
            format!(
                "dbs[{i}]: `dir` {:?} needs a `pattern` naming its database files, such as \"*.db\"",
                dir.value
            ),
        ));
    };
    let glob = Glob::parse(&pattern.value).map_err(|why| {
        (
            line_of(pattern),
            format!("dbs[{i}]: `pattern` {:?} {why}", pattern.value),
        )
    })?;
    let flag = |v: &S<bool>| v.as_ref().is_some_and(|b| b.value);
    Ok(Some((glob, flag(&raw.recursive), flag(&raw.watch))))
}

/// A `dbs` entry with `dir:` instead of `path:`.
#[derive(Debug, Clone, PartialEq)]
pub struct DirConfig {
    /// The directory (absolute, `~` expanded).
    pub dir: PathBuf,
    /// File-name pattern of its databases.
    pub pattern: Glob,
    /// Whether databases in subdirectories count too.
    pub recursive: bool,
    /// Whether databases created or removed while running are picked up or dropped (the
    /// runtime part); without it an empty directory at start is an error, as in Litestream.
    pub watch: bool,
    /// Settings of every database found: `path` is `dir` itself, the replicas are the
    /// directory replicas, `meta_path` the base under which each database's own one goes.
    pub template: DbConfig,
    /// Line of the entry in the config file (0 when unknown), for messages.
    pub line: u64,
}

impl DirConfig {
    /// The path of `path` under the directory if it is one of its databases by name: below
    /// `dir` (directly, unless recursive), matching the pattern, not an SQLite side file nor
    /// inside a meta directory (the files [`discover::scan`](super::discover::scan) looks at).
    /// `path` is absolute and need not exist (a restore after the loss of the database; a
    /// watcher's event for a file just removed).
    pub fn relative(&self, path: &Path) -> Option<PathBuf> {
        let rel = path.strip_prefix(&self.dir).ok()?;
        let mut parts = rel.components();
        let name = parts.next_back()?;
        let Component::Normal(name) = name else {
            return None;
        };
        let name = name.to_string_lossy();
        let depth_ok = self.recursive || parts.clone().next().is_none();
        let normal = parts.all(|c| match c {
            Component::Normal(s) => !is_meta_dir(&s.to_string_lossy()),
            _ => false,
        });
        (depth_ok && normal && !is_side_file(&name) && self.pattern.matches(&name))
            .then(|| rel.to_path_buf())
    }

    /// The configuration of the database at `rel` under the directory: the template with its
    /// path, its own replica places (`<replica>/<rel>`) and, when the entry has a `meta-path`,
    /// its own meta directory under it (`<meta-path>/<rel dir>/.<name>-memsync`).
    pub fn db_at(&self, rel: &Path) -> DbConfig {
        let mut db = self.template.clone();
        db.path = self.dir.join(rel);
        db.found_in_dir = true;
        if let Some(base) = &self.template.meta_path {
            let name = rel
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            let parent = rel.parent().unwrap_or(Path::new(""));
            db.meta_path = Some(base.join(parent).join(format!(".{name}-memsync")));
        }
        for r in &mut db.replicas {
            r.target = r.target.join(rel);
        }
        db
    }
}

impl ReplicaTarget {
    /// Where the replica lives, as a URL or path a user can pass to `restore` (credentials
    /// left out).
    pub fn location(&self) -> String {
        match self {
            ReplicaTarget::File { path } => path.display().to_string(),
            ReplicaTarget::S3 {
                bucket,
                path,
                endpoint,
                region,
                force_path_style,
                skip_verify,
                ..
            } => {
                // Every setting a restore by this URL needs, each part encoded (a space in a
                // database's name).
                let Ok(mut u) = url::Url::parse(&format!("s3://{bucket}/")) else {
                    return format!("s3://{bucket}/{path}");
                };
                if let Ok(mut segs) = u.path_segments_mut() {
                    segs.pop_if_empty()
                        .extend(path.split('/').filter(|p| !p.is_empty()));
                }
                {
                    let mut q = u.query_pairs_mut();
                    if let Some(e) = endpoint {
                        q.append_pair("endpoint", e);
                    }
                    if let Some(r) = region {
                        q.append_pair("region", r);
                    }
                    if *force_path_style {
                        q.append_pair("forcePathStyle", "true");
                    }
                    if *skip_verify {
                        q.append_pair("skipVerify", "true");
                    }
                }
                let s = u.to_string();
                s.strip_suffix('?').unwrap_or(&s).to_string()
            }
            ReplicaTarget::Http { url } => match url::Url::parse(url) {
                Ok(mut u) => {
                    let _ = u.set_password(None);
                    let _ = u.set_username("");
                    u.to_string()
                }
                Err(_) => "(an http replica)".into(),
            },
        }
    }

    /// The same kind of target one level down, at `rel` (a relative path of plain names)
    /// under this one.
    pub fn join(&self, rel: &Path) -> ReplicaTarget {
        let parts: Vec<String> = rel
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        match self {
            ReplicaTarget::File { path } => ReplicaTarget::File {
                path: parts.iter().fold(path.clone(), |p, s| p.join(s)),
            },
            ReplicaTarget::S3 { path, .. } => {
                let mut t = self.clone();
                if let ReplicaTarget::S3 { path: p, .. } = &mut t {
                    let mut all: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
                    all.extend(parts.iter().map(String::as_str));
                    *p = all.join("/");
                }
                t
            }
            ReplicaTarget::Http { url } => {
                let joined = url::Url::parse(url).ok().and_then(|mut u| {
                    u.path_segments_mut().ok()?.pop_if_empty().extend(&parts);
                    Some(u.to_string())
                });
                ReplicaTarget::Http {
                    url: joined.unwrap_or_else(|| {
                        format!("{}/{}", url.trim_end_matches('/'), parts.join("/"))
                    }),
                }
            }
        }
    }
}

/// SQLite's side files: never databases of their own.
pub(super) fn is_side_file(name: &str) -> bool {
    ["-wal", "-shm", "-journal"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// memsync's and Litestream's per-database state directories.
pub(super) fn is_meta_dir(name: &str) -> bool {
    name.starts_with('.') && (name.ends_with("-memsync") || name.ends_with("-litestream"))
}
