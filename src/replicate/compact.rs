//! Compaction: merging a run of contiguous segments into one higher-level segment.
//!
//! The merged file takes the database from the first segment's starting state to the last one's
//! final state: for every page the newest image wins; a page cut off by a truncation inside the
//! range and not rewritten afterwards is dropped, and, if the database grew back over it, written
//! as zeros (what SQLite reads from a regrown file). Inputs are streamed one run at a time, so
//! memory stays at one decoded run per input however large the range is.

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::Path;

use replica_formats::{
    DecodedRun, EncodeOptions, FileDecoder, FileEncoder, FileKind, FormatError, Header, Level,
    ObjectKey, PageNo,
};

/// One input being merged.
struct Input {
    dec: Option<FileDecoder<BufReader<File>>>,
    run: Option<DecodedRun>,
    idx: usize,
    /// Smallest database size from this file to the end of the range: a page above it was
    /// truncated away after this file wrote it.
    floor: u32,
}

impl Input {
    fn current(&self) -> Option<PageNo> {
        self.run.as_ref().and_then(|r| r.pgnos.get(self.idx).copied())
    }

    fn advance(&mut self) -> Result<(), FormatError> {
        self.idx += 1;
        while self.run.as_ref().is_none_or(|r| self.idx >= r.pgnos.len()) {
            let Some(dec) = self.dec.as_mut() else {
                self.run = None;
                return Ok(());
            };
            match dec.next_run()? {
                Some(raw) => {
                    self.run = Some(raw.decode(dec.header().page_size)?);
                    self.idx = 0;
                }
                None => {
                    self.run = None;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn page(&self) -> &[u8] {
        let r = self.run.as_ref().expect("current page exists");
        let ps = r.data.len() / r.pgnos.len();
        &r.data[self.idx * ps..(self.idx + 1) * ps]
    }
}

fn bad(e: FormatError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Merges the segment files `paths` (contiguous, in position order) into `out` as one segment at
/// `level`; returns its key.
pub fn merge<W: Write>(paths: &[&Path], level: Level, out: W, opts: EncodeOptions) -> io::Result<ObjectKey> {
    let mut inputs = Vec::with_capacity(paths.len());
    let mut headers: Vec<Header> = Vec::with_capacity(paths.len());
    for p in paths {
        let dec = FileDecoder::new(BufReader::with_capacity(64 * 1024, File::open(p)?)).map_err(bad)?;
        let h = dec.header().clone();
        if h.kind != FileKind::Segment {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "only segments are compacted"));
        }
        if let Some(prev) = headers.last() {
            if prev.max_txid.next() != h.min_txid || prev.page_size != h.page_size {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "segments are not contiguous"));
            }
        }
        headers.push(h);
        inputs.push(Input { dec: Some(dec), run: None, idx: 0, floor: 0 });
    }
    let (first, last) = match (headers.first(), headers.last()) {
        (Some(f), Some(l)) => (f.clone(), l.clone()),
        _ => return Err(io::Error::new(io::ErrorKind::InvalidInput, "nothing to merge")),
    };
    let mut floor = u32::MAX;
    for (i, h) in headers.iter().enumerate().rev() {
        floor = floor.min(h.commit);
        inputs[i].floor = floor;
    }
    let zone_start = floor; // pages above this were truncated at some point in the range
    for inp in &mut inputs {
        inp.advance_from_start().map_err(bad)?;
    }
    let header = Header {
        kind: FileKind::Segment,
        page_size: first.page_size,
        commit: last.commit,
        min_txid: first.min_txid,
        max_txid: last.max_txid,
        timestamp: last.timestamp,
        pre_checksum: first.pre_checksum,
        wal: last.wal,
    };
    let mut enc = FileEncoder::new(out, &header, opts).map_err(bad)?;
    let zero = vec![0u8; header.page_size.as_usize()];
    let mut next_zero = zone_start.saturating_add(1);
    let emit_zeros_below = |enc: &mut FileEncoder<W>, next_zero: &mut u32, below: u32| -> io::Result<()> {
        while *next_zero < below && *next_zero <= header.commit {
            let p = PageNo::new(*next_zero).expect("nonzero");
            if !p.is_lock_page(header.page_size) {
                enc.write_page(p, &zero).map_err(bad)?;
            }
            *next_zero += 1;
        }
        Ok(())
    };
    loop {
        let Some(pgno) = inputs.iter().filter_map(Input::current).min() else {
            break;
        };
        emit_zeros_below(&mut enc, &mut next_zero, pgno.get())?;
        // The newest input holding this page wins; every input at this page moves on.
        let newest = inputs.iter().rposition(|i| i.current() == Some(pgno)).expect("min exists");
        if pgno.get() <= header.commit {
            if pgno.get() <= inputs[newest].floor {
                enc.write_page(pgno, inputs[newest].page()).map_err(bad)?;
            } else {
                enc.write_page(pgno, &zero).map_err(bad)?;
            }
        }
        if next_zero == pgno.get() {
            next_zero += 1;
        }
        for inp in inputs.iter_mut().filter(|i| i.current() == Some(pgno)) {
            inp.advance().map_err(bad)?;
        }
    }
    emit_zeros_below(&mut enc, &mut next_zero, u32::MAX)?;
    let mut post = None;
    for inp in inputs {
        if let Some(dec) = inp.dec {
            post = Some(dec.finish().map_err(bad)?.post_checksum);
        }
    }
    let (mut w, _) = enc.finish(post.expect("at least one input")).map_err(bad)?;
    w.flush()?;
    Ok(ObjectKey::Segment {
        level,
        min: header.min_txid,
        max: header.max_txid,
        ts: header.timestamp,
    })
}

impl Input {
    fn advance_from_start(&mut self) -> Result<(), FormatError> {
        self.run = None;
        self.idx = 0;
        while self.run.as_ref().is_none_or(|r| self.idx >= r.pgnos.len()) {
            let Some(dec) = self.dec.as_mut() else {
                return Ok(());
            };
            match dec.next_run()? {
                Some(raw) => {
                    self.run = Some(raw.decode(dec.header().page_size)?);
                    self.idx = 0;
                }
                None => return Ok(()),
            }
        }
        Ok(())
    }
}

/// Decides when to compact the spool's level-0 segments and when a fresh snapshot is due, so a
/// restore reads about one database's worth of data however long the history is.
#[derive(Debug)]
pub struct Compactor {
    /// Level-0 segments above this position are not compacted yet (the spool keeps them).
    pub watermark: Option<replica_formats::TxId>,
    /// How often level-0 segments are merged.
    pub interval: std::time::Duration,
    last: std::time::Instant,
    /// Bytes of segments written since the last snapshot (what a restore reads on top of it).
    pub since_snapshot: u64,
    /// Size of the last snapshot.
    pub snapshot_bytes: u64,
    /// Snapshot at least this often, if set.
    pub snapshot_interval: Option<std::time::Duration>,
    last_snapshot: std::time::Instant,
}

/// Segments since the last snapshot may add up to this much before a new snapshot is taken,
/// or the last snapshot's size if larger.
pub const SNAPSHOT_MIN_BYTES: u64 = 16 << 20;

impl Compactor {
    /// A compactor whose level-0 segments start after `watermark`.
    pub fn new(watermark: Option<replica_formats::TxId>, interval: std::time::Duration) -> Self {
        let now = std::time::Instant::now();
        Compactor {
            watermark,
            interval,
            last: now,
            since_snapshot: 0,
            snapshot_bytes: 0,
            snapshot_interval: None,
            last_snapshot: now,
        }
    }

    /// Records a spooled file.
    pub fn note(&mut self, key: &ObjectKey, size: u64) {
        if key.is_snapshot() {
            self.since_snapshot = 0;
            self.snapshot_bytes = size;
            self.last_snapshot = std::time::Instant::now();
        } else if key.level() == Some(Level::ZERO) {
            self.since_snapshot += size;
        }
    }

    /// True when a new snapshot would make restores cheaper than the files piled on the last one.
    pub fn snapshot_due(&self) -> bool {
        self.since_snapshot > self.snapshot_bytes.max(SNAPSHOT_MIN_BYTES)
            || self.snapshot_interval.is_some_and(|i| self.last_snapshot.elapsed() >= i)
    }

    /// Merges the level-0 segments of `spool` above the watermark into one level-1 segment when
    /// the interval has passed and there are at least two. Returns the new key and its size.
    pub fn tick(
        &mut self,
        spool: &super::spool::Spool,
        opts: EncodeOptions,
        force: bool,
    ) -> io::Result<Option<(ObjectKey, u64)>> {
        if !force && self.last.elapsed() < self.interval {
            return Ok(None);
        }
        self.last = std::time::Instant::now();
        let keys: Vec<ObjectKey> = spool
            .keys()?
            .into_iter()
            .filter(|k| k.level() == Some(Level::ZERO))
            .collect();
        let start = match self.watermark {
            Some(w) => w,
            None => match keys.first() {
                Some(k) => match replica_formats::TxId::new(k.min_txid().get() - 1) {
                    Some(t) => t,
                    None => {
                        // The chain starts at position 1: nothing precedes it to compact from.
                        return Ok(None);
                    }
                },
                None => return Ok(None),
            },
        };
        let chain = replica_formats::chain_from(&keys, start, replica_formats::Target::Latest);
        if chain.len() < 2 {
            return Ok(None);
        }
        let paths: Vec<std::path::PathBuf> = chain.iter().map(|k| spool.path(k)).collect();
        let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
        let last = chain.last().expect("two or more").clone();
        let level1 = Level::new(1).expect("valid level");
        let key = ObjectKey::Segment {
            level: level1,
            min: chain[0].min_txid(),
            max: last.max_txid(),
            ts: last.timestamp(),
        };
        let size = spool.write(&key, |w| merge(&refs, level1, w, opts).map(|_| ()))?;
        self.watermark = Some(last.max_txid());
        Ok(Some((key, size)))
    }
}
