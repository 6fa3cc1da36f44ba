//! PUT: an upload lands in a hidden temp file next to its destination, is fsynced, then moved
//! to its name only if that name is free (an object is never replaced), and the directory is
//! fsynced. An upload that is cut off, too large or refused leaves nothing behind: the temp file
//! is removed on every path out, including a dropped request.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, ETAG, HeaderValue, IF_MATCH, IF_NONE_MATCH};
use hyper::{Request, Response, StatusCode};
use tokio::io::AsyncWriteExt;

use super::paths::{RelPath, TEMP_PREFIX};
use super::reply::{Body, Received, io_error, not_allowed, status, text};
use super::{State, meta};

/// How long an upload may send nothing before it is dropped.
const IDLE: Duration = Duration::from_secs(60);

/// Handles a PUT of `rel`, which resolved to `dest`.
pub(super) async fn put(
    state: &State,
    rel: &RelPath,
    dest: PathBuf,
    req: Request<Incoming>,
) -> Response<Body> {
    if rel.is_root() {
        return not_allowed("PROPFIND, MKCOL, OPTIONS", "PUT on the served directory");
    }
    let h = req.headers();
    // Objects are never replaced: a request that may only replace one cannot succeed.
    if h.contains_key(IF_MATCH) {
        return text(
            StatusCode::PRECONDITION_FAILED,
            "objects are never replaced (If-Match)",
        );
    }
    if let Some(v) = h.get(IF_NONE_MATCH)
        && v.as_bytes() != b"*"
    {
        return text(
            StatusCode::PRECONDITION_FAILED,
            "only If-None-Match: * is supported",
        );
    }
    let declared = match h
        .get(CONTENT_LENGTH)
        .map(|v| v.to_str().ok()?.parse::<u64>().ok())
    {
        None => None,
        Some(Some(n)) => Some(n),
        Some(None) => return text(StatusCode::BAD_REQUEST, "bad Content-Length"),
    };
    if declared.is_some_and(|n| n > state.max_body) {
        return too_large(state.max_body);
    }
    match std::fs::symlink_metadata(&dest) {
        Ok(m) if m.is_dir() => return not_allowed("PROPFIND, MKCOL, DELETE", "a collection"),
        Ok(_) => return text(StatusCode::PRECONDITION_FAILED, "already exists"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return io_error(&e, "PUT", &dest.to_string_lossy()),
    }
    let root = state.root.clone();
    let d = dest.clone();
    let made = tokio::task::spawn_blocking(move || prepare(&root, &d)).await;
    let (tmp, file) = match made {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return io_error(&e, "PUT", &dest.to_string_lossy()),
        Err(e) => return join_failed(e),
    };
    let mut file = tokio::fs::File::from_std(file);
    let mut body = req.into_body();
    let mut got: u64 = 0;
    loop {
        let frame = match tokio::time::timeout(IDLE, body.frame()).await {
            Err(_) => return text(StatusCode::REQUEST_TIMEOUT, "upload stalled"),
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                // The client went away or sent less than it announced: nothing is kept.
                tracing::debug!(path = %dest.display(), error = %e, "serve: upload cut off");
                return text(StatusCode::BAD_REQUEST, "upload cut off");
            }
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        got += data.len() as u64;
        if got > state.max_body {
            return too_large(state.max_body);
        }
        if let Err(e) = file.write_all(&data).await {
            return io_error(&e, "PUT", &dest.to_string_lossy());
        }
    }
    if let Err(e) = finish(&mut file).await {
        return io_error(&e, "PUT", &dest.to_string_lossy());
    }
    drop(file);
    let d = dest.clone();
    let done = tokio::task::spawn_blocking(move || commit(tmp, &d)).await;
    match done {
        Ok(Ok(m)) => {
            let mut r = status(StatusCode::CREATED);
            if let Ok(v) = HeaderValue::from_str(&meta::etag(&m)) {
                r.headers_mut().insert(ETAG, v);
            }
            r.extensions_mut().insert(Received(got));
            r
        }
        Ok(Err(e)) => io_error(&e, "PUT", &dest.to_string_lossy()),
        Err(e) => join_failed(e),
    }
}

async fn finish(file: &mut tokio::fs::File) -> io::Result<()> {
    file.flush().await?;
    file.sync_all().await
}

fn too_large(max: u64) -> Response<Body> {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("body larger than {max} bytes"),
    )
}

fn join_failed(e: tokio::task::JoinError) -> Response<Body> {
    tracing::warn!(error = %e, "serve: a file task failed");
    text(StatusCode::INTERNAL_SERVER_ERROR, "storage error")
}

/// A temp file that is removed unless [`commit`] moved it to its name, with the directories
/// made for it (those that are still empty: another upload may have used them meanwhile).
pub(super) struct TempFile {
    path: PathBuf,
    made: Vec<PathBuf>,
    committed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let _ = std::fs::remove_file(&self.path);
        for d in self.made.iter().rev() {
            if std::fs::remove_dir(d).is_err() {
                break;
            }
        }
    }
}

/// Creates the destination's missing directories (each made durable in its parent) and the
/// temp file beside it.
fn prepare(root: &Path, dest: &Path) -> io::Result<(TempFile, std::fs::File)> {
    let parent = dest
        .parent()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut guard = TempFile {
        path: PathBuf::new(),
        made: Vec::new(),
        committed: false,
    };
    make_dirs(root, parent, &mut guard.made)?;
    for _ in 0..16 {
        guard.path = parent.join(format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&guard.path)
        {
            Ok(f) => return Ok((guard, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            // The guard removes the directories made (and no file: this one is not ours).
            Err(e) => {
                guard.path = PathBuf::new();
                return Err(e);
            }
        }
    }
    guard.path = PathBuf::new();
    Err(io::Error::from(io::ErrorKind::AlreadyExists))
}

/// `mkdir -p` of `dir`, which lies under `root` (resolved, so no symlink is created or crossed
/// below the deepest existing ancestor); the directories created are pushed to `made`, parents
/// first.
fn make_dirs(root: &Path, dir: &Path, made: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = dir;
    while cur != root && !cur.exists() {
        missing.push(cur);
        cur = cur
            .parent()
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    }
    for d in missing.into_iter().rev() {
        match std::fs::create_dir(d) {
            Ok(()) => {
                made.push(d.to_path_buf());
                crate::fsutil::sync_dir(d)?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Moves the temp file to `dest` unless that is taken (`AlreadyExists`), fsyncs the directory,
/// and returns the new object's metadata.
fn commit(mut tmp: TempFile, dest: &Path) -> io::Result<std::fs::Metadata> {
    crate::fsutil::rename_noreplace(&tmp.path, dest)?;
    tmp.committed = true;
    crate::fsutil::sync_dir(dest)?;
    std::fs::metadata(dest)
}
