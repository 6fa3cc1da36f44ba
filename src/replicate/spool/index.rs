//! What a spool holds, kept in memory once listed.
//!
//! Every file enters and leaves a spool through this process (the database's lock keeps any
//! other replicator out), so after one walk of the directory the spool's keys are known
//! without listing it again. Listing it for each shipped file was four directory reads, some
//! twenty system calls, per commit and per replica: at 500 databases the largest share of the
//! replicator's calls. The index is shared by every `Spool` value of one directory in the
//! process (the monitor's sink, compaction, each replica's shipper, the pruner).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use replica_formats::ObjectKey;

/// Keys, with their sizes once known; `None` until first listed.
type Keys = Option<BTreeMap<ObjectKey, Option<u64>>>;

#[derive(Debug)]
pub(super) struct Index {
    dir: PathBuf,
    keys: Mutex<Keys>,
}

/// The index of the spool in `dir`, shared with every other `Spool` of that directory.
pub(super) fn shared(dir: &Path) -> Arc<Index> {
    static OPEN: OnceLock<Mutex<HashMap<PathBuf, Weak<Index>>>> = OnceLock::new();
    let mut open = OPEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(ix) = open.get(dir).and_then(Weak::upgrade) {
        return ix;
    }
    open.retain(|_, w| w.strong_count() > 0);
    let ix = Arc::new(Index {
        dir: dir.to_path_buf(),
        keys: Mutex::new(None),
    });
    open.insert(dir.to_path_buf(), Arc::downgrade(&ix));
    ix
}

impl Index {
    fn lock(&self) -> MutexGuard<'_, Keys> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The keys, in position order; the first call walks the directory.
    pub(super) fn keys(&self) -> io::Result<Vec<ObjectKey>> {
        let mut g = self.lock();
        if g.is_none() {
            let mut found = Vec::new();
            walk(&self.dir, &self.dir, &mut found)?;
            *g = Some(found.into_iter().map(|k| (k, None)).collect());
        }
        Ok(g.as_ref()
            .map_or_else(Vec::new, |m| m.keys().copied().collect()))
    }

    /// A file written under `key` (renamed into place).
    pub(super) fn added(&self, key: ObjectKey, size: u64) {
        if let Some(m) = self.lock().as_mut() {
            m.insert(key, Some(size));
        }
    }

    /// A file gone (deleted, or found missing).
    pub(super) fn removed(&self, key: &ObjectKey) {
        if let Some(m) = self.lock().as_mut() {
            m.remove(key);
        }
    }

    /// The size of `key`'s file, asking the file system once if it is not known yet.
    pub(super) fn size(&self, key: &ObjectKey, path: &Path) -> Option<u64> {
        if let Some(Some(Some(s))) = self.lock().as_ref().map(|m| m.get(key).copied()) {
            return Some(s);
        }
        let s = fs::metadata(path).ok()?.len();
        if let Some(slot) = self.lock().as_mut().and_then(|m| m.get_mut(key)) {
            *slot = Some(s);
        }
        Some(s)
    }
}

/// The key a spool-relative path names: its components joined with `/` (keys are spelled
/// with `/` on every platform; Windows lists `segments\0\...`).
fn key_of(rel: &Path) -> Option<ObjectKey> {
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    ObjectKey::parse(&parts?.join("/"))
}

/// The entries of `dir`; none when it does not exist (a spool not written to yet).
pub(super) fn read_dir_or_none(dir: &Path) -> io::Result<Option<fs::ReadDir>> {
    match fs::read_dir(dir) {
        Ok(rd) => Ok(Some(rd)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<ObjectKey>) -> io::Result<()> {
    let Some(rd) = read_dir_or_none(dir)? else {
        return Ok(());
    };
    for entry in rd {
        let entry = entry?;
        let p = entry.path();
        if entry.file_type()?.is_dir() {
            walk(root, &p, out)?;
        } else if let Ok(rel) = p.strip_prefix(root)
            && let Some(k) = key_of(rel)
        {
            out.push(k);
        }
    }
    Ok(())
}
