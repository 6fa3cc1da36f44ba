//! What one push did, row by row, and why it stopped early if it did.

use crate::memory::MemoryError;

/// Per-row outcomes of one push.
#[derive(Debug, Default)]
pub struct PushReport {
    pub stored: usize,
    pub duplicates: usize,
    pub updated: usize,
    /// Staged deletes the server confirmed.
    pub deleted: usize,
    pub failed: usize,
    pub conflicts: usize,
    /// Rows still pending because the server stopped answering; `None` when they could not be
    /// counted (a damaged staging database).
    pub left_pending: Option<usize>,
    /// The server's hash differed from ours (a different Unicode table on the server).
    pub hash_mismatches: usize,
    pub lines: Vec<String>,
    /// Why the push stopped early (the server unusable); the rest stays pending.
    pub stopped: Option<MemoryError>,
}

impl PushReport {
    pub fn pushed(&self) -> usize {
        self.stored + self.duplicates + self.updated + self.deleted
    }
}
