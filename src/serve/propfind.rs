//! PROPFIND: a 207 multistatus listing of a file or a collection, to depth 0, 1 or infinity.
//! Every entry carries the properties object_store's HttpStore reads (href, resourcetype,
//! getcontentlength, getlastmodified, getetag) in one propstat with status 200; the request body
//! (which properties the client wants) is read and ignored, as an `allprop` request.
//! Uploads in progress are never listed; symlinks are listed only where they lead inside the
//! served directory, and a symlinked collection is not descended into (no loops).

use std::fmt::Write as _;
use std::fs::Metadata;
use std::io;
use std::path::{Path, PathBuf};

use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

use super::meta;
use super::paths::{RelPath, TEMP_PREFIX};
use super::reply::{Body, full, read_error, text};

/// How deep a PROPFIND looks (the `Depth` header; absent means infinity, RFC 4918 §9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Depth {
    Zero,
    One,
    Infinity,
}

impl Depth {
    /// Reads the header; `None` for a value RFC 4918 does not define.
    pub(super) fn parse(h: Option<&str>) -> Option<Depth> {
        match h.map(str::trim) {
            None => Some(Depth::Infinity),
            Some("0") => Some(Depth::Zero),
            Some("1") => Some(Depth::One),
            Some(v) if v.eq_ignore_ascii_case("infinity") => Some(Depth::Infinity),
            Some(_) => None,
        }
    }
}

/// Answers a PROPFIND of `rel`, which resolved to `path` under `root`.
pub(super) async fn propfind(
    root: PathBuf,
    rel: RelPath,
    path: PathBuf,
    depth: Depth,
) -> Response<Body> {
    let href = rel.href(false);
    let res = tokio::task::spawn_blocking(move || listing(&root, rel, &path, depth)).await;
    match res {
        Ok(Ok(xml)) => {
            let mut r = Response::new(full(xml.clone()));
            *r.status_mut() = StatusCode::MULTI_STATUS;
            let h = r.headers_mut();
            h.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/xml; charset=utf-8"),
            );
            h.insert(CONTENT_LENGTH, HeaderValue::from(xml.len()));
            r
        }
        Ok(Err(e)) => read_error(&e, "PROPFIND", &href),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "storage error"),
    }
}

/// The multistatus document.
fn listing(root: &Path, rel: RelPath, path: &Path, depth: Depth) -> io::Result<String> {
    let m = std::fs::metadata(path)?;
    let mut xml =
        String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<multistatus xmlns=\"DAV:\">\n");
    entry(&mut xml, &rel, &m);
    if m.is_dir() && depth != Depth::Zero {
        // Collections still to read: (logical path, real path).
        let mut todo = vec![(rel, path.to_path_buf())];
        while let Some((dir_rel, dir)) = todo.pop() {
            let mut children: Vec<(String, PathBuf, Metadata, bool)> = Vec::new();
            for e in std::fs::read_dir(&dir)? {
                let e = e?;
                let Ok(name) = e.file_name().into_string() else {
                    continue; // not UTF-8: no href to give it
                };
                if name.starts_with(TEMP_PREFIX) {
                    continue;
                }
                let p = e.path();
                let ft = e.file_type()?;
                let (m, linked) = if ft.is_symlink() {
                    match crate::platform::canonicalize(&p) {
                        Ok(t) if t.starts_with(root) => match std::fs::metadata(&t) {
                            Ok(m) => (m, true),
                            Err(_) => continue,
                        },
                        _ => continue,
                    }
                } else {
                    match e.metadata() {
                        Ok(m) => (m, false),
                        // Deleted since read_dir saw it.
                        Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                        Err(err) => return Err(err),
                    }
                };
                children.push((name, p, m, linked));
            }
            children.sort_by(|a, b| a.0.cmp(&b.0));
            for (name, p, m, linked) in children {
                let child = dir_rel.child(&name);
                entry(&mut xml, &child, &m);
                if m.is_dir() && depth == Depth::Infinity && !linked {
                    todo.push((child, p));
                }
            }
        }
    }
    xml.push_str("</multistatus>\n");
    Ok(xml)
}

/// One `<response>` element.
fn entry(xml: &mut String, rel: &RelPath, m: &Metadata) {
    let dir = m.is_dir();
    let modified = m.modified().map(meta::http_date).unwrap_or_default();
    let _ = write!(
        xml,
        "<response><href>{}</href><propstat><prop>",
        crate::xmltext::escape(&rel.href(dir))
    );
    if dir {
        xml.push_str("<resourcetype><collection/></resourcetype>");
    } else {
        let _ = write!(
            xml,
            "<resourcetype/><getcontentlength>{}</getcontentlength><getcontenttype>application/octet-stream</getcontenttype>",
            m.len()
        );
    }
    let _ = writeln!(
        xml,
        "<getlastmodified>{modified}</getlastmodified><getetag>{}</getetag></prop><status>HTTP/1.1 200 OK</status></propstat></response>",
        crate::xmltext::escape(&meta::etag(m))
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depths() {
        assert_eq!(Depth::parse(None), Some(Depth::Infinity));
        assert_eq!(Depth::parse(Some("0")), Some(Depth::Zero));
        assert_eq!(Depth::parse(Some(" 1 ")), Some(Depth::One));
        assert_eq!(Depth::parse(Some("Infinity")), Some(Depth::Infinity));
        assert_eq!(Depth::parse(Some("2")), None);
    }

    #[test]
    fn listings_hide_uploads_and_escapes() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap().join("root");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f 1"), b"12345").unwrap();
        std::fs::write(root.join("a/.tmp-0123"), b"partial").unwrap();
        std::os::unix::fs::symlink(tmp.path(), root.join("out")).unwrap();
        std::os::unix::fs::symlink(root.join("a"), root.join("loop")).unwrap();
        let rel = super::super::paths::parse("/").unwrap();
        let all = listing(&root, rel, &root, Depth::Infinity).unwrap();
        assert!(all.contains("<href>/a/b/f%201</href>"), "{all}");
        assert!(all.contains("<getcontentlength>5</getcontentlength>"));
        assert!(all.contains("<href>/a/</href>"));
        assert!(all.contains("<href>/loop/</href>"));
        assert!(!all.contains("tmp-"), "{all}");
        assert!(!all.contains("/out"), "{all}");
        assert!(
            !all.contains("/loop/b"),
            "a symlinked collection is not descended into"
        );
        let rel = super::super::paths::parse("/a/").unwrap();
        let one = listing(&root, rel, &root.join("a"), Depth::One).unwrap();
        assert_eq!(one.matches("<response>").count(), 2, "{one}");
    }
}
