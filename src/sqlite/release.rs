//! How long a quiet database keeps memsync's connections before it steps aside (`idle.rs`).
//!
//! Why it adapts: stepping aside lets an application leave WAL mode, but the next commit then
//! pays a reopen of memsync's connections, several times the CPU of shipping the commit
//! itself, while an attached quiet database costs a lock probe every few hundred
//! milliseconds. A database that commits every second or two (a memory service, one of
//! hundreds in a process) would pay the reopen on nearly every commit with a fixed delay of
//! a second. So a return soon after stepping aside doubles the delay, up to [`GROWTH`] times
//! the configured one; a long absence brings it back to the configured one. An application
//! switching out of WAL mode after a quiet spell still gets its switch within the delay,
//! which is the configured one unless the database was busy in that on-and-off way.

use std::time::{Duration, Instant};

/// The most the delay grows, as a multiple of the configured one.
pub const GROWTH: u32 = 8;
/// A return within this multiple of the configured delay counts as soon: the reopen then
/// cost more than staying attached would have. Small enough that a database quiet for a few
/// seconds between commits finds memsync away each time, at the configured delay.
const SOON: u32 = 3;

/// The step-aside delay of one database.
#[derive(Debug, Clone)]
pub struct ReleaseDelay {
    base: Duration,
    now: Duration,
    /// When memsync last stepped aside, while it is away.
    left: Option<Instant>,
}

impl ReleaseDelay {
    /// Starts at `base` (the `idle_release` setting).
    pub fn new(base: Duration) -> Self {
        ReleaseDelay {
            base,
            now: base,
            left: None,
        }
    }

    /// How long nothing must be committed before memsync steps aside.
    pub fn get(&self) -> Duration {
        self.now
    }

    /// memsync stepped aside at `at`.
    pub fn stepped_aside(&mut self, at: Instant) {
        self.left = Some(at);
    }

    /// memsync reopened its connections at `at`.
    pub fn returned(&mut self, at: Instant) {
        let Some(left) = self.left.take() else {
            return;
        };
        self.now = if at.saturating_duration_since(left) < self.base * SOON {
            (self.now * 2).min(self.base * GROWTH)
        } else {
            self.base
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    /// Steps aside after the current delay, returns `gap` after that; the delay then.
    fn cycle(d: &mut ReleaseDelay, t: &mut Instant, gap: Duration) -> Duration {
        *t += d.get();
        d.stepped_aside(*t);
        *t += gap;
        d.returned(*t);
        d.get()
    }

    #[test]
    fn a_database_committing_every_few_seconds_stops_paying_the_reopen() {
        let mut d = ReleaseDelay::new(S);
        let mut t = Instant::now();
        // Commits 1.5 s apart: away for half a second each time, until the delay outgrows
        // the gap and memsync stays attached.
        let seen: Vec<_> = (0..4)
            .map(|_| cycle(&mut d, &mut t, S / 2).as_secs())
            .collect();
        assert_eq!(seen, [2, 4, 8, 8], "doubles up to {GROWTH}x, no further");
    }

    #[test]
    fn a_long_absence_brings_the_configured_delay_back() {
        let mut d = ReleaseDelay::new(S);
        let mut t = Instant::now();
        cycle(&mut d, &mut t, S);
        cycle(&mut d, &mut t, S);
        assert_eq!(d.get(), 4 * S);
        assert_eq!(cycle(&mut d, &mut t, 3 * S), S, "away for three delays");
        assert_eq!(cycle(&mut d, &mut t, 2 * S), 2 * S);
    }

    #[test]
    fn a_return_without_stepping_aside_changes_nothing() {
        let mut d = ReleaseDelay::new(S);
        d.returned(Instant::now());
        assert_eq!(d.get(), S);
    }
}
