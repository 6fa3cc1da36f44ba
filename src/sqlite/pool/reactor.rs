//! The reactor: fires due timers and turns WAL writes into queued turns.

use std::io::Read as _;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::Shared;

/// Longest sleep without a timer: the reactor also notices `exiting` this often.
const MAX_SLEEP: Duration = Duration::from_secs(5);

pub(super) fn run(shared: &Shared, wake: UnixStream) {
    // The inotify descriptor never changes: one copy to sleep on without the watch's lock
    // (monitors are added while the reactor sleeps).
    #[cfg(target_os = "linux")]
    let inotify = shared
        .watch
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .fd()
        .and_then(|fd| fd.try_clone_to_owned().ok());
    #[cfg(not(target_os = "linux"))]
    let inotify: Option<std::os::fd::OwnedFd> = None;
    loop {
        let timeout = {
            let mut st = shared.lock();
            if st.exiting {
                return;
            }
            let now = Instant::now();
            while let Some(&std::cmp::Reverse((at, id, schedule_no))) = st.timers.peek() {
                if at > now {
                    break;
                }
                st.timers.pop();
                let current =
                    matches!(st.slots.get(id), Some(Some(s)) if s.schedule_no == schedule_no);
                if current {
                    st.queue(id, &shared.ready);
                }
            }
            let next = st.timers.peek().map(|t| t.0.0).unwrap_or(now + MAX_SLEEP);
            let next = next.min(now + MAX_SLEEP);
            st.reactor_wake = Some(next);
            next.saturating_duration_since(now)
        };
        wait(&wake, inotify.as_ref(), timeout);
        let mut hits = Vec::new();
        shared
            .watch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(&mut |t| hits.push(t));
        if !hits.is_empty() {
            let mut st = shared.lock();
            for id in hits {
                let Some(Some(s)) = st.slots.get_mut(id) else {
                    continue;
                };
                s.written = true;
                if s.on_write {
                    st.queue(id, &shared.ready);
                }
            }
        }
    }
}

/// Sleeps until `timeout`, a file event or a wake-up.
fn wait(wake: &UnixStream, inotify: Option<&std::os::fd::OwnedFd>, timeout: Duration) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let ts = Timespec::try_from(timeout).ok();
    let mut fds = vec![PollFd::new(wake, PollFlags::IN)];
    if let Some(fd) = inotify {
        fds.push(PollFd::new(fd, PollFlags::IN));
    }
    let _ = poll(&mut fds, ts.as_ref());
    let mut buf = [0u8; 64];
    while matches!((&*wake).read(&mut buf), Ok(n) if n > 0) {}
}
