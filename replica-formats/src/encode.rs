//! Writing replica files: a streaming [`FileEncoder`] plus [`encode_run`],
//! the pure compression step, so callers can compress runs on other threads.

use std::cell::RefCell;
use std::io::Write;

use zstd::bulk::Compressor;

use crate::checksum::page_hash;
use crate::error::{FormatError, Result};
use crate::header::{
    FLAG_RUN_INDEX, FileKind, HEADER_LEN, Header, MAX_COMPRESSED_LEN, MAX_RUN_PAGES, Trailer,
};
use crate::index::IndexBuilder;
use crate::pos::{DbChecksum, PageNo, PageSize};

thread_local! {
    /// Compression contexts this thread made, kept for its next file: making one (and its
    /// workspace) cost more than compressing a small level-0 file's pages, about 3 % of the
    /// replicator's CPU at 500 databases (`docs/measurements.md` in the main crate).
    static CCTX: RefCell<Vec<Compressor<'static>>> = const { RefCell::new(Vec::new()) };
}

/// Contexts kept per thread: one per level in use is plenty (level-0 files and compacted
/// ones use two levels).
const CCTX_KEPT: usize = 4;

/// A compression context taken from this thread's [`CCTX`] (or made) and given back when
/// dropped, on whatever thread drops it.
struct Pooled(Option<Compressor<'static>>);

impl Pooled {
    fn take(level: i32) -> Result<Self> {
        let kept = CCTX.with(|c| c.borrow_mut().pop());
        let c = match kept {
            Some(mut c) => {
                // Parameters persist across frames; the level is the only one set here.
                c.set_compression_level(level)
                    .map_err(FormatError::Compression)?;
                c
            }
            None => Compressor::new(level).map_err(FormatError::Compression)?,
        };
        Ok(Pooled(Some(c)))
    }
}

impl std::ops::Deref for Pooled {
    type Target = Compressor<'static>;
    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.0.as_mut().expect("present until dropped")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            // `try_with`: a thread being torn down just frees it.
            let _ = CCTX.try_with(|kept| {
                let mut kept = kept.borrow_mut();
                if kept.len() < CCTX_KEPT {
                    kept.push(c);
                }
            });
        }
    }
}

/// Largest uncompressed run the encoder produces (32 MiB). zstd's worst-case
/// expansion of that stays well under [`MAX_COMPRESSED_LEN`], so an encoder
/// can never write a run the decoder refuses.
pub const MAX_ENCODE_RUN_BYTES: usize = 32 << 20;

/// Tuning knobs for [`FileEncoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// zstd compression level. Level 1 already gets most of the ratio on
    /// database pages and keeps shipping latency low.
    pub zstd_level: i32,
    /// Pages buffered per run. Larger runs compress better; smaller runs cost
    /// less memory to decode. Must be in `1..=4096` and fit in
    /// [`MAX_ENCODE_RUN_BYTES`] at the file's page size.
    pub pages_per_run: usize,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self {
            zstd_level: 1,
            pages_per_run: 64,
        }
    }
}

/// A run of pages compressed and checksummed, ready to be appended to a file
/// with [`FileEncoder::push_run`]. Built only by [`encode_run`], so its
/// invariants (ascending pages, right sizes) always hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedRun {
    pgnos: Vec<PageNo>,
    page_size: PageSize,
    crc: u32,
    compressed: Vec<u8>,
    checksum: DbChecksum,
}

impl EncodedRun {
    /// The page numbers in the run, ascending.
    pub fn pgnos(&self) -> &[PageNo] {
        &self.pgnos
    }

    /// Size of the compressed page data in bytes.
    pub fn compressed_len(&self) -> usize {
        self.compressed.len()
    }

    /// XOR of the page hashes of the run's pages.
    pub fn page_checksum(&self) -> DbChecksum {
        self.checksum
    }
}

/// Compresses one run of pages. Pure: no I/O, safe to call on any thread.
///
/// `pages` must be non-empty, strictly ascending, free of the lock page, each
/// exactly `page_size` bytes, and at most [`MAX_RUN_PAGES`] pages and
/// [`MAX_ENCODE_RUN_BYTES`] bytes in total.
pub fn encode_run(
    pages: &[(PageNo, &[u8])],
    page_size: PageSize,
    level: i32,
) -> Result<EncodedRun> {
    check_run_size(pages.len(), page_size)?;
    let mut pgnos = Vec::with_capacity(pages.len());
    let mut data = Vec::with_capacity(pages.len() * page_size.as_usize());
    let mut checksum = DbChecksum::EMPTY;
    for &(pgno, page) in pages {
        check_page_len(pgno, page, page_size)?;
        if pgno.is_lock_page(page_size) {
            return Err(lock_page_error(pgno));
        }
        if pgnos.last().is_some_and(|&last| pgno <= last) {
            return Err(FormatError::invalid(format!(
                "run pages not strictly ascending at page {pgno}"
            )));
        }
        pgnos.push(pgno);
        data.extend_from_slice(page);
        checksum.toggle(page_hash(pgno, page));
    }
    let mut compressor = Pooled::take(level)?;
    compress_run(&mut compressor, pgnos, &data, page_size, checksum)
}

fn check_run_size(n: usize, page_size: PageSize) -> Result<()> {
    if n == 0 || n > MAX_RUN_PAGES as usize || n * page_size.as_usize() > MAX_ENCODE_RUN_BYTES {
        return Err(FormatError::invalid(format!(
            "a run of {n} pages of {page_size} bytes is outside 1..={MAX_RUN_PAGES} pages \
             and {MAX_ENCODE_RUN_BYTES} bytes"
        )));
    }
    Ok(())
}

fn check_page_len(pgno: PageNo, page: &[u8], page_size: PageSize) -> Result<()> {
    if page.len() != page_size.as_usize() {
        return Err(FormatError::invalid(format!(
            "page {pgno} is {} bytes, page size is {page_size}",
            page.len()
        )));
    }
    Ok(())
}

fn lock_page_error(pgno: PageNo) -> FormatError {
    FormatError::invalid(format!(
        "page {pgno} is the lock page, which SQLite never uses"
    ))
}

fn compress_run(
    compressor: &mut Compressor<'static>,
    pgnos: Vec<PageNo>,
    data: &[u8],
    page_size: PageSize,
    checksum: DbChecksum,
) -> Result<EncodedRun> {
    let mut crc = crc32fast::Hasher::new();
    for p in &pgnos {
        crc.update(&p.get().to_le_bytes());
    }
    crc.update(data);
    // Bulk compression records the content size in the frame header, which
    // the decoder requires before it allocates the output.
    let compressed = compressor
        .compress(data)
        .map_err(FormatError::Compression)?;
    if compressed.len() > MAX_COMPRESSED_LEN as usize {
        return Err(FormatError::invalid(format!(
            "run compressed to {} bytes, over the {MAX_COMPRESSED_LEN}-byte limit",
            compressed.len()
        )));
    }
    Ok(EncodedRun {
        pgnos,
        page_size,
        crc: crc.finalize(),
        compressed,
        checksum,
    })
}

/// Streams one replica file to `W`.
///
/// The header is written by [`new`](Self::new); pages go in with
/// [`write_page`](Self::write_page) (or pre-compressed with
/// [`push_run`](Self::push_run)) in strictly ascending page order; and
/// [`finish`](Self::finish) writes the trailer. The file CRC is computed as
/// bytes go out, so nothing is re-read. After any error the output is
/// incomplete and the encoder should be dropped.
pub struct FileEncoder<W: Write> {
    w: W,
    header: Header,
    pages_per_run: usize,
    compressor: Pooled,
    file_crc: crc32fast::Hasher,
    buf_pgnos: Vec<PageNo>,
    buf_data: Vec<u8>,
    last: Option<PageNo>,
    total_pages: u32,
    checksum: DbChecksum,
    /// Every file gets a run index (4 bytes a page, held until `finish`).
    index: IndexBuilder,
}

impl<W: Write> FileEncoder<W> {
    /// Validates `header` and `opts` and writes the header.
    pub fn new(w: W, header: &Header, opts: EncodeOptions) -> Result<Self> {
        header
            .validate()
            .map_err(|e| FormatError::invalid(format!("header: {e}")))?;
        check_run_size(opts.pages_per_run, header.page_size)
            .map_err(|e| FormatError::invalid(format!("pages_per_run: {e}")))?;
        let compressor = Pooled::take(opts.zstd_level)?;
        let mut enc = Self {
            w,
            header: *header,
            pages_per_run: opts.pages_per_run,
            compressor,
            file_crc: crc32fast::Hasher::new(),
            buf_pgnos: Vec::with_capacity(opts.pages_per_run),
            buf_data: Vec::with_capacity(opts.pages_per_run * header.page_size.as_usize()),
            last: None,
            total_pages: 0,
            checksum: DbChecksum::EMPTY,
            index: IndexBuilder::new(true),
        };
        let bytes: [u8; HEADER_LEN] = header.bytes_with_flags(FLAG_RUN_INDEX);
        enc.put(&bytes)?;
        Ok(enc)
    }

    /// The header being written.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// XOR of the page hashes of every page accepted so far. For a snapshot
    /// this is the post checksum [`finish`](Self::finish) expects.
    pub fn pages_checksum(&self) -> DbChecksum {
        self.checksum
    }

    /// Number of pages accepted so far.
    pub fn pages_written(&self) -> u32 {
        self.total_pages
    }

    /// Adds one page; compresses and writes a run when the buffer is full.
    pub fn write_page(&mut self, pgno: PageNo, data: &[u8]) -> Result<()> {
        check_page_len(pgno, data, self.header.page_size)?;
        self.accept(pgno)?;
        self.buf_pgnos.push(pgno);
        self.buf_data.extend_from_slice(data);
        self.checksum.toggle(page_hash(pgno, data));
        if self.buf_pgnos.len() >= self.pages_per_run {
            self.flush_buffer()?;
        }
        Ok(())
    }

    /// Appends a run compressed elsewhere by [`encode_run`]. Pages buffered by
    /// [`write_page`](Self::write_page) are written first; the run's pages
    /// must all come after them.
    pub fn push_run(&mut self, run: EncodedRun) -> Result<()> {
        if run.page_size != self.header.page_size {
            return Err(FormatError::invalid(format!(
                "run encoded for page size {}, file has {}",
                run.page_size, self.header.page_size
            )));
        }
        self.flush_buffer()?;
        for &pgno in &run.pgnos {
            self.accept(pgno)?;
        }
        self.checksum.toggle(run.checksum.get());
        self.emit(&run)
    }

    /// Writes any buffered run, the terminator and the trailer, flushes, and
    /// returns the writer. For a snapshot, checks that every page was written
    /// and that `post_checksum` matches the pages.
    pub fn finish(mut self, post_checksum: DbChecksum) -> Result<(W, Trailer)> {
        self.flush_buffer()?;
        if self.header.kind == FileKind::Snapshot {
            let want = self.header.snapshot_page_count();
            if self.total_pages != want {
                return Err(FormatError::invalid(format!(
                    "snapshot has {} pages, database of {} pages needs {want}",
                    self.total_pages, self.header.commit
                )));
            }
            if post_checksum != self.checksum {
                return Err(FormatError::invalid(format!(
                    "snapshot post_checksum {post_checksum} does not match its pages ({})",
                    self.checksum
                )));
            }
        }
        let trailer = Trailer {
            total_pages: self.total_pages,
            post_checksum,
        };
        self.put(&0u32.to_le_bytes())?;
        let index = std::mem::replace(&mut self.index, IndexBuilder::new(false)).finish();
        let index_len = u32::try_from(index.len())
            .map_err(|_| FormatError::invalid("run index exceeds 4 GiB"))?;
        self.put(&index)?;
        self.put(&trailer.field_bytes(index_len))?;
        let crc = self.file_crc.clone().finalize();
        self.w.write_all(&crc.to_le_bytes())?;
        self.w.write_all(&crate::header::END_MAGIC)?;
        self.w.flush()?;
        Ok((self.w, trailer))
    }

    /// Checks `pgno` against order, size and lock page, then records it.
    fn accept(&mut self, pgno: PageNo) -> Result<()> {
        if let Some(last) = self.last
            && pgno <= last
        {
            return Err(FormatError::invalid(format!(
                "page {pgno} written after page {last}: pages must be strictly ascending"
            )));
        }
        if pgno.get() > self.header.commit {
            return Err(FormatError::invalid(format!(
                "page {pgno} is beyond the database size of {} pages",
                self.header.commit
            )));
        }
        if pgno.is_lock_page(self.header.page_size) {
            return Err(lock_page_error(pgno));
        }
        self.last = Some(pgno);
        // Cannot overflow: pages are distinct and at most `commit` <= u32::MAX.
        self.total_pages += 1;
        Ok(())
    }

    fn flush_buffer(&mut self) -> Result<()> {
        if self.buf_pgnos.is_empty() {
            return Ok(());
        }
        let pgnos = std::mem::take(&mut self.buf_pgnos);
        let mut checksum = DbChecksum::EMPTY;
        let ps = self.header.page_size.as_usize();
        for (p, d) in pgnos.iter().zip(self.buf_data.chunks_exact(ps)) {
            checksum.toggle(page_hash(*p, d));
        }
        let run = compress_run(
            &mut self.compressor,
            pgnos,
            &self.buf_data,
            self.header.page_size,
            checksum,
        )?;
        self.buf_data.clear();
        self.emit(&run)?;
        // Reuse the allocation for the next run.
        self.buf_pgnos = run.pgnos;
        self.buf_pgnos.clear();
        Ok(())
    }

    fn emit(&mut self, run: &EncodedRun) -> Result<()> {
        let count = u32::try_from(run.pgnos.len())
            .map_err(|_| FormatError::invalid("run has too many pages"))?;
        self.put(&count.to_le_bytes())?;
        let mut pgno_bytes = Vec::with_capacity(run.pgnos.len() * 4);
        for p in &run.pgnos {
            pgno_bytes.extend_from_slice(&p.get().to_le_bytes());
        }
        self.put(&pgno_bytes)?;
        let len = u32::try_from(run.compressed.len())
            .map_err(|_| FormatError::invalid("compressed run too large"))?;
        self.index.add(&pgno_bytes, len);
        self.put(&len.to_le_bytes())?;
        self.put(&run.crc.to_le_bytes())?;
        self.put(&run.compressed)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.file_crc.update(bytes);
        self.w.write_all(bytes)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A context kept from a run at another level compresses exactly as a new one does:
    /// nothing of the earlier frame or level carries over.
    #[test]
    fn kept_contexts_compress_as_new_ones() {
        let ps = PageSize::new(4096).unwrap();
        let page: Vec<u8> = (0..4096u32)
            .map(|i| (i * 7 % 251) as u8 ^ (i / 64) as u8)
            .collect();
        let pages = [(PageNo::new(1).unwrap(), page.as_slice())];
        let on_new_thread = |level| {
            std::thread::scope(|s| s.spawn(|| encode_run(&pages, ps, level).unwrap()).join())
                .unwrap()
                .compressed
        };
        let fresh = [on_new_thread(-20), on_new_thread(19)];
        for level in [19, -20, 19, -20] {
            let kept = encode_run(&pages, ps, level).unwrap().compressed;
            assert_eq!(kept, fresh[usize::from(level == 19)], "level {level}");
        }
        assert_ne!(
            fresh[0], fresh[1],
            "the levels must differ for this test to mean anything"
        );
        assert!(CCTX.with(|c| c.borrow().len()) >= 1, "the context was kept");
    }
}
