//! Prometheus text exposition (format 0.0.4): every family once, `# HELP` and `# TYPE` first,
//! then all its samples; label values escaped.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::health;
use super::reading::{DbReading, Source, read};
use crate::stats::{DbStats, SYNC_DURATION_BUCKETS, SyncStats};

/// Writes one family: `samples` are (labels without braces, value).
fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = (String, String)>,
) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// A label value as the exposition format quotes it.
pub fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn secs(ms: i64) -> String {
    format!("{}", ms as f64 / 1000.0)
}

/// Monitor counters: name, type, help, reader.
type DbMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&DbStats) -> u64,
);

const DB_METRICS: [DbMetric; 14] = [
    (
        "memsync_position",
        "gauge",
        "Newest position captured into the spool.",
        |s| s.position.load(Ordering::Relaxed),
    ),
    (
        "memsync_transactions_total",
        "counter",
        "SQLite transactions captured.",
        |s| s.transactions.load(Ordering::Relaxed),
    ),
    (
        "memsync_spooled_bytes_total",
        "counter",
        "Bytes written to the spool.",
        |s| s.spooled_bytes.load(Ordering::Relaxed),
    ),
    (
        "memsync_spool_bytes",
        "gauge",
        "Bytes the spool holds now.",
        |s| s.spool_bytes.load(Ordering::Relaxed),
    ),
    (
        "memsync_snapshots_total",
        "counter",
        "Snapshots taken.",
        |s| s.snapshots.load(Ordering::Relaxed),
    ),
    (
        "memsync_resyncs_total",
        "counter",
        "Resynchronisations after a discontinuity.",
        |s| s.resyncs.load(Ordering::Relaxed),
    ),
    (
        "memsync_checkpoints_total",
        "counter",
        "Checkpoints run by memsync.",
        |s| s.checkpoints.load(Ordering::Relaxed),
    ),
    (
        "memsync_checkpoint_microseconds_total",
        "counter",
        "Time spent in memsync's checkpoints.",
        |s| s.checkpoint_us.load(Ordering::Relaxed),
    ),
    (
        "memsync_write_lock_microseconds_total",
        "counter",
        "Time memsync held the write lock.",
        |s| s.write_lock_us.load(Ordering::Relaxed),
    ),
    (
        "memsync_yields_total",
        "counter",
        "Times memsync stepped aside for an application's checkpoint.",
        |s| s.yields.load(Ordering::Relaxed),
    ),
    (
        "memsync_yield_microseconds_total",
        "counter",
        "Time memsync waited for those checkpoints.",
        |s| s.yield_us.load(Ordering::Relaxed),
    ),
    (
        "memsync_idle_releases_total",
        "counter",
        "Times memsync closed its connections while the database was idle.",
        |s| s.idle_releases.load(Ordering::Relaxed),
    ),
    (
        "memsync_compactions_total",
        "counter",
        "Files written by spool compaction.",
        |s| s.compactions.load(Ordering::Relaxed),
    ),
    (
        "memsync_errors_total",
        "counter",
        "Failed monitor passes (retried).",
        |s| s.errors.load(Ordering::Relaxed),
    ),
];

/// Replica figures: name, type, help, reader.
type RepMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&DbReading, &super::reading::ReplicaReading, i64) -> String,
);

const REPLICA_METRICS: [RepMetric; 7] = [
    (
        "memsync_replica_position",
        "gauge",
        "Highest position the replica confirmed.",
        |_, r, _| r.position.to_string(),
    ),
    (
        "memsync_replica_lag_seconds",
        "gauge",
        "Time since the oldest transaction the replica lacks was captured; 0 when it holds the newest position.",
        |_, r, _| secs(r.lag_ms),
    ),
    (
        "memsync_replica_uploads_total",
        "counter",
        "Files (objects) uploaded to the replica.",
        |_, r, _| r.uploads.to_string(),
    ),
    (
        "memsync_replica_uploaded_bytes_total",
        "counter",
        "Bytes uploaded to the replica.",
        |_, r, _| r.bytes.to_string(),
    ),
    (
        "memsync_replica_errors_total",
        "counter",
        "Failed shipping attempts (retried).",
        |_, r, _| r.errors.to_string(),
    ),
    (
        "memsync_replica_last_success_timestamp_seconds",
        "gauge",
        "When the replica last answered a whole shipping pass or its listing at start (Unix time; 0 = never).",
        |_, r, _| secs(r.last_ok_ms),
    ),
    (
        "memsync_replica_healthy",
        "gauge",
        "1 when the replica keeps up within max(3 x sync-interval, 10s), as /health judges.",
        |d, r, now| {
            let one = DbReading {
                replicas: vec![r.clone()],
                ..d.clone()
            };
            u8::from(health::judge(&[one], None, now).is_empty()).to_string()
        },
    ),
];

/// Renders every family for `sources` (and the memory sync, when present) at `now_ms`.
pub fn render(sources: &[Source], sync: Option<&SyncStats>, now_ms: i64) -> String {
    let mut out = String::new();
    for (name, kind, help, get) in DB_METRICS {
        let samples = sources
            .iter()
            .map(|s| (format!("db=\"{}\"", esc(&s.db)), get(&s.stats).to_string()));
        family(&mut out, name, kind, help, samples);
    }
    let readings = read(sources, now_ms);
    for (name, kind, help, get) in REPLICA_METRICS {
        let samples = readings.iter().flat_map(|d| {
            d.replicas.iter().map(move |r| {
                (
                    format!("db=\"{}\",replica=\"{}\"", esc(&d.db), esc(&r.name)),
                    get(d, r, now_ms),
                )
            })
        });
        family(&mut out, name, kind, help, samples);
    }
    if let Some(s) = sync {
        render_sync(&mut out, s);
    }
    out
}

fn render_sync(out: &mut String, s: &SyncStats) {
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
    let one = |v: String| [(String::new(), v)];
    let counters: [(&str, &str, &AtomicU64); 6] = [
        (
            "memsync_sync_rounds_total",
            "Memory sync rounds ended.",
            &s.rounds,
        ),
        (
            "memsync_sync_failures_total",
            "Memory sync rounds that did not finish.",
            &s.failures,
        ),
        (
            "memsync_sync_pulled_total",
            "Memories the sync rounds pulled (added, changed or removed locally).",
            &s.pulled,
        ),
        (
            "memsync_sync_pushed_total",
            "Staged rows the server confirmed.",
            &s.pushed,
        ),
        (
            "memsync_sync_conflicts_total",
            "Conflicts the sync rounds found.",
            &s.conflicts,
        ),
        (
            "memsync_sync_failed_rows_total",
            "Rows the server refused.",
            &s.failed_rows,
        ),
    ];
    for (name, help, a) in counters {
        family(out, name, "counter", help, one(get(a)));
    }
    let ms = |a: &AtomicU64| secs(a.load(Ordering::Relaxed) as i64);
    family(
        out,
        "memsync_sync_last_round_seconds",
        "gauge",
        "Duration of the last memory sync round.",
        one(ms(&s.last_duration_ms)),
    );
    family(
        out,
        "memsync_sync_last_success_timestamp_seconds",
        "gauge",
        "When the last memory sync round that finished ended (Unix time; 0 = none yet).",
        one(secs(s.last_success_ms.load(Ordering::Relaxed))),
    );
    family(
        out,
        "memsync_sync_last_round_timestamp_seconds",
        "gauge",
        "When the last memory sync round ended (Unix time; 0 = none yet).",
        one(secs(s.last_round_ms.load(Ordering::Relaxed))),
    );
    family(
        out,
        "memsync_sync_last_round_ok",
        "gauge",
        "1 when the last memory sync round finished (or none ran yet).",
        one(u8::from(s.failing().is_none()).to_string()),
    );
    let mut cumulative = 0;
    let mut samples = Vec::new();
    for (i, b) in s.duration_buckets.iter().enumerate() {
        cumulative += b.load(Ordering::Relaxed);
        let le = SYNC_DURATION_BUCKETS
            .get(i)
            .map_or_else(|| "+Inf".to_owned(), |v| v.to_string());
        samples.push((format!("le=\"{le}\""), cumulative.to_string()));
    }
    let name = "memsync_sync_round_duration_seconds";
    // A histogram's samples are `_bucket`, `_sum` and `_count` of its family's name.
    family(out, name, "histogram", "Memory sync round durations.", []);
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}_bucket{{{labels}}} {v}");
    }
    let _ = writeln!(out, "{name}_sum {}", ms(&s.duration_sum_ms));
    let _ = writeln!(out, "{name}_count {cumulative}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::reading::ReplicaSource;
    use crate::stats::{ShipStats, SyncRound};
    use std::sync::Arc;
    use std::time::Duration;

    fn source(db: &str, replicas: &[&str]) -> Source {
        Source {
            db: db.into(),
            meta_dir: "/m".into(),
            stats: Arc::default(),
            replicas: replicas
                .iter()
                .map(|n| ReplicaSource {
                    name: (*n).into(),
                    sync_interval: Duration::from_secs(1),
                    stats: Arc::new(ShipStats::default()),
                })
                .collect(),
        }
    }

    /// Names of the families in order, and the name every sample line starts with.
    fn families(text: &str) -> (Vec<String>, Vec<String>) {
        let mut fams = Vec::new();
        let mut samples = Vec::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                fams.push(rest.split(' ').next().unwrap().to_owned());
            } else if !l.starts_with('#') {
                samples.push(l.split(['{', ' ']).next().unwrap().to_owned());
            }
        }
        (fams, samples)
    }

    #[test]
    fn every_family_appears_once_with_its_samples_together() {
        let a = source("/srv/a.db", &["s3", "file"]);
        let b = source("/srv/b.db", &["file"]);
        let sync = SyncStats::default();
        sync.record_round(&SyncRound::default());
        let text = render(&[a, b], Some(&sync), 1_000);
        let (fams, samples) = families(&text);
        let mut unique = fams.clone();
        unique.dedup();
        assert_eq!(unique.len(), fams.len(), "{text}");
        // Samples of one family are contiguous and follow its TYPE line.
        let mut seen = Vec::<String>::new();
        for s in &samples {
            let base = s
                .strip_suffix("_bucket")
                .or(s.strip_suffix("_sum"))
                .or(s.strip_suffix("_count"))
                .filter(|b| fams.iter().any(|f| f == b))
                .unwrap_or(s);
            if seen.last().map(String::as_str) != Some(base) {
                assert!(!seen.iter().any(|x| x == base), "{base} split:\n{text}");
                seen.push(base.to_owned());
            }
        }
        assert_eq!(seen, fams, "{text}");
        assert!(
            text.contains("# HELP memsync_replica_lag_seconds "),
            "{text}"
        );
        assert_eq!(
            text.matches("memsync_replica_lag_seconds{").count(),
            3,
            "{text}"
        );
        assert!(
            text.contains("memsync_sync_round_duration_seconds_bucket{le=\"0.5\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("memsync_sync_round_duration_seconds_bucket{le=\"+Inf\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("memsync_sync_round_duration_seconds_count 1"),
            "{text}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let s = source("/srv/a \"b\"\\c\nd.db", &["r\"1"]);
        s.stats.idle_releases.store(3, Ordering::Relaxed);
        let text = render(&[s], None, 0);
        assert!(
            text.contains("memsync_idle_releases_total{db=\"/srv/a \\\"b\\\"\\\\c\\nd.db\"} 3"),
            "{text}"
        );
        assert!(text.contains(",replica=\"r\\\"1\"} "), "{text}");
        assert!(!text.contains("memsync_sync_"), "{text}");
    }

    #[test]
    fn lag_and_health_of_a_replica_that_fell_behind() {
        let s = source("/d.db", &["r"]);
        s.stats.position.store(8, Ordering::Relaxed);
        let r = &s.replicas[0].stats;
        r.position.store(5, Ordering::Relaxed);
        r.set_behind_since(Some(10_000));
        let text = render(std::slice::from_ref(&s), None, 12_500);
        assert!(
            text.contains("memsync_replica_lag_seconds{db=\"/d.db\",replica=\"r\"} 2.5"),
            "{text}"
        );
        assert!(
            text.contains("memsync_replica_healthy{db=\"/d.db\",replica=\"r\"} 1"),
            "{text}"
        );
        let text = render(&[s], None, 40_000);
        assert!(
            text.contains("memsync_replica_healthy{db=\"/d.db\",replica=\"r\"} 0"),
            "{text}"
        );
    }
}
