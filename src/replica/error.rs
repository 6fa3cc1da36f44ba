//! What can go wrong with a replica, named by what it means to the caller.

use thiserror::Error;

/// A failed replica operation, named by what it means to the caller.
#[derive(Debug, Error)]
pub enum ReplicaError {
    /// The object does not exist.
    #[error("replica {replica}: {key} not found")]
    NotFound {
        /// Replica name and location.
        replica: String,
        /// Key.
        key: String,
    },
    /// A file with that key already exists (another writer, or a retried upload).
    #[error("replica {replica}: {key} already exists")]
    AlreadyExists {
        /// Replica.
        replica: String,
        /// Key.
        key: String,
    },
    /// The storage could not be reached or refused the request.
    #[error("replica {replica}: {what}: {}", one_line(source))]
    Storage {
        /// Replica.
        replica: String,
        /// Operation.
        what: String,
        /// Cause.
        source: object_store::Error,
    },
    /// The request did not finish in time.
    #[error("replica {replica}: {what} timed out after {secs}s")]
    Timeout {
        /// Replica.
        replica: String,
        /// Operation.
        what: String,
        /// Seconds waited.
        secs: u64,
    },
    /// Reading a local file to upload failed.
    #[error("replica {replica}: reading {path}: {source}")]
    Local {
        /// Replica.
        replica: String,
        /// Local file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Writing into a file replica failed (disk full, read-only, permissions).
    #[error("replica {replica}: writing {path}: {source}")]
    Write {
        /// Replica.
        replica: String,
        /// File in the replica.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The replica's settings cannot make a client (a malformed URL or header value).
    #[error("replica {replica}: {msg}")]
    Config {
        /// Replica.
        replica: String,
        /// What is wrong.
        msg: String,
    },
}

impl ReplicaError {
    /// Worth trying again later: the store did not answer, or failed on its side (a timeout,
    /// a refused or broken connection, a 5xx). A refused key, a missing object or a
    /// certificate not trusted need a person instead.
    pub fn is_transient(&self) -> bool {
        match self {
            ReplicaError::Timeout { .. } => true,
            ReplicaError::Storage { source, .. } => {
                let t = crate::errtext::chain(source).to_ascii_lowercase();
                // 501 and 505: the server does not do what memsync asks (a plain web server
                // asked for PROPFIND), which no retry changes.
                let unsupported = ["status code: 501", "status code: 505", "answered 501"]
                    .iter()
                    .any(|w| t.contains(w));
                !t.contains("certificate")
                    && !unsupported
                    && [
                        "connect",
                        "connection",
                        "timed out",
                        "dns error",
                        "status code: 5",
                        // A streamed WebDAV PUT's answer (507 when the disk is full: it
                        // recovers as an outage does).
                        "answered 5",
                    ]
                    .iter()
                    .any(|w| t.contains(w))
            }
            _ => false,
        }
    }
}

/// Maps an object store error to what it means: missing, already there, or a storage failure.
pub(super) fn from_store(
    replica: String,
    what: String,
) -> impl FnOnce(object_store::Error) -> ReplicaError {
    move |source| match source {
        object_store::Error::NotFound { path, .. } => ReplicaError::NotFound { replica, key: path },
        object_store::Error::AlreadyExists { path, .. } => {
            ReplicaError::AlreadyExists { replica, key: path }
        }
        source => ReplicaError::Storage {
            replica,
            what,
            source,
        },
    }
}

/// `fut`, failed as [`ReplicaError::Timeout`] after [`super::REQUEST_TIMEOUT`].
pub(super) async fn timed<T>(
    replica: &str,
    what: &str,
    fut: impl Future<Output = Result<T, ReplicaError>>,
) -> Result<T, ReplicaError> {
    match tokio::time::timeout(super::REQUEST_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(ReplicaError::Timeout {
            replica: replica.to_string(),
            what: what.into(),
            secs: super::REQUEST_TIMEOUT.as_secs(),
        }),
    }
}

/// An object store error on one line: S3 and WebDAV servers answer with XML bodies that
/// object_store quotes whole. `<Code>` and `<Message>`, when there, say what matters.
fn one_line(e: &object_store::Error) -> String {
    // With its causes: "error sending request" alone reads the same for a refused connection
    // and a certificate the client does not trust.
    let mut text = crate::errtext::chain(e);
    if text.contains("CaUsedAsEndEntity") {
        text.push_str(
            " (the server's certificate is a CA certificate, which TLS clients refuse as a server's own: make it with `-addext basicConstraints=critical,CA:FALSE`, then point SSL_CERT_FILE at it)",
        );
    } else if text.contains("certificate") {
        text.push_str(
            " (to trust a private or self-signed server, point SSL_CERT_FILE at its CA's PEM file)",
        );
    }
    // With no credentials in the config or the environment, the S3 client asks the cloud
    // instance metadata service last; off a cloud instance that answers with a refusal that
    // names a link-local address and says nothing of credentials.
    if text.contains("169.254.169.254") || text.contains("169.254.170.2") {
        return format!(
            "no S3 credentials: set `access-key-id` and `secret-access-key` on the replica, or \
             AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or LITESTREAM_ACCESS_KEY_ID and \
             LITESTREAM_SECRET_ACCESS_KEY) in the environment (the instance metadata service \
             was asked last and did not give any: {})",
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = start + text[start..].find(&format!("</{name}>"))?;
        Some(text[start..end].to_string())
    };
    let status = [
        "400", "401", "403", "404", "405", "409", "412", "500", "502", "503", "504",
    ]
    .into_iter()
    .find(|s| text.contains(&format!("status code: {s}")));
    let flat = match (tag("Code"), tag("Message")) {
        (Some(code), Some(msg)) => match status {
            Some(s) => format!("HTTP {s} {code}: {msg}"),
            None => format!("{code}: {msg}"),
        },
        _ => crate::errtext::without_html(&text, 300),
    };
    let mut flat = flat.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.contains("PROPFIND") && ["501", "405"].iter().any(|s| flat.contains(s)) {
        flat.push_str(
            " (an http replica needs a WebDAV server: PUT, GET, DELETE, PROPFIND and MKCOL)",
        );
    }
    flat
}

#[cfg(test)]
mod tests {
    #[test]
    fn html_pages_become_their_words_and_unsupported_methods_are_not_outages() {
        let page = format!(
            "PROPFIND answered 501 Not Implemented: <!DOCTYPE HTML>\n<html lang=\"en\"><head><title>Error response</title></head><body><h1>Error response</h1><p>Error code: 501</p>{}</body></html>",
            "<p>filler</p>".repeat(200)
        );
        let e = object_store::Error::Generic {
            store: "HTTP",
            source: page.into(),
        };
        let line = super::one_line(&e);
        assert!(
            line.contains(
                "PROPFIND answered 501 Not Implemented: Error response Error response Error code: 501 filler"
            ),
            "{line}"
        );
        assert!(!line.contains('<') && line.len() < 500, "{line}");
        assert!(line.ends_with("PROPFIND and MKCOL)"), "{line}");
        let err = super::ReplicaError::Storage {
            replica: "http".into(),
            what: "listing".into(),
            source: e,
        };
        assert!(!err.is_transient());
    }

    #[test]
    fn xml_bodies_become_one_line() {
        let e = object_store::Error::Generic {
            store: "S3",
            source: "Error performing GET http://x/b in 12ms - Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?>\n<Error><Code>SignatureDoesNotMatch</Code><Message>The signature does not match.</Message></Error>".into(),
        };
        assert_eq!(
            super::one_line(&e),
            "HTTP 403 SignatureDoesNotMatch: The signature does not match."
        );
        let e = object_store::Error::Generic {
            store: "HTTP",
            source: "a\n  b".into(),
        };
        assert!(!super::one_line(&e).contains('\n'));
        let e = object_store::Error::Generic {
            store: "S3",
            source: "Error performing PUT http://169.254.169.254/latest/api/token in 2ms - Server returned non-2xx status code: 403 Forbidden".into(),
        };
        let said = super::one_line(&e);
        assert!(
            said.starts_with("no S3 credentials: set `access-key-id`"),
            "{said}"
        );
    }

    /// A full disk answers a streamed WebDAV PUT with 507: an outage (WARN, retried), as the
    /// same answer to a small upload is; a refused key is not.
    #[test]
    fn a_full_disk_is_an_outage_whatever_the_upload_size() {
        let storage = |text: &str| super::ReplicaError::Storage {
            replica: "r".into(),
            what: "uploading x".into(),
            source: object_store::Error::Generic {
                store: "HTTP",
                source: text.to_owned().into(),
            },
        };
        assert!(storage("PUT answered 507 Insufficient Storage: disk full").is_transient());
        assert!(
            storage("Server returned non-2xx status code: 507 Insufficient Storage").is_transient()
        );
        assert!(!storage("PUT answered 401 Unauthorized").is_transient());
    }
}
