//! Error types, named by what went wrong rather than where.

use std::io;

use crate::pos::TxId;

/// Why a replica file could not be encoded or decoded.
///
/// Decoding never panics on bad input: every malformed byte sequence ends up
/// as one of these variants, with enough context to tell which check failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The input ended before a complete structure could be read.
    #[error("file truncated while reading {what}")]
    Truncated {
        /// The structure being read when the input ran out.
        what: &'static str,
    },
    /// The first four bytes are not `MSYN`: this is not a memsync replica file.
    #[error("bad magic {found:02x?}: not a memsync replica file")]
    BadMagic {
        /// The bytes found instead.
        found: [u8; 4],
    },
    /// The file was written by a newer (or unknown) format version.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    /// The file uses a feature (kind, flag) this reader does not understand.
    #[error("unsupported feature: {0}")]
    UnsupportedFeature(String),
    /// The file violates a structural invariant of the format.
    #[error("corrupt file: {what}")]
    Corrupt {
        /// Which invariant was violated, with the offending values.
        what: String,
    },
    /// A stored checksum does not match the bytes or pages it covers.
    #[error("checksum mismatch: {what}")]
    ChecksumMismatch {
        /// Which checksum, with expected and actual values.
        what: String,
    },
    /// A page size that SQLite cannot use (not a power of two in 512..=65536).
    #[error("invalid page size {0}: must be a power of two in 512..=65536")]
    InvalidPageSize(u32),
    /// The encoder was asked to write something the format cannot represent
    /// (pages out of order, wrong page length, the lock page, ...).
    #[error("invalid encoder input: {what}")]
    InvalidInput {
        /// What the caller got wrong.
        what: String,
    },
    /// zstd failed to compress a run (should not happen short of OOM).
    #[error("zstd compression failed: {0}")]
    Compression(#[source] io::Error),
    /// The header describes another file than the key it was read from: a file renamed or
    /// copied under another name. Applying it would claim a position it does not hold.
    #[error("the header does not match the file name: it belongs at {expected}")]
    KeyMismatch {
        /// The key the header describes (for a segment, at the level it was read from).
        expected: String,
    },
    /// The underlying reader or writer failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl FormatError {
    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        Self::Corrupt { what: what.into() }
    }

    pub(crate) fn checksum(what: impl Into<String>) -> Self {
        Self::ChecksumMismatch { what: what.into() }
    }

    pub(crate) fn invalid(what: impl Into<String>) -> Self {
        Self::InvalidInput { what: what.into() }
    }
}

/// Shorthand for results of encoding and decoding.
pub type Result<T, E = FormatError> = std::result::Result<T, E>;

/// A replication position string was not 1..=16 hex digits of a nonzero `u64`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid txid {input:?}: expected 1 to 16 hex digits, not all zero")]
pub struct ParseTxIdError {
    /// The rejected input (truncated to 64 characters).
    pub input: String,
}

/// Why no restore plan could be built from the available keys.
///
/// Every variant means "refuse": the planner never settles for an older
/// database than the one asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// No snapshot exists at or before the target.
    #[error("no snapshot at or before the target{}", match .oldest {
        Some(t) => format!(" (oldest snapshot is at txid {t})"),
        None => " (the replica has no snapshots)".to_string(),
    })]
    NoSnapshot {
        /// The oldest snapshot in the replica, if there is any.
        oldest: Option<TxId>,
    },
    /// The chain of segments stops at `at`, yet files describing later
    /// positions exist: something is missing.
    #[error("gap in replica history after txid {at}{}", match .next_available {
        Some(t) => format!(" (history resumes at txid {t})"),
        None => String::new(),
    })]
    Gap {
        /// The last position reachable without the missing file(s).
        at: TxId,
        /// The first position after the gap that some file starts at.
        next_available: Option<TxId>,
    },
    /// No file boundary lands exactly on the requested txid.
    #[error("txid {target} is not a restorable position (nearest: {}, {})",
        .before.map_or("none before".to_string(), |t| format!("{t} before")),
        .after.map_or("none after".to_string(), |t| format!("{t} after")))]
    NotFound {
        /// The requested position.
        target: TxId,
        /// The restorable position reached by the chain below the target.
        before: Option<TxId>,
        /// The oldest restorable position above the target.
        after: Option<TxId>,
    },
}
