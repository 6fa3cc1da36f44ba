//! Where capture stands: the replicated position and the page map of the state it names, and
//! what was read from the WAL but not yet written (gathered frames, a carried tail). Spool
//! writes move it; a discontinuity marks it for a resynchronisation.

use replica_formats::{PageSize, TxId};

use super::carry::Carry;
use super::pagemap::PageMap;
use super::sink::DbShape;
use super::wal::Scan;

/// The capture cursor of one database.
pub(super) struct Cursor {
    /// Last position written to the spool.
    pub(super) pos: Option<TxId>,
    /// Page hashes of the state at `pos`.
    pub(super) map: PageMap,
    /// Frames polled but not yet written (see `gather_wal`).
    pub(super) pending: Option<Scan>,
    /// Committed pages read but not yet written (a checkpoint's tail, what an application's
    /// checkpoint made memsync copy), for the next segment (`carry.rs`).
    pub(super) carry: Option<Carry>,
    /// Set when the frames can no longer be trusted to follow `pos` (a write failed, the WAL
    /// restarted unprotected): the next sync ships the pages that differ instead.
    pub(super) needs_resync: bool,
}

impl Cursor {
    /// Nothing replicated yet, for a database of `page_size`.
    pub(super) fn new(page_size: PageSize) -> Self {
        Cursor {
            pos: None,
            map: PageMap::new(page_size),
            pending: None,
            carry: None,
            needs_resync: false,
        }
    }

    /// The position the next file takes.
    pub(super) fn next_txid(&self) -> TxId {
        self.pos.map_or(TxId::new(1).expect("nonzero"), TxId::next)
    }

    /// Drops what was read but not written: a full read of the database covers it.
    pub(super) fn discard_unwritten(&mut self) {
        self.pending = None;
        self.carry = None;
    }

    /// True when everything read is written and follows on from `pos`.
    pub(super) fn settled(&self) -> bool {
        !self.needs_resync && self.pending.is_none() && self.carry.is_none() && self.pos.is_some()
    }

    /// The database as replicated now.
    pub(super) fn shape(&self) -> DbShape {
        DbShape {
            pages: self.map.commit(),
            page_size: self.map.page_size(),
        }
    }
}
