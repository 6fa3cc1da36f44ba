//! One staged row at a time, without `reset`: `staged` lists the rows (to find an id), `drop`
//! takes one out of the queue, `edit` changes one's tags or type and puts a failed one back to
//! pending. Both write the row as it was to a JSON file first, under a name no later command
//! reuses (`<staging folder>/dropped-row-<id>-<utc nanos>-<pid>.json`), read back before the row
//! changes.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use super::MemoryError;
use super::conflict;
use super::ctx::Ctx;
use super::record::Fields;
use super::settle;
use super::staging::staged_json;
use super::staging::{Operation, Staged, Staging, State};

fn not_found(id: i64) -> MemoryError {
    MemoryError::NoSuchRow { id }
}

/// The row, if it is still waiting to be sent (pending or failed).
fn waiting_row(st: &Staging, id: i64, verb: &str) -> Result<Staged, MemoryError> {
    let item = st.get(id)?.ok_or_else(|| not_found(id))?;
    match item.state {
        State::Pending | State::Failed => Ok(item),
        State::Conflict => Err(MemoryError::Conflict(format!(
            "staged row #{id} is in conflict: settle it with memsync resolve-conflicts (remote keeps the server's version), not {verb}"
        ))),
        s => Err(MemoryError::Conflict(format!(
            "staged row #{id} is not waiting (it is {}{}): nothing to {verb}",
            s.as_str(),
            item.outcome
                .as_deref()
                .map_or_else(String::new, |o| format!(", {o}"))
        ))),
    }
}

fn open(ctx: &Ctx) -> Result<Staging, MemoryError> {
    Staging::open_existing(&ctx.settings.staging_db)?.ok_or_else(|| MemoryError::NoStaging {
        path: ctx.settings.staging_db.clone(),
    })
}

/// Writes the row as JSON to a new file next to the staging database and reads it back.
fn keep_copy(st: &Staging, item: &Staged, what: &str) -> Result<PathBuf, MemoryError> {
    let dir = st.path().parent().unwrap_or(Path::new("."));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let path = dir.join(format!(
        "{what}-row-{}-{nanos}-{}.json",
        item.id,
        std::process::id()
    ));
    let io = |e: std::io::Error| MemoryError::file(&path, e);
    let bytes = serde_json::to_vec_pretty(&staged_json(item))?;
    crate::fsutil::write_new(&path, &bytes).map_err(io)?;
    if std::fs::read(&path).map_err(io)? != bytes {
        return Err(MemoryError::Unverified {
            path,
            reason: "the copy did not read back the same; nothing changed".into(),
        });
    }
    Ok(path)
}

fn confirm(question: &str) -> bool {
    eprint!("{question} [type yes] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).is_ok() && line.trim().eq_ignore_ascii_case("yes")
}

/// The first `n` characters of `s` on one line.
fn preview(s: &str, n: usize) -> String {
    let one = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut p: String = one.chars().take(n).collect();
    if one.chars().count() > n {
        p.push('…');
    }
    p
}

/// One listing line: `#id state tries hash [(update|delete)] type tags "content" error`.
fn line(s: &Staged) -> String {
    let mut l = format!(
        "#{:<5} {:<9} {:>2} {:<6} {}{}  type {}  tags {}  \"{}\"",
        s.id,
        s.state.as_str(),
        s.attempts,
        if s.attempts == 1 { "try" } else { "tries" },
        s.hash.short(),
        match s.op {
            Operation::Store => "",
            Operation::Update => " (update)",
            Operation::Delete => " (delete)",
        },
        s.fields.memory_type.as_deref().unwrap_or("-"),
        if s.fields.tags.is_empty() {
            "-".to_owned()
        } else {
            s.fields.tags.join(",")
        },
        preview(&s.content, 40)
    );
    match (&s.last_error, &s.outcome) {
        (Some(e), _) if matches!(s.state, State::Pending | State::Failed) => {
            l.push_str(&format!("  error: {e}"))
        }
        (_, Some(o)) if !matches!(s.state, State::Pending | State::Failed) => {
            l.push_str(&format!("  ({o})"))
        }
        _ => {}
    }
    l
}

/// `staged [--all | --state S]`: the rows still waiting (pending, failed, conflict), or all.
pub fn list(ctx: &Ctx, all: bool, state: Option<&str>) -> Result<String, MemoryError> {
    let wanted = match state {
        None => None,
        Some(s) => Some(
            [
                State::Pending,
                State::Failed,
                State::Conflict,
                State::Pushed,
                State::Resolved,
            ]
            .into_iter()
            .find(|x| x.as_str() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                MemoryError::Invalid(format!(
                    "--state {s:?}: expected pending, failed, conflict, pushed or resolved"
                ))
            })?,
        ),
    };
    let Some(st) = Staging::open_existing(&ctx.settings.staging_db)? else {
        return Ok(format!(
            "no staging database at {}: nothing is staged",
            ctx.settings.staging_db.display()
        ));
    };
    let rows: Vec<Staged> = st
        .all()?
        .into_iter()
        .filter(|s| match wanted {
            Some(w) => s.state == w,
            None => all || matches!(s.state, State::Pending | State::Failed | State::Conflict),
        })
        .collect();
    if rows.is_empty() {
        return Ok(if all || wanted.is_some() {
            "no staged rows".into()
        } else {
            "nothing staged is waiting (memsync staged --all lists every row)".into()
        });
    }
    let mut out: Vec<String> = rows.iter().map(line).collect();
    if rows.iter().any(|s| s.state == State::Failed) {
        out.push(
            "failed rows: memsync edit ID --tags a,b / --type T (then push), memsync drop ID, or memsync push --retry-failed".into(),
        );
    }
    Ok(out.join("\n"))
}

/// `drop ID [--yes]`: a pending or failed row stops waiting, after a JSON copy (asks on a
/// terminal; refuses without one unless `yes`).
pub fn drop_row(ctx: &Ctx, id: i64, yes: bool) -> Result<String, MemoryError> {
    let st = open(ctx)?;
    let item = waiting_row(&st, id, "drop")?;
    let what = format!(
        "staged row #{id} ({}, \"{}\")",
        item.state.as_str(),
        preview(&item.content, 40)
    );
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(MemoryError::Unconfirmed(format!(
                "drop would take {what} out of the queue; rerun with --yes (a JSON copy is written first)"
            )));
        }
        if !confirm(&format!(
            "Drop {what}? It will not be sent to the server (a JSON copy is kept)."
        )) {
            return Ok("drop cancelled; nothing changed".into());
        }
    }
    let copy = keep_copy(&st, &item, "dropped")?;
    if !st.mark_dropped(id)? {
        return Err(MemoryError::Conflict(format!(
            "staged row #{id} changed meanwhile; nothing dropped (the copy {} stays)",
            copy.display()
        )));
    }
    let msg = format!(
        "dropped {what}; a copy is in {}; it is no longer sent (store the memory again to send it)",
        copy.display()
    );
    ctx.log.line("drop", &msg);
    Ok(msg)
}

/// `edit ID [--tags a,b] [--type T]`: new tags (replacing the old ones) or type for a pending
/// or failed row, which is pending afterwards.
pub fn edit_row(
    ctx: &Ctx,
    id: i64,
    tags: Option<Vec<String>>,
    memory_type: Option<String>,
) -> Result<String, MemoryError> {
    if tags.is_none() && memory_type.is_none() {
        return Err(MemoryError::Invalid(
            "edit: nothing to change (give --tags and/or --type)".into(),
        ));
    }
    if memory_type.as_deref().is_some_and(|t| t.trim().is_empty()) {
        return Err(MemoryError::Invalid(
            "edit: --type is empty (give a type, e.g. --type note; a memory's type cannot be removed)"
                .into(),
        ));
    }
    let st = open(ctx)?;
    let item = waiting_row(&st, id, "edit")?;
    let fields = Fields {
        tags: tags.map_or_else(
            || item.fields.tags.clone(),
            |t| conflict::normalize_tags(&t),
        ),
        memory_type: memory_type
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .or_else(|| item.fields.memory_type.clone()),
        metadata: item.fields.metadata.clone(),
    };
    // Only a new memory's tags are cut by the server (see `tags_beyond_server_limits`).
    if item.op == Operation::Store
        && let Some(why) = conflict::tags_beyond_server_limits(&fields.tags)
    {
        return Err(MemoryError::Invalid(format!(
            "edit: row #{id} left as it was: {why}"
        )));
    }
    let copy = keep_copy(&st, &item, "edited")?;
    if !st.rewrite(
        &item,
        item.op,
        &fields,
        State::Pending,
        item.restore_deleted,
    )? {
        return Err(MemoryError::Invalid(format!(
            "edit: row #{id} changed meanwhile (the same content stored again); look at it again with memsync staged"
        )));
    }
    // The local database shows the edit too: otherwise the next pull took its row for a local
    // change and folded it back into this one, over the edit.
    // A staged store adds to the memory as the server has it (its base): the local database
    // shows the memory with the store's fields added, not the store's fields alone.
    // An edit the local database holds that no row has seen yet (made through the local
    // service since the last sync) stays there, for the next sync to fold in: the database
    // goes from showing the old row to showing the edited one, three ways (it was written
    // over, and that edit lost with no copy).
    if item.op != Operation::Delete {
        let base = st.book().base(&item.hash)?;
        let old_shown = settle::version_of(&item, base.as_ref());
        let edited = Staged {
            fields: fields.clone(),
            ..item.clone()
        };
        let new_shown = settle::version_of(&edited, base.as_ref());
        let local_now = crate::memory::localdb::LocalDb::open_read_only(&ctx.settings.memory_db)
            .ok()
            .and_then(|db| db.get(&item.hash).ok().flatten())
            .filter(|l| l.deleted_at.is_none());
        let shown = match local_now {
            Some(l) => conflict::merge3(&new_shown, &l.fields, &old_shown),
            None => new_shown,
        }
        .typed_as(base.as_ref());
        settle::show_locally(
            &ctx.settings.memory_db,
            &item.hash,
            &settle::LocalView::Live(shown),
        )?;
    }
    let msg = format!(
        "edited staged row #{id}: tags {}, type {}; pending (memsync push sends it); the row as it was is in {}",
        if fields.tags.is_empty() {
            "-".to_owned()
        } else {
            fields.tags.join(",")
        },
        fields.memory_type.as_deref().unwrap_or("-"),
        copy.display()
    );
    ctx.log.line("edit", &msg);
    Ok(msg)
}
