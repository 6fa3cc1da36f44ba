//! Fixtures for tests, here and in memsync's (feature `testkit`): object keys (positions and
//! timestamps in whole seconds, so a file's key reads as its position, or timestamps given) and
//! small segment files.

use crate::encode::{EncodeOptions, FileEncoder};
use crate::header::{FileKind, Header, WalPosition};
use crate::key::{Level, ObjectKey};
use crate::pos::{DbChecksum, PageNo, PageSize, Timestamp, TxId};

/// Page size of [`segment`]'s files.
pub const PAGE_SIZE: u32 = 512;

/// Position `v` (nonzero).
pub fn tx(v: u64) -> TxId {
    TxId::new(v).unwrap()
}

/// A snapshot at position `t`, taken at second `t`.
pub fn snap(t: u64) -> ObjectKey {
    ObjectKey::Snapshot {
        txid: tx(t),
        ts: Timestamp::from_millis(t as i64 * 1000),
    }
}

/// A segment of `level` from `min` to `max`, written at second `max`.
pub fn seg(level: u8, min: u64, max: u64) -> ObjectKey {
    ObjectKey::Segment {
        level: Level::new(level).unwrap(),
        min: tx(min),
        max: tx(max),
        ts: Timestamp::from_millis(max as i64 * 1000),
    }
}

/// A segment of `level` from `min` to `max`, written at `ts_ms`.
pub fn seg_at(level: u8, min: u64, max: u64, ts_ms: i64) -> ObjectKey {
    ObjectKey::Segment {
        level: Level::new(level).unwrap(),
        min: tx(min),
        max: tx(max),
        ts: Timestamp::from_millis(ts_ms),
    }
}

/// A snapshot at position `txid`, taken at `ts_ms`.
pub fn snap_at(txid: u64, ts_ms: i64) -> ObjectKey {
    ObjectKey::Snapshot {
        txid: tx(txid),
        ts: Timestamp::from_millis(ts_ms),
    }
}

/// The bytes of a segment at position `txid` (timestamp `txid` ms) leaving the database at
/// `commit` pages of [`PAGE_SIZE`] bytes; each `(page, fill)` is a page filled with `fill`.
/// Two pages per run, so a few pages make several runs. Its checksums are not meaningful.
pub fn segment(txid: u64, commit: u32, pages: &[(u32, u8)]) -> Vec<u8> {
    let h = Header {
        kind: FileKind::Segment,
        page_size: PageSize::new(PAGE_SIZE).unwrap(),
        commit,
        min_txid: tx(txid),
        max_txid: tx(txid),
        timestamp: Timestamp::from_millis(txid as i64),
        pre_checksum: DbChecksum::EMPTY,
        wal: WalPosition::default(),
    };
    let opts = EncodeOptions {
        pages_per_run: 2,
        ..Default::default()
    };
    let mut enc = FileEncoder::new(Vec::new(), &h, opts).unwrap();
    for &(p, fill) in pages {
        enc.write_page(PageNo::new(p).unwrap(), &vec![fill; PAGE_SIZE as usize])
            .unwrap();
    }
    enc.finish(DbChecksum::EMPTY).unwrap().0
}
