//! What a conflict is, and the three ways to settle one. Pure functions over [`Fields`].
//!
//! A *conflict* is the same memory (same content hash) with different tags, type or metadata
//! on the two sides, or a memory changed locally that the server deleted. Comparisons see the
//! memory as the server will: tags normalised as the server does, and metadata keys the server
//! maintains by itself (access counters, hostname) ignored.

use serde_json::{Map, Value};

use super::staging::Fields;

/// Metadata keys the server writes on its own (search hits, hostname tagging); they never make a
/// conflict.
const SERVER_KEYS: &[&str] = &[
    "access_count",
    "last_accessed_at",
    "access_queries",
    "hostname",
    "timestamp",
    "tags",
    "type",
];

/// The server's tag normalisation (MemoryService): trimmed, lowercased, commas become `-`,
/// duplicates and empties dropped, order kept.
pub fn normalize_tags(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for t in tags {
        let t = super::hash::python_lower(super::hash::python_strip(t)).replace(',', "-");
        if !t.is_empty() && !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

fn comparable_tags(tags: &[String]) -> Vec<String> {
    let mut t = normalize_tags(tags);
    t.retain(|t| t != "untagged");
    t.sort();
    t
}

fn comparable_meta(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(k, _)| !SERVER_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Whether the two sides disagree on anything a user set.
pub fn differs(local: &Fields, remote: &Fields) -> bool {
    let types_differ = match (&local.memory_type, &remote.memory_type) {
        (Some(a), Some(b)) => !a.eq_ignore_ascii_case(b),
        _ => false,
    };
    types_differ
        || comparable_tags(&local.tags) != comparable_tags(&remote.tags)
        || comparable_meta(&local.metadata) != comparable_meta(&remote.metadata)
}

/// The `merge` policy: union of tags (local order first), metadata merged key by key with the
/// local value winning on a shared key, the local type unless it is unset.
pub fn merge(local: &Fields, remote: &Fields) -> Fields {
    let mut tags = local.tags.clone();
    for t in &remote.tags {
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    let mut tags = normalize_tags(&tags);
    if tags.len() > 1 {
        tags.retain(|t| t != "untagged");
    }
    // Every key a side set is kept (hostname and timestamp too); only the server's access
    // counters are left to the server.
    let volatile = |k: &str| matches!(k, "access_count" | "last_accessed_at" | "access_queries");
    let mut metadata: Map<String, Value> = remote
        .metadata
        .iter()
        .filter(|(k, _)| !volatile(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in local
        .metadata
        .iter()
        .filter(|(k, _)| !volatile(k))
        .map(|(k, v)| (k.clone(), v.clone()))
    {
        metadata.insert(k, v);
    }
    Fields {
        tags,
        memory_type: local
            .memory_type
            .clone()
            .or_else(|| remote.memory_type.clone()),
        metadata,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(tags: &[&str], ty: Option<&str>, meta: Value) -> Fields {
        Fields {
            tags: tags.iter().map(|s| s.to_string()).collect(),
            memory_type: ty.map(str::to_owned),
            metadata: meta.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn server_normalisation_is_not_a_conflict() {
        let local = f(&["Proj:A", "b,c"], Some("note"), json!({"k": 1}));
        let remote = f(
            &["proj:a", "b-c"],
            Some("note"),
            json!({"k": 1, "access_count": 3, "hostname": "h"}),
        );
        assert!(!differs(&local, &remote));
        assert!(!differs(
            &f(&[], None, json!({})),
            &f(&["untagged"], Some("observation"), json!({}))
        ));
    }

    #[test]
    fn different_tags_type_or_metadata_conflict() {
        let base = f(&["a"], Some("note"), json!({"k": 1}));
        assert!(differs(
            &base,
            &f(&["a", "b"], Some("note"), json!({"k": 1}))
        ));
        assert!(differs(
            &base,
            &f(&["a"], Some("decision"), json!({"k": 1}))
        ));
        assert!(differs(&base, &f(&["a"], Some("note"), json!({"k": 2}))));
    }

    #[test]
    fn merge_unions_tags_and_prefers_local_values() {
        let local = f(
            &["a", "shared"],
            Some("decision"),
            json!({"k": "local", "l": 1}),
        );
        let remote = f(
            &["shared", "r"],
            Some("note"),
            json!({"k": "remote", "r": 2, "access_count": 9}),
        );
        let m = merge(&local, &remote);
        assert_eq!(m.tags, vec!["a", "shared", "r"]);
        assert_eq!(m.memory_type.as_deref(), Some("decision"));
        assert_eq!(
            Value::Object(m.metadata),
            json!({"k": "local", "l": 1, "r": 2})
        );
        // Merging is idempotent and the result conflicts with neither side's tag union.
        assert_eq!(
            merge(&merge(&local, &remote), &remote).tags,
            vec!["a", "shared", "r"]
        );
    }
}
