//! `memsync demo`: the main job on an embedded default, with nothing to install or configure.
//! Creates an mcp-memory-service-shaped database, replicates it to a local file replica while a
//! writer adds memories, then restores the replica and verifies it (integrity, rows, KNN).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::bench::workload;
use crate::replicate::{self, ReplicateOptions};
use crate::restore::{self, IntegrityCheck, RestoreOptions, RestoreOutcome};

/// Runs the demo in `dir` for `seconds` of writes; returns the summary to print.
pub fn run(dir: &Path, seconds: u64) -> Result<String, String> {
    let dir = std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let db = dir.join("memories.db");
    let replica = dir.join("replica");
    let cfg_path = dir.join("litestream.yml");
    std::fs::write(
        &cfg_path,
        format!(
            "# Written by `memsync demo`. Replicate it again with:\n#   memsync replicate -config {}\ndbs:\n  - path: {}\n    replicas:\n      - type: file\n        path: {}\n        sync-interval: 0s\n",
            cfg_path.display(),
            db.display(),
            replica.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let app = workload::open(&db).map_err(|e| e.to_string())?;
    workload::create(&app).map_err(|e| e.to_string())?;
    let config = crate::config::load(&cfg_path, true).map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let repl = {
        let (config, stop) = (config.clone(), stop.clone());
        std::thread::spawn(move || replicate::run(&config, &ReplicateOptions::default(), stop))
    };
    let t0 = Instant::now();
    let mut rng = workload::Rng::new(42);
    let n = workload::write_steady(&app, 50, Duration::from_secs(seconds), &mut rng, |_, _| {})
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let handles = repl
        .join()
        .map_err(|_| "replication thread panicked".to_string())?
        .map_err(|e| e.to_string())?;
    let position = handles
        .first()
        .map_or(0, |h| h.stats.position.load(Ordering::Relaxed));
    let restored = dir.join("restored.db");
    let client =
        crate::replica::ReplicaClient::file("file", &replica, false).map_err(|e| e.to_string())?;
    let rt = crate::runtime().map_err(|e| e.to_string())?;
    let outcome = restore::restore(
        &client,
        rt.handle(),
        &RestoreOptions {
            integrity_check: IntegrityCheck::Full,
            ..RestoreOptions::latest(&restored)
        },
    )
    .map_err(|e| e.to_string())?;
    let RestoreOutcome::Restored { files, bytes, .. } = outcome else {
        return Err("nothing restored".into());
    };
    let rows = workload::verify(&restored)?;
    if rows as u64 != n {
        return Err(format!("restored {rows} memories, wrote {n}"));
    }
    Ok(format!(
        "memsync demo: wrote {n} memories in {:.1}s to {}\n  replicated to {} (position {position:016x}, {files} files, {bytes} bytes)\n  restored to {}: integrity ok, {rows} memories, KNN query answered\n  config: {}",
        t0.elapsed().as_secs_f64(),
        db.display(),
        replica.display(),
        restored.display(),
        cfg_path.display()
    ))
}
