//! `repair`: rebuilds a damaged staging database from what can still be read. The damaged
//! file, with its `-wal` and `-shm`, is moved aside under a name no other repair picks.

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

/// Moves the damaged database and its companions to `<stem>.damaged-<UTC time>-<pid>.<ext>`
/// (numbered if that is taken), never over an existing file. The WAL goes first: a crash
/// part way leaves the main file without its WAL, never a WAL beside a file it does not
/// belong to. Returns the new name of the main file.
fn set_aside(path: &Path) -> Result<PathBuf, MemoryError> {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let ext = path
        .extension()
        .map_or_else(String::new, |e| format!(".{}", e.to_string_lossy()));
    let want = path.with_file_name(format!(
        "{stem}.damaged-{}{ext}",
        crate::fsutil::unique_stamp()
    ));
    let undo = |moved: &[(PathBuf, PathBuf)]| {
        for (from, to) in moved.iter().rev() {
            let _ = crate::fsutil::rename_noreplace(to, from);
        }
    };
    for n in 0..100 {
        let aside = crate::fsutil::numbered(&want, n);
        let mut moved = Vec::new();
        let mut taken = false;
        for suffix in ["-wal", "-shm", ""] {
            let (from, to) = (with_suffix(path, suffix), with_suffix(&aside, suffix));
            if !suffix.is_empty() && !from.exists() {
                continue;
            }
            match crate::fsutil::rename_noreplace(&from, &to) {
                Ok(()) => moved.push((from, to)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    taken = true;
                    break;
                }
                Err(e) => {
                    undo(&moved);
                    return Err(io_err(&from, e));
                }
            }
        }
        if !taken {
            crate::fsutil::sync_dir(path).map_err(|e| io_err(path, e))?;
            return Ok(aside);
        }
        undo(&moved);
    }
    Err(MemoryError::NoName {
        path: want.to_owned(),
        reason: "no free name to keep the damaged file under".into(),
    })
}

fn lost(l: Lost) -> String {
    if l.exact {
        l.count.to_string()
    } else {
        format!("at least {}", l.count)
    }
}

/// Writes what was salvaged into a fresh file at `path`; says what came through.
fn rebuild(path: &Path, s: &Salvage) -> Result<String, MemoryError> {
    let fresh = Staging::open(path)?;
    let mut waiting = 0;
    let mut ids = std::collections::HashMap::new();
    for r in &s.rows {
        ids.insert(r.id, fresh.upkeep().insert_copy(r)?);
        if matches!(r.state, State::Pending | State::Failed | State::Conflict) {
            waiting += 1;
        }
    }
    // A conflict record comes along with its staged row; without it, it counts as lost.
    let mut records = 0;
    let mut orphans = 0;
    for c in &s.conflicts {
        match ids.get(&c.staged_id) {
            Some(&id) => {
                fresh.conflict_log().record(
                    id,
                    &c.hash,
                    &c.kind,
                    &c.local,
                    c.remote.as_ref(),
                    c.resolution.as_deref(),
                )?;
                records += 1;
            }
            _ => orphans += 1,
        }
    }
    let mut msg = format!(
        "{} rows salvaged ({waiting} waiting), {} could not be read",
        s.rows.len(),
        lost(s.lost_rows)
    );
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
        let aside = set_aside(&path)?;
        let what = match &salvage {
            Some(s) => rebuild(&path, s)?,
            None => {
                Staging::open(&path)?;
                "the file could not be opened: no row could be read".into()
            }
        };
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
            left.join("; ")
        )));
    }
    ctx.log.line("repair", &out.join("; "));
    Ok(out.join("\n"))
}
