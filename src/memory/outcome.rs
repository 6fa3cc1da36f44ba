//! How a memory command ended, as the process's exit code: one code per outcome, so cron and
//! CI can tell "done" from "needs a person" from "try again later" without reading the text.
//!
//! | code | outcome | what to do |
//! | --- | --- | --- |
//! | 0 | done, nothing left over | nothing |
//! | 1 | error: bad input or settings, key refused, damaged database, ... | read the one-line message |
//! | 2 | usage: unknown command or flag | `memsync help` |
//! | 3 | finished, but rows the server refused stay `failed` | `memsync staged`, then `edit`, `drop` or `push --retry-failed` |
//! | 4 | finished, but conflicts are open | `memsync resolve-conflicts` |
//! | 5 | stopped early: the server was unreachable; the rest stays pending | run it again later (nothing lost) |
//! | 6 | another memsync holds the staging database | run it again when that one has finished |
//!
//! 3 wins over 4 when both apply. A finished run still prints its normal summary on stdout.

/// The outcome of one memory command; `as i32` is its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done = 0,
    Error = 1,
    Usage = 2,
    Failed = 3,
    Conflicts = 4,
    Stopped = 5,
    Locked = 6,
}

impl Outcome {
    pub fn code(self) -> i32 {
        self as i32
    }

    /// What is left over in staging after a run that finished: failed rows first, then open
    /// conflicts.
    pub fn of_leftovers(failed: usize, open_conflicts: usize) -> Outcome {
        if failed > 0 {
            Outcome::Failed
        } else if open_conflicts > 0 {
            Outcome::Conflicts
        } else {
            Outcome::Done
        }
    }
}

/// The exit codes as `--help` shows them.
pub const HELP: &str = "\
Exit codes of the memory commands:
  0  done, nothing left over
  1  error (bad input or settings, key refused, damaged database, ...)
  2  usage (unknown command or flag)
  3  finished, but rows the server refused stay failed (memsync staged; edit, drop or push --retry-failed)
  4  finished, but conflicts are open (memsync resolve-conflicts)
  5  stopped early: the server was unreachable; the rest stays pending (run again later)
  6  another memsync holds the staging database (run again when it has finished)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_rows_outrank_conflicts() {
        assert_eq!(Outcome::of_leftovers(0, 0), Outcome::Done);
        assert_eq!(Outcome::of_leftovers(0, 2), Outcome::Conflicts);
        assert_eq!(Outcome::of_leftovers(1, 2), Outcome::Failed);
        assert_eq!(Outcome::Locked.code(), 6);
    }
}
