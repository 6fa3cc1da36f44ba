//! A client for mcp-memory-service's REST API (the calls memory sync needs), with the server's
//! answers turned into typed outcomes: a duplicate is "already there", a 409 is "deleted on the
//! server", and every failure names the URL and what went wrong. [`transport`] moves the bytes,
//! [`answer`] reads them; this module says which call is which.

use std::time::Duration;

use serde_json::{Map, Value};

use super::hash::ContentHash;
use super::settings::Settings;

mod answer;
mod error;
mod transport;

use answer::HashPage;
pub use answer::{DeleteOutcome, Page, RemoteMemory, StoreOutcome, StoreRequest, UpdateOutcome};
pub use error::RemoteError;
use transport::Transport;

/// The REST client: the calls, over a [`Transport`].
pub struct RemoteClient {
    t: Transport,
    /// Memories listed so far by this pull's pages (for its progress line).
    listed: std::cell::Cell<usize>,
}

impl RemoteClient {
    pub fn new(s: &Settings) -> Result<RemoteClient, RemoteError> {
        Ok(RemoteClient {
            t: Transport::new(s)?,
            listed: std::cell::Cell::new(0),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.t.base
    }

    pub fn hostname(&self) -> &str {
        &self.t.hostname
    }

    /// `GET /api/health` (no auth): is the server there?
    pub fn health(&self, timeout: Duration) -> Result<(), RemoteError> {
        let (status, body) =
            self.t
                .send(reqwest::Method::GET, "/api/health", &[], None, timeout)?;
        if status == 200 {
            Ok(())
        } else if matches!(status, 404 | 405 | 501) {
            // Something answers there, but not mcp-memory-service's API.
            Err(RemoteError::Rejected {
                url: self.t.url("/api/health"),
                status,
                detail: format!(
                    "{}; no mcp-memory-service API answers at this address (check REMOTE_MEMORY_HOST and REMOTE_MEMORY_PORT)",
                    answer::detail_of(&body)
                ),
            })
        } else {
            Err(answer::rejected(&self.t.url("/api/health"), status, &body))
        }
    }

    /// The server's version (`/api/sync/capabilities`, v12; `/api/health/detailed` before).
    pub fn version(&self, timeout: Duration) -> Result<String, RemoteError> {
        for path in ["/api/sync/capabilities", "/api/health/detailed"] {
            let (status, body) = self
                .t
                .send(reqwest::Method::GET, path, &[], None, timeout)?;
            if status == 200 {
                let v: Value = answer::parse(&self.t.url(path), &body)?;
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
        let body = serde_json::to_value(req)?;
        let path = "/api/memories";
        let (status, text) = self
            .t
            .send(reqwest::Method::POST, path, &[], Some(&body), timeout)?;
        answer::store_outcome(&self.t.url(path), status, &text)
    }

    /// `store` with retries on transient failures (for push).
    pub fn store_retrying(&self, req: &StoreRequest<'_>) -> Result<StoreOutcome, RemoteError> {
        let body = serde_json::to_value(req)?;
        let path = "/api/memories";
        let (status, text) = self
            .t
            .send_retrying(reqwest::Method::POST, path, &[], Some(&body))?;
        answer::store_outcome(&self.t.url(path), status, &text)
    }

    /// `GET /api/memories/{hash}`; `None` when the server has no live memory with that hash.
    pub fn get(&self, hash: &ContentHash) -> Result<Option<RemoteMemory>, RemoteError> {
        let path = format!("/api/memories/{hash}");
        let (status, text) = self
            .t
            .send_retrying(reqwest::Method::GET, &path, &[], None)?;
        match status {
            200 => Ok(Some(answer::parse(&self.t.url(&path), &text)?)),
            404 => Ok(None),
            _ => Err(answer::rejected(&self.t.url(&path), status, &text)),
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
        let (status, text) = self
            .t
            .send_retrying(reqwest::Method::PUT, &path, &[], Some(&body))?;
        answer::update_outcome(&self.t.url(&path), status, &text)
    }

    /// Every content hash the server holds (`GET /api/memories/hashes`, v12), with its
    /// tombstones (soft-deleted memories) when `include_deleted`. `None` when the server has no
    /// such route (before v12): then it cannot tell what it deleted.
    pub fn hashes(&self, include_deleted: bool) -> Result<Option<Vec<ContentHash>>, RemoteError> {
        let path = "/api/memories/hashes";
        let mut out = Vec::new();
        let mut cursor = 0u64;
        loop {
            let q = [
                ("cursor", cursor.to_string()),
                ("limit", "5000".to_owned()),
                ("include_deleted", include_deleted.to_string()),
            ];
            let (status, text) = self.t.send_retrying(reqwest::Method::GET, path, &q, None)?;
            let page: HashPage = match status {
                200 => answer::parse(&self.t.url(path), &text)?,
                404 | 405 | 422 => return Ok(None),
                _ => return Err(answer::rejected(&self.t.url(path), status, &text)),
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
        let (status, text) = self
            .t
            .send_retrying(reqwest::Method::DELETE, &path, &[], None)?;
        answer::delete_outcome(&self.t.url(&path), status, &text)
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
        let (status, text) = self.t.send_retrying(reqwest::Method::GET, path, &q, None)?;
        let p: Page = match status {
            200 => answer::parse(&self.t.url(path), &text)?,
            _ => return Err(answer::rejected(&self.t.url(path), status, &text)),
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
