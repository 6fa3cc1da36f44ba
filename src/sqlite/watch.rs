//! Waking the monitor when the WAL is written.
//!
//! On Linux an inotify watch on the `-wal` file, read by the monitor thread itself: one wakeup
//! drains every queued event, and while the monitor paces itself (sync-interval) it does not read
//! the watch at all, so a burst of writes costs one wakeup, not one per `write(2)`. Elsewhere the
//! monitor simply polls every probe interval.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A watch on one WAL file.
pub struct WalWatch {
    path: PathBuf,
    #[cfg(target_os = "linux")]
    inner: Option<linux::Inotify>,
}

impl WalWatch {
    /// Watches `wal` (re-armed by [`WalWatch::refresh`] if the file is replaced).
    pub fn new(wal: &Path) -> Self {
        let mut w = WalWatch {
            path: wal.to_owned(),
            #[cfg(target_os = "linux")]
            inner: None,
        };
        w.refresh();
        w
    }

    /// Re-arms the watch if the WAL file was replaced or did not exist before.
    pub fn refresh(&mut self) {
        #[cfg(target_os = "linux")]
        {
            let ino = linux::inode(&self.path);
            if self.inner.as_ref().map(|i| i.ino) != Some(ino) || ino.is_none() {
                self.inner = linux::Inotify::new(&self.path);
            }
        }
    }

    /// Waits up to `timeout` for a write; true if one happened (events are drained).
    pub fn wait(&mut self, timeout: Duration) -> bool {
        #[cfg(target_os = "linux")]
        if let Some(i) = &self.inner {
            return i.wait(timeout);
        }
        std::thread::sleep(timeout);
        false
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::os::fd::OwnedFd;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;
    use std::time::Duration;

    pub(super) fn inode(p: &Path) -> Option<u64> {
        std::fs::metadata(p).ok().map(|m| m.ino())
    }

    pub(super) struct Inotify {
        fd: OwnedFd,
        pub(super) ino: Option<u64>,
    }

    impl Inotify {
        pub(super) fn new(path: &Path) -> Option<Self> {
            use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
            let ino = inode(path)?;
            let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC).ok()?;
            let mask = WatchFlags::MODIFY
                | WatchFlags::ATTRIB
                | WatchFlags::DELETE_SELF
                | WatchFlags::MOVE_SELF;
            inotify::add_watch(&fd, path, mask).ok()?;
            Some(Inotify { fd, ino: Some(ino) })
        }

        pub(super) fn wait(&self, timeout: Duration) -> bool {
            use rustix::event::{PollFd, PollFlags, Timespec, poll};
            let timeout = Timespec::try_from(timeout).ok();
            let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
            if !matches!(poll(&mut fds, timeout.as_ref()), Ok(n) if n > 0) {
                return false;
            }
            let mut buf = [0u8; 4096];
            let mut any = false;
            while matches!(rustix::io::read(&self.fd, &mut buf), Ok(n) if n > 0) {
                any = true;
            }
            any
        }
    }
}
