//! Reading SQLite's WAL index (the `-shm` file) to learn which frames were committed since the
//! last look, and which page each holds, without reading the WAL itself.
//!
//! Why: under a steady write load the WAL carries about ten times more frames than distinct
//! pages (every transaction rewrites the same b-tree pages), and scanning every frame to verify
//! SQLite's checksum chain was most of the monitor's CPU. SQLite publishes in the index what its
//! own readers trust: a checksummed header, written twice, with the last committed frame
//! (`mxFrame`), the database size and the running checksum after that frame, and for each frame
//! the page number it carries. memsync reads the header the way a SQLite reader does (both
//! copies equal, header checksum valid), checks the last frame against it, and verifies each
//! frame it actually ships against the checksum recorded in the frame before it. Anything
//! unexpected falls back to the full scan of [`super::wal::scan_committed`].
//!
//! Layout (SQLite's `wal.c`; native byte order): the file is divided into 32 KiB regions. The
//! first starts with two copies of the 48-byte header and 40 bytes of checkpoint information
//! (136 bytes), followed by the page numbers of frames 1..=4062; every later region starts with
//! the page numbers of the next 4096 frames. Hash tables follow each array and are not needed.

use std::fs::File;
use std::io;
use std::path::Path;

use super::wal::{self, Cksum, WalHeader};

/// `iVersion` of the index header SQLite writes.
const INDEX_VERSION: u32 = 3_007_000;
/// Bytes of one header copy.
const HEADER_LEN: usize = 48;
/// Both header copies plus the checkpoint information.
const INDEX_HEADER_SIZE: u64 = 136;
/// Size of one index region.
const REGION_BYTES: u64 = 32768;
/// Frames indexed by a region after the first.
const FRAMES_PER_REGION: u64 = 4096;
/// Frames indexed by the first region (its header takes the room of 34 entries).
const FRAMES_FIRST_REGION: u64 = 4062;

/// A WAL index header that passed SQLite's own consistency checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexHeader {
    /// Incremented by every write transaction.
    pub change: u32,
    /// Last committed frame (1-based; 0 = none).
    pub mx_frame: u32,
    /// Database size in pages after that commit.
    pub n_page: u32,
    /// Running checksum after frame `mx_frame`.
    pub frame_cksum: Cksum,
    /// The WAL header's salts, as the bytes the WAL header holds.
    pub salt: [u8; 8],
}

impl IndexHeader {
    /// True when this index describes the WAL generation with header `h`.
    pub fn describes(&self, h: &WalHeader) -> bool {
        self.salt[..4] == h.salt1.to_be_bytes() && self.salt[4..] == h.salt2.to_be_bytes()
    }
}

/// A read-only handle on a database's WAL index.
pub struct WalIndex {
    file: File,
}

impl WalIndex {
    /// Opens `<db>-shm` read-only; `None` if it does not exist.
    pub fn open(db_path: &Path) -> Option<Self> {
        File::open(super::sidecar(db_path, "-shm"))
            .ok()
            .map(|file| WalIndex { file })
    }

    /// The open index file (whatever its path names now).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The current header, or `None` if it is being rewritten, uninitialised or inconsistent
    /// (the caller then reads the WAL instead).
    pub fn header(&self) -> Option<IndexHeader> {
        let mut b = [0u8; 2 * HEADER_LEN];
        wal::read_exact_at(&self.file, &mut b, 0).ok()?;
        parse_header(&b)
    }

    /// Appends the page numbers carried by frames `first..=last` (1-based) to `out`.
    pub fn page_numbers(&self, first: u32, last: u32, out: &mut Vec<u32>) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut f = u64::from(first);
        while f <= u64::from(last) {
            let (base, zero, count) = region_of(f);
            let upto = (zero + count).min(u64::from(last));
            buf.resize(((upto - f + 1) * 4) as usize, 0);
            wal::read_exact_at(&self.file, &mut buf, base + (f - zero - 1) * 4)?;
            out.extend(
                buf.chunks_exact(4)
                    .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]])),
            );
            f = upto + 1;
        }
        Ok(())
    }
}

/// Where the page-number array holding frame `frame` starts, the frame number before its
/// first entry, and how many frames it holds.
fn region_of(frame: u64) -> (u64, u64, u64) {
    if frame <= FRAMES_FIRST_REGION {
        (INDEX_HEADER_SIZE, 0, FRAMES_FIRST_REGION)
    } else {
        let k = (frame - FRAMES_FIRST_REGION - 1) / FRAMES_PER_REGION + 1;
        (
            k * REGION_BYTES,
            FRAMES_FIRST_REGION + (k - 1) * FRAMES_PER_REGION,
            FRAMES_PER_REGION,
        )
    }
}

/// Checks both header copies the way SQLite's `walIndexTryHdr` does.
fn parse_header(b: &[u8; 2 * HEADER_LEN]) -> Option<IndexHeader> {
    if b[..HEADER_LEN] != b[HEADER_LEN..] {
        return None;
    }
    let u = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    if u(0) != INDEX_VERSION || b[12] == 0 {
        return None;
    }
    let native_be = cfg!(target_endian = "big");
    if wal::checksum(native_be, Cksum::default(), &b[..40]) != Cksum(u(40), u(44)) {
        return None;
    }
    let mut salt = [0u8; 8];
    salt.copy_from_slice(&b[32..40]);
    Some(IndexHeader {
        change: u(8),
        mx_frame: u(16),
        n_page: u(20),
        frame_cksum: Cksum(u(24), u(28)),
        salt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::wal::{WalCursor, read_header, scan_committed};

    #[test]
    fn regions_follow_sqlite() {
        assert_eq!(region_of(1), (136, 0, 4062));
        assert_eq!(region_of(4062), (136, 0, 4062));
        assert_eq!(region_of(4063), (32768, 4062, 4096));
        assert_eq!(region_of(8158), (32768, 4062, 4096));
        assert_eq!(region_of(8159), (65536, 8158, 4096));
    }

    /// The index of a real SQLite WAL names the same frames, pages and commit as a full scan,
    /// across the first region boundary.
    #[test]
    fn index_agrees_with_a_full_scan() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("x.db");
        let c = rusqlite::Connection::open(&db).unwrap();
        c.pragma_update(None, "page_size", 1024).unwrap();
        c.pragma_update(None, "journal_mode", "wal").unwrap();
        c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        c.execute_batch(
            "CREATE TABLE t(b BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
             INSERT INTO t SELECT randomblob(900) FROM n;",
        )
        .unwrap();
        for i in 0..50 {
            c.execute(
                "UPDATE t SET b = randomblob(900) WHERE rowid = ?1",
                [i * 97],
            )
            .unwrap();
        }
        let ix = WalIndex::open(&db).unwrap();
        let h = ix.header().unwrap();
        let wal = File::open(crate::sqlite::sidecar(&db, "-wal")).unwrap();
        let wh = read_header(&wal).unwrap().unwrap();
        assert!(h.describes(&wh));
        let mut cur = WalCursor::start(wh);
        let scan = scan_committed(&wal, &mut cur, 0, None, &mut Vec::new()).unwrap();
        assert!(scan.frames.len() > 4062 + 100, "{}", scan.frames.len());
        assert_eq!(h.mx_frame as u64, cur.frame_count());
        assert_eq!(Some(h.n_page), scan.commit);
        assert_eq!(h.frame_cksum, cur.cksum);
        let mut pgnos = Vec::new();
        ix.page_numbers(1, h.mx_frame, &mut pgnos).unwrap();
        let scanned: Vec<u32> = scan.frames.iter().map(|f| f.pgno.get()).collect();
        assert_eq!(pgnos, scanned);
        // A partial range starting inside the second region.
        let mut tail = Vec::new();
        ix.page_numbers(4100, h.mx_frame, &mut tail).unwrap();
        assert_eq!(tail, scanned[4099..]);
    }

    #[test]
    fn torn_or_blank_headers_are_refused() {
        assert!(parse_header(&[0u8; 96]).is_none());
        let mut b = [0u8; 96];
        b[..4].copy_from_slice(&INDEX_VERSION.to_ne_bytes());
        b[12] = 1;
        let ck = wal::checksum(cfg!(target_endian = "big"), Cksum::default(), &b[..40]);
        b[40..44].copy_from_slice(&ck.0.to_ne_bytes());
        b[44..48].copy_from_slice(&ck.1.to_ne_bytes());
        let (first, second) = b.split_at_mut(HEADER_LEN);
        second.copy_from_slice(first);
        assert!(parse_header(&b).is_some());
        let mut torn = b;
        torn[16] ^= 1;
        assert!(parse_header(&torn).is_none(), "copies differ");
        let mut bad = b;
        bad[16] ^= 1;
        bad[16 + HEADER_LEN] ^= 1;
        assert!(parse_header(&bad).is_none(), "checksum");
    }
}
