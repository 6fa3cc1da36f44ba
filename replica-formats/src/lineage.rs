//! The lineage record: which database a replica belongs to.
//!
//! A replica's files say nothing about the database they came from, so two databases shipping
//! to one place interleave into a replica that restores neither (or, worse, the wrong one). The
//! record, one small text object at the replica root (`lineage`), names the database's lineage
//! (a random 128-bit id made when its replicator first ran) and where it lives, so a replicator
//! can recognise a replica that is not its own before writing anything. See README.md.

use std::fmt;

/// Object name of the record, relative to the replica root. It is not an [`crate::ObjectKey`]
/// (readers listing files ignore it).
pub const LINEAGE_OBJECT: &str = "lineage";

/// First line of a record (format version 1).
const MAGIC: &str = "memsync lineage 1";

/// A database's lineage id: 128 random bits, written as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LineageId(u128);

impl LineageId {
    /// The id with these bits (callers draw them from a random source).
    pub fn from_bits(bits: u128) -> Self {
        LineageId(bits)
    }

    /// Parses exactly 32 lowercase hex digits.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| u128::from_str_radix(s, 16).ok().map(LineageId))
            .flatten()
    }
}

impl fmt::Display for LineageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// The contents of a replica's lineage record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lineage {
    /// The lineage whose files the replica holds.
    pub id: LineageId,
    /// Host name of the machine the database is on (informational; may be empty).
    pub host: String,
    /// Absolute path of the database file, symlinks resolved.
    pub path: String,
}

impl Lineage {
    /// The record's bytes: the magic line, then `id`, `host` and `path` lines of the form
    /// `key value`, each ending in `\n`. In values, `\` is written `\\` and a newline `\n`.
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "{MAGIC}\nid {}\nhost {}\npath {}\n",
            self.id,
            escape(&self.host),
            escape(&self.path)
        )
        .into_bytes()
    }

    /// Parses a record; `None` if it is not one (wrong magic, no valid `id`, no `path`, not
    /// UTF-8). Unknown keys are ignored, so later versions may add lines.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let (mut id, mut host, mut path) = (None, String::new(), None);
        for line in lines {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            match k {
                "id" => id = Some(LineageId::parse(v)?),
                "host" => host = unescape(v)?,
                "path" => path = Some(unescape(v)?),
                _ => {}
            }
        }
        Some(Lineage {
            id: id?,
            host,
            path: path?,
        })
    }

    /// `host:path`, or the path alone when the host is unknown: how messages name the database.
    pub fn source(&self) -> String {
        if self.host.is_empty() {
            self.path.clone()
        } else {
            format!("{}:{}", self.host, self.path)
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '\\' => out.push('\\'),
            'n' => out.push('\n'),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_junk_is_not_a_record() {
        let l = Lineage {
            id: LineageId::from_bits(0x0123_4567_89ab_cdef_0011_2233_4455_6677),
            host: "box".into(),
            path: "/data/odd\\name\nwith newline.db".into(),
        };
        let bytes = l.encode();
        assert!(
            std::str::from_utf8(&bytes)
                .unwrap()
                .starts_with("memsync lineage 1\nid 0123456789abcdef0011223344556677\n")
        );
        assert_eq!(Lineage::parse(&bytes), Some(l.clone()));
        let mut extra = bytes.clone();
        extra.extend_from_slice(b"future thing\n");
        assert_eq!(Lineage::parse(&extra), Some(l));
        assert_eq!(Lineage::parse(b""), None);
        assert_eq!(Lineage::parse(b"memsync lineage 1\npath /x\n"), None);
        assert_eq!(
            Lineage::parse(b"memsync lineage 1\nid 0123456789ABCDEF0011223344556677\npath /x\n"),
            None
        );
        assert_eq!(Lineage::parse(b"memsync lineage 2\nid 0\npath /x\n"), None);
        assert_eq!(LineageId::parse("00"), None);
    }
}
