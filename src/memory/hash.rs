//! The content hash mcp-memory-service gives a memory:
//! `sha256(content.strip().lower().encode("utf-8")).hexdigest()` in Python.
//!
//! Rust's `trim()` and `to_lowercase()` are close but not equal to Python's definitions, and a
//! hash that differs from the server's makes dedup silently fail (the upstream shell scripts hashed
//! the raw content), so both are spelled out here.

use sha2::{Digest, Sha256};

/// A memory's content hash: 64 lowercase hex digits, as the server computes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(String);

impl ContentHash {
    /// The hash of `content`, exactly as mcp-memory-service computes it.
    pub fn of(content: &str) -> ContentHash {
        let norm = python_lower(python_strip(content));
        let digest = Sha256::digest(norm.as_bytes());
        let mut hex = String::with_capacity(64);
        for b in digest {
            hex.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            hex.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
        }
        ContentHash(hex)
    }

    /// Accepts a hash given by the server or the user: 64 hex digits (case-folded).
    pub fn parse(s: &str) -> Option<ContentHash> {
        (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| ContentHash(s.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 digits, for messages.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

/// Read where JSON comes in (the server's answers): anything but 64 hex digits is refused there.
impl<'de> serde::Deserialize<'de> for ContentHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ContentHash, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ContentHash::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format_args!("{s:?} is not a content hash (64 hex digits)"))
        })
    }
}

impl serde::Serialize for ContentHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Stored as its 64 digits in SQLite.
impl rusqlite::ToSql for ContentHash {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        self.0.to_sql()
    }
}

/// Read where SQLite rows come in: anything but 64 hex digits is a conversion error.
impl rusqlite::types::FromSql for ContentHash {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let s = v.as_str()?;
        ContentHash::parse(s).ok_or_else(|| {
            rusqlite::types::FromSqlError::Other(format!("{s:?} is not a content hash").into())
        })
    }
}

impl std::fmt::Display for ContentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Python's `str.isspace()`: Unicode White_Space plus the ASCII separators U+001C..U+001F
/// (bidirectional class B or S), which Rust's `char::is_whitespace` leaves out.
pub fn python_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()` with no argument.
pub fn python_strip(s: &str) -> &str {
    s.trim_matches(python_isspace)
}

/// Python's `str.lower()`: full Unicode lowercase mapping (İ → i̇) with the final-sigma rule,
/// which is also what Rust's `str::to_lowercase` does. Kept as a named function so the tests
/// pin the equivalence on the cases that matter.
pub fn python_lower(s: &str) -> String {
    s.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_servers_documented_hash() {
        // Observed on mcp-memory-service 12.4.0.
        assert_eq!(
            ContentHash::of("  Hello Sync World  ").as_str(),
            "72128a09b276ebabd781e477ba3054aff28088206c8b18cef8b717adf6b43845"
        );
    }

    #[test]
    fn strip_follows_python() {
        assert_eq!(python_strip("\u{1c}\u{1f} a \u{3000}\u{85}"), "a");
        assert_eq!(python_strip("\u{200b}a"), "\u{200b}a"); // zero-width space is not whitespace
        assert_eq!(python_strip("\u{feff}a"), "\u{feff}a");
    }

    #[test]
    fn lower_follows_python() {
        // Values printed by CPython 3.11's str.lower().
        assert_eq!(python_lower("ΣΑΣ Σ"), "σας σ");
        assert_eq!(python_lower("İ"), "i\u{307}");
        assert_eq!(python_lower("ΑΣ.Β"), "ασ.β"); // "." is case-ignorable: Σ is not final
        assert_eq!(python_lower("ẞ"), "ß");
    }

    #[test]
    fn json_and_sqlite_take_only_hex_digests() {
        let h = ContentHash::of("x");
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<ContentHash>(&json).unwrap(), h);
        assert!(serde_json::from_str::<ContentHash>("\"abc\"").is_err());
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let back: ContentHash = c.query_row("SELECT ?1", [&h], |r| r.get(0)).unwrap();
        assert_eq!(back, h);
        assert!(
            c.query_row("SELECT 'abc'", [], |r| r.get::<_, ContentHash>(0))
                .is_err()
        );
    }

    #[test]
    fn parse_accepts_only_hex_digests() {
        let h = ContentHash::of("x");
        assert_eq!(ContentHash::parse(&h.as_str().to_uppercase()), Some(h));
        assert_eq!(ContentHash::parse("abc"), None);
        assert_eq!(ContentHash::parse(&"g".repeat(64)), None);
    }
}
