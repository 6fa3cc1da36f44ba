//! The commands that move memories: `push`, `pull`, `sync` (and `sync`'s staging step).

use std::time::Instant;

use super::MemoryError;
use super::ctx::Ctx;
use super::host::hostname;
use super::localdb::{LocalDb, LocalMemory};
use super::pull::{self, PullOptions, PullReport};
use super::push::PushReport;
use super::staging::{Staging, State};

/// `push`.
pub fn push(ctx: &Ctx, retry_failed: bool) -> Result<PushReport, MemoryError> {
    // The client first: a bad CA file or URL is reported even with nothing to push.
    let client = ctx.client()?;
    let mut st = ctx.staging()?;
    if retry_failed {
        st.retry_failed()?;
    }
    if st.count(State::Pending)? == 0 {
        return Ok(PushReport::default());
    }
    if let Err(e) = client.health(ctx.settings.offline_threshold.max(ctx.settings.timeout)) {
        return ctx.fail("push", e.into());
    }
    let mut r = super::push::push(&mut st, &client, &ctx.settings, &ctx.log);
    match r.stopped.take() {
        None => Ok(r),
        Some(e) => {
            // A damaged staging database: never a count it could not read, nor "run push again".
            let damaged = matches!(&e, MemoryError::Staging(s) if s.is_damage());
            let rest = match r.left_pending {
                _ if damaged => "nothing more was sent; push again after the repair".to_owned(),
                Some(n) => format!("{n} left pending (nothing lost; run push again)"),
                None => "the rows left pending could not be counted (memsync verify-db)".into(),
            };
            ctx.fail(
                "push",
                MemoryError::Stopped {
                    pushed: r.pushed(),
                    left: r.left_pending,
                    rest,
                    cause: Box::new(e),
                },
            )
        }
    }
}

pub fn push_summary(r: &PushReport) -> String {
    // Staged deletes only come from the upstream scripts' databases: named when there are any.
    let deleted = match r.deleted {
        0 => String::new(),
        n => format!(", deleted {n}"),
    };
    let mut s = format!(
        "pushed {} (stored {}, already on server {}, updated {}{deleted}), failed {}, conflicts {}",
        r.pushed(),
        r.stored,
        r.duplicates,
        r.updated,
        r.failed,
        r.conflicts
    );
    if r.hash_mismatches > 0 {
        s.push_str(&format!(
            "; {} hashes computed by the server differ from ours (its Unicode tables differ)",
            r.hash_mismatches
        ));
    }
    s
}

/// `pull`.
pub fn pull(ctx: &Ctx, opts: &PullOptions) -> Result<PullReport, MemoryError> {
    let run = || -> Result<PullReport, MemoryError> {
        // A new machine: with the server's replica at hand, the local database starts as a
        // restored copy of the server's (vectors included), then is pulled into as usual.
        let mut bootstrapped = false;
        if let (false, Some(url), false) = (
            ctx.settings.memory_db.exists(),
            &ctx.settings.replica,
            opts.dry_run,
        ) {
            pull::bootstrap_from_replica(url, &ctx.settings.memory_db, &ctx.settings.trust())?;
            bootstrapped = true;
        }
        let mut local = if opts.dry_run {
            LocalDb::open_for_dry_run(&ctx.settings.memory_db)?
        } else {
            LocalDb::open(&ctx.settings.memory_db)?
        };
        // A dry run creates no staging file: it plans against an empty one.
        let mut st = if opts.dry_run {
            match Staging::open_read_only(&ctx.settings.staging_db)? {
                Some(st) => st,
                None => Staging::in_memory()?,
            }
        } else {
            ctx.staging()?
        };
        let client = ctx.client()?;
        let remote = match &ctx.settings.replica {
            Some(url) => {
                // A dry run restores the server's copy under the system's temp folder: it
                // writes nothing next to the user's files.
                let work = match ctx.settings.staging_db.parent() {
                    Some(d) if !opts.dry_run => d.to_path_buf(),
                    _ => std::env::temp_dir(),
                };
                pull::fetch_replica(url, &work, &ctx.settings.trust())?
            }
            None => pull::fetch_rest(&client, &opts.tags)?,
        };
        let mut remote = remote;
        // A replica may be behind what this machine pushed: the server confirms what it
        // would change here (`pull/fresh.rs`).
        let fresh = if remote.rest {
            pull::Freshened::default()
        } else {
            pull::freshen(&mut remote, &local, &st, |h| Ok(client.get(h)?))?
        };
        // Whether a memory gone from both was deleted or lost there: the server's tombstones.
        if fresh.gone > 0 && opts.tags.is_empty() {
            pull::list_tombstones(&client, &mut remote)?;
        }
        let mut plan = pull::plan(&remote, &local, &st, opts)?;
        if remote.rest {
            pull::confirm_removals(&mut plan, |h| Ok(client.get(h)?.is_some()))?;
        }
        let mut rep = pull::apply(&remote, plan, &mut local, &mut st, &ctx.settings, opts)?;
        rep.bootstrapped = bootstrapped;
        rep.asked = fresh.asked;
        rep.replica_behind = fresh.newer;
        rep.unconfirmed = remote.unconfirmed.len();
        rep.unconfirmed_why = fresh.failure;
        Ok(rep)
    };
    match run() {
        Ok(r) => {
            if !r.dry_run {
                ctx.log.line("pull", &pull_summary(&r));
            }
            Ok(r)
        }
        Err(e) => ctx.fail("pull", e),
    }
}

pub fn pull_summary(r: &PullReport) -> String {
    format!(
        "{}from {}: added {}, changed {}, removed {}, unchanged {}, local edits staged {}, staged rows already on server {}, conflicts {}{}{}",
        if r.dry_run {
            "dry run, nothing changed; "
        } else if r.bootstrapped {
            "local database created from the server's replica; "
        } else {
            ""
        },
        r.source,
        r.added,
        r.changed,
        r.removed,
        r.unchanged,
        r.staged_local,
        r.confirmed,
        r.conflicts,
        if r.open_conflicts > 0 {
            format!(" ({} open: memsync resolve-conflicts)", r.open_conflicts)
        } else {
            String::new()
        },
        behind_note(r)
    )
}

/// What the counts leave out, when there is any: memories the server lost, and what asking it
/// about a replica's records found.
fn behind_note(r: &PullReport) -> String {
    let mut s = String::new();
    if r.resent > 0 {
        s.push_str(&format!(
            "; {} memories the server had at an earlier pull are gone from it with no delete on record (a server restored from an older backup, or another server): kept here and {} to send again",
            r.resent,
            if r.dry_run { "would be staged" } else { "staged" }
        ));
    }
    if r.replica_behind > 0 {
        s.push_str(&format!(
            "; the replica was behind the server on {} of {} memories checked with it (the server's version used)",
            r.replica_behind, r.asked
        ));
    }
    if r.edited_meanwhile > 0 {
        s.push_str(&format!(
            "; {} memories edited here while the pull ran were left as they are (the next sync settles them)",
            r.edited_meanwhile
        ));
    }
    if r.unconfirmed > 0 {
        s.push_str(&format!(
            "; {} memories left as they are until the server can confirm the replica's version ({})",
            r.unconfirmed,
            r.unconfirmed_why.as_deref().unwrap_or("no answer")
        ));
    }
    s
}

/// Local memories that neither the server (as far as this machine knows) nor staging has seen:
/// what `sync` stages as new stores.
fn unseen_local(local: &LocalDb, st: &Staging) -> Result<Vec<LocalMemory>, MemoryError> {
    let pulled = st.book().pulled()?;
    let mut out = Vec::new();
    for m in local.all()? {
        if m.deleted_at.is_some() || pulled.contains_key(&m.hash) || st.knows(&m.hash)? {
            continue;
        }
        out.push(m);
    }
    Ok(out)
}

/// `sync`'s staging step: local memories the server never had and staging does not know. It
/// runs after the pull, which has learnt what the server holds and deleted: a memory the
/// server deleted is then removed here, never stored again as new.
pub fn stage_local(ctx: &Ctx) -> Result<usize, MemoryError> {
    let local = LocalDb::open_read_only(&ctx.settings.memory_db)?;
    let mut st = ctx.staging()?;
    let host = hostname();
    let new = unseen_local(&local, &st)?;
    for m in &new {
        st.stage(&m.content, &m.fields, &host)?;
    }
    Ok(new.len())
}

/// `sync` = pull → stage → push; stops at the first failing step. With `dry_run` it only says
/// what each step would do: nothing is written anywhere, and the sync log gets one line.
pub fn sync(ctx: &Ctx, opts: &PullOptions) -> Result<String, MemoryError> {
    if opts.dry_run {
        return sync_dry_run(ctx, opts);
    }
    sync_counted(ctx, opts).map(|(text, _)| text)
}

/// What a finished sync moved: the numbers of its `sync completed` line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncCounts {
    pub staged: usize,
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    pub conflicts: usize,
    pub pushed: usize,
    pub failed: usize,
}

/// A sync (not a dry run): its text and its counts.
pub fn sync_counted(ctx: &Ctx, opts: &PullOptions) -> Result<(String, SyncCounts), MemoryError> {
    let t0 = Instant::now();
    // With the server's replica at hand, a new machine's first sync creates the local database
    // from it, as its first pull does (`memsync run` on a new laptop only ever syncs).
    let have_local = ctx.settings.memory_db.is_file() || ctx.settings.replica.is_some();
    let mut out = Vec::new();
    let mut staged = 0;
    let mut pulled = PullReport::default();
    if have_local {
        pulled = pull(ctx, opts)?;
        out.push(pull_summary(&pulled));
        staged = stage_local(ctx).or_else(|e| ctx.fail("sync", e))?;
        out.push(format!("staged {staged} local memories"));
    } else {
        out.push(format!(
            "no local memory database at {}: pull skipped",
            ctx.settings.memory_db.display()
        ));
    }
    let pushed = push(ctx, false)?;
    out.push(push_summary(&pushed));
    let counts = SyncCounts {
        staged,
        added: pulled.added,
        changed: pulled.changed,
        removed: pulled.removed,
        conflicts: pulled.conflicts + pushed.conflicts,
        pushed: pushed.pushed(),
        failed: pushed.failed,
    };
    ctx.log.line(
        "sync",
        &format!(
            "sync completed staged={staged} added={} changed={} removed={} conflicts={} pushed={} failed={} duration={:.2}s",
            pulled.added,
            pulled.changed,
            pulled.removed,
            pulled.conflicts + pushed.conflicts,
            pushed.pushed(),
            pushed.failed,
            t0.elapsed().as_secs_f64()
        ),
    );
    Ok((out.join("\n"), counts))
}

/// `sync --dry-run`: the pull's plan, the local memories that would be staged and the rows
/// that would be pushed. Opens every database read-only and creates none.
fn sync_dry_run(ctx: &Ctx, opts: &PullOptions) -> Result<String, MemoryError> {
    let mut out = Vec::new();
    let st = match Staging::open_read_only(&ctx.settings.staging_db)? {
        Some(st) => st,
        None => Staging::in_memory()?,
    };
    let mut would_stage = 0;
    // Local edits the pull would stage are pushed too.
    let mut edits = 0;
    if ctx.settings.memory_db.is_file() {
        let rep = pull(ctx, opts)?;
        // Local edits that meet a conflict are pushed too when the policy keeps them.
        edits = rep.staged_local + rep.conflicts_to_push;
        out.extend(rep.details.iter().cloned());
        out.push(pull_summary(&rep));
        // Memories the server lost are staged to send again.
        would_stage += rep.resent;
        let local = LocalDb::open_read_only(&ctx.settings.memory_db)?;
        for m in unseen_local(&local, &st)? {
            if rep.server_live.contains(&m.hash) || rep.removals.contains(&m.hash) {
                continue;
            }
            out.push(format!("stage    {}", m.hash.short()));
            would_stage += 1;
        }
    } else {
        out.push(format!(
            "no local memory database at {}: pull skipped",
            ctx.settings.memory_db.display()
        ));
    }
    let pending = st.count(State::Pending)?;
    let would_push = pending as usize + would_stage + edits;
    out.push(format!(
        "dry run, nothing changed: would stage {would_stage} local memories and {edits} local edits, and push {would_push} ({pending} pending now)"
    ));
    ctx.log.line(
        "sync",
        &format!("dry run: would stage {would_stage}, push {would_push}"),
    );
    Ok(out.join("\n"))
}
