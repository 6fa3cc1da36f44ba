//! The `addr` HTTP endpoint: Prometheus text at `/metrics`, for every replicated database.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::stats::{DbStats, ShipStats};

/// What one database exposes.
#[derive(Clone)]
pub struct Source {
    /// Database path (the `db` label).
    pub db: String,
    /// Monitor counters.
    pub stats: Arc<DbStats>,
    /// Replica name and counters.
    pub replicas: Vec<(String, Arc<ShipStats>)>,
}

/// A metric: name, Prometheus type, and how to read it.
type Metric<T> = (&'static str, &'static str, fn(&T) -> u64);

/// Renders the Prometheus exposition text.
pub fn render(sources: &[Source]) -> String {
    let mut out = String::new();
    let db_metrics: [Metric<DbStats>; 11] = [
        ("memsync_position", "gauge", |s| {
            s.position.load(Ordering::Relaxed)
        }),
        ("memsync_transactions_total", "counter", |s| {
            s.transactions.load(Ordering::Relaxed)
        }),
        ("memsync_spooled_bytes_total", "counter", |s| {
            s.spooled_bytes.load(Ordering::Relaxed)
        }),
        ("memsync_snapshots_total", "counter", |s| {
            s.snapshots.load(Ordering::Relaxed)
        }),
        ("memsync_resyncs_total", "counter", |s| {
            s.resyncs.load(Ordering::Relaxed)
        }),
        ("memsync_checkpoints_total", "counter", |s| {
            s.checkpoints.load(Ordering::Relaxed)
        }),
        ("memsync_write_lock_microseconds_total", "counter", |s| {
            s.write_lock_us.load(Ordering::Relaxed)
        }),
        ("memsync_yields_total", "counter", |s| {
            s.yields.load(Ordering::Relaxed)
        }),
        ("memsync_idle_releases_total", "counter", |s| {
            s.idle_releases.load(Ordering::Relaxed)
        }),
        ("memsync_compactions_total", "counter", |s| {
            s.compactions.load(Ordering::Relaxed)
        }),
        ("memsync_errors_total", "counter", |s| {
            s.errors.load(Ordering::Relaxed)
        }),
    ];
    for (name, kind, get) in db_metrics {
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for s in sources {
            let _ = writeln!(out, "{name}{{db=\"{}\"}} {}", esc(&s.db), get(&s.stats));
        }
    }
    let rep_metrics: [Metric<ShipStats>; 4] = [
        ("memsync_replica_position", "gauge", |s| {
            s.position.load(Ordering::Relaxed)
        }),
        ("memsync_replica_uploads_total", "counter", |s| {
            s.uploads.load(Ordering::Relaxed)
        }),
        ("memsync_replica_uploaded_bytes_total", "counter", |s| {
            s.bytes.load(Ordering::Relaxed)
        }),
        ("memsync_replica_errors_total", "counter", |s| {
            s.errors.load(Ordering::Relaxed)
        }),
    ];
    for (name, kind, get) in rep_metrics {
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for s in sources {
            for (r, st) in &s.replicas {
                let _ = writeln!(
                    out,
                    "{name}{{db=\"{}\",replica=\"{}\"}} {}",
                    esc(&s.db),
                    esc(r),
                    get(st)
                );
            }
        }
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
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

/// Serves `/metrics` until the task is dropped.
pub async fn serve(listener: TcpListener, sources: Vec<Source>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let body = render(&sources);
        tokio::spawn(async move {
            let mut req = [0u8; 1024];
            let n = sock.read(&mut req).await.unwrap_or(0);
            let ok = req[..n].starts_with(b"GET /metrics");
            let (status, body) = if ok {
                ("200 OK", body)
            } else {
                ("404 Not Found", "not found\n".to_owned())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_database_counter_is_rendered_with_its_label() {
        let stats = Arc::new(DbStats::default());
        stats.idle_releases.store(3, Ordering::Relaxed);
        let text = render(&[Source {
            db: "/srv/a \"b\".db".into(),
            stats,
            replicas: Vec::new(),
        }]);
        assert!(
            text.contains("# TYPE memsync_idle_releases_total counter"),
            "{text}"
        );
        assert!(
            text.contains("memsync_idle_releases_total{db=\"/srv/a \\\"b\\\".db\"} 3"),
            "{text}"
        );
    }
}
