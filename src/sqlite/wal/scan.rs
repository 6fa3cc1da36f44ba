//! Reading a WAL forward: the committed frames after a cursor, and one frame re-verified on its
//! own when its page is shipped. Only frames up to the last *commit* frame are ever returned: a
//! transaction whose commit frame is not yet written (or is torn) is invisible, exactly as it is
//! to SQLite.

use std::fs::File;
use std::io;

use replica_formats::PageNo;

use super::{
    Cksum, FRAME_HEADER_LEN, FrameHeader, WAL_HEADER_LEN, WalError, WalHeader, be32, checksum,
    read_exact_at,
};

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
    pub pgno: PageNo,
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
    let mut prev_commit: Option<(PageNo, u32, u64)> = None;
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
            let pgno = match PageNo::new(fh.pgno) {
                Some(p) if fh.salt1 == h.salt1 && fh.salt2 == h.salt2 => p,
                _ => break 'outer,
            };
            let c = checksum(h.big_endian, ck, &fb[..8]);
            let c = checksum(h.big_endian, c, &fb[FRAME_HEADER_LEN as usize..]);
            if c != fh.cksum {
                break 'outer;
            }
            let content = (fh.commit != 0)
                .then(|| replica_formats::page_hash(pgno, &fb[FRAME_HEADER_LEN as usize..]));
            if let (Some(hash), true) = (content, pending.is_empty())
                && prev_commit == Some((pgno, fh.commit, hash))
            {
                scan.repeated_commits += 1;
            }
            pending.push(Frame { pgno, offset: off });
            ck = c;
            off += flen;
            if let Some(hash) = content {
                prev_commit = Some((pgno, fh.commit, hash));
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
        if h.salt1 != header.salt1 || h.salt2 != header.salt2 || h.pgno != frame.pgno.get() {
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

#[cfg(test)]
mod tests {
    use super::super::read_header;
    use super::super::testwal::build_wal;
    use super::*;

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
}
