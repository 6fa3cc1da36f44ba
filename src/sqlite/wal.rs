//! SQLite WAL file parsing: header, frames, salts and the cumulative checksum.
//!
//! Pure functions over bytes plus a small incremental scanner that reads new frames from an
//! open file. Only frames up to the last *commit* frame are ever returned: a transaction whose
//! commit frame is not yet written (or is torn) is invisible, exactly as it is to SQLite.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use thiserror::Error;

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
    pub page_size: u32,
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
        let page_size = if raw_ps == 1 { 65536 } else { raw_ps };
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(WalError::BadHeader("bad page size"));
        }
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
        FRAME_HEADER_LEN + self.page_size as u64
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

/// Where a reader stands in one WAL generation: the byte offset of the next frame and the
/// running checksum after the previous frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalCursor {
    /// Header of the generation being read.
    pub header: WalHeader,
    /// Byte offset just past the last frame consumed (32 = no frame yet).
    pub offset: u64,
    /// Running checksum after the last consumed frame (the header checksum if none).
    pub cksum: Cksum,
}

impl WalCursor {
    /// A cursor at the first frame of the generation described by `header`.
    pub fn start(header: WalHeader) -> Self {
        WalCursor {
            header,
            offset: WAL_HEADER_LEN,
            cksum: header.cksum,
        }
    }

    /// Number of frames before the cursor.
    pub fn frame_count(&self) -> u64 {
        (self.offset - WAL_HEADER_LEN) / self.header.frame_len()
    }
}

/// A committed frame found by [`scan_committed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Page number.
    pub pgno: u32,
    /// Offset of the frame header in the WAL file.
    pub offset: u64,
}

/// Result of scanning forward: every frame of every transaction committed after the cursor.
#[derive(Debug, Default)]
pub struct Scan {
    /// Frames in WAL order (all belong to committed transactions).
    pub frames: Vec<Frame>,
    /// Database size in pages after the last commit, if any commit was found.
    pub commit: Option<u32>,
    /// Number of committed transactions found (commit frames).
    pub transactions: u64,
    /// Commit frames identical to the commit frame just before them (page, size, content).
    /// SQLite pads a commit to a sector boundary that way when powersafe overwrite is off, so
    /// such a frame may not be a transaction of its own: counts that must be exact refuse them.
    pub repeated_commits: u64,
}

impl Scan {
    /// Appends the scan that follows this one in the same WAL generation.
    pub fn append(&mut self, next: Scan) {
        self.frames.extend(next.frames);
        self.commit = next.commit.or(self.commit);
        self.transactions += next.transactions;
        self.repeated_commits += next.repeated_commits;
    }
}

/// Reads frames from `cursor` to the end of the file (or `max_bytes` past the cursor, stopping at a
/// commit boundary) and returns those of committed transactions; advances `cursor` past the last
/// commit frame. Stops silently at the first frame with wrong salts or checksum: that is where
/// SQLite itself would stop (a torn or stale frame), not an error.
///
/// `last_frame`, when known (SQLite's WAL index publishes it), bounds the scan: frames past the
/// last commit SQLite published are not committed yet in SQLite's eyes (a writer that dies
/// before publishing loses them) and must not be shipped.
pub fn scan_committed(
    file: &File,
    cursor: &mut WalCursor,
    max_bytes: u64,
    last_frame: Option<u64>,
    buf: &mut Vec<u8>,
) -> Result<Scan, WalError> {
    let h = cursor.header;
    let flen = h.frame_len();
    let mut file_len = file.metadata()?.len();
    if let Some(last) = last_frame {
        file_len = file_len.min(WAL_HEADER_LEN + last * flen);
    }
    let start = cursor.offset;
    // The previous frame, when it was a commit frame: its page, size field and content hash.
    let mut prev_commit: Option<(u32, u32, u64)> = None;
    let mut scan = Scan::default();
    let mut pending: Vec<Frame> = Vec::new();
    let mut off = cursor.offset;
    let mut ck = cursor.cksum;
    // Read in chunks of up to 64 frames to keep syscalls few and memory bounded; the buffer is
    // the caller's so a steady stream of polls allocates nothing.
    let chunk_frames = 64u64;
    buf.resize((flen * chunk_frames) as usize, 0);
    'outer: while off + flen <= file_len {
        let n = ((file_len - off) / flen).min(chunk_frames);
        let want = (n * flen) as usize;
        read_exact_at(file, &mut buf[..want], off)?;
        for i in 0..n as usize {
            let fb = &buf[i * flen as usize..(i + 1) * flen as usize];
            let fh = FrameHeader::parse(fb);
            if fh.salt1 != h.salt1 || fh.salt2 != h.salt2 || fh.pgno == 0 {
                break 'outer;
            }
            let c = checksum(h.big_endian, ck, &fb[..8]);
            let c = checksum(h.big_endian, c, &fb[FRAME_HEADER_LEN as usize..]);
            if c != fh.cksum {
                break 'outer;
            }
            let content = (fh.commit != 0).then(|| {
                let pgno = replica_formats::PageNo::new(fh.pgno).expect("checked nonzero");
                replica_formats::page_hash(pgno, &fb[FRAME_HEADER_LEN as usize..])
            });
            if let (Some(hash), true) = (content, pending.is_empty())
                && prev_commit == Some((fh.pgno, fh.commit, hash))
            {
                scan.repeated_commits += 1;
            }
            pending.push(Frame {
                pgno: fh.pgno,
                offset: off,
            });
            ck = c;
            off += flen;
            if let Some(hash) = content {
                prev_commit = Some((fh.pgno, fh.commit, hash));
                scan.frames.append(&mut pending);
                scan.commit = Some(fh.commit);
                scan.transactions += 1;
                cursor.offset = off;
                cursor.cksum = c;
                if off - start >= max_bytes && max_bytes > 0 {
                    break 'outer;
                }
            } else {
                prev_commit = None;
            }
        }
    }
    Ok(scan)
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

/// Reads one frame and checks it on its own: same salts and page number, and its checksum
/// recomputed from the running checksum recorded in the frame before it (or in the WAL header
/// for the first frame). Returns the page image in `page` if so. A frame of another generation,
/// a torn frame or one overwritten after a restart fails.
pub fn read_verified_frame(
    file: &File,
    header: &WalHeader,
    frame: &Frame,
    page: &mut [u8],
) -> io::Result<bool> {
    let flen = header.frame_len() as usize;
    let fhl = FRAME_HEADER_LEN as usize;
    // One read instead of three (the previous frame's running checksum, this frame's header, its
    // page): shipping a page used to cost three syscalls. The span starts at the checksum in the
    // previous frame's header, so it also carries that frame's page, 4 KB copied for two
    // syscalls saved.
    let (start, skip) = if frame.offset == WAL_HEADER_LEN {
        (frame.offset, 0)
    } else {
        let Some(start) = (frame.offset + 16).checked_sub(flen as u64) else {
            return Ok(false);
        };
        (start, flen - 16)
    };
    SPAN.with_borrow_mut(|buf| {
        buf.resize(skip + flen, 0);
        if read_exact_at(file, buf, start).is_err() {
            return Ok(false);
        }
        let prev = if skip == 0 {
            header.cksum
        } else {
            Cksum(be32(buf, 0), be32(buf, 4))
        };
        let fb = &buf[skip..];
        let h = FrameHeader::parse(fb);
        if h.salt1 != header.salt1 || h.salt2 != header.salt2 || h.pgno != frame.pgno {
            return Ok(false);
        }
        let c = checksum(header.big_endian, prev, &fb[..8]);
        let c = checksum(header.big_endian, c, &fb[fhl..]);
        if c != h.cksum {
            return Ok(false);
        }
        // A WAL written with another page size than the caller's buffer (the database's) is
        // not this database's WAL as the caller sees it: an error, never a panic.
        if page.len() != fb.len() - fhl {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "WAL page size {} differs from the database's {}",
                    fb.len() - fhl,
                    page.len()
                ),
            ));
        }
        page.copy_from_slice(&fb[fhl..]);
        Ok(true)
    })
}

thread_local! {
    /// Scratch for [`read_verified_frame`]: one frame and the tail of the one before it.
    static SPAN: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
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
    file.read_exact_at(buf, offset)
}

#[cfg(test)]
mod tests {
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

    fn write_tmp(bytes: &[u8]) -> (tempfile::TempDir, File) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x-wal");
        std::fs::write(&p, bytes).unwrap();
        let f = File::open(&p).unwrap();
        (d, f)
    }

    #[test]
    fn only_committed_frames_both_byte_orders() {
        for be in [false, true] {
            let wal = build_wal(be, 512, (1, 2), &[(1, 0, 1), (2, 2, 2), (3, 0, 3)]);
            let (_d, f) = write_tmp(&wal);
            let h = read_header(&f).unwrap().unwrap();
            assert_eq!(h.big_endian, be);
            let mut cur = WalCursor::start(h);
            let s = scan_committed(&f, &mut cur, 0, None, &mut Vec::new()).unwrap();
            assert_eq!(s.frames.len(), 2, "uncommitted tail frame must be ignored");
            assert_eq!(s.commit, Some(2));
            assert_eq!(cur.frame_count(), 2);
            let mut page = vec![0u8; 512];
            assert!(read_verified_frame(&f, &h, &s.frames[1], &mut page).unwrap());
            assert_eq!(page[0], 2);
        }
    }

    #[test]
    fn stops_at_bad_checksum_or_salt() {
        let mut wal = build_wal(false, 512, (1, 2), &[(1, 1, 1), (2, 2, 2)]);
        let flen = 24 + 512;
        wal[32 + flen + 30] ^= 0xff; // corrupt the second frame's page
        let (_d, f) = write_tmp(&wal);
        let h = read_header(&f).unwrap().unwrap();
        let mut cur = WalCursor::start(h);
        let s = scan_committed(&f, &mut cur, 0, None, &mut Vec::new()).unwrap();
        assert_eq!(s.frames.len(), 1);
        let stale = build_wal(false, 512, (9, 9), &[(1, 1, 1)]);
        let mut mixed = build_wal(false, 512, (1, 2), &[(1, 1, 1)]);
        mixed.extend_from_slice(&stale[32..]);
        let (_d2, f2) = write_tmp(&mixed);
        let mut cur = WalCursor::start(read_header(&f2).unwrap().unwrap());
        assert_eq!(
            scan_committed(&f2, &mut cur, 0, None, &mut Vec::new())
                .unwrap()
                .frames
                .len(),
            1
        );
    }

    /// A frame overwritten after it was indexed (a restart under the reader, a torn write)
    /// fails verification instead of being shipped.
    #[test]
    fn a_rewritten_frame_fails_verification() {
        let wal = build_wal(false, 512, (1, 2), &[(1, 0, 1), (2, 2, 2), (3, 3, 3)]);
        let (d, f) = write_tmp(&wal);
        let h = read_header(&f).unwrap().unwrap();
        let mut cur = WalCursor::start(h);
        let s = scan_committed(&f, &mut cur, 0, None, &mut Vec::new()).unwrap();
        let mut page = vec![0u8; 512];
        for fr in &s.frames {
            assert!(read_verified_frame(&f, &h, fr, &mut page).unwrap());
        }
        let flen = 24 + 512;
        for (at, what) in [(32 + flen + 100, "page"), (32 + 18, "previous checksum")] {
            let mut bad = wal.clone();
            bad[at] ^= 0xff;
            std::fs::write(d.path().join("x-wal"), &bad).unwrap();
            let f = File::open(d.path().join("x-wal")).unwrap();
            assert!(
                !read_verified_frame(&f, &h, &s.frames[1], &mut page).unwrap(),
                "{what}"
            );
        }
    }

    /// A commit frame repeated byte for byte (SQLite's sector padding) is flagged; a new commit
    /// of the same page with other content is not. The published last frame bounds the scan,
    /// and `max_bytes` counts from where the scan starts, not from the WAL's start.
    #[test]
    fn padding_cap_and_batch_size() {
        let wal = build_wal(
            false,
            512,
            (1, 2),
            &[(1, 1, 1), (1, 1, 1), (1, 1, 2), (2, 2, 3), (3, 3, 4)],
        );
        let (_d, f) = write_tmp(&wal);
        let h = read_header(&f).unwrap().unwrap();
        let mut cur = WalCursor::start(h);
        let s = scan_committed(&f, &mut cur, 0, None, &mut Vec::new()).unwrap();
        assert_eq!((s.transactions, s.repeated_commits), (5, 1));
        let mut cur = WalCursor::start(h);
        let s = scan_committed(&f, &mut cur, 0, Some(3), &mut Vec::new()).unwrap();
        assert_eq!(
            (s.frames.len(), cur.frame_count()),
            (3, 3),
            "stops at the published frame"
        );
        let s = scan_committed(&f, &mut cur, 1, None, &mut Vec::new()).unwrap();
        assert_eq!(
            s.frames.len(),
            1,
            "one transaction past the cursor, not all of them"
        );
    }

    #[test]
    fn bad_header_rejected() {
        let mut wal = build_wal(false, 512, (1, 2), &[]);
        wal[20] ^= 1;
        assert!(WalHeader::parse(&wal).is_err());
        assert!(WalHeader::parse(&wal[..10]).is_err());
    }
}
