//! Durable file writes: nothing half-written is ever visible under the final name.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A temporary sibling name for `path`, unique to this process.
pub fn temp_sibling(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    // The pid, asked once: a `getpid` per spooled file is 500 calls a second at 500 databases.
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    name.push(format!(".{}.tmp", PID.get_or_init(std::process::id)));
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_sibling(path);
    let res = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Replaces the file at `path` with `bytes` through a temp file and a rename, without an
/// `fsync`: for hints whose loss or damage in a power cut costs nothing (the reader treats
/// an unreadable one as absent). Each `fsync` on a journalling file system is a journal
/// commit, and at startup every database writes such hints.
pub fn replace_hint(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_sibling(path);
    let res = fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Fsyncs the directory containing `path`, making a rename durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    crate::platform::sync_dir(parent_dir(path))
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A name part no other run picks: the UTC time to the nanosecond and the process id, e.g.
/// `20261202T012345.123456789Z-4242`. Names built with it sort by time.
pub fn unique_stamp() -> String {
    let t = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
    format!("{}-{}", t.replace(['-', ':'], ""), std::process::id())
}

/// The `n`th name tried for a new file at `path`: `path` itself, then `stem-1.ext`, `stem-2.ext`...
pub fn numbered(path: &Path, n: u32) -> PathBuf {
    if n == 0 {
        return path.to_path_buf();
    }
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{n}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{n}"),
    };
    path.with_file_name(name)
}

/// Moves `from` to `to` unless `to` exists: then `AlreadyExists`, and `from` stays where it is.
/// A hard link is the no-replace step; where the file system has none, a rename after checking
/// that `to` is free (a race only with another writer picking the very same name).
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => fs::remove_file(from),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(e) => match fs::symlink_metadata(to) {
            Ok(_) => Err(io::Error::new(io::ErrorKind::AlreadyExists, e)),
            Err(m) if m.kind() == io::ErrorKind::NotFound => fs::rename(from, to),
            Err(m) => Err(m),
        },
    }
}

/// Writes `bytes` to a new file at exactly `path`, never replacing one (`AlreadyExists` if it is
/// taken): temp file, fsync, no-replace move, fsync of the directory.
pub fn write_new_at(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{}-{n}.tmp", std::process::id()));
    let tmp = path.with_file_name(name);
    let res = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        rename_noreplace(&tmp, path)?;
        sync_dir(path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Writes `bytes` to a new file at `path` or, when that is taken, at the first free
/// [`numbered`] name; nothing is ever overwritten. Returns the name written.
pub fn write_new(path: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
    for n in 0..10_000 {
        let p = numbered(path, n);
        match write_new_at(&p, bytes) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{}: no free name left", path.display()),
    ))
}

/// True if `err` or anything it wraps is an I/O error for which `test` holds (an `io::Error`
/// hides what it wraps from `source()`, so both paths are followed).
fn any_io(err: &(dyn std::error::Error + 'static), test: &dyn Fn(&io::Error) -> bool) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if test(io) {
                return true;
            }
            if let Some(inner) = io.get_ref()
                && any_io(inner, test)
            {
                return true;
            }
        }
        cur = e.source();
    }
    false
}

/// True if `err` or anything it wraps is an I/O error with one of `codes`.
pub fn has_errno(err: &(dyn std::error::Error + 'static), codes: &[i32]) -> bool {
    any_io(err, &|io| {
        io.raw_os_error().is_some_and(|c| codes.contains(&c))
    })
}

/// True if `err` or anything it wraps says the disk (or the quota) is full.
pub fn is_disk_full(err: &(dyn std::error::Error + 'static)) -> bool {
    any_io(err, &crate::platform::is_full)
}

/// `path` with every symlink resolved: the canonical path of its longest existing ancestor,
/// followed by the rest of it (lexically, `.` dropped). Two names of one file or directory, or
/// of one place not created yet below a symlinked directory, give the same result.
pub fn canonical(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut base = path;
    loop {
        if let Ok(c) = crate::platform::canonicalize(base) {
            let mut out = c;
            out.extend(rest.iter().rev());
            return out;
        }
        match (base.parent(), base.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                base = parent;
            }
            _ => return path.components().collect(),
        }
    }
}

/// Device and inode of `path` (following symlinks), if it exists: equal for two names of one
/// file even across hard links and bind mounts.
pub fn file_id(path: &Path) -> Option<(u64, u64)> {
    crate::platform::file_id(path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_files_never_replace_one_another() {
        let dir = tempfile::tempdir().unwrap();
        let want = dir.path().join("copy.json");
        let a = write_new(&want, b"first").unwrap();
        let b = write_new(&want, b"second").unwrap();
        assert_eq!(a, want);
        assert_eq!(b, dir.path().join("copy-1.json"));
        assert_eq!(fs::read(&a).unwrap(), b"first");
        assert_eq!(fs::read(&b).unwrap(), b"second");
        let e = write_new_at(&want, b"third").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&a).unwrap(), b"first");
        // No temp file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_move_refuses_a_taken_name_and_keeps_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::write(&a, b"a").unwrap();
        fs::write(&b, b"b").unwrap();
        let e = rename_noreplace(&a, &b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&a).unwrap(), b"a");
        assert_eq!(fs::read(&b).unwrap(), b"b");
        let c = dir.path().join("c");
        rename_noreplace(&a, &c).unwrap();
        assert!(!a.exists());
        assert_eq!(fs::read(&c).unwrap(), b"a");
    }

    #[test]
    fn stamps_hold_no_colons_and_end_with_the_pid() {
        let a = unique_stamp();
        assert!(
            !a.contains(':') && a.ends_with(&format!("Z-{}", std::process::id())),
            "{a}"
        );
    }
}

/// A `flock` on the file at `path` (made, with its directory, if missing), shared or
/// exclusive, tried every 20 ms for up to `wait`; `None` while another process still holds a
/// conflicting one. The lock goes with the returned file.
pub fn lock_file(path: &Path, shared: bool, wait: std::time::Duration) -> io::Result<Option<File>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let t0 = std::time::Instant::now();
    loop {
        let got = if shared {
            file.try_lock_shared()
        } else {
            file.try_lock()
        };
        match got {
            Ok(()) => return Ok(Some(file)),
            Err(fs::TryLockError::WouldBlock) if t0.elapsed() < wait => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// An exclusive `flock` on a file that says who holds it. The file is never deleted (deleting
/// a flock file lets two processes lock two different files); it is emptied on release, so what
/// it says is about a live holder (or one that crashed).
#[derive(Debug)]
pub struct HolderLock {
    file: File,
}

impl HolderLock {
    /// Takes the lock at `path` (its directory created if missing), retrying for up to `wait`.
    /// `Ok(Err(text))` when another process still holds it: `text` is what it wrote.
    pub fn take(path: &Path, wait: std::time::Duration) -> io::Result<Result<HolderLock, String>> {
        Ok(match lock_file(path, false, wait)? {
            Some(file) => Ok(HolderLock { file }),
            None => Err(fs::read_to_string(path).unwrap_or_default()),
        })
    }

    /// Replaces what the file says about its holder.
    pub fn say(&self, text: &str) -> io::Result<()> {
        self.file.set_len(0)?;
        crate::platform::write_all_at(&self.file, text.as_bytes(), 0)
    }
}

impl Drop for HolderLock {
    fn drop(&mut self) {
        // Emptied first, so a later reader never names a holder that has left.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}
