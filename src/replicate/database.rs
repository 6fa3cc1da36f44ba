//! One replicated database: its monitor started on the pool, a shipping task per replica and
//! the spool's pruner, and a stop of its own (a database dropped from a watched directory
//! stops alone).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::placer::{Inline, Placer};
use super::shipper::ShipperParts;
use super::sink::{CompactionConfig, SpoolSink};
use super::spool::Spool;
use super::{
    DbHandle, FLUSH_TIMEOUT, ReplicateError, ReplicateOptions, lineage, lock, meta_dir, prune,
    real_path, startup,
};
use crate::config::{Config, DbConfig};
use crate::replica::{self, ReplicaClient, ReplicaError};
use crate::sqlite::monitor::{MonitorConfig, MonitorError};
use crate::sqlite::pool::{MonitorHandle, Pool, StartArgs};
use crate::stats::{DbStats, ShipStats};

pub(super) struct Running {
    pub(super) monitor: MonitorHandle,
    pub(super) tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Stops this database's shippers (after their last upload).
    pub(super) stop: watch::Sender<bool>,
    pub(super) handle: DbHandle,
}

impl Running {
    /// Stops replicating this database (what is committed is shipped first, unless its
    /// monitor already ended); its handle and how its monitor ended (`None`: it panicked).
    pub(super) fn end(
        self,
        rt: &tokio::runtime::Runtime,
    ) -> (DbHandle, Option<Result<(), MonitorError>>) {
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
pub(super) fn add_db(
    rt: &tokio::runtime::Runtime,
    pool: &Pool,
    db: &DbConfig,
    config: &Config,
    opts: &ReplicateOptions,
    stop: Arc<AtomicBool>,
) -> Result<(Running, lock::DbLock), ReplicateError> {
    crate::sqlite::conn::check_file(&db.path).map_err(MonitorError::from)?;
    let meta = meta_dir(db);
    let made = !meta.exists();
    let started = (|| {
        let lock = lock::acquire(&db.path, &meta)?;
        let deadline = tokio::time::Instant::now() + startup::START_WAIT;
        let s = start_db(rt, pool, db, &config.tiers, opts, stop, deadline)?;
        Ok((s.running(rt, &config.tiers)?, lock))
    })();
    if started.is_err() && made {
        // What this attempt made goes with it (it is tried again at the next scan).
        let _ = std::fs::remove_dir_all(&meta);
    }
    started
}

/// A database whose monitor is starting on the pool, with what its shippers will need.
pub(super) struct Starting<'a> {
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
    /// Per replica: its counters, its confirmed position, its placement (`placer.rs`).
    ships: Vec<Ship>,
}

/// What a replica's shipper shares with the database's sink.
struct Ship {
    stats: Arc<ShipStats>,
    confirmed: watch::Sender<Option<replica_formats::TxId>>,
    inline: Option<Arc<Inline>>,
}

/// Checks a database's replicas and starts its monitor on the pool (without waiting for it).
pub(super) fn start_db<'a>(
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
    // Without `snapshot-interval`, one snapshot per `retention`: retention keeps the newest
    // snapshot before its window and everything after it, so without a newer one nothing
    // would ever go (a small database's segments never outweigh a fresh snapshot).
    ccfg.snapshot_interval = db
        .replicas
        .iter()
        .filter_map(|r| {
            r.snapshot_interval
                .or((!r.retention.is_zero()).then_some(r.retention))
        })
        .min();
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
    let ship_stats: Vec<Arc<ShipStats>> = clients
        .iter()
        .map(|_| Arc::new(ShipStats::default()))
        .collect();
    let starts: Vec<startup::Start> = clients
        .iter()
        .zip(&ship_stats)
        .map(|((c, r), stats)| startup::Start {
            client: c.clone(),
            me: me.clone(),
            takeover: opts.takeover || r.takeover,
            spool: left.clone(),
            spool_keys: spool_keys.clone(),
            stats: stats.clone(),
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
    let ships: Vec<Ship> = clients
        .iter()
        .zip(ship_stats)
        .map(|((c, r), stats)| {
            let (confirmed, _) = watch::channel(None);
            // A file replica whose shipper would ship each file as soon as it is captured
            // takes it right there instead; not while a test holds uploads at their fault
            // point (the files must then go through the shipper).
            let inline = (c.is_file()
                && r.sync_interval.saturating_sub(min_gap).is_zero()
                && !crate::fault::armed("upload"))
            .then(|| Inline::new(c.clone(), stats.clone(), confirmed.clone()));
            Ship {
                stats,
                confirmed,
                inline,
            }
        })
        .collect();
    let targets: Vec<Arc<Inline>> = ships.iter().filter_map(|s| s.inline.clone()).collect();
    let others = ships.len() - targets.len();
    let sink = SpoolSink::new(&meta, ccfg, pos_tx, map_tx, stats.clone())
        .with_placer(Placer::new(targets, others));
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
        ships,
    })
}

impl Starting<'_> {
    /// Waits for the monitor's start, then starts shipping to every replica.
    pub(super) fn running(
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
            ships,
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
        let each = clients.into_iter().zip(starts).zip(pending).zip(ships);
        for ((((client, rcfg), start), pending), ship) in each {
            let ss = ship.stats;
            replicas.push((rcfg.name.clone(), ss.clone()));
            let (ready_early, early) = match &pending {
                startup::Pending::Ready(r) => (true, r.remote()),
                _ => (false, None),
            };
            let ctx = ship.confirmed;
            ctx.send_replace(early);
            let lineage = start.me.clone();
            confirmed.push(ctx.subscribe());
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
                inline: ship.inline,
                lineage,
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
