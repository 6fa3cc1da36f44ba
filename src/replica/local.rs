//! The file replica's own paths around `object_store`: listing by the replica layout, and
//! placing spool files by hard link or in-kernel copy.

use std::path::Path;

use replica_formats::ObjectKey;

use super::ReplicaError;

/// Lists a file replica by its layout (`snapshots/`, `segments/<level>/`) rather than by a
/// recursive walk: an entry that cannot be read (a symlink loop, a dangling link, a file removed
/// meanwhile) is skipped with a warning instead of failing the whole listing, and no stray
/// directory is ever descended into. A directory of the layout that cannot be read still fails:
/// a partial listing could plan an older database.
pub(super) fn list_local(name: &str, dir: &Path) -> Result<Vec<ObjectKey>, ReplicaError> {
    let read_dir = |rel: &str| -> Result<Vec<(String, std::fs::DirEntry)>, ReplicaError> {
        let path = dir.join(rel);
        let entries = match std::fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(ReplicaError::Local {
                    replica: name.to_owned(),
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(|source| ReplicaError::Local {
                replica: name.to_owned(),
                path: path.display().to_string(),
                source,
            })?;
            if let Some(n) = e.file_name().to_str() {
                out.push((format!("{rel}/{n}"), e));
            }
        }
        Ok(out)
    };
    // Follows a symlink like any reader would; an entry that cannot be followed is skipped.
    let kind = |rel: &str, e: &std::fs::DirEntry| match std::fs::metadata(e.path()) {
        Ok(m) => Some(m.is_dir()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => {
            tracing::warn!("replica {name}: skipping {rel}: {err}");
            None
        }
    };
    let mut keys = Vec::new();
    let mut file = |rel: &str, e: &std::fs::DirEntry| {
        if let Some(k) = ObjectKey::parse(rel)
            && kind(rel, e) == Some(false)
        {
            keys.push(k);
        }
    };
    for (rel, e) in read_dir(replica_formats::SNAPSHOTS_DIR)? {
        file(&rel, &e);
    }
    for (level, e) in read_dir(replica_formats::SEGMENTS_DIR)? {
        let is_level = level.len() == replica_formats::SEGMENTS_DIR.len() + 2
            && level.as_bytes().last().is_some_and(u8::is_ascii_digit);
        if is_level && kind(&level, &e) == Some(true) {
            for (rel, e) in read_dir(&level)? {
                file(&rel, &e);
            }
        }
    }
    keys.sort();
    Ok(keys)
}

/// Puts the immutable spool file `src` at `dest` without ever replacing an
/// existing file: a hard link when both are on one file system (no data written at all), else an
/// in-kernel copy to a temp file, fsync, and a no-clobber link into place. The directory entry is
/// fsynced either way.
pub(super) fn link_or_copy(src: &Path, dest: &Path) -> Result<u64, Side> {
    let size = std::fs::metadata(src).map_err(Side::Read)?.len();
    // The spool does not fsync. The data is made durable before a name on the replica points
    // at it, so a power cut never leaves a replica file whose content was not written (across
    // file systems this `fsync` is spent for nothing: the copy below is fsynced itself).
    crate::platform::sync_file(src).map_err(Side::Read)?;
    match hard_link(src, dest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Most likely this file's own link from a run that stopped before its directory
            // was fsynced: the caller counts it as placed, so its entry is made durable now.
            crate::fsutil::sync_dir(dest).map_err(Side::Write)?;
            return Err(Side::Write(e));
        }
        Err(_) => {
            let tmp = crate::fsutil::temp_sibling(dest);
            let res = (|| {
                std::fs::copy(src, &tmp).map_err(|e| {
                    // `copy` reads one file and writes the other: the error belongs to the
                    // spool file only if that cannot even be opened.
                    match std::fs::File::open(src) {
                        Err(_) => Side::Read(e),
                        Ok(_) => Side::Write(e),
                    }
                })?;
                crate::platform::sync_file(&tmp).map_err(Side::Write)?;
                std::fs::hard_link(&tmp, dest).map_err(Side::Write)
            })();
            let _ = std::fs::remove_file(&tmp);
            res?;
        }
    }
    crate::fsutil::sync_dir(dest).map_err(Side::Write)?;
    Ok(size)
}

/// A hard link of `src` at `dest`, making the replica's directory when the link finds it
/// missing (not looked for on every upload: a `mkdir` and a `stat` per sync, per database).
pub(super) fn hard_link(src: &Path, dest: &Path) -> std::io::Result<()> {
    let linked = std::fs::hard_link(src, dest);
    if let Err(e) = &linked
        && e.kind() == std::io::ErrorKind::NotFound
        && let Some(parent) = dest.parent()
    {
        // The directories made here get their own entries fsynced (in their parents), so a
        // file linked into them is found after a power cut.
        let missing: Vec<&Path> = parent
            .ancestors()
            .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
            .collect();
        std::fs::create_dir_all(parent)?;
        for made in missing {
            if let Some(up) = made.parent().filter(|p| !p.as_os_str().is_empty()) {
                crate::platform::sync_dir(up)?;
            }
        }
        return std::fs::hard_link(src, dest);
    }
    linked
}

/// Which end of a spool-to-replica copy failed: a full or read-only replica is a write error
/// of the replica path, not a read error of the spool file.
#[derive(Debug)]
pub(super) enum Side {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// Removes what an earlier replicator killed part way left in a file replica: copies under a
/// temporary name (`<file>.<pid>.tmp`, see `fsutil::temp_sibling`) of a process that no longer
/// runs, and object_store's staged uploads (`<file>#<n>`). Only a replica's own replicator
/// writes there (its lineage record says which), so nothing else owns them. Returns how many.
pub(crate) fn remove_stale_temps(dir: &Path) -> usize {
    let me = std::process::id();
    let stale = |name: &str| {
        if let Some(rest) = name.strip_suffix(".tmp")
            && let Some((_, pid)) = rest.rsplit_once('.')
            && let Ok(pid) = pid.parse::<u32>()
        {
            return pid != me && !crate::platform::process_alive(pid);
        }
        name.rsplit_once('#')
            .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut dirs = vec![dir.to_path_buf(), dir.join(replica_formats::SNAPSHOTS_DIR)];
    if let Ok(levels) = std::fs::read_dir(dir.join(replica_formats::SEGMENTS_DIR)) {
        dirs.extend(levels.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    let mut removed = 0;
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if stale(&name.to_string_lossy())
                && e.file_type().is_ok_and(|t| t.is_file())
                && std::fs::remove_file(e.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}
