//! Which settings a config file sets, for `memsync databases` to say where each came from: a
//! database's or replica's own key, the top-level default for replicas, else memsync's
//! default. Read from the YAML as written (before conversion, which fills in the defaults).

use serde_json::Value;

/// Where one setting's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetBy {
    /// The entry's own key.
    Entry,
    /// The top level's default for every replica.
    TopLevel,
    /// Not in the file.
    Default,
}

impl SetBy {
    pub fn as_str(self) -> &'static str {
        match self {
            SetBy::Entry => "config file",
            SetBy::TopLevel => "config file (top level)",
            SetBy::Default => "default",
        }
    }
}

/// The keys one `dbs` entry with a `path` sets, and those of each of its replicas.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryKeys {
    pub db: Vec<String>,
    pub replicas: Vec<Vec<String>>,
}

/// What the file sets: the top level's keys, and each `path` entry's (in file order, which is
/// the order of `Config::dbs` before directory entries add theirs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeysSet {
    pub top: Vec<String>,
    pub entries: Vec<EntryKeys>,
    /// The same for each `dir` entry, in file order (the order of `Config::dirs`).
    pub dirs: Vec<EntryKeys>,
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

impl KeysSet {
    /// Reads `text` (a config file that loads: errors were reported by loading it).
    pub fn read(text: &str) -> Option<KeysSet> {
        let v: Value = serde_saphyr::from_str(text).ok()?;
        let of_kind = |kind: &str| -> Vec<EntryKeys> {
            v.get("dbs")
                .and_then(Value::as_array)
                .map(|dbs| {
                    dbs.iter()
                        .filter(|d| d.get(kind).is_some())
                        .map(|d| EntryKeys {
                            db: keys(d),
                            replicas: match (d.get("replicas"), d.get("replica")) {
                                (Some(Value::Array(rs)), _) => rs.iter().map(keys).collect(),
                                (_, Some(r)) => vec![keys(r)],
                                _ => Vec::new(),
                            },
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        Some(KeysSet {
            top: keys(&v),
            entries: of_kind("path"),
            dirs: of_kind("dir"),
        })
    }

    /// Where the setting `key` of the database `entry` describes comes from.
    pub fn db_in(entry: Option<&EntryKeys>, key: &str) -> SetBy {
        match entry {
            Some(e) if e.db.iter().any(|k| k == key) => SetBy::Entry,
            _ => SetBy::Default,
        }
    }

    /// Where the setting `key` of replica `replica` of the entry `entry` comes from.
    pub fn replica_in(&self, entry: Option<&EntryKeys>, replica: usize, key: &str) -> SetBy {
        let own = entry
            .and_then(|e| e.replicas.get(replica))
            .is_some_and(|r| r.iter().any(|k| k == key));
        if own {
            SetBy::Entry
        } else if self.top.iter().any(|k| k == key) {
            SetBy::TopLevel
        } else {
            SetBy::Default
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_then_top_level_then_default() {
        let k = KeysSet::read(
            "sync-interval: 10s\ndbs:\n  - dir: /d\n    replica:\n      path: /r\n  - path: /a.db\n    checkpoint-interval: 1m\n    replicas:\n      - path: /r1\n        retention: 1h\n      - path: /r2\n  - path: /b.db\n    replica:\n      url: file:///r3\n      sync-interval: 1s\n",
        )
        .unwrap();
        assert_eq!(k.entries.len(), 2, "the dir entry is not a path entry");
        assert_eq!(k.dirs.len(), 1);
        assert_eq!(
            k.replica_in(k.dirs.first(), 0, "sync-interval"),
            SetBy::TopLevel
        );
        assert_eq!(
            KeysSet::db_in(k.entries.first(), "checkpoint-interval"),
            SetBy::Entry
        );
        assert_eq!(
            KeysSet::db_in(k.entries.first(), "monitor-interval"),
            SetBy::Default
        );
        assert_eq!(
            k.replica_in(k.entries.first(), 0, "retention"),
            SetBy::Entry
        );
        assert_eq!(
            k.replica_in(k.entries.first(), 1, "retention"),
            SetBy::Default
        );
        assert_eq!(
            k.replica_in(k.entries.first(), 1, "sync-interval"),
            SetBy::TopLevel
        );
        assert_eq!(
            k.replica_in(k.entries.get(1), 0, "sync-interval"),
            SetBy::Entry
        );
        assert_eq!(
            KeysSet::db_in(k.entries.get(5), "busy-timeout"),
            SetBy::Default
        );
    }
}
