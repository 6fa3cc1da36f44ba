//! Compaction of the spool: carries out the plan of [`replica_formats::plan_compaction`] (which
//! segments, by time bucket, become which higher-level file) with
//! [`replica_formats::merge_segments`] over the spooled files. The decisions are pure and live in
//! `replica-formats`; this module only reads and writes files.

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::Path;

use replica_formats::{EncodeOptions, FormatError, Level, ObjectKey};

/// A file a compaction pass wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// Its key.
    pub key: ObjectKey,
    /// Its size in bytes.
    pub size: u64,
    /// Total size of the files it replaces.
    pub replaced: u64,
}

/// How compacted segments are encoded, by level. Level-1 files are written most often (one
/// per 30 s bucket, or per `FAN_IN` level-0 files), so they may get a cheaper setting than
/// what is merged from them; they also stay on the replica for level 1's `retention`, a day
/// by default, which favours the tighter one (`docs/measurements.md`).
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

/// One compaction pass over the spool: makes the merges [`replica_formats::plan_compaction`]
/// plans for the spool's keys, the tiers' bucket widths and `now`, in order, stopping at the
/// first failure. A merge of one file copies its bytes under the new key. Returns, per file
/// written, its key, its size and the size of the files it replaces. Pure file work: it runs
/// on a worker thread (`sink.rs`) so a large merge never delays the WAL.
pub fn compact_spool(
    spool: &super::spool::Spool,
    enc: CompactEncoding,
    tiers: &crate::config::Tiers,
    now: replica_formats::Timestamp,
) -> io::Result<Vec<Compacted>> {
    let intervals: Vec<std::time::Duration> = tiers.levels.iter().map(|l| l.interval).collect();
    let plan = replica_formats::plan_compaction(&spool.keys()?, &intervals, now);
    let mut written = Vec::with_capacity(plan.len());
    for m in &plan {
        written.push(write_merge(spool, m, enc)?);
    }
    Ok(written)
}

/// Writes one planned file into the spool; returns its key, its size and its inputs' size.
fn write_merge(
    spool: &super::spool::Spool,
    m: &replica_formats::Merge,
    enc: CompactEncoding,
) -> io::Result<Compacted> {
    let paths: Vec<std::path::PathBuf> = m.inputs.iter().map(|k| spool.path(k)).collect();
    let merged: u64 = paths
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    let level = m.output.level().expect("compaction writes segments");
    let size = if let [one] = &paths[..] {
        spool.write(&m.output, |w| {
            io::copy(&mut File::open(one)?, w)?;
            Ok(())
        })?
    } else {
        let opts = enc.for_level(level);
        spool.write(&m.output, |w| merge_files(&paths, level, w, opts))?
    };
    Ok(Compacted {
        key: m.output,
        size,
        replaced: merged,
    })
}

/// Merges the segment files at `paths` into `out` (see [`replica_formats::merge_segments`]).
fn merge_files<W: Write>(
    paths: &[impl AsRef<Path>],
    level: Level,
    out: W,
    opts: EncodeOptions,
) -> io::Result<()> {
    let inputs = paths
        .iter()
        .map(|p| Ok(BufReader::with_capacity(8 * 1024, File::open(p)?)))
        .collect::<io::Result<Vec<_>>>()?;
    match replica_formats::merge_segments(inputs, level, out, opts) {
        Ok(_) => Ok(()),
        Err(FormatError::Io(e)) => Err(e),
        Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use replica_formats::testkit::{PAGE_SIZE as PS, segment};
    use replica_formats::{PageNo, Timestamp, TxId, watermark};

    /// Files are merged through the spool: a missing input fails the pass, a corrupt one too.
    #[test]
    fn merge_files_reads_the_spooled_segments() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        let b = d.path().join("b");
        std::fs::write(&a, segment(2, 1, &[(1, 1)])).unwrap();
        std::fs::write(&b, segment(3, 1, &[(1, 2)])).unwrap();
        let level = Level::new(1).unwrap();
        let mut out = Vec::new();
        merge_files(&[&a, &b], level, &mut out, EncodeOptions::default()).unwrap();
        let f = replica_formats::decode_file(&out).unwrap();
        assert_eq!(
            f.page(PageNo::new(1).unwrap()),
            Some(&[2u8; PS as usize][..])
        );
        let missing = d.path().join("missing");
        let e = merge_files(&[&a, &missing], level, Vec::new(), EncodeOptions::default());
        assert_eq!(e.unwrap_err().kind(), io::ErrorKind::NotFound);
        std::fs::write(&b, b"MSYN garbage").unwrap();
        let e = merge_files(&[&a, &b], level, Vec::new(), EncodeOptions::default());
        assert_eq!(e.unwrap_err().kind(), io::ErrorKind::InvalidData);
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
            .map(|c| (c.key.min_txid().get(), c.key.max_txid().get()))
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
            .map(|c| {
                (
                    c.key.level().unwrap().get(),
                    c.key.min_txid().get(),
                    c.key.max_txid().get(),
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
        // Bucket 0 (0..2 s): 2..=3; bucket 1: 4; bucket 2: 5..=e (FAN_IN + 2 files); bucket 3:
        // the two after.
        let e = replica_formats::FAN_IN as u64 + 6;
        let times = [(2, 100), (3, 1900), (4, 2500)]
            .into_iter()
            .chain((5..=e).map(|t| (t, 4000 + t as i64)))
            .chain([(e + 1, 6100), (e + 2, 6200)]);
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
            .map(|c| (c.key.min_txid().get(), c.key.max_txid().get()))
            .collect();
        // Bucket 2 took two merges; closed, it is consolidated into one level-1 file.
        assert_eq!(got, vec![(2, 3), (4, 4), (5, e - 2), (e - 1, e), (5, e)]);
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
            vec![(2, 3), (4, 4), (5, e), (e + 1, e + 1), (e + 2, e + 2)],
            "a restore reads one file per closed bucket"
        );
        // The copied file is the same bytes under the level-1 key.
        let one = spool.path(&written[1].key);
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
        assert_eq!(written[0].key.min_txid().get(), e + 1);
    }
}
