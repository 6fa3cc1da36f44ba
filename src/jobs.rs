//! Two shared threads for background jobs of every database (compaction passes). A thread per
//! job made the thread count grow with the number of databases; a job queued here waits its
//! turn instead, and the monitor that started it only looks at it between its own turns.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// Threads of the shared pool: compaction is light next to capture, and two keep one long pass
/// from holding every other database's up.
const THREADS: usize = 2;

type Work = Box<dyn FnOnce() + Send>;

struct Queue {
    jobs: Mutex<VecDeque<Work>>,
    cv: Condvar,
}

/// The shared queue, its threads started on first use; `None` if no thread could start (jobs
/// then run where they are spawned).
fn queue() -> Option<&'static Queue> {
    static Q: OnceLock<Option<&'static Queue>> = OnceLock::new();
    *Q.get_or_init(|| {
        let q: &'static Queue = Box::leak(Box::new(Queue {
            jobs: Mutex::new(VecDeque::new()),
            cv: Condvar::new(),
        }));
        let mut started = 0;
        for _ in 0..THREADS {
            let t = std::thread::Builder::new()
                .name("compact".into())
                .spawn(move || worker(q));
            started += usize::from(t.is_ok());
        }
        (started > 0).then_some(q)
    })
}

fn worker(q: &Queue) {
    loop {
        let job = {
            let mut jobs = q.jobs.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(j) = jobs.pop_front() {
                    break j;
                }
                jobs = q.cv.wait(jobs).unwrap_or_else(|p| p.into_inner());
            }
        };
        job();
    }
}

/// A job's result, once it ran.
pub struct Job<T> {
    done: Arc<(Mutex<Option<std::thread::Result<T>>>, Condvar)>,
}

impl<T> Job<T> {
    /// True once the job ran (or panicked).
    pub fn is_finished(&self) -> bool {
        self.done
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Waits for the job; `Err` if it panicked.
    pub fn join(self) -> std::thread::Result<T> {
        let (m, cv) = &*self.done;
        let mut slot = m.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(r) = slot.take() {
                return r;
            }
            slot = cv.wait(slot).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Queues `f` on the shared threads.
pub fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Job<T> {
    let done = Arc::new((Mutex::new(None), Condvar::new()));
    let d = done.clone();
    let work: Work = Box::new(move || {
        let r = catch_unwind(AssertUnwindSafe(f));
        *d.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        d.1.notify_all();
    });
    match queue() {
        Some(q) => {
            q.jobs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_back(work);
            q.cv.notify_one();
        }
        None => work(),
    }
    Job { done }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_jobs_run_on_two_threads_and_a_panic_is_reported() {
        let jobs: Vec<Job<std::thread::ThreadId>> = (0..50)
            .map(|_| spawn(|| std::thread::current().id()))
            .collect();
        let mut ids: Vec<_> = jobs.into_iter().map(|j| j.join().unwrap()).collect();
        ids.sort_by_key(|i| format!("{i:?}"));
        ids.dedup();
        assert!(ids.len() <= THREADS, "{} threads ran the jobs", ids.len());
        let bad = spawn(|| -> u32 { panic!("boom") });
        assert!(bad.join().is_err());
        let after = spawn(|| 7);
        assert_eq!(
            after.join().unwrap(),
            7,
            "a panic does not take a thread down"
        );
    }
}
