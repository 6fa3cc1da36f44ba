//! Applying a restore plan to a temporary database file.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use replica_formats::{
    DbChecksum, FileDecoder, ObjectKey, PageNo, PageSize, RestorePlan, TxId, page_hash,
};
use tokio::runtime::Handle;

use super::{RestoreError, RestoreOptions};
use crate::replica::ReplicaClient;
use crate::replica::reader::ObjectReader;

/// What [`build`] achieved.
pub(super) struct Built {
    pub txid: TxId,
    pub files: usize,
    pub bytes: u64,
    /// The corrupt segment where a fallback restore stopped.
    pub stopped_at: Option<String>,
}

/// The database under construction and the hash of each of its pages.
pub(super) struct Target {
    file: File,
    path: String,
    page_size: PageSize,
    hashes: Vec<u64>,
    checksum: DbChecksum,
    /// The replica file being applied, for errors about what it declares.
    key: String,
}

impl Target {
    /// An empty database in `file` (at `path`), built from files of `page_size`; `key` names
    /// the replica file errors about declared sizes blame.
    pub(super) fn new(file: File, path: &Path, page_size: PageSize, key: String) -> Self {
        Target {
            file,
            path: path.display().to_string(),
            page_size,
            hashes: Vec::new(),
            checksum: DbChecksum::EMPTY,
            key,
        }
    }

    /// Checksum of the database as built so far.
    pub(super) fn checksum(&self) -> DbChecksum {
        self.checksum
    }

    /// Makes the built file durable.
    pub(super) fn sync(&self) -> Result<(), RestoreError> {
        self.file.sync_all().map_err(self.io())
    }

    fn io(&self) -> impl Fn(std::io::Error) -> RestoreError + '_ {
        move |source| RestoreError::Io {
            path: self.path.clone(),
            source,
        }
    }

    pub(super) fn write(&mut self, pgno: PageNo, data: &[u8]) -> Result<(), RestoreError> {
        let i = pgno.get() as usize - 1;
        if i >= self.hashes.len() {
            self.resize(pgno.get())?;
        }
        let h = page_hash(pgno, data);
        self.checksum.toggle(self.hashes[i]);
        self.checksum.toggle(h);
        self.hashes[i] = h;
        let off = i as u64 * self.page_size.get() as u64;
        crate::platform::write_all_at(&self.file, data, off).map_err(self.io())
    }

    /// Writes a decoded run: one hash per page, one write per stretch of consecutive pages
    /// (a snapshot's runs are 64 consecutive pages: 64 times fewer system calls than page by
    /// page).
    fn write_run(&mut self, run: &replica_formats::DecodedRun) -> Result<(), RestoreError> {
        let ps = self.page_size.as_usize();
        let mut start = 0;
        while start < run.pgnos.len() {
            let first = run.pgnos[start].get();
            let mut end = start + 1;
            while end < run.pgnos.len() && run.pgnos[end].get() == first + (end - start) as u32 {
                end += 1;
            }
            let last = first + (end - start) as u32 - 1;
            if last as usize > self.hashes.len() {
                self.resize(last)?;
            }
            for (k, pgno) in run.pgnos[start..end].iter().enumerate() {
                let i = pgno.get() as usize - 1;
                let h = page_hash(*pgno, &run.data[(start + k) * ps..(start + k + 1) * ps]);
                self.checksum.toggle(self.hashes[i]);
                self.checksum.toggle(h);
                self.hashes[i] = h;
            }
            let off = (first as u64 - 1) * ps as u64;
            crate::platform::write_all_at(&self.file, &run.data[start * ps..end * ps], off)
                .map_err(self.io())?;
            start = end;
        }
        Ok(())
    }

    /// A size a replica file declares (a checksummed header can still be crafted) must fit on
    /// the output's file system before memory (8 bytes a page) or the file is sized for it.
    fn room(&self, pages: u32) -> Result<(), RestoreError> {
        let need = pages as u64 * self.page_size.get() as u64;
        let have = self.hashes.len() as u64 * self.page_size.get() as u64;
        if need <= have {
            return Ok(());
        }
        let Some(free) = crate::platform::free_bytes(&self.file) else {
            return Ok(());
        };
        if need - have > free {
            return Err(RestoreError::TooLarge {
                key: self.key.clone(),
                pages,
                bytes: need,
                free,
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    /// Sets the size in pages; new pages read as zeros.
    pub(super) fn resize(&mut self, commit: u32) -> Result<(), RestoreError> {
        self.room(commit)?;
        let n = commit as usize;
        while self.hashes.len() > n {
            let h = self.hashes.pop().expect("nonempty");
            self.checksum.toggle(h);
        }
        let zero = vec![0u8; self.page_size.as_usize()];
        while self.hashes.len() < n {
            let p = PageNo::new(self.hashes.len() as u32 + 1).expect("nonzero");
            let h = if p.is_lock_page(self.page_size) {
                0
            } else {
                page_hash(p, &zero)
            };
            self.checksum.toggle(h);
            self.hashes.push(h);
        }
        Ok(())
    }

    pub(super) fn set_len(&mut self, commit: u32) -> Result<(), RestoreError> {
        self.resize(commit)?;
        let len = commit as u64 * self.page_size.get() as u64;
        self.file.set_len(len).map_err(self.io())
    }
}

/// Downloads and applies the plan's files into `tmp`.
pub(super) fn build(
    client: &ReplicaClient,
    rt: &Handle,
    plan: &RestorePlan,
    tmp: &Path,
    opts: &RestoreOptions,
) -> Result<(Built, Target), RestoreError> {
    let io = |source| RestoreError::Io {
        path: tmp.display().to_string(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(io)?;
    let corrupt = |key: &ObjectKey| {
        let (replica, key) = (client.name().to_owned(), key.path());
        move |source| read_failed_or_corrupt(replica, key, source)
    };
    // Snapshot: streamed, every run checked as it is decoded.
    let reader = ObjectReader::open(client, &plan.snapshot, rt)?;
    let total = reader.size();
    let bar = progress_bar(opts.progress, total);
    let counter = Arc::new(AtomicU64::new(0));
    let reader = Counting {
        inner: reader,
        n: counter.clone(),
    };
    let mut dec = FileDecoder::new(BufReader::with_capacity(1 << 20, reader))
        .map_err(corrupt(&plan.snapshot))?;
    let header = *dec.header();
    // The plan trusts names: a file copied under another name must not stand in for it.
    header
        .check_key(&plan.snapshot)
        .map_err(corrupt(&plan.snapshot))?;
    let mut t = Target {
        file,
        path: tmp.display().to_string(),
        page_size: header.page_size,
        // Grown as verified pages arrive, never sized from the header up front.
        hashes: Vec::new(),
        checksum: DbChecksum::EMPTY,
        key: plan.snapshot.path(),
    };
    let mut writeback = Writeback::default();
    while let Some(run) = dec.next_run().map_err(corrupt(&plan.snapshot))? {
        let pages = run
            .decode(header.page_size)
            .map_err(corrupt(&plan.snapshot))?;
        t.write_run(&pages)?;
        writeback.wrote(&t.file, (pages.data.len()) as u64);
        if let Some(b) = &bar {
            b.set_position(counter.load(Ordering::Relaxed).min(total));
        }
    }
    let trailer = dec.finish().map_err(corrupt(&plan.snapshot))?;
    t.set_len(header.commit)?;
    if trailer.post_checksum != t.checksum {
        return Err(diverged(
            client,
            &plan.snapshot,
            trailer.post_checksum,
            t.checksum,
        ));
    }
    let mut built = Built {
        txid: header.max_txid,
        files: 1,
        bytes: total,
        stopped_at: None,
    };
    // Segments: each is downloaded and verified whole before any of its pages is applied, so a
    // corrupt file can never leave a half-applied state.
    for key in &plan.segments {
        t.key = key.path();
        match apply_segment(client, rt, key, &mut t) {
            Ok((txid, size)) => {
                built.txid = txid;
                built.files += 1;
                built.bytes += size;
            }
            // A file that does not follow the state before it (valid checksums, another
            // history: crafted or mixed in) is as unusable as a damaged one.
            Err(e @ (RestoreError::Corrupt { .. } | RestoreError::Diverged { .. }))
                if opts.fallback =>
            {
                tracing::warn!("{e}; restoring the state before it");
                built.stopped_at = Some(key.path());
                break;
            }
            Err(e) => return Err(e),
        }
    }
    t.file.sync_all().map_err(io)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok((built, t))
}

/// Starts the kernel writing the restored file back while it is still being built, a few MB
/// at a time, so the final fsync (which stays: it is what makes the restore durable) finds
/// little left to do: when all of it waited for the end, it was a large part of a large
/// restore (`docs/measurements.md`).
#[derive(Default)]
struct Writeback {
    pending: u64,
}

impl Writeback {
    const EVERY: u64 = 8 << 20;

    fn wrote(&mut self, file: &File, bytes: u64) {
        self.pending += bytes;
        if self.pending < Self::EVERY {
            return;
        }
        self.pending = 0;
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: sync_file_range takes the descriptor and three integers by value and reads
            // no memory of ours; `file` is open for the whole call. Offset 0 and length 0 mean
            // the whole file. Only a hint: an error changes nothing, the fsync at the end still
            // runs. (rustix has no wrapper for it.)
            unsafe {
                libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = file;
    }
}

/// Downloads one segment, verifies it whole, checks that it follows the state built so far, and
/// applies it; returns its last position and size.
pub(super) fn apply_segment(
    client: &ReplicaClient,
    rt: &Handle,
    key: &ObjectKey,
    t: &mut Target,
) -> Result<(TxId, u64), RestoreError> {
    let corrupt = |source| RestoreError::Corrupt {
        replica: client.name().to_owned(),
        key: key.path(),
        source,
    };
    let mut bytes = Vec::new();
    ObjectReader::open(client, key, rt)?
        .read_to_end(&mut bytes)
        .map_err(|source| match source.kind() {
            // Compacted away while we read it: the caller lists and plans again.
            std::io::ErrorKind::NotFound => {
                RestoreError::Replica(crate::replica::ReplicaError::NotFound {
                    replica: client.name().to_owned(),
                    key: key.path(),
                })
            }
            _ => RestoreError::Io {
                path: key.path(),
                source,
            },
        })?;
    // Verified whole before any page is applied (a fallback restore stops at the state
    // before a corrupt file), one run at a time both times: decoded all at once, a small file
    // of very compressible pages took memory in proportion to the pages it declares (1 GB for
    // a 1 MB crafted file).
    let mut dec = FileDecoder::new(&bytes[..]).map_err(corrupt)?;
    let header = *dec.header();
    header.check_key(key).map_err(corrupt)?;
    while let Some(raw) = dec.next_run().map_err(corrupt)? {
        raw.decode(header.page_size).map_err(corrupt)?;
    }
    let trailer = dec.finish().map_err(corrupt)?;
    if header.pre_checksum != t.checksum {
        return Err(diverged(client, key, header.pre_checksum, t.checksum));
    }
    let mut dec = FileDecoder::new(&bytes[..]).map_err(corrupt)?;
    while let Some(raw) = dec.next_run().map_err(corrupt)? {
        let run = raw.decode(header.page_size).map_err(corrupt)?;
        for (pgno, data) in run.pages() {
            t.write(pgno, data)?;
        }
    }
    t.set_len(header.commit)?;
    if trailer.post_checksum != t.checksum {
        return Err(diverged(client, key, trailer.post_checksum, t.checksum));
    }
    Ok((header.max_txid, bytes.len() as u64))
}

pub(super) fn diverged(
    client: &ReplicaClient,
    key: &ObjectKey,
    expected: DbChecksum,
    found: DbChecksum,
) -> RestoreError {
    RestoreError::Diverged {
        replica: client.name().to_owned(),
        key: key.path(),
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

pub(super) fn progress_bar(enabled: bool, total: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !enabled || total < (16 << 20) || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "restoring {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}

/// Counts bytes read, for the progress bar.
struct Counting<R> {
    inner: R,
    n: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A decoding error of a streamed file: the replica's own read failure when that is what it
/// is (an outage mid-restore is no corrupt file, and `-fallback` must not skip the file for
/// it), else the file is corrupt.
fn read_failed_or_corrupt(
    replica: String,
    key: String,
    source: replica_formats::FormatError,
) -> RestoreError {
    use replica_formats::FormatError;
    let corrupt = |source| RestoreError::Corrupt {
        replica,
        key,
        source,
    };
    match source {
        FormatError::Io(e) if e.get_ref().is_some() => {
            let kind = e.kind();
            match e.into_inner() {
                Some(inner) => match inner.downcast::<crate::replica::ReplicaError>() {
                    Ok(r) => RestoreError::Replica(*r),
                    Err(other) => corrupt(FormatError::Io(std::io::Error::new(kind, other))),
                },
                None => corrupt(FormatError::Io(std::io::Error::from(kind))),
            }
        }
        source => corrupt(source),
    }
}
