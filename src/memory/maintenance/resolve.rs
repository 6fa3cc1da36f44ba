//! `resolve-conflicts`: lists the open conflicts and settles them, by a strategy for all (or
//! one), or by asking on a terminal.

use std::io::{BufRead, IsTerminal, Write};

use super::super::MemoryError;
use super::super::conflict;
use super::super::ctx::Ctx;
use super::super::hash::ContentHash;
use super::super::localdb::{LocalDb, LocalMemory};
use super::super::settings::ConflictPolicy;
use super::super::settle::{self, Kind};
use super::super::staging::Operation;

/// A terminal user's answer for one conflict.
#[derive(Debug, PartialEq)]
enum Answer {
    Settle(ConflictPolicy),
    Skip,
    /// The input ended: this conflict and the rest stay open.
    End,
}

/// Asks until the answer is one of m, l, r, s (or the word); an invalid answer asks again.
fn ask(input: &mut impl BufRead, prompt: &mut impl Write) -> Answer {
    loop {
        let _ = write!(prompt, "  [m]erge, [l]ocal, [r]emote, [s]kip? ");
        let _ = prompt.flush();
        let mut a = String::new();
        match input.read_line(&mut a) {
            Ok(0) | Err(_) => return Answer::End,
            Ok(_) => {}
        }
        match a.trim().to_ascii_lowercase().as_str() {
            "m" | "merge" => return Answer::Settle(ConflictPolicy::Merge),
            "l" | "local" => return Answer::Settle(ConflictPolicy::Local),
            "r" | "remote" => return Answer::Settle(ConflictPolicy::Remote),
            "s" | "skip" => return Answer::Skip,
            other => {
                let _ = writeln!(prompt, "  {other:?} is not an answer: type m, l, r or s");
            }
        }
    }
}

/// `resolve-conflicts`: settles the open conflicts (all, or `id`) with `strategy`, or asks for
/// each on a terminal, or lists them. An `id` that names no open conflict is an error.
pub fn resolve_conflicts(
    ctx: &Ctx,
    strategy: Option<ConflictPolicy>,
    id: Option<i64>,
) -> Result<String, MemoryError> {
    let st = ctx.staging()?;
    let open: Vec<_> = st
        .conflict_log()
        .list(true)?
        .into_iter()
        .filter(|c| id.is_none_or(|i| c.id == i))
        .collect();
    if open.is_empty() {
        return match id {
            Some(i) => Err(match st.conflict_log().get(i)? {
                Some(c) => MemoryError::Conflict(format!(
                    "conflict #{i} is already settled ({})",
                    c.resolution.as_deref().unwrap_or("closed")
                )),
                None => MemoryError::NoSuchConflict { id: i },
            }),
            None => Ok("no open conflicts".into()),
        };
    }
    let bases = st.book().pulled()?;
    let interactive = strategy.is_none() && std::io::stdin().is_terminal();
    let mut input_ended = false;
    let mut out = Vec::new();
    let mut settled = 0;
    for c in &open {
        let remote = c
            .remote
            .as_ref()
            .map_or_else(|| "deleted on the server".to_owned(), |r| r.to_json());
        let line = format!(
            "#{} {} {}: local {} / remote {}",
            c.id,
            c.hash.short(),
            c.kind,
            c.local.to_json(),
            remote
        );
        let choice = match strategy {
            Some(s) => Some(s),
            None if interactive && !input_ended => {
                crate::stdout::errln!("{line}");
                match ask(&mut std::io::stdin().lock(), &mut std::io::stderr()) {
                    Answer::Settle(p) => Some(p),
                    Answer::Skip => None,
                    Answer::End => {
                        input_ended = true;
                        None
                    }
                }
            }
            None => None,
        };
        let Some(policy) = choice.filter(|p| *p != ConflictPolicy::Manual) else {
            out.push(line);
            continue;
        };
        let Some(mut item) = st.get(c.staged_id)? else {
            st.conflict_log().close(c.id, policy.as_str())?;
            continue;
        };
        // An edit made in the local database since the conflict was recorded is the local
        // side from now on (settling the recorded one would undo it, and `remote` would leave
        // it nowhere): the row takes it. A local row not changed since then is no edit: it may
        // be an older copy the user's `store` was meant to replace.
        // Folded three ways against the local side the record holds: the row may hold more
        // than the local database shows (a `store` merged into it since), and memsync itself
        // wrote the recorded side to the local database just after recording it.
        if let Some(l) = live_local(&ctx.settings.memory_db, &c.hash)
            && l.updated_at > c.detected_at
            && conflict::differs(&l.fields, &c.local)
            && item.op != Operation::Delete
            && st.rewrite(
                &item,
                item.op,
                &conflict::merge3(&l.fields, &item.fields, &c.local),
                item.state,
                item.restore_deleted,
            )?
        {
            item = st
                .get(c.staged_id)?
                .ok_or(MemoryError::RowVanished { id: c.staged_id })?;
        }
        // The common base is the one the conflict was recorded against (an open conflict's
        // base stays as it was); a base equal to the remote side is one an older version
        // advanced past it, and unknown: `merge` then takes the union.
        let base = bases
            .get(&c.hash)
            .cloned()
            .flatten()
            .filter(|b| c.remote.as_ref().is_none_or(|r| conflict::differs(b, r)));
        let view = settle::apply(
            &st,
            &item,
            Kind::parse(&c.kind),
            c.remote.as_ref(),
            base.as_ref(),
            policy,
        )?;
        // The local database shows the decision (the next pull would otherwise send the old
        // local version back).
        settle::show_locally(&ctx.settings.memory_db, &c.hash, &view)?;
        // The decision was taken against the server's version in the record: that is the
        // common base from now on. With the old one, the next push or pull would meet the
        // server's side as a change made since and decide the conflict again, by whatever
        // policy it runs under (undoing the user's choice).
        if let Some(r) = &c.remote {
            st.book().set_base(&c.hash, r)?;
        }
        st.conflict_log().close(c.id, policy.as_str())?;
        settled += 1;
        out.push(format!("#{} settled: {}", c.id, policy.as_str()));
    }
    if input_ended {
        out.push("input ended: the conflicts not answered stay open".into());
    }
    if settled > 0 {
        out.push(format!(
            "{settled} settled; run memsync push (and pull) to carry it out"
        ));
        ctx.log
            .line("resolve", &format!("{settled} conflicts settled"));
    }
    Ok(out.join("\n"))
}

/// The local database's row for `hash`, when it holds the memory live (a database that
/// cannot be read counts as not holding it).
fn live_local(memory_db: &std::path::Path, hash: &ContentHash) -> Option<LocalMemory> {
    if !memory_db.is_file() {
        return None;
    }
    LocalDb::open_read_only(memory_db)
        .and_then(|db| db.get(hash))
        .ok()
        .flatten()
        .filter(|l| l.deleted_at.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(typed: &str) -> (Answer, String) {
        let mut prompt = Vec::new();
        let a = ask(&mut typed.as_bytes(), &mut prompt);
        (a, String::from_utf8(prompt).unwrap())
    }

    #[test]
    fn an_invalid_answer_asks_again() {
        let (a, prompt) = answers("x\n\nmaybe\nl\n");
        assert_eq!(a, Answer::Settle(ConflictPolicy::Local));
        assert_eq!(prompt.matches("[s]kip?").count(), 4, "{prompt}");
        assert!(prompt.contains("\"maybe\" is not an answer"), "{prompt}");
        assert_eq!(
            answers("Remote\n").0,
            Answer::Settle(ConflictPolicy::Remote)
        );
        assert_eq!(answers(" s \n").0, Answer::Skip);
    }

    #[test]
    fn the_end_of_input_skips_the_rest() {
        assert_eq!(answers("").0, Answer::End);
        assert_eq!(answers("what\n").0, Answer::End);
    }
}
