//! The `scale` phase: N small WAL databases in one replicator process, each with its own file
//! replica, for each N asked for; memsync and Litestream in turn on the same machine, each on
//! freshly made databases. Per tool and N:
//! - startup: process start until every replica holds its database's first snapshot (seen in
//!   the replica directories, the same test for both tools), and the CPU it took;
//! - idle: after `settle`, CPU % of one core over `idle` (utime+stime of the replicator's
//!   session), RSS and peak RSS, the most threads and open descriptors seen;
//! - load: the application (this process, one connection per database) commits one row per
//!   second to each database for `load`: replicator CPU %, RSS, threads, and the application's
//!   commit latencies (p50, p99, slowest; and p99 and slowest without each connection's first
//!   commit, which writes and fsyncs a new WAL header with or without a replicator, unless the
//!   replicator has written to the database itself, as Litestream does). Commits over 1 ms are
//!   told apart: a connection's first, the writer slept, the writer was preempted. The same
//!   writer runs once with no replicator, the baseline for the latencies;
//! - shutdown: `drain` after the last commit, SIGTERM until exit; then a sample of databases is
//!   restored with the tool's own `restore` and checked to hold the last commit.
//!
//! Printed: `tool.scale.nN.key=value` lines, a side-by-side table per N and, for more than one
//! N, how the figures grow.

mod dbs;
pub mod table;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::proc::{Replicator, Running};
use super::{BenchOptions, Figures, fresh, pct, procfs};
use table::Outcome;

/// How long [`Running::stop`] waits after SIGTERM before it kills the session.
const STOP_LIMIT: f64 = 30.0;

/// The scale phase's parameters.
#[derive(Debug, Clone)]
pub struct ScaleOptions {
    /// Database counts, run in order.
    pub dbs: Vec<usize>,
    /// Wait after startup before the idle window (the tools' first timers fire).
    pub settle: Duration,
    /// Idle window.
    pub idle: Duration,
    /// Load window (and the baseline writer's).
    pub load: Duration,
    /// Wait between the last commit and SIGTERM (0: at once, so shutdown must ship it).
    pub drain: Duration,
    /// Databases restored after shutdown, besides the first and the last.
    pub samples: usize,
}

/// Runs the phase for every N; returns the tables.
pub fn phase_scale(o: &BenchOptions) -> Result<String, String> {
    let s = &o.scale;
    if s.dbs.is_empty() || s.dbs.contains(&0) {
        return Err("scale: --dbs needs database counts of 1 or more".into());
    }
    // Children inherit the soft limit: raise it for the biggest run (the replicator's need
    // covers this process's writer too, three descriptors a database).
    let most = s.dbs.iter().copied().max().unwrap_or(0);
    crate::replicate::fdlimit::ensure(most).map_err(|e| format!("scale: {e}"))?;
    let mut outcomes = Vec::new();
    let mut out = String::new();
    for &n in &s.dbs {
        let base = o.workdir.join("scale").join(format!("n{n}"));
        eprintln!("bench: scale {n} databases, the writer alone");
        let alone = alone(s, n, &base.join("alone"))?;
        print_figures("none", n, &alone);
        let mut tools = Vec::new();
        for r in &o.replicators {
            eprintln!("bench: scale {n} databases, {}", r.name);
            let f = match one(o, r, n, &base.join(&r.name)) {
                Ok(f) => {
                    print_figures(&r.name, n, &f);
                    Some(f)
                }
                Err(e) => {
                    eprintln!("bench: scale {n} databases, {}: {e}", r.name);
                    None
                }
            };
            tools.push((r.name.clone(), f));
        }
        let outcome = Outcome { n, tools, alone };
        out.push_str(&table::side_by_side(&outcome));
        outcomes.push(outcome);
    }
    out.push_str(&table::growth(&outcomes));
    Ok(out)
}

fn print_figures(tool: &str, n: usize, f: &Figures) {
    for (k, v) in f {
        println!("{tool}.scale.n{n}.{k}={v:.3}");
    }
}

/// The writer with no replicator: the latencies the application has on its own.
fn alone(s: &ScaleOptions, n: usize, dir: &Path) -> Result<Figures, String> {
    fresh(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let paths = dbs::make(&dir.join("dbs"), n)?;
    rustix::fs::sync();
    let conns = writer::open(&paths)?;
    let load = writer::run(&conns, s.load);
    let mut f = Figures::new();
    push_load(&mut f, load);
    Ok(f)
}

fn push_load(f: &mut Figures, mut l: writer::Load) {
    f.push(("commits".into(), l.commits as f64));
    f.push(("commit_errors".into(), l.errors as f64));
    f.push((
        "commit_rate".into(),
        l.commits as f64 / l.elapsed.max(f64::EPSILON),
    ));
    // Each connection's first commit writes and fsyncs a new WAL header (the databases start
    // with no WAL), with or without a replicator: the figures after it are the steady state.
    // Split before anything sorts the latencies out of commit order.
    let slow = |xs: &[f64]| xs.iter().filter(|&&s| s > writer::SLOW).count() as f64;
    let split = l.first_round.min(l.latencies.len());
    let slow_first = slow(&l.latencies[..split]);
    let mut later = l.latencies[split..].to_vec();
    f.push((
        "commit_p99_after_first_ms".into(),
        pct(&mut later, 99.0) * 1e3,
    ));
    f.push((
        "commit_max_after_first_ms".into(),
        pct(&mut later, 100.0) * 1e3,
    ));
    f.push(("commits_over_1ms".into(), slow(&l.latencies)));
    f.push(("commits_over_1ms_first".into(), slow_first));
    f.push(("commit_p50_ms".into(), pct(&mut l.latencies, 50.0) * 1e3));
    f.push(("commit_p99_ms".into(), pct(&mut l.latencies, 99.0) * 1e3));
    f.push(("commit_max_ms".into(), pct(&mut l.latencies, 100.0) * 1e3));
    f.push(("commits_waited".into(), l.waited as f64));
    f.push(("commits_over_1ms_slept".into(), l.slow_slept as f64));
    f.push(("commits_over_1ms_preempted".into(), l.slow_preempted as f64));
    f.push(("writer_late_max_ms".into(), l.late_max * 1e3));
}

/// The most seen of a process's figures while a window ran.
#[derive(Debug, Default, Clone, Copy)]
struct Peaks {
    threads: u64,
    fds: u64,
}

/// Samples `pid` every 250 ms until `stop`.
fn watch(pid: u32, stop: &AtomicBool) -> Peaks {
    let mut p = Peaks::default();
    while !stop.load(Ordering::Relaxed) {
        if let Some(s) = procfs::status(pid) {
            p.threads = p.threads.max(s.threads);
        }
        p.fds = p.fds.max(procfs::fds(pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(250));
    }
    p
}

/// Runs `work` while sampling `pid`; its result and the peaks.
fn watched<T>(pid: u32, work: impl FnOnce() -> T) -> (T, Peaks) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|sc| {
        let h = sc.spawn(|| watch(pid, &stop));
        let t = work();
        stop.store(true, Ordering::Relaxed);
        (t, h.join().unwrap_or_default())
    })
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// One tool on `n` fresh databases.
fn one(o: &BenchOptions, r: &Replicator, n: usize, dir: &Path) -> Result<Figures, String> {
    let s = &o.scale;
    fresh(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let paths = dbs::make(&dir.join("dbs"), n)?;
    let replicas: Vec<PathBuf> = (0..n)
        .map(|i| dir.join("replicas").join(dbs::name(i)))
        .collect();
    let cfg = dir.join("replicator.yml");
    std::fs::write(&cfg, dbs::config(&paths, &replicas, &o.sync_interval))
        .map_err(|e| format!("{}: {e}", cfg.display()))?;
    rustix::fs::sync();
    let log = dir.join("replicator.log");
    let t0 = Instant::now();
    let mut run = r
        .start(&cfg, &log)
        .map_err(|e| format!("starting {}: {e}", r.name))?;
    let limit = Duration::from_secs(60 + n as u64 / 10);
    let startup = match dbs::wait_snapshots(&replicas, t0, limit, &mut run) {
        Ok(t) => t,
        Err(e) => {
            run.stop();
            return Err(format!("{e}; log: {}", log_tail(&log)));
        }
    };
    let mut f = Figures::new();
    f.push(("startup_s".into(), startup));
    f.push(("startup_cpu_s".into(), run.cpu_seconds()));
    let conns = match measure(s, &mut run, &paths, &mut f) {
        Ok(c) => c,
        Err(e) => {
            run.stop();
            return Err(format!("{e}; log: {}", log_tail(&log)));
        }
    };
    std::thread::sleep(s.drain);
    let stop = run.stop();
    f.push(("shutdown_s".into(), stop));
    f.push((
        "shutdown_killed".into(),
        if stop >= STOP_LIMIT { 1.0 } else { 0.0 },
    ));
    drop(conns);
    verify(r, &cfg, &paths, dir, s.samples, &mut f);
    Ok(f)
}

/// The idle and load windows; the application's connections, still open.
fn measure(
    s: &ScaleOptions,
    run: &mut Running,
    paths: &[PathBuf],
    f: &mut Figures,
) -> Result<Vec<rusqlite::Connection>, String> {
    let pid = run.pid();
    std::thread::sleep(s.settle);
    let (c0, t0) = (run.cpu_seconds(), Instant::now());
    let ((), peaks) = watched(pid, || std::thread::sleep(s.idle));
    let (c1, t1) = (run.cpu_seconds(), t0.elapsed().as_secs_f64());
    let st = procfs::status(pid).unwrap_or_default();
    f.push(("idle_cpu_pct".into(), (c1 - c0) / t1 * 100.0));
    f.push(("idle_rss_mb".into(), mb(st.rss_kb)));
    f.push(("idle_peak_rss_mb".into(), mb(st.hwm_kb)));
    f.push(("idle_threads".into(), peaks.threads.max(st.threads) as f64));
    f.push(("idle_fds".into(), peaks.fds as f64));
    if !run.alive() {
        return Err("exited while idle".into());
    }
    let conns = writer::open(paths)?;
    let (c0, t0) = (run.cpu_seconds(), Instant::now());
    let (load, peaks) = watched(pid, || writer::run(&conns, s.load));
    let (c1, t1) = (run.cpu_seconds(), t0.elapsed().as_secs_f64());
    let st = procfs::status(pid).unwrap_or_default();
    f.push(("load_cpu_pct".into(), (c1 - c0) / t1 * 100.0));
    f.push(("load_rss_mb".into(), mb(st.rss_kb)));
    f.push(("load_peak_rss_mb".into(), mb(st.hwm_kb)));
    f.push(("load_threads".into(), peaks.threads.max(st.threads) as f64));
    push_load(f, load);
    if !run.alive() {
        return Err("exited under load".into());
    }
    // The connections stay open until the replicator has exited, as a server's would: closing
    // the last one checkpoints the WAL, which would change what shutdown has to ship.
    Ok(conns)
}

/// Restores a sample of the databases and checks each holds its last commit.
fn verify(
    r: &Replicator,
    cfg: &Path,
    paths: &[PathBuf],
    dir: &Path,
    samples: usize,
    f: &mut Figures,
) {
    let out_dir = dir.join("restored");
    let _ = std::fs::create_dir_all(&out_dir);
    let (mut ok, mut slowest) = (0, 0.0f64);
    let picked = dbs::sample(paths.len(), samples);
    for &i in &picked {
        let out = out_dir.join(format!("{}.sqlite", dbs::name(i)));
        let t = Instant::now();
        let restored = r.restore(cfg, &out, &paths[i]);
        slowest = slowest.max(t.elapsed().as_secs_f64());
        let want = dbs::last_id(&paths[i]);
        let got = restored.then(|| dbs::last_id(&out)).flatten();
        if want.is_some() && got == want {
            ok += 1;
        } else {
            eprintln!(
                "bench: scale {}: {} restored to row {got:?}, the database has {want:?}",
                r.name,
                dbs::name(i)
            );
        }
    }
    f.push(("restore_checked".into(), picked.len() as f64));
    f.push(("restore_ok".into(), ok as f64));
    f.push(("restore_max_s".into(), slowest));
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(f: &Figures, key: &str) -> f64 {
        f.iter().find(|(k, _)| k == key).map(|(_, v)| *v).unwrap()
    }

    #[test]
    fn figures_past_the_first_round_leave_each_connections_first_commit_out() {
        // Two connections: their first commits took 3 ms and 2 ms, the rest 0.1 ms at most.
        let mut latencies = vec![3e-3, 2e-3];
        latencies.extend((0..100).map(|i| f64::from(i % 2 + 1) * 5e-5));
        let load = writer::Load {
            commits: latencies.len() as u64,
            latencies,
            first_round: 2,
            elapsed: 51.0,
            ..Default::default()
        };
        let mut f = Figures::new();
        push_load(&mut f, load);
        assert_eq!(get(&f, "commit_max_ms"), 3.0);
        assert_eq!(get(&f, "commits_over_1ms"), 2.0);
        assert_eq!(get(&f, "commits_over_1ms_first"), 2.0);
        assert!((get(&f, "commit_max_after_first_ms") - 0.1).abs() < 1e-9);
        assert!(get(&f, "commit_p99_after_first_ms") <= 0.1 + 1e-9);
    }
}
