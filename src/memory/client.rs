//! A client for mcp-memory-service's REST API (the calls memory sync needs), with the server's
//! answers turned into typed outcomes: a duplicate is "already there", a 409 is "deleted on the
//! server", and every failure names the URL and what went wrong.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::hash::ContentHash;
use super::settings::Settings;

/// A memory as the server describes it (`MemoryResponse`).
#[derive(Debug, Clone, Deserialize)]
pub struct RemoteMemory {
    pub content: String,
    pub content_hash: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub memory_type: Option<String>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub created_at: Option<f64>,
    #[serde(default)]
    pub updated_at: Option<f64>,
}

/// What `POST /api/memories` is asked to store.
#[derive(Debug, Clone, Serialize)]
pub struct StoreRequest<'a> {
    pub content: &'a str,
    pub tags: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_type: Option<&'a str>,
    pub metadata: &'a Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_hostname: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub restore_deleted: bool,
}

/// The server's verdict on a store.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreOutcome {
    /// Stored under this hash.
    Stored(ContentHash),
    /// The same content (by hash) is already there.
    Duplicate,
    /// The content was deleted on the server, which refuses to revive it without
    /// `restore_deleted` (v12 with the event log).
    DeletedRemotely(String),
    /// Refused for another reason the server gave (e.g. semantically similar content).
    Refused(String),
}

/// The result of `PUT /api/memories/{hash}`.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateOutcome {
    Updated,
    NotFound,
    /// HTTP 200 with `success: false`: the server could not apply it (kept, with the reason).
    Refused(String),
}

/// The result of `DELETE /api/memories/{hash}`: both mean the server holds no live memory with
/// that hash any more.
#[derive(Debug, Clone, PartialEq)]
pub enum DeleteOutcome {
    Deleted,
    /// Nothing to delete (already deleted, or never there).
    NotFound,
    /// HTTP 200 with `success: false` for another reason than "not found".
    Refused(String),
}

/// One page of `GET /api/memories`.
#[derive(Debug, Deserialize)]
pub struct Page {
    pub memories: Vec<RemoteMemory>,
    #[serde(default)]
    pub has_more: bool,
    #[serde(default)]
    pub total: Option<u64>,
}

/// One page of `GET /api/memories/hashes` (v12).
#[derive(Debug, Deserialize)]
struct HashPage {
    hashes: Vec<String>,
    #[serde(default)]
    next_cursor: Option<u64>,
    #[serde(default)]
    has_more: bool,
}

/// A failed call, by meaning.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{url}: cannot connect: {reason}")]
    Unreachable { url: String, reason: String },
    #[error(
        "{url}: TLS failed: {reason} (trust the server with --ca-file / REMOTE_MEMORY_CA_FILE, or --insecure for a self-signed test server)"
    )]
    Tls { url: String, reason: String },
    #[error("{url}: no answer within {}s", after.as_secs_f64())]
    Timeout { url: String, after: Duration },
    #[error(
        "{url}: the server refused the API key (HTTP {status}); set REMOTE_MEMORY_API_KEY (or MCP_API_KEY) to the server's MCP_API_KEY"
    )]
    Unauthorized { url: String, status: u16 },
    #[error("{url}: the server rejected the request (HTTP {status}): {detail}")]
    Rejected {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{url}: server error (HTTP {status}): {detail}")]
    Server {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{url}: unexpected answer: {reason}")]
    Malformed { url: String, reason: String },
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
}

impl RemoteError {
    /// Worth another attempt: the network, a timeout or the server's own failure.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RemoteError::Unreachable { .. }
                | RemoteError::Timeout { .. }
                | RemoteError::Server { .. }
        )
    }
}

/// The REST client. Blocking methods over an internal single-threaded runtime: memory sync is
/// a short command-line job, and sequential calls keep the server's load predictable.
pub struct RemoteClient {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
    api_key: Option<String>,
    hostname: String,
    timeout: Duration,
    retries: u32,
    /// Memories listed so far by this pull's pages (for its progress line).
    listed: std::cell::Cell<usize>,
}

fn install_crypto() {
    // reqwest is built without a default provider (ring instead of aws-lc: no cmake build).
    // A second install returns Err, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The machine's name, as `hostname` prints it.
pub fn hostname() -> String {
    if let Ok(s) = rustix::system::uname().nodename().to_str()
        && !s.is_empty()
    {
        return s.to_owned();
    }
    std::env::var("HOSTNAME").unwrap_or_else(|_| "unknown".into())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// The server's explanation from an error body: FastAPI's `detail`, or the raw text.
fn detail_of(body: &str) -> String {
    let d = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        v.get("detail")
            .cloned()
            .or_else(|| v.get("message").cloned())
    });
    let s = match d {
        Some(Value::String(s)) => s,
        Some(v) => v.to_string(),
        None => body.trim().to_owned(),
    };
    // One line, whatever the server sent (a proxy's HTML error page, say).
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut s: String = s.chars().take(300).collect();
    if s.is_empty() {
        s.push_str("(empty body)");
    }
    s
}

impl RemoteClient {
    pub fn new(s: &Settings) -> Result<RemoteClient, RemoteError> {
        install_crypto();
        let mut b = reqwest::Client::builder()
            .connect_timeout(s.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("memsync/", env!("CARGO_PKG_VERSION")))
            .no_proxy();
        if let Some(ca) = &s.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| RemoteError::Setup(format!("CA file {}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                RemoteError::Setup(format!("CA file {}: {}", ca.display(), error_chain(&e)))
            })?;
            if certs.is_empty() {
                return Err(RemoteError::Setup(format!(
                    "CA file {}: no PEM certificate in it",
                    ca.display()
                )));
            }
            b = b.tls_certs_merge(certs);
        }
        if s.insecure {
            b = b.tls_danger_accept_invalid_certs(true);
        }
        let http = b.build().map_err(|e| RemoteError::Setup(error_chain(&e)))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Setup(e.to_string()))?;
        Ok(RemoteClient {
            rt,
            http,
            base: s.base_url(),
            api_key: s.api_key.clone(),
            hostname: hostname(),
            timeout: s.timeout,
            retries: s.retry_attempts,
            listed: std::cell::Cell::new(0),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// One HTTP exchange: the status and body, or a transport error.
    fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<(u16, String), RemoteError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .timeout(timeout)
            .header("X-Client-Hostname", &self.hostname);
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(k) = &self.api_key {
            req = req
                .header("Authorization", format!("Bearer {k}"))
                .header("X-API-Key", k);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let what = format!("{method} {url}");
        let t0 = std::time::Instant::now();
        self.rt
            .block_on(async {
                let resp = req
                    .send()
                    .await
                    .map_err(|e| map_transport(&what, &e, timeout))?;
                let status = resp.status().as_u16();
                let text = resp
                    .text()
                    .await
                    .map_err(|e| map_transport(&what, &e, timeout))?;
                Ok((status, text))
            })
            .inspect(|(status, _)| debug_exchange(&method, path, query, Ok(*status), t0))
            .inspect_err(|e| debug_exchange(&method, path, query, Err(e), t0))
            .and_then(|(status, text)| match status {
                401 | 403 => Err(RemoteError::Unauthorized { url: what, status }),
                500..=599 => Err(RemoteError::Server {
                    url: what,
                    status,
                    detail: detail_of(&text),
                }),
                _ => Ok((status, text)),
            })
    }

    /// `send` with the configured retries and exponential backoff on transient failures.
    fn send_retrying(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<(u16, String), RemoteError> {
        let mut attempt = 0;
        loop {
            match self.send(method.clone(), path, query, body, self.timeout) {
                Err(e) if e.is_transient() && attempt < self.retries => {
                    let wait = Duration::from_millis(250 << attempt.min(5));
                    crate::log::debug(&format!("{e}; retrying in {wait:?}"));
                    std::thread::sleep(wait);
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    fn json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &str,
    ) -> Result<T, RemoteError> {
        serde_json::from_str(body).map_err(|e| RemoteError::Malformed {
            url: format!("{}{}", self.base, path),
            reason: format!("{e} in {:?}", body.chars().take(120).collect::<String>()),
        })
    }

    fn rejected(&self, path: &str, status: u16, body: &str) -> RemoteError {
        RemoteError::Rejected {
            url: format!("{}{}", self.base, path),
            status,
            detail: detail_of(body),
        }
    }

    /// `GET /api/health` (no auth): is the server there?
    pub fn health(&self, timeout: Duration) -> Result<(), RemoteError> {
        let (status, body) = self.send(reqwest::Method::GET, "/api/health", &[], None, timeout)?;
        if status == 200 {
            Ok(())
        } else {
            Err(self.rejected("/api/health", status, &body))
        }
    }

    /// The server's version (`/api/sync/capabilities`, v12; `/api/health/detailed` before).
    pub fn version(&self, timeout: Duration) -> Result<String, RemoteError> {
        for path in ["/api/sync/capabilities", "/api/health/detailed"] {
            let (status, body) = self.send(reqwest::Method::GET, path, &[], None, timeout)?;
            if status == 200 {
                let v: Value = self.json(path, &body)?;
                if let Some(s) = v.get("version").and_then(Value::as_str) {
                    return Ok(s.to_owned());
                }
            }
        }
        Ok("unknown".into())
    }

    /// Stores a memory. `timeout` bounds the whole call (the offline threshold for `store`);
    /// no retries here, the caller decides.
    pub fn store(
        &self,
        req: &StoreRequest<'_>,
        timeout: Duration,
    ) -> Result<StoreOutcome, RemoteError> {
        let body = serde_json::to_value(req).map_err(|e| RemoteError::Setup(e.to_string()))?;
        let path = "/api/memories";
        let (status, text) = self.send(reqwest::Method::POST, path, &[], Some(&body), timeout)?;
        self.store_outcome(path, status, &text)
    }

    /// `store` with retries on transient failures (for push).
    pub fn store_retrying(&self, req: &StoreRequest<'_>) -> Result<StoreOutcome, RemoteError> {
        let body = serde_json::to_value(req).map_err(|e| RemoteError::Setup(e.to_string()))?;
        let path = "/api/memories";
        let (status, text) = self.send_retrying(reqwest::Method::POST, path, &[], Some(&body))?;
        self.store_outcome(path, status, &text)
    }

    fn store_outcome(
        &self,
        path: &str,
        status: u16,
        text: &str,
    ) -> Result<StoreOutcome, RemoteError> {
        #[derive(Deserialize)]
        struct Answer {
            success: bool,
            #[serde(default)]
            message: String,
            #[serde(default)]
            content_hash: Option<String>,
        }
        match status {
            200 | 201 => {
                let a: Answer = self.json(path, text)?;
                if a.success {
                    let h = a
                        .content_hash
                        .as_deref()
                        .and_then(ContentHash::parse)
                        .ok_or_else(|| RemoteError::Malformed {
                            url: format!("{}{}", self.base, path),
                            reason: "success without a content_hash".into(),
                        })?;
                    Ok(StoreOutcome::Stored(h))
                } else if a.message.contains("exact match") {
                    Ok(StoreOutcome::Duplicate)
                } else {
                    Ok(StoreOutcome::Refused(a.message))
                }
            }
            409 => Ok(StoreOutcome::DeletedRemotely(detail_of(text))),
            _ => Err(self.rejected(path, status, text)),
        }
    }

    /// `GET /api/memories/{hash}`; `None` when the server has no live memory with that hash.
    pub fn get(&self, hash: &ContentHash) -> Result<Option<RemoteMemory>, RemoteError> {
        let path = format!("/api/memories/{hash}");
        let (status, text) = self.send_retrying(reqwest::Method::GET, &path, &[], None)?;
        match status {
            200 => Ok(Some(self.json(&path, &text)?)),
            404 => Ok(None),
            _ => Err(self.rejected(&path, status, &text)),
        }
    }

    /// `PUT /api/memories/{hash}`: replaces tags, type and metadata (never the content).
    pub fn update(
        &self,
        hash: &ContentHash,
        tags: &[String],
        memory_type: Option<&str>,
        metadata: &Map<String, Value>,
    ) -> Result<UpdateOutcome, RemoteError> {
        let path = format!("/api/memories/{hash}");
        let mut body = serde_json::json!({ "tags": tags, "metadata": metadata });
        if let Some(t) = memory_type {
            body["memory_type"] = Value::String(t.to_owned());
        }
        let (status, text) = self.send_retrying(reqwest::Method::PUT, &path, &[], Some(&body))?;
        match status {
            200 => {
                let v: Value = self.json(&path, &text)?;
                if v.get("success").and_then(Value::as_bool) == Some(false) {
                    let msg = v
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("update refused");
                    Ok(UpdateOutcome::Refused(msg.to_owned()))
                } else {
                    Ok(UpdateOutcome::Updated)
                }
            }
            404 => Ok(UpdateOutcome::NotFound),
            _ => Err(self.rejected(&path, status, &text)),
        }
    }

    /// Every content hash the server holds (`GET /api/memories/hashes`, v12), with its
    /// tombstones (soft-deleted memories) when `include_deleted`. `None` when the server has no
    /// such route (before v12): then it cannot tell what it deleted.
    pub fn hashes(&self, include_deleted: bool) -> Result<Option<Vec<String>>, RemoteError> {
        let path = "/api/memories/hashes";
        let mut out = Vec::new();
        let mut cursor = 0u64;
        loop {
            let q = [
                ("cursor", cursor.to_string()),
                ("limit", "5000".to_owned()),
                ("include_deleted", include_deleted.to_string()),
            ];
            let (status, text) = self.send_retrying(reqwest::Method::GET, path, &q, None)?;
            let page: HashPage = match status {
                200 => self.json(path, &text)?,
                404 | 405 | 422 => return Ok(None),
                _ => return Err(self.rejected(path, status, &text)),
            };
            out.extend(page.hashes);
            match page.next_cursor {
                Some(c) if page.has_more && c > cursor => cursor = c,
                _ => return Ok(Some(out)),
            }
        }
    }

    /// `DELETE /api/memories/{hash}` (a soft delete on the server). The server answers 200
    /// both when it deleted the memory and when it had none; its message tells them apart.
    pub fn delete(&self, hash: &ContentHash) -> Result<DeleteOutcome, RemoteError> {
        let path = format!("/api/memories/{hash}");
        let (status, text) = self.send_retrying(reqwest::Method::DELETE, &path, &[], None)?;
        match status {
            200 => {
                let v: Value = self.json(&path, &text)?;
                let msg = v.get("message").and_then(Value::as_str).unwrap_or("");
                if v.get("success").and_then(Value::as_bool) != Some(false) {
                    Ok(DeleteOutcome::Deleted)
                } else if msg.to_ascii_lowercase().contains("not found") {
                    Ok(DeleteOutcome::NotFound)
                } else {
                    Ok(DeleteOutcome::Refused(if msg.is_empty() {
                        "delete refused".to_owned()
                    } else {
                        msg.to_owned()
                    }))
                }
            }
            404 => Ok(DeleteOutcome::NotFound),
            _ => Err(self.rejected(&path, status, &text)),
        }
    }

    /// One page (1-based) of live memories, newest first, optionally only those with any of `tags`.
    pub fn list(&self, page: u32, page_size: u32, tags: Option<&str>) -> Result<Page, RemoteError> {
        let path = "/api/memories";
        let mut q = vec![
            ("page", page.to_string()),
            ("page_size", page_size.to_string()),
        ];
        if let Some(t) = tags {
            q.push(("tag", t.to_owned()));
            q.push(("tag_match", "any".to_owned()));
        }
        let (status, text) = self.send_retrying(reqwest::Method::GET, path, &q, None)?;
        let p: Page = match status {
            200 => self.json(path, &text)?,
            _ => return Err(self.rejected(path, status, &text)),
        };
        let listed = if page <= 1 { 0 } else { self.listed.get() } + p.memories.len();
        self.listed.set(listed);
        let total = p
            .total
            .map_or(listed, |t| usize::try_from(t).unwrap_or(usize::MAX));
        super::progress::show("pull", listed, total);
        Ok(p)
    }
}

/// `SYNC_DEBUG`: one line per HTTP exchange, with its status (or failure) and time.
fn debug_exchange(
    method: &reqwest::Method,
    path: &str,
    query: &[(&str, String)],
    outcome: Result<u16, &RemoteError>,
    t0: std::time::Instant,
) {
    let ms = t0.elapsed().as_millis();
    let mut shown = path.to_owned();
    for (i, (k, v)) in query.iter().enumerate() {
        shown.push_str(&format!("{}{k}={v}", if i == 0 { '?' } else { '&' }));
    }
    crate::log::debug(&match outcome {
        Ok(status) => format!("HTTP {method} {shown} {status} {ms} ms"),
        Err(e) => format!("HTTP {method} {shown} failed after {ms} ms: {e}"),
    });
}

fn map_transport(what: &str, e: &reqwest::Error, timeout: Duration) -> RemoteError {
    if e.is_timeout() {
        RemoteError::Timeout {
            url: what.to_owned(),
            after: timeout,
        }
    } else if e.is_connect() || e.is_request() {
        let reason = error_chain(e);
        let reason = match reason.split_once("): ") {
            Some((head, rest)) if head.starts_with("error sending request for url") => {
                rest.to_owned()
            }
            _ => reason,
        };
        let lower = reason.to_ascii_lowercase();
        let reason = if reason.contains("CaUsedAsEndEntity") {
            format!(
                "{reason}: the server presents a CA certificate as its own (typical of `openssl req -x509`); serve a certificate signed by that CA"
            )
        } else {
            reason
        };
        if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
            RemoteError::Tls {
                url: what.to_owned(),
                reason,
            }
        } else {
            RemoteError::Unreachable {
                url: what.to_owned(),
                reason,
            }
        }
    } else {
        RemoteError::Malformed {
            url: what.to_owned(),
            reason: error_chain(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_come_from_fastapi_bodies() {
        assert_eq!(
            detail_of(r#"{"detail":"Memory not found"}"#),
            "Memory not found"
        );
        assert_eq!(
            detail_of(r#"{"detail":{"error":"invalid_token"}}"#),
            r#"{"error":"invalid_token"}"#
        );
        assert_eq!(
            detail_of("<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
        assert_eq!(detail_of(""), "(empty body)");
    }
}
