//! `memsync replicate`: every database's monitor on one small pool of threads
//! (`sqlite::pool`), one shipping task per replica.

pub mod catchup;
pub mod compact;
mod dirwatch;
mod error;
pub mod fdlimit;
pub mod lineage;
pub mod lock;
mod observe;
pub mod policy;
mod prune;
pub mod shipper;
pub mod sink;
pub mod spool;
pub mod startup;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{Config, DbConfig};
use crate::replica::{self, ReplicaClient, ReplicaError};
use crate::sqlite::monitor::{MonitorConfig, MonitorError};
use crate::sqlite::pool::{MonitorHandle, Pool, StartArgs};
use crate::stats::{DbStats, ShipStats};
pub use error::ReplicateError;
use shipper::ShipperParts;
use sink::{CompactionConfig, SpoolSink};
use spool::Spool;

/// How long the final upload on shutdown may take per replica.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of `memsync replicate` beyond the config file.
#[derive(Debug, Clone, Default)]
pub struct ReplicateOptions {
    /// Convert rollback-journal databases to WAL instead of refusing them.
    pub convert_to_wal: bool,
    /// Sync once and exit instead of running until a signal.
    pub once: bool,
    /// Take over replicas that belong to another database (their files are deleted).
    pub takeover: bool,
    /// The caller catches SIGTERM/SIGINT/SIGHUP and sets `stop` itself (`memsync run`, and
    /// `-exec`, which forwards them to its child first): none are listened for here.
    pub caller_signals: bool,
    /// Told once every database replicates (`-exec` starts its child then).
    pub started: Option<std::sync::mpsc::Sender<()>>,
    /// Notified by a caller that sets `stop`, so the stop is seen at once (else within 1 s).
    pub wake: Option<Arc<tokio::sync::Notify>>,
    /// Memory-sync counters to show at `addr` and weigh in `/health`, when this process
    /// syncs too.
    pub sync_stats: Option<Arc<crate::stats::SyncStats>>,
}

/// Handles of one replicated database, for the CLI, tests and the benchmark.
pub struct DbHandle {
    /// Database path.
    pub path: PathBuf,
    /// Monitor counters.
    pub stats: Arc<DbStats>,
    /// Per-replica counters.
    pub replicas: Vec<(String, Arc<ShipStats>)>,
}

/// Meta directory of a database: `meta-path`, or `.<name>-memsync` next to the real database
/// file (symlinks resolved, so every name of one database shares one spool and one lock).
pub fn meta_dir(db: &DbConfig) -> PathBuf {
    match &db.meta_path {
        Some(p) => p.clone(),
        None => default_meta_dir(&db.path),
    }
}

/// Meta directory of the database at `path` when no `meta-path` is configured.
pub fn default_meta_dir(path: &std::path::Path) -> PathBuf {
    let real = real_path(path);
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    real.with_file_name(format!(".{name}-memsync"))
}

/// The file SQLite really opens for `path`: symlinks resolved (SQLite resolves them too and
/// puts `-wal` and `-shm` next to the target), or `path` itself if it does not exist yet.
pub fn real_path(path: &std::path::Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Runs replication for every database of `config` until `stop` is set (or once).
pub fn run(
    config: &Config,
    opts: &ReplicateOptions,
    stop: Arc<AtomicBool>,
) -> Result<Vec<DbHandle>, ReplicateError> {
    fdlimit::ensure(config.dbs.len())?;
    let rt = crate::runtime().map_err(ReplicateError::Runtime)?;
    // Startup code (arguments, config) is not needed again: keep it out of the resident set.
    crate::resident::tune_allocator();
    crate::resident::shed_now();
    // Signals are caught before anything starts: a SIGTERM during a long startup (a first
    // snapshot) must still mean "flush and exit 0", not the default kill.
    let signalled = opts.wake.clone().unwrap_or_default();
    if !opts.once && !opts.caller_signals {
        // SIGHUP (a closed terminal, a service manager's reload) is a stop too, never the
        // default kill that leaves committed transactions unshipped. Litestream does not catch
        // it (Go's default: exit at once); there is nothing to reload short of a restart.
        let mut signals = {
            let _rt = rt.enter();
            crate::signals::StopSignals::new(true).map_err(ReplicateError::Signals)?
        };
        let (stop, signalled) = (stop.clone(), signalled.clone());
        rt.spawn(async move {
            signals.recv().await;
            stop.store(true, Ordering::Relaxed);
            signalled.notify_one();
        });
    }
    // Every lock before anything starts: a second replicator must not touch any spool. A
    // database that cannot be replicated at all is refused first, before its meta directory
    // or any replica is created.
    let mut locks = std::collections::HashMap::new();
    for db in &config.dbs {
        crate::sqlite::conn::check_file(&db.path).map_err(MonitorError::from)?;
        locks.insert(db.path.clone(), lock::acquire(&db.path, &meta_dir(db))?);
    }
    let pool = Pool::new(crate::sqlite::pool::default_workers(), opts.once)
        .map_err(ReplicateError::Thread)?;
    // Every database starts on the pool at once; shipping starts as each one is ready.
    let mut starting = Vec::new();
    let deadline = tokio::time::Instant::now() + startup::START_WAIT;
    for db in &config.dbs {
        let s = start_db(&rt, &pool, db, &config.tiers, opts, stop.clone(), deadline);
        starting.push(s.map_err(|e| out_of_fds(e, config.dbs.len()))?);
    }
    let mut dbs = Vec::new();
    for s in starting {
        let running = s.running(&rt, &config.tiers);
        dbs.push(running.map_err(|e| out_of_fds(e, config.dbs.len()))?);
    }
    tracing::info!("replicating {} database(s)", dbs.len());
    // Nor is the recovery and first-snapshot code.
    crate::resident::shed_now();
    // Dropped on return, after the final flush: the state files go with it.
    let handles: Vec<&DbHandle> = dbs.iter().map(|d| &d.handle).collect();
    let _observer = observe::start(&rt, config, &handles, opts)?;
    if let Some(started) = &opts.started {
        let _ = started.send(());
    }
    let mut first_err = None;
    let mut handles = Vec::new();
    if !opts.once {
        let mut watcher = dirwatch::DirWatcher::new(config, opts.convert_to_wal);
        loop {
            let signal = rt.block_on(async {
                tokio::select! {
                    _ = signalled.notified() => true,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => false,
                }
            });
            if signal || stop.load(Ordering::Relaxed) {
                break;
            }
            // What startup and bursts of work left in the heap goes back within seconds.
            crate::resident::shed();
            // A monitor that ended stops replication, unless its database was in a watched
            // directory and was removed or replaced: then it is dropped (and a replacement is
            // picked up as a new database at the next scan).
            let mut ended = false;
            for i in (0..dbs.len()).rev() {
                if !dbs[i].monitor.is_finished() {
                    continue;
                }
                let d = dbs.swap_remove(i);
                let path = d.handle.path.clone();
                let watched = watcher.as_ref().is_some_and(|w| w.covers(&path));
                locks.remove(&path);
                let (handle, result) = d.end(&rt);
                handles.push(handle);
                match result {
                    Some(Err(MonitorError::Replaced(_))) if watched => {
                        tracing::info!(
                            "{}: removed or replaced; no longer replicated",
                            path.display()
                        );
                        if let Some(w) = watcher.as_mut() {
                            w.forget(&path);
                        }
                    }
                    Some(Err(e)) => {
                        let e = out_of_fds(ReplicateError::Monitor(e), config.dbs.len());
                        tracing::error!("{e}");
                        first_err.get_or_insert(e);
                        ended = true;
                    }
                    None => {
                        first_err.get_or_insert(ReplicateError::MonitorPanicked { db: path });
                        ended = true;
                    }
                    Some(Ok(())) => ended = true,
                }
            }
            if ended {
                break;
            }
            if let Some(w) = watcher.as_mut() {
                let found = w.poll();
                for path in found.removed {
                    if let Some(i) = dbs.iter().position(|d| d.handle.path == path) {
                        let d = dbs.swap_remove(i);
                        locks.remove(&d.handle.path);
                        let (handle, result) = d.end(&rt);
                        match result {
                            Some(Ok(())) | Some(Err(MonitorError::Replaced(_))) => {}
                            Some(Err(e)) => tracing::warn!("{}: {e}", path.display()),
                            None => tracing::warn!("{}: the monitor panicked", path.display()),
                        }
                        tracing::info!("{}: removed; no longer replicated", path.display());
                        handles.push(handle);
                    }
                }
                for db in found.added {
                    if dbs.iter().any(|d| d.handle.path == db.path) {
                        continue;
                    }
                    match add_db(&rt, &pool, &db, config, opts, stop.clone()) {
                        Ok((running, lock)) => {
                            tracing::info!("{}: new database, replicating", db.path.display());
                            locks.insert(db.path.clone(), lock);
                            dbs.push(running);
                        }
                        Err(e) => tracing::warn!(
                            "{}: found in a watched directory, not replicated: {e}",
                            db.path.display()
                        ),
                    }
                }
            }
        }
        tracing::info!("shutting down: shipping what is committed");
    }
    stop.store(true, Ordering::Relaxed);
    pool.stop();
    let mut tasks = Vec::new();
    let mut stops = Vec::new();
    for d in dbs {
        tasks.extend(d.tasks);
        stops.push(d.stop);
        match d.monitor.join() {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                let e = out_of_fds(ReplicateError::Monitor(e), config.dbs.len());
                tracing::error!("{e}");
                first_err.get_or_insert(e);
            }
            None => {
                first_err.get_or_insert(ReplicateError::MonitorPanicked {
                    db: d.handle.path.clone(),
                });
            }
        }
        handles.push(d.handle);
    }
    for t in stops {
        let _ = t.send(true);
    }
    for t in tasks {
        let _ = rt.block_on(t);
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(handles),
    }
}

struct Running {
    monitor: MonitorHandle,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Stops this database's shippers (after their last upload).
    stop: watch::Sender<bool>,
    handle: DbHandle,
}

impl Running {
    /// Stops replicating this database (what is committed is shipped first, unless its
    /// monitor already ended); its handle and how its monitor ended (`None`: it panicked).
    fn end(self, rt: &tokio::runtime::Runtime) -> (DbHandle, Option<Result<(), MonitorError>>) {
        self.monitor.stop();
        let result = self.monitor.join();
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = rt.block_on(t);
        }
        (self.handle, result)
    }
}

/// Starts replicating a database found while running (a watched directory).
fn add_db(
    rt: &tokio::runtime::Runtime,
    pool: &Pool,
    db: &DbConfig,
    config: &Config,
    opts: &ReplicateOptions,
    stop: Arc<AtomicBool>,
) -> Result<(Running, lock::DbLock), ReplicateError> {
    crate::sqlite::conn::check_file(&db.path).map_err(MonitorError::from)?;
    let lock = lock::acquire(&db.path, &meta_dir(db))?;
    let deadline = tokio::time::Instant::now() + startup::START_WAIT;
    let s = start_db(rt, pool, db, &config.tiers, opts, stop, deadline)?;
    Ok((s.running(rt, &config.tiers)?, lock))
}

/// A database whose monitor is starting on the pool, with what its shippers will need.
struct Starting<'a> {
    db: &'a DbConfig,
    monitor: MonitorHandle,
    clients: Vec<(ReplicaClient, &'a crate::config::ReplicaConfig)>,
    starts: Vec<startup::Start>,
    pending: Vec<startup::Pending>,
    snapshot_wanted: Arc<AtomicBool>,
    min_gap: Duration,
    stats: Arc<DbStats>,
    pos_rx: watch::Receiver<Option<replica_formats::TxId>>,
    map_rx: watch::Receiver<Option<replica_formats::TxId>>,
}

/// Checks a database's replicas and starts its monitor on the pool (without waiting for it).
fn start_db<'a>(
    rt: &tokio::runtime::Runtime,
    pool: &Pool,
    db: &'a DbConfig,
    tiers: &crate::config::Tiers,
    opts: &ReplicateOptions,
    stop: Arc<AtomicBool>,
    deadline: tokio::time::Instant,
) -> Result<Starting<'a>, ReplicateError> {
    let clients: Vec<(ReplicaClient, &crate::config::ReplicaConfig)> = db
        .replicas
        .iter()
        .map(|r| Ok((replica::client_for(r, true)?, r)))
        .collect::<Result<_, ReplicaError>>()?;
    let real = real_path(&db.path);
    if real != db.path {
        tracing::info!("database {} is {}", db.path.display(), real.display());
    }
    let meta = meta_dir(db);
    // Before the listings: a replica taken over is emptied first.
    let refs: Vec<&ReplicaClient> = clients.iter().map(|(c, _)| c).collect();
    let me = lineage::identity(
        rt.block_on(lineage::local_lineage(&meta, &real, &refs))?,
        &real,
    );
    let mut mcfg = MonitorConfig::new(real, meta.clone());
    mcfg.busy_timeout = db.busy_timeout;
    mcfg.monitor_interval = db.monitor_interval;
    mcfg.checkpoint_interval = db.checkpoint_interval;
    mcfg.min_checkpoint_pages = db.min_checkpoint_page_count;
    mcfg.truncate_pages = db.truncate_page_n;
    mcfg.convert_to_wal = opts.convert_to_wal;
    mcfg.stop = (!opts.once).then(|| stop.clone());
    mcfg.min_sync_gap = db
        .replicas
        .iter()
        .map(|r| r.sync_interval)
        .min()
        .unwrap_or_default();
    // A pass at least as often as level-1 buckets close, so level 1 keeps up with them.
    let mut ccfg = CompactionConfig::new(tiers.clone());
    ccfg.snapshot_interval = db.replicas.iter().filter_map(|r| r.snapshot_interval).min();
    if let Some(d) = compaction_interval_override()? {
        ccfg.interval = d;
    }
    // Replicas that cannot continue from the spool start over from a snapshot of the current
    // position, which the monitor writes before shipping starts.
    let left = Spool::existing(&meta);
    left.drop_torn().map_err(|source| ReplicateError::Spool {
        path: left.dir().to_path_buf(),
        source,
    })?;
    let left_keys = left.keys().map_err(|source| ReplicateError::Spool {
        path: left.dir().to_path_buf(),
        source,
    })?;
    let me = Arc::new(me);
    let spool_keys = Arc::new(left_keys);
    let starts: Vec<startup::Start> = clients
        .iter()
        .map(|(c, r)| startup::Start {
            client: c.clone(),
            me: me.clone(),
            takeover: opts.takeover || r.takeover,
            spool: left.clone(),
            spool_keys: spool_keys.clone(),
        })
        .collect();
    let pending = startup::first_attempts(rt, &starts, deadline)
        .map_err(|e| ReplicateError::Lineage(Box::new(e)))?;
    let ready: Vec<&startup::Ready> = pending
        .iter()
        .filter_map(|p| match p {
            startup::Pending::Ready(r) => Some(r),
            _ => None,
        })
        .collect();
    if ready.iter().any(|r| r.restart.is_some()) {
        mcfg.snapshot_wanted.store(true, Ordering::Relaxed);
    }
    // New positions start above everything a replica that answered holds.
    let floor = ready.iter().filter_map(|r| r.newest()).max();
    let snapshot_wanted = mcfg.snapshot_wanted.clone();
    let min_gap = mcfg.min_sync_gap;
    let stats = Arc::new(DbStats::default());
    let (pos_tx, pos_rx) = watch::channel(None);
    let (map_tx, map_rx) = watch::channel(None);
    let sink = SpoolSink::new(&meta, ccfg, pos_tx, map_tx, stats.clone());
    let monitor = pool.add(StartArgs {
        cfg: mcfg,
        floor,
        sink: Box::new(sink),
        stats: stats.clone(),
    });
    Ok(Starting {
        db,
        monitor,
        clients,
        starts,
        pending,
        snapshot_wanted,
        min_gap,
        stats,
        pos_rx,
        map_rx,
    })
}

impl Starting<'_> {
    /// Waits for the monitor's start, then starts shipping to every replica.
    fn running(
        self,
        rt: &tokio::runtime::Runtime,
        tiers: &crate::config::Tiers,
    ) -> Result<Running, ReplicateError> {
        let (stop, stop_rx) = watch::channel(false);
        let Starting {
            db,
            monitor,
            clients,
            starts,
            pending,
            snapshot_wanted,
            min_gap,
            stats,
            pos_rx,
            map_rx,
        } = self;
        match monitor.started() {
            Ok(()) => {}
            Err(Some(e)) => return Err(e.into()),
            Err(None) => {
                return Err(ReplicateError::MonitorPanicked {
                    db: db.path.clone(),
                });
            }
        }
        let spool = Spool::existing(&meta_dir(db));
        let mut replicas = Vec::new();
        let mut confirmed = Vec::new();
        let mut tasks = Vec::new();
        for (((client, rcfg), start), pending) in clients.into_iter().zip(starts).zip(pending) {
            let ss = Arc::new(ShipStats::default());
            replicas.push((rcfg.name.clone(), ss.clone()));
            let (ready_early, early) = match &pending {
                startup::Pending::Ready(r) => (true, r.remote()),
                _ => (false, None),
            };
            let (ctx, crx) = watch::channel(early);
            confirmed.push(crx);
            let make = ShipperParts {
                client,
                spool: spool.clone(),
                // The monitor already spools no faster than the fastest replica's interval; a
                // replica ships as soon as a file arrives unless its own interval is longer.
                sync_interval: rcfg.sync_interval.saturating_sub(min_gap),
                retention: rcfg.retention,
                retention_check: rcfg.retention_check_interval,
                tiers: tiers.clone(),
                confirmed: ctx,
                stats: ss,
                snapshot_wanted: snapshot_wanted.clone(),
            };
            let (pos, stop) = (pos_rx.clone(), stop_rx.clone());
            tasks.push(rt.spawn(async move {
            let Some(ready) = pending.resolve(start, stop.clone()).await else {
                return;
            };
            if !ready_early && ready.restart.is_some() {
                // Ready late: a snapshot numbered below what it holds would read as older.
                let ours = *pos.borrow();
                if let (Some(theirs), Some(ours)) = (ready.newest(), ours)
                    && theirs >= ours
                {
                    tracing::error!(
                        "replica {} holds positions up to {theirs}, past this database's {ours}; it is not replicated to (restart memsync to number new positions above it, or move it away)",
                        make.client.name()
                    );
                    return;
                }
                make.snapshot_wanted.store(true, Ordering::Relaxed);
            }
            make.build(ready)
                .run(pos, stop, FLUSH_TIMEOUT)
                .await;
        }));
        }
        tasks.push(rt.spawn(prune::prune_spool(
            spool,
            confirmed,
            map_rx,
            pos_rx.clone(),
            tiers.top(),
            db.spool_budget,
            stats.clone(),
        )));
        Ok(Running {
            monitor,
            tasks,
            stop,
            handle: DbHandle {
                path: db.path.clone(),
                stats,
                replicas,
            },
        })
    }
}

/// Says "too many open files" when that is what an error (typically SQLite's "unable to open
/// database file", which hides the errno) comes down to.
fn out_of_fds(e: ReplicateError, dbs: usize) -> ReplicateError {
    if fdlimit::exhausted(&e) {
        ReplicateError::OutOfFiles {
            limit: fdlimit::TooFew {
                limit: fdlimit::current(),
                dbs,
            },
            first: Box::new(e),
        }
    } else {
        e
    }
}

/// `MEMSYNC_COMPACTION_INTERVAL` (Go duration) overrides how often a compaction pass runs (at
/// most 30 s, or the level-1 `interval` if shorter); the buckets themselves are `levels`.
fn compaction_interval_override() -> Result<Option<Duration>, ReplicateError> {
    match std::env::var("MEMSYNC_COMPACTION_INTERVAL") {
        Ok(v) => crate::config::parse_duration(&v)
            .map(Some)
            .map_err(|why| ReplicateError::Env {
                var: "MEMSYNC_COMPACTION_INTERVAL",
                value: v,
                why,
            }),
        Err(_) => Ok(None),
    }
}
