//! Waking monitors when a WAL is written.
//!
//! On Linux one inotify instance serves every database of the process. It watches each
//! database's directory, not the WAL file: SQLite deletes the WAL when its last connection
//! closes and creates a new one on the next open, and a directory watch sees the new file
//! without re-arming anything. Events name the file; only `<db>-wal` wakes a monitor. One
//! descriptor for all databases, where one per database ran out of descriptors at scale.
//! Elsewhere there are no events and monitors poll every monitor-interval.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Which monitor a WAL belongs to (the pool's task number).
pub type Token = usize;

/// File events for the WAL files of many databases.
pub struct DirWatch {
    #[cfg(target_os = "linux")]
    fd: Option<std::os::fd::OwnedFd>,
    /// Watched directories: watch descriptor, and the WAL names in it with their monitors.
    dirs: HashMap<PathBuf, Dir>,
    /// Watch descriptor → directory.
    by_wd: HashMap<i32, PathBuf>,
}

struct Dir {
    wd: i32,
    wals: HashMap<OsString, Vec<Token>>,
}

impl Default for DirWatch {
    fn default() -> Self {
        Self::new()
    }
}

impl DirWatch {
    /// An inotify instance (none if the kernel refuses one: monitors then poll).
    pub fn new() -> Self {
        DirWatch {
            #[cfg(target_os = "linux")]
            fd: linux::init(),
            dirs: HashMap::new(),
            by_wd: HashMap::new(),
        }
    }

    /// The descriptor to wait on for events, if any.
    #[cfg(target_os = "linux")]
    pub fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.fd.as_ref().map(|f| f.as_fd())
    }

    /// Starts reporting writes to `db`'s WAL as `token`. Without a watch (no inotify, the
    /// directory unreadable) the monitor simply polls.
    pub fn add(&mut self, db: &Path, token: Token) {
        let (Some(dir), Some(wal)) = (db.parent(), wal_name(db)) else {
            return;
        };
        if let Some(d) = self.dirs.get_mut(dir) {
            d.wals.entry(wal).or_default().push(token);
            return;
        }
        let Some(wd) = self.watch_dir(dir) else {
            return;
        };
        let mut wals = HashMap::new();
        wals.insert(wal, vec![token]);
        self.dirs.insert(dir.to_owned(), Dir { wd, wals });
        self.by_wd.insert(wd, dir.to_owned());
    }

    /// Stops reporting `db`'s WAL as `token`; the directory's watch goes with its last WAL.
    pub fn remove(&mut self, db: &Path, token: Token) {
        let (Some(dir), Some(wal)) = (db.parent(), wal_name(db)) else {
            return;
        };
        let Some(d) = self.dirs.get_mut(dir) else {
            return;
        };
        if let Some(tokens) = d.wals.get_mut(&wal) {
            tokens.retain(|t| *t != token);
            if tokens.is_empty() {
                d.wals.remove(&wal);
            }
        }
        if d.wals.is_empty() {
            let wd = d.wd;
            self.dirs.remove(dir);
            self.by_wd.remove(&wd);
            self.unwatch(wd);
        }
    }

    /// Reads every queued event and calls `hit` once per event on a watched WAL (for every
    /// monitor, when the kernel's queue overflowed and events were lost).
    pub fn drain(&mut self, hit: &mut dyn FnMut(Token)) {
        #[cfg(target_os = "linux")]
        {
            let Some(fd) = &self.fd else {
                return;
            };
            let mut overflow = false;
            let mut gone = Vec::new();
            linux::read_events(fd, &mut |wd, name, ev| match ev {
                linux::Ev::Overflow => overflow = true,
                linux::Ev::Ignored => gone.push(wd),
                linux::Ev::Changed => {
                    let Some(name) = name else {
                        return;
                    };
                    let tokens = self
                        .by_wd
                        .get(&wd)
                        .and_then(|dir| self.dirs.get(dir))
                        .and_then(|d| d.wals.get(name));
                    for t in tokens.into_iter().flatten() {
                        hit(*t);
                    }
                }
            });
            // A directory removed or unmounted: its monitors poll (and find their database
            // replaced at the next poll).
            for wd in gone {
                if let Some(dir) = self.by_wd.remove(&wd) {
                    self.dirs.remove(&dir);
                }
            }
            if overflow {
                for d in self.dirs.values() {
                    d.wals.values().flatten().for_each(|t| hit(*t));
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = hit;
    }

    fn watch_dir(&self, dir: &Path) -> Option<i32> {
        #[cfg(target_os = "linux")]
        {
            linux::watch(self.fd.as_ref()?, dir)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = dir;
            None
        }
    }

    fn unwatch(&self, wd: i32) {
        #[cfg(target_os = "linux")]
        if let Some(fd) = &self.fd {
            let _ = rustix::fs::inotify::remove_watch(fd, wd);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = wd;
    }
}

/// `<name>-wal`, the file SQLite writes next to the database.
fn wal_name(db: &Path) -> Option<OsString> {
    let mut n = db.file_name()?.to_owned();
    n.push("-wal");
    Some(n)
}

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::OsStr;
    use std::mem::MaybeUninit;
    use std::os::fd::OwnedFd;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

    pub(super) enum Ev {
        Changed,
        Overflow,
        Ignored,
    }

    /// The process's one inotify instance; `None` (said once in the log) when the kernel
    /// refuses it, typically because the user's `fs.inotify.max_user_instances` are all taken.
    pub(super) fn init() -> Option<OwnedFd> {
        inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)
            .inspect_err(|e| {
                tracing::warn!(
                    "no file events ({e}; fs.inotify.max_user_instances reached?): databases are polled every monitor-interval"
                )
            })
            .ok()
    }

    pub(super) fn watch(fd: &OwnedFd, dir: &Path) -> Option<i32> {
        let mask = WatchFlags::MODIFY
            | WatchFlags::ATTRIB
            | WatchFlags::CREATE
            | WatchFlags::DELETE
            | WatchFlags::MOVED_FROM
            | WatchFlags::MOVED_TO
            | WatchFlags::ONLYDIR
            | WatchFlags::EXCL_UNLINK;
        inotify::add_watch(fd, dir, mask).ok()
    }

    /// Reads until the queue is empty (the descriptor is non-blocking).
    pub(super) fn read_events(fd: &OwnedFd, f: &mut dyn FnMut(i32, Option<&OsStr>, Ev)) {
        let mut buf = [MaybeUninit::<u8>::uninit(); 8192];
        let mut reader = inotify::Reader::new(fd, &mut buf);
        while let Ok(e) = reader.next() {
            let flags = e.events();
            let ev = if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                Ev::Overflow
            } else if flags.contains(ReadFlags::IGNORED) {
                Ev::Ignored
            } else {
                Ev::Changed
            };
            let name = e
                .file_name()
                .map(|c| OsStr::from_bytes(c.to_bytes()))
                .filter(|n| !n.is_empty());
            f(e.wd(), name, ev);
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn hits(w: &mut DirWatch) -> Vec<Token> {
        let mut v = Vec::new();
        w.drain(&mut |t| v.push(t));
        v.sort();
        v.dedup();
        v
    }

    /// Writes to a WAL wake its monitor only; a WAL deleted and created again is still seen
    /// (SQLite does that when its last connection closes); removal stops the events.
    #[test]
    fn wal_writes_wake_their_own_monitor_through_recreation() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.db"), d.path().join("b.db"));
        let mut w = DirWatch::new();
        assert!(
            w.fd().is_some(),
            "no inotify instance (is fs.inotify.max_user_instances exhausted by other processes?)"
        );
        w.add(&a, 1);
        w.add(&b, 2);
        std::fs::write(d.path().join("a.db-wal"), b"x").unwrap();
        std::fs::write(d.path().join("a.db"), b"not the wal").unwrap();
        assert_eq!(hits(&mut w), [1]);
        std::fs::remove_file(d.path().join("a.db-wal")).unwrap();
        assert_eq!(hits(&mut w), [1]);
        std::fs::write(d.path().join("a.db-wal"), b"y").unwrap();
        std::fs::write(d.path().join("b.db-wal"), b"y").unwrap();
        assert_eq!(hits(&mut w), [1, 2]);
        w.remove(&a, 1);
        std::fs::write(d.path().join("a.db-wal"), b"z").unwrap();
        assert_eq!(hits(&mut w), Vec::<Token>::new());
        w.remove(&b, 2);
        assert!(w.dirs.is_empty() && w.by_wd.is_empty());
    }
}
