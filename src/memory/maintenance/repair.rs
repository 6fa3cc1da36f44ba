//! `repair`: rebuilds a damaged staging database from what can still be read. The rebuild is
//! written to a temporary file first; only when it is complete is the damaged file, with its
//! `-wal` and `-shm`, kept aside under a name no other repair picks (hard links) and the new
//! file renamed over it. A repair stopped part way (killed, disk full) leaves the damaged
//! database where it was, for the next repair: before, the damaged file was moved aside first
//! and the rebuild written in its place, so a kill left a sound-looking database holding part
//! of the queue, and the rest only in the file set aside.

use std::path::{Path, PathBuf};

use super::super::MemoryError;
use super::super::ctx::Ctx;
use super::super::staging::{Lost, Salvage, Staging, State};
use super::io_err;

/// `path` with `suffix` appended (`staging.db` → `staging.db-wal`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Keeps the damaged database and its companions as `<stem>.damaged-<UTC time>-<pid>.<ext>`
/// (numbered if that is taken) by hard links, never over an existing file; the damaged files
/// stay in place until the rebuilt one replaces them. Returns the kept name of the main file.
fn keep_aside(path: &Path) -> Result<PathBuf, MemoryError> {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let ext = path
        .extension()
        .map_or_else(String::new, |e| format!(".{}", e.to_string_lossy()));
    let want = path.with_file_name(format!(
        "{stem}.damaged-{}{ext}",
        crate::fsutil::unique_stamp()
    ));
    let undo = |made: &[PathBuf]| {
        for p in made {
            let _ = std::fs::remove_file(p);
        }
    };
    for n in 0..100 {
        let aside = crate::fsutil::numbered(&want, n);
        let mut made = Vec::new();
        let mut taken = false;
        for suffix in ["", "-wal", "-shm"] {
            let (from, to) = (with_suffix(path, suffix), with_suffix(&aside, suffix));
            if !suffix.is_empty() && !from.exists() {
                continue;
            }
            match std::fs::hard_link(&from, &to) {
                Ok(()) => made.push(to),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    taken = true;
                    break;
                }
                Err(e) => {
                    undo(&made);
                    return Err(io_err(&from, e));
                }
            }
        }
        if !taken {
            crate::fsutil::sync_dir(path).map_err(|e| io_err(path, e))?;
            return Ok(aside);
        }
        undo(&made);
    }
    Err(MemoryError::NoName {
        path: want.to_owned(),
        reason: "no free name to keep the damaged file under".into(),
    })
}

/// Puts the rebuilt file `fresh` in place of the damaged database at `path` (kept aside
/// already). The damaged WAL goes first: beside the new file SQLite would replay it into it.
fn replace_with(path: &Path, fresh: &Path) -> Result<(), MemoryError> {
    for suffix in ["-wal", "-shm"] {
        let p = with_suffix(path, suffix);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&p, e)),
            _ => {}
        }
    }
    std::fs::rename(fresh, path).map_err(|e| io_err(path, e))?;
    crate::fsutil::sync_dir(path).map_err(|e| io_err(path, e))
}

/// Removes a rebuild that did not complete, with its companions.
fn discard(fresh: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(with_suffix(fresh, suffix));
    }
}

fn lost(l: Lost) -> String {
    if l.exact {
        l.count.to_string()
    } else {
        format!("at least {}", l.count)
    }
}

/// Writes what was salvaged into a fresh file at `path` (closed and fsynced when this
/// returns); says what came through.
fn rebuild(path: &Path, s: &Salvage) -> Result<String, MemoryError> {
    let msg = fill(path, s)?;
    // Closed above (its WAL checkpointed into it): now the file alone holds it all.
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_err(path, e))?;
    Ok(msg)
}

fn fill(path: &Path, s: &Salvage) -> Result<String, MemoryError> {
    let fresh = Staging::open(path)?;
    let mut waiting = 0;
    for r in &s.rows {
        fresh.upkeep().insert_copy(r)?;
        if matches!(r.state, State::Pending | State::Failed | State::Conflict) {
            waiting += 1;
        }
    }
    crate::fault::point("repair-rebuild").map_err(|e| io_err(path, e))?;
    // A conflict record comes along with its staged row; without it, it counts as lost.
    let mut records = 0;
    let mut orphans = 0;
    let ids: std::collections::HashSet<i64> = s.rows.iter().map(|r| r.id).collect();
    for c in &s.conflicts {
        if ids.contains(&c.staged_id) {
            fresh.conflict_log().copy(c)?;
            records += 1;
        } else {
            orphans += 1;
        }
    }
    fresh.upkeep().raise_sequences(&s.sequences)?;
    fresh.upkeep().insert_book(
        s.pulled.as_deref().unwrap_or_default(),
        s.state.as_deref().unwrap_or_default(),
    )?;
    let mut msg = format!(
        "{} rows salvaged ({waiting} waiting), {} could not be read",
        s.rows.len(),
        lost(s.lost_rows)
    );
    match (&s.pulled, &s.state) {
        (Some(p), Some(_)) => msg.push_str(&format!("; merge base of {} memories kept", p.len())),
        _ => msg.push_str(
            "; the merge base could not be read (the next sync merges without it: check what it changes with `sync --dry-run`)",
        ),
    }
    let lost_records = Lost {
        count: s.lost_conflicts.count + orphans,
        ..s.lost_conflicts
    };
    if records + lost_records.count > 0 {
        msg.push_str(&format!(
            "; conflict records: {records} salvaged, {} lost",
            lost(lost_records)
        ));
    }
    Ok(msg)
}

/// `repair`: a staging database that fails its integrity check is rebuilt from what can be
/// read (the damaged file kept aside); then what the schema cannot prevent is fixed.
pub fn repair(ctx: &Ctx) -> Result<String, MemoryError> {
    let path = ctx.settings.staging_db.clone();
    let mut out = Vec::new();
    // From the first read to the rename, no store may write to the file being replaced.
    let _swap = crate::memory::swaplock::for_rebuild(&path)?;
    // None: sound; Some(None): damaged beyond opening; Some(Some(s)): damaged, `s` read back.
    let damage = match Staging::open_existing(&path) {
        Ok(None) => return Ok("nothing to repair: no staging database".into()),
        Ok(Some(st)) => match st.upkeep().integrity() {
            Ok(p) if p.is_empty() => None,
            _ => Some(Some(st.upkeep().salvage())),
        },
        // Only damage is repaired by rebuilding; a busy, newer or foreign file is reported.
        Err(e) if e.is_damage() => Some(None),
        Err(e) => return Err(e.into()),
    };
    if let Some(salvage) = damage {
        let fresh = with_suffix(
            &path,
            &format!(".repair-{}.tmp", crate::fsutil::unique_stamp()),
        );
        let built = match &salvage {
            Some(s) => rebuild(&fresh, s),
            None => Staging::open(&fresh)
                .map(drop)
                .map_err(MemoryError::from)
                .map(|()| "the file could not be opened: no row could be read".into()),
        };
        let what = match built {
            Ok(w) => w,
            Err(e) => {
                discard(&fresh);
                return Err(e);
            }
        };
        let aside = match keep_aside(&path) {
            Ok(a) => a,
            Err(e) => {
                discard(&fresh);
                return Err(e);
            }
        };
        // The damaged file's connection (salvage) is closed by now: `damage` held it only
        // while reading.
        replace_with(&path, &fresh)?;
        out.push(format!(
            "rebuilt {}: {what}; the damaged file is kept as {}",
            path.display(),
            aside.display()
        ));
    }
    let st = Staging::open(&path)?;
    let fixed = st.upkeep().repair()?;
    out.push(format!("{fixed} inconsistencies fixed"));
    let left = st.upkeep().check()?;
    if !left.is_empty() {
        return Err(MemoryError::Damaged(format!(
            "still wrong after repair: {}",
            crate::errtext::problems(&left)
        )));
    }
    ctx.log.line("repair", &out.join("; "));
    Ok(out.join("\n"))
}
