//! A full disk under the spool, or the application's write lock held at start: waited out and
//! reported once per episode, never a reason to exit. The application is not harmed meanwhile:
//! memsync's read transaction keeps every unshipped frame in the WAL, which only grows until
//! space returns.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use replica_formats::TxId;

use super::monitor::{Monitor, MonitorError};

impl Monitor {
    /// [`Self::recover`], retried while the spool's disk is full (with backoff, when a stop
    /// flag says how long to keep trying) or the application holds the write lock: both are
    /// conditions to wait out, and the application is not harmed meanwhile.
    pub(super) fn recover_waiting(&mut self, floor: Option<TxId>) -> Result<(), MonitorError> {
        let mut backoff = Duration::from_millis(500);
        let mut logged = false;
        let mut locked_since: Option<Instant> = None;
        loop {
            match self.recover(floor) {
                // The application holds the write lock (a long transaction, a checkpoint held
                // up by a reader): waited out as at any other time, not a reason to exit. With
                // `-once` (no stop flag), for at most a minute.
                Err(e) if e.is_busy() => {
                    let since = *locked_since.get_or_insert_with(|| {
                        tracing::warn!(
                            "{e}: the application holds the write lock; starting as soon as it is released"
                        );
                        Instant::now()
                    });
                    let stopped = match &self.cfg.stop {
                        Some(stop) => stop.load(Ordering::Relaxed),
                        None => since.elapsed() >= Duration::from_secs(60),
                    };
                    if stopped {
                        return Err(e);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) if e.is_disk_full() => {
                    let Some(stop) = self.cfg.stop.clone() else {
                        return Err(e);
                    };
                    if stop.load(Ordering::Relaxed) {
                        return Err(e);
                    }
                    if !logged {
                        tracing::error!("{}", self.disk_full_line(backoff));
                        logged = true;
                    }
                    let until = Instant::now() + backoff;
                    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
                Err(e) => return Err(e),
                Ok(()) => {
                    if logged {
                        tracing::info!("{}", self.space_again_line());
                    }
                    return Ok(());
                }
            }
        }
    }

    pub(super) fn disk_full_line(&self, backoff: Duration) -> String {
        format!(
            "spool {}: disk full; retrying in {backoff:?} (the application is unaffected; {} waits)",
            self.cap.sink.dir().display(),
            self.cfg.db_path.display()
        )
    }

    pub(super) fn space_again_line(&self) -> String {
        format!(
            "spool {}: space available again; replicating {}",
            self.cap.sink.dir().display(),
            self.cfg.db_path.display()
        )
    }
}
