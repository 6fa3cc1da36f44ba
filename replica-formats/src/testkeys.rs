//! Object keys for the planners' tests: positions and timestamps in whole seconds, so a
//! file's key reads as its position.

use crate::key::{Level, ObjectKey};
use crate::pos::{Timestamp, TxId};

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
