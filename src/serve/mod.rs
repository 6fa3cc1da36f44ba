//! `memsync serve`: the backup server for HTTP replicas. It speaks the WebDAV subset that
//! memsync's HTTP replica client (object_store's HttpStore) and plain WebDAV clients use, over
//! files under one directory: `paths` confines every request to it, `auth` checks the API key,
//! `upload` writes PUTs (temp file, fsync, no-replace move), `dav` and `propfind` answer the
//! other methods, `route` takes one request from start to log line. This file binds, accepts
//! connections (TLS if asked) and stops cleanly on SIGINT/SIGTERM.

mod auth;
mod dav;
mod meta;
mod paths;
mod propfind;
mod reply;
mod route;
mod tls;
mod upload;

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How `memsync serve` runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The directory served (created if missing).
    pub dir: PathBuf,
    /// Where to listen, `HOST:PORT` (port 0 picks a free one).
    pub addr: String,
    /// The key every request but `/health` must carry.
    pub api_key: Option<String>,
    /// Certificate chain and private key (PEM), for HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The largest upload accepted, in bytes.
    pub max_body: u64,
}

/// Why the server could not start or stopped.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The served directory could not be created or read.
    #[error("served directory {}: {source}", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The address is taken, not local, or does not parse.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The certificate or the key could not be used.
    #[error("TLS {}: {why}", path.display())]
    Tls {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The runtime or the signal handlers could not start.
    #[error("starting the server: {0}")]
    Start(#[source] io::Error),
}

/// What every request handler reads.
struct State {
    /// The served directory, canonical (symlinks resolved).
    root: PathBuf,
    key: auth::ApiKey,
    max_body: u64,
}

/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 256;
/// How long a client may take to send a request's headers, or to finish a TLS handshake.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request head (request line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// How long requests in progress may take to finish after a stop signal.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves until SIGINT or SIGTERM.
pub fn run(opts: ServeOptions) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .thread_name("memsync-serve")
        .enable_all()
        .build()
        .map_err(ServeError::Start)?;
    rt.block_on(serve(opts))
}

async fn serve(opts: ServeOptions) -> Result<(), ServeError> {
    // The directory is made last: a start that fails (a bad address, a missing certificate)
    // leaves nothing behind.
    let acceptor = match &opts.tls {
        Some((cert, key)) => Some(tls::acceptor(cert, key)?),
        None => None,
    };
    let mut stop = crate::signals::StopSignals::new(false).map_err(ServeError::Start)?;
    let listener = TcpListener::bind(&opts.addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: opts.addr.clone(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: opts.addr.clone(),
        source,
    })?;
    let root = open_dir(&opts.dir)?;
    if opts.api_key.is_none() && !local.ip().is_loopback() {
        tracing::warn!(
            addr = %local,
            "serve: no API key: anyone who reaches this address can read and write the backups (set -api-key or MEMSYNC_SERVE_API_KEY)"
        );
    }
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let mut out = io::stdout().lock();
    let _ = writeln!(
        out,
        "serve: listening on {scheme}://{local} (dir {})",
        root.display()
    );
    let _ = out.flush();
    drop(out);
    let state = Arc::new(State {
        root,
        key: auth::ApiKey::new(opts.api_key.as_deref()),
        max_body: opts.max_body,
    });
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = stop.recv() => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = stop.recv() => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tracing::warn!(error = %e, "serve: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let state = state.clone();
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                None => connection(tcp, state, watcher).await,
                Some(a) => match tokio::time::timeout(HEADER_TIMEOUT, a.accept(tcp)).await {
                    Ok(Ok(tls)) => connection(tls, state, watcher).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "serve: TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "serve: TLS handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    tracing::info!("serve: stopping");
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("serve: requests still running after {DRAIN:?}; stopping anyway");
    }
    Ok(())
}

/// Serves the HTTP/1.1 requests of one connection.
async fn connection<I>(io: I, state: Arc<State>, watcher: Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| route::handle(state.clone(), req));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_header_size(MAX_HEAD)
        .serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "serve: connection ended");
    }
}

/// Creates the served directory if needed, removes uploads a previous run left half-done, and
/// returns its canonical path.
fn open_dir(dir: &Path) -> Result<PathBuf, ServeError> {
    let err = |source| ServeError::Dir {
        path: dir.to_path_buf(),
        source,
    };
    if std::fs::metadata(dir).is_ok_and(|m| !m.is_dir()) {
        return Err(err(io::Error::other(
            "not a directory (-dir names the folder to serve)",
        )));
    }
    std::fs::create_dir_all(dir).map_err(err)?;
    let root = crate::platform::canonicalize(dir).map_err(err)?;
    if !root.is_dir() {
        return Err(err(io::Error::from(io::ErrorKind::NotADirectory)));
    }
    let removed = remove_stale_uploads(&root);
    if removed > 0 {
        tracing::info!(
            removed,
            "serve: removed uploads a previous run left unfinished"
        );
    }
    Ok(root)
}

/// Deletes `.tmp-*` files under `dir` (not following symlinks); how many.
fn remove_stale_uploads(dir: &Path) -> usize {
    let mut n = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                todo.push(e.path());
            } else if ft.is_file()
                && e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(paths::TEMP_PREFIX))
                && std::fs::remove_file(e.path()).is_ok()
            {
                n += 1;
            }
        }
    }
    n
}
