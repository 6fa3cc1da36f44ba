//! Links into file replicas made durable in groups: one shared thread takes the spool files
//! that pool workers place, and makes them durable, links them and makes the links durable
//! in batches, telling each submitter how its file fared.
//!
//! A file replica's copy of a level-0 file counts only once its data and its directory entry
//! are fsynced. Done one file at a time by the worker that placed it, each `fsync` on a
//! journalling file system was a journal commit of its own: at 500 databases taking a commit
//! a second each, about a thousand a second, which filled the journal and made the
//! application's own writes wait for journal space (`docs/measurements.md`). Here the files
//! that arrive while the stream is dense are gathered for a few milliseconds and handled
//! together: the writeback of all of them is started at once, then each is fsynced, linked,
//! and each distinct directory fsynced. Every file and directory is still fsynced, so
//! correctness does not rest on one file system committing them together. A file that arrives
//! after a quiet spell goes at once: a lone commit does not wait for company.
//!
//! The data is durable before the link is made, so a power cut never leaves a replica file
//! whose content was not written (the order of a temp file, fsync, rename).

use std::collections::VecDeque;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::local::{Side, hard_link};
use crate::fsutil::parent_dir;

/// How long the first file of a dense stream waits for others to join its batch.
const WINDOW: Duration = Duration::from_millis(10);

/// Most files in one batch (each holds a descriptor while it is made durable).
const MAX_BATCH: usize = 256;

/// Largest file worth a place in a group: a bigger one's `fsync` would hold up every small
/// file behind it, so it goes its own way (a level-0 file of the benchmark's 200 commits a
/// second weighs about 2 MB, a merged one of 30 s of them 10-25 MB).
pub const GROUP_MAX: u64 = 8 << 20;

/// Called once the file is durably on the replica, or with what failed (a link that failed
/// left nothing; one whose directory could not be fsynced is removed again).
pub(super) type Done = Box<dyn FnOnce(Result<(), Side>) + Send>;

struct Job {
    src: PathBuf,
    dest: PathBuf,
    at: Instant,
    /// Taken when called; a job dropped without it (a panic) reports a failure.
    done: Option<Done>,
}

impl Job {
    fn report(mut self, r: Result<(), Side>) {
        if let Some(done) = self.done.take() {
            done(r);
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done(Err(Side::Write(io::Error::other(
                "the thread placing files on file replicas failed",
            ))));
        }
    }
}

struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    cv: Condvar,
}

/// Puts the spool file `src` durably at `dest` (never replacing a file there) on the shared
/// thread, then calls `done` there; submissions complete in the order they were made. Without
/// the thread (it could not start), right here.
pub(super) fn submit(src: PathBuf, dest: PathBuf, done: Done) {
    let job = Job {
        src,
        dest,
        at: Instant::now(),
        done: Some(done),
    };
    let Some(q) = queue() else {
        return run(vec![job]);
    };
    let mut jobs = q.jobs.lock().unwrap_or_else(|p| p.into_inner());
    jobs.push_back(job);
    // The thread waits for a first file, or sleeps out a window it ends on its own; a full
    // batch need not wait.
    if jobs.len() == 1 || jobs.len() == MAX_BATCH {
        q.cv.notify_one();
    }
}

/// The shared queue, its thread started on first use; `None` if it could not start.
fn queue() -> Option<&'static Queue> {
    static Q: OnceLock<Option<&'static Queue>> = OnceLock::new();
    *Q.get_or_init(|| {
        let q: &'static Queue = Box::leak(Box::new(Queue {
            jobs: Mutex::new(VecDeque::new()),
            cv: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("memsync-sync".into())
            .spawn(move || worker(q))
            .ok()
            .map(|_| q)
    })
}

fn worker(q: &Queue) {
    // When the last batch was done: a file arriving within a window of it is part of a dense
    // stream, and waits for others.
    let mut last_done = Instant::now() - WINDOW;
    loop {
        let batch = {
            let mut jobs = q.jobs.lock().unwrap_or_else(|p| p.into_inner());
            while jobs.is_empty() {
                jobs = q.cv.wait(jobs).unwrap_or_else(|p| p.into_inner());
            }
            if last_done.elapsed() < WINDOW {
                let deadline = jobs[0].at + WINDOW;
                loop {
                    let now = Instant::now();
                    if jobs.len() >= MAX_BATCH || now >= deadline {
                        break;
                    }
                    jobs =
                        q.cv.wait_timeout(jobs, deadline - now)
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                }
            }
            let n = jobs.len().min(MAX_BATCH);
            jobs.drain(..n).collect()
        };
        // A panic here must not take the thread down with every later file queued behind it:
        // the batch's jobs that were not told yet are told of a failure as they drop.
        let _ = catch_unwind(AssertUnwindSafe(|| run(batch)));
        last_done = Instant::now();
    }
}

/// Puts a batch in place and reports each file's outcome, in order.
fn run(batch: Vec<Job>) {
    let srcs: Vec<&Path> = batch.iter().map(|j| j.src.as_path()).collect();
    let synced = crate::platform::sync_files(&srcs);
    let mut results: Vec<Result<(), Side>> = batch
        .iter()
        .zip(synced)
        .map(|(j, synced)| {
            synced.map_err(Side::Read)?;
            hard_link(&j.src, &j.dest).map_err(|e| {
                // The spool file pruned meanwhile is the spool's news, not a replica failure.
                match e.kind() == io::ErrorKind::NotFound && !j.src.exists() {
                    true => Side::Read(e),
                    false => Side::Write(e),
                }
            })
        })
        .collect();
    let mut dirs: Vec<&Path> = batch
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_ok())
        .map(|(j, _)| parent_dir(&j.dest))
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        let Err(e) = crate::platform::sync_dir(dir) else {
            continue;
        };
        for (j, r) in batch.iter().zip(results.iter_mut()) {
            if r.is_ok() && parent_dir(&j.dest) == dir {
                // Not counted, so not left: the shipper puts it there again.
                let _ = std::fs::remove_file(&j.dest);
                let msg = format!("{}: {e}", dir.display());
                *r = Err(Side::Write(io::Error::new(e.kind(), msg)));
            }
        }
    }
    for (job, r) in batch.into_iter().zip(results) {
        // One callback's panic does not keep the others from being told.
        let _ = catch_unwind(AssertUnwindSafe(|| job.report(r)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A callback that panics does not take the thread down: the files after it are placed
    /// and reported.
    #[test]
    fn a_panicking_callback_stops_nothing() {
        let d = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel();
        for i in 0..3u8 {
            let src = d.path().join(format!("s{i}"));
            std::fs::write(&src, [i; 10]).unwrap();
            let tx = tx.clone();
            let done: Done = Box::new(move |r| {
                assert!(i != 1, "a callback's bug");
                let _ = tx.send((i, r.is_ok()));
            });
            submit(src, d.path().join(format!("r/f{i}")), done);
        }
        let got: Vec<(u8, bool)> = (0..2)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        assert_eq!(got, vec![(0, true), (2, true)]);
    }

    /// Files submitted together are each reported, in order; one whose spool file is
    /// missing, or whose name is taken on the replica, fails alone and leaves nothing.
    #[test]
    fn reports_each_file_in_order() {
        let d = tempfile::tempdir().unwrap();
        let spool = d.path().join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        let (tx, rx) = mpsc::channel();
        for i in 0..20u8 {
            let src = spool.join(format!("f{i}"));
            if i != 7 {
                std::fs::write(&src, [i; 100]).unwrap();
            }
            let dest = d.path().join(format!("r/d{}/f{i}", i % 3));
            if i == 11 {
                std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
                std::fs::write(&dest, b"theirs").unwrap();
            }
            let tx = tx.clone();
            let done: Done = Box::new(move |r| {
                let _ = tx.send((i, r.is_ok()));
            });
            submit(src, dest, done);
        }
        let got: Vec<(u8, bool)> = (0..20)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        let want: Vec<(u8, bool)> = (0..20).map(|i| (i, i != 7 && i != 11)).collect();
        assert_eq!(got, want);
        assert!(!d.path().join("r/d1/f7").exists());
        assert_eq!(std::fs::read(d.path().join("r/d2/f11")).unwrap(), b"theirs");
        assert_eq!(std::fs::read(d.path().join("r/d1/f10")).unwrap(), [10; 100]);
    }
}
