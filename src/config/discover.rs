//! Finding the databases of a directory entry: a scan of the directory (recursive or not) for
//! files whose name matches the pattern, each classified by its SQLite header; a [`Tracker`]
//! that turns successive scans into databases added and removed, reporting a matching file
//! that is not a database once rather than on every scan; and [`expand`], which adds the
//! databases found at start to the config's `dbs`.
//!
//! The scan leaves out SQLite's own side files (`-wal`, `-shm`, `-journal`), the meta
//! directories of memsync and Litestream (`.NAME-memsync`, `.NAME-litestream`), the entry's
//! file replicas when they lie inside the directory, and symlinked directories (no loops). A
//! symlinked file is followed, as SQLite follows it.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::dir::{is_meta_dir, is_side_file};
use super::{Config, ConfigError, DirConfig, ReplicaTarget};
use crate::fsutil::canonical;

/// What a matching file is, from the first bytes of its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An SQLite database in WAL mode (header bytes 18 and 19 are 2): replicated.
    Wal,
    /// An SQLite database in rollback-journal mode (bytes 18 and 19 are 1): replicated only
    /// when asked to switch it to WAL.
    Rollback,
    /// Empty, or a prefix of an SQLite header: probably being created; looked at again when
    /// it changes.
    Incomplete,
    /// Something else.
    NotSqlite,
}

impl Kind {
    /// Why a file of this kind is not replicated (`None` for a database that is).
    pub fn skip_reason(self, convert_to_wal: bool) -> Option<&'static str> {
        match self {
            Kind::Wal => None,
            Kind::Rollback if convert_to_wal => None,
            Kind::Rollback => Some(
                "is an SQLite database in rollback-journal mode, not WAL (pass -convert-to-wal to switch it)",
            ),
            Kind::Incomplete => Some("is empty or has an incomplete SQLite header"),
            Kind::NotSqlite => Some("is not an SQLite database"),
        }
    }
}

/// SQLite's file magic.
const MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// Bytes of the header [`classify`] needs.
pub const HEADER_LEN: usize = 20;

/// Classifies a file from its first bytes (at most [`HEADER_LEN`] are looked at; fewer mean
/// the file is that short).
pub fn classify(head: &[u8]) -> Kind {
    let n = head.len().min(MAGIC.len());
    if head[..n] != MAGIC[..n] {
        return Kind::NotSqlite;
    }
    if head.len() < HEADER_LEN {
        return Kind::Incomplete;
    }
    match (head[18], head[19]) {
        (2, 2) => Kind::Wal,
        (1, 1) => Kind::Rollback,
        _ => Kind::NotSqlite,
    }
}

/// Reads the start of `path` and classifies it.
pub fn classify_file(path: &Path) -> std::io::Result<Kind> {
    let mut head = Vec::with_capacity(HEADER_LEN);
    std::fs::File::open(path)?
        .take(HEADER_LEN as u64)
        .read_to_end(&mut head)?;
    Ok(classify(&head))
}

/// A file of the directory whose name matches the pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its path under the directory.
    pub rel: PathBuf,
    /// What it is.
    pub kind: Kind,
}

/// A directory that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("scanning {}: {source}", path.display())]
pub struct ScanError {
    /// The directory or file concerned.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// What a scan saw.
#[derive(Debug, Default)]
pub struct Scan {
    /// The matching files, sorted by relative path.
    pub found: Vec<Found>,
    /// Subdirectories and matching files that could not be read (a root-only `lost+found`,
    /// a symlink loop): left out, the rest of the directory scanned.
    pub unreadable: Vec<ScanError>,
}

impl Scan {
    /// The unreadable places, relative to the scanned directory.
    pub fn blind(&self, d: &DirConfig) -> Vec<PathBuf> {
        self.unreadable
            .iter()
            .filter_map(|e| e.path.strip_prefix(&d.dir).ok().map(Path::to_path_buf))
            .collect()
    }
}

/// The matching files of `d`. A file or subdirectory that vanishes during the scan is left
/// out; one that cannot be read is listed in [`Scan::unreadable`] (one bad entry must not
/// hide every other database); only the directory itself failing fails the scan.
pub fn scan(d: &DirConfig) -> Result<Scan, ScanError> {
    scan_sparing(d, |_| None)
}

/// [`scan`], taking `spared(rel)`'s kind for the files it names instead of opening them: the
/// databases this process replicates. Why: opening and closing a second descriptor of a file
/// drops every POSIX lock the process holds on it, SQLite's included. A watch that read each
/// replicated database's header every second let the application's last close merge and
/// delete the WAL under memsync's open connections; the commits of the next connection went to
/// a new WAL memsync never read (a tester lost the writes made just before SIGTERM).
pub fn scan_sparing(
    d: &DirConfig,
    spared: impl Fn(&Path) -> Option<Kind>,
) -> Result<Scan, ScanError> {
    let skip_dirs: Vec<PathBuf> = d
        .template
        .replicas
        .iter()
        .filter_map(|r| match &r.target {
            ReplicaTarget::File { path } => Some(path.clone()),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    let mut unreadable = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(sub) = todo.pop() {
        let here = d.dir.join(&sub);
        let top = sub.as_os_str().is_empty();
        let entries = match std::fs::read_dir(&here) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !top => continue,
            Err(source) if top => return Err(ScanError { path: here, source }),
            Err(source) => {
                unreadable.push(ScanError { path: here, source });
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(source) if top => return Err(ScanError { path: here, source }),
                Err(source) => {
                    unreadable.push(ScanError {
                        path: here.clone(),
                        source,
                    });
                    break;
                }
            };
            let name = entry.file_name();
            let name_s = name.to_string_lossy();
            let rel = sub.join(&name);
            let path = here.join(&name);
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                if d.recursive && !is_meta_dir(&name_s) && !skip_dirs.contains(&path) {
                    todo.push(rel);
                }
                continue;
            }
            if is_side_file(&name_s) || !d.pattern.matches(&name_s) {
                continue;
            }
            // Symlinks followed: a link to a database is that database, to a directory skipped.
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => {}
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    unreadable.push(ScanError { path, source });
                    continue;
                }
            }
            if let Some(kind) = spared(&rel) {
                out.push(Found { rel, kind });
                continue;
            }
            match classify_file(&path) {
                Ok(kind) => out.push(Found { rel, kind }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => unreadable.push(ScanError { path, source }),
            }
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    unreadable.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Scan {
        found: out,
        unreadable,
    })
}

/// What changed between two scans.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Databases to start replicating, by relative path.
    pub added: Vec<PathBuf>,
    /// Databases gone (or no longer databases) to stop replicating.
    pub removed: Vec<PathBuf>,
    /// Matching files newly found not to be replicable, with the reason: the caller logs each
    /// once; the tracker does not report it again while it stays the same kind.
    pub skipped: Vec<(PathBuf, &'static str)>,
}

/// Successive scans of one directory turned into changes: the state a watcher keeps.
#[derive(Debug, Default)]
pub struct Tracker {
    convert_to_wal: bool,
    known: BTreeMap<PathBuf, Kind>,
}

impl Tracker {
    /// A tracker that has seen nothing; `convert_to_wal` makes rollback-journal databases
    /// count as databases.
    pub fn new(convert_to_wal: bool) -> Tracker {
        Tracker {
            convert_to_wal,
            known: BTreeMap::new(),
        }
    }

    /// The databases replicated now, by relative path.
    pub fn databases(&self) -> impl Iterator<Item = &Path> {
        self.known
            .iter()
            .filter(|(_, k)| k.skip_reason(self.convert_to_wal).is_none())
            .map(|(p, _)| p.as_path())
    }

    /// Takes a full scan and says what changed since the previous one. What lies in `blind`
    /// (places the scan could not read, relative) is as it was: not seen is not gone.
    pub fn update(&mut self, scan: Vec<Found>, blind: &[PathBuf]) -> Changes {
        let mut next: BTreeMap<PathBuf, Kind> = scan.into_iter().map(|f| (f.rel, f.kind)).collect();
        for (rel, kind) in &self.known {
            if blind.iter().any(|b| rel.starts_with(b)) {
                next.entry(rel.clone()).or_insert(*kind);
            }
        }
        let mut ch = Changes::default();
        for (rel, kind) in &self.known {
            if !next.contains_key(rel) {
                self.change(rel, Some(*kind), None, &mut ch);
            }
        }
        for (rel, kind) in &next {
            self.change(rel, self.known.get(rel).copied(), Some(*kind), &mut ch);
        }
        self.known = next;
        ch.removed.sort();
        ch
    }

    /// One matching file looked at again (`Some(kind)`, e.g. after an inotify event for it) or
    /// gone (`None`): the changes a full scan would give for it, without rescanning the rest.
    pub fn observe(&mut self, rel: &Path, kind: Option<Kind>) -> Changes {
        let mut ch = Changes::default();
        let before = self.known.get(rel).copied();
        self.change(rel, before, kind, &mut ch);
        match kind {
            Some(k) => self.known.insert(rel.to_path_buf(), k),
            None => self.known.remove(rel),
        };
        ch
    }

    /// Adds to `ch` what going from `before` to `after` means for the file `rel`.
    fn change(&self, rel: &Path, before: Option<Kind>, after: Option<Kind>, ch: &mut Changes) {
        let ok = |k: Option<Kind>| k.is_some_and(|k| k.skip_reason(self.convert_to_wal).is_none());
        match (ok(before), ok(after)) {
            (true, false) => ch.removed.push(rel.to_path_buf()),
            (false, true) => ch.added.push(rel.to_path_buf()),
            _ => {}
        }
        // Not replicable: reported when it newly becomes so. An incomplete file is a database
        // being created: no report, it comes back as added once its header is written.
        if let Some(k) = after
            && let Some(why) = k.skip_reason(self.convert_to_wal)
            && k != Kind::Incomplete
            && before != Some(k)
        {
            ch.skipped.push((rel.to_path_buf(), why));
        }
    }
}

/// What [`expand`] did not replicate, for the caller to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub why: String,
}

/// Adds the databases found in each directory entry to `config.dbs`, in path order after the
/// configured ones, and validates the result like a config file. A database that also has a
/// `path` entry of its own keeps that entry's settings (one database with special settings in a
/// directory of ordinary ones); found by two directory entries, it is an error. A directory
/// that does not exist (or is not one) is an error naming the entry's `dir`; so is a directory
/// without any database unless it is watched (as in Litestream).
pub fn expand(config: &mut Config, convert_to_wal: bool) -> Result<Vec<Skipped>, ConfigError> {
    let mut skipped = Vec::new();
    let configured: HashSet<PathBuf> = config.dbs.iter().map(|d| canonical(&d.path)).collect();
    let dirs = config.dirs.clone();
    for d in &dirs {
        let err = |what: String| ConfigError::Invalid {
            file: config.source.clone(),
            line: Some(d.line).filter(|l| *l > 0),
            what,
        };
        match std::fs::metadata(&d.dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(err(format!("`dir` {} is not a directory", d.dir.display()))),
            Err(e) => return Err(err(format!("`dir` {}: {e}", d.dir.display()))),
        }
        let mut tracker = Tracker::new(convert_to_wal);
        let found = scan(d).map_err(|e| err(format!("`dir`: {e}")))?;
        skipped.extend(found.unreadable.iter().map(|e| Skipped {
            path: e.path.clone(),
            why: format!("cannot be read ({})", e.source),
        }));
        let changes = tracker.update(found.found, &[]);
        skipped.extend(changes.skipped.into_iter().map(|(rel, why)| Skipped {
            path: d.dir.join(rel),
            why: why.to_owned(),
        }));
        if changes.added.is_empty() && !d.watch {
            return Err(err(format!(
                "`dir` {} holds no SQLite WAL database matching `pattern` {:?}{}",
                d.dir.display(),
                d.pattern.as_str(),
                if d.recursive { "" } else { " (not recursive)" }
            )));
        }
        let (found, aliases) = without_aliases(changes.added.iter().map(|rel| d.db_at(rel)));
        skipped.extend(aliases);
        config.dbs.extend(
            found
                .into_iter()
                .filter(|db| !configured.contains(&canonical(&db.path))),
        );
    }
    super::validate::validate(config, None)?;
    Ok(skipped)
}

/// The databases of one directory entry with each file once: a symlink or a hard link to a
/// database found under its own name too is skipped (said once), the real name kept (two
/// monitors on one file fight over its checkpoints, and a start refused the whole config).
fn without_aliases(
    dbs: impl Iterator<Item = super::DbConfig>,
) -> (Vec<super::DbConfig>, Vec<Skipped>) {
    let mut dbs: Vec<super::DbConfig> = dbs.collect();
    // Real names first, then by path: a link never wins over the name it points at.
    let is_link = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink());
    dbs.sort_by_cached_key(|d| (is_link(&d.path), d.path.clone()));
    let mut seen: std::collections::HashMap<(u64, u64), PathBuf> = Default::default();
    let (mut keep, mut skipped) = (Vec::new(), Vec::new());
    for db in dbs {
        match crate::fsutil::file_id(&db.path) {
            Some(id) => match seen.get(&id) {
                Some(first) => skipped.push(Skipped {
                    why: format!(
                        "another name of {} (a link), replicated under that name",
                        first.display()
                    ),
                    path: db.path,
                }),
                None => {
                    seen.insert(id, db.path.clone());
                    keep.push(db);
                }
            },
            None => keep.push(db),
        }
    }
    keep.sort_by(|a, b| a.path.cmp(&b.path));
    (keep, skipped)
}

#[cfg(test)]
mod tests;
