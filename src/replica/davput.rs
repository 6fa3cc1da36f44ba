//! Uploads of large files to a WebDAV server, streamed from disk: object_store's HTTP store
//! takes a body in memory and has no multipart uploads, so a snapshot of a big database would
//! sit whole in the replicator's memory while it goes up.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use object_store::path::Path as StorePath;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use url::Url;

/// How a streamed PUT ended, when the server answered.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Put {
    /// Stored.
    Done,
    /// Something is there already (412).
    Exists,
}

/// PUTs to one WebDAV server, with its authentication.
pub(super) struct DavPut {
    http: reqwest::Client,
    origin: Url,
}

impl DavPut {
    /// A client for the server at `origin` sending `headers` (authentication) with every
    /// request, trusting the certificates `ders` too (or none, `insecure`), as the replica's
    /// store does.
    pub(super) fn new(
        origin: &Url,
        headers: HeaderMap,
        ders: &[Vec<u8>],
        insecure: bool,
    ) -> Result<DavPut, String> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .default_headers(headers)
            .user_agent(concat!("memsync/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .danger_accept_invalid_certs(insecure);
        for der in ders {
            b = b.add_root_certificate(
                reqwest::Certificate::from_der(der).map_err(|e| e.to_string())?,
            );
        }
        let http = b.build().map_err(|e| e.to_string())?;
        Ok(DavPut {
            http,
            origin: origin.clone(),
        })
    }

    fn url(&self, path: &StorePath) -> Url {
        let mut u = self.origin.clone();
        if let Ok(mut segs) = u.path_segments_mut() {
            segs.pop_if_empty()
                .extend(path.parts().map(|p| p.as_ref().to_string()));
        }
        u
    }

    /// Streams `src` (`size` bytes) to `path`, creating missing collections when the server
    /// asks for them (409, as Apache does; nginx and `memsync serve` create them themselves).
    /// The whole upload may take 30 s plus a second per 256 KiB.
    pub(super) async fn put_file(
        &self,
        path: &StorePath,
        src: &Path,
        size: u64,
    ) -> Result<Put, String> {
        let limit = Duration::from_secs(30 + size / (256 << 10));
        for attempt in 0..2 {
            let file = tokio::fs::File::open(src)
                .await
                .map_err(|e| format!("reading {}: {e}", src.display()))?;
            let body = reqwest::Body::wrap_stream(chunks(file));
            let resp = self
                .http
                .put(self.url(path))
                .header(reqwest::header::CONTENT_LENGTH, size)
                .header(reqwest::header::IF_NONE_MATCH, "*")
                .timeout(limit)
                .body(body)
                .send()
                .await
                .map_err(|e| crate::errtext::chain(&e))?;
            match resp.status() {
                s if s.is_success() => return Ok(Put::Done),
                StatusCode::PRECONDITION_FAILED => return Ok(Put::Exists),
                StatusCode::CONFLICT if attempt == 0 => self.make_parents(path).await?,
                // With the server's own words (`memsync serve` says "disk full").
                s => {
                    let body = resp.text().await.unwrap_or_default();
                    let said: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
                    let said: String = said.chars().take(200).collect();
                    return Err(if said.is_empty() {
                        format!("PUT answered {s}")
                    } else {
                        format!("PUT answered {s}: {said}")
                    });
                }
            }
        }
        Err("PUT answered 409 Conflict after its collections were made".into())
    }

    /// MKCOL for every collection above `path` (405 for one that exists is fine).
    async fn make_parents(&self, path: &StorePath) -> Result<(), String> {
        let parts = path.parts().count();
        let mkcol = Method::from_bytes(b"MKCOL").expect("a valid method");
        for n in 1..parts {
            // The parts as they are (collected from strings, they were percent-encoded again).
            let dir = StorePath::from_iter(path.parts().take(n));
            let mut url = self.url(&dir);
            url.set_path(&format!("{}/", url.path()));
            let r = self
                .http
                .request(mkcol.clone(), url)
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .map_err(|e| crate::errtext::chain(&e))?;
            let s = r.status();
            if !(s.is_success() || s == StatusCode::METHOD_NOT_ALLOWED) {
                return Err(format!("MKCOL {dir} answered {s}"));
            }
        }
        Ok(())
    }
}

/// The file in 256 KiB chunks.
fn chunks(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    use tokio::io::AsyncReadExt;
    futures::stream::unfold(Some(file), |f| async move {
        let mut f = f?;
        let mut buf = vec![0u8; 256 << 10];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
    .boxed()
}
