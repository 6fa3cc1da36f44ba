//! HTTP to the server: one exchange at a time over a single-threaded runtime, with the API key,
//! the timeouts, the retries on transient failures, and transport failures named by meaning.

use std::time::Duration;

use serde_json::Value;

use super::answer::detail_of;
use super::error::RemoteError;
use crate::memory::host::hostname;
use crate::memory::settings::Settings;

/// The connection settings and the blocking HTTP machinery. Sequential calls keep the server's
/// load predictable: memory sync is a short command-line job.
pub(super) struct Transport {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    pub(super) base: String,
    api_key: Option<String>,
    pub(super) hostname: String,
    pub(super) timeout: Duration,
    retries: u32,
}

fn install_crypto() {
    // reqwest is built without a default provider (ring instead of aws-lc: no cmake build).
    // A second install returns Err, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Transport {
    pub(super) fn new(s: &Settings) -> Result<Transport, RemoteError> {
        install_crypto();
        let mut b = reqwest::Client::builder()
            .connect_timeout(s.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("memsync/", env!("CARGO_PKG_VERSION")))
            .no_proxy();
        if let Some(ca) = &s.ca_file {
            let pem = std::fs::read(ca).map_err(|source| RemoteError::CaFileUnreadable {
                path: ca.clone(),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                RemoteError::CaFileInvalid {
                    path: ca.clone(),
                    reason: crate::errtext::chain(&e),
                }
            })?;
            if certs.is_empty() {
                return Err(RemoteError::CaFileInvalid {
                    path: ca.clone(),
                    reason: "no PEM certificate in it".into(),
                });
            }
            b = b.tls_certs_merge(certs);
        }
        if s.insecure {
            b = b.tls_danger_accept_invalid_certs(true);
        }
        let http = b
            .build()
            .map_err(|e| RemoteError::Setup(crate::errtext::chain(&e)))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Setup(e.to_string()))?;
        Ok(Transport {
            rt,
            http,
            base: s.base_url(),
            api_key: s.api_key.clone(),
            hostname: hostname(),
            timeout: s.timeout,
            retries: s.retry_attempts,
        })
    }

    /// The full URL of `path` on this server, for messages.
    pub(super) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// One HTTP exchange: the status and body, or a transport error.
    pub(super) fn send(
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
            .map_err(|e| self.explain(e))
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

    /// A connection an `http://` server dropped without an answer: a TLS server refusing plain
    /// HTTP does that, and so does a broken network. If TLS answers at that address, the
    /// server speaks HTTPS, a setting to fix rather than an outage to wait out; else it stays
    /// transient, with the likely cause named. Asked only after such a failure, with a short
    /// timeout and no certificate check (only whether TLS answers matters).
    fn explain(&self, e: RemoteError) -> RemoteError {
        let RemoteError::Unreachable { url, reason } = e else {
            return e;
        };
        let dropped = reason.contains("closed before message completed")
            || reason.to_ascii_lowercase().contains("reset");
        let Some(rest) = self.base.strip_prefix("http://").filter(|_| dropped) else {
            return RemoteError::Unreachable { url, reason };
        };
        let https = format!("https://{rest}/api/health");
        let answered = self.rt.block_on(async {
            let probe = reqwest::Client::builder()
                .tls_danger_accept_invalid_certs(true)
                .no_proxy()
                .timeout(Duration::from_secs(3))
                .build()?;
            probe.get(&https).send().await
        });
        if answered.is_ok() {
            return RemoteError::Protocol {
                url,
                reason: format!(
                    "the connection was dropped without an answer, and TLS answers at {https}: the server speaks HTTPS; use https:// (REMOTE_MEMORY_PROTOCOL=https)"
                ),
            };
        }
        // TLS does not answer there either: a broken network or a server that went away.
        RemoteError::Unreachable { url, reason }
    }

    /// `send` with the configured retries and exponential backoff on transient failures.
    pub(super) fn send_retrying(
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
                    tracing::debug!("{e}; retrying in {wait:?}");
                    std::thread::sleep(wait);
                    attempt += 1;
                }
                r => return r,
            }
        }
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
    tracing::debug!(
        "{}",
        match outcome {
            Ok(status) => format!("HTTP {method} {shown} {status} {ms} ms"),
            Err(e) => format!("HTTP {method} {shown} failed after {ms} ms: {e}"),
        }
    );
}

fn map_transport(what: &str, e: &reqwest::Error, timeout: Duration) -> RemoteError {
    if e.is_timeout() {
        RemoteError::Timeout {
            url: what.to_owned(),
            after: timeout,
        }
    } else if e.is_connect() || e.is_request() {
        let reason = crate::errtext::chain(e);
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
        if lower.contains("invalidcontenttype") || lower.contains("corrupt message") {
            // rustls read something that is not TLS: the server answered in plain HTTP.
            RemoteError::Protocol {
                url: what.to_owned(),
                reason: format!(
                    "{reason}: the server does not speak TLS at this address; use http:// (REMOTE_MEMORY_PROTOCOL=http)"
                ),
            }
        } else if lower.contains("certificate")
            || lower.contains("tls")
            || lower.contains("handshake")
        {
            RemoteError::Tls {
                url: what.to_owned(),
                reason,
            }
        } else {
            // A dropped connection may be a TLS server refusing plain HTTP (`Transport::explain`).
            // Once connected, the request may have reached the server: "cannot connect" would
            // send the user looking at the address.
            let reason = if e.is_connect() {
                format!("cannot connect: {reason}")
            } else {
                format!("the connection broke off without an answer: {reason}")
            };
            RemoteError::Unreachable {
                url: what.to_owned(),
                reason,
            }
        }
    } else if e.is_body() || e.is_decode() {
        // The answer broke off (reading it is all `is_decode` covers without compression
        // features): the network's failure, worth another attempt (a store sent
        // again is a duplicate the server recognises by its content hash).
        RemoteError::Unreachable {
            url: what.to_owned(),
            reason: format!("the answer broke off: {}", crate::errtext::chain(e)),
        }
    } else {
        RemoteError::Malformed {
            url: what.to_owned(),
            reason: crate::errtext::chain(e),
        }
    }
}
