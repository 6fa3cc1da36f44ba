//! The server's side of the conversation: the JSON it sends and is sent, and its answers (status
//! and body) turned into typed outcomes. Pure functions: no I/O here.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::RemoteError;
use crate::memory::hash::ContentHash;
use crate::memory::record::Fields;

/// A memory as the server describes it (`MemoryResponse`).
#[derive(Debug, Clone, Deserialize)]
pub struct RemoteMemory {
    pub content: String,
    pub content_hash: ContentHash,
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

impl RemoteMemory {
    /// Its tags, type and metadata: what conflicts are about.
    pub fn fields(&self) -> Fields {
        Fields {
            tags: self.tags.clone(),
            memory_type: self.memory_type.clone(),
            metadata: self.metadata.clone(),
        }
    }
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
pub(super) struct HashPage {
    pub(super) hashes: Vec<ContentHash>,
    #[serde(default)]
    pub(super) next_cursor: Option<u64>,
    #[serde(default)]
    pub(super) has_more: bool,
}

/// The server's explanation from an error body: FastAPI's `detail`, or the raw text.
pub(super) fn detail_of(body: &str) -> String {
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
    let s = crate::errtext::without_html(&s, 300);
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut s: String = s.chars().take(300).collect();
    if s.is_empty() {
        s.push_str("(empty body)");
    }
    s
}

/// The body parsed as `T`, or `Malformed` naming the URL and the start of the body.
pub(super) fn parse<T: serde::de::DeserializeOwned>(
    url: &str,
    body: &str,
) -> Result<T, RemoteError> {
    serde_json::from_str(body).map_err(|e| RemoteError::Malformed {
        url: url.to_owned(),
        reason: format!("{e} in {:?}", body.chars().take(120).collect::<String>()),
    })
}

/// An answer outside what the call expects, with the server's explanation.
pub(super) fn rejected(url: &str, status: u16, body: &str) -> RemoteError {
    RemoteError::Rejected {
        url: url.to_owned(),
        status,
        detail: detail_of(body),
    }
}

/// A refusal that only says the server's database was busy for a moment (SQLite's "database
/// is locked" passed on in a 200): a passing failure on its side, tried again later, not a
/// refusal of the memory (the row was marked failed, exit 3).
fn busy(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("database is locked") || m.contains("database is busy")
}

fn busy_error(url: &str, status: u16, message: &str) -> RemoteError {
    RemoteError::Server {
        url: url.to_owned(),
        status,
        detail: format!("{message} (its database was busy; nothing was stored)"),
    }
}

/// The answer to `POST /api/memories`.
pub(super) fn store_outcome(
    url: &str,
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
            let a: Answer = parse(url, text)?;
            if a.success {
                let h = a
                    .content_hash
                    .as_deref()
                    .and_then(ContentHash::parse)
                    .ok_or_else(|| RemoteError::Malformed {
                        url: url.to_owned(),
                        reason: "success without a content_hash".into(),
                    })?;
                Ok(StoreOutcome::Stored(h))
            } else if a.message.contains("exact match") {
                Ok(StoreOutcome::Duplicate)
            } else if busy(&a.message) {
                Err(busy_error(url, status, &a.message))
            } else {
                Ok(StoreOutcome::Refused(a.message))
            }
        }
        409 => Ok(StoreOutcome::DeletedRemotely(detail_of(text))),
        _ => Err(rejected(url, status, text)),
    }
}

/// The answer to `PUT /api/memories/{hash}`.
pub(super) fn update_outcome(
    url: &str,
    status: u16,
    text: &str,
) -> Result<UpdateOutcome, RemoteError> {
    match status {
        200 => {
            let v: Value = parse(url, text)?;
            if v.get("success").and_then(Value::as_bool) == Some(false) {
                let msg = v
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("update refused");
                if busy(msg) {
                    return Err(busy_error(url, status, msg));
                }
                Ok(UpdateOutcome::Refused(msg.to_owned()))
            } else {
                Ok(UpdateOutcome::Updated)
            }
        }
        404 => Ok(UpdateOutcome::NotFound),
        _ => Err(rejected(url, status, text)),
    }
}

/// The answer to `DELETE /api/memories/{hash}`: 200 both when the server deleted the memory
/// and when it had none; its message tells them apart.
pub(super) fn delete_outcome(
    url: &str,
    status: u16,
    text: &str,
) -> Result<DeleteOutcome, RemoteError> {
    match status {
        200 => {
            let v: Value = parse(url, text)?;
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
        _ => Err(rejected(url, status, text)),
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
        assert_eq!(detail_of("<html>bad gateway</html>"), "bad gateway");
        assert_eq!(detail_of(""), "(empty body)");
    }

    #[test]
    fn store_answers_become_outcomes() {
        let h = ContentHash::of("x");
        let url = "POST http://x/api/memories";
        let stored = format!(r#"{{"success":true,"content_hash":"{h}"}}"#);
        assert_eq!(
            store_outcome(url, 200, &stored).unwrap(),
            StoreOutcome::Stored(h)
        );
        assert_eq!(
            store_outcome(
                url,
                200,
                r#"{"success":false,"message":"Duplicate: exact match"}"#
            )
            .unwrap(),
            StoreOutcome::Duplicate
        );
        assert_eq!(
            store_outcome(url, 200, r#"{"success":false,"message":"too similar"}"#).unwrap(),
            StoreOutcome::Refused("too similar".into())
        );
        assert_eq!(
            store_outcome(url, 409, r#"{"detail":"deleted"}"#).unwrap(),
            StoreOutcome::DeletedRemotely("deleted".into())
        );
        assert!(matches!(
            store_outcome(url, 200, r#"{"success":true}"#),
            Err(RemoteError::Malformed { .. })
        ));
        let locked = store_outcome(
            url,
            200,
            r#"{"success":false,"message":"Failed to store: database is locked"}"#,
        )
        .unwrap_err();
        assert!(locked.is_transient(), "{locked}");
        assert!(matches!(
            store_outcome(url, 422, r#"{"detail":"bad"}"#),
            Err(RemoteError::Rejected { status: 422, .. })
        ));
    }

    #[test]
    fn update_and_delete_answers_become_outcomes() {
        let url = "http://x/api/memories/h";
        assert_eq!(
            update_outcome(url, 200, r#"{"success":true}"#).unwrap(),
            UpdateOutcome::Updated
        );
        assert_eq!(
            update_outcome(url, 200, r#"{"success":false}"#).unwrap(),
            UpdateOutcome::Refused("update refused".into())
        );
        assert_eq!(
            update_outcome(url, 404, "").unwrap(),
            UpdateOutcome::NotFound
        );
        assert_eq!(
            delete_outcome(url, 200, r#"{"success":true}"#).unwrap(),
            DeleteOutcome::Deleted
        );
        assert_eq!(
            delete_outcome(
                url,
                200,
                r#"{"success":false,"message":"Memory not found"}"#
            )
            .unwrap(),
            DeleteOutcome::NotFound
        );
        assert_eq!(
            delete_outcome(url, 200, r#"{"success":false}"#).unwrap(),
            DeleteOutcome::Refused("delete refused".into())
        );
        assert!(matches!(
            delete_outcome(url, 400, "nope"),
            Err(RemoteError::Rejected { status: 400, .. })
        ));
    }

    #[test]
    fn a_page_with_a_malformed_hash_is_refused_where_it_comes_in() {
        let body = r#"{"memories":[{"content":"c","content_hash":"nothex"}]}"#;
        assert!(matches!(
            parse::<Page>("GET http://x/api/memories", body),
            Err(RemoteError::Malformed { .. })
        ));
    }
}
