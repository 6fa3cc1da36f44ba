//! A memory's record apart from its content: the fields conflicts are about. Pure data, used by
//! the conflict rules below the staging and local databases that store it.

use serde_json::{Map, Value};

/// The type of a memory stored without one (a staged row may leave it unset until the push
/// knows whether the server already holds the memory with a type of its own).
pub const DEFAULT_TYPE: &str = "note";

/// A memory's fields other than its content: what conflicts are about.
#[derive(Debug, Clone, PartialEq)]
pub struct Fields {
    pub tags: Vec<String>,
    pub memory_type: Option<String>,
    pub metadata: Map<String, Value>,
}

impl Fields {
    /// These fields, with `other`'s type when they set none: `store` without `--type` keeps
    /// the type the memory already has.
    pub fn typed_as(mut self, other: Option<&Fields>) -> Fields {
        if self.memory_type.is_none() {
            self.memory_type = other.and_then(|o| o.memory_type.clone());
        }
        self
    }

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
