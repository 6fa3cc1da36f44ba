//! The on-replica file format of memsync, an SQLite WAL replicator.
//!
//! A replica is a directory (or object-store prefix) of immutable files:
//! snapshots (every page of the database at one position) and segments (the
//! pages changed over a range of positions, possibly compacted into higher
//! levels). This crate names them ([`key`]), encodes and decodes them
//! ([`encode`], [`decode`]), checksums database states ([`checksum`]),
//! chooses which to apply for a restore ([`plan`]), merges segments
//! ([`merge`]) and plans the replicator's upkeep: which segments to compact
//! ([`compaction`]), what a replica needs next and what retention may delete
//! ([`retention`]). It does no I/O of its own beyond `std::io::Read`/`Write`;
//! see `README.md` for the byte-level spec.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod checksum;
pub mod compaction;
pub mod decode;
pub mod encode;
pub mod error;
pub mod header;
pub mod index;
pub mod key;
pub mod lineage;
pub mod merge;
pub mod plan;
pub mod points;
pub mod pos;
pub mod retention;

pub use checksum::{db_checksum, page_hash};
pub use compaction::{FAN_IN, Merge, plan_compaction, watermark};
pub use decode::{DecodedFile, DecodedRun, FileDecoder, RawRun, decode_file};
pub use encode::{EncodeOptions, EncodedRun, FileEncoder, MAX_ENCODE_RUN_BYTES, encode_run};
pub use error::{FormatError, ParseTxIdError, PlanError, Result};
pub use header::{
    FLAG_RUN_INDEX, FileKind, HEADER_LEN, Header, MAX_COMPRESSED_LEN, MAX_RUN_PAGES, TRAILER_LEN,
    Trailer, WalPosition,
};
pub use index::{FileIndex, RunEntry, index_len, index_of, parse_index, read_run};
pub use key::{Level, ObjectKey, SEGMENTS_DIR, SNAPSHOTS_DIR};
pub use lineage::{LINEAGE_OBJECT, Lineage, LineageId};
pub use merge::merge_segments;
pub use plan::{RestorePlan, Target, chain_from, hole_after, plan_restore};
pub use points::{Point, RestorePoints, Stretch, restorable_positions, restore_points};
pub use pos::{DbChecksum, PageNo, PageSize, Timestamp, TxId};
pub use retention::{chain_after, refine_chain, restorable_end, retention_victims};

#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
#[cfg(test)]
mod tests;
