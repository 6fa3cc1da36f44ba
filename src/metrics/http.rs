//! The `addr` endpoint's HTTP server: `GET /metrics` and `GET /health`, nothing else (404), no
//! auth. Small on purpose and bounded: a few connections at a time, 16 KiB of request head, a
//! 5 s limit to send it and 30 s per connection, one request per connection.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::Exposed;

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 16;
/// Largest request head (and read buffer) accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Time a client has to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a connection may last in all (a client reading the answer slowly included).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// The answer to one request.
pub fn route(exposed: &Exposed, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let reply = |code: StatusCode, kind: &str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = code;
        if let Ok(v) = kind.parse() {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        r
    };
    let known = matches!(path, "/metrics" | "/health");
    if !known {
        return reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into());
    }
    if method != Method::GET && method != Method::HEAD {
        let mut r = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".into(),
        );
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let now = crate::stats::unix_ms();
    if path == "/metrics" {
        return reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            exposed.metrics(now),
        );
    }
    let (code, body) = exposed.health(now);
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    reply(code, "application/json", body)
}

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, exposed: Arc<Exposed>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of file descriptors, typically: wait instead of spinning.
                tracing::debug!("metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let exposed = exposed.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req: Request<Incoming>| {
                let r = route(&exposed, req.method(), req.uri().path());
                async move { Ok::<_, Infallible>(r) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .keep_alive(false)
                .serve_connection(TokioIo::new(tcp), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!("metrics: connection: {e}"),
                Err(_) => tracing::debug!("metrics: connection took too long; closed"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_answer_and_others_do_not() {
        let e = Exposed::new(Vec::new(), None);
        assert_eq!(route(&e, &Method::GET, "/metrics").status(), StatusCode::OK);
        assert_eq!(route(&e, &Method::GET, "/health").status(), StatusCode::OK);
        assert_eq!(route(&e, &Method::HEAD, "/health").status(), StatusCode::OK);
        assert_eq!(route(&e, &Method::GET, "/").status(), StatusCode::NOT_FOUND);
        assert_eq!(
            route(&e, &Method::GET, "/metrics/x").status(),
            StatusCode::NOT_FOUND
        );
        let post = route(&e, &Method::POST, "/metrics");
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(post.headers()[header::ALLOW], "GET, HEAD");
    }
}
