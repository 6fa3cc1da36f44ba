//! Where the capture side puts what it captured: the one seam between `sqlite/` and whoever
//! stores and ships the files (`replicate/`). The monitor writes replica-format files through a
//! [`Sink`] and tells it what each one was; what happens next (shipping, compaction, when a
//! fresh snapshot pays off) is the sink's business, so the arrows point from `replicate/` to
//! `sqlite/` only.

use std::io::{self, Write};
use std::path::Path;

use replica_formats::{DbChecksum, Header, ObjectKey, PageSize, TxId};
use thiserror::Error;

/// Shape of the replicated database after a file: what a snapshot policy weighs a fresh
/// snapshot by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbShape {
    /// Database size in pages.
    pub pages: u32,
    /// Page size.
    pub page_size: PageSize,
}

/// What one captured file was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureKind {
    /// Committed WAL frames.
    Segment,
    /// The whole database, read afresh.
    Snapshot,
    /// The pages that differ from the replicated state, after a discontinuity.
    Resync,
}

/// A file the monitor wrote and the state it leaves the replica in.
#[derive(Debug, Clone, Copy)]
pub struct Captured {
    /// Its key (its position is the monitor's new position).
    pub key: ObjectKey,
    /// What it holds.
    pub kind: CaptureKind,
    /// Its size in bytes.
    pub size: u64,
    /// The database after it.
    pub db: DbShape,
}

/// A step of the sink's own housekeeping failed: what it was doing, and why.
#[derive(Debug, Error)]
#[error("{what}: {source}")]
pub struct SinkError {
    /// What was being done ("compacting spool").
    pub what: &'static str,
    /// Why it failed.
    pub source: io::Error,
}

/// The local store of captured files and the listener to what the monitor captures.
///
/// Files are written whole or not at all ([`Sink::write`]); they are read back only at start,
/// to resume where the last run stopped. The notifications come after the monitor's own state
/// moved, on the monitor's thread: they must be quick.
pub trait Sink: Send {
    /// Creates the store if needed; called once the database was found replicable.
    fn prepare(&mut self) -> io::Result<()>;
    /// Where the files live, for messages.
    fn dir(&self) -> &Path;
    /// Every key held, sorted by position.
    fn keys(&self) -> io::Result<Vec<ObjectKey>>;
    /// Header of the file `key`.
    fn header(&self, key: &ObjectKey) -> io::Result<Header>;
    /// The database checksum after the file `key`, from its trailer.
    fn post_checksum(&self, key: &ObjectKey) -> io::Result<DbChecksum>;
    /// The whole file `key`.
    fn read(&self, key: &ObjectKey) -> io::Result<Vec<u8>>;
    /// Writes a file under `key` through `fill` (called once); returns its size. A failure
    /// leaves nothing under `key`.
    fn write(
        &self,
        key: &ObjectKey,
        fill: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<u64>;

    /// A file was written and is now the newest position.
    fn captured(&mut self, file: &Captured);
    /// The monitor resumed at `pos`, a position the store already holds, without writing.
    fn resumed(&mut self, pos: TxId);
    /// The page map of `pos` was saved: a restart after a crash replays the files after it.
    fn map_saved(&mut self, pos: TxId);
    /// Housekeeping between passes (and with `wait`, at shutdown, finishing what runs); true
    /// when a snapshot of the current position is due now.
    fn maintain(&mut self, db: DbShape, wait: bool) -> Result<bool, SinkError>;
}
