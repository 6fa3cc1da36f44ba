//! A consistent view of the source database: the database file overlaid with the committed
//! frames of the current WAL generation.
//!
//! The monitor's read transaction keeps the frames this view indexes from being overwritten
//! (see `monitor.rs`); every frame is still re-verified against its recorded checksum when read,
//! and a frame that no longer verifies can only mean the WAL was restarted after a full
//! backfill, in which case the database file holds that page's value.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use replica_formats::{PageNo, PageSize};

mod continuity;

pub use continuity::{AfterRestart, after_restart};

use super::sidecar;
use super::wal::{self, Frame, Scan, WalCursor, WalError, WalHeader};
use super::walindex::{IndexHeader, WalIndex};

/// What changed in the WAL since the last poll.
#[derive(Debug)]
pub enum Poll {
    /// Nothing new was committed.
    Idle,
    /// New committed transactions in the current generation.
    Frames(Scan),
    /// The WAL was restarted or truncated: `prev` was the generation being followed, `next` the
    /// new header (`None` while the WAL is empty).
    Restarted {
        /// Generation that was being read.
        prev: WalHeader,
        /// New generation, if a header was already written.
        next: Option<WalHeader>,
    },
}

/// The database file plus the WAL generation being followed.
pub struct Source {
    db_path: PathBuf,
    wal_path: PathBuf,
    db: File,
    wal: Option<File>,
    page_size: PageSize,
    cursor: Option<WalCursor>,
    /// Latest committed frame of each page in the current generation, up to the cursor.
    index: HashMap<PageNo, Frame>,
    /// Database size in pages after the last commit of the current generation.
    last_commit: Option<u32>,
    /// Reused read buffer of the WAL scanner.
    scan_buf: Vec<u8>,
    /// SQLite's WAL index, when readable: finds new commits without reading every frame.
    walindex: Option<WalIndex>,
    /// The index's transaction counter at the cursor, when the cursor came from the index.
    last_change: Option<u32>,
}

impl Source {
    /// Opens the database file (which must exist) for page reads.
    pub fn open(db_path: &Path) -> io::Result<Self> {
        let db = File::open(db_path)?;
        let mut hdr = [0u8; 100];
        wal::read_exact_at(&db, &mut hdr, 0)?;
        let raw = u16::from_be_bytes([hdr[16], hdr[17]]) as u32;
        let ps = if raw == 1 { 65536 } else { raw };
        let page_size = PageSize::new(ps)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad page size in header"))?;
        Ok(Source {
            db_path: db_path.to_owned(),
            wal_path: sidecar(db_path, "-wal"),
            db,
            wal: None,
            page_size,
            cursor: None,
            index: HashMap::new(),
            last_commit: None,
            scan_buf: Vec::new(),
            walindex: WalIndex::open(db_path),
            last_change: None,
        })
    }

    /// Page size of the database.
    pub fn page_size(&self) -> PageSize {
        self.page_size
    }

    /// Path of the database.
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// Whether the WAL is open: it is then read through that handle, whatever its path now
    /// names.
    pub fn wal_open(&self) -> bool {
        self.wal.is_some()
    }

    /// The open WAL and WAL-index files, when open.
    pub fn open_sidecars(&self) -> [Option<&File>; 2] {
        [
            self.wal.as_ref(),
            self.walindex.as_ref().map(WalIndex::file),
        ]
    }

    /// Where the reader stands in the WAL.
    pub fn cursor(&self) -> Option<WalCursor> {
        self.cursor
    }

    /// WAL frames in the current generation up to the cursor.
    pub fn wal_frames(&self) -> u64 {
        self.cursor.map_or(0, |c| c.frame_count())
    }

    fn wal_file(&mut self) -> io::Result<Option<&File>> {
        if self.wal.is_none() {
            match File::open(&self.wal_path) {
                Ok(f) => self.wal = Some(f),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Ok(self.wal.as_ref())
    }

    /// Forgets the current generation so the next poll starts from the WAL's first frame and
    /// rebuilds the page index (used after a discontinuity and at startup).
    pub fn reset(&mut self) {
        self.cursor = None;
        self.index.clear();
        self.last_commit = None;
        self.wal = None;
        self.last_change = None;
    }

    /// Looks at the WAL and reads newly committed frames, at most about `max_bytes` of them
    /// (0 = no limit; a transaction is never split).
    pub fn poll(&mut self, max_bytes: u64) -> Result<Poll, WalError> {
        if self.unchanged_by_index() {
            return Ok(Poll::Idle);
        }
        let Some(wal) = self.wal_file()? else {
            return Ok(match self.cursor.take() {
                Some(c) => self.restarted(c.header, None),
                None => Poll::Idle,
            });
        };
        let header = wal::read_header(wal)?;
        let len = wal.metadata()?.len();
        match (self.cursor, header) {
            (None, None) => Ok(Poll::Idle),
            (Some(c), None) => Ok(self.restarted(c.header, None)),
            (Some(c), Some(h)) if h != c.header || len < c.offset => {
                Ok(self.restarted(c.header, Some(h)))
            }
            (c, Some(h)) => {
                let mut cur = c.unwrap_or_else(|| WalCursor::start(h));
                let scan = match self.poll_index(&mut cur, len, max_bytes)? {
                    Some(scan) => scan,
                    None => {
                        self.last_change = None;
                        let cap = self.published_frames(&cur.header);
                        let wal = self.wal.as_ref().expect("opened above");
                        wal::scan_committed(wal, &mut cur, max_bytes, cap, &mut self.scan_buf)?
                    }
                };
                self.cursor = Some(cur);
                for f in &scan.frames {
                    self.index.insert(f.pgno, *f);
                }
                if scan.commit.is_some() {
                    self.last_commit = scan.commit;
                }
                Ok(if scan.frames.is_empty() {
                    Poll::Idle
                } else {
                    Poll::Frames(scan)
                })
            }
        }
    }

    /// Nothing was committed after the cursor, by the WAL index alone: its header still names
    /// the cursor's generation, frame and checksum. Most looks find nothing (the poll every
    /// monitor-interval, a second look at a commit already taken): one read of the index header
    /// then, instead of that plus the WAL's header and size. A restart or truncation resets the
    /// index's frame count or salts, and a cursor at the first frame is left to the full look
    /// (an emptied WAL keeps the old salts until the next write).
    fn unchanged_by_index(&self) -> bool {
        let (Some(_), Some(c)) = (&self.wal, &self.cursor) else {
            return false;
        };
        c.frame_count() > 0
            && self
                .index_mark()
                .is_some_and(|ih| ih.frame_cksum == c.cksum)
    }

    /// The committed frames after `cur` according to SQLite's WAL index (see `walindex.rs`), or
    /// `None` when the index is unavailable or does not plainly describe this generation: the
    /// caller then scans the WAL. The last frame is checked against the index header here; every
    /// frame is verified on its own when its page is read.
    fn poll_index(
        &mut self,
        cur: &mut WalCursor,
        wal_len: u64,
        max_bytes: u64,
    ) -> io::Result<Option<Scan>> {
        if self.walindex.is_none() {
            self.walindex = WalIndex::open(&self.db_path);
        }
        let (Some(ix), Some(wal)) = (&self.walindex, &self.wal) else {
            return Ok(None);
        };
        let Some(ih) = ix.header() else {
            return Ok(None);
        };
        let have = cur.frame_count();
        let mx = u64::from(ih.mx_frame);
        if !ih.describes(&cur.header) || mx < have {
            return Ok(None);
        }
        if mx == have {
            return Ok(Some(Scan::default()));
        }
        let flen = cur.header.frame_len();
        let end = wal::WAL_HEADER_LEN + mx * flen;
        if end > wal_len || (max_bytes > 0 && (mx - have) * flen > max_bytes) {
            return Ok(None);
        }
        // The last frame must be the commit the index header publishes.
        let last = wal::read_frame_header(wal, end - flen)?;
        if last.salt1 != cur.header.salt1
            || last.salt2 != cur.header.salt2
            || last.commit == 0
            || last.commit != ih.n_page
            || last.cksum != ih.frame_cksum
        {
            return Ok(None);
        }
        let mut pgnos = Vec::with_capacity((mx - have) as usize);
        if ix
            .page_numbers(have as u32 + 1, ih.mx_frame, &mut pgnos)
            .is_err()
            || pgnos.contains(&0)
            || ix.header().is_none_or(|h| h.salt != ih.salt)
        {
            return Ok(None);
        }
        // SQLite counts commits in the header (across WAL restarts, not across a rebuilt index):
        // a count that cannot be right (more commits than frames) is taken as one.
        let transactions = match self.last_change {
            Some(c) => match u64::from(ih.change.wrapping_sub(c)) {
                n @ 1.. if n <= mx - have => n,
                _ => 1,
            },
            None => 1,
        };
        self.last_change = Some(ih.change);
        // Zero was refused above.
        let Some(frames) = pgnos
            .iter()
            .enumerate()
            .map(|(i, &pgno)| {
                Some(Frame {
                    pgno: PageNo::new(pgno)?,
                    offset: wal::WAL_HEADER_LEN + (have + i as u64) * flen,
                })
            })
            .collect()
        else {
            return Ok(None);
        };
        cur.offset = end;
        cur.cksum = ih.frame_cksum;
        Ok(Some(Scan {
            frames,
            commit: Some(ih.n_page),
            transactions,
            ..Scan::default()
        }))
    }

    fn restarted(&mut self, prev: WalHeader, next: Option<WalHeader>) -> Poll {
        self.index.clear();
        self.last_commit = None;
        self.cursor = next.map(WalCursor::start);
        Poll::Restarted { prev, next }
    }

    /// The last frame SQLite has published as committed in the generation with header `h`, when
    /// its WAL index is readable and describes that generation.
    fn published_frames(&self, h: &WalHeader) -> Option<u64> {
        self.walindex
            .as_ref()
            .and_then(WalIndex::header)
            .filter(|ih| ih.describes(h))
            .map(|ih| u64::from(ih.mx_frame))
    }

    /// What SQLite's WAL index says right after a drain, when it shows the cursor at the very
    /// end of the generation: the mark [`Source::continue_after`] checks against after the
    /// read transaction was released.
    pub fn index_mark(&self) -> Option<IndexHeader> {
        let (ix, c) = (self.walindex.as_ref()?, self.cursor?);
        ix.header()
            .filter(|h| h.describes(&c.header) && u64::from(h.mx_frame) == c.frame_count())
    }

    /// [`Self::index_mark`], or, when the WAL holds no generation yet (no header: freshly
    /// truncated or not yet written) and the index shows no frame, the index header itself:
    /// every frame written later belongs to a generation that starts after the mark. Used
    /// before memsync steps aside while idle (`idle.rs`).
    pub fn idle_mark(&mut self) -> Result<Option<IndexHeader>, WalError> {
        if self.cursor.is_some() {
            return Ok(self.index_mark());
        }
        self.wal = None;
        if let Some(wal) = self.wal_file()?
            && wal::read_header(wal)?.is_some()
        {
            return Ok(None);
        }
        Ok(self
            .walindex
            .as_ref()
            .and_then(WalIndex::header)
            .filter(|h| h.mx_frame == 0))
    }

    /// Drops the handles on the WAL and its index, so the next read opens the files now at
    /// those paths: SQLite deletes both when its last connection closes or the database leaves
    /// WAL mode, and a handle kept would go on reading the deleted files. Only while memsync has
    /// no connection open on the database: closing a descriptor of the `-shm` file drops every
    /// POSIX lock this process holds on it, SQLite's included.
    pub fn reopen_files(&mut self) {
        self.wal = None;
        self.walindex = WalIndex::open(&self.db_path);
    }

    /// The WAL index header, through the handle already open (see [`Self::reopen_files`]).
    pub fn index_header(&self) -> Option<IndexHeader> {
        self.walindex.as_ref().and_then(WalIndex::header)
    }

    /// The database file's 100-byte header, as on disk.
    pub fn db_header(&self) -> io::Result<[u8; 100]> {
        let mut hdr = [0u8; 100];
        wal::read_exact_at(&self.db, &mut hdr, 0)?;
        Ok(hdr)
    }

    /// Reads a frame's page image, verified on its own (see [`wal::read_verified_frame`]);
    /// `false` if the frame no longer verifies, which means the WAL was rewritten under the
    /// reader.
    pub fn read_frame(&self, f: &Frame, page: &mut [u8]) -> io::Result<bool> {
        match (&self.wal, &self.cursor) {
            (Some(wal), Some(c)) => wal::read_verified_frame(wal, &c.header, f, page),
            _ => Ok(false),
        }
    }

    /// Database size in pages at the cursor.
    pub fn commit(&self) -> io::Result<u32> {
        if let Some(c) = self.last_commit {
            return Ok(c);
        }
        // No frame in the WAL: the database file alone is the state. Prefer the header's
        // in-header size (valid when its version-valid-for matches the change counter).
        let mut hdr = [0u8; 100];
        wal::read_exact_at(&self.db, &mut hdr, 0)?;
        let be = |i: usize| u32::from_be_bytes([hdr[i], hdr[i + 1], hdr[i + 2], hdr[i + 3]]);
        let file_pages = (self.db.metadata()?.len() / self.page_size.get() as u64) as u32;
        if be(28) != 0 && be(24) == be(92) {
            Ok(be(28))
        } else {
            Ok(file_pages)
        }
    }

    /// Reads page `pgno` as of the cursor into `buf` (zeros past the end of the file).
    pub fn read_page(&self, pgno: PageNo, buf: &mut [u8]) -> io::Result<()> {
        if let (Some(f), Some(wal), Some(c)) = (self.index.get(&pgno), &self.wal, &self.cursor)
            && wal::read_verified_frame(wal, &c.header, f, buf)?
        {
            return Ok(());
        }
        let off = (u64::from(pgno.get()) - 1) * u64::from(self.page_size.get());
        buf.fill(0);
        let len = self.db.metadata()?.len();
        if off < len {
            let n = ((len - off) as usize).min(buf.len());
            wal::read_exact_at(&self.db, &mut buf[..n], off)?;
        }
        Ok(())
    }

    /// Calls `f` for every page 1..=commit (except the lock page) in ascending order, reading the
    /// database file in large chunks and overlaying WAL frames.
    pub fn for_each_page(
        &self,
        commit: u32,
        mut f: impl FnMut(PageNo, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        const CHUNK: u32 = 256;
        let ps = self.page_size.as_usize();
        let mut buf = vec![0u8; ps * CHUNK as usize];
        let mut tmp = vec![0u8; ps];
        let file_len = self.db.metadata()?.len();
        let mut first = 1u32;
        while first <= commit {
            let n = CHUNK.min(commit - first + 1);
            let off = (first as u64 - 1) * ps as u64;
            let want = n as usize * ps;
            buf[..want].fill(0);
            if off < file_len {
                let avail = ((file_len - off) as usize).min(want);
                wal::read_exact_at(&self.db, &mut buf[..avail], off)?;
            }
            for i in 0..n {
                let pgno = PageNo::new(first + i).expect("nonzero");
                if pgno.is_lock_page(self.page_size) {
                    continue;
                }
                let page = &mut buf[i as usize * ps..(i as usize + 1) * ps];
                if let (Some(fr), Some(wal), Some(c)) =
                    (self.index.get(&pgno), &self.wal, &self.cursor)
                    && wal::read_verified_frame(wal, &c.header, fr, &mut tmp)?
                {
                    page.copy_from_slice(&tmp);
                }
                f(pgno, page)?;
            }
            first += n;
        }
        Ok(())
    }
}
