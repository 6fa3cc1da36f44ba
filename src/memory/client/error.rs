//! A failed call to the server, by what the caller can do about it.

use std::time::Duration;

use crate::memory::kind::ErrorKind;

/// A failed call, by meaning.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{url}: cannot connect: {reason}")]
    Unreachable { url: String, reason: String },
    #[error(
        "{url}: TLS failed: {reason} (trust the server with --ca-file / REMOTE_MEMORY_CA_FILE, or --insecure for a self-signed test server)"
    )]
    Tls { url: String, reason: String },
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
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
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
            RemoteError::Tls { .. } | RemoteError::Setup(_) => ErrorKind::Invalid,
        }
    }

    /// Worth another attempt: the network, a timeout or the server's own failure.
    pub fn is_transient(&self) -> bool {
        self.kind() == ErrorKind::Unreachable
    }
}
