//! The fixed-size parts of a replica file: the 96-byte header and the
//! 24-byte trailer, plus the limits the variable part must respect.

use crate::error::{FormatError, Result};
use crate::key::{Level, ObjectKey};
use crate::pos::{DbChecksum, PageNo, PageSize, Timestamp, TxId};

/// First four bytes of every replica file.
pub const MAGIC: [u8; 4] = *b"MSYN";
/// Last four bytes of every replica file.
pub const END_MAGIC: [u8; 4] = *b"MEND";
/// The only format version this crate reads and writes.
pub const VERSION: u8 = 1;
/// Size of the header in bytes.
pub const HEADER_LEN: usize = 96;
/// Size of the trailer in bytes (after the run-list terminator).
pub const TRAILER_LEN: usize = 24;
/// Most pages in one run; bounds the pgno list read before any check.
pub const MAX_RUN_PAGES: u32 = 4096;
/// Largest compressed run accepted (64 MiB); bounds the allocation for it.
pub const MAX_COMPRESSED_LEN: u32 = 64 << 20;
/// Header flag: the file ends with a run index (see [`crate::index`]), so a
/// reader can fetch only the runs it needs.
pub const FLAG_RUN_INDEX: u16 = 0x0001;

const HEADER_CRC_OFFSET: usize = 92;

/// What a file contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// Every page of the database at one position.
    Snapshot,
    /// The pages changed over a range of positions.
    Segment,
}

impl FileKind {
    fn to_byte(self) -> u8 {
        match self {
            FileKind::Snapshot => 1,
            FileKind::Segment => 2,
        }
    }

    fn from_byte(b: u8) -> Result<Self> {
        match b {
            1 => Ok(FileKind::Snapshot),
            2 => Ok(FileKind::Segment),
            other => Err(FormatError::UnsupportedFeature(format!(
                "file kind {other}"
            ))),
        }
    }
}

/// Where the source WAL stood after the last transaction in the file.
/// Informational: lets a restarted replicator resume without re-shipping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct WalPosition {
    /// WAL header salt-1.
    pub salt1: u32,
    /// WAL header salt-2.
    pub salt2: u32,
    /// Byte offset in the WAL just past the last shipped commit frame.
    pub offset: u64,
    /// Running WAL checksum, first word, at `offset`.
    pub cksum1: u32,
    /// Running WAL checksum, second word, at `offset`.
    pub cksum2: u32,
    /// WAL header checkpoint sequence number.
    pub ckpt_seq: u32,
}

/// The decoded 96-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Snapshot or segment.
    pub kind: FileKind,
    /// Page size of the database.
    pub page_size: PageSize,
    /// Database size in pages after applying this file.
    pub commit: u32,
    /// First position covered (equals `max_txid` for a snapshot).
    pub min_txid: TxId,
    /// Last position covered.
    pub max_txid: TxId,
    /// Commit time of `max_txid`.
    pub timestamp: Timestamp,
    /// Checksum the database must have before applying (EMPTY for snapshots).
    pub pre_checksum: DbChecksum,
    /// Source WAL position after this file.
    pub wal: WalPosition,
}

impl Header {
    /// Checks the invariants that do not depend on the rest of the file.
    pub fn validate(&self) -> Result<()> {
        if self.min_txid > self.max_txid {
            return Err(FormatError::corrupt(format!(
                "min_txid {} > max_txid {}",
                self.min_txid, self.max_txid
            )));
        }
        if self.commit == 0 {
            return Err(FormatError::corrupt("commit (database size) is 0 pages"));
        }
        if self.kind == FileKind::Snapshot {
            if self.min_txid != self.max_txid {
                return Err(FormatError::corrupt(format!(
                    "snapshot covers a range {}..={}",
                    self.min_txid, self.max_txid
                )));
            }
            if self.pre_checksum != DbChecksum::EMPTY {
                return Err(FormatError::corrupt(format!(
                    "snapshot has nonzero pre_checksum {}",
                    self.pre_checksum
                )));
            }
        }
        Ok(())
    }

    /// The object key this file is stored under (`level` is ignored for
    /// snapshots). A restorer compares it with the key it fetched, so a file
    /// copied to the wrong name is caught before any page is applied.
    pub fn object_key(&self, level: Level) -> ObjectKey {
        match self.kind {
            FileKind::Snapshot => ObjectKey::Snapshot {
                txid: self.max_txid,
                ts: self.timestamp,
            },
            FileKind::Segment => ObjectKey::Segment {
                level,
                min: self.min_txid,
                max: self.max_txid,
                ts: self.timestamp,
            },
        }
    }

    /// Checks that this header agrees with `key`, the name the file was read from: kind, txids
    /// and timestamp (a segment's level is not in the header, and moving a segment between
    /// levels changes nothing it holds). Planning trusts names, so a file copied under another
    /// txid would otherwise be applied as a position it does not hold.
    pub fn check_key(&self, key: &ObjectKey) -> Result<()> {
        let expected = self.object_key(key.level().unwrap_or(Level::ZERO));
        if expected == *key {
            Ok(())
        } else {
            Err(FormatError::KeyMismatch {
                expected: expected.path(),
            })
        }
    }

    /// The lock page for this file's page size.
    pub fn lock_page(&self) -> PageNo {
        PageNo::lock_page(self.page_size)
    }

    /// Number of pages a snapshot of this header must contain: every page
    /// in `1..=commit` except the lock page.
    pub fn snapshot_page_count(&self) -> u32 {
        let lock = self.lock_page().get();
        self.commit - u32::from(lock <= self.commit)
    }

    /// Serializes the header with no flags, CRC included. Does not validate.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        self.bytes_with_flags(0)
    }

    /// Serializes the header with `flags`, CRC included. Does not validate.
    pub(crate) fn bytes_with_flags(&self, flags: u16) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4] = VERSION;
        b[5] = self.kind.to_byte();
        b[6..8].copy_from_slice(&flags.to_le_bytes());
        b[8..12].copy_from_slice(&self.page_size.get().to_le_bytes());
        b[12..16].copy_from_slice(&self.commit.to_le_bytes());
        b[16..24].copy_from_slice(&self.min_txid.get().to_le_bytes());
        b[24..32].copy_from_slice(&self.max_txid.get().to_le_bytes());
        b[32..40].copy_from_slice(&self.timestamp.get().to_le_bytes());
        b[40..48].copy_from_slice(&self.pre_checksum.get().to_le_bytes());
        b[48..52].copy_from_slice(&self.wal.salt1.to_le_bytes());
        b[52..56].copy_from_slice(&self.wal.salt2.to_le_bytes());
        b[56..64].copy_from_slice(&self.wal.offset.to_le_bytes());
        b[64..68].copy_from_slice(&self.wal.cksum1.to_le_bytes());
        b[68..72].copy_from_slice(&self.wal.cksum2.to_le_bytes());
        b[72..76].copy_from_slice(&self.wal.ckpt_seq.to_le_bytes());
        // 76..92 reserved = 0
        let crc = crc32fast::hash(&b[..HEADER_CRC_OFFSET]);
        b[HEADER_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses and validates a header.
    pub fn from_bytes(b: &[u8; HEADER_LEN]) -> Result<Self> {
        Self::parse(b).map(|(h, _)| h)
    }

    /// Parses and validates a header; also says whether the file has a run
    /// index ([`FLAG_RUN_INDEX`]), the only flag this version knows.
    pub fn parse(b: &[u8; HEADER_LEN]) -> Result<(Self, bool)> {
        let magic = arr4(b, 0);
        if magic != MAGIC {
            return Err(FormatError::BadMagic { found: magic });
        }
        // Version before CRC: a future version may lay the header out
        // differently, and "unsupported version" is the useful message then.
        if b[4] != VERSION {
            return Err(FormatError::UnsupportedVersion(b[4]));
        }
        let stored = u32_at(b, HEADER_CRC_OFFSET);
        let actual = crc32fast::hash(&b[..HEADER_CRC_OFFSET]);
        if stored != actual {
            return Err(FormatError::checksum(format!(
                "header crc32 stored {stored:08x}, computed {actual:08x}"
            )));
        }
        let kind = FileKind::from_byte(b[5])?;
        let flags = u16::from_le_bytes([b[6], b[7]]);
        if flags & !FLAG_RUN_INDEX != 0 {
            return Err(FormatError::UnsupportedFeature(format!(
                "header flags {flags:#06x}"
            )));
        }
        let page_size = PageSize::new(u32_at(b, 8))?;
        let txid = |off: usize, name: &str| {
            TxId::new(u64_at(b, off)).ok_or_else(|| FormatError::corrupt(format!("{name} is 0")))
        };
        if b[76..HEADER_CRC_OFFSET].iter().any(|&x| x != 0) {
            return Err(FormatError::corrupt(
                "reserved header bytes 76..92 are not zero",
            ));
        }
        let h = Header {
            kind,
            page_size,
            commit: u32_at(b, 12),
            min_txid: txid(16, "min_txid")?,
            max_txid: txid(24, "max_txid")?,
            timestamp: Timestamp::from_millis(u64_at(b, 32) as i64),
            pre_checksum: DbChecksum::from_raw(u64_at(b, 40)),
            wal: WalPosition {
                salt1: u32_at(b, 48),
                salt2: u32_at(b, 52),
                offset: u64_at(b, 56),
                cksum1: u32_at(b, 64),
                cksum2: u32_at(b, 68),
                ckpt_seq: u32_at(b, 72),
            },
        };
        h.validate()?;
        Ok((h, flags & FLAG_RUN_INDEX != 0))
    }
}

/// The decoded trailer (minus its CRC and end magic, which are checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Trailer {
    /// Number of pages in all runs of the file.
    pub total_pages: u32,
    /// Checksum of the database after applying this file.
    pub post_checksum: DbChecksum,
}

impl Trailer {
    /// The 16 bytes of trailer fields covered by the file CRC; `index_len` is
    /// the run index's length (0 for a file without one).
    pub(crate) fn field_bytes(&self, index_len: u32) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&self.total_pages.to_le_bytes());
        b[4..12].copy_from_slice(&self.post_checksum.get().to_le_bytes());
        b[12..16].copy_from_slice(&index_len.to_le_bytes());
        b
    }

    /// Parses the trailer fields of a file whose run index is `index_len`
    /// bytes long (0: none); the caller checks CRC and end magic.
    pub(crate) fn from_field_bytes(b: &[u8; 16], index_len: u32) -> Result<Self> {
        let stored = u32_at(b, 12);
        if stored != index_len {
            return Err(FormatError::corrupt(if index_len == 0 {
                "reserved trailer field is not zero".to_owned()
            } else {
                format!("trailer says the run index is {stored} bytes, runs make it {index_len}")
            }));
        }
        Ok(Trailer {
            total_pages: u32_at(b, 0),
            post_checksum: DbChecksum::from_raw(u64_at(b, 4)),
        })
    }
}

fn arr4(b: &[u8], off: usize) -> [u8; 4] {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    a
}

pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(arr4(b, off))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: FileKind, min: u64, max: u64) -> Header {
        Header {
            kind,
            page_size: PageSize::new(4096).unwrap(),
            commit: 2,
            min_txid: TxId::new(min).unwrap(),
            max_txid: TxId::new(max).unwrap(),
            timestamp: Timestamp::from_millis(1000),
            pre_checksum: DbChecksum::EMPTY,
            wal: WalPosition::default(),
        }
    }

    #[test]
    fn check_key_accepts_only_the_name_the_header_describes() {
        let snap = header(FileKind::Snapshot, 5, 5);
        let seg = header(FileKind::Segment, 3, 7);
        let l2 = Level::new(2).unwrap();
        assert!(snap.check_key(&snap.object_key(Level::ZERO)).is_ok());
        assert!(seg.check_key(&seg.object_key(l2)).is_ok());
        let renamed = ObjectKey::Snapshot {
            txid: TxId::new(9).unwrap(),
            ts: snap.timestamp,
        };
        let err = snap.check_key(&renamed).unwrap_err();
        assert!(matches!(err, FormatError::KeyMismatch { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(&snap.object_key(Level::ZERO).path())
        );
        for wrong in [
            ObjectKey::Segment {
                level: l2,
                min: seg.min_txid,
                max: TxId::new(8).unwrap(),
                ts: seg.timestamp,
            },
            ObjectKey::Segment {
                level: l2,
                min: TxId::new(4).unwrap(),
                max: seg.max_txid,
                ts: seg.timestamp,
            },
            ObjectKey::Segment {
                level: l2,
                min: seg.min_txid,
                max: seg.max_txid,
                ts: Timestamp::from_millis(999),
            },
            snap.object_key(Level::ZERO),
        ] {
            assert!(seg.check_key(&wrong).is_err(), "{}", wrong.path());
        }
        // A snapshot read from a segment key (and the reverse) is a mismatch too.
        assert!(snap.check_key(&seg.object_key(Level::ZERO)).is_err());
    }
}
