//! Sync rounds for the long-running process (`memsync run`): `sync` as the command runs it
//! (holding the staging database while it runs), every `SYNC_INTERVAL`, reporting each round
//! to the caller instead of printing it, and never drawing a progress line. A failed round
//! (the server away) is reported and the next one runs anyway.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::MemoryError;
use super::commands::{self, SyncCounts};
use super::ctx::Ctx;
use super::outcome::Outcome;
use super::pull::PullOptions;
use super::runner::{hold, leftovers};
use super::settings::Settings;

/// What a finished round says: its summary lines, what it left over (failed rows, open
/// conflicts: exit 3 or 4 for the command) and the lines saying what to do about that.
#[derive(Debug)]
pub struct RoundReport {
    /// What it moved (for the metrics).
    pub counts: SyncCounts,
    pub lines: Vec<String>,
    pub outcome: Outcome,
    pub notes: Vec<String>,
}

/// One round, as the caller sees it (its log lines; the metrics).
#[derive(Debug)]
pub struct Round {
    /// 1 for the first round.
    pub number: u64,
    pub duration: Duration,
    pub result: Result<RoundReport, MemoryError>,
}

/// The sync side of `memsync run`.
pub struct Rounds {
    ctx: Ctx,
}

impl Rounds {
    /// Rounds with these settings; progress lines are off for the rest of the process.
    pub fn new(settings: Settings) -> Rounds {
        super::progress::disable();
        Rounds {
            ctx: Ctx::new(settings),
        }
    }

    pub fn interval(&self) -> Duration {
        self.ctx.settings.interval
    }

    /// The server's base URL, for the log.
    pub fn server(&self) -> String {
        self.ctx.settings.base_url()
    }

    /// One `sync`: pull, stage local memories, push.
    pub fn round(&self) -> Result<RoundReport, MemoryError> {
        let (text, counts) = {
            let _lock = hold(&self.ctx, "run")?;
            commands::sync_counted(&self.ctx, &PullOptions::default())?
        };
        let (outcome, notes) = leftovers(&self.ctx);
        Ok(RoundReport {
            counts,
            lines: text.lines().map(str::to_owned).collect(),
            outcome,
            notes,
        })
    }

    /// Rounds until `stop` receives or is dropped: the first at once, then one every
    /// interval, each handed to `observe`. A stop while a round runs is seen when it ends
    /// (memory sync stages locally, and a row leaves the queue only once the server
    /// confirmed it: a round cut by the process's exit loses nothing either).
    pub fn run(&self, stop: &Receiver<()>, mut observe: impl FnMut(&Round)) {
        let mut number = 0;
        loop {
            number += 1;
            let t0 = Instant::now();
            let result = self.round();
            observe(&Round {
                number,
                duration: t0.elapsed(),
                result,
            });
            match stop.recv_timeout(self.interval()) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}
