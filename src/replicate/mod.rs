//! `memsync replicate`: every database's monitor on one small pool of threads
//! (`sqlite::pool`), one shipping task per replica.

pub mod catchup;
pub mod compact;
mod database;
mod dirwatch;
mod error;
pub mod fdlimit;
pub mod lineage;
pub mod lock;
mod observe;
pub mod placer;
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

use crate::config::{Config, DbConfig};
use crate::sqlite::monitor::MonitorError;
use crate::sqlite::pool::Pool;
use crate::stats::{DbStats, ShipStats};
use database::{add_db, start_db};
pub use error::ReplicateError;

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
    /// The caller serves `addr` and shows what replication puts here (`memsync run`: the
    /// endpoint stays up while replication is down, and shows memory sync's counters).
    pub exposed: Option<Arc<crate::metrics::Exposed>>,
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
    crate::config::meta_dir_beside(&real_path(path))
}

/// The file SQLite really opens for `path`: symlinks resolved (SQLite resolves them too and
/// puts `-wal` and `-shm` next to the target), or `path` itself if it does not exist yet.
pub fn real_path(path: &std::path::Path) -> PathBuf {
    crate::platform::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
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
    for db in &config.dbs {
        crate::sqlite::conn::check_file(&db.path).map_err(MonitorError::from)?;
        if !opts.convert_to_wal {
            crate::sqlite::conn::check_wal_header(&db.path).map_err(MonitorError::from)?;
        }
    }
    // Rescans the watched directories while running (not with `-once`).
    let mut watcher = match opts.once {
        true => None,
        false => dirwatch::DirWatcher::new(config, opts.convert_to_wal),
    };
    // Meta directories this start makes go again if it fails (dropped after the locks).
    let mut fresh = FreshDirs::default();
    let mut locks = std::collections::HashMap::new();
    let mut held_elsewhere = std::collections::HashSet::new();
    for db in &config.dbs {
        let meta = meta_dir(db);
        if !meta.exists() {
            // Listed before the lock makes it: a lock refused leaves nothing either.
            fresh.0.push(meta.clone());
        }
        match lock::acquire(&db.path, &meta) {
            Ok(l) => {
                locks.insert(db.path.clone(), l);
            }
            // A database of a watched directory held by another replicator is tried again
            // at every scan, as one found later would be; the others start.
            Err(e @ lock::LockError::Held { .. })
                if db.found_in_dir && watcher.as_ref().is_some_and(|w| w.covers(&db.path)) =>
            {
                tracing::warn!("{}: {e} (trying again every second)", db.path.display());
                held_elsewhere.insert(db.path.clone());
            }
            Err(e) => return Err(e.into()),
        }
    }
    let pool = Pool::new(crate::sqlite::pool::default_workers(), opts.once)
        .map_err(ReplicateError::Thread)?;
    // Every database starts on the pool at once; shipping starts as each one is ready.
    let deadline = tokio::time::Instant::now() + startup::START_WAIT;
    let to_start: Vec<&DbConfig> = config
        .dbs
        .iter()
        .filter(|d| !held_elsewhere.contains(&d.path))
        .collect();
    // Each database ships as soon as it is started, while the others still start: its first
    // snapshot reached the replicas only once every database had claimed its replicas (at 500
    // databases on a journalling file system, the last 0.5 s of a 1.6 s start).
    let started = in_parallel(&to_start, |db| {
        start_db(&rt, &pool, db, &config.tiers, opts, stop.clone(), deadline)
            .and_then(|s| s.running(&rt, &config.tiers))
    });
    let mut dbs = started
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| out_of_fds(e, config.dbs.len()))?;
    tracing::info!("replicating {} database(s)", dbs.len());
    fresh.0.clear();
    // Nor is the recovery and first-snapshot code.
    crate::resident::shed_now();
    // Dropped on return, after the final flush: the state files go with it.
    let handles: Vec<&DbHandle> = dbs.iter().map(|d| &d.handle).collect();
    let observer = observe::start(&rt, config, &handles, opts)?;
    if let Some(started) = &opts.started {
        let _ = started.send(());
    }
    let mut first_err = None;
    let mut handles = Vec::new();
    // Databases of a watched directory whose start failed, with why (said once).
    let mut add_failed: std::collections::HashMap<PathBuf, String> = Default::default();
    if !opts.once {
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
                observer.remove(&path.display().to_string());
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
            // A shipping task that panicked would leave its replica behind for good, with
            // nothing said: replication stops with an error instead.
            for d in &mut dbs {
                if let Some(i) = d.tasks.iter().position(|t| t.is_finished())
                    && let Some(e) = panicked(&rt, &d.handle.path, d.tasks.swap_remove(i))
                {
                    first_err.get_or_insert(e);
                    ended = true;
                }
            }
            if ended {
                break;
            }
            if let Some(w) = watcher.as_mut() {
                let open: std::collections::HashSet<&std::path::Path> =
                    dbs.iter().map(|d| d.handle.path.as_path()).collect();
                let found = w.poll(|p| open.contains(p));
                for path in found.removed {
                    if let Some(i) = dbs.iter().position(|d| d.handle.path == path) {
                        let d = dbs.swap_remove(i);
                        observer.remove(&path.display().to_string());
                        let (handle, result) = d.end(&rt);
                        // After the monitor's connections are closed: closing the lock's
                        // descriptor of the database would drop their POSIX locks.
                        locks.remove(&path);
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
                    // Another name (a symlink, a hard link) of a database replicated already:
                    // said once, never started (its own lock is this process's); the start
                    // said so of those there then.
                    let id = crate::fsutil::file_id(&db.path);
                    if let Some(twin) = dbs
                        .iter()
                        .find(|d| id.is_some() && crate::fsutil::file_id(&d.handle.path) == id)
                    {
                        if !w.said_at_start(&db.path) {
                            tracing::warn!(
                                "{}: another name of {} (a link), replicated under that name; not replicated",
                                db.path.display(),
                                twin.handle.path.display()
                            );
                        }
                        continue;
                    }
                    match add_db(&rt, &pool, &db, config, opts, stop.clone()) {
                        Ok((running, lock)) => {
                            tracing::info!("{}: new database, replicating", db.path.display());
                            add_failed.remove(&db.path);
                            locks.insert(db.path.clone(), lock);
                            observer.add(observe::source(&running.handle, &db));
                            dbs.push(running);
                        }
                        Err(e) => {
                            // Tried again at every scan (a file still being copied in, a
                            // passing lack of file descriptors), said again only when the
                            // reason changes.
                            let line = e.to_string();
                            if add_failed.get(&db.path) != Some(&line) {
                                tracing::warn!(
                                    "{}: found in a watched directory, not replicated: {line} (trying again every second)",
                                    db.path.display()
                                );
                                add_failed.insert(db.path.clone(), line);
                            }
                            w.forget(&db.path);
                        }
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
        tasks.extend(d.tasks.into_iter().map(|t| (d.handle.path.clone(), t)));
        stops.push(d.stop);
        match d.monitor.join() {
            Some(Ok(())) => {}
            // Removed or replaced in a watched directory just before the stop: dropped, as
            // the loop would have.
            Some(Err(MonitorError::Replaced(_)))
                if watcher.as_ref().is_some_and(|w| w.covers(&d.handle.path)) =>
            {
                tracing::info!(
                    "{}: removed or replaced; no longer replicated",
                    d.handle.path.display()
                );
            }
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
    for (db, t) in tasks {
        if let Some(e) = panicked(&rt, &db, t) {
            first_err.get_or_insert(e);
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(handles),
    }
}

/// Waits for a database's task; the error, said, if it panicked (a bug).
fn panicked(
    rt: &tokio::runtime::Runtime,
    db: &std::path::Path,
    t: tokio::task::JoinHandle<()>,
) -> Option<ReplicateError> {
    if !rt.block_on(t).is_err_and(|e| e.is_panic()) {
        return None;
    }
    let e = ReplicateError::ShipperPanicked {
        db: db.to_path_buf(),
    };
    tracing::error!("{e}");
    Some(e)
}

/// Directories a failed start made, removed when it returns (declared before the locks
/// inside them, so dropped after them).
#[derive(Default)]
struct FreshDirs(Vec<PathBuf>);

impl Drop for FreshDirs {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Threads that check databases' replicas at start: that part (the spool and lineage read,
/// the lineage files written and fsynced, the first listing of each replica) is mostly
/// waiting on fsyncs and the network, not on the CPU, so more threads than cores overlap the
/// waits (figures: `docs/measurements.md`). The threads end once every database has started.
const STARTERS: usize = 16;

/// `f` over `items` on up to [`STARTERS`] threads; the results in the order of `items`.
fn in_parallel<'a, T: Sync, R: Send>(items: &'a [T], f: impl Fn(&'a T) -> R + Sync) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out: std::sync::Mutex<Vec<Option<R>>> =
        std::sync::Mutex::new(items.iter().map(|_| None).collect());
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else {
                break;
            };
            let r = f(item);
            out.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
        }
    };
    std::thread::scope(|s| {
        for _ in 1..STARTERS.min(items.len()) {
            s.spawn(work);
        }
        work();
    });
    out.into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.expect("every item was taken by one thread"))
        .collect()
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
