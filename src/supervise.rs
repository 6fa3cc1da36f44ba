//! One long-running process: replication of the configured databases, memory sync rounds
//! every `SYNC_INTERVAL`, and Litestream's `exec` child, under one shutdown.
//!
//! Each job runs on its own thread and reports to one event loop here, which owns the stop
//! signals: without a child, SIGTERM/SIGINT/SIGHUP stop everything; with one, they are
//! forwarded to it and memsync stops when it exits (by itself or after the signal). Stopping
//! ships what is committed (replication's own flush) and lets a sync round in progress finish,
//! for at most [`SYNC_GRACE`]. A failed sync round never stops replication; replication
//! retries unreachable replicas itself. An error that ends replication (the database not
//! there yet, the lock held) does not stop memory sync either: while sync rounds run (and no
//! child does), replication is started again after [`RETRY_FIRST`], doubling to
//! [`RETRY_MAX`]. Without sync rounds such an error ends the process with exit 1, so that a
//! service manager restarts it; with a child, the child is stopped (it does not run
//! unreplicated).

use std::io;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::platform::Stop;

use crate::config::Config;
use crate::exec::{self, ExecCommand, ExecError};
use crate::memory::rounds::{Round, Rounds};
use crate::metrics::Exposed;
use crate::replicate::{self, ReplicateError, ReplicateOptions};

/// How long a stop waits for a sync round in progress; past it the process exits and cuts
/// the round (what the server confirmed is recorded, the rest stays staged).
pub const SYNC_GRACE: Duration = Duration::from_secs(30);

/// The wait before replication is started again after an error ended it (sync going on).
pub const RETRY_FIRST: Duration = Duration::from_secs(5);
/// The longest such wait; a replication that ran this long starts over from [`RETRY_FIRST`].
pub const RETRY_MAX: Duration = Duration::from_secs(300);

/// What to run.
pub struct Plan {
    /// The databases to replicate, if replication is on.
    pub replication: Option<(Config, ReplicateOptions)>,
    /// Memory sync rounds, if a server is configured.
    pub sync: Option<Rounds>,
    /// The application to run as a child once replication runs.
    pub exec: Option<ExecCommand>,
    /// Told how each sync round ended.
    pub observe: Box<dyn FnMut(&Round) + Send>,
    /// The `addr` endpoint, served here rather than by replication: it answers while
    /// replication waits to start again, and when only memory sync runs.
    pub serve: Option<Serve>,
}

/// An address to serve `/metrics` and `/health` on, and what they show.
pub struct Serve {
    pub addr: String,
    pub exposed: Arc<Exposed>,
}

/// Why the process could not run or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("listening for signals: {0}")]
    Signals(#[source] io::Error),
    #[error("starting a thread: {0}")]
    Thread(#[source] io::Error),
    #[error(transparent)]
    Replicate(#[from] ReplicateError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("metrics address {addr}: {source}")]
    Metrics {
        addr: String,
        #[source]
        source: io::Error,
    },
}

enum Event {
    Signal(Stop),
    /// Replication runs (or there is none): the child may start.
    Started,
    Replication(Result<(), ReplicateError>),
    Child(io::Result<ExitStatus>),
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, SuperviseError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(SuperviseError::Thread)
}

/// Listens for SIGTERM, SIGINT and SIGHUP from now on (before anything starts: a signal
/// during a long first snapshot is still a clean stop) and sends each as an event.
fn listen(tx: Sender<Event>) -> Result<(), SuperviseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(SuperviseError::Signals)?;
    let mut signals = {
        let _rt = rt.enter();
        crate::signals::StopSignals::new(true).map_err(SuperviseError::Signals)?
    };
    spawn("signals", move || {
        rt.block_on(async {
            loop {
                let s = signals.next().await;
                if tx.send(Event::Signal(s)).is_err() {
                    return;
                }
            }
        })
    })?;
    Ok(())
}

/// Runs the plan until a stop signal, the child's exit or the end of replication; the exit
/// code: the child's (128 + signal when a signal killed it), else 0.
pub fn run(plan: Plan) -> Result<i32, SuperviseError> {
    let (tx, rx) = mpsc::channel();
    listen(tx.clone())?;
    let exposed = match plan.serve {
        Some(s) => Some(serve(s)?),
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(tokio::sync::Notify::new());
    let launcher = plan.replication.map(|(config, mut opts)| {
        opts.caller_signals = true;
        opts.wake = Some(wake.clone());
        opts.exposed = exposed.clone();
        Launcher {
            config,
            opts,
            stop: stop.clone(),
            tx: tx.clone(),
        }
    });
    let running = match &launcher {
        Some(l) => Some(l.start()?),
        None => {
            let _ = tx.send(Event::Started);
            None
        }
    };
    let retry = plan.sync.is_some() && plan.exec.is_none();
    let (stop_sync, sync_stopped) = mpsc::channel::<()>();
    let (sync_done_tx, sync_done) = mpsc::channel::<()>();
    if let Some(rounds) = plan.sync {
        let mut observe = plan.observe;
        tracing::info!(
            "memory sync with {} every {}s",
            rounds.server(),
            rounds.interval().as_secs()
        );
        spawn("sync", move || {
            rounds.run(&sync_stopped, &mut observe);
            drop(sync_done_tx);
        })?;
    } else {
        drop(sync_done_tx);
    }
    let mut end = Ending {
        exec: plan.exec,
        child: None,
        code: 0,
        replicated: running.is_none().then_some(Ok(())),
        failed: None,
        tx,
        launcher: launcher.filter(|_| retry),
        running: running.map(|h| (h, Instant::now())),
        restart_at: None,
        backoff: RETRY_FIRST,
        exposed,
    };
    end.wait(&rx);
    if end.running.is_none() && end.replicated.is_none() {
        // Stopped while waiting to start replication again: nothing runs to ship.
        end.replicated = Some(Ok(()));
    }
    // Stop: replication ships what is committed; a sync round in progress finishes.
    let stopped_at = Instant::now();
    stop.store(true, Ordering::Relaxed);
    wake.notify_one();
    drop(stop_sync);
    while end.replicated.is_none() {
        match rx.recv() {
            Ok(Event::Replication(r)) => end.replicated = Some(r),
            Ok(Event::Signal(s)) => {
                tracing::info!(
                    "{} received while shutting down: still shipping what is committed",
                    s.name()
                )
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    if let Some((h, _)) = end.running.take() {
        let _ = h.join();
    }
    match sync_done.recv_timeout(SYNC_GRACE.saturating_sub(stopped_at.elapsed())) {
        Err(RecvTimeoutError::Timeout) => tracing::warn!(
            "a sync round still runs {}s after the stop: it is cut (what the server confirmed is recorded, the rest stays staged for the next round)",
            SYNC_GRACE.as_secs()
        ),
        Ok(()) | Err(RecvTimeoutError::Disconnected) => {}
    }
    if let Some(e) = end.failed {
        return Err(e);
    }
    match end.replicated {
        Some(Err(e)) => Err(e.into()),
        _ => Ok(end.code),
    }
}

/// Binds the endpoint's address and serves it on a thread of its own until the process exits.
fn serve(s: Serve) -> Result<Arc<Exposed>, SuperviseError> {
    let metrics = |source| SuperviseError::Metrics {
        addr: s.addr.clone(),
        source,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(metrics)?;
    let listener = rt
        .block_on(crate::metrics::bind(&s.addr))
        .map_err(metrics)?;
    tracing::info!("metrics on http://{}/metrics, health on /health", s.addr);
    let exposed = s.exposed.clone();
    spawn("metrics", move || {
        rt.block_on(crate::metrics::serve(listener, exposed))
    })?;
    Ok(s.exposed)
}

/// Starts replication on a thread of its own, as often as it is needed.
struct Launcher {
    config: Config,
    opts: ReplicateOptions,
    stop: Arc<AtomicBool>,
    tx: Sender<Event>,
}

impl Launcher {
    fn start(&self) -> Result<JoinHandle<()>, SuperviseError> {
        let mut opts = self.opts.clone();
        let (started_tx, started_rx) = mpsc::channel();
        opts.started = Some(started_tx);
        let t = self.tx.clone();
        spawn("started", move || {
            if started_rx.recv().is_ok() {
                let _ = t.send(Event::Started);
            }
        })?;
        let (t, stop, config) = (self.tx.clone(), self.stop.clone(), self.config.clone());
        spawn("replicate", move || {
            let r = replicate::run(&config, &opts, stop).map(|_| ());
            let _ = t.send(Event::Replication(r));
        })
    }
}

/// The event loop's state: what is running and how the process will end.
struct Ending {
    exec: Option<ExecCommand>,
    /// The running child's pid, until its exit is seen.
    child: Option<u32>,
    code: i32,
    /// How replication ended, once it did (`Ok` at once when there is none).
    replicated: Option<Result<(), ReplicateError>>,
    /// The child could not start.
    failed: Option<SuperviseError>,
    tx: Sender<Event>,
    /// Set when replication is started again after an error (memory sync goes on).
    launcher: Option<Launcher>,
    /// The replication thread, and when it started.
    running: Option<(JoinHandle<()>, Instant)>,
    /// When replication is started again.
    restart_at: Option<Instant>,
    /// The wait before the next start.
    backoff: Duration,
    /// What the endpoint shows, when this process serves it.
    exposed: Option<Arc<Exposed>>,
}

impl Ending {
    /// Handles events until the process should stop.
    fn wait(&mut self, rx: &Receiver<Event>) {
        let program = |e: &Option<ExecCommand>| {
            e.as_ref()
                .map_or_else(String::new, |e| e.program().to_owned())
        };
        loop {
            let ev = match self.restart_at {
                None => rx.recv().ok(),
                Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(ev) => Some(ev),
                    Err(RecvTimeoutError::Timeout) => {
                        self.restart();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => None,
                },
            };
            let Some(ev) = ev else { return };
            match ev {
                Event::Signal(s) => match self.child {
                    Some(pid) => {
                        tracing::info!(
                            "{} received: forwarding it to {}",
                            s.name(),
                            program(&self.exec)
                        );
                        // One that exited meanwhile (the same signal reached its process
                        // group, from a terminal or `timeout`) is not an error: its exit is
                        // the next event.
                        match exec::forward(pid, s) {
                            Ok(()) => {}
                            Err(e) => {
                                tracing::warn!("cannot signal {}: {e}", program(&self.exec))
                            }
                        }
                    }
                    None => {
                        tracing::info!("{} received: shutting down", s.name());
                        return;
                    }
                },
                Event::Started => {
                    // Not a late word from an attempt that has failed since.
                    if let (Some(x), Some(_)) = (&self.exposed, &self.running) {
                        x.set_replication_down(None);
                    }
                    let Some(cmd) = &self.exec else { continue };
                    match cmd.spawn() {
                        Ok(mut child) => {
                            self.child = Some(child.id());
                            tracing::info!("started {} (pid {})", cmd.program(), child.id());
                            let t = self.tx.clone();
                            if let Err(e) = spawn("exec", move || {
                                let _ = t.send(Event::Child(child.wait()));
                            }) {
                                self.failed = Some(e);
                                return;
                            }
                        }
                        Err(e) => {
                            self.failed = Some(e.into());
                            return;
                        }
                    }
                }
                Event::Child(status) => {
                    self.child = None;
                    match status {
                        Ok(st) => {
                            self.code = exec::exit_code(st);
                            tracing::info!("{} exited ({st}): shutting down", program(&self.exec));
                        }
                        Err(source) => {
                            self.failed = Some(
                                ExecError::Wait {
                                    program: program(&self.exec),
                                    source,
                                }
                                .into(),
                            );
                        }
                    }
                    return;
                }
                Event::Replication(r) => {
                    if let Err(e) = &r {
                        tracing::error!("replication stopped: {e}");
                    }
                    let ran = self.running.take().map(|(h, since)| {
                        let _ = h.join();
                        since.elapsed()
                    });
                    if r.is_err() && self.launcher.is_some() {
                        if ran.is_some_and(|d| d >= RETRY_MAX) {
                            self.backoff = RETRY_FIRST;
                        }
                        tracing::warn!(
                            "replication starts again in {}s; memory sync goes on",
                            self.backoff.as_secs()
                        );
                        if let (Some(x), Err(e)) = (&self.exposed, &r) {
                            x.set_replication_down(Some(format!(
                                "{e} (starts again within {}s)",
                                self.backoff.as_secs()
                            )));
                        }
                        self.restart_at = Some(Instant::now() + self.backoff);
                        self.backoff = (self.backoff * 2).min(RETRY_MAX);
                        continue;
                    }
                    self.replicated = Some(r);
                    match self.child {
                        // The application is not left running unreplicated: it is stopped
                        // as a signal would stop it, and memsync exits when it has.
                        Some(pid) => {
                            tracing::info!("stopping {} (SIGTERM)", program(&self.exec));
                            let _ = exec::forward(pid, Stop::Term);
                        }
                        None => return,
                    }
                }
            }
        }
    }
}

impl Ending {
    /// Starts replication again (after an error ended it); a failure to start a thread is
    /// retried like a failed replication.
    fn restart(&mut self) {
        self.restart_at = None;
        let Some(l) = &self.launcher else { return };
        tracing::info!("starting replication again");
        match l.start() {
            Ok(h) => self.running = Some((h, Instant::now())),
            Err(e) => {
                tracing::error!("replication: {e}");
                self.restart_at = Some(Instant::now() + self.backoff);
            }
        }
    }
}
