//! The signals that stop memsync, through one library: `tokio::signal`. The replicator already
//! runs on tokio and must react at once (a SIGTERM during a long first snapshot means "flush and
//! exit 0"); the memory `sync --watch` loop borrows a small current-thread runtime to sleep
//! between rounds. `tokio::signal` sits on `signal-hook-registry` itself, so a second signal crate
//! would only add a second way of doing the same thing.
//!
//! Once a signal is listened for its default action (terminate) is gone for the process: one
//! that arrives while nobody awaits it is kept and seen by the next wait.

use std::io;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// SIGTERM and SIGINT, and SIGHUP if asked: each means "stop cleanly".
pub struct StopSignals {
    term: Signal,
    int: Signal,
    hup: Option<Signal>,
}

impl StopSignals {
    /// Starts listening; must run inside a tokio runtime (`Runtime::enter`).
    pub fn new(hangup: bool) -> io::Result<StopSignals> {
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: if hangup {
                Some(signal(SignalKind::hangup())?)
            } else {
                None
            },
        })
    }

    /// Waits for the first of them.
    pub async fn recv(&mut self) {
        self.next().await;
    }

    /// Waits for the next one and says which (`-exec` forwards that one to its child).
    pub async fn next(&mut self) -> rustix::process::Signal {
        use rustix::process::Signal;
        let hup = async {
            match &mut self.hup {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.term.recv() => Signal::TERM,
            _ = self.int.recv() => Signal::INT,
            _ = hup => Signal::HUP,
        }
    }
}

/// Stop signals for a loop that is not async: [`BlockingStop::sleep`] waits between rounds.
pub struct BlockingStop {
    rt: tokio::runtime::Runtime,
    signals: StopSignals,
    stopped: bool,
}

impl BlockingStop {
    /// Listens for SIGTERM and SIGINT from now on.
    pub fn new() -> io::Result<BlockingStop> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let signals = {
            let _rt = rt.enter();
            StopSignals::new(false)?
        };
        Ok(BlockingStop {
            rt,
            signals,
            stopped: false,
        })
    }

    /// Sleeps for `d`, or less if a stop signal arrives (or arrived since the last call); true
    /// if one did.
    pub fn sleep(&mut self, d: Duration) -> bool {
        if !self.stopped {
            let signals = &mut self.signals;
            self.stopped = self.rt.block_on(async {
                tokio::select! {
                    _ = signals.recv() => true,
                    _ = tokio::time::sleep(d) => false,
                }
            });
        }
        self.stopped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stop signal that arrives while nobody waits is kept for the next wait (a SIGTERM
    /// during a `sync --watch` round ends the loop after that round), and stays seen.
    #[test]
    fn a_signal_between_waits_is_not_lost() {
        let mut stop = BlockingStop::new().unwrap();
        assert!(!stop.sleep(Duration::from_millis(1)));
        // SIGINT is caught from here on, so this only marks the flag.
        rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::INT)
            .unwrap();
        assert!(stop.sleep(Duration::from_secs(600)));
        assert!(stop.sleep(Duration::from_secs(600)));
    }
}
