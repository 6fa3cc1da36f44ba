//! What a running replicator shows of itself: the `addr` endpoint (Prometheus text at
//! `/metrics`, a JSON verdict at `/health`) and, with or without `addr`, a state file per
//! database for `memsync status`. Everything is read from the live counters (`stats.rs`) at the
//! moment it is asked for.

pub mod health;
mod http;
pub mod reading;
pub mod render;
pub mod state;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use tokio::net::TcpListener;

pub use reading::{ReplicaSource, Source};

use crate::stats::SyncStats;

/// Everything one process exposes.
pub struct Exposed {
    /// The replicated databases (a watched directory adds and drops some while running).
    pub sources: RwLock<Vec<Source>>,
    /// The memory sync, when this process runs it.
    pub sync: Option<Arc<SyncStats>>,
    /// Why replication is not running, while `memsync run` waits to start it again.
    replication_down: Mutex<Option<String>>,
}

impl std::fmt::Debug for Exposed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exposed").finish_non_exhaustive()
    }
}

impl Exposed {
    /// What is exposed: `sources` and the memory sync's counters.
    pub fn new(sources: Vec<Source>, sync: Option<Arc<SyncStats>>) -> Exposed {
        Exposed {
            sources: RwLock::new(sources),
            sync,
            replication_down: Mutex::new(None),
        }
    }

    /// Says why replication is not running (`None`: it runs again).
    pub fn set_replication_down(&self, why: Option<String>) {
        *self
            .replication_down
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = why;
    }

    fn sources(&self) -> std::sync::RwLockReadGuard<'_, Vec<Source>> {
        self.sources.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The `/metrics` text at `now_ms`.
    pub fn metrics(&self, now_ms: i64) -> String {
        render::render(&self.sources(), self.sync.as_deref(), now_ms)
    }

    /// The `/health` status and JSON body at `now_ms`.
    pub fn health(&self, now_ms: i64) -> (u16, String) {
        let dbs = reading::read(&self.sources(), now_ms);
        let failing = self.sync.as_ref().and_then(|s| s.failing());
        let down = self
            .replication_down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut problems = health::judge(&dbs, failing, now_ms);
        if let Some(why) = down {
            problems.push(health::Problem {
                db: None,
                replica: None,
                reason: format!("replication is not running: {why}"),
            });
        }
        health::answer(&dbs, &problems)
    }
}

/// Binds `addr` (Litestream style: `":9090"` means all interfaces).
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let a = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_owned()
    };
    TcpListener::bind(&a).await
}

/// Serves `exposed` on `listener` until the task is dropped (`memsync run` serves it itself,
/// so that the endpoint outlives a replication that stopped).
pub async fn serve(listener: TcpListener, exposed: Arc<Exposed>) {
    http::serve(listener, exposed).await
}

/// The running endpoint and state writer; dropping it stops both, removes the state files
/// (a stopped replicator leaves none behind) and the databases it showed.
pub struct Observer {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    exposed: Arc<Exposed>,
    /// Meta directories written to; `None` once stopped (a write in flight then skips).
    written: Arc<Mutex<Option<Vec<PathBuf>>>>,
}

impl Observer {
    /// Shows a database that started replicating while running.
    pub fn add(&self, source: Source) {
        if let Ok(mut w) = self.written.lock()
            && let Some(dirs) = w.as_mut()
        {
            dirs.push(source.meta_dir.clone());
        }
        self.exposed
            .sources
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(source);
    }

    /// Stops showing the database `db` (no longer replicated); its state file goes.
    pub fn remove(&self, db: &str) {
        let mut sources = self
            .exposed
            .sources
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let Some(i) = sources.iter().position(|s| s.db == db) else {
            return;
        };
        let gone = sources.remove(i);
        drop(sources);
        if let Ok(mut w) = self.written.lock()
            && let Some(dirs) = w.as_mut()
        {
            dirs.retain(|d| *d != gone.meta_dir);
            let _ = std::fs::remove_file(state::path(&gone.meta_dir));
        }
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        let dirs = self.written.lock().map(|mut w| w.take()).unwrap_or(None);
        for d in dirs.unwrap_or_default() {
            let _ = std::fs::remove_file(state::path(&d));
        }
        // An endpoint that outlives this replication (`memsync run`'s) stops showing them.
        self.exposed
            .sources
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// Starts serving `exposed` on `listener` (when `addr` is configured) and, with `state_files`,
/// the state writer; both run on `rt` until the returned [`Observer`] is dropped.
pub fn start(
    rt: &tokio::runtime::Runtime,
    listener: Option<TcpListener>,
    exposed: Arc<Exposed>,
    state_files: bool,
) -> Observer {
    let dirs = exposed
        .sources()
        .iter()
        .map(|s| s.meta_dir.clone())
        .collect();
    let written = Arc::new(Mutex::new(Some(dirs)));
    let mut tasks = Vec::new();
    if let Some(l) = listener {
        tasks.push(rt.spawn(http::serve(l, exposed.clone())));
    }
    if state_files {
        tasks.push(rt.spawn(write_states(exposed.clone(), written.clone())));
    }
    Observer {
        tasks,
        exposed,
        written,
    }
}

/// Looks at every database's state every [`state::EVERY`] and rewrites its file when it
/// changed, or when the last write is [`state::REFRESH`] old: at hundreds of idle databases a
/// rewrite of every file every 2 s was most of memsync's idle CPU (file creation).
async fn write_states(exposed: Arc<Exposed>, written: Arc<Mutex<Option<Vec<PathBuf>>>>) {
    let mut tick = tokio::time::interval(state::EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    // What each file holds (its write time aside) and when it was written, by meta directory.
    let last: Arc<Mutex<std::collections::HashMap<PathBuf, state::State>>> = Arc::default();
    loop {
        tick.tick().await;
        let (exposed, written, last) = (exposed.clone(), written.clone(), last.clone());
        let res = tokio::task::spawn_blocking(move || {
            // Held while writing: a stop waits for this write, then removes what it wrote.
            let guard = written
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?;
            if guard.is_none() {
                return Ok(());
            }
            let mut last = last.lock().map_err(|_| std::io::Error::other("poisoned"))?;
            let now = crate::stats::unix_ms();
            let pid = std::process::id();
            let sources = exposed.sources();
            // A set, not a scan per entry: at 500 databases that scan compared 250 000 paths
            // every 2 s, most of an idle replicator's CPU.
            let live: std::collections::HashSet<&std::path::Path> =
                sources.iter().map(|s| s.meta_dir.as_path()).collect();
            last.retain(|dir, _| live.contains(dir.as_path()));
            for (src, db) in sources.iter().zip(reading::read(&sources, now)) {
                let st = state::State::of(&db, pid, now);
                if last.get(&src.meta_dir).is_some_and(|p| !state::due(p, &st)) {
                    continue;
                }
                let first = !last.contains_key(&src.meta_dir);
                match state::write(&src.meta_dir, &st, first) {
                    Ok(()) => {}
                    // Removed with its database (which the replicator drops at its next look).
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                last.insert(src.meta_dir.clone(), st);
            }
            Ok::<_, std::io::Error>(())
        })
        .await;
        if let Ok(Err(e)) = res
            && !std::mem::replace(&mut warned, true)
        {
            tracing::warn!("replication state for memsync status: {e}");
        }
    }
}
