//! One request from start to log line: the health check, the key, the path's confinement, then
//! the method's handler.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http_body_util::{BodyExt, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::header::{CONTENT_LENGTH, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};

use super::paths::{self, Refusal, ResolveError};
use super::propfind::{self, Depth};
use super::reply::{Body, Received, full, io_error, status, text};
use super::{State, dav, upload};

/// The largest PROPFIND or MKCOL body read (and ignored).
const SMALL_BODY: usize = 64 * 1024;

/// Answers `req` and logs one line at debug.
pub(super) async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resp = route(&state, req).await;
    let bytes = match resp.extensions().get::<Received>() {
        Some(Received(n)) => *n,
        None => resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0),
    };
    tracing::debug!(
        method = %method,
        path = %path,
        status = resp.status().as_u16(),
        bytes,
        ms = started.elapsed().as_millis() as u64,
        "serve: request"
    );
    Ok(resp)
}

async fn route(state: &State, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    if req.uri().path() == "/health" && (method == Method::GET || method == Method::HEAD) {
        let mut r = Response::new(full(if method == Method::GET { "ok" } else { "" }));
        r.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from_static("2"));
        return r;
    }
    if !state.key.allows(req.headers()) {
        let mut r = text(StatusCode::UNAUTHORIZED, "API key required");
        let h = r.headers_mut();
        h.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"memsync\""),
        );
        h.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"memsync\""),
        );
        return r;
    }
    if method == Method::OPTIONS {
        return dav::options();
    }
    let rel = match paths::parse(req.uri().path()) {
        Ok(r) => r,
        Err(Refusal::Malformed(why)) => return text(StatusCode::BAD_REQUEST, why),
        Err(Refusal::Reserved) => {
            return text(StatusCode::FORBIDDEN, "reserved name (uploads in progress)");
        }
    };
    let real = match paths::resolve(&state.root, &rel) {
        Ok(p) => p,
        Err(ResolveError::Escapes) => return escapes(),
        Err(ResolveError::Io(e)) => return io_error(&e, "resolving", &rel.href(false)),
    };
    // A trailing slash names a collection: a file under that name is not found, as on other
    // WebDAV servers (it was served, while PUT refused the same name).
    let collection = req.uri().path().ends_with('/') && !rel.is_root();
    match method.as_str() {
        "GET" | "HEAD" if collection && real.is_file() => {
            text(StatusCode::NOT_FOUND, "not a collection (trailing /)")
        }
        "GET" => dav::get(&real, req.headers(), false).await,
        "HEAD" => dav::get(&real, req.headers(), true).await,
        "PUT" if req.uri().path().ends_with('/') => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "PUT names a collection (trailing /)",
        ),
        "PUT" => upload::put(state, &rel, real, req).await,
        "DELETE" => dav::delete(&rel, real).await,
        "MKCOL" => {
            let has_body = match read_small(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            dav::mkcol(&rel, real, has_body).await
        }
        "PROPFIND" => {
            let depth = req
                .headers()
                .get("depth")
                .map(|v| v.to_str().unwrap_or("?"));
            let Some(depth) = Depth::parse(depth) else {
                return text(StatusCode::BAD_REQUEST, "Depth must be 0, 1 or infinity");
            };
            if let Err(r) = read_small(req).await {
                return r;
            }
            propfind::propfind(state.root.clone(), rel, real, depth).await
        }
        _ => {
            let mut r = status(StatusCode::METHOD_NOT_ALLOWED);
            r.headers_mut()
                .insert(hyper::header::ALLOW, HeaderValue::from_static(dav::METHODS));
            r
        }
    }
}

fn escapes() -> Response<Body> {
    text(
        StatusCode::FORBIDDEN,
        "the path leads out of the served directory",
    )
}

/// Reads a body that is meant to be small and ignored; true if there was one.
async fn read_small(req: Request<Incoming>) -> Result<bool, Response<Body>> {
    let body = req.into_body();
    if body.is_end_stream() {
        return Ok(false);
    }
    match Limited::new(body, SMALL_BODY).collect().await {
        Ok(b) => Ok(!b.to_bytes().is_empty()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        )),
        Err(_) => Err(text(StatusCode::BAD_REQUEST, "request body cut off")),
    }
}
