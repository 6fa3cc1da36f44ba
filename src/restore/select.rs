//! Restore through the run index: only the newest version of each page is read.
//!
//! A sequential restore applies every file of the plan whole, so after hours of writes it
//! reads every version a hot page ever had in the chain. When every file of the plan carries a
//! run index, this path reads each file's header, trailer and index first, gives each page to
//! the newest file holding it, fetches only the runs holding given pages, and writes those
//! pages once. Per-file checksums cannot be checked without the intermediate states, so the
//! whole database built is checked against the newest file's `post_checksum` instead: a
//! mismatch anywhere (a wrong run, a chain that does not apply) shows there.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::path::Path;

use bytes::Bytes;
use replica_formats::{
    FileIndex, FormatError, HEADER_LEN, ObjectKey, PageNo, RestorePlan, RunEntry, TRAILER_LEN,
};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::RestoreError;
use super::apply::{Built, Target, diverged};
use crate::replica::{ReplicaClient, ReplicaError};

/// Bytes fetched past the trailer in the same request, in case the index fits: most level-0
/// and level-1 indexes do (4 bytes a page), sparing a request per file.
const TAIL_GUESS: u64 = 4 << 10;
/// Adjacent runs to fetch are read as one range up to this size.
const MAX_RANGE: u64 = 8 << 20;
/// Ranges (and index fetches) kept in flight unless `-parallelism` says otherwise.
pub const DEFAULT_AHEAD: usize = 4;

/// One file of the plan, read up to its index.
struct Indexed {
    key: ObjectKey,
    index: FileIndex,
}

/// Consecutive runs of one file fetched as one range, with the pages to take from each.
struct Range {
    file: usize,
    offset: u64,
    len: u64,
    runs: Vec<(usize, Vec<PageNo>)>,
}

/// Restores `plan` into `tmp` through the files' run indexes; `None` (nothing written, `tmp`
/// not created) when a file of the plan has no index or the files differ in page size, for
/// the sequential path to handle.
pub(super) fn build(
    client: &ReplicaClient,
    rt: &Handle,
    plan: &RestorePlan,
    tmp: &Path,
    progress: bool,
    ahead: usize,
) -> Result<Option<(Built, Target)>, RestoreError> {
    let keys: Vec<ObjectKey> = plan.files().copied().collect();
    let mut bytes = 0u64;
    let Some(files) = read_indexes(client, rt, &keys, &mut bytes, ahead)? else {
        return Ok(None);
    };
    // Each file must start from the state the one before it ends at: its header says which.
    // (Checked here from the headers alone: the whole-database check at the end cannot tell a
    // file of another history that rewrote every page that differed.)
    for w in files.windows(2) {
        let (pre, post) = (
            w[1].index.header.pre_checksum,
            w[0].index.trailer.post_checksum,
        );
        if pre != post {
            return Err(diverged(client, &w[1].key, pre, post));
        }
    }
    let newest = files.last().expect("a plan has a snapshot");
    let page_size = newest.index.header.page_size;
    if files.iter().any(|f| f.index.header.page_size != page_size) {
        return Ok(None);
    }
    let commit = newest.index.header.commit;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(|source| RestoreError::Io {
            path: tmp.display().to_string(),
            source,
        })?;
    let mut t = Target::new(file, tmp, page_size, newest.key.path());
    // Checks the size against free disk before anything is sized from it.
    t.resize(commit)?;
    let ranges = assign(&files, commit);
    log_plan(&files, &ranges);
    let bar = super::apply::progress_bar(progress, ranges.iter().map(|r| r.len).sum());
    let mut pending: VecDeque<(Range, JoinHandle<Result<Bytes, ReplicaError>>)> = VecDeque::new();
    let mut todo = ranges.into_iter();
    loop {
        while pending.len() < ahead {
            let Some(r) = todo.next() else { break };
            let (c, k, off, len) = (client.clone(), files[r.file].key, r.offset, r.len);
            let task = rt.spawn(async move { c.get_range(&k, off, len).await });
            pending.push_back((r, task));
        }
        let Some((r, task)) = pending.pop_front() else {
            break;
        };
        let got = rt.block_on(task).map_err(|e| RestoreError::Io {
            path: files[r.file].key.path(),
            source: std::io::Error::other(e),
        })??;
        bytes += got.len() as u64;
        apply_range(client, &files[r.file], &r, &got, &mut t)?;
        if let Some(b) = &bar {
            b.inc(got.len() as u64);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    t.set_len(commit)?;
    let post = newest.index.trailer.post_checksum;
    if t.checksum() != post {
        return Err(diverged(client, &newest.key, post, t.checksum()));
    }
    t.sync()?;
    let built = Built {
        txid: newest.index.header.max_txid,
        files: files.len(),
        bytes,
        stopped_at: None,
    };
    Ok(Some((built, t)))
}

/// Fetches every file's header, trailer and index (adding the bytes read to `bytes`); `None`
/// as soon as one has no index.
fn read_indexes(
    client: &ReplicaClient,
    rt: &Handle,
    keys: &[ObjectKey],
    bytes: &mut u64,
    ahead: usize,
) -> Result<Option<Vec<Indexed>>, RestoreError> {
    let mut out = Vec::with_capacity(keys.len());
    let mut pending = VecDeque::new();
    let mut todo = keys.iter();
    loop {
        while pending.len() < ahead {
            let Some(&key) = todo.next() else { break };
            let c = client.clone();
            pending.push_back((key, rt.spawn(async move { fetch_index(&c, &key).await })));
        }
        let Some((key, task)) = pending.pop_front() else {
            break;
        };
        let got = rt.block_on(task).map_err(|e| RestoreError::Io {
            path: key.path(),
            source: std::io::Error::other(e),
        })??;
        let Some((index, fetched)) = got else {
            return Ok(None);
        };
        *bytes += fetched;
        index
            .header
            .check_key(&key)
            .map_err(|source| corrupt(client, &key, source))?;
        out.push(Indexed { key, index });
    }
    Ok(Some(out))
}

/// Reads `key`'s header, then its tail (with [`TAIL_GUESS`] bytes before it) and, if the
/// index did not fit, the index; returns it with the bytes read, or `None` for a file without
/// an index.
async fn fetch_index(
    client: &ReplicaClient,
    key: &ObjectKey,
) -> Result<Option<(FileIndex, u64)>, RestoreError> {
    let bad = |source| corrupt(client, key, source);
    let size = client.size(key).await?;
    // A file shorter than a header (an empty one, say) is corrupt; a ranged read past its end
    // would be a store error naming no file format.
    if size < HEADER_LEN as u64 {
        return Err(bad(FormatError::Truncated { what: "header" }));
    }
    let head_bytes = client.get_range(key, 0, HEADER_LEN as u64).await?;
    let head: [u8; HEADER_LEN] = head_bytes[..]
        .try_into()
        .map_err(|_| bad(FormatError::Truncated { what: "header" }))?;
    if !replica_formats::Header::parse(&head).map_err(bad)?.1 {
        return Ok(None);
    }
    let tail_at = size
        .checked_sub(TRAILER_LEN as u64)
        .filter(|&t| t >= HEADER_LEN as u64)
        .ok_or_else(|| bad(FormatError::Truncated { what: "trailer" }))?;
    let guess = TAIL_GUESS.min(tail_at - HEADER_LEN as u64);
    let end = client
        .get_range(key, tail_at - guess, guess + TRAILER_LEN as u64)
        .await?;
    let mut fetched = HEADER_LEN as u64 + end.len() as u64;
    let tail: [u8; TRAILER_LEN] = end[guess as usize..]
        .try_into()
        .expect("ranged read length");
    let len = u64::from(replica_formats::index_len(&tail, size).map_err(bad)?);
    let index = if len <= guess {
        end.slice((guess - len) as usize..guess as usize)
    } else {
        fetched += len;
        client.get_range(key, tail_at - len, len).await?
    };
    let index = replica_formats::parse_index(&head, size, &tail, &index).map_err(bad)?;
    Ok(Some((index, fetched)))
}

/// Gives each page `1..=commit` to the newest file holding it (unless a newer file truncated
/// the database below it: it is then zeros) and returns the ranges to fetch, file by file.
fn assign(files: &[Indexed], commit: u32) -> Vec<Range> {
    let mut taken = vec![0u64; (commit as usize).div_ceil(64)];
    let mut ranges = Vec::new();
    // Pages above the smallest size a newer file left are zeros unless a newer file wrote them.
    let mut limit = commit;
    for (fi, f) in files.iter().enumerate().rev() {
        let mut cur: Option<Range> = None;
        for (ri, run) in f.index.runs.iter().enumerate() {
            let mut mine = Vec::new();
            for &p in &run.pgnos {
                let i = p.get() as usize - 1;
                if p.get() <= limit && taken[i / 64] & (1 << (i % 64)) == 0 {
                    taken[i / 64] |= 1 << (i % 64);
                    mine.push(p);
                }
            }
            if mine.is_empty() {
                ranges.extend(cur.take());
                continue;
            }
            match &mut cur {
                Some(r) if r.offset + r.len == run.offset && r.len + run.len() <= MAX_RANGE => {
                    r.len += run.len();
                    r.runs.push((ri, mine));
                }
                _ => {
                    ranges.extend(cur.take());
                    cur = Some(Range {
                        file: fi,
                        offset: run.offset,
                        len: run.len(),
                        runs: vec![(ri, mine)],
                    });
                }
            }
        }
        ranges.extend(cur);
        limit = limit.min(f.index.header.commit);
    }
    // Oldest file first, each in file order: the snapshot streams from its start.
    ranges.sort_by_key(|r| (r.file, r.offset));
    ranges
}

/// One debug line per file: how much of it the restore reads.
fn log_plan(files: &[Indexed], ranges: &[Range]) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    for (fi, f) in files.iter().enumerate() {
        let mine = ranges.iter().filter(|r| r.file == fi);
        let (mut bytes, mut runs, mut pages) = (0, 0, 0);
        for r in mine {
            bytes += r.len;
            runs += r.runs.len();
            pages += r.runs.iter().map(|(_, p)| p.len()).sum::<usize>();
        }
        let all_pages: usize = f.index.runs.iter().map(|r| r.pgnos.len()).sum();
        let all_bytes: u64 = f.index.runs.iter().map(RunEntry::len).sum();
        tracing::debug!(
            "{}: reading {bytes} of {all_bytes} run bytes, {runs} of {} runs, for {pages} of {all_pages} pages",
            f.key,
            f.index.runs.len()
        );
    }
}

/// Checks and decodes the runs of one fetched range and writes the pages given to them.
fn apply_range(
    client: &ReplicaClient,
    f: &Indexed,
    r: &Range,
    got: &Bytes,
    t: &mut Target,
) -> Result<(), RestoreError> {
    let ps = f.index.header.page_size;
    for (ri, mine) in &r.runs {
        let entry: &RunEntry = &f.index.runs[*ri];
        let at = (entry.offset - r.offset) as usize;
        let raw = got
            .get(at..at + entry.len() as usize)
            .ok_or(FormatError::Truncated { what: "run data" })
            .and_then(|b| replica_formats::read_run(entry, b))
            .and_then(|raw| raw.decode(ps))
            .map_err(|source| corrupt(client, &f.key, source))?;
        let mut want = mine.iter().peekable();
        for (p, data) in raw.pages() {
            if want.peek() == Some(&&p) {
                want.next();
                t.write(p, data)?;
            }
        }
    }
    Ok(())
}

fn corrupt(client: &ReplicaClient, key: &ObjectKey, source: FormatError) -> RestoreError {
    RestoreError::Corrupt {
        replica: client.name().to_owned(),
        key: key.path(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use replica_formats::testkit::{seg, segment};

    fn indexed(txid: u64, commit: u32, pages: &[u32]) -> Indexed {
        let b = segment(
            txid,
            commit,
            &pages.iter().map(|&p| (p, p as u8)).collect::<Vec<_>>(),
        );
        Indexed {
            key: seg(0, txid, txid),
            index: replica_formats::index_of(&b).unwrap(),
        }
    }

    /// (file, pages taken from it) in fetch order.
    fn taken(files: &[Indexed], commit: u32) -> Vec<(usize, Vec<u32>)> {
        assign(files, commit)
            .iter()
            .map(|r| {
                let pages = r.runs.iter().flat_map(|(_, p)| p.iter().map(|p| p.get()));
                (r.file, pages.collect())
            })
            .collect()
    }

    #[test]
    fn each_page_comes_from_the_newest_file_holding_it() {
        // Two pages a run: the oldest file's runs are {1,2} {3,4}; the newest rewrites 1 and 4.
        let files = [indexed(1, 4, &[1, 2, 3, 4]), indexed(2, 4, &[1, 4])];
        assert_eq!(taken(&files, 4), vec![(0, vec![2, 3]), (1, vec![1, 4])]);
    }

    #[test]
    fn a_run_whose_pages_are_all_replaced_is_not_fetched() {
        let files = [indexed(1, 4, &[1, 2, 3, 4]), indexed(2, 4, &[1, 2])];
        assert_eq!(taken(&files, 4), vec![(0, vec![3, 4]), (1, vec![1, 2])]);
    }

    #[test]
    fn pages_a_newer_file_truncated_away_stay_zeros_even_if_the_database_grows_back() {
        // File 2 shrinks the database to 2 pages, file 3 grows it to 5 writing only page 5:
        // pages 3 and 4 are zeros, as a sequential apply leaves them, not the snapshot's.
        let files = [
            indexed(1, 4, &[1, 2, 3, 4]),
            indexed(2, 2, &[1]),
            indexed(3, 5, &[5]),
        ];
        assert_eq!(
            taken(&files, 5),
            vec![(0, vec![2]), (1, vec![1]), (2, vec![5])]
        );
    }

    #[test]
    fn adjacent_runs_are_one_range() {
        let files = [
            indexed(1, 8, &[1, 2, 3, 4, 5, 6, 7, 8]),
            indexed(2, 8, &[3, 4]),
        ];
        let ranges = assign(&files, 8);
        // {1,2} and {5,6} {7,8} around the replaced {3,4}: two ranges from the snapshot.
        assert_eq!(ranges.iter().filter(|r| r.file == 0).count(), 2);
        assert_eq!(ranges[1].runs.len(), 2);
    }
}
