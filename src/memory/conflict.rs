//! What a conflict is, and the three ways to settle one. Pure functions over [`Fields`].
//!
//! A *conflict* is the same memory (same content hash) with different tags, type or metadata
//! on the two sides, or a memory changed locally that the server deleted. Comparisons see the
//! memory as the server will: tags normalised as the server does, and metadata keys the server
//! maintains by itself (access counters, hostname) ignored.

use serde_json::{Map, Value};

use super::record::Fields;

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

/// mcp-memory-service (12.4, `services/memory_service.py`) keeps at most this many tags of
/// a memory it creates, and cuts a longer tag to this many characters, without a word; its
/// update (`PUT`) keeps tags as sent.
pub const SERVER_MAX_TAGS: usize = 100;
pub const SERVER_MAX_TAG_CHARS: usize = 100;

/// Why the server would not keep `tags` as memsync sends them (normalised, lowercased) with a
/// new memory (`POST`): the next pull would otherwise meet a memory that is not what was
/// stored. `None`: it keeps them.
pub fn tags_beyond_server_limits(tags: &[String]) -> Option<String> {
    let n = normalize_tags(tags).len();
    if n > SERVER_MAX_TAGS {
        return Some(format!(
            "{n} tags; the server keeps at most {SERVER_MAX_TAGS} of a new memory and would drop the rest"
        ));
    }
    let chars = |t: &str| super::hash::python_strip(t).chars().count();
    let long = tags.iter().find(|t| chars(t) > SERVER_MAX_TAG_CHARS)?;
    let start: String = long.chars().take(30).collect();
    Some(format!(
        "tag {start:?}... has {} characters; the server keeps at most {SERVER_MAX_TAG_CHARS} and would cut it",
        chars(long)
    ))
}

fn comparable_tags(tags: &[String]) -> Vec<String> {
    let mut t = normalize_tags(tags);
    t.retain(|t| t != "untagged");
    t.sort();
    t
}

/// A key set to `null` counts as absent: the server's `PUT` merges metadata, so a removed key
/// can only be sent as `null` (see [`removed_keys`]).
fn comparable_meta(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(k, v)| !SERVER_KEYS.contains(&k.as_str()) && !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The keys a user set that `server` holds and `sent` does not: an update must send them as
/// `null`, since the server's `PUT` merges metadata key by key (a key left out stays, and the
/// next pull would bring it back as the server's change).
pub fn removed_keys(sent: &Map<String, Value>, server: &Map<String, Value>) -> Vec<String> {
    server
        .iter()
        .filter(|(k, v)| {
            !v.is_null() && !SERVER_KEYS.contains(&k.as_str()) && !sent.contains_key(k.as_str())
        })
        .map(|(k, _)| k.clone())
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

/// The `merge` policy when the common base is known (three-way, as git merges lines): a tag
/// stays when both sides have it or one side added it; a tag of the base that either side
/// removed goes. A metadata key or the type takes the side that changed it; when both changed
/// it differently the local value wins (the remote one stays in the conflict record). The
/// result lies between the two sides' intersection and their union.
pub fn merge3(local: &Fields, remote: &Fields, base: &Fields) -> Fields {
    let (l, r, b) = (
        normalize_tags(&local.tags),
        normalize_tags(&remote.tags),
        normalize_tags(&base.tags),
    );
    let keep = |t: &String| {
        let (in_l, in_r, in_b) = (l.contains(t), r.contains(t), b.contains(t));
        // A base tag stays only if neither side removed it; a new one if either side added it.
        if in_b { in_l && in_r } else { in_l || in_r }
    };
    let mut tags: Vec<String> = l
        .iter()
        .chain(r.iter())
        .filter(|t| keep(t))
        .cloned()
        .collect();
    tags = normalize_tags(&tags);
    if tags.len() > 1 {
        tags.retain(|t| t != "untagged");
    }
    let volatile = |k: &str| matches!(k, "access_count" | "last_accessed_at" | "access_queries");
    let mut metadata = Map::new();
    let keys: Vec<&String> = local
        .metadata
        .keys()
        .chain(remote.metadata.keys())
        .chain(base.metadata.keys())
        .filter(|k| !volatile(k))
        .collect();
    for k in keys {
        if metadata.contains_key(k) {
            continue;
        }
        let (lv, rv, bv) = (
            local.metadata.get(k),
            remote.metadata.get(k),
            base.metadata.get(k),
        );
        let v = if lv == rv || rv == bv {
            lv
        } else if lv == bv {
            rv
        } else {
            // Both changed it: the local value, or the remote one if the local side removed it
            // (a removal never costs a value someone set).
            lv.or(rv)
        };
        if let Some(v) = v {
            metadata.insert(k.clone(), v.clone());
        }
    }
    let same_type = |a: &Option<String>, b: &Option<String>| match (a, b) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        (None, None) => true,
        _ => false,
    };
    let memory_type = if same_type(&local.memory_type, &base.memory_type) {
        remote
            .memory_type
            .clone()
            .or_else(|| local.memory_type.clone())
    } else {
        local
            .memory_type
            .clone()
            .or_else(|| remote.memory_type.clone())
    };
    Fields {
        tags,
        memory_type,
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
    fn three_way_merge_keeps_each_sides_change() {
        let base = f(&["t", "a"], Some("note"), json!({"k": 1, "gone": 0}));
        // Local removed `a` and added `l`; remote added `r` and changed k.
        let local = f(&["t", "l"], Some("note"), json!({"k": 1, "gone": 0}));
        let remote = f(&["t", "a", "r"], Some("decision"), json!({"k": 2}));
        let m = merge3(&local, &remote, &base);
        assert_eq!(m.tags, vec!["t", "l", "r"]);
        assert_eq!(m.memory_type.as_deref(), Some("decision"));
        assert_eq!(Value::Object(m.metadata), json!({"k": 2}));
        // A side that did not change never overrides one that did.
        assert!(!differs(&merge3(&base, &remote, &base), &remote));
        assert!(!differs(&merge3(&local, &base, &base), &local));
        // Both changed the same key: local wins; the result stays within intersection..union.
        let l2 = f(&["t"], Some("note"), json!({"k": "L"}));
        let r2 = f(&["t", "x"], Some("note"), json!({"k": "R"}));
        let m = merge3(&l2, &r2, &base);
        assert_eq!(m.tags, vec!["t", "x"]);
        assert_eq!(m.metadata["k"], json!("L"));
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
