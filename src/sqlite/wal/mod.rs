//! SQLite WAL file format: header, frame headers, salts and the cumulative checksum, as pure
//! functions over bytes, plus the few positioned reads of them. Reading committed frames
//! forward is `scan.rs`.

use std::fs::File;
use std::io;

use replica_formats::PageSize;
use thiserror::Error;

mod scan;

pub use scan::{Frame, Scan, WalCursor, read_verified_frame, scan_committed};

/// Size of the WAL file header.
pub const WAL_HEADER_LEN: u64 = 32;
/// Size of a frame header (before the page image).
pub const FRAME_HEADER_LEN: u64 = 24;
const MAGIC_LE: u32 = 0x377f_0682;
const MAGIC_BE: u32 = 0x377f_0683;
const WAL_VERSION: u32 = 3_007_000;

/// Why a WAL could not be read.
#[derive(Debug, Error)]
pub enum WalError {
    /// Reading the file failed.
    #[error("reading WAL: {0}")]
    Io(#[from] io::Error),
    /// The header is not a valid WAL header (bad magic, version, page size or checksum).
    #[error("invalid WAL header: {0}")]
    BadHeader(&'static str),
}

/// The two running checksum words of SQLite's WAL checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cksum(pub u32, pub u32);

/// Parsed WAL header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalHeader {
    /// True when checksums are computed over big-endian words (magic 0x377f0683).
    pub big_endian: bool,
    /// Database page size.
    pub page_size: PageSize,
    /// Checkpoint sequence number: incremented by SQLite every time the WAL restarts.
    pub ckpt_seq: u32,
    /// Salt-1: incremented on every WAL restart.
    pub salt1: u32,
    /// Salt-2: a fresh random value on every WAL restart.
    pub salt2: u32,
    /// Checksum over the first 24 header bytes; seeds the frame checksum chain.
    pub cksum: Cksum,
}

impl WalHeader {
    /// Parses and verifies a 32-byte header.
    pub fn parse(b: &[u8]) -> Result<Self, WalError> {
        if b.len() < WAL_HEADER_LEN as usize {
            return Err(WalError::BadHeader("shorter than 32 bytes"));
        }
        let big_endian = match be32(b, 0) {
            MAGIC_LE => false,
            MAGIC_BE => true,
            _ => return Err(WalError::BadHeader("bad magic")),
        };
        if be32(b, 4) != WAL_VERSION {
            return Err(WalError::BadHeader("unsupported version"));
        }
        let raw_ps = be32(b, 8);
        let page_size = PageSize::new(if raw_ps == 1 { 65536 } else { raw_ps })
            .map_err(|_| WalError::BadHeader("bad page size"))?;
        let cksum = Cksum(be32(b, 24), be32(b, 28));
        if checksum(big_endian, Cksum::default(), &b[..24]) != cksum {
            return Err(WalError::BadHeader("header checksum mismatch"));
        }
        Ok(WalHeader {
            big_endian,
            page_size,
            ckpt_seq: be32(b, 12),
            salt1: be32(b, 16),
            salt2: be32(b, 20),
            cksum,
        })
    }

    /// Size in bytes of one frame (header plus page).
    pub fn frame_len(&self) -> u64 {
        FRAME_HEADER_LEN + u64::from(self.page_size.get())
    }
}

/// One frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Page number this frame carries.
    pub pgno: u32,
    /// For a commit frame, the database size in pages after the commit; 0 otherwise.
    pub commit: u32,
    /// Salts, which must equal the WAL header's.
    pub salt1: u32,
    /// Second salt.
    pub salt2: u32,
    /// Cumulative checksum up to and including this frame.
    pub cksum: Cksum,
}

impl FrameHeader {
    /// Parses a 24-byte frame header.
    pub fn parse(b: &[u8]) -> Self {
        FrameHeader {
            pgno: be32(b, 0),
            commit: be32(b, 4),
            salt1: be32(b, 8),
            salt2: be32(b, 12),
            cksum: Cksum(be32(b, 16), be32(b, 20)),
        }
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// SQLite's WAL checksum: over pairs of 32-bit words, `s0 += x0 + s1; s1 += x1 + s0`.
/// `data.len()` must be a multiple of 8 (always true for headers and pages).
pub fn checksum(big_endian: bool, seed: Cksum, data: &[u8]) -> Cksum {
    let (mut s0, mut s1) = (seed.0, seed.1);
    for w in data.chunks_exact(8) {
        let (x0, x1) = if big_endian {
            (
                u32::from_be_bytes([w[0], w[1], w[2], w[3]]),
                u32::from_be_bytes([w[4], w[5], w[6], w[7]]),
            )
        } else {
            (
                u32::from_le_bytes([w[0], w[1], w[2], w[3]]),
                u32::from_le_bytes([w[4], w[5], w[6], w[7]]),
            )
        };
        s0 = s0.wrapping_add(x0).wrapping_add(s1);
        s1 = s1.wrapping_add(x1).wrapping_add(s0);
    }
    Cksum(s0, s1)
}

/// Reads the WAL header of `file`, or `None` if the file is shorter than a header (empty WAL).
pub fn read_header(file: &File) -> Result<Option<WalHeader>, WalError> {
    let mut b = [0u8; WAL_HEADER_LEN as usize];
    match read_exact_at(file, &mut b, 0) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    if b.iter().all(|&x| x == 0) {
        return Ok(None);
    }
    WalHeader::parse(&b).map(Some)
}

/// The running checksum recorded in the header of the frame at `offset`.
pub fn stored_cksum(file: &File, offset: u64) -> io::Result<Cksum> {
    let mut b = [0u8; 8];
    read_exact_at(file, &mut b, offset + 16)?;
    Ok(Cksum(be32(&b, 0), be32(&b, 4)))
}

/// The header of the frame at `offset`.
pub fn read_frame_header(file: &File, offset: u64) -> io::Result<FrameHeader> {
    let mut fh = [0u8; FRAME_HEADER_LEN as usize];
    read_exact_at(file, &mut fh, offset)?;
    Ok(FrameHeader::parse(&fh))
}

/// `pread` until `buf` is full; `UnexpectedEof` if the file is shorter.
pub fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    crate::platform::read_exact_at(file, buf, offset)
}

#[cfg(test)]
pub(crate) mod testwal {
    use super::*;

    /// Builds a WAL image the way SQLite does, for tests of the parser.
    pub(crate) fn build_wal(
        big_endian: bool,
        page_size: u32,
        salts: (u32, u32),
        frames: &[(u32, u32, u8)],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(if big_endian { MAGIC_BE } else { MAGIC_LE }).to_be_bytes());
        out.extend_from_slice(&WAL_VERSION.to_be_bytes());
        out.extend_from_slice(&page_size.to_be_bytes());
        out.extend_from_slice(&7u32.to_be_bytes());
        out.extend_from_slice(&salts.0.to_be_bytes());
        out.extend_from_slice(&salts.1.to_be_bytes());
        let c = checksum(big_endian, Cksum::default(), &out[..24]);
        out.extend_from_slice(&c.0.to_be_bytes());
        out.extend_from_slice(&c.1.to_be_bytes());
        let mut ck = c;
        for &(pgno, commit, fill) in frames {
            let mut fh = Vec::new();
            fh.extend_from_slice(&pgno.to_be_bytes());
            fh.extend_from_slice(&commit.to_be_bytes());
            let page = vec![fill; page_size as usize];
            ck = checksum(big_endian, ck, &fh);
            ck = checksum(big_endian, ck, &page);
            fh.extend_from_slice(&salts.0.to_be_bytes());
            fh.extend_from_slice(&salts.1.to_be_bytes());
            fh.extend_from_slice(&ck.0.to_be_bytes());
            fh.extend_from_slice(&ck.1.to_be_bytes());
            out.extend_from_slice(&fh);
            out.extend_from_slice(&page);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testwal::build_wal;
    use super::*;

    #[test]
    fn bad_header_rejected() {
        let mut wal = build_wal(false, 512, (1, 2), &[]);
        wal[20] ^= 1;
        assert!(WalHeader::parse(&wal).is_err());
        assert!(WalHeader::parse(&wal[..10]).is_err());
    }
}
