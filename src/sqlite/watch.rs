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
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
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
            let ino = inode(path)?;
            let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
            // SAFETY: plain syscalls on a fresh descriptor we own; `c` outlives the call.
            unsafe {
                let fd = libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC);
                if fd < 0 {
                    return None;
                }
                let fd = OwnedFd::from_raw_fd(fd);
                let mask =
                    libc::IN_MODIFY | libc::IN_ATTRIB | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF;
                if libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) < 0 {
                    return None;
                }
                Some(Inotify { fd, ino: Some(ino) })
            }
        }

        pub(super) fn wait(&self, timeout: Duration) -> bool {
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one pollfd we own; reads go into a stack buffer of the given length.
            unsafe {
                if libc::poll(&mut pfd, 1, ms) <= 0 {
                    return false;
                }
                let mut buf = [0u8; 4096];
                let mut any = false;
                while libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) > 0 {
                    any = true;
                }
                any
            }
        }
    }
}
