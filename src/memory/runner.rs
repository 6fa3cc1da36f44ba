//! Running the commands that move memories (push, pull, sync, `sync --watch`) as the command
//! line does: holding the staging database while they run, writing the summary lines `metrics`
//! reads, and turning what a finished run leaves over (failed rows, open conflicts) into its exit
//! code, said on stderr too.

use super::MemoryError;
use super::commands::{self};
use super::ctx::Ctx;
use super::lock::{self, StagingLock};
use super::outcome::Outcome;
use super::progress;
use super::pull::PullOptions;
use super::staging::{Staging, State};

/// The staging database, held for one mutating command (see [`lock`]).
pub fn hold(c: &Ctx, command: &str) -> Result<StagingLock, MemoryError> {
    Staging::check_path(&c.settings.staging_db)?;
    Ok(lock::acquire(&c.settings.staging_db, command)?)
}

/// What a finished push, pull or sync leaves over: failed rows (exit 3) or open conflicts
/// (exit 4), with a line saying what to do about it.
pub(super) fn leftovers(c: &Ctx) -> (Outcome, Vec<String>) {
    let Ok(Some(st)) = Staging::open_existing(&c.settings.staging_db) else {
        return (Outcome::Done, Vec::new());
    };
    let failed = st.count(State::Failed).unwrap_or(0) as usize;
    let open = st.conflict_log().list(true).map_or(0, |v| v.len());
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut notes = Vec::new();
    if failed > 0 {
        notes.push(format!(
            "memsync: {} (refused by the server, or not sent: the reason is in memsync staged); then memsync edit ID, memsync drop ID or memsync push --retry-failed",
            plural(failed, "staged row failed", "staged rows failed")
        ));
    }
    if open > 0 {
        notes.push(format!(
            "memsync: {} open: memsync resolve-conflicts",
            plural(open, "conflict", "conflicts")
        ));
    }
    (Outcome::of_leftovers(failed, open), notes)
}

/// A finished push, pull or sync: its text, and its leftovers said on stderr.
pub fn finished(c: &Ctx, text: String) -> (String, Outcome) {
    progress::clear();
    let (outcome, notes) = leftovers(c);
    for n in notes {
        crate::stdout::errln!("{n}");
    }
    (text, outcome)
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// `sync --watch`: a round every `SYNC_INTERVAL`, each holding the staging database only while
/// it runs and its output prefixed with its start time; a failed round is reported and the next
/// one runs anyway (the server may be back); SIGINT/SIGTERM end the loop between rounds.
pub fn watch(c: &Ctx, opts: &PullOptions) -> Result<(String, Outcome), MemoryError> {
    let mut stop = crate::signals::BlockingStop::new().map_err(|source| MemoryError::Io {
        what: "signal handler".into(),
        source,
    })?;
    let mut rounds = 0u64;
    loop {
        let ts = now_rfc3339();
        let round = hold(c, "sync --watch").and_then(|_lock| commands::sync(c, opts));
        progress::clear();
        match round {
            Ok(text) => {
                for l in text.lines() {
                    crate::stdout::noteln!("{ts} {l}");
                }
                for n in leftovers(c).1 {
                    crate::stdout::errln!("{ts} {n}");
                }
            }
            Err(e) => crate::stdout::errln!(
                "{ts} memsync: sync failed (next round in {}s): {e}",
                c.settings.interval.as_secs()
            ),
        }
        rounds += 1;
        if stop.sleep(c.settings.interval) {
            break;
        }
    }
    Ok((format!("stopped after {rounds} sync rounds"), Outcome::Done))
}

/// `push`: the summary (with per-row lines when verbose), a `push completed` line in the sync
/// log for `metrics`, and the leftovers' exit code.
pub fn push(c: &Ctx, retry_failed: bool) -> Result<(String, Outcome), MemoryError> {
    let _lock = hold(c, "push")?;
    let t0 = std::time::Instant::now();
    let rep = match commands::push(c, retry_failed) {
        Ok(rep) => rep,
        Err(e) => {
            if let MemoryError::Stopped { pushed, left, .. } = &e {
                c.log.line(
                    "push",
                    &format!(
                        "push stopped pushed={pushed} left_pending={} duration={:.2}s",
                        left.map_or_else(|| "unknown".to_owned(), |n| n.to_string()),
                        t0.elapsed().as_secs_f64()
                    ),
                );
            }
            return Err(e);
        }
    };
    c.log.line(
        "push",
        &format!(
            "push completed pushed={} stored={} duplicates={} updated={} failed={} conflicts={} duration={:.2}s",
            rep.pushed(),
            rep.stored,
            rep.duplicates,
            rep.updated,
            rep.failed,
            rep.conflicts,
            t0.elapsed().as_secs_f64()
        ),
    );
    let mut lines = if c.settings.verbose {
        rep.lines.clone()
    } else {
        Vec::new()
    };
    lines.push(commands::push_summary(&rep));
    Ok(finished(c, lines.join("\n")))
}

/// `pull`: as `push`, with a `pull completed` line; a dry run takes no lock and writes nothing.
pub fn pull(c: &Ctx, opts: &PullOptions) -> Result<(String, Outcome), MemoryError> {
    let _lock = if opts.dry_run {
        None
    } else {
        Some(hold(c, "pull")?)
    };
    let t0 = std::time::Instant::now();
    let rep = commands::pull(c, opts)?;
    let mut lines = rep.details.clone();
    lines.push(commands::pull_summary(&rep));
    let text = lines.join("\n");
    if rep.dry_run {
        return Ok((text, Outcome::Done));
    }
    c.log.line(
        "pull",
        &format!(
            "pull completed added={} changed={} removed={} conflicts={} duration={:.2}s",
            rep.added,
            rep.changed,
            rep.removed,
            rep.conflicts,
            t0.elapsed().as_secs_f64()
        ),
    );
    Ok(finished(c, text))
}
