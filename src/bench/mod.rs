//! `memsync bench`: the same workload against memsync and, when found, Litestream, with
//! figures printed side by side. Nothing here asserts a time; it measures and prints.
//!
//! Phases (each on a fresh database per replicator; phase by phase, the replicators in turn):
//! - `cpu`: a writer commits `rate` memories/s for `duration`; the application also runs a
//!   `wal_checkpoint(RESTART)` every 5 s and the time it takes is the checkpoint stall. Reports
//!   replicator CPU % of one core (the median of `cpu_runs` alternating runs), peak RSS,
//!   catch-up time, replica bytes, shutdown time.
//! - `lag`: the same writer while a prober restores the replica in a loop; per-row lag between
//!   commit and first restore that shows it (upper bound includes the restore, lower bound is
//!   the start of the last restore that did not).
//! - `sparse`: single commits at random moments (`sparse_gap` apart on average), probed as `lag`.
//! - `history` (not run by default: 10 minutes): see `history.rs`.
//! - `restore`: a database bulk-filled to `size_mb`; time until the replica restores it (initial
//!   sync), then restore time (median of `runs`) and MB/s.
//! - `s3` (not run by default: needs SeaweedFS): see `s3.rs`.
//! - `scale` (not run by default): N small databases in one process, see `scale/mod.rs`.

pub mod countproxy;
pub mod follow;
pub mod history;
pub mod httphead;
mod lag;
pub mod proc;
pub mod procfs;
pub mod s3;
pub mod scale;
mod seaweed;
pub mod workload;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lag::phase_lag;

use proc::{Replicator, dir_size};

/// Benchmark parameters.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Commits per second of the writer.
    pub rate: u32,
    /// Length of the cpu phase.
    pub duration: Duration,
    /// Length of the lag phase.
    pub lag_duration: Duration,
    /// Mean gap between the commits of the sparse phase.
    pub sparse_gap: Duration,
    /// Length of the sparse phase.
    pub sparse_duration: Duration,
    /// Run the restore-in-a-loop lag probe (both replicators; the side-by-side figure). Without
    /// it only memsync's replica is followed segment by segment, with nothing else competing
    /// for the two cores.
    pub restore_probe: bool,
    /// Size of the restore-phase database.
    pub size_mb: u64,
    /// Runs of the cpu phase, alternating the replicators; the CPU figure is their median.
    pub cpu_runs: usize,
    /// Restores timed in the restore phase.
    pub runs: usize,
    /// Time from the replicator's start to the writer's first commit (see
    /// [`DEFAULT_WRITER_START`]).
    pub writer_start: Duration,
    /// Replica `sync-interval` (None = the replicators' default).
    pub sync_interval: Option<String>,
    /// Length of the history phase.
    pub history_duration: Duration,
    /// How often the history phase records replica sizes.
    pub history_sample: Duration,
    /// How long the s3 phase counts requests after the writer stops.
    pub s3_idle: Duration,
    /// The scale phase's parameters.
    pub scale: scale::ScaleOptions,
    /// Phases to run.
    pub phases: Vec<String>,
    /// Working directory (kept).
    pub workdir: PathBuf,
    /// Replicators to measure.
    pub replicators: Vec<Replicator>,
}

/// Half a second off the whole seconds: Litestream's lag depends on where its first commit
/// lands against its two 1 s tickers (replica and database monitor, started together). A first
/// commit within about 50 ms after a whole second of its start is the one phase where the two
/// line up and a commit waits one interval instead of two (steady-load p95 1.09 s at 2.000 s,
/// 1.99-2.03 s at eight offsets from 2.05 to 2.95 s on 2026-12-02); memsync does not care
/// (0.99-1.01 s at all nine).
pub const DEFAULT_WRITER_START: Duration = Duration::from_millis(2500);

/// One replicator's figures: (key, value) in print order.
type Figures = Vec<(String, f64)>;

/// The replicator's CPU figure of the cpu phase.
const CPU_PCT: &str = "cpu.replicator_cpu_pct_of_one_core";

fn write_config(dir: &Path, sync: &Option<String>) -> PathBuf {
    let mut s = format!(
        "dbs:\n  - path: {}\n    replica:\n      type: file\n      path: {}\n",
        dir.join("db.sqlite").display(),
        dir.join("replica").display()
    );
    if let Some(i) = sync {
        let _ = writeln!(s, "      sync-interval: {i}");
    }
    let p = dir.join("replicator.yml");
    std::fs::write(&p, s).expect("writing bench config");
    p
}

fn fresh(dir: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)
}

fn pct(xs: &mut [f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    let k = ((p / 100.0) * (xs.len() - 1) as f64).round() as usize;
    xs[k.min(xs.len() - 1)]
}

fn count_rows(path: &Path) -> i64 {
    rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row("SELECT coalesce(max(id),0) FROM memories", [], |r| r.get(0)))
        .unwrap_or(-1)
}

/// Restores in a loop until the restored database has `rows` rows; seconds waited.
fn wait_caught_up(
    r: &Replicator,
    cfg: &Path,
    db: &Path,
    out: &Path,
    rows: i64,
    limit: Duration,
) -> f64 {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if r.restore(cfg, out, db) && count_rows(out) == rows {
            return t0.elapsed().as_secs_f64();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f64::NAN
}

/// A fresh directory with an empty memory database and its config, and the replicator running
/// on it (given `writer_start` to settle).
fn start_on_new_db(
    o: &BenchOptions,
    r: &Replicator,
    dir: &Path,
) -> Result<(PathBuf, PathBuf, rusqlite::Connection, proc::Running), String> {
    fresh(dir).map_err(|e| e.to_string())?;
    let cfg = write_config(dir, &o.sync_interval);
    let db = dir.join("db.sqlite");
    let app = workload::open(&db).map_err(|e| e.to_string())?;
    workload::create(&app).map_err(|e| e.to_string())?;
    let run = r
        .start(&cfg, &dir.join("replicator.log"))
        .map_err(|e| e.to_string())?;
    std::thread::sleep(o.writer_start);
    Ok((cfg, db, app, run))
}

fn phase_cpu(o: &BenchOptions, r: &Replicator, f: &mut Figures) -> Result<(), String> {
    let dir = o.workdir.join(&r.name).join("cpu");
    let (cfg, db, app, run) = start_on_new_db(o, r, &dir)?;
    let c0 = run.cpu_seconds();
    let t0 = Instant::now();
    let mut rng = workload::Rng::new(1);
    let mut stalls = Vec::new();
    let mut busy = 0;
    let mut last_ckpt = Instant::now();
    let n = workload::write_steady(&app, o.rate, o.duration, &mut rng, |_, _| {
        if last_ckpt.elapsed() >= Duration::from_secs(5) {
            let t = Instant::now();
            let b: i64 = app
                .query_row("PRAGMA wal_checkpoint(RESTART)", [], |row| row.get(0))
                .unwrap_or(1);
            stalls.push(t.elapsed().as_secs_f64());
            busy += b;
            last_ckpt = Instant::now();
        }
    })
    .map_err(|e| e.to_string())?;
    let wall = t0.elapsed().as_secs_f64();
    let c1 = run.cpu_seconds();
    let rows = count_rows(&db);
    let catch = wait_caught_up(
        r,
        &cfg,
        &db,
        &dir.join("probe.db"),
        rows,
        Duration::from_secs(60),
    );
    let hwm = run.peak_rss_kb();
    let c2 = run.cpu_seconds();
    std::thread::sleep(Duration::from_secs(3));
    let idle = (run.cpu_seconds() - c2) / 3.0 * 100.0;
    let stop = run.stop();
    let (rep_bytes, rep_files) = dir_size(&dir.join("replica"));
    let db_bytes = std::fs::metadata(&db).map_or(0, |m| m.len())
        + std::fs::metadata(crate::sqlite::sidecar(&db, "-wal")).map_or(0, |m| m.len());
    let ok = r.restore(&cfg, &dir.join("final.db"), &db);
    let verified = ok && workload::verify(&dir.join("final.db")) == Ok(rows);
    f.push(("cpu.commits".into(), n as f64));
    f.push((CPU_PCT.into(), (c1 - c0) / wall * 100.0));
    f.push(("cpu.idle_cpu_pct".into(), idle));
    f.push(("cpu.peak_rss_mb".into(), hwm as f64 / 1024.0));
    f.push(("cpu.catch_up_s".into(), catch));
    f.push(("cpu.db_plus_wal_mb".into(), db_bytes as f64 / 1e6));
    f.push(("cpu.replica_mb".into(), rep_bytes as f64 / 1e6));
    f.push(("cpu.replica_files".into(), rep_files as f64));
    f.push(("cpu.shutdown_s".into(), stop));
    f.push((
        "cpu.app_restart_checkpoint_max_s".into(),
        pct(&mut stalls, 100.0),
    ));
    f.push((
        "cpu.app_restart_checkpoint_p50_s".into(),
        pct(&mut stalls, 50.0),
    ));
    f.push(("cpu.app_restart_checkpoints_busy".into(), busy as f64));
    f.push((
        "cpu.final_restore_verified".into(),
        if verified { 1.0 } else { 0.0 },
    ));
    Ok(())
}

fn phase_restore(
    o: &BenchOptions,
    r: &Replicator,
    f: &mut Figures,
    filled: &Path,
) -> Result<(), String> {
    let dir = o.workdir.join(&r.name).join("restore");
    fresh(&dir).map_err(|e| e.to_string())?;
    let cfg = write_config(&dir, &o.sync_interval);
    let db = dir.join("db.sqlite");
    std::fs::copy(filled, &db).map_err(|e| e.to_string())?;
    let rows = count_rows(&db);
    let run = r
        .start(&cfg, &dir.join("replicator.log"))
        .map_err(|e| e.to_string())?;
    let c0 = run.cpu_seconds();
    let sync_s = wait_caught_up(
        r,
        &cfg,
        &db,
        &dir.join("probe.db"),
        rows,
        Duration::from_secs(300),
    );
    let cpu = run.cpu_seconds() - c0;
    let hwm = run.peak_rss_kb();
    run.stop();
    let (rep_bytes, _) = dir_size(&dir.join("replica"));
    let out = dir.join("restored.db");
    let mut times = Vec::new();
    for _ in 0..o.runs.max(1) {
        let t = Instant::now();
        if !r.restore(&cfg, &out, &db) {
            return Err(format!("{}: restore failed", r.name));
        }
        times.push(t.elapsed().as_secs_f64());
    }
    let med = pct(&mut times, 50.0);
    let size = std::fs::metadata(&out).map_or(0, |m| m.len()) as f64;
    let verified = workload::verify(&out) == Ok(rows);
    f.push(("restore.db_mb".into(), size / 1e6));
    f.push(("restore.initial_sync_s".into(), sync_s));
    f.push(("restore.initial_sync_cpu_s".into(), cpu));
    f.push((
        "restore.initial_sync_peak_rss_mb".into(),
        hwm as f64 / 1024.0,
    ));
    f.push(("restore.replica_mb".into(), rep_bytes as f64 / 1e6));
    f.push(("restore.restore_median_s".into(), med));
    f.push(("restore.restore_mb_per_s".into(), size / 1048576.0 / med));
    f.push(("restore.verified".into(), if verified { 1.0 } else { 0.0 }));
    Ok(())
}

/// Every phase `--phases` accepts.
const PHASES: &[&str] = &["cpu", "lag", "sparse", "restore", "history", "s3", "scale"];

/// Runs the benchmark and prints `key=value` lines per replicator, then a comparison.
pub fn run(o: &BenchOptions) -> Result<String, String> {
    // A misspelt phase is refused before minutes of the others have run.
    if let Some(other) = o.phases.iter().find(|p| !PHASES.contains(&p.as_str())) {
        return Err(format!("unknown phase {other:?} ({})", PHASES.join(", ")));
    }
    if o.phases.iter().any(|p| p == "s3") {
        seaweed::require_weed()?;
    }
    std::fs::create_dir_all(&o.workdir).map_err(|e| format!("{}: {e}", o.workdir.display()))?;
    let mut all: Vec<(String, Figures)> = Vec::new();
    let filled = o.workdir.join("filled.sqlite");
    if o.phases.iter().any(|p| p == "restore" || p == "s3") && !filled.exists() {
        eprintln!("bench: filling a {} MB database", o.size_mb);
        let c = workload::open(&filled).map_err(|e| e.to_string())?;
        workload::create(&c).map_err(|e| e.to_string())?;
        workload::fill(&c, o.size_mb, &mut workload::Rng::new(3)).map_err(|e| e.to_string())?;
    }
    // Phase by phase, each replicator in turn, so drift in the machine's state (page cache,
    // writeback, other load) falls on both sides alike.
    let mut figs: Vec<Figures> = vec![Figures::new(); o.replicators.len()];
    // The scale phase's own side-by-side tables (one per database count).
    let mut tables = String::new();
    for phase in &o.phases {
        if phase == "scale" {
            tables.push_str(&scale::phase_scale(o)?);
            continue;
        }
        if phase == "history" {
            eprintln!("bench: history (every replicator at once)");
            for (f, h) in figs.iter_mut().zip(history::phase_history(o)?) {
                f.extend(h);
            }
            continue;
        }
        if phase == "s3" {
            for (f, h) in figs.iter_mut().zip(s3::phase_s3(o, &filled)?) {
                f.extend(h);
            }
            continue;
        }
        let runs = if phase == "cpu" { o.cpu_runs.max(1) } else { 1 };
        let mut cpu_pcts: Vec<Vec<f64>> = vec![Vec::new(); o.replicators.len()];
        for run in 0..runs {
            for (i, r) in o.replicators.iter().enumerate() {
                eprintln!("bench: {} {phase}", r.name);
                // Dirty pages of what ran before (the 200 MB fill, the other replicator's run)
                // are written back first, not while this run is measured.
                rustix::fs::sync();
                let mut f = Figures::new();
                match phase.as_str() {
                    "cpu" => phase_cpu(o, r, &mut f)?,
                    "lag" | "sparse" => phase_lag(o, r, &mut f, phase)?,
                    _ => phase_restore(o, r, &mut f, &filled)?,
                }
                if let Some(&(_, v)) = f.iter().find(|(k, _)| k == CPU_PCT) {
                    cpu_pcts[i].push(v);
                }
                if run + 1 == runs {
                    figs[i].extend(f);
                }
            }
        }
        if runs > 1 {
            // The median of the runs, and their spread.
            for (f, pcts) in figs.iter_mut().zip(&mut cpu_pcts) {
                if let Some(e) = f.iter_mut().find(|(k, _)| k == CPU_PCT) {
                    e.1 = pct(pcts, 50.0);
                }
                f.push((format!("{CPU_PCT}_min"), pct(pcts, 0.0)));
                f.push((format!("{CPU_PCT}_max"), pct(pcts, 100.0)));
            }
        }
    }
    for (r, f) in o.replicators.iter().zip(figs) {
        for (k, v) in &f {
            println!("{}.{k}={v:.3}", r.name);
        }
        all.push((r.name.clone(), f));
    }
    Ok(report(&all) + &tables)
}

fn report(all: &[(String, Figures)]) -> String {
    let mut s = String::new();
    let Some((first, base)) = all.first().filter(|(_, f)| !f.is_empty()) else {
        return s;
    };
    let _ = write!(s, "\n{:<42}", "figure");
    for (name, _) in all {
        let _ = write!(s, " {name:>12}");
    }
    if all.len() > 1 {
        let _ = write!(
            s,
            " {:>10}",
            format!("{first}/{}", all[1].0)
                .chars()
                .take(10)
                .collect::<String>()
        );
    }
    s.push('\n');
    for (k, v) in base {
        let _ = write!(s, "{k:<42} {v:>12.3}");
        for (_, f) in &all[1..] {
            let other = f.iter().find(|(kk, _)| kk == k).map_or(f64::NAN, |x| x.1);
            let _ = write!(s, " {other:>12.3}");
            let _ = write!(s, " {:>10.2}", v / other);
        }
        s.push('\n');
    }
    s
}
