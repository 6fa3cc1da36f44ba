//! `status`: a report of the server, the staging database, the local database and the
//! settings in use. It fails only on invalid settings: anything unusable is shown, not raised.

use super::MemoryError;
use super::client::RemoteError;
use super::ctx::Ctx;
use super::localdb::LocalDb;
use super::staging::{Staging, State};

/// `status`.
pub fn status(ctx: &Ctx) -> Result<String, MemoryError> {
    let s = &ctx.settings;
    let mut out = Vec::new();
    let remote = match ctx.client() {
        Ok(c) => match c.health(s.offline_threshold) {
            Ok(()) => {
                let v = c
                    .version(s.offline_threshold)
                    .unwrap_or_else(|e| format!("version unknown: {e}"));
                format!("reachable, mcp-memory-service {v}")
            }
            Err(
                e @ (RemoteError::Unreachable { .. }
                | RemoteError::Tls { .. }
                | RemoteError::Timeout { .. }),
            ) => format!("NOT reachable: {e}"),
            Err(e) => format!("answers, but NOT usable: {e}"),
        },
        Err(e) => format!("NOT usable: {e}"),
    };
    out.push(format!("remote       {}  {remote}", s.base_url()));
    // A report: a damaged staging database is shown, not a failure of `status`.
    match Staging::open_existing(&s.staging_db) {
        Err(e) => out.push(format!("staging      {e}")),
        Ok(None) => out.push(format!(
            "staging      {} (not created yet: memsync init)",
            s.staging_db.display()
        )),
        Ok(Some(st)) => {
            out.push(format!("staging      {}", s.staging_db.display()));
            // Counts can still be read from a damaged file (from an index): say it is damaged.
            match st.upkeep().quick_check() {
                Ok(p) if p.is_empty() => {}
                Ok(p) => out.push(format!(
                    "  WARNING    the staging database is damaged ({}): run memsync repair",
                    crate::errtext::problems(&p)
                )),
                Err(e) => out.push(format!("  WARNING    {e}")),
            }
            let count = |state| {
                st.count(state)
                    .map_or_else(|_| "unreadable".to_owned(), |n| n.to_string())
            };
            let deletes = match st.pending_deletes().unwrap_or(0) {
                0 => String::new(),
                n => format!("  ({n} delete{})", if n == 1 { "" } else { "s" }),
            };
            out.push(format!("  pending    {}{deletes}", count(State::Pending)));
            let failed = count(State::Failed);
            out.push(format!(
                "  failed     {failed}{}",
                if failed != "0" && failed != "unreadable" {
                    "  (see memsync export; retry: memsync push --retry-failed)"
                } else {
                    ""
                }
            ));
            out.push(format!(
                "  conflicts  {} open",
                st.conflict_log()
                    .list(true)
                    .map_or_else(|_| "unreadable".to_owned(), |c| c.len().to_string())
            ));
            out.push(format!("  pushed     {}", count(State::Pushed)));
            let get = |k| {
                st.book()
                    .state_get(k)
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| "never".into())
            };
            out.push(format!("last pull    {}", get("last_pull")));
            out.push(format!("last push    {}", get("last_push")));
        }
    }
    // The database with its WAL: what the service wrote lately may sit in the WAL only.
    let wal = {
        let mut p = s.memory_db.clone().into_os_string();
        p.push("-wal");
        std::fs::metadata(p).map_or(0, |m| m.len())
    };
    match std::fs::metadata(&s.memory_db) {
        Ok(m) => {
            out.push(format!(
                "local db     {}  {:.1} MB",
                s.memory_db.display(),
                (m.len() + wal) as f64 / 1e6
            ));
            let unembedded = LocalDb::open_read_only(&s.memory_db).map(|db| db.unembedded());
            match unembedded {
                Ok(Ok(Some(n))) if n > 0 => out.push(format!(
                    "  WARNING    {n} local memories have no embedding (pulled over REST): the local service's search cannot find them; {}",
                    if s.replica.is_some() {
                        "memsync pull fills them in from the server's replica"
                    } else {
                        "set the server's replica (REMOTE_MEMORY_REPLICA or --replica-url; memsync replicate on the server), then memsync pull fills them in"
                    }
                )),
                Ok(Ok(_)) => {}
                Ok(Err(e)) | Err(e) => out.push(format!("  WARNING    {e}")),
            }
        }
        Err(_) => out.push(format!(
            "local db     {} (not found)",
            s.memory_db.display()
        )),
    }
    out.extend(replication(&s.memory_db));
    out.push(format!("policy       {}", s.conflict.as_str()));
    if let Some(r) = &s.replica {
        out.push(format!("replica      {}", super::settings::shown_url(r)));
    }
    Ok(out.join("\n"))
}

/// The replication of the memory database, as a running replicator's state file says: its
/// meta directory is the one a config file (the default one) sets for that database, else the
/// default next to it. Then the config's other databases a replicator runs (a server's
/// production database beside the memories).
fn replication(db: &std::path::Path) -> Vec<String> {
    use crate::replicate::{default_meta_dir, meta_dir, real_path};
    let real = real_path(db);
    let dbs = crate::config::default_path()
        .and_then(|p| crate::config::load(&p, true).ok())
        .map(|c| c.dbs)
        .unwrap_or_default();
    let meta = dbs
        .iter()
        .find(|d| real_path(&d.path) == real)
        .map(meta_dir)
        .unwrap_or_else(|| default_meta_dir(db));
    let now = crate::stats::unix_ms();
    let mut out = crate::metrics::state::describe(&meta, now);
    for d in dbs.iter().filter(|d| real_path(&d.path) != real) {
        let lines = crate::metrics::state::describe(&meta_dir(d), now);
        if lines
            .first()
            .is_some_and(|l| l.starts_with("replication  running"))
        {
            out.push(format!("database     {}", d.path.display()));
            out.extend(lines.into_iter().map(|l| format!("  {l}")));
        }
    }
    out
}
