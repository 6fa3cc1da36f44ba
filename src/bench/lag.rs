//! The `lag` and `sparse` phases: how long a commit takes to become restorable, probed by
//! restoring in a loop (both tools) and, for memsync, by following its replica segment by segment.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::proc::Replicator;
use super::{BenchOptions, Figures, count_rows, follow, pct, start_on_new_db, workload};

/// The lag phase's writer: steady `rate` commits/s (`lag`), or single commits at random moments
/// (`sparse`: a memory service's real load, where when a sync may run matters more than how
/// often).
pub(super) fn phase_lag(
    o: &BenchOptions,
    r: &Replicator,
    f: &mut Figures,
    phase: &str,
) -> Result<(), String> {
    let dir = o.workdir.join(&r.name).join(phase);
    let (cfg, db, app, run) = start_on_new_db(o, r, &dir)?;
    let commits: Arc<Mutex<Vec<(i64, SystemTime)>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let o_restore_probe = o.restore_probe;
    let prober = {
        let (r, cfg, db, out, done) = (
            r.clone(),
            cfg.clone(),
            db.clone(),
            dir.join("probe.db"),
            done.clone(),
        );
        std::thread::spawn(move || {
            let mut probes = Vec::new();
            while o_restore_probe && !done.load(Ordering::Relaxed) {
                let ts = SystemTime::now();
                let ok = r.restore(&cfg, &out, &db);
                let te = SystemTime::now();
                probes.push((ts, te, if ok { count_rows(&out) } else { -1 }));
            }
            probes
        })
    };
    // memsync's own replica is also followed segment by segment: the precise figure.
    let follower = (r.name == "memsync").then(|| {
        let (replica, out, done) = (dir.join("replica"), dir.join("follow.db"), done.clone());
        std::thread::spawn(move || follow::probe(&replica, &out, &done))
    });
    let mut rng = workload::Rng::new(2);
    let log = commits.clone();
    let each = |id, t| log.lock().expect("lag log").push((id, t));
    if phase == "sparse" {
        workload::write_sparse(&app, o.sparse_gap, o.sparse_duration, &mut rng, each)
    } else {
        workload::write_steady(&app, o.rate, o.lag_duration, &mut rng, each)
    }
    .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_secs(5));
    done.store(true, Ordering::Relaxed);
    let probes = prober.join().map_err(|_| "prober panicked".to_string())?;
    let followed = match follower {
        Some(h) => Some(h.join().map_err(|_| "follower panicked".to_string())?),
        None => None,
    };
    run.stop();
    let commits = commits.lock().expect("lag log").clone();
    // Raw data for inspection: every probe (start, end, rows seen) and every commit (id, time).
    let secs_of = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let mut raw = String::new();
    for p in &probes {
        let _ = writeln!(raw, "probe {:.4} {:.4} {}", secs_of(p.0), secs_of(p.1), p.2);
    }
    for (id, t) in &commits {
        let _ = writeln!(raw, "commit {id} {:.4}", secs_of(*t));
    }
    let _ = std::fs::write(dir.join("lag.raw"), raw);
    let (mut upper, mut lower, mut restore_s) = (Vec::new(), Vec::new(), Vec::new());
    let ok: Vec<_> = probes.iter().filter(|p| p.2 >= 0).collect();
    for p in &ok {
        restore_s.push(p.1.duration_since(p.0).map_or(0.0, |d| d.as_secs_f64()));
    }
    let secs = |a: SystemTime, b: SystemTime| a.duration_since(b).map_or(0.0, |d| d.as_secs_f64());
    for (id, t) in &commits {
        // First successful probe that saw the row, and the probe before it.
        if let Some(i) = ok.iter().position(|p| p.2 >= *id) {
            if i == 0 {
                continue;
            }
            upper.push(secs(ok[i].1, *t));
            lower.push(secs(ok[i - 1].0, *t));
        }
    }
    f.push((format!("{phase}.probes"), ok.len() as f64));
    f.push((format!("{phase}.restore_p50_s"), pct(&mut restore_s, 50.0)));
    f.push((format!("{phase}.upper_p50_s"), pct(&mut upper, 50.0)));
    f.push((format!("{phase}.upper_p95_s"), pct(&mut upper, 95.0)));
    f.push((format!("{phase}.lower_p50_s"), pct(&mut lower, 50.0)));
    f.push((format!("{phase}.lower_p95_s"), pct(&mut lower, 95.0)));
    if let Some(seen) = followed {
        // Commit → the first advance of the followed copy that holds its row.
        let mut lag: Vec<f64> = commits
            .iter()
            .filter_map(|(id, t)| {
                // Rows already there when following began have no measured arrival.
                let i = seen.iter().position(|s| s.1 >= *id).filter(|&i| i > 0)?;
                Some(secs(seen[i].0, *t))
            })
            .collect();
        f.push((format!("{phase}.followed_commits"), lag.len() as f64));
        // Commits the copy never showed (they would bias the percentiles low if ignored).
        let last_seen = seen.last().map_or(0, |s| s.1);
        let missed = commits.iter().filter(|(id, _)| *id > last_seen).count();
        f.push((format!("{phase}.unobserved_commits"), missed as f64));
        f.push((format!("{phase}.follow_p50_s"), pct(&mut lag, 50.0)));
        f.push((format!("{phase}.follow_p95_s"), pct(&mut lag, 95.0)));
        f.push((format!("{phase}.follow_max_s"), pct(&mut lag, 100.0)));
    }
    Ok(())
}
