//! Merging a run of contiguous segments into one segment covering their union (compaction).
//!
//! The merged file takes the database from the first segment's starting state to the last one's
//! final state: for every page the newest image wins; a page cut off by a truncation inside the
//! range and not rewritten afterwards is dropped, and, if the database grew back over it, written
//! as zeros (what SQLite reads from a regrown file). Inputs are streamed one run at a time, so
//! memory stays at one decoded run per input however large the range is. Works over any
//! `Read`/`Write`, so it is tested in memory and the replicator feeds it files.

use std::io::{Read, Write};

use crate::decode::{DecodedRun, FileDecoder};
use crate::encode::{EncodeOptions, FileEncoder};
use crate::error::{FormatError, Result};
use crate::header::{FileKind, Header};
use crate::key::{Level, ObjectKey};
use crate::pos::PageNo;

/// One input being merged.
struct Input<R: Read> {
    dec: FileDecoder<R>,
    run: Option<DecodedRun>,
    idx: usize,
    /// Smallest database size from this file to the end of the range: a page above it was
    /// truncated away after this file wrote it.
    floor: u32,
}

impl<R: Read> Input<R> {
    fn current(&self) -> Option<PageNo> {
        self.run
            .as_ref()
            .and_then(|r| r.pgnos.get(self.idx).copied())
    }

    fn advance(&mut self) -> Result<()> {
        self.idx += 1;
        self.fill()
    }

    /// Loads runs until the cursor is on a page (or the input is exhausted).
    fn fill(&mut self) -> Result<()> {
        while self.run.as_ref().is_none_or(|r| self.idx >= r.pgnos.len()) {
            match self.dec.next_run()? {
                Some(raw) => {
                    self.run = Some(raw.decode(self.dec.header().page_size)?);
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

    /// The data of the current page; only called while [`current`](Self::current) is `Some`.
    fn page(&self) -> &[u8] {
        let r = self.run.as_ref().expect("current page exists");
        let ps = r.data.len() / r.pgnos.len();
        &r.data[self.idx * ps..(self.idx + 1) * ps]
    }
}

/// Merges the segment files read from `inputs` (contiguous, in position order) into `out` as
/// one segment; returns its key at `level` (the header has no level: the caller names the file).
/// Inputs that are not segments, not contiguous or of different page sizes are refused
/// ([`FormatError::InvalidInput`]), as is an empty list; a corrupt input fails the merge.
pub fn merge_segments<R: Read, W: Write>(
    inputs: impl IntoIterator<Item = R>,
    level: Level,
    out: W,
    opts: EncodeOptions,
) -> Result<ObjectKey> {
    let mut ins: Vec<Input<R>> = Vec::new();
    let mut headers: Vec<Header> = Vec::new();
    for r in inputs {
        let dec = FileDecoder::new(r)?;
        let h = *dec.header();
        if h.kind != FileKind::Segment {
            return Err(FormatError::invalid("only segments are compacted"));
        }
        if let Some(prev) = headers.last()
            && (prev.max_txid.next() != h.min_txid || prev.page_size != h.page_size)
        {
            return Err(FormatError::invalid("segments are not contiguous"));
        }
        headers.push(h);
        ins.push(Input {
            dec,
            run: None,
            idx: 0,
            floor: 0,
        });
    }
    let (first, last) = match (headers.first(), headers.last()) {
        (Some(f), Some(l)) => (*f, *l),
        _ => return Err(FormatError::invalid("nothing to merge")),
    };
    let mut floor = u32::MAX;
    for (i, h) in headers.iter().enumerate().rev() {
        floor = floor.min(h.commit);
        ins[i].floor = floor;
    }
    let zone_start = floor; // pages above this were truncated at some point in the range
    for inp in &mut ins {
        inp.fill()?;
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
    let mut enc = FileEncoder::new(out, &header, opts)?;
    let zero = vec![0u8; header.page_size.as_usize()];
    let mut next_zero = zone_start.saturating_add(1);
    let emit_zeros_below =
        |enc: &mut FileEncoder<W>, next_zero: &mut u32, below: u32| -> Result<()> {
            while *next_zero < below && *next_zero <= header.commit {
                let p = PageNo::new(*next_zero).expect("nonzero");
                if !p.is_lock_page(header.page_size) {
                    enc.write_page(p, &zero)?;
                }
                *next_zero += 1;
            }
            Ok(())
        };
    while let Some(pgno) = ins.iter().filter_map(Input::current).min() {
        emit_zeros_below(&mut enc, &mut next_zero, pgno.get())?;
        // The newest input holding this page wins; every input at this page moves on.
        let newest = ins
            .iter()
            .rposition(|i| i.current() == Some(pgno))
            .expect("min exists");
        if pgno.get() <= header.commit {
            if pgno.get() <= ins[newest].floor {
                enc.write_page(pgno, ins[newest].page())?;
            } else {
                enc.write_page(pgno, &zero)?;
            }
        }
        if next_zero == pgno.get() {
            next_zero += 1;
        }
        for inp in ins.iter_mut().filter(|i| i.current() == Some(pgno)) {
            inp.advance()?;
        }
    }
    emit_zeros_below(&mut enc, &mut next_zero, u32::MAX)?;
    let mut post = None;
    for inp in ins {
        post = Some(inp.dec.finish()?.post_checksum);
    }
    let (mut w, _) = enc.finish(post.expect("at least one input"))?;
    w.flush()?;
    Ok(ObjectKey::Segment {
        level,
        min: header.min_txid,
        max: header.max_txid,
        ts: header.timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode_file;

    use crate::testkit::{PAGE_SIZE as PS, segment};

    /// A database as a vector of pages, with segments applied the way restore applies them.
    fn apply(db: &mut Vec<Vec<u8>>, bytes: &[u8]) {
        let f = decode_file(bytes).unwrap();
        for (p, data) in f.pages() {
            let i = p.get() as usize - 1;
            if db.len() <= i {
                db.resize(i + 1, vec![0; PS as usize]);
            }
            db[i] = data.to_vec();
        }
        db.resize(f.header.commit as usize, vec![0; PS as usize]);
    }

    #[test]
    fn merged_segment_equals_applying_each_in_turn() {
        // Growth, overwrite, a truncation below pages written earlier, regrowth over them with
        // and without rewriting them.
        let segs = [
            segment(2, 6, &[(1, 1), (5, 5), (6, 6)]),
            segment(3, 6, &[(2, 2), (5, 55)]),
            segment(4, 3, &[(3, 3)]),
            segment(5, 8, &[(1, 11), (7, 7), (8, 8)]),
            segment(6, 8, &[(8, 88)]),
        ];
        for base_len in [0usize, 4, 10] {
            let base: Vec<Vec<u8>> = (0..base_len)
                .map(|i| vec![100 + i as u8; PS as usize])
                .collect();
            let mut one_by_one = base.clone();
            for s in &segs {
                apply(&mut one_by_one, s);
            }
            let mut out = Vec::new();
            let key = merge_segments(
                segs.iter().map(|s| &s[..]),
                Level::new(1).unwrap(),
                &mut out,
                EncodeOptions::default(),
            )
            .unwrap();
            assert_eq!((key.min_txid().get(), key.max_txid().get()), (2, 6));
            let mut merged = base.clone();
            apply(&mut merged, &out);
            assert_eq!(merged, one_by_one, "base of {base_len} pages");
            assert_eq!(
                merged[5],
                vec![0u8; PS as usize],
                "page 6 was truncated away and regrown unwritten"
            );
        }
    }

    #[test]
    fn refuses_gaps_nothing_and_corrupt_inputs() {
        let level = Level::new(1).unwrap();
        let a = segment(2, 1, &[(1, 1)]);
        let b = segment(4, 1, &[(1, 2)]);
        let merge = |ins: Vec<&[u8]>| {
            merge_segments(ins, level, Vec::new(), EncodeOptions::default()).map(|_| ())
        };
        assert!(matches!(
            merge(vec![&a, &b]),
            Err(FormatError::InvalidInput { .. })
        ));
        assert!(matches!(
            merge(Vec::new()),
            Err(FormatError::InvalidInput { .. })
        ));
        let c = segment(3, 1, &[(1, 3)]);
        let mut torn = c.clone();
        torn.truncate(c.len() - 10);
        assert!(merge(vec![&a, &c]).is_ok());
        assert!(merge(vec![&a, &torn]).is_err());
    }
}
