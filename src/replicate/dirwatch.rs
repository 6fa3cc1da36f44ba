//! `watch: true` directory entries while replicating: each such directory is rescanned every
//! second (a readdir and, for files not replicated now, a 100-byte header read), so a database created
//! while memsync runs is replicated within about a second and one removed is dropped. A
//! matching file that is not a WAL database is logged once, not retried in a loop.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::config::discover::{Kind, Tracker, scan, scan_sparing};
use crate::config::{Config, DbConfig, DirConfig};

/// The watched directory entries and what each held at the last scan.
pub(super) struct DirWatcher {
    entries: Vec<(DirConfig, Tracker)>,
    /// Databases with a `path` entry of their own keep it (as at start).
    configured: Vec<PathBuf>,
    /// Scan errors already logged (one line per directory until it reads again).
    failing: HashMap<PathBuf, String>,
    /// Places inside a watched directory that could not be read, already told of.
    unreadable: HashSet<PathBuf>,
    /// Databases found by two entries, already told of (once each).
    doubled: HashSet<PathBuf>,
    /// Databases of a watched directory the start did not replicate (other names of one it
    /// did), which it said so of.
    said: HashSet<PathBuf>,
}

/// What a scan found changed.
#[derive(Default)]
pub(super) struct Found {
    /// Databases to start.
    pub added: Vec<DbConfig>,
    /// Databases to stop (their paths).
    pub removed: Vec<PathBuf>,
}

impl DirWatcher {
    /// `None` when no entry is watched.
    pub fn new(config: &Config, convert_to_wal: bool) -> Option<DirWatcher> {
        // What the start said (cannot be read; another name of a database) is not said again
        // by the first scan.
        let mut unreadable = HashSet::new();
        let mut said = HashSet::new();
        let started: HashSet<&Path> = config.dbs.iter().map(|d| d.path.as_path()).collect();
        let entries: Vec<(DirConfig, Tracker)> = config
            .dirs
            .iter()
            .filter(|d| d.watch)
            .map(|d| {
                let t = primed(d, convert_to_wal, &mut unreadable);
                said.extend(
                    scan(d)
                        .map(|s| s.found)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|f| f.kind == Kind::Wal)
                        .map(|f| d.dir.join(&f.rel))
                        .filter(|p| !started.contains(p.as_path())),
                );
                (d.clone(), t)
            })
            .collect();
        if entries.is_empty() {
            return None;
        }
        // Not those found in a directory at start: one dropped (a file moved over it) must be
        // found again, and the next scan starts it afresh.
        let configured = config
            .dbs
            .iter()
            .filter(|d| !d.found_in_dir)
            .map(|d| canonical(&d.path))
            .collect();
        Some(DirWatcher {
            entries,
            configured,
            failing: HashMap::new(),
            unreadable,
            said,
            doubled: HashSet::new(),
        })
    }

    /// Rescans every watched directory. The first scan reports every database present as
    /// added: the caller skips those it replicates already.
    ///
    /// `replicated` names the databases this process has open: they are not opened again
    /// ([`scan_sparing`]), from the first scan on (the databases started with the process too).
    pub fn poll(&mut self, replicated: impl Fn(&Path) -> bool) -> Found {
        let mut out = Found::default();
        // Which entry (its config line) found each new database first.
        let mut first: HashMap<PathBuf, u64> = HashMap::new();
        for (d, tracker) in &mut self.entries {
            // A database replicated now is not opened again: its monitor follows it out of
            // WAL mode and back, and ends when it is replaced (the next scan then looks).
            let spared = |rel: &Path| replicated(&d.dir.join(rel)).then_some(Kind::Wal);
            let found = match scan_sparing(d, spared) {
                Ok(f) => {
                    if self.failing.remove(&d.dir).is_some() {
                        tracing::info!("{}: readable again", d.dir.display());
                    }
                    f
                }
                Err(e) => {
                    let line = e.to_string();
                    if self.failing.get(&d.dir) != Some(&line) {
                        tracing::warn!(
                            "watched directory {}: {line} (scanning again every second)",
                            d.dir.display()
                        );
                        self.failing.insert(d.dir.clone(), line);
                    }
                    continue;
                }
            };
            // One unreadable entry is skipped, said once, and said again when readable.
            let blind = found.blind(d);
            let now: HashSet<PathBuf> = found.unreadable.iter().map(|e| e.path.clone()).collect();
            for e in &found.unreadable {
                if self.unreadable.insert(e.path.clone()) {
                    tracing::warn!("watched directory {}: {e}; skipped", d.dir.display());
                }
            }
            self.unreadable.retain(|p| {
                let still = now.contains(p) || !p.starts_with(&d.dir);
                if !still {
                    tracing::info!("{}: readable again", p.display());
                }
                still
            });
            let ch = tracker.update(found.found, &blind);
            for (rel, why) in ch.skipped {
                tracing::warn!("{}: {why}; not replicated", d.dir.join(rel).display());
            }
            out.removed
                .extend(ch.removed.iter().map(|rel| d.dir.join(rel)));
            for db in ch.added.iter().map(|rel| d.db_at(rel)) {
                let path = canonical(&db.path);
                if self.configured.contains(&path) {
                    continue;
                }
                if let Some(line) = first.get(&path) {
                    // A start refuses such a config ("configured twice"); running, the first
                    // entry keeps it, and the user hears of it now rather than at the restart.
                    // Within one entry it is a link to a database of the entry, said where
                    // links are skipped.
                    if *line != d.line && self.doubled.insert(path) {
                        tracing::warn!(
                            "{}: matched by the `dir` entries at lines {line} and {}; replicated as the first says, but the next start refuses this config: narrow their patterns",
                            db.path.display(),
                            d.line
                        );
                    }
                    continue;
                }
                first.insert(path, d.line);
                out.added.push(db);
            }
        }
        out
    }
}

impl DirWatcher {
    /// True when `db` lies in a watched directory.
    pub fn covers(&self, db: &Path) -> bool {
        self.entries.iter().any(|(d, _)| d.relative(db).is_some())
    }

    /// True, once, for a database the start already said it does not replicate (another name
    /// of one it does): the first scan finds it again.
    pub fn said_at_start(&mut self, db: &Path) -> bool {
        self.said.remove(db)
    }

    /// Forgets `db` (its monitor ended: replaced under it): found again at the next scan, it
    /// starts afresh.
    pub fn forget(&mut self, db: &Path) {
        for (d, tracker) in &mut self.entries {
            if let Some(rel) = d.relative(db) {
                tracker.observe(&rel, None);
            }
        }
    }
}

/// A tracker that already knows the directory's files that are not replicated: the start
/// logged them (`config::discover::expand`), and the first scan must not log them again (nor
/// the places that could not be read, added to `unreadable`). Its databases are left for that
/// scan to report, so one created meanwhile is not missed.
fn primed(d: &DirConfig, convert_to_wal: bool, unreadable: &mut HashSet<PathBuf>) -> Tracker {
    let mut t = Tracker::new(convert_to_wal);
    let found = scan(d).ok();
    unreadable.extend(
        found
            .iter()
            .flat_map(|s| s.unreadable.iter().map(|e| e.path.clone())),
    );
    for f in found.map(|s| s.found).unwrap_or_default() {
        if f.kind.skip_reason(convert_to_wal).is_some() && f.kind != Kind::Incomplete {
            t.observe(&f.rel, Some(f.kind));
        }
    }
    t
}

fn canonical(p: &Path) -> PathBuf {
    crate::platform::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}
