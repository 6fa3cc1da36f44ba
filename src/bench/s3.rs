//! The `s3` phase (not run by default): what a replicator asks of an S3 store, and how fast it
//! restores from one. A real SeaweedFS server runs for the phase; each replicator talks to it
//! through a [`CountProxy`] that counts its requests by kind and the bytes it sends.
//!
//! - Requests: the cpu phase's writer (`rate` commits/s for `duration`, the application's
//!   `wal_checkpoint(RESTART)` every 5 s) on a fresh database replicated to its own prefix;
//!   requests by method and bytes up while the replicator starts, during the writes, and in
//!   `s3_idle` seconds after the writer stops; the replica is then restored and verified.
//! - Restore: the restore phase's bulk-filled database, replicated (initial sync, until a
//!   restore shows every row), then `restore -o` from the S3 replica timed (median of `runs`,
//!   straight to the server, no proxy in the way), and one more restore through the proxy for
//!   its request count.
//!
//! Tools take turns, memsync first, the same as in the other phases.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::countproxy::{CountProxy, Tally};
use super::httphead::Kind;
use super::proc::Replicator;
use super::seaweed::{ACCESS_KEY, BUCKET, REGION, SECRET_KEY, Seaweed};
use super::{BenchOptions, Figures, count_rows, fresh, pct, wait_caught_up, workload};

/// Runs the phase for every replicator in turn; one set of figures per replicator, in order.
pub fn phase_s3(o: &BenchOptions, filled: &Path) -> Result<Vec<Figures>, String> {
    eprintln!("bench: s3: starting SeaweedFS");
    let server = Seaweed::start(&o.workdir.join("seaweedfs"))?;
    let mut figs = vec![Figures::new(); o.replicators.len()];
    for (f, r) in figs.iter_mut().zip(&o.replicators) {
        eprintln!("bench: {} s3 requests", r.name);
        rustix::fs::sync();
        requests(o, r, &server, f)?;
    }
    for (f, r) in figs.iter_mut().zip(&o.replicators) {
        eprintln!("bench: {} s3 restore", r.name);
        rustix::fs::sync();
        restore(o, r, &server, filled, f)?;
    }
    Ok(figs)
}

/// A replicator config for one database and an S3 replica at `endpoint` under `prefix`.
fn config(
    path: &Path,
    db: &Path,
    endpoint: &str,
    prefix: &str,
    sync: &Option<String>,
) -> Result<(), String> {
    let mut s = format!(
        "dbs:\n  - path: {}\n    replica:\n      type: s3\n      bucket: {BUCKET}\n      path: {prefix}\n      endpoint: {endpoint}\n      region: {REGION}\n      force-path-style: true\n      access-key-id: {ACCESS_KEY}\n      secret-access-key: {SECRET_KEY}\n",
        db.display()
    );
    if let Some(i) = sync {
        let _ = writeln!(s, "      sync-interval: {i}");
    }
    std::fs::write(path, s).map_err(|e| format!("{}: {e}", path.display()))
}

/// The two configs of one run: through the proxy (replicate, counted restores) and straight
/// to the server (probes and timed restores, not counted).
fn configs(
    dir: &Path,
    db: &Path,
    proxy: &CountProxy,
    server: &Seaweed,
    prefix: &str,
    sync: &Option<String>,
) -> Result<(PathBuf, PathBuf), String> {
    let (counted, direct) = (dir.join("replicate.yml"), dir.join("direct.yml"));
    config(
        &counted,
        db,
        &format!("http://{}", proxy.addr()),
        prefix,
        sync,
    )?;
    config(&direct, db, &server.endpoint(), prefix, sync)?;
    Ok((counted, direct))
}

const MB: f64 = 1e6;

/// Pushes one window's figures: requests by kind, their total, bytes up.
fn push_window(f: &mut Figures, name: &str, t: &Tally) {
    for k in Kind::ALL {
        f.push((format!("s3.{name}_{}", k.name()), t.of(k) as f64));
    }
    f.push((format!("s3.{name}_requests"), t.total() as f64));
    f.push((format!("s3.{name}_mb_up"), t.body_up as f64 / MB));
}

fn requests(
    o: &BenchOptions,
    r: &Replicator,
    server: &Seaweed,
    f: &mut Figures,
) -> Result<(), String> {
    let dir = o.workdir.join(&r.name).join("s3");
    fresh(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let db = dir.join("db.sqlite");
    let proxy = CountProxy::start(server.s3_addr(), &dir.join("requests.log"))
        .map_err(|e| format!("counting proxy: {e}"))?;
    let prefix = format!("{}/requests", r.name);
    let (counted, direct) = configs(&dir, &db, &proxy, server, &prefix, &o.sync_interval)?;
    let app = workload::open(&db).map_err(|e| e.to_string())?;
    workload::create(&app).map_err(|e| e.to_string())?;
    let run = r
        .start(&counted, &dir.join("replicator.log"))
        .map_err(|e| e.to_string())?;
    std::thread::sleep(o.writer_start);
    let t_write = proxy.tally();
    // The cpu phase's writer, its application checkpoints included.
    let mut rng = workload::Rng::new(1);
    let mut last_ckpt = Instant::now();
    let t0 = Instant::now();
    let n = workload::write_steady(&app, o.rate, o.duration, &mut rng, |_, _| {
        if last_ckpt.elapsed() >= Duration::from_secs(5) {
            let _ = app.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()));
            last_ckpt = Instant::now();
        }
    })
    .map_err(|e| e.to_string())?;
    let write_s = t0.elapsed().as_secs_f64();
    let t_idle = proxy.tally();
    std::thread::sleep(o.s3_idle);
    let t_stop = proxy.tally();
    let shutdown_s = run.stop();
    let t_end = proxy.tally();
    let rows = count_rows(&db);
    let db_bytes = std::fs::metadata(&db).map_or(0, |m| m.len())
        + std::fs::metadata(crate::sqlite::sidecar(&db, "-wal")).map_or(0, |m| m.len());
    let out = dir.join("final.db");
    let verified = r.restore(&direct, &out, &db) && workload::verify(&out) == Ok(rows);
    f.push(("s3.commits".into(), n as f64));
    f.push(("s3.db_plus_wal_mb".into(), db_bytes as f64 / MB));
    f.push(("s3.startup_requests".into(), t_write.total() as f64));
    let w = t_idle.since(&t_write);
    push_window(f, "write", &w);
    f.push((
        "s3.write_requests_per_min".into(),
        w.total() as f64 * 60.0 / write_s,
    ));
    f.push(("s3.write_mb_down".into(), w.wire_down as f64 / MB));
    // The tools do not commit alike (Litestream stalls the application's checkpoints).
    f.push((
        "s3.write_kb_up_per_commit".into(),
        w.body_up as f64 / 1e3 / n.max(1) as f64,
    ));
    push_window(f, "idle", &t_stop.since(&t_idle));
    f.push((
        "s3.shutdown_requests".into(),
        t_end.since(&t_stop).total() as f64,
    ));
    f.push(("s3.shutdown_s".into(), shutdown_s));
    // Connections whose requests the proxy could not read (expected 0).
    f.push(("s3.connections_not_parsed".into(), t_end.lost as f64));
    f.push((
        "s3.final_restore_verified".into(),
        if verified { 1.0 } else { 0.0 },
    ));
    Ok(())
}

fn restore(
    o: &BenchOptions,
    r: &Replicator,
    server: &Seaweed,
    filled: &Path,
    f: &mut Figures,
) -> Result<(), String> {
    let dir = o.workdir.join(&r.name).join("s3-restore");
    fresh(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let db = dir.join("db.sqlite");
    std::fs::copy(filled, &db).map_err(|e| format!("{}: {e}", db.display()))?;
    let rows = count_rows(&db);
    let proxy = CountProxy::start(server.s3_addr(), &dir.join("requests.log"))
        .map_err(|e| format!("counting proxy: {e}"))?;
    let prefix = format!("{}/restore", r.name);
    let (counted, direct) = configs(&dir, &db, &proxy, server, &prefix, &o.sync_interval)?;
    let run = r
        .start(&counted, &dir.join("replicator.log"))
        .map_err(|e| e.to_string())?;
    let probe = dir.join("probe.db");
    let sync_s = wait_caught_up(r, &direct, &db, &probe, rows, Duration::from_secs(300));
    let synced = proxy.tally();
    run.stop();
    let _ = std::fs::remove_file(&probe);
    let out = dir.join("restored.db");
    let mut times = Vec::new();
    for _ in 0..o.runs.max(1) {
        let t = Instant::now();
        if !r.restore(&direct, &out, &db) {
            return Err(format!("{}: restore from S3 failed", r.name));
        }
        times.push(t.elapsed().as_secs_f64());
    }
    let med = pct(&mut times, 50.0);
    let size = std::fs::metadata(&out).map_or(0, |m| m.len()) as f64;
    let verified = workload::verify(&out) == Ok(rows);
    // One more, through the proxy: what a restore asks of the store.
    let before = proxy.tally();
    if !r.restore(&counted, &out, &db) {
        return Err(format!(
            "{}: restore from S3 through the proxy failed",
            r.name
        ));
    }
    let asked = proxy.tally().since(&before);
    f.push(("s3_restore.db_mb".into(), size / MB));
    f.push(("s3_restore.initial_sync_s".into(), sync_s));
    f.push((
        "s3_restore.initial_sync_requests".into(),
        synced.total() as f64,
    ));
    f.push((
        "s3_restore.initial_sync_mb_up".into(),
        synced.body_up as f64 / MB,
    ));
    f.push(("s3_restore.restore_median_s".into(), med));
    f.push(("s3_restore.restore_mb_per_s".into(), size / 1048576.0 / med));
    f.push(("s3_restore.restore_requests".into(), asked.total() as f64));
    f.push((
        "s3_restore.restore_mb_down".into(),
        asked.wire_down as f64 / MB,
    ));
    f.push((
        "s3_restore.verified".into(),
        if verified { 1.0 } else { 0.0 },
    ));
    let _ = std::fs::remove_file(&out);
    Ok(())
}
