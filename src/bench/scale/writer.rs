//! The scale phase's application: one connection per database, kept open as a server keeps
//! them, committing one row to each database per second (N commits/s in all, spread evenly:
//! commit k is due at k/N s and goes to database k mod N). Every commit's latency is kept: the
//! figure that matters is the slowest one the application saw while the replicator ran.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// What the writer saw.
#[derive(Debug, Default)]
pub struct Load {
    /// Commits attempted.
    pub commits: u64,
    /// Commits that failed (`SQLITE_BUSY` after the 5 s busy timeout, or any other error).
    pub errors: u64,
    /// Commits that found a lock held and waited in the busy handler: what a replicator's
    /// locking costs the application, told apart from scheduling noise.
    pub waited: u64,
    /// Seconds each commit took, failed ones included.
    pub latencies: Vec<f64>,
    /// Seconds the writer fell behind its schedule at worst.
    pub late_max: f64,
    /// Seconds the window really lasted.
    pub elapsed: f64,
    /// Commits over 1 ms during which the writer's thread gave up the CPU (a sleep, a lock or
    /// I/O wait: SQLite's WAL-lock retries sleep without calling the busy handler).
    pub slow_slept: u64,
    /// Commits over 1 ms during which the writer's thread was preempted, and did not sleep.
    pub slow_preempted: u64,
    /// Commits that were their connection's first: the first this many of `latencies`. Such
    /// a commit writes the first frame of a new WAL, whose header SQLite fsyncs inside the
    /// commit even at `synchronous=NORMAL`.
    pub first_round: usize,
}

/// A commit slower than this, seconds, is counted and told apart.
pub const SLOW: f64 = 1e-3;

/// The calling thread's (voluntary, involuntary) context switches so far.
#[cfg(target_os = "linux")]
fn switches() -> (i64, i64) {
    // SAFETY: getrusage writes one rusage into the zeroed value it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_THREAD is valid on Linux.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) } != 0 {
        return (0, 0);
    }
    (u.ru_nvcsw, u.ru_nivcsw)
}

/// Not counted where threads have no usage of their own.
#[cfg(not(target_os = "linux"))]
fn switches() -> (i64, i64) {
    (0, 0)
}

/// Busy-handler calls that were a commit's first wait (see [`Load::waited`]).
static WAITED: AtomicU64 = AtomicU64::new(0);

/// SQLite's default busy handler (what `busy_timeout(5 s)` installs, and what Python's
/// `sqlite3` uses): sleeps of 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50 ms, then 100 ms, until
/// 5 s have passed; counted, so the figures tell lock waits from scheduling noise.
fn busy(count: i32) -> bool {
    const DELAYS: [u64; 12] = [1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100];
    const TIMEOUT_MS: u64 = 5000;
    let n = count.max(0) as usize;
    if n == 0 {
        WAITED.fetch_add(1, Ordering::Relaxed);
    }
    let (delay, prior) = match DELAYS.get(n) {
        Some(&d) => (d, DELAYS[..n].iter().sum::<u64>()),
        None => (
            100,
            DELAYS.iter().sum::<u64>() + 100 * (n - DELAYS.len()) as u64,
        ),
    };
    if prior >= TIMEOUT_MS {
        return false;
    }
    std::thread::sleep(Duration::from_millis(delay.min(TIMEOUT_MS - prior)));
    true
}

/// Opens every database as the application would (SQLite's 5 s busy timeout, `synchronous=NORMAL`).
pub fn open(dbs: &[PathBuf]) -> Result<Vec<Connection>, String> {
    dbs.iter()
        .map(|p| {
            let mut c = Connection::open(p).map_err(|e| format!("{}: {e}", p.display()))?;
            c.busy_handler(Some(busy))
                .and_then(|_| c.pragma_update(None, "synchronous", "NORMAL"))
                .map_err(|e| format!("{}: {e}", p.display()))?;
            Ok(c)
        })
        .collect()
}

/// Commits one row per database per second for `window` (fewer if commits fall behind).
pub fn run(conns: &[Connection], window: Duration) -> Load {
    let mut load = Load::default();
    if conns.is_empty() {
        return load;
    }
    load.first_round = conns.len();
    let every = Duration::from_secs(1).div_f64(conns.len() as f64);
    let waited0 = WAITED.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let mut k: u64 = 0;
    loop {
        let due = every.mul_f64(k as f64);
        let now = t0.elapsed();
        // The window ends on the clock, not after its last scheduled commit: a replicator that
        // holds the write lock for seconds shows as commits missing, not as a window that
        // never ends (1 000 databases, each commit waiting out the busy timeout).
        if due >= window || now >= window {
            break;
        }
        match due.checked_sub(now) {
            Some(wait) => std::thread::sleep(wait),
            None => load.late_max = load.late_max.max((now - due).as_secs_f64()),
        }
        let c = &conns[(k % conns.len() as u64) as usize];
        let (v0, i0) = switches();
        let t = Instant::now();
        let ok = c
            .prepare_cached("INSERT INTO t(v, ts) VALUES (?1, julianday('now'))")
            .and_then(|mut s| s.execute([format!("commit {k}")]));
        let took = t.elapsed().as_secs_f64();
        load.latencies.push(took);
        if took > SLOW {
            let (v1, i1) = switches();
            if v1 > v0 {
                load.slow_slept += 1;
            } else if i1 > i0 {
                load.slow_preempted += 1;
            }
        }
        if ok.is_err() {
            load.errors += 1;
        }
        load.commits += 1;
        k += 1;
    }
    load.elapsed = t0.elapsed().as_secs_f64();
    load.waited = WAITED.load(Ordering::Relaxed) - waited0;
    load
}
