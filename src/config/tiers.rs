//! Restore-point tiers: how fine point-in-time restore is at each age of history.
//!
//! Level-0 files (one per sync) are merged into level-1 files covering at most `levels[0]`'s
//! interval of wall-clock time, those into level-2 files covering at most `levels[1]`'s, and so
//! on. Merging keeps restore reading little (a restore of the newest state reads the few large
//! merged files), while the merged inputs stay on the replica for their tier's retention, so
//! every sync stays a restore point for `l0-retention`, every level-1 boundary for
//! `levels[0].retention`, and so on. Key names follow Litestream 0.5 (`levels: [{interval}]`,
//! `l0-retention`); a level's `retention` is memsync's own.

use std::time::Duration;

/// Default `l0-retention`: every sync is a restore point for this long (Litestream: 5m).
pub const DEFAULT_L0_RETENTION: Duration = Duration::from_secs(10 * 60);

/// One compaction level above 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelTier {
    /// Longest stretch of wall-clock time one file of this level covers (its files are
    /// aligned to multiples of it since the Unix epoch).
    pub interval: Duration,
    /// How long a file of this level stays on the replica once a higher level covers it:
    /// its boundaries are restore points for that long.
    pub retention: Duration,
}

/// The tiers of restore points; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tiers {
    /// How long level-0 files stay after being merged into level 1.
    pub l0_retention: Duration,
    /// Levels 1, 2, ... (at most 9). The last level is never merged further.
    pub levels: Vec<LevelTier>,
}

impl Default for Tiers {
    /// Litestream 0.5's levels (30s, 5m, 1h), with level 1 kept for 24 hours: every sync for
    /// 10 minutes, a point at most 30 s apart for a day, at most an hour apart beyond.
    fn default() -> Self {
        let lvl = |secs, keep| LevelTier {
            interval: Duration::from_secs(secs),
            retention: Duration::from_secs(keep),
        };
        Tiers {
            l0_retention: DEFAULT_L0_RETENTION,
            levels: vec![lvl(30, 24 * 3600), lvl(5 * 60, 0), lvl(3600, 0)],
        }
    }
}

impl Tiers {
    /// Highest level (never merged further).
    pub fn top(&self) -> u8 {
        self.levels.len() as u8
    }

    /// Width of the time buckets of files at `level` (1..=top).
    pub fn interval(&self, level: u8) -> Duration {
        self.levels
            .get(usize::from(level).wrapping_sub(1))
            .map_or(Duration::MAX, |l| l.interval)
    }

    /// How long a file of `level` stays once a higher level covers it.
    pub fn keep(&self, level: u8) -> Duration {
        if level == 0 {
            return self.l0_retention;
        }
        self.levels
            .get(usize::from(level) - 1)
            .map_or(Duration::ZERO, |l| l.retention)
    }
}
