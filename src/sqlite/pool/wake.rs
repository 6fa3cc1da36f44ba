//! Waking the reactor: a write to a socket pair it polls beside the inotify descriptor (Unix),
//! or a condition variable (elsewhere, where there is no descriptor to poll: timers only).

use std::io;
use std::time::Duration;

pub(super) use imp::{Wake, WakeRx, pair};

#[cfg(unix)]
mod imp {
    use std::io::{Read as _, Write as _};
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;

    use super::*;

    /// The sending end, kept by whoever must wake the reactor.
    pub struct Wake(UnixStream);

    /// The reactor's end, with the file-event descriptor it also sleeps on.
    pub struct WakeRx {
        rx: UnixStream,
        events: Option<OwnedFd>,
    }

    pub fn pair() -> io::Result<(Wake, WakeRx)> {
        let (rx, tx) = UnixStream::pair()?;
        rx.set_nonblocking(true)?;
        tx.set_nonblocking(true)?;
        Ok((Wake(tx), WakeRx { rx, events: None }))
    }

    impl Wake {
        pub fn wake(&self) {
            let _ = (&self.0).write(&[1]);
        }
    }

    impl WakeRx {
        /// Also wakes when `fd` is readable (the inotify descriptor).
        #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
        pub fn events(&mut self, fd: Option<OwnedFd>) {
            self.events = fd;
        }

        /// Sleeps until `timeout`, a wake-up, or, with `events`, a file event.
        pub fn wait(&self, timeout: Duration, events: bool) {
            use rustix::event::{PollFd, PollFlags, Timespec, poll};
            let ts = Timespec::try_from(timeout).ok();
            let mut fds = vec![PollFd::new(&self.rx, PollFlags::IN)];
            if let Some(fd) = self.events.as_ref().filter(|_| events) {
                fds.push(PollFd::new(fd, PollFlags::IN));
            }
            let _ = poll(&mut fds, ts.as_ref());
            let mut buf = [0u8; 64];
            while matches!((&self.rx).read(&mut buf), Ok(n) if n > 0) {}
        }
    }
}

#[cfg(not(unix))]
mod imp {
    use std::sync::{Arc, Condvar, Mutex};

    use super::*;

    type Flag = Arc<(Mutex<bool>, Condvar)>;

    /// The sending end, kept by whoever must wake the reactor.
    pub struct Wake(Flag);

    /// The reactor's end.
    pub struct WakeRx(Flag);

    pub fn pair() -> io::Result<(Wake, WakeRx)> {
        let f: Flag = Arc::default();
        Ok((Wake(f.clone()), WakeRx(f)))
    }

    impl Wake {
        pub fn wake(&self) {
            *self.0.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
            self.0.1.notify_one();
        }
    }

    impl WakeRx {
        /// Sleeps until `timeout` or a wake-up (no file events here).
        pub fn wait(&self, timeout: Duration, _events: bool) {
            let g = self.0.0.lock().unwrap_or_else(|p| p.into_inner());
            let (mut g, _) = self
                .0
                .1
                .wait_timeout_while(g, timeout, |woken| !*woken)
                .unwrap_or_else(|p| p.into_inner());
            *g = false;
        }
    }
}
