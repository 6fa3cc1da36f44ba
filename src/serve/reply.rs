//! Building responses: the body type every handler returns, short text answers, and what a
//! file-system error means to the client.

use std::io;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

/// A response body: a short buffer, or a file streamed in chunks.
pub(super) type Body = UnsyncBoxBody<Bytes, io::Error>;

/// The bytes of an upload the server took (for the request log line).
#[derive(Debug, Clone, Copy)]
pub(super) struct Received(pub(super) u64);

/// A body of `bytes`.
pub(super) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub(super) fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A response with `status` and a one-line text body saying why.
pub(super) fn text(status: StatusCode, why: &str) -> Response<Body> {
    let body = format!("{why}\n");
    let mut r = Response::new(full(body.clone()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    r
}

/// A response with `status` and no body.
pub(super) fn status(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

/// A refusal of a method on what the path names (405 must say what is allowed).
pub(super) fn not_allowed(allow: &'static str, why: &str) -> Response<Body> {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, why);
    r.headers_mut()
        .insert(hyper::header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// What a file-system error means to the client; unexpected ones are logged.
pub(super) fn io_error(e: &io::Error, what: &str, path: &str) -> Response<Body> {
    use io::ErrorKind as K;
    let (code, why) = match e.kind() {
        K::NotFound => (StatusCode::NOT_FOUND, "not found"),
        K::NotADirectory => (StatusCode::CONFLICT, "a parent is a file, not a collection"),
        K::IsADirectory => (StatusCode::METHOD_NOT_ALLOWED, "a collection"),
        K::AlreadyExists => (StatusCode::PRECONDITION_FAILED, "already exists"),
        K::DirectoryNotEmpty => (StatusCode::CONFLICT, "collection not empty"),
        K::PermissionDenied => (StatusCode::FORBIDDEN, "permission denied"),
        K::StorageFull | K::QuotaExceeded => {
            tracing::warn!(path, error = %e, "serve: {what}: disk full");
            (StatusCode::INSUFFICIENT_STORAGE, "disk full")
        }
        _ => {
            tracing::warn!(path, error = %e, "serve: {what} failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "storage error")
        }
    };
    text(code, why)
}

/// [`io_error`] for a request that reads or removes: a path through a file names nothing (404).
pub(super) fn read_error(e: &io::Error, what: &str, path: &str) -> Response<Body> {
    if e.kind() == io::ErrorKind::NotADirectory {
        return text(StatusCode::NOT_FOUND, "not found");
    }
    io_error(e, what, path)
}
