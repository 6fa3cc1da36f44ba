//! `reset`: drops the staged rows, conflict records and sync bookkeeping, after a JSON copy
//! that no later command overwrites, and only when a terminal's user or `--yes` agreed.

use std::fmt;
use std::io::{BufRead, IsTerminal, Write};

use serde_json::Value;

use super::super::MemoryError;
use super::super::ctx::Ctx;
use super::super::staging::Staging;
use super::copies;

/// What a reset drops, counted from the copy's document.
struct Dropped {
    waiting: usize,
    rows: usize,
    conflicts: usize,
    pulled: usize,
}

impl Dropped {
    fn of(v: &Value) -> Dropped {
        let list = |k: &str| v[k].as_array().map_or(&[][..], Vec::as_slice);
        Dropped {
            waiting: list("staged")
                .iter()
                .filter(|s| matches!(s["state"].as_str(), Some("pending" | "failed" | "conflict")))
                .count(),
            rows: list("staged").len(),
            conflicts: list("conflicts").len(),
            pulled: list("pulled").len(),
        }
    }
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} staged memories not yet on the server ({} staged rows in all), {} conflict records and the record of {} memories seen on the server",
            self.waiting, self.rows, self.conflicts, self.pulled
        )
    }
}

fn confirm(question: &str) -> bool {
    eprint!("{question} [type yes] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).is_ok() && line.trim().eq_ignore_ascii_case("yes")
}

/// `reset`. Without `--yes` it asks on a terminal and refuses elsewhere, whatever there is to
/// drop; the copy is written, fsynced and read back inside the transaction that drops the rows.
pub fn reset(ctx: &Ctx, yes: bool) -> Result<String, MemoryError> {
    let Some(st) = Staging::open_existing(&ctx.settings.staging_db)? else {
        return Ok("nothing to reset: no staging database".into());
    };
    if !yes {
        let what = Dropped::of(&copies::export_value(ctx, &st)?);
        if !std::io::stdin().is_terminal() {
            return Err(MemoryError::Unconfirmed(format!(
                "reset would drop {what}; rerun with --yes (a JSON copy is written first)"
            )));
        }
        if !confirm(&format!("Drop {what} (a JSON copy is kept)?")) {
            return Ok("reset cancelled; nothing changed".into());
        }
    }
    let want = copies::copy_name(ctx, "staging-backup");
    let (path, dropped) = st.upkeep().clear(|st| {
        let v = copies::export_value(ctx, st)?;
        let path = copies::write_copy(&want, &v)?;
        Ok::<_, MemoryError>((path, Dropped::of(&v)))
    })?;
    let msg = format!(
        "staging reset: dropped {dropped}; a copy is in {}",
        path.display()
    );
    ctx.log.line("reset", &msg);
    Ok(msg)
}
