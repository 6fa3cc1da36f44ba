//! A failed call to the server, by what the caller can do about it.

use std::path::PathBuf;
use std::time::Duration;

use crate::memory::kind::ErrorKind;

/// A failed call, by meaning.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// No answer came: the connection was refused or broke off (`reason` says which, since a
    /// request that broke off may have arrived).
    #[error("{url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error(
        "{url}: TLS failed: {reason} (trust the server with --ca-file / REMOTE_MEMORY_CA_FILE, or --insecure for a self-signed test server)"
    )]
    Tls { url: String, reason: String },
    /// The server speaks another protocol at this address (plain HTTP to an `https://` URL).
    #[error("{url}: {reason}")]
    Protocol { url: String, reason: String },
    #[error("{url}: no answer within {}s", after.as_secs_f64())]
    Timeout { url: String, after: Duration },
    #[error(
        "{url}: the server refused the API key (HTTP {status}); set REMOTE_MEMORY_API_KEY (or MCP_API_KEY) to the server's MCP_API_KEY"
    )]
    Unauthorized { url: String, status: u16 },
    #[error("{url}: the server rejected the request (HTTP {status}): {detail}")]
    Rejected {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{url}: server error (HTTP {status}): {detail}")]
    Server {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{url}: unexpected answer: {reason}")]
    Malformed { url: String, reason: String },
    /// The CA file (`--ca-file`) cannot be read.
    #[error("cannot set up the HTTP client: CA file {}: {source}", path.display())]
    CaFileUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The CA file holds no usable PEM certificate.
    #[error("cannot set up the HTTP client: CA file {}: {reason}", path.display())]
    CaFileInvalid { path: PathBuf, reason: String },
    /// The HTTP client or its runtime could not be built.
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    /// A request body could not be encoded as JSON.
    #[error("cannot set up the HTTP client: {0}")]
    Encode(#[from] serde_json::Error),
}

impl RemoteError {
    /// What the failure means: transient failures are [`ErrorKind::Unreachable`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            RemoteError::Unreachable { .. }
            | RemoteError::Timeout { .. }
            | RemoteError::Server { .. } => ErrorKind::Unreachable,
            RemoteError::Unauthorized { .. } => ErrorKind::Unauthorized,
            RemoteError::Rejected { .. } | RemoteError::Malformed { .. } => ErrorKind::Refused,
            RemoteError::Tls { .. }
            | RemoteError::Protocol { .. }
            | RemoteError::CaFileUnreadable { .. }
            | RemoteError::CaFileInvalid { .. }
            | RemoteError::Setup(_)
            | RemoteError::Encode(_) => ErrorKind::Invalid,
        }
    }

    /// Worth another attempt: the network, a timeout or the server's own failure.
    pub fn is_transient(&self) -> bool {
        self.kind() == ErrorKind::Unreachable
    }
}
