//! The run index: a copy of every run's page numbers and size at the end of a
//! file (header flag [`FLAG_RUN_INDEX`]), so that a restore can read the
//! trailer and index first and then fetch only the runs holding pages no newer
//! file replaces. Without it, finding a run means reading every run before it.
//!
//! Layout, between the terminator and the trailer: for each run in file order,
//! `page_count: u32`, `compressed_len: u32`, `page_count` × `pgno: u32`; then
//! `index_crc: u32`, the CRC-32 of those bytes. The trailer's reserved field
//! holds the index length (crc included). Runs start right after the header
//! and follow each other, so an entry's offset is implied by the ones before.
//!
//! [`parse_index`] checks everything it can without the runs: the index CRC,
//! the same page-number rules as the runs (ascending, within `commit`, never
//! the lock page), limits, and that the runs it describes plus terminator,
//! index and trailer add up to exactly the file's size. A run fetched through
//! it is checked against its entry ([`read_run`]) and its own CRC
//! ([`RawRun::decode`]); the file CRC cannot be checked without reading the
//! whole file, so a reader using the index verifies the database it builds
//! end to end (`post_checksum` of the newest file) instead.

use crate::decode::RawRun;
use crate::error::{FormatError, Result};
use crate::header::{
    END_MAGIC, FileKind, HEADER_LEN, Header, MAX_COMPRESSED_LEN, MAX_RUN_PAGES, TRAILER_LEN,
    Trailer, u32_at,
};
use crate::pos::PageNo;
#[cfg(test)]
use crate::pos::PageSize;

/// Bytes a run takes besides its page numbers and data: page count, compressed
/// length, run CRC.
const RUN_OVERHEAD: u64 = 12;

/// Accumulates the index bytes as runs go by: the writer keeps them, a
/// streaming reader only their CRC and length (to compare with what it reads).
pub(crate) struct IndexBuilder {
    crc: crc32fast::Hasher,
    len: u64,
    bytes: Option<Vec<u8>>,
}

impl IndexBuilder {
    /// `keep`: hold the bytes (a writer), or only their CRC and length.
    pub(crate) fn new(keep: bool) -> Self {
        Self {
            crc: crc32fast::Hasher::new(),
            len: 0,
            bytes: keep.then(Vec::new),
        }
    }

    /// Adds a run's entry, from its page numbers as stored (little-endian).
    pub(crate) fn add(&mut self, pgno_bytes: &[u8], compressed_len: u32) {
        let count = (pgno_bytes.len() / 4) as u32;
        let mut head = [0u8; 8];
        head[..4].copy_from_slice(&count.to_le_bytes());
        head[4..].copy_from_slice(&compressed_len.to_le_bytes());
        self.crc.update(&head);
        self.crc.update(pgno_bytes);
        self.len += (head.len() + pgno_bytes.len()) as u64;
        if let Some(b) = &mut self.bytes {
            b.extend_from_slice(&head);
            b.extend_from_slice(pgno_bytes);
        }
    }

    /// Length of the whole index, its CRC included.
    pub(crate) fn total_len(&self) -> u64 {
        self.len + 4
    }

    /// CRC-32 of the entries.
    pub(crate) fn crc(&self) -> u32 {
        self.crc.clone().finalize()
    }

    /// The entries followed by their CRC (empty for a builder that does not keep bytes).
    pub(crate) fn finish(self) -> Vec<u8> {
        let crc = self.crc();
        let mut b = self.bytes.unwrap_or_default();
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }
}

/// Where one run lies in its file and which pages it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEntry {
    /// Byte offset of the run (its page count field) in the file.
    pub offset: u64,
    /// The run's pages, strictly ascending.
    pub pgnos: Vec<PageNo>,
    /// Size of the run's compressed data.
    pub compressed_len: u32,
}

impl RunEntry {
    /// Bytes the whole run takes in the file.
    pub fn len(&self) -> u64 {
        RUN_OVERHEAD + 4 * self.pgnos.len() as u64 + u64::from(self.compressed_len)
    }

    /// Always false: a run holds at least one page.
    pub fn is_empty(&self) -> bool {
        self.pgnos.is_empty()
    }
}

/// A file's header, trailer and run index, read without its runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileIndex {
    /// The header.
    pub header: Header,
    /// The runs, in file order.
    pub runs: Vec<RunEntry>,
    /// The trailer (its file CRC is not checked: see the module docs).
    pub trailer: Trailer,
}

/// The length of the index of a file of `file_size` bytes ending with `tail`
/// (its last [`TRAILER_LEN`] bytes), after checking the end magic and that
/// such an index can fit the file: runs take at least as many bytes as their
/// entries, so a true index is at most about half of what lies between header
/// and trailer, and a crafted length never makes a reader fetch more. The
/// caller then fetches that many bytes before the tail and calls
/// [`parse_index`].
pub fn index_len(tail: &[u8; TRAILER_LEN], file_size: u64) -> Result<u32> {
    let body = file_size
        .checked_sub((HEADER_LEN + 4 + TRAILER_LEN) as u64)
        .ok_or(FormatError::Truncated {
            what: "header and trailer",
        })?;
    if tail[20..] != END_MAGIC {
        return Err(FormatError::corrupt(format!(
            "bad end magic {:02x?}",
            &tail[20..]
        )));
    }
    let len = u32_at(tail, 12);
    if u64::from(len) > body / 2 + 4 {
        return Err(FormatError::corrupt(format!(
            "run index of {len} bytes cannot fit a file of {file_size} bytes"
        )));
    }
    Ok(len)
}

/// Parses and checks the run index of a file of `file_size` bytes whose header
/// bytes are `head` (the file must have [`FLAG_RUN_INDEX`]), last
/// [`TRAILER_LEN`] bytes `tail` and index bytes `index` (the
/// [`index_len`] bytes before the tail).
pub fn parse_index(
    head: &[u8; HEADER_LEN],
    file_size: u64,
    tail: &[u8; TRAILER_LEN],
    index: &[u8],
) -> Result<FileIndex> {
    let (header, indexed) = Header::parse(head)?;
    if !indexed {
        return Err(FormatError::invalid("file has no run index"));
    }
    let len = index_len(tail, file_size)?;
    if index.len() != len as usize || len < 4 {
        return Err(FormatError::corrupt(format!(
            "run index of {} bytes, trailer says {len}",
            index.len()
        )));
    }
    let (entries, stored) = index.split_at(index.len() - 4);
    let actual = crc32fast::hash(entries);
    if u32_at(stored, 0) != actual {
        return Err(FormatError::checksum(format!(
            "run index crc32 stored {:08x}, computed {actual:08x}",
            u32_at(stored, 0)
        )));
    }
    let mut fields = [0u8; 16];
    fields.copy_from_slice(&tail[..16]);
    let trailer = Trailer::from_field_bytes(&fields, len)?;
    let mut runs = Vec::new();
    let mut at = 0usize;
    let mut offset = HEADER_LEN as u64;
    let mut last: Option<PageNo> = None;
    let mut total: u32 = 0;
    while at < entries.len() {
        let Some(head) = entries.get(at..at + 8) else {
            return Err(FormatError::corrupt("run index entry cut short"));
        };
        let count = u32_at(head, 0);
        let compressed_len = u32_at(head, 4);
        if count == 0 || count > MAX_RUN_PAGES {
            return Err(FormatError::corrupt(format!(
                "run index entry of {count} pages (1..={MAX_RUN_PAGES})"
            )));
        }
        if compressed_len > MAX_COMPRESSED_LEN {
            return Err(FormatError::corrupt(format!(
                "run index entry of {compressed_len} compressed bytes exceeds {MAX_COMPRESSED_LEN}"
            )));
        }
        let Some(raw) = entries.get(at + 8..at + 8 + 4 * count as usize) else {
            return Err(FormatError::corrupt("run index entry cut short"));
        };
        let mut pgnos = Vec::with_capacity(count as usize);
        for c in raw.chunks_exact(4) {
            let p = PageNo::new(u32_at(c, 0))
                .ok_or_else(|| FormatError::corrupt("page number 0 in run index"))?;
            if last.is_some_and(|l| p <= l) || p.get() > header.commit {
                return Err(FormatError::corrupt(format!(
                    "run index page {p} out of order or beyond {} pages",
                    header.commit
                )));
            }
            if p.is_lock_page(header.page_size) {
                return Err(FormatError::corrupt(format!(
                    "run index holds the lock page {p}"
                )));
            }
            last = Some(p);
            pgnos.push(p);
        }
        total += count;
        let entry = RunEntry {
            offset,
            pgnos,
            compressed_len,
        };
        offset += entry.len();
        runs.push(entry);
        at += 8 + 4 * count as usize;
    }
    // Runs, terminator, index and trailer must be exactly the file.
    let end = offset + 4 + u64::from(len) + TRAILER_LEN as u64;
    if end != file_size {
        return Err(FormatError::corrupt(format!(
            "run index describes a file of {end} bytes, the file has {file_size}"
        )));
    }
    if trailer.total_pages != total {
        return Err(FormatError::corrupt(format!(
            "trailer says {} pages, run index holds {total}",
            trailer.total_pages
        )));
    }
    if header.kind == FileKind::Snapshot && total != header.snapshot_page_count() {
        return Err(FormatError::corrupt(format!(
            "snapshot index holds {total} pages, a database of {} pages needs {}",
            header.commit,
            header.snapshot_page_count()
        )));
    }
    Ok(FileIndex {
        header,
        runs,
        trailer,
    })
}

/// The run index of a whole file held in memory, split as a ranged reader fetches it (header,
/// index, tail). For tests and tools; a restore fetches the three pieces instead.
pub fn index_of(bytes: &[u8]) -> Result<FileIndex> {
    let head: &[u8; HEADER_LEN] = bytes
        .get(..HEADER_LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or(FormatError::Truncated { what: "header" })?;
    let tail_at = bytes
        .len()
        .checked_sub(TRAILER_LEN)
        .ok_or(FormatError::Truncated { what: "trailer" })?;
    let tail: &[u8; TRAILER_LEN] = bytes[tail_at..].try_into().expect("TRAILER_LEN bytes");
    let len = index_len(tail, bytes.len() as u64)? as usize;
    let index = bytes
        .get(tail_at.saturating_sub(len)..tail_at)
        .ok_or(FormatError::Truncated { what: "run index" })?;
    parse_index(head, bytes.len() as u64, tail, index)
}

/// Parses the bytes of one run fetched at `entry`'s offset and length, which
/// must agree with the entry; decode it with [`RawRun::decode`], which checks
/// its CRC.
pub fn read_run(entry: &RunEntry, bytes: &[u8]) -> Result<RawRun> {
    if bytes.len() as u64 != entry.len() {
        return Err(FormatError::Truncated { what: "run data" });
    }
    let n = entry.pgnos.len();
    let stored_pgnos = &bytes[4..4 + 4 * n];
    let agrees = u32_at(bytes, 0) as usize == n
        && stored_pgnos
            .chunks_exact(4)
            .zip(&entry.pgnos)
            .all(|(c, p)| u32_at(c, 0) == p.get())
        && u32_at(bytes, 4 + 4 * n) == entry.compressed_len;
    if !agrees {
        return Err(FormatError::corrupt(format!(
            "run at offset {} does not match the run index",
            entry.offset
        )));
    }
    let crc = u32_at(bytes, 8 + 4 * n);
    Ok(RawRun::from_parts(
        entry.pgnos.clone(),
        crc,
        bytes[12 + 4 * n..].to_vec(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode_file;
    use crate::testkit::{PAGE_SIZE, segment};

    fn parse(bytes: &[u8]) -> Result<FileIndex> {
        index_of(bytes)
    }

    #[test]
    fn the_index_finds_every_run_and_its_pages() {
        let pages = [(1, 1), (2, 2), (5, 5), (9, 9), (10, 10)];
        let bytes = segment(7, 12, &pages);
        let idx = parse(&bytes).unwrap();
        let whole = decode_file(&bytes).unwrap();
        assert_eq!(idx.header, whole.header);
        assert_eq!(idx.trailer, whole.trailer);
        // Two pages a run.
        assert_eq!(idx.runs.len(), 3);
        let ps = idx.header.page_size;
        let mut got = Vec::new();
        for e in &idx.runs {
            let at = e.offset as usize;
            let run = read_run(e, &bytes[at..at + e.len() as usize])
                .unwrap()
                .decode(ps)
                .unwrap();
            got.extend(run.pages().map(|(p, d)| (p.get(), d[0])));
        }
        let want: Vec<(u32, u8)> = pages.to_vec();
        assert_eq!(got, want);
    }

    #[test]
    fn an_empty_segment_has_an_empty_index() {
        let bytes = segment(3, 4, &[]);
        assert!(parse(&bytes).unwrap().runs.is_empty());
    }

    #[test]
    fn any_damage_to_the_index_or_its_framing_is_refused() {
        let bytes = segment(7, 12, &[(1, 1), (2, 2), (5, 5)]);
        let tail_at = bytes.len() - TRAILER_LEN;
        let len =
            index_len(&bytes[tail_at..].try_into().unwrap(), bytes.len() as u64).unwrap() as usize;
        // Every byte of the index (entries and CRC) and of the trailer's length field.
        let spots = (tail_at - len..tail_at).chain(tail_at + 12..tail_at + 16);
        for i in spots {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(parse(&b).is_err(), "flipped byte {i} accepted");
            assert!(
                decode_file(&b).is_err(),
                "decoder accepted flipped byte {i}"
            );
        }
        // The file's size must be what the index describes.
        let mut longer = bytes[..HEADER_LEN].to_vec();
        longer.extend_from_slice(&[0; 8]);
        longer.extend_from_slice(&bytes[HEADER_LEN..]);
        assert!(parse(&longer).is_err());
    }

    #[test]
    fn a_fetched_run_must_match_its_entry() {
        let bytes = segment(7, 12, &[(1, 1), (2, 2), (5, 5)]);
        let idx = parse(&bytes).unwrap();
        let e = &idx.runs[0];
        let at = e.offset as usize;
        let mut run = bytes[at..at + e.len() as usize].to_vec();
        run[4] ^= 1; // its first page number
        assert!(read_run(e, &run).is_err());
        assert!(read_run(e, &run[1..]).is_err());
        // Data damage passes the framing but not the run CRC.
        let mut data = bytes[at..at + e.len() as usize].to_vec();
        let last = data.len() - 1;
        data[last] ^= 1;
        let raw = read_run(e, &data).unwrap();
        assert!(raw.decode(PageSize::new(PAGE_SIZE).unwrap()).is_err());
    }

    #[test]
    fn a_file_without_the_flag_has_no_index_to_parse() {
        let bytes = segment(7, 12, &[(1, 1)]);
        let mut head: [u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().unwrap();
        let h = Header::parse(&head).unwrap().0;
        head = h.to_bytes();
        let tail: [u8; TRAILER_LEN] = bytes[bytes.len() - TRAILER_LEN..].try_into().unwrap();
        assert!(parse_index(&head, bytes.len() as u64, &tail, &[0; 4]).is_err());
    }
}
