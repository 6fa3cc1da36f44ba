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

use crate::platform::Stop;
#[cfg(unix)]
use tokio::signal::unix::{Signal, SignalKind, signal};

/// SIGTERM and SIGINT, and SIGHUP if asked: each means "stop cleanly".
#[cfg(unix)]
pub struct StopSignals {
    term: Signal,
    int: Signal,
    hup: Option<Signal>,
}

#[cfg(unix)]
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
    pub async fn next(&mut self) -> Stop {
        let hup = async {
            match &mut self.hup {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.term.recv() => Stop::Term,
            _ = self.int.recv() => Stop::Int,
            _ = hup => Stop::Hup,
        }
    }
}

/// Windows' stops: Ctrl+C and Ctrl+Break (as SIGINT), a console closed or the machine shutting
/// down, and the service manager's Stop (as SIGTERM; see `service::host`).
#[cfg(windows)]
pub struct StopSignals {
    c: tokio::signal::windows::CtrlC,
    brk: tokio::signal::windows::CtrlBreak,
    close: tokio::signal::windows::CtrlClose,
    shutdown: tokio::signal::windows::CtrlShutdown,
    /// The service manager's Stop was reported: like a signal, it is seen once.
    service_stop_seen: bool,
}

#[cfg(windows)]
impl StopSignals {
    /// Starts listening; must run inside a tokio runtime (`Runtime::enter`).
    pub fn new(_hangup: bool) -> io::Result<StopSignals> {
        use tokio::signal::windows as w;
        Ok(StopSignals {
            c: w::ctrl_c()?,
            brk: w::ctrl_break()?,
            close: w::ctrl_close()?,
            shutdown: w::ctrl_shutdown()?,
            service_stop_seen: false,
        })
    }

    /// Waits for the first of them.
    pub async fn recv(&mut self) {
        self.next().await;
    }

    /// Waits for the next one and says which.
    pub async fn next(&mut self) -> Stop {
        let seen = self.service_stop_seen;
        let service = async move {
            match seen {
                true => std::future::pending().await,
                false => service_stopped().await,
            }
        };
        tokio::select! {
            _ = self.c.recv() => Stop::Int,
            _ = self.brk.recv() => Stop::Int,
            _ = self.close.recv() => Stop::Term,
            _ = self.shutdown.recv() => Stop::Term,
            _ = service => {
                self.service_stop_seen = true;
                Stop::Term
            }
        }
    }
}

/// Set once the Windows service manager asked the service to stop.
#[cfg(windows)]
static SERVICE_STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
#[cfg(windows)]
static SERVICE_NOTIFY: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Called from the service control handler: every [`StopSignals`] sees a SIGTERM.
#[cfg(windows)]
pub fn service_stop() {
    SERVICE_STOP.store(true, std::sync::atomic::Ordering::SeqCst);
    SERVICE_NOTIFY.notify_waiters();
}

#[cfg(windows)]
async fn service_stopped() {
    loop {
        let n = SERVICE_NOTIFY.notified();
        tokio::pin!(n);
        n.as_mut().enable();
        if SERVICE_STOP.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        n.await;
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

#[cfg(all(test, unix))]
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
