//! Typed positions and sizes, so a page number is never confused with a txid.

use std::fmt;
use std::num::{NonZeroU32, NonZeroU64};
use std::str::FromStr;

use crate::error::{FormatError, ParseTxIdError};

/// Replication position: increments by one per shipped batch of transactions.
///
/// Nonzero so that "no position yet" is spelled `Option<TxId>` rather than a
/// magic zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxId(NonZeroU64);

impl TxId {
    /// The first position of every replica.
    pub const FIRST: TxId = TxId(NonZeroU64::MIN);

    /// Wraps `v`; `None` for zero.
    pub const fn new(v: u64) -> Option<Self> {
        match NonZeroU64::new(v) {
            Some(n) => Some(Self(n)),
            None => None,
        }
    }

    /// The raw value.
    pub const fn get(self) -> u64 {
        self.0.get()
    }

    /// The following position. Saturates at `u64::MAX`, which no replica
    /// reaches at one batch per commit.
    pub const fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl fmt::Display for TxId {
    /// Fixed-width lowercase hex, so that names sort lexicographically.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.get())
    }
}

impl FromStr for TxId {
    type Err = ParseTxIdError;

    /// Accepts 1..=16 hex digits (either case), nothing else: no sign, no
    /// `0x`, no whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseTxIdError {
            input: s.chars().take(64).collect(),
        };
        if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err());
        }
        let v = u64::from_str_radix(s, 16).map_err(|_| err())?;
        TxId::new(v).ok_or_else(err)
    }
}

/// SQLite page number, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageNo(NonZeroU32);

impl PageNo {
    /// Page 1, the one holding the database header.
    pub const FIRST: PageNo = PageNo(NonZeroU32::MIN);

    /// Wraps `v`; `None` for zero.
    pub const fn new(v: u32) -> Option<Self> {
        match NonZeroU32::new(v) {
            Some(n) => Some(Self(n)),
            None => None,
        }
    }

    /// The raw value.
    pub const fn get(self) -> u32 {
        self.0.get()
    }

    /// The page containing byte offset 2^30 (SQLite's `PENDING_BYTE`), which
    /// SQLite reserves for file locks and never stores data in. Replica files
    /// never contain it.
    pub const fn lock_page(page_size: PageSize) -> PageNo {
        let n = 0x4000_0000 / page_size.get() + 1;
        match NonZeroU32::new(n) {
            Some(n) => PageNo(n),
            None => PageNo::FIRST, // unreachable: n >= 1
        }
    }

    /// Whether this is the lock page for `page_size`.
    pub const fn is_lock_page(self, page_size: PageSize) -> bool {
        self.get() == Self::lock_page(page_size).get()
    }
}

impl fmt::Display for PageNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.get())
    }
}

/// Database page size: a power of two in 512..=65536, as SQLite allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageSize(u32);

impl PageSize {
    /// Smallest page size SQLite supports.
    pub const MIN: u32 = 512;
    /// Largest page size SQLite supports.
    pub const MAX: u32 = 65536;

    /// Validates `v`.
    pub const fn new(v: u32) -> Result<Self, FormatError> {
        if v >= Self::MIN && v <= Self::MAX && v.is_power_of_two() {
            Ok(Self(v))
        } else {
            Err(FormatError::InvalidPageSize(v))
        }
    }

    /// The size in bytes.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The size in bytes, for slicing.
    pub const fn as_usize(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for PageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Checksum of a whole database state: XOR of [`page_hash`](crate::page_hash)
/// over every page except the lock page.
///
/// XOR makes it order-independent and incrementally updatable: overwriting a
/// page toggles out its old hash and toggles in the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DbChecksum(u64);

impl DbChecksum {
    /// Checksum of a database with no pages (the identity of XOR).
    pub const EMPTY: DbChecksum = DbChecksum(0);

    /// Wraps a raw value (as stored in a file header or trailer).
    pub const fn from_raw(v: u64) -> Self {
        Self(v)
    }

    /// Toggles one page hash in or out.
    pub fn toggle(&mut self, hash: u64) {
        self.0 ^= hash;
    }

    /// The raw value.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for DbChecksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Wall-clock time in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Wraps milliseconds since the epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the epoch.
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Timestamp {
    /// Milliseconds since the epoch, as a decimal integer.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txid_display_and_parse() {
        let t = TxId::new(0xabc).unwrap();
        assert_eq!(t.to_string(), "0000000000000abc");
        assert_eq!("0000000000000abc".parse::<TxId>().unwrap(), t);
        assert_eq!("ABC".parse::<TxId>().unwrap(), t);
        assert_eq!("ffffffffffffffff".parse::<TxId>().unwrap().get(), u64::MAX);
        for bad in [
            "",
            "0",
            "0000",
            "+1",
            "0x1",
            " 1",
            "1 ",
            "g",
            "10000000000000000",
            "é",
        ] {
            assert!(bad.parse::<TxId>().is_err(), "{bad:?}");
        }
        assert_eq!(t.next().get(), 0xabd);
        assert!(TxId::new(0).is_none());
    }

    #[test]
    fn lock_page() {
        let ps = PageSize::new(4096).unwrap();
        assert_eq!(PageNo::lock_page(ps).get(), 262_145);
        assert!(PageNo::new(262_145).unwrap().is_lock_page(ps));
        assert!(!PageNo::new(262_144).unwrap().is_lock_page(ps));
        let ps = PageSize::new(65536).unwrap();
        assert_eq!(PageNo::lock_page(ps).get(), 16_385);
    }

    #[test]
    fn page_size_validation() {
        for ok in [512, 1024, 4096, 65536] {
            assert_eq!(PageSize::new(ok).unwrap().get(), ok);
        }
        for bad in [0, 256, 511, 513, 3000, 131_072, u32::MAX] {
            assert!(PageSize::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn checksum_toggle() {
        let mut c = DbChecksum::EMPTY;
        c.toggle(0xdead);
        c.toggle(0xbeef);
        c.toggle(0xdead);
        assert_eq!(c.get(), 0xbeef);
        assert_eq!(c.to_string(), "000000000000beef");
    }
}
