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
        self.run
            .as_ref()
            .and_then(|r| r.pgnos.get(self.idx).copied())
    }

    fn advance(&mut self) -> Result<(), FormatError> {
        self.idx += 1;
        self.fill()
    }

    /// Loads runs until the cursor is on a page (or the input is exhausted).
    fn fill(&mut self) -> Result<(), FormatError> {
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
pub fn merge<W: Write>(
    paths: &[&Path],
    level: Level,
    out: W,
    opts: EncodeOptions,
) -> io::Result<ObjectKey> {
    let mut inputs = Vec::with_capacity(paths.len());
    let mut headers: Vec<Header> = Vec::with_capacity(paths.len());
    for p in paths {
        let dec =
            FileDecoder::new(BufReader::with_capacity(8 * 1024, File::open(p)?)).map_err(bad)?;
        let h = *dec.header();
        if h.kind != FileKind::Segment {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "only segments are compacted",
            ));
        }
        if let Some(prev) = headers.last()
            && (prev.max_txid.next() != h.min_txid || prev.page_size != h.page_size)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "segments are not contiguous",
            ));
        }
        headers.push(h);
        inputs.push(Input {
            dec: Some(dec),
            run: None,
            idx: 0,
            floor: 0,
        });
    }
    let (first, last) = match (headers.first(), headers.last()) {
        (Some(f), Some(l)) => (*f, *l),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "nothing to merge",
            ));
        }
    };
    let mut floor = u32::MAX;
    for (i, h) in headers.iter().enumerate().rev() {
        floor = floor.min(h.commit);
        inputs[i].floor = floor;
    }
    let zone_start = floor; // pages above this were truncated at some point in the range
    for inp in &mut inputs {
        inp.fill().map_err(bad)?;
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
    let emit_zeros_below =
        |enc: &mut FileEncoder<W>, next_zero: &mut u32, below: u32| -> io::Result<()> {
            while *next_zero < below && *next_zero <= header.commit {
                let p = PageNo::new(*next_zero).expect("nonzero");
                if !p.is_lock_page(header.page_size) {
                    enc.write_page(p, &zero).map_err(bad)?;
                }
                *next_zero += 1;
            }
            Ok(())
        };
    while let Some(pgno) = inputs.iter().filter_map(Input::current).min() {
        emit_zeros_below(&mut enc, &mut next_zero, pgno.get())?;
        // The newest input holding this page wins; every input at this page moves on.
        let newest = inputs
            .iter()
            .rposition(|i| i.current() == Some(pgno))
            .expect("min exists");
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

/// Most files merged into one: bounds memory (one decoded run per input) and, when a time
/// bucket holds more, makes several files of it.
pub const FAN_IN: usize = 16;

/// Position up to which the segments of `level` are settled: merged into a higher level, or
/// left behind by a snapshot with nothing more to merge before it. The next merge of that level
/// starts after it. Level-0 segments that lead up to a snapshot are merged before the snapshot
/// settles them: they never gain another member, and left alone they would stay in the replica
/// as overlapping, lightly compressed files for the whole retention window.
pub fn watermark(keys: &[ObjectKey], level: u8) -> Option<replica_formats::TxId> {
    let mut mark = keys
        .iter()
        .filter(|k| k.level().is_some_and(|l| l.get() > level))
        .map(ObjectKey::max_txid)
        .max();
    let mut snaps: Vec<replica_formats::TxId> = keys
        .iter()
        .filter(|k| k.is_snapshot())
        .map(ObjectKey::max_txid)
        .collect();
    snaps.sort_unstable();
    snaps.dedup();
    for s in snaps {
        if mark >= Some(s) {
            continue;
        }
        if level == 0 && closed_run_len(keys, mark, s) >= 2 {
            break;
        }
        mark = Some(s);
    }
    mark
}

/// How many level-0 segments lead from `start` (or from the first of them) exactly to the
/// snapshot position `snap`; 0 if they do not reach it.
fn closed_run_len(
    keys: &[ObjectKey],
    start: Option<replica_formats::TxId>,
    snap: replica_formats::TxId,
) -> usize {
    let l0: Vec<ObjectKey> = keys
        .iter()
        .filter(|k| k.level() == Some(Level::ZERO) && k.max_txid() <= snap)
        .copied()
        .collect();
    let Some(start) = start.or_else(|| first_start(&l0, 0)) else {
        return 0;
    };
    let chain = replica_formats::chain_from(&l0, start, replica_formats::Target::Latest);
    if chain.last().map(ObjectKey::max_txid) == Some(snap) {
        chain.len()
    } else {
        0
    }
}

/// How compacted segments are encoded, by level. Level-1 files are written most often (one
/// per 30 s bucket, or per `FAN_IN` level-0 files), so they get the cheaper setting; what is
/// merged from them gets the tighter one. (They now stay on the replica for level 1's
/// `retention`, a day by default: the tighter setting would save ~14 % of their bytes for
/// about twice the merge CPU; not measured yet.)
#[derive(Debug, Clone, Copy, Default)]
pub struct CompactEncoding {
    /// Level-1 segments.
    pub level1: EncodeOptions,
    /// Level 2 and above.
    pub above: EncodeOptions,
}

impl CompactEncoding {
    fn for_level(&self, level: Level) -> EncodeOptions {
        if level.get() == 1 {
            self.level1
        } else {
            self.above
        }
    }
}

/// One compaction pass over the spool: at every level below the top, merges the segments
/// whose commit times fall in one bucket of the next level's interval (`tiers`) into one
/// segment of the next level, once the bucket is closed (`now` or a later file is past it, or
/// a snapshot ends the group) or it holds `FAN_IN` files. A closed bucket holding a single file
/// is copied up as it is, so every level's chain stays contiguous and every file gets covered
/// (and then deleted after its tier's retention). A busy bucket merged `FAN_IN` files at a
/// time is consolidated into one file of its level once it closes, so a tier stores one file
/// per bucket. Returns, per file written, its key, its size and the size of the files it
/// replaces. Pure file work: the monitor runs it on a worker thread so a large merge never
/// delays the WAL.
pub fn compact_spool(
    spool: &super::spool::Spool,
    enc: CompactEncoding,
    tiers: &crate::config::Tiers,
    now: replica_formats::Timestamp,
) -> io::Result<Vec<(ObjectKey, u64, u64)>> {
    let mut pass = Pass {
        spool,
        enc,
        now,
        keys: spool.keys()?,
        written: Vec::new(),
    };
    for level in 0..tiers.top() {
        let width = tiers.interval(level + 1).as_millis().max(1) as i64;
        pass.merge_buckets(level, level + 1, width)?;
        pass.merge_buckets(level + 1, level + 1, width)?;
    }
    Ok(pass.written)
}

/// State of one compaction pass.
struct Pass<'a> {
    spool: &'a super::spool::Spool,
    enc: CompactEncoding,
    now: replica_formats::Timestamp,
    keys: Vec<ObjectKey>,
    written: Vec<(ObjectKey, u64, u64)>,
}

impl Pass<'_> {
    /// Merges the closed time buckets (`width` ms) of the chain of `from`-level segments after
    /// its watermark into `to`-level segments. With `from == to` (consolidation) a bucket
    /// already in one file is left alone.
    fn merge_buckets(&mut self, from: u8, to: u8, width: i64) -> io::Result<()> {
        let Some(start) = watermark(&self.keys, from).or_else(|| first_start(&self.keys, from))
        else {
            return Ok(());
        };
        let bucket = |k: &ObjectKey| k.timestamp().get().div_euclid(width);
        let at_level: Vec<ObjectKey> = self
            .keys
            .iter()
            .filter(|k| k.level().is_some_and(|l| l.get() == from))
            .copied()
            .collect();
        let chain = replica_formats::chain_from(&at_level, start, replica_formats::Target::Latest);
        let snapshots: std::collections::BTreeSet<replica_formats::TxId> = self
            .keys
            .iter()
            .filter(|k| k.is_snapshot())
            .map(ObjectKey::max_txid)
            .collect();
        let mut rest = &chain[..];
        while let Some(first) = rest.first() {
            // The group: files of one bucket, ending at a snapshot at the latest.
            let b = bucket(first);
            let mut len = 0;
            let mut closed = false;
            for k in rest.iter().take(FAN_IN) {
                if bucket(k) != b {
                    closed = true;
                    break;
                }
                len += 1;
                if snapshots.contains(&k.max_txid()) {
                    closed = true;
                    break;
                }
            }
            let group = &rest[..len];
            closed |= len == FAN_IN || self.now.get().div_euclid(width) > b;
            if !closed {
                break;
            }
            rest = &rest[len..];
            if from == to && len < 2 {
                continue;
            }
            self.merge(group, Level::new(to).expect("valid level"))?;
        }
        Ok(())
    }

    /// Writes `group` as one segment at `level` (one file: its bytes under the new key, as
    /// the header has no level).
    fn merge(&mut self, group: &[ObjectKey], level: Level) -> io::Result<()> {
        let last = group.last().expect("a group has a file");
        let key = ObjectKey::Segment {
            level,
            min: group[0].min_txid(),
            max: last.max_txid(),
            ts: last.timestamp(),
        };
        let paths: Vec<std::path::PathBuf> = group.iter().map(|k| self.spool.path(k)).collect();
        let merged: u64 = paths
            .iter()
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum();
        let size = if let [one] = &paths[..] {
            self.spool.write(&key, |w| {
                io::copy(&mut File::open(one)?, w)?;
                Ok(())
            })?
        } else {
            let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
            let opts = self.enc.for_level(level);
            self.spool
                .write(&key, |w| merge(&refs, level, w, opts).map(|_| ()))?
        };
        self.keys.push(key);
        self.written.push((key, size, merged));
        Ok(())
    }
}

/// Where the chain of `level` segments starts when nothing was compacted yet: just before the
/// first of them.
fn first_start(keys: &[ObjectKey], level: u8) -> Option<replica_formats::TxId> {
    let first = keys
        .iter()
        .filter(|k| k.level().is_some_and(|l| l.get() == level))
        .min_by_key(|k| k.min_txid())?;
    replica_formats::TxId::new(first.min_txid().get() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use replica_formats::{DbChecksum, PageSize, Timestamp, TxId, WalPosition, decode_file};

    const PS: u32 = 512;

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

    fn segment(txid: u64, commit: u32, pages: &[(u32, u8)]) -> Vec<u8> {
        let t = TxId::new(txid).unwrap();
        let h = Header {
            kind: FileKind::Segment,
            page_size: PageSize::new(PS).unwrap(),
            commit,
            min_txid: t,
            max_txid: t,
            timestamp: Timestamp::from_millis(txid as i64),
            pre_checksum: DbChecksum::EMPTY,
            wal: WalPosition::default(),
        };
        let mut enc = FileEncoder::new(
            Vec::new(),
            &h,
            EncodeOptions {
                pages_per_run: 2,
                ..Default::default()
            },
        )
        .unwrap();
        for &(p, fill) in pages {
            enc.write_page(PageNo::new(p).unwrap(), &vec![fill; PS as usize])
                .unwrap();
        }
        enc.finish(DbChecksum::EMPTY).unwrap().0
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
        let d = tempfile::tempdir().unwrap();
        let paths: Vec<_> = segs
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let p = d.path().join(format!("{i}.seg"));
                std::fs::write(&p, b).unwrap();
                p
            })
            .collect();
        let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
        for base_len in [0usize, 4, 10] {
            let base: Vec<Vec<u8>> = (0..base_len)
                .map(|i| vec![100 + i as u8; PS as usize])
                .collect();
            let mut one_by_one = base.clone();
            for s in &segs {
                apply(&mut one_by_one, s);
            }
            let mut out = Vec::new();
            let key = merge(
                &refs,
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
    fn refuses_gaps() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        let b = d.path().join("b");
        std::fs::write(&a, segment(2, 1, &[(1, 1)])).unwrap();
        std::fs::write(&b, segment(4, 1, &[(1, 2)])).unwrap();
        assert!(
            merge(
                &[&a, &b],
                Level::new(1).unwrap(),
                Vec::new(),
                EncodeOptions::default()
            )
            .is_err()
        );
    }

    /// Level-0 segments leading up to a snapshot form a closed group: merged at the next pass
    /// (not only at the timed one), ending exactly at the snapshot so it still has level-0 files
    /// to continue from; a lone one is left as it is and does not hold the spool back.
    #[test]
    fn level0_segments_before_a_snapshot_are_merged_up_to_it() {
        let d = tempfile::tempdir().unwrap();
        let spool = crate::replicate::spool::Spool::open(d.path()).unwrap();
        let snap = |txid| ObjectKey::Snapshot {
            txid: TxId::new(txid).unwrap(),
            ts: Timestamp::from_millis(txid as i64),
        };
        let put = |key: ObjectKey, bytes: Vec<u8>| {
            spool.write(&key, |w| w.write_all(&bytes)).unwrap();
        };
        let l0 = |txid: u64| ObjectKey::Segment {
            level: Level::ZERO,
            min: TxId::new(txid).unwrap(),
            max: TxId::new(txid).unwrap(),
            ts: Timestamp::from_millis(txid as i64),
        };
        put(snap(1), b"snapshot".to_vec());
        for t in 2..=9 {
            put(l0(t), segment(t, 4, &[(1, t as u8), (t as u32 % 3 + 2, 1)]));
        }
        put(snap(6), b"snapshot".to_vec());
        let keys = spool.keys().unwrap();
        assert_eq!(
            watermark(&keys, 0),
            TxId::new(1),
            "the group before snapshot 6 is still to merge"
        );
        let written = compact_spool(
            &spool,
            CompactEncoding::default(),
            &crate::config::Tiers::default(),
            Timestamp::from_millis(0),
        )
        .unwrap();
        let merged: Vec<(u64, u64)> = written
            .iter()
            .map(|(k, _, _)| (k.min_txid().get(), k.max_txid().get()))
            .collect();
        assert_eq!(merged, vec![(2, 6)], "closed group merged, open one waits");
        let keys = spool.keys().unwrap();
        assert_eq!(watermark(&keys, 0), TxId::new(6));
        let chain = replica_formats::chain_from(
            &keys,
            TxId::new(6).unwrap(),
            replica_formats::Target::Latest,
        );
        assert_eq!(chain, vec![l0(7), l0(8), l0(9)], "snapshot 6 continues");
        let written = compact_spool(
            &spool,
            CompactEncoding::default(),
            &crate::config::Tiers::default(),
            Timestamp::from_millis(1 << 40),
        )
        .unwrap();
        // Long after: 7..9 merged into level 1, and copied up as the one file of its level-2
        // and level-3 buckets.
        let merged: Vec<(u8, u64, u64)> = written
            .iter()
            .map(|(k, _, _)| {
                (
                    k.level().unwrap().get(),
                    k.min_txid().get(),
                    k.max_txid().get(),
                )
            })
            .collect();
        assert_eq!(merged, vec![(1, 7, 9), (2, 7, 9), (3, 7, 9)]);

        // A single segment before a snapshot is settled as it is.
        let d = tempfile::tempdir().unwrap();
        let spool = crate::replicate::spool::Spool::open(d.path()).unwrap();
        let put = |key: ObjectKey, bytes: Vec<u8>| {
            spool.write(&key, |w| w.write_all(&bytes)).unwrap();
        };
        put(snap(1), b"snapshot".to_vec());
        put(l0(2), segment(2, 4, &[(1, 2)]));
        put(snap(2), b"snapshot".to_vec());
        put(l0(3), segment(3, 4, &[(1, 3)]));
        let keys = spool.keys().unwrap();
        assert_eq!(watermark(&keys, 0), TxId::new(2));
        assert!(
            compact_spool(
                &spool,
                CompactEncoding::default(),
                &crate::config::Tiers::default(),
                Timestamp::from_millis(0)
            )
            .unwrap()
            .is_empty()
        );
    }

    /// Level-0 files are merged by the time bucket of their commit: one level-1 file per closed
    /// 2 s bucket (a bucket of one file copied up), the bucket `now` is in left alone, and a
    /// bucket of more than `FAN_IN` files merged `FAN_IN` at a time, then consolidated.
    #[test]
    fn level0_files_are_merged_by_time_bucket() {
        let d = tempfile::tempdir().unwrap();
        let spool = crate::replicate::spool::Spool::open(d.path()).unwrap();
        let put = |key: ObjectKey, bytes: Vec<u8>| {
            spool.write(&key, |w| w.write_all(&bytes)).unwrap();
        };
        let at = |txid: u64, ms: i64| ObjectKey::Segment {
            level: Level::ZERO,
            min: TxId::new(txid).unwrap(),
            max: TxId::new(txid).unwrap(),
            ts: Timestamp::from_millis(ms),
        };
        put(
            ObjectKey::Snapshot {
                txid: TxId::new(1).unwrap(),
                ts: Timestamp::from_millis(0),
            },
            b"snapshot".to_vec(),
        );
        // Bucket 0 (0..2 s): 2..=3; bucket 1: 4; bucket 2: 5..=22 (18 files); bucket 3: 23..=24.
        let times = [(2, 100), (3, 1900), (4, 2500)]
            .into_iter()
            .chain((5..=22).map(|t| (t, 4000 + t as i64)))
            .chain([(23, 6100), (24, 6200)]);
        for (t, ms) in times {
            put(at(t, ms), segment(t, 4, &[(1, t as u8)]));
        }
        let tiers = crate::config::Tiers {
            l0_retention: std::time::Duration::ZERO,
            levels: vec![crate::config::LevelTier {
                interval: std::time::Duration::from_secs(2),
                retention: std::time::Duration::ZERO,
            }],
        };
        let written = compact_spool(
            &spool,
            CompactEncoding::default(),
            &tiers,
            Timestamp::from_millis(6300),
        )
        .unwrap();
        let got: Vec<(u64, u64)> = written
            .iter()
            .map(|(k, _, _)| (k.min_txid().get(), k.max_txid().get()))
            .collect();
        // Bucket 2 took two merges; closed, it is consolidated into one level-1 file.
        assert_eq!(got, vec![(2, 3), (4, 4), (5, 20), (21, 22), (5, 22)]);
        let keys = spool.keys().unwrap();
        let chain = replica_formats::chain_from(
            &keys,
            TxId::new(1).unwrap(),
            replica_formats::Target::Latest,
        );
        assert_eq!(
            chain
                .iter()
                .map(|k| (k.min_txid().get(), k.max_txid().get()))
                .collect::<Vec<_>>(),
            vec![(2, 3), (4, 4), (5, 22), (23, 23), (24, 24)],
            "a restore reads one file per closed bucket"
        );
        // The copied file is the same bytes under the level-1 key.
        let one = spool.path(&written[1].0);
        assert_eq!(
            std::fs::read(one).unwrap(),
            std::fs::read(spool.path(&at(4, 2500))).unwrap()
        );
        // Once time moved past bucket 3, it is merged too.
        let written = compact_spool(
            &spool,
            CompactEncoding::default(),
            &tiers,
            Timestamp::from_millis(8000),
        )
        .unwrap();
        assert_eq!(written.len(), 1);
        assert_eq!(written[0].0.min_txid().get(), 23);
    }
}
