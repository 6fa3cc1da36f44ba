//! Pacing of syncs: at most one per sync interval on average, as Litestream's `sync-interval`
//! bounds them, but a commit after a quiet spell ships at once.
//!
//! A fixed "no sooner than one interval after the last sync" rule makes a lone commit wait up
//! to a whole interval whenever another one shipped shortly before it, which is common when
//! commits come every few intervals (`docs/measurements.md`). A token bucket keeps the same
//! long-run bound on uploads (one per interval, which is what object stores bill) and lets a
//! short burst through: up to [`SYNC_BURST`] syncs back to back after a quiet spell. Under a
//! steady load the bucket is empty and syncs come exactly once per interval, as before.

use std::time::{Duration, Instant};

/// Syncs allowed back to back after a quiet spell of at least this many intervals.
pub const SYNC_BURST: u32 = 4;

/// A token bucket refilled at one sync per `gap`, holding at most [`SYNC_BURST`].
#[derive(Debug, Clone)]
pub struct SyncPacer {
    gap: Duration,
    /// Tokens as of `at`, in units of one sync.
    tokens: f64,
    at: Instant,
}

impl SyncPacer {
    /// A full bucket: the first syncs go at once.
    pub fn new(gap: Duration, now: Instant) -> Self {
        SyncPacer {
            gap,
            tokens: SYNC_BURST as f64,
            at: now,
        }
    }

    fn tokens_at(&self, now: Instant) -> f64 {
        if self.gap.is_zero() {
            return SYNC_BURST as f64;
        }
        let refill = now.saturating_duration_since(self.at).as_secs_f64() / self.gap.as_secs_f64();
        (self.tokens + refill).min(SYNC_BURST as f64)
    }

    /// How long until a sync may run (zero: now).
    pub fn wait(&self, now: Instant) -> Duration {
        let t = self.tokens_at(now);
        if t >= 1.0 {
            Duration::ZERO
        } else {
            self.gap.mul_f64(1.0 - t)
        }
    }

    /// Records a sync at `now` (allowed or not: a forced sync still spends a token).
    pub fn take(&mut self, now: Instant) {
        self.tokens = (self.tokens_at(now) - 1.0).max(0.0);
        self.at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_burst_after_a_quiet_spell_then_one_per_interval() {
        let t0 = Instant::now();
        let mut p = SyncPacer::new(S, t0);
        for i in 0..SYNC_BURST {
            let now = t0 + Duration::from_millis(10 * i as u64);
            assert_eq!(p.wait(now), Duration::ZERO, "burst sync {i}");
            p.take(now);
        }
        let now = t0 + Duration::from_millis(40);
        assert!(p.wait(now) > Duration::from_millis(900), "bucket empty");
        // Under a steady load, exactly one sync per interval.
        let mut now = now + p.wait(now);
        for _ in 0..10 {
            assert_eq!(p.wait(now), Duration::ZERO);
            p.take(now);
            let w = p.wait(now);
            assert!(w > Duration::from_millis(999) && w <= S, "{w:?}");
            now += w;
        }
        // A quiet spell refills the bucket, never beyond the burst.
        let later = now + 100 * S;
        p.take(later);
        assert_eq!(p.wait(later), Duration::ZERO);
        for _ in 1..SYNC_BURST {
            p.take(later);
        }
        assert!(p.wait(later) > Duration::ZERO);
    }

    #[test]
    fn uploads_never_exceed_one_per_interval_plus_the_burst() {
        // Commits every 100 ms for 60 s, each syncing as soon as the pacer allows.
        let t0 = Instant::now();
        let mut p = SyncPacer::new(S, t0);
        let mut syncs = 0u32;
        let mut next_allowed = t0;
        for i in 0..600u64 {
            let now = t0 + Duration::from_millis(100 * i);
            if now >= next_allowed && p.wait(now).is_zero() {
                p.take(now);
                syncs += 1;
            }
            next_allowed = now + p.wait(now);
        }
        assert!(syncs <= 60 + SYNC_BURST, "{syncs} syncs in 60 s");
        assert!(syncs >= 59, "{syncs} syncs in 60 s");
    }
}
