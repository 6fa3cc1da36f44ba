//! `memsync restore`: rebuild a database from a replica, latest or at a point in time.
//!
//! The output is built in a temporary file next to it, verified (every file's CRCs, the
//! database checksum chain from snapshot to last segment, optionally SQLite's integrity check),
//! fsynced, and only then renamed into place: a failed restore leaves nothing behind.

mod apply;
mod error;
pub mod follow;
pub(crate) mod history;
mod outdirs;
mod select;
mod unfinished;

pub use error::RestoreError;
pub use unfinished::clean_up_on_stop;

use std::path::{Path, PathBuf};

use replica_formats::{ObjectKey, Target, TxId};
use tokio::runtime::Handle;

use crate::replica::{ReplicaClient, ReplicaError};

/// SQLite check run on the restored database before it is put in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IntegrityCheck {
    /// No SQLite check (the replica's own checksums are always verified).
    #[default]
    None,
    /// `PRAGMA quick_check`.
    Quick,
    /// `PRAGMA integrity_check`.
    Full,
}

/// Downloads a restore keeps in flight unless told otherwise.
pub const DEFAULT_PARALLELISM: usize = select::DEFAULT_AHEAD;

/// What to restore and how.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Where the database goes.
    pub output: PathBuf,
    /// Which state.
    pub target: Target,
    /// Do nothing (successfully) when the output already exists.
    pub if_db_not_exists: bool,
    /// Do nothing (successfully) when the replica holds no backup.
    pub if_replica_exists: bool,
    /// SQLite check of the result.
    pub integrity_check: IntegrityCheck,
    /// When a file of the chain is corrupt, restore the newest consistent state before it
    /// instead of failing.
    pub fallback: bool,
    /// Show a progress bar (on a terminal, for large restores).
    pub progress: bool,
    /// Replace an existing output, removing its WAL, index and rollback journal (Litestream's
    /// `-force`).
    pub force: bool,
    /// Downloads kept in flight (Litestream's `-parallelism`).
    pub parallelism: usize,
}

impl RestoreOptions {
    /// The newest state into `output`, nothing optional: an existing output or an empty replica
    /// is an error, no SQLite check, no fallback, no progress bar. Callers change what they need
    /// (`RestoreOptions { fallback: true, ..RestoreOptions::latest(out) }`).
    pub fn latest(output: impl Into<PathBuf>) -> Self {
        RestoreOptions {
            output: output.into(),
            target: Target::Latest,
            if_db_not_exists: false,
            if_replica_exists: false,
            integrity_check: IntegrityCheck::None,
            fallback: false,
            progress: false,
            force: false,
            parallelism: DEFAULT_PARALLELISM,
        }
    }
}

/// Result of a restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreOutcome {
    /// The database was written.
    Restored {
        /// Position restored.
        txid: TxId,
        /// When that position was committed (the replica file ending there): the restore
        /// point used.
        at: replica_formats::Timestamp,
        /// Files applied.
        files: usize,
        /// Bytes downloaded.
        bytes: u64,
        /// Set when a corrupt file forced an older state (only with `fallback`).
        fell_back: Option<String>,
    },
    /// The output existed and `if_db_not_exists` was set.
    OutputExists,
    /// The replica was empty and `if_replica_exists` was set.
    NoReplica,
}

/// Restores from the replica at `url` (a replica URL, or a path for a file replica) according to
/// `opts`: the entry point for callers given a URL rather than a configured replica. Blocking:
/// call outside the runtime.
pub fn from_url(
    url: &str,
    rt: &Handle,
    opts: &RestoreOptions,
) -> Result<RestoreOutcome, RestoreError> {
    restore(&open_url(url)?, rt, opts)
}

/// The replica at `url`, opened for reading (it must exist): for a caller that checks the URL
/// before preparing the output, then calls [`restore`].
pub fn open_url(url: &str) -> Result<ReplicaClient, RestoreError> {
    open_url_trusting(url, &crate::replica::Trust::default())
}

/// [`open_url`], trusting `trust`'s certificates too.
pub fn open_url_trusting(
    url: &str,
    trust: &crate::replica::Trust,
) -> Result<ReplicaClient, RestoreError> {
    let rc = crate::config::replica_from_url(url)?;
    Ok(crate::replica::client_trusting(&rc, false, trust)?)
}

/// Restores from `client` according to `opts`. Blocking: call outside the runtime.
pub fn restore(
    client: &ReplicaClient,
    rt: &Handle,
    opts: &RestoreOptions,
) -> Result<RestoreOutcome, RestoreError> {
    let out = &opts.output;
    if out.is_dir() {
        return Err(RestoreError::OutputNotAFile(format!(
            "{} is a directory (name the database file to write)",
            out.display()
        )));
    }
    // A stale WAL, index or rollback journal alone counts too: SQLite would apply it to the
    // restored file (a hot journal destroys it at the first open). `-if-db-not-exists` is
    // about the database: a leftover beside a missing database is an error either way.
    // `-force` replaces them all (at the end, once the restored file is whole).
    if let Some(found) = existing(out).filter(|_| !empty_alone(out)) {
        if opts.if_db_not_exists && out.exists() {
            return Ok(RestoreOutcome::OutputExists);
        }
        if !opts.force {
            if found.as_path() != out.as_path() {
                return Err(RestoreError::Leftover(found.display().to_string()));
            }
            return Err(RestoreError::OutputExists(found.display().to_string()));
        }
    }
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Missing directories are made, as Litestream does (a container's first start restores
    // into a volume's empty tree), and taken away again when nothing was restored.
    let made = outdirs::make(dir)?;
    let _listed = unfinished::list_dirs(&made);
    let res = restore_listed(client, rt, opts);
    if !matches!(res, Ok(RestoreOutcome::Restored { .. })) {
        outdirs::unmake(&made);
    }
    res
}

/// A replica that holds Litestream's files beside memsync's (one tool, then the other, on
/// the same path): the restore reads memsync's files only, which may be older than what
/// Litestream wrote since. Said before anything is restored.
fn warn_mixed(client: &ReplicaClient, rt: &Handle, keys: &[ObjectKey]) {
    // A warning only: a folder that cannot be listed (a symlink loop) is the listing's to skip.
    if let Ok(Some(dir)) = rt.block_on(client.foreign_layout()) {
        let newest = keys.iter().max_by_key(|k| k.max_txid());
        tracing::warn!(
            "replica {} also holds a Litestream backup (its `{dir}/` folder), which memsync does not read: this restore is of memsync's own files{}; if Litestream replicated this database since, restore with Litestream",
            client.name(),
            newest.map_or(String::new(), |k| format!(
                " (newest written {})",
                history::fmt_ts(k.timestamp())
            ))
        );
    }
}

/// [`restore`] once the output's directory exists.
fn restore_listed(
    client: &ReplicaClient,
    rt: &Handle,
    opts: &RestoreOptions,
) -> Result<RestoreOutcome, RestoreError> {
    let out = &opts.output;
    let mut keys = rt.block_on(client.list())?;
    if keys.is_empty() {
        // Not nothing, and not to be taken for nothing (`-if-replica-exists` would then start
        // the application on an empty database).
        if let Some(dir) = rt.block_on(client.foreign_layout())? {
            return Err(RestoreError::Foreign {
                replica: client.name().to_owned(),
                dir,
            });
        }
        if opts.if_replica_exists {
            return Ok(RestoreOutcome::NoReplica);
        }
        return Err(RestoreError::NoBackup(client.name().to_owned()));
    }
    warn_mixed(client, rt, &keys);
    let mut fell_back = None;
    let mut relists = 0;
    // Corrupt snapshots a fallback restore routes around, also in later listings.
    let mut skipped = Vec::new();
    let mut corrupt_snapshot = None;
    loop {
        let plan = match replica_formats::plan_restore(&keys, opts.target) {
            Ok(plan) => plan,
            Err(source) => {
                // A listing of a live replica is not one atomic view: the directories are read
                // one after another, so a compacted segment uploaded meanwhile can be missed
                // while the files after it are seen (a spurious gap). A second listing that
                // differs is planned again; an identical one confirms the error.
                if relists < MAX_RELISTS {
                    relists += 1;
                    let again = relist(client, rt, relists, &skipped)?;
                    if again != keys {
                        keys = again;
                        continue;
                    }
                }
                // With every snapshot corrupt, the corruption is the answer, not "no snapshot".
                if let Some(e) = corrupt_snapshot {
                    return Err(e);
                }
                let held = history::held_instead(&source, &keys);
                return Err(RestoreError::Plan {
                    replica: client.name().to_owned(),
                    source,
                    held,
                });
            }
        };
        let tmp = crate::fsutil::temp_sibling(out);
        let _listed = unfinished::list(&tmp);
        // Through the run index unless a file of the plan predates the index. A snapshot alone
        // is read whole either way, and the file-by-file path streams it faster (stretches of
        // consecutive pages in one write, writeback started as it goes). A fallback restore
        // goes file by file (which has every intermediate state to stop at) only once the
        // index path met a corrupt file: a corrupt file whose pages all have newer versions
        // does not stand between the replica and its newest state.
        let built = if plan.segments.is_empty() || crate::fault::armed("restore-files") {
            apply::build(client, rt, &plan, &tmp, opts)
        } else {
            match select::build(
                client,
                rt,
                &plan,
                &tmp,
                opts.progress,
                opts.parallelism.max(1),
            )
            .transpose()
            {
                None => apply::build(client, rt, &plan, &tmp, opts),
                Some(Err(RestoreError::Corrupt { .. } | RestoreError::Diverged { .. }))
                    if opts.fallback =>
                {
                    let _ = std::fs::remove_file(&tmp);
                    apply::build(client, rt, &plan, &tmp, opts)
                }
                Some(built) => built,
            }
        };
        match built {
            Ok((done, _)) => {
                if let Some(bad) = &done.stopped_at {
                    fell_back.get_or_insert_with(|| bad.clone());
                }
                let res = finish(&tmp, out, opts);
                if res.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                }
                res?;
                // The point's time as `memsync wal` lists it: the earliest file ending there
                // (a snapshot at a position is written after the segment that reached it).
                let at = keys
                    .iter()
                    .filter(|k| k.max_txid() == done.txid)
                    .map(ObjectKey::timestamp)
                    .min()
                    .unwrap_or(plan.snapshot.timestamp());
                return Ok(RestoreOutcome::Restored {
                    txid: done.txid,
                    at,
                    files: done.files,
                    bytes: done.bytes,
                    fell_back,
                });
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                // A planned file vanished: a running replicator compacted or pruned it since the
                // listing. List again and plan again; the new files hold the same states.
                if matches!(e, RestoreError::Replica(ReplicaError::NotFound { .. }))
                    && relists < MAX_RELISTS
                {
                    relists += 1;
                    keys = relist(client, rt, relists, &skipped)?;
                    continue;
                }
                // A corrupt snapshot can be routed around with an older one, if allowed.
                match (&e, opts.fallback) {
                    (RestoreError::Corrupt { key, .. }, true) if key == &plan.snapshot.path() => {
                        tracing::warn!("{e}; falling back to an older snapshot");
                        fell_back.get_or_insert_with(|| key.clone());
                        keys.retain(|k| k != &plan.snapshot);
                        skipped.push(plan.snapshot);
                        corrupt_snapshot.get_or_insert(e);
                    }
                    _ => return Err(e),
                }
            }
        }
    }
}

/// How often one restore lists the replica again after a planned file vanished or the plan
/// failed on a listing that may have raced with the replicator; then the error stands.
const MAX_RELISTS: u32 = 5;

/// Lists the replica again, after a short pause growing with `attempt`, leaving out the
/// snapshots a fallback restore already found corrupt (`skip`).
fn relist(
    client: &ReplicaClient,
    rt: &Handle,
    attempt: u32,
    skip: &[ObjectKey],
) -> Result<Vec<ObjectKey>, RestoreError> {
    std::thread::sleep(std::time::Duration::from_millis(10 * u64::from(attempt)));
    let mut keys = rt.block_on(client.list())?;
    keys.retain(|k| !skip.contains(k));
    Ok(keys)
}

/// The output is an empty file with no WAL, index or journal beside it: a database opened but
/// never written (a health check, `touch`), which counts as no database, as it does for
/// SQLite (`replicate` refuses it as not written yet).
fn empty_alone(out: &Path) -> bool {
    std::fs::symlink_metadata(out).is_ok_and(|m| m.is_file() && m.len() == 0)
        && ["-wal", "-shm", "-journal"]
            .iter()
            .all(|s| !crate::sqlite::sidecar(out, s).exists())
}

/// The output, its WAL, its index or its rollback journal, whichever exists first.
fn existing(out: &Path) -> Option<std::path::PathBuf> {
    ["", "-wal", "-shm", "-journal"]
        .iter()
        .map(|s| crate::sqlite::sidecar(out, s))
        .find(|p| p.exists())
}

fn finish(tmp: &Path, out: &Path, opts: &RestoreOptions) -> Result<(), RestoreError> {
    let check = opts.integrity_check;
    let io = |source| RestoreError::Io {
        path: tmp.display().to_string(),
        source,
    };
    crate::fault::point("restore-finish").map_err(io)?;
    if check != IntegrityCheck::None {
        let (pragma, name) = match check {
            IntegrityCheck::Quick => ("PRAGMA quick_check", "quick_check"),
            _ => ("PRAGMA integrity_check", "integrity_check"),
        };
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        let result: Result<Vec<String>, rusqlite::Error> = (|| {
            let c = rusqlite::Connection::open_with_flags(tmp, flags)?;
            let rows: Vec<String> = c
                .prepare(pragma)?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            // Held here in tests: a signal then finds the check's WAL and index beside the
            // temporary output.
            let _ = crate::fault::point("restore-check");
            Ok(rows)
        })();
        let result = result
            .map(|rows| crate::errtext::problems(&rows))
            .unwrap_or_else(|e| e.to_string());
        for s in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(crate::sqlite::sidecar(tmp, s));
        }
        if result != "ok" {
            return Err(RestoreError::Integrity {
                output: out.display().to_string(),
                check: name,
                result,
            });
        }
    }
    if opts.force {
        // The old database's WAL, index and journal go first: beside the new file SQLite would
        // apply them to it.
        for s in ["-wal", "-shm", "-journal"] {
            let side = crate::sqlite::sidecar(out, s);
            match std::fs::remove_file(&side) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(RestoreError::Io {
                        path: side.display().to_string(),
                        source: e,
                    });
                }
                _ => {}
            }
        }
        std::fs::rename(tmp, out).map_err(io)?;
        return crate::fsutil::sync_dir(out).map_err(io);
    }
    // Never over a file that appeared while restoring (another restore, the application),
    // nor beside a WAL, index or journal that did (SQLite would apply it).
    // An empty file alone holds nothing to keep: replaced, as SQLite would fill it.
    if empty_alone(out) {
        let _ = std::fs::remove_file(out);
    }
    if let Some(found) = existing(out) {
        return Err(match found.as_path() == out {
            true => RestoreError::OutputExists(found.display().to_string()),
            false => RestoreError::Leftover(found.display().to_string()),
        });
    }
    match crate::fsutil::rename_noreplace(tmp, out) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(RestoreError::OutputExists(out.display().to_string()))
        }
        r => r.map_err(io),
    }?;
    crate::fsutil::sync_dir(out).map_err(io)
}

/// Lists snapshots (`want_snapshots`) or segments of a replica, oldest first.
pub fn list(
    client: &ReplicaClient,
    rt: &Handle,
    want_snapshots: bool,
) -> Result<Vec<(ObjectKey, u64)>, RestoreError> {
    let mut files = rt.block_on(client.list_sized())?;
    files.retain(|(k, _)| k.is_snapshot() == want_snapshots);
    Ok(files)
}
