//! What the replicator shows of itself (`crate::metrics`): the databases and replicas it runs,
//! with their configured intervals and meta directories, served at `addr` when configured and
//! written to the state files `memsync status` reads.

use crate::config::{Config, DbConfig};
use crate::metrics::{Exposed, Observer, ReplicaSource, Source};

use super::{DbHandle, ReplicateError, ReplicateOptions, meta_dir};

/// Starts the `addr` endpoint (if configured, and not served by the caller: `opts.exposed`)
/// and, unless `-once`, the state files; `handles` are in the order of `config.dbs`.
pub(super) fn start(
    rt: &tokio::runtime::Runtime,
    config: &Config,
    handles: &[&DbHandle],
    opts: &ReplicateOptions,
) -> Result<Observer, ReplicateError> {
    let sources = handles
        .iter()
        .zip(&config.dbs)
        .map(|(h, c)| source(h, c))
        .collect();
    if let Some(shared) = &opts.exposed {
        *shared.sources.write().unwrap_or_else(|p| p.into_inner()) = sources;
        return Ok(crate::metrics::start(rt, None, shared.clone(), !opts.once));
    }
    let listener = match &config.addr {
        Some(addr) => Some(rt.block_on(crate::metrics::bind(addr)).map_err(|source| {
            ReplicateError::Metrics {
                addr: addr.clone(),
                source,
            }
        })?),
        None => None,
    };
    if let Some(addr) = &config.addr {
        tracing::info!("metrics on http://{addr}/metrics, health on /health");
    }
    let exposed = std::sync::Arc::new(Exposed::new(sources, None));
    Ok(crate::metrics::start(rt, listener, exposed, !opts.once))
}

/// What one replicated database shows.
pub(super) fn source(h: &DbHandle, c: &DbConfig) -> Source {
    Source {
        db: h.path.display().to_string(),
        meta_dir: meta_dir(c),
        stats: h.stats.clone(),
        replicas: (h.replicas.iter().zip(&c.replicas))
            .map(|((name, stats), r)| ReplicaSource {
                name: name.clone(),
                sync_interval: r.sync_interval,
                stats: stats.clone(),
            })
            .collect(),
    }
}
