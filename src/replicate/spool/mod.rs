//! The local spool: encoded segments and snapshots waiting to be shipped.
//!
//! The monitor writes every file here first (temp file, rename), so checkpointing only ever waits
//! on the local disk, never on a replica; each replica ships from the spool at its own pace, and
//! files leave the spool once every replica has them. The spool uses the same key layout as a
//! replica, so it is itself a valid replica of the database.
//!
//! Spool files are not fsynced: the replicas are the durable copy (a file replica fsyncs what it
//! links or copies in). A spool file lost or torn by a power failure is detected at the next
//! start (its header or trailer does not verify, or a replica is ahead of the spool) and the
//! monitor then starts a new chain with a snapshot, so no replica ever mixes histories.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use replica_formats::{DbChecksum, FileDecoder, Header, ObjectKey, TxId};

use crate::fsutil;

mod index;

/// The spool directory of one database.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    index: std::sync::Arc<index::Index>,
}

impl Spool {
    /// The spool for `db` lives in `<meta>/spool`, where meta defaults to `.<db name>-memsync`
    /// next to the database.
    pub fn open(meta_dir: &Path) -> io::Result<Self> {
        let dir = meta_dir.join("spool");
        fs::create_dir_all(&dir)?;
        let index = index::shared(&dir);
        Ok(Spool { dir, index })
    }

    /// The spool in `meta_dir` as it is, creating nothing: before the monitor has checked the
    /// database, only to read what an earlier run left (a missing spool lists as empty).
    pub fn existing(meta_dir: &Path) -> Self {
        let dir = meta_dir.join("spool");
        let index = index::shared(&dir);
        Spool { dir, index }
    }

    /// Directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of `key` in the spool.
    pub fn path(&self, key: &ObjectKey) -> PathBuf {
        self.dir.join(key.path())
    }

    /// Writes a file through `fill`, durably, under `key`; returns its size.
    pub fn write(
        &self,
        key: &ObjectKey,
        fill: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
    ) -> io::Result<u64> {
        let dest = self.path(key);
        let tmp = fsutil::temp_sibling(&dest);
        let res = (|| {
            // The level's directory is made when first missing, not looked for on every write.
            let file = match File::create(&tmp) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.make_dirs_to(&dest)?;
                    File::create(&tmp)?
                }
                other => other?,
            };
            let mut w = BufWriter::with_capacity(64 * 1024, file);
            fill(&mut w)?;
            crate::fault::point("spool-write")?;
            let f = w.into_inner().map_err(|e| e.into_error())?;
            let size = f.metadata()?.len();
            crate::fault::point("spool-rename")?;
            fs::rename(&tmp, &dest)?;
            self.index.added(*key, size);
            crate::fault::point("spool-renamed")?;
            Ok(size)
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res
    }

    /// Makes the directories between the spool and `dest`, never the spool itself: a spool
    /// that is gone went with its database (`rm -rf` of a tenant's directory), and making it
    /// again under the remover made its `rmdir` fail.
    fn make_dirs_to(&self, dest: &Path) -> io::Result<()> {
        if !self.dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("spool {} is gone", self.dir.display()),
            ));
        }
        let missing: Vec<&Path> = dest
            .ancestors()
            .skip(1)
            .take_while(|d| *d != self.dir && !d.is_dir())
            .collect();
        for d in missing.into_iter().rev() {
            match fs::create_dir(d) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Every key in the spool, sorted by position. Temp files and strangers are skipped.
    /// Listed from the directory once, then known (see `index.rs`).
    pub fn keys(&self) -> io::Result<Vec<ObjectKey>> {
        self.index.keys()
    }

    /// `key`'s file was found missing: it is no longer listed.
    pub fn forget(&self, key: &ObjectKey) {
        self.index.removed(key);
    }

    /// Bytes the spooled files `keys` take (files gone meanwhile count 0).
    pub fn bytes(&self, keys: &[ObjectKey]) -> u64 {
        keys.iter()
            .filter_map(|k| self.index.size(k, &self.path(k)))
            .sum()
    }

    /// Header of the spooled file `key`.
    pub fn header(&self, key: &ObjectKey) -> io::Result<Header> {
        let f = File::open(self.path(key))?;
        let dec = FileDecoder::new(io::BufReader::new(f))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(*dec.header())
    }

    /// The database checksum after applying the spooled file `key`, read from its trailer.
    pub fn post_checksum(&self, key: &ObjectKey) -> io::Result<DbChecksum> {
        let mut f = File::open(self.path(key))?;
        f.seek(SeekFrom::End(-24))?;
        let mut t = [0u8; 24];
        f.read_exact(&mut t)?;
        if &t[20..] != b"MEND" {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "spooled file has no trailer",
            ));
        }
        Ok(DbChecksum::from_raw(u64::from_le_bytes(
            t[4..12].try_into().expect("8 bytes"),
        )))
    }

    /// Deletes the files a power cut left empty or torn (spool files are not fsynced): a header
    /// that does not read or does not match the key, or no trailer where the file ends. Such a
    /// file must be neither replayed nor shipped; what it held is still in the database, and
    /// the gap it leaves makes the next start resume before it or take a snapshot. Temp files
    /// a crash left mid-write go too. Call before the monitor starts, holding the lock.
    pub fn drop_torn(&self) -> io::Result<()> {
        remove_temp_files(&self.dir)?;
        for k in self.keys()? {
            let whole = self.header(&k).is_ok_and(|h| h.check_key(&k).is_ok())
                && self.post_checksum(&k).is_ok();
            if whole {
                continue;
            }
            self.index.removed(&k);
            match fs::remove_file(self.path(&k)) {
                Ok(()) => tracing::warn!(
                    "spool {}: dropped {k}: empty or torn (lost in a crash before it was synced)",
                    self.dir.display()
                ),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Deletes files every replica has (position at or below `upto`), except segments not yet
    /// merged into the next level (compaction reads them here), files after `keep_after` (the
    /// saved page map's position) and the newest file (it tells a restarted monitor where the
    /// WAL stood).
    /// `top` is the highest compaction level (never merged further). Returns the files and
    /// bytes removed.
    pub fn prune(&self, upto: TxId, keep_after: Option<TxId>, top: u8) -> io::Result<(usize, u64)> {
        let victims = self.prunable(upto, keep_after, top)?;
        self.remove(&victims)
    }

    /// What [`Self::prune`] would delete, decided without touching the disk once the spool
    /// was listed (most confirmations delete nothing: level-0 files wait for their merge).
    pub fn prunable(
        &self,
        upto: TxId,
        keep_after: Option<TxId>,
        top: u8,
    ) -> io::Result<Vec<ObjectKey>> {
        let keys = self.keys()?;
        let newest = keys.iter().map(|k| k.max_txid()).max();
        let marks: Vec<Option<TxId>> = (0..top)
            .map(|l| replica_formats::watermark(&keys, l))
            .collect();
        Ok(keys
            .into_iter()
            .filter(|k| {
                let pending_merge = match k.level() {
                    Some(l) if l.get() < top => Some(k.max_txid()) > marks[l.get() as usize],
                    _ => false,
                };
                // Files after the saved page map are what a restart after a crash replays.
                let needed_for_replay = keep_after.is_some_and(|t| k.max_txid() > t);
                k.max_txid() <= upto
                    && Some(k.max_txid()) != newest
                    && !pending_merge
                    && !needed_for_replay
            })
            .collect())
    }

    /// Deletes the spooled files `keys`; returns the files and bytes removed (files already
    /// gone count 0).
    pub fn remove(&self, keys: &[ObjectKey]) -> io::Result<(usize, u64)> {
        let (mut n, mut bytes) = (0, 0);
        for k in keys {
            let size = self.index.size(k, &self.path(k)).unwrap_or(0);
            match fs::remove_file(self.path(k)) {
                Ok(()) => (n, bytes) = (n + 1, bytes + size),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            self.index.removed(k);
        }
        Ok((n, bytes))
    }
}

/// Removes the `*.tmp` files under `dir` (see [`fsutil::temp_sibling`]): with the database's
/// lock held, they are what a crash left mid-write.
fn remove_temp_files(dir: &Path) -> io::Result<()> {
    let Some(rd) = index::read_dir_or_none(dir)? else {
        return Ok(());
    };
    for entry in rd {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_temp_files(&entry.path())?;
        } else if entry.file_name().to_string_lossy().ends_with(".tmp") {
            match fs::remove_file(entry.path()) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use replica_formats::testkit::{seg_at, segment};
    use std::io::Write;

    /// Pruning says what it removed: files at or below the position, never the newest.
    #[test]
    fn prune_counts_the_files_and_bytes_it_removes() {
        let d = tempfile::tempdir().unwrap();
        let spool = Spool::open(d.path()).unwrap();
        for t in 1..=3u64 {
            let bytes = vec![0u8; 10 * t as usize];
            spool
                .write(&seg_at(0, t, t, t as i64), |w| w.write_all(&bytes))
                .unwrap();
        }
        let upto = TxId::new(3).unwrap();
        assert_eq!(spool.prune(upto, None, 0).unwrap(), (2, 30));
        assert_eq!(spool.keys().unwrap(), [seg_at(0, 3, 3, 3)]);
    }

    /// Every handle on one spool directory sees what any other writes, prunes or finds
    /// missing, once listed, without the directory being read again (the sink, compaction,
    /// the shippers and the pruner each hold one).
    #[test]
    fn handles_on_one_spool_share_what_it_holds() {
        let d = tempfile::tempdir().unwrap();
        let sink = Spool::open(d.path()).unwrap();
        let shipper = Spool::existing(d.path());
        let (a, b) = (seg_at(0, 1, 1, 1), seg_at(0, 2, 2, 2));
        sink.write(&a, |w| w.write_all(b"one")).unwrap();
        assert_eq!(
            shipper.keys().unwrap(),
            [a],
            "the first listing reads the directory"
        );
        sink.write(&b, |w| w.write_all(b"three")).unwrap();
        assert_eq!(shipper.keys().unwrap(), [a, b]);
        assert_eq!(shipper.bytes(&[a, b]), 8);
        // A file gone behind the spool's back is dropped once an upload finds it missing.
        fs::remove_file(sink.path(&a)).unwrap();
        shipper.forget(&a);
        assert_eq!(sink.keys().unwrap(), [b]);
        assert_eq!(sink.prune(TxId::new(2).unwrap(), None, 0).unwrap(), (0, 0));
    }

    /// What a power cut leaves (an empty file, a file cut short, a header under another key, a
    /// temp file) is dropped; whole files stay.
    #[test]
    fn drop_torn_keeps_whole_files_only() {
        let d = tempfile::tempdir().unwrap();
        let spool = Spool::open(d.path()).unwrap();
        let put = |t: u64, bytes: &[u8]| {
            let p = spool.path(&seg_at(0, t, t, t as i64));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, bytes).unwrap();
        };
        let whole = segment(1, 4, &[(1, 1), (2, 2), (3, 3)]);
        put(1, &whole);
        put(2, b"");
        let cut = segment(3, 4, &[(1, 1), (2, 2), (3, 3)]);
        put(3, &cut[..cut.len() / 2]);
        // Whole, but the header says position 1, not 4.
        put(4, &whole);
        let temp = spool.dir().join("segments/0/x.seg.123.tmp");
        fs::write(&temp, b"partial").unwrap();
        spool.drop_torn().unwrap();
        assert_eq!(spool.keys().unwrap(), [seg_at(0, 1, 1, 1)]);
        assert!(!temp.exists());
    }
}
