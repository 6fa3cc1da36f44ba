//! Reading replica files: a streaming [`FileDecoder`] that validates
//! structure without decompressing, [`RawRun::decode`] for the (pure,
//! parallelizable) decompression, and [`decode_file`] doing it all.
//!
//! Every length read from the input is bounded before anything is allocated
//! for it, and every malformed input ends in a [`FormatError`], never a panic.

use std::io::{self, Read};

use zstd::bulk::Decompressor;
use zstd::zstd_safe;

thread_local! {
    static DCTX: std::cell::RefCell<Option<Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

use crate::checksum::page_hash;
use crate::error::{FormatError, Result};
use crate::header::{
    END_MAGIC, FileKind, HEADER_LEN, Header, MAX_COMPRESSED_LEN, MAX_RUN_PAGES, Trailer, u32_at,
};
use crate::index::IndexBuilder;
use crate::pos::{DbChecksum, PageNo, PageSize};

/// One run as stored: page numbers (already validated against the file) and
/// the still-compressed page data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRun {
    pgnos: Vec<PageNo>,
    crc: u32,
    compressed: Vec<u8>,
}

impl RawRun {
    /// A run read elsewhere (through the run index).
    pub(crate) fn from_parts(pgnos: Vec<PageNo>, crc: u32, compressed: Vec<u8>) -> Self {
        Self {
            pgnos,
            crc,
            compressed,
        }
    }

    /// Page numbers in the run, strictly ascending.
    pub fn pgnos(&self) -> &[PageNo] {
        &self.pgnos
    }

    /// Size of the compressed data in bytes.
    pub fn compressed_len(&self) -> usize {
        self.compressed.len()
    }

    /// Decompresses and verifies the run's CRC. Pure: no I/O, so it can run
    /// on another thread while the decoder reads ahead.
    ///
    /// The output is allocated only after the zstd frame header has declared
    /// exactly `pages × page_size` bytes, so garbage cannot make it allocate
    /// more than the run legitimately needs.
    pub fn decode(&self, page_size: PageSize) -> Result<DecodedRun> {
        let expected = self.pgnos.len() * page_size.as_usize();
        let what = || {
            format!(
                "run starting at page {}",
                self.pgnos.first().map_or(0, |p| p.get())
            )
        };
        match zstd_safe::get_frame_content_size(&self.compressed) {
            Ok(Some(n)) if n == expected as u64 => {}
            Ok(Some(n)) => {
                return Err(FormatError::corrupt(format!(
                    "{}: zstd frame declares {n} bytes, {expected} expected",
                    what()
                )));
            }
            Ok(None) | Err(_) => {
                return Err(FormatError::corrupt(format!(
                    "{}: not a zstd frame with a declared content size",
                    what()
                )));
            }
        }
        match zstd_safe::find_frame_compressed_size(&self.compressed) {
            Ok(n) if n == self.compressed.len() => {}
            _ => {
                return Err(FormatError::corrupt(format!(
                    "{}: compressed data is not exactly one zstd frame",
                    what()
                )));
            }
        }
        let mut data = Vec::with_capacity(expected);
        // One decompression context per thread, reused: creating one per run showed up in
        // profiles of compaction (which decodes thousands of small runs).
        let n = DCTX
            .with(|cell| -> std::io::Result<usize> {
                let mut slot = cell.borrow_mut();
                if slot.is_none() {
                    *slot = Some(Decompressor::new()?);
                }
                match slot.as_mut() {
                    Some(d) => d.decompress_to_buffer(&self.compressed, &mut data),
                    None => Err(std::io::Error::other("no zstd context")),
                }
            })
            .map_err(|e| FormatError::corrupt(format!("{}: zstd: {e}", what())))?;
        if n != expected || data.len() != expected {
            return Err(FormatError::corrupt(format!(
                "{}: decompressed to {n} bytes, {expected} expected",
                what()
            )));
        }
        let mut crc = crc32fast::Hasher::new();
        for p in &self.pgnos {
            crc.update(&p.get().to_le_bytes());
        }
        crc.update(&data);
        let actual = crc.finalize();
        if actual != self.crc {
            return Err(FormatError::checksum(format!(
                "{}: crc32 stored {:08x}, computed {actual:08x}",
                what(),
                self.crc
            )));
        }
        Ok(DecodedRun {
            pgnos: self.pgnos.clone(),
            data,
            page_size,
        })
    }
}

/// A decompressed, verified run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRun {
    /// Page numbers, strictly ascending.
    pub pgnos: Vec<PageNo>,
    /// Page data, `pgnos.len() × page_size` bytes, in `pgnos` order.
    pub data: Vec<u8>,
    page_size: PageSize,
}

impl DecodedRun {
    /// The pages with their data.
    pub fn pages(&self) -> impl Iterator<Item = (PageNo, &[u8])> {
        self.pgnos
            .iter()
            .copied()
            .zip(self.data.chunks_exact(self.page_size.as_usize()))
    }

    /// XOR of the page hashes of the run's pages. A caller streaming a
    /// snapshot XORs these across runs and compares with
    /// [`Trailer::post_checksum`].
    pub fn checksum(&self) -> DbChecksum {
        let mut sum = DbChecksum::EMPTY;
        for (p, d) in self.pages() {
            sum.toggle(page_hash(p, d));
        }
        sum
    }
}

/// Streams one replica file from `R`.
///
/// [`next_run`](Self::next_run) checks page order and limits and keeps the
/// file CRC as it reads, but leaves decompression to [`RawRun::decode`];
/// [`finish`](Self::finish) checks the trailer. Only after `finish` succeeds
/// is the whole file known to be intact, so a restorer decodes every run and
/// finishes before applying any page. After an error, further calls fail.
pub struct FileDecoder<R: Read> {
    r: R,
    header: Header,
    file_crc: crc32fast::Hasher,
    last: Option<PageNo>,
    total_pages: u32,
    runs_done: bool,
    failed: bool,
    /// The run index the runs imply, for a file that has one.
    index: Option<IndexBuilder>,
}

impl<R: Read> FileDecoder<R> {
    /// Reads and validates the header.
    pub fn new(mut r: R) -> Result<Self> {
        let mut b = [0u8; HEADER_LEN];
        read_full(&mut r, &mut b, "header")?;
        let (header, indexed) = Header::parse(&b)?;
        let mut file_crc = crc32fast::Hasher::new();
        file_crc.update(&b);
        Ok(Self {
            r,
            header,
            file_crc,
            last: None,
            total_pages: 0,
            runs_done: false,
            failed: false,
            index: indexed.then(|| IndexBuilder::new(false)),
        })
    }

    /// The validated header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Reads the next run without decompressing it; `None` after the last.
    pub fn next_run(&mut self) -> Result<Option<RawRun>> {
        if self.failed {
            return Err(FormatError::invalid("decoder already failed"));
        }
        let r = self.next_run_inner();
        self.failed = r.is_err();
        r
    }

    /// Reads and validates the trailer: file CRC, end magic, no trailing
    /// bytes, page count and (for snapshots) completeness.
    ///
    /// Runs not yet read are read and structurally checked first, but not
    /// decompressed, so their page CRCs are not verified; use
    /// [`decode_file`] or decode every run to verify page data.
    pub fn finish(mut self) -> Result<Trailer> {
        while self.next_run()?.is_some() {}
        let index_len = match self.index.take() {
            Some(index) => self.check_index(index)?,
            None => 0,
        };
        let mut fields = [0u8; 16];
        self.read(&mut fields, "trailer")?;
        let mut tail = [0u8; 8];
        read_full(&mut self.r, &mut tail, "trailer")?;
        let stored = u32_at(&tail, 0);
        let actual = self.file_crc.clone().finalize();
        if stored != actual {
            return Err(FormatError::checksum(format!(
                "file crc32 stored {stored:08x}, computed {actual:08x}"
            )));
        }
        if tail[4..] != END_MAGIC {
            return Err(FormatError::corrupt(format!(
                "bad end magic {:02x?}",
                &tail[4..]
            )));
        }
        if read_one_more(&mut self.r)? {
            return Err(FormatError::corrupt("trailing bytes after end magic"));
        }
        let trailer = Trailer::from_field_bytes(&fields, index_len)?;
        if trailer.total_pages != self.total_pages {
            return Err(FormatError::corrupt(format!(
                "trailer says {} pages, runs hold {}",
                trailer.total_pages, self.total_pages
            )));
        }
        if self.header.kind == FileKind::Snapshot {
            let want = self.header.snapshot_page_count();
            if self.total_pages != want {
                return Err(FormatError::corrupt(format!(
                    "snapshot holds {} pages, a database of {} pages needs {want}",
                    self.total_pages, self.header.commit
                )));
            }
        }
        Ok(trailer)
    }

    fn next_run_inner(&mut self) -> Result<Option<RawRun>> {
        if self.runs_done {
            return Ok(None);
        }
        let count = self.read_u32("run page count")?;
        if count == 0 {
            self.runs_done = true;
            return Ok(None);
        }
        if count > MAX_RUN_PAGES {
            return Err(FormatError::corrupt(format!(
                "run of {count} pages exceeds the limit of {MAX_RUN_PAGES}"
            )));
        }
        let mut raw = vec![0u8; count as usize * 4];
        self.read(&mut raw, "run page numbers")?;
        let mut pgnos = Vec::with_capacity(count as usize);
        for chunk in raw.chunks_exact(4) {
            let pgno = PageNo::new(u32_at(chunk, 0))
                .ok_or_else(|| FormatError::corrupt("page number 0"))?;
            self.check_pgno(pgno)?;
            pgnos.push(pgno);
        }
        let len = self.read_u32("run compressed length")?;
        if len > MAX_COMPRESSED_LEN {
            return Err(FormatError::corrupt(format!(
                "compressed run of {len} bytes exceeds the limit of {MAX_COMPRESSED_LEN}"
            )));
        }
        if let Some(index) = &mut self.index {
            index.add(&raw, len);
        }
        let crc = self.read_u32("run crc32")?;
        // Grow with the data actually present rather than trusting `len`, so
        // a truncated file costs no more memory than its own size.
        let mut compressed = Vec::new();
        (&mut self.r)
            .take(u64::from(len))
            .read_to_end(&mut compressed)?;
        if compressed.len() != len as usize {
            return Err(FormatError::Truncated { what: "run data" });
        }
        self.file_crc.update(&compressed);
        Ok(Some(RawRun {
            pgnos,
            crc,
            compressed,
        }))
    }

    /// Reads the run index and checks that it is exactly what the runs imply;
    /// returns its length.
    fn check_index(&mut self, expected: IndexBuilder) -> Result<u32> {
        let total = expected.total_len();
        let len =
            u32::try_from(total).map_err(|_| FormatError::corrupt("run index exceeds 4 GiB"))?;
        let mut left = total - 4;
        let mut crc = crc32fast::Hasher::new();
        let mut buf = vec![0u8; 64 << 10];
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            self.read(&mut buf[..n], "run index")?;
            crc.update(&buf[..n]);
            left -= n as u64;
        }
        let stored = self.read_u32("run index crc32")?;
        if crc.finalize() != expected.crc() || stored != expected.crc() {
            return Err(FormatError::corrupt("run index does not match the runs"));
        }
        Ok(len)
    }

    fn check_pgno(&mut self, pgno: PageNo) -> Result<()> {
        if let Some(last) = self.last
            && pgno <= last
        {
            return Err(FormatError::corrupt(format!(
                "page {pgno} follows page {last}: pages not strictly ascending"
            )));
        }
        if pgno.get() > self.header.commit {
            return Err(FormatError::corrupt(format!(
                "page {pgno} beyond database size of {} pages",
                self.header.commit
            )));
        }
        if pgno.is_lock_page(self.header.page_size) {
            return Err(FormatError::corrupt(format!(
                "file contains the lock page {pgno}"
            )));
        }
        self.last = Some(pgno);
        self.total_pages = self
            .total_pages
            .checked_add(1)
            .ok_or_else(|| FormatError::corrupt("page count overflow"))?;
        Ok(())
    }

    fn read_u32(&mut self, what: &'static str) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read(&mut b, what)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads exactly `buf.len()` bytes and feeds them to the file CRC.
    fn read(&mut self, buf: &mut [u8], what: &'static str) -> Result<()> {
        read_full(&mut self.r, buf, what)?;
        self.file_crc.update(buf);
        Ok(())
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8], what: &'static str) -> Result<()> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => FormatError::Truncated { what },
        _ => FormatError::Io(e),
    })
}

fn read_one_more(r: &mut impl Read) -> Result<bool> {
    let mut b = [0u8; 1];
    loop {
        match r.read(&mut b) {
            Ok(n) => return Ok(n > 0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// A fully decoded and verified file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedFile {
    /// The header.
    pub header: Header,
    /// Every page number in the file, strictly ascending.
    pub pgnos: Vec<PageNo>,
    /// Page data, `pgnos.len() × page_size` bytes, in `pgnos` order.
    pub data: Vec<u8>,
    /// The trailer.
    pub trailer: Trailer,
}

impl DecodedFile {
    /// The pages with their data.
    pub fn pages(&self) -> impl Iterator<Item = (PageNo, &[u8])> {
        self.pgnos
            .iter()
            .copied()
            .zip(self.data.chunks_exact(self.header.page_size.as_usize()))
    }

    /// The data of page `pgno`, if the file contains it.
    pub fn page(&self, pgno: PageNo) -> Option<&[u8]> {
        let i = self.pgnos.binary_search(&pgno).ok()?;
        let ps = self.header.page_size.as_usize();
        self.data.get(i * ps..(i + 1) * ps)
    }
}

/// Decodes and verifies a whole file held in memory: structure, every run's
/// CRC and decompressed size, the file CRC, and for snapshots that
/// `post_checksum` equals the XOR of the decoded pages' hashes.
///
/// Materializes every page; for large files use [`FileDecoder`].
pub fn decode_file(bytes: &[u8]) -> Result<DecodedFile> {
    let mut dec = FileDecoder::new(bytes)?;
    let header = *dec.header();
    let mut pgnos = Vec::new();
    let mut data = Vec::new();
    let mut sum = DbChecksum::EMPTY;
    while let Some(raw) = dec.next_run()? {
        let run = raw.decode(header.page_size)?;
        sum.toggle(run.checksum().get());
        pgnos.extend_from_slice(&run.pgnos);
        data.extend_from_slice(&run.data);
    }
    let trailer = dec.finish()?;
    if header.kind == FileKind::Snapshot && sum != trailer.post_checksum {
        return Err(FormatError::checksum(format!(
            "snapshot post_checksum {}, pages hash to {sum}",
            trailer.post_checksum
        )));
    }
    Ok(DecodedFile {
        header,
        pgnos,
        data,
        trailer,
    })
}
