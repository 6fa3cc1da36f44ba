//! The WebDAV methods besides PUT and PROPFIND: GET and HEAD (with ranges), DELETE, MKCOL,
//! OPTIONS.

use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::{
    ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, HeaderValue, LAST_MODIFIED,
    RANGE,
};
use hyper::{HeaderMap, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::meta::{self, Part};
use super::paths::RelPath;
use super::reply::{Body, empty, io_error, not_allowed, read_error, status, text};

/// What the server allows (OPTIONS and 405 answers).
pub(super) const METHODS: &str = "OPTIONS, GET, HEAD, PUT, DELETE, PROPFIND, MKCOL";

/// Chunks a file is streamed in.
const CHUNK: usize = 256 * 1024;

/// GET (or HEAD, without the body) of the file at `path`.
pub(super) async fn get(path: &Path, headers: &HeaderMap, head: bool) -> Response<Body> {
    let shown = path.to_string_lossy();
    let file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) => return read_error(&e, "GET", &shown),
    };
    let m = match file.metadata().await {
        Ok(m) => m,
        Err(e) => return read_error(&e, "GET", &shown),
    };
    if m.is_dir() {
        return not_allowed(
            "OPTIONS, PROPFIND, MKCOL, DELETE",
            "a collection: list it with PROPFIND",
        );
    }
    let len = m.len();
    let range = headers.get(RANGE).and_then(|v| v.to_str().ok());
    let (code, start, count) = match meta::part(range, len) {
        Part::Whole => (StatusCode::OK, 0, len),
        Part::Range { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        Part::Unsatisfiable => {
            let mut r = text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let body = if head || count == 0 {
        empty()
    } else {
        match stream_file(file, start, count).await {
            Ok(b) => b,
            Err(e) => return read_error(&e, "GET", &shown),
        }
    };
    let mut r = Response::new(body);
    *r.status_mut() = code;
    let h = r.headers_mut();
    h.insert(CONTENT_LENGTH, HeaderValue::from(count));
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&meta::etag(&m)) {
        h.insert(ETAG, v);
    }
    if let Ok(t) = m.modified()
        && let Ok(v) = HeaderValue::from_str(&meta::http_date(t))
    {
        h.insert(LAST_MODIFIED, v);
    }
    if code == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", start + count - 1))
    {
        h.insert(CONTENT_RANGE, v);
    }
    r
}

/// `count` bytes of `file` from `start`, read as the client takes them. A file that shrinks
/// meanwhile ends the body early, which the client sees as a short answer.
async fn stream_file(mut file: tokio::fs::File, start: u64, count: u64) -> io::Result<Body> {
    if start > 0 {
        file.seek(SeekFrom::Start(start)).await?;
    }
    let s = stream::try_unfold((file, count), |(mut file, left)| async move {
        if left == 0 {
            return Ok(None);
        }
        let want = left.min(CHUNK as u64) as usize;
        let mut buf = vec![0u8; want];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        buf.truncate(n);
        Ok(Some((
            Frame::data(Bytes::from(buf)),
            (file, left - n as u64),
        )))
    });
    Ok(StreamBody::new(s).boxed_unsync())
}

/// DELETE of a file, or of an empty collection. The served directory itself stays.
pub(super) async fn delete(rel: &RelPath, path: PathBuf) -> Response<Body> {
    if rel.is_root() {
        return text(
            StatusCode::FORBIDDEN,
            "the served directory cannot be deleted",
        );
    }
    let res = tokio::task::spawn_blocking(move || -> io::Result<()> {
        let m = std::fs::symlink_metadata(&path)?;
        if m.is_dir() {
            std::fs::remove_dir(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
        crate::fsutil::sync_dir(&path)
    })
    .await;
    match res {
        Ok(Ok(())) => status(StatusCode::NO_CONTENT),
        Ok(Err(e)) => read_error(&e, "DELETE", &rel.href(false)),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "storage error"),
    }
}

/// MKCOL: one collection whose parent exists (409 if it does not, as RFC 4918 says; clients
/// then create the parents first).
pub(super) async fn mkcol(rel: &RelPath, path: PathBuf, has_body: bool) -> Response<Body> {
    if has_body {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "MKCOL with a body is not supported",
        );
    }
    if rel.is_root() {
        return not_allowed(METHODS, "the served directory exists");
    }
    let res = tokio::task::spawn_blocking(move || -> io::Result<()> {
        let parent = path.parent().unwrap_or(Path::new("/"));
        if !parent.is_dir() {
            return Err(io::Error::from(io::ErrorKind::NotADirectory));
        }
        std::fs::create_dir(&path)?;
        crate::fsutil::sync_dir(&path)
    })
    .await;
    match res {
        Ok(Ok(())) => status(StatusCode::CREATED),
        Ok(Err(e)) if e.kind() == io::ErrorKind::AlreadyExists => {
            not_allowed(METHODS, "already exists")
        }
        Ok(Err(e)) if e.kind() == io::ErrorKind::NotADirectory => {
            text(StatusCode::CONFLICT, "the parent collection does not exist")
        }
        Ok(Err(e)) => io_error(&e, "MKCOL", &rel.href(true)),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "storage error"),
    }
}

/// OPTIONS: WebDAV class 1, and the methods.
pub(super) fn options() -> Response<Body> {
    let mut r = status(StatusCode::OK);
    let h = r.headers_mut();
    h.insert("DAV", HeaderValue::from_static("1"));
    h.insert(hyper::header::ALLOW, HeaderValue::from_static(METHODS));
    r
}
