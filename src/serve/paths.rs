//! Request paths confined to the served directory. A path is checked twice: by its text (decoded
//! segment by segment, so no `..`, encoded or not, no backslash, NUL or absolute path ever reaches
//! the file system), then by where it really leads (every symlink on the way resolved and kept
//! inside the directory). Clients cannot create symlinks, so the second check only guards
//! against the ones the administrator left in the directory.

use std::io;
use std::path::{Path, PathBuf};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Names of uploads in progress: hidden from listings and refused in requests.
pub(super) const TEMP_PREFIX: &str = ".tmp-";

/// Why a request path is refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Not a path memsync serves: dot segments, encoded separators, NUL, control characters.
    Malformed(&'static str),
    /// A name reserved for uploads in progress.
    Reserved,
}

/// A request path as decoded segments under the served directory (none for the directory itself).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct RelPath {
    pub(super) segments: Vec<String>,
}

impl RelPath {
    /// True for the served directory itself.
    pub(super) fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// The path as an href: each segment percent-encoded, with a trailing slash for a collection.
    pub(super) fn href(&self, collection: bool) -> String {
        let mut s = String::with_capacity(16 * self.segments.len() + 1);
        for seg in &self.segments {
            s.push('/');
            s.extend(utf8_percent_encode(seg, HREF));
        }
        if collection || s.is_empty() {
            s.push('/');
        }
        s
    }

    /// This path with one more segment.
    pub(super) fn child(&self, name: &str) -> RelPath {
        let mut segments = self.segments.clone();
        segments.push(name.to_owned());
        RelPath { segments }
    }
}

/// What an href percent-encodes: everything but the unreserved characters.
const HREF: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Parses the path of a request (still percent-encoded, as on the request line).
pub(super) fn parse(raw: &str) -> Result<RelPath, Refusal> {
    let Some(rest) = raw.strip_prefix('/') else {
        return Err(Refusal::Malformed("the path does not start with /"));
    };
    if raw.contains('\\') {
        return Err(Refusal::Malformed("backslash in the path"));
    }
    let mut parts: Vec<&str> = rest.split('/').collect();
    // A trailing slash names a collection; the segment after it is empty.
    if parts.last() == Some(&"") {
        parts.pop();
    }
    let mut segments = Vec::with_capacity(parts.len());
    for part in parts {
        if part.is_empty() {
            return Err(Refusal::Malformed("empty segment (//) in the path"));
        }
        let seg = percent_decode_str(part)
            .decode_utf8()
            .map_err(|_| Refusal::Malformed("the path is not UTF-8"))?;
        if seg == "." || seg == ".." {
            return Err(Refusal::Malformed("dot segment in the path"));
        }
        if seg.contains(['/', '\\']) {
            return Err(Refusal::Malformed("encoded separator in the path"));
        }
        if seg.chars().any(char::is_control) {
            return Err(Refusal::Malformed("NUL or control character in the path"));
        }
        if seg.len() > 255 {
            return Err(Refusal::Malformed("path segment longer than 255 bytes"));
        }
        if seg.starts_with(TEMP_PREFIX) {
            return Err(Refusal::Reserved);
        }
        segments.push(seg.into_owned());
    }
    Ok(RelPath { segments })
}

/// Where a path leads on disk: every existing component resolved (symlinks followed, each
/// checked to stay under `root`, which is canonical), the missing rest appended as written.
pub(super) fn resolve(root: &Path, rel: &RelPath) -> Result<PathBuf, ResolveError> {
    let mut real = root.to_path_buf();
    let mut segs = rel.segments.iter();
    for seg in segs.by_ref() {
        let next = real.join(seg);
        match std::fs::symlink_metadata(&next) {
            Ok(m) if m.file_type().is_symlink() => {
                // A dangling symlink would let a PUT create a file wherever it points.
                let target =
                    crate::platform::canonicalize(&next).map_err(|_| ResolveError::Escapes)?;
                if !target.starts_with(root) {
                    return Err(ResolveError::Escapes);
                }
                real = target;
            }
            Ok(_) => real = next,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                real = next;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                real = next;
                break;
            }
            Err(e) => return Err(ResolveError::Io(e)),
        }
    }
    for seg in segs {
        real.push(seg);
    }
    Ok(real)
}

/// Why [`resolve`] failed.
#[derive(Debug)]
pub(super) enum ResolveError {
    /// A symlink leads out of the served directory, or nowhere.
    Escapes,
    /// The file system could not be read.
    Io(io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(p: &str) -> Vec<String> {
        parse(p).unwrap().segments
    }

    #[test]
    fn plain_paths_decode() {
        assert!(parse("/").unwrap().is_root());
        assert_eq!(segs("/a/b.ltx"), ["a", "b.ltx"]);
        assert_eq!(segs("/a/b/"), ["a", "b"]);
        assert_eq!(segs("/a%20b/c%3Ad"), ["a b", "c:d"]);
        assert_eq!(segs("/..a/a..b/..."), ["..a", "a..b", "..."]);
    }

    #[test]
    fn escapes_are_refused_in_every_spelling() {
        for p in [
            "/..",
            "/a/../b",
            "/a/..",
            "/%2e%2e/x",
            "/%2E%2E/x",
            "/a/%2e%2E/x",
            "/.%2e/x",
            "/./x",
            "/%2e/x",
            "//etc/passwd",
            "/%2Fetc/passwd",
            "/a%2f..%2fb",
            "/a\\b",
            "/a%5c..%5cb",
            "/a%00b",
            "/a%0ab",
            "etc/passwd",
            "/%ff",
        ] {
            assert!(
                matches!(parse(p), Err(Refusal::Malformed(_))),
                "{p} not refused"
            );
        }
        assert_eq!(parse("/a/.tmp-123"), Err(Refusal::Reserved));
        assert_eq!(parse("/.tmp-x/b"), Err(Refusal::Reserved));
    }

    #[test]
    fn hrefs_round_trip() {
        for p in ["/", "/a/b", "/a%20b/c%3Ad", "/x/%C3%A9t%C3%A9"] {
            let rel = parse(p).unwrap();
            assert_eq!(parse(&rel.href(false)).unwrap(), rel);
            assert!(rel.href(true).ends_with('/'));
        }
        assert_eq!(parse("/a b&<").unwrap().href(false), "/a%20b%26%3C");
    }

    #[test]
    fn symlinks_stay_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(root.join("in")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("out")).unwrap();
        std::os::unix::fs::symlink(root.join("in"), root.join("alias")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("nowhere"), root.join("dangling")).unwrap();
        let r = |p: &str| resolve(&root, &parse(p).unwrap());
        assert!(matches!(r("/out/x"), Err(ResolveError::Escapes)));
        assert!(matches!(r("/out"), Err(ResolveError::Escapes)));
        assert!(matches!(r("/dangling"), Err(ResolveError::Escapes)));
        assert_eq!(r("/alias/x/y").unwrap(), root.join("in/x/y"));
        assert_eq!(r("/new/a").unwrap(), root.join("new/a"));
    }
}
