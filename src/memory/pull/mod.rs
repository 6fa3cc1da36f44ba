//! `pull`: brings the server's memories into the local mcp-memory-service database.
//!
//! The server's state comes from one of two [`source`]s: a **replica** of the server's database
//! (restored to a temporary file and read with embeddings and tombstones) or the **REST API**
//! (no embeddings; rows get the service's own `embedding_pending` flag). Both become a list of
//! [`RemoteRecord`]s, compared three ways — server now, local database now, and the server's
//! fields at the last pull (the base kept in staging) — into a [`Plan`] (`--dry-run` prints it),
//! which [`apply`] carries out in short transactions. Staged rows are never dropped: a local
//! change that meets a different remote change is a conflict, settled by the configured policy
//! with the losing side kept in the conflict record.

mod apply;
mod fresh;
mod plan;
mod source;

use super::hash::ContentHash;
pub use apply::apply;
pub use fresh::{Freshened, freshen};
pub use plan::{ConflictSide, Plan, confirm_removals, plan};

pub use source::{
    RemoteRecord, RemoteState, bootstrap_from_replica, fetch_replica, fetch_rest, list_tombstones,
};

/// Options of one pull.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    pub dry_run: bool,
    /// The server's version wins over local edits and conflicts.
    pub force: bool,
    /// Only memories carrying any of these tags (normalised as the server does).
    pub tags: Vec<String>,
}

/// The outcome of a pull.
#[derive(Debug, Default)]
pub struct PullReport {
    pub source: String,
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    pub staged_local: usize,
    /// Memories the server lost (no longer held, no delete on record): staged to send again.
    pub resent: usize,
    /// Dry run: local edits meeting a conflict that the policy settles into a row to push.
    pub conflicts_to_push: usize,
    pub confirmed: usize,
    pub conflicts: usize,
    pub open_conflicts: usize,
    pub unchanged: usize,
    pub dry_run: bool,
    /// Replica pulls: memories the replica shows differently from this machine that the server
    /// was asked about, how many it holds newer than the replica, and why it could not be asked
    /// (those memories are left for the next pull).
    pub asked: usize,
    pub replica_behind: usize,
    pub unconfirmed: usize,
    pub unconfirmed_why: Option<String>,
    /// Local rows the local service changed while the pull ran: left as they are, for the
    /// next sync to settle.
    pub edited_meanwhile: usize,
    /// The local database did not exist and was restored from the server's replica.
    pub bootstrapped: bool,
    /// `--dry-run`: one line per planned change.
    pub details: Vec<String>,
    /// `--dry-run`: the hashes the server holds live and those the pull would remove locally,
    /// so that `sync --dry-run` can tell which local memories its staging step would take.
    pub server_live: std::collections::HashSet<ContentHash>,
    pub removals: Vec<ContentHash>,
}
