//! A memory's record apart from its content: the fields conflicts are about. Pure data, used by
//! the conflict rules below the staging and local databases that store it.

use serde_json::{Map, Value};

/// The type of a memory stored without one (a staged row may leave it unset until the push
/// knows whether the server already holds the memory with a type of its own).
pub const DEFAULT_TYPE: &str = "note";

/// mcp-memory-service (12.4, `services/memory_service.py`) keeps at most this many tags per
/// memory and this many characters per tag, and drops or cuts the rest without a word.
pub const SERVER_MAX_TAGS: usize = 100;
pub const SERVER_MAX_TAG_CHARS: usize = 100;

/// Why the server would not keep `tags` (normalised) as they are: it would silently drop
/// tags past the hundredth and cut long ones, and the next pull would meet a memory that is
/// not what was stored. `None`: it keeps them.
pub fn tags_beyond_server_limits(tags: &[String]) -> Option<String> {
    if tags.len() > SERVER_MAX_TAGS {
        return Some(format!(
            "{} tags; the server keeps at most {SERVER_MAX_TAGS} and would drop the rest",
            tags.len()
        ));
    }
    let long = tags
        .iter()
        .find(|t| t.chars().count() > SERVER_MAX_TAG_CHARS)?;
    let start: String = long.chars().take(30).collect();
    Some(format!(
        "tag {start:?}... has {} characters; the server keeps at most {SERVER_MAX_TAG_CHARS} and would cut it",
        long.chars().count()
    ))
}

/// A memory's fields other than its content: what conflicts are about.
#[derive(Debug, Clone, PartialEq)]
pub struct Fields {
    pub tags: Vec<String>,
    pub memory_type: Option<String>,
    pub metadata: Map<String, Value>,
}

impl Fields {
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "tags": self.tags, "memory_type": self.memory_type, "metadata": self.metadata
        })
        .to_string()
    }

    pub fn from_json(s: &str) -> Fields {
        let v: Value = serde_json::from_str(s).unwrap_or(Value::Null);
        Fields {
            tags: v
                .get("tags")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            memory_type: v
                .get("memory_type")
                .and_then(Value::as_str)
                .map(str::to_owned),
            metadata: v
                .get("metadata")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        }
    }
}
