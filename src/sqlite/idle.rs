//! Stepping aside while idle: when everything committed is in the spool and nothing new was
//! committed for the release delay (`idle_release`, 1 s, longer for a database that keeps
//! coming back within seconds: `release.rs`), the monitor closes its connections, and it
//! reopens them on the next change.
//!
//! Why: every open WAL-mode connection holds a SHARED lock on the database file for as long as
//! it is open, and SQLite lets a connection leave WAL mode (`PRAGMA journal_mode=DELETE`) only
//! when it is the database's sole connection; the attempt answers "database is locked" at once,
//! without the busy handler, and leaves no trace memsync could see. So memsync leaves the
//! database alone whenever it has nothing to do, and an application that retries for a few
//! seconds (up to 8 after a spell of commits seconds apart) gets its switch.
//!
//! Nothing committed is lost: memsync steps aside only when every commit up to the WAL index's
//! last committed frame is in the spool, and keeps that index header as the mark. On the next
//! change it reopens, takes the write lock and proves from the mark that the WAL still holds
//! every commit made since (the proof used after an application's checkpoint,
//! [`super::reader::Source::continue_after`]: at most one WAL restart, every counted commit in
//! the new generation), or else resynchronises (ships the pages that differ from the page map).
//! When no mark can be taken (a commit not read yet, an index being rebuilt) it steps aside all
//! the same and resynchronises on its return: waiting for a mark once kept an application from
//! ever leaving WAL mode. While away it holds no lock: only plain descriptors on the database, WAL and index files,
//! which are reopened (fresh files: SQLite deletes the WAL and index when its last connection
//! closes) before its connections are.
//!
//! A WAL file missing under a WAL header means SQLite deleted it: the application's last
//! connection closed, or it is leaving WAL mode and has yet to rewrite the header; the return is
//! put off to the next poll, so memsync's connection does not recreate the WAL in the middle of
//! the switch (which then failed).
//!
//! While away the monitor wakes on the WAL watch and, every monitor interval, compares a
//! fingerprint of the files (database header; device, inode, size and mtime of the database
//! and WAL; the index's device, inode and header; the header is read again only once the WAL
//! was written, since a commit always writes it). If the database header says the database
//! left WAL mode (bytes 18 and 19 are 1, not 2), it logs that once and stays away: replication
//! is paused, and memsync never switches the database back. When the header says WAL again, it resynchronises
//! (the changes made in rollback mode reach the replica) and says it resumed.

use std::sync::atomic::Ordering;

use super::conn::{self, OpenError};
use super::monitor::{Monitor, MonitorError};
use super::reader::Source;
use super::session::Conns;
use super::walindex::{IndexHeader, WalIndex};

/// State kept while memsync has stepped aside.
pub(crate) struct Away {
    /// Where memsync stopped reading; `None`: resynchronise on return.
    mark: Option<IndexHeader>,
    /// The files as last compared.
    seen: Fingerprint,
    /// When `seen.index` was read from the index file (Unix ns; see
    /// [`Monitor::fingerprint_after`]).
    index_read_ns: i128,
    /// The database left WAL mode (logged once): replication is paused.
    left_wal: bool,
    /// A return was put off once because the WAL file was missing (see `attach`).
    deferred: bool,
    /// memsync's close merged the WAL with nothing committed past what was shipped, and no
    /// change was seen since: the database file holds exactly that (no mark: the WAL it
    /// returns to is a new one). Cleared by the first change seen.
    merged: bool,
}

/// How much older than an index read the WAL's mtime must be for the read to stand for it:
/// mtimes are kept to 2 s on the coarsest file systems, and trail the clock by a tick.
const MTIME_SLACK_NS: i128 = 3_000_000_000;

/// Whether an index header read at Unix ns `read_ns`, when the files were `then`, still
/// stands for files now `now` (see [`Monitor::fingerprint_after`]).
fn index_read_stands(
    then: &[Option<FileStamp>; 3],
    now: &[Option<FileStamp>; 3],
    read_ns: i128,
) -> bool {
    then == now
        && now[1].is_none_or(|(_, _, _, s, ns)| {
            i128::from(s) * 1_000_000_000 + i128::from(ns) + MTIME_SLACK_NS <= read_ns
        })
}

/// Now, in Unix ns (taken before the look it dates, so it errs early).
fn unix_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Device, inode, size, mtime (s, ns) of one file.
type FileStamp = (u64, u64, u64, i64, i64);

/// What memsync can see of the database without a connection; any difference means a change.
#[derive(Debug, PartialEq, Eq)]
struct Fingerprint {
    header: Option<[u8; 100]>,
    files: [Option<FileStamp>; 3],
    index: Option<IndexHeader>,
}

/// True when a database header says WAL mode (file format read/write versions 2).
fn wal_header(hdr: &[u8; 100]) -> bool {
    hdr[18] == 2 && hdr[19] == 2
}

impl Monitor {
    /// True while memsync has stepped aside (connections closed).
    pub fn is_away(&self) -> bool {
        self.away.is_some()
    }

    /// True while replication is paused because the database left WAL mode.
    pub fn is_paused(&self) -> bool {
        self.away.as_ref().is_some_and(|a| a.left_wal)
    }

    /// The files as they are now. While away, the index header of `prev` (read at Unix ns
    /// `prev.1`) is taken again instead of opening the index, when no file changed and the
    /// WAL's mtime is older than that read by [`MTIME_SLACK_NS`]: a commit writes the WAL, and
    /// any write after the read would have moved its mtime, even on a file system keeping
    /// mtimes to 2 s. That open, read and close was three of an idle poll's seven calls.
    /// Returns the fingerprint and whether its index header was read now.
    fn fingerprint_after(&self, prev: Option<(&Fingerprint, i128)>) -> (Fingerprint, bool) {
        let stamp = |suffix: &str, content: bool| {
            let (dev, ino, len, s, ns) =
                crate::platform::stamp(&super::sidecar(&self.cfg.db_path, suffix)).ok()?;
            Some(match content {
                true => (dev, ino, len, s, ns),
                false => (dev, ino, 0, 0, 0),
            })
        };
        let header = self.cap.src.db_header().ok();
        // The index's mtime moves with readers' read marks: its header is compared instead.
        let files = [stamp("", true), stamp("-wal", true), stamp("-shm", false)];
        let away = !self.session.is_open();
        let kept = prev
            .filter(|(p, read_ns)| away && index_read_stands(&p.files, &files, *read_ns))
            .map(|(p, _)| p.index);
        let fresh = kept.is_none();
        let index = match (kept, away) {
            (Some(index), _) => index,
            // Opening (and closing) a descriptor of the index while SQLite has it open would
            // drop SQLite's locks on it (POSIX locks are per process): only while away.
            (None, true) => WalIndex::open(&self.cfg.db_path).and_then(|i| i.header()),
            (None, false) => self.cap.src.index_header(),
        };
        let fp = Fingerprint {
            header,
            files,
            index,
        };
        (fp, fresh)
    }

    fn fingerprint(&self) -> Fingerprint {
        self.fingerprint_after(None).0
    }

    /// Closes memsync's connections if everything committed is in the spool; why not, if it
    /// did not. Called when nothing was committed for `idle_release`.
    pub(super) fn step_aside(&mut self) -> Result<(), &'static str> {
        if !self.session.is_open() {
            return Err("already away");
        }
        if !self.cap.cur.settled() {
            return Err("frames not yet shipped");
        }
        // Taken before the mark: a commit after it makes the next comparison differ.
        let mut index_read_ns = unix_ns();
        let mut seen = self.fingerprint();
        // The read transaction still holds the WAL, so the mark is exactly the cursor, which
        // everything before was spooled up to. Without one (a commit not read yet, an index
        // being rebuilt) memsync steps aside all the same and resynchronises on its return:
        // holding on until the index settles kept an application from leaving WAL mode.
        let mut mark = self.cap.src.idle_mark().ok().flatten();
        // What the application's last close would have done had memsync not been open: the WAL
        // merged into the database and removed, when no other connection has it open (SQLite
        // checks, and otherwise leaves it). Kept, a closed database's committed transactions
        // lived in the WAL alone, lost to whoever renamed or copied the database file.
        //
        // Nothing committed since the mark right before the close (or, without a mark, a WAL
        // without a frame: a fresh one after a resynchronisation): then whatever the close
        // merges is what was shipped.
        let now = self.cap.src.index_header();
        let frameless = std::fs::metadata(super::sidecar(&self.cfg.db_path, "-wal"))
            .map_or(true, |m| m.len() <= super::lastclose::WAL_HEADER_LEN);
        let unchanged = match mark {
            Some(_) => now == mark,
            None => frameless,
        };
        let mut merged = false;
        // Not on Windows: under Wine, commits made after such a merge went unshipped (not
        // understood yet; memsync holds handles on the WAL and its index, which Windows does
        // not let SQLite delete), so the WAL is kept there as before.
        #[cfg(unix)]
        self.session.checkpoint_on_close();
        self.session.close();
        if !super::sidecar(&self.cfg.db_path, "-wal").exists() {
            // Merged: the WAL memsync returns to is a new one, so it resynchronises.
            mark = None;
            if unchanged {
                // The files as the merge left them are the ones to compare with: memsync's own
                // merge is no change to come back for (it came back at once, read the whole
                // database to find nothing, stepped aside and merged again, forever). A commit
                // that slipped in before the close keeps the old look, so memsync returns and
                // the resync ships it.
                index_read_ns = unix_ns();
                seen = self.fingerprint();
                merged = true;
            }
            tracing::debug!(
                "{}: no other connection open; the WAL was merged into the database",
                self.cfg.db_path.display()
            );
        }
        self.release.stepped_aside(std::time::Instant::now());
        self.away = Some(Away {
            mark,
            seen,
            index_read_ns,
            left_wal: false,
            deferred: false,
            merged,
        });
        self.stats.idle_releases.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            "{}: idle; connections closed until the next change{}",
            self.cfg.db_path.display(),
            if mark.is_none() {
                " (no WAL index mark: resynchronising on return)"
            } else {
                ""
            }
        );
        Ok(())
    }

    /// While away: true when the files look different from the last look (then the monitor
    /// attaches, or checks again whether the database is back in WAL mode).
    pub(super) fn changed_while_away(&mut self) -> bool {
        if self.away.is_none() {
            return false;
        }
        let away = self.away.as_ref().expect("checked above");
        let t = unix_ns();
        let (now, fresh) = self.fingerprint_after(Some((&away.seen, away.index_read_ns)));
        let away = self.away.as_mut().expect("checked above");
        if fresh {
            away.index_read_ns = t;
        }
        if now == away.seen && !away.deferred {
            return false;
        }
        away.seen = now;
        // Changed since memsync's own merge: the database holds more than was shipped.
        away.merged = false;
        true
    }

    /// While away: true when nothing can have been committed since memsync stepped aside with
    /// a mark (everything before it spooled) and the files look exactly as they did then. At
    /// shutdown such a database needs no reopening: there is nothing to ship.
    pub(super) fn untouched_while_away(&self) -> bool {
        self.away.as_ref().is_some_and(|a| {
            (a.mark.is_some() || a.merged)
                && !a.left_wal
                && !a.deferred
                && self.fingerprint() == a.seen
        })
    }

    /// Reopens memsync's connections after it stepped aside and catches up with what was
    /// committed meanwhile; true when attached. While the database is out of WAL mode it stays
    /// away (false), except with `rollback_ok` (shutdown): then it ships the current state read
    /// under a rollback-mode read lock, so nothing committed stays behind.
    pub(super) fn attach(&mut self, rollback_ok: bool) -> Result<bool, MonitorError> {
        if self.away.is_none() {
            return Ok(true);
        }
        // After memsync's own merge, the file events of that merge (the WAL and index deleted)
        // are no change: only files that look different bring it back.
        if !rollback_ok
            && self.away.as_ref().is_some_and(|a| a.merged)
            && !self.changed_while_away()
        {
            return Ok(false);
        }
        let db = self.cfg.db_path.clone();
        let shown = db.display().to_string();
        let hdr = self
            .cap
            .src
            .db_header()
            .map_err(|e| self.io_err("reading database header", e))?;
        let header_wal = wal_header(&hdr);
        if !header_wal && !rollback_ok {
            self.note_left_wal();
            return Ok(false);
        }
        // No WAL file under a WAL header: SQLite deleted it, because the application's last
        // connection closed or because it is leaving WAL mode and has yet to rewrite the
        // header. A connection opened now would create a new WAL and could make the switch fail
        // halfway (seen under load): look again at the next poll, then reopen regardless.
        let wal_missing = !super::sidecar(&db, "-wal").exists();
        if let Some(away) = self.away.as_mut().filter(|_| !rollback_ok && wal_missing)
            && !std::mem::replace(&mut away.deferred, true)
        {
            return Ok(false);
        }
        // Every descriptor is replaced before a connection opens: closing one while SQLite
        // holds locks on that file would drop them (POSIX locks are per process).
        self.session.drop_probe();
        // Out of WAL mode the page size may have changed (VACUUM): the database is read afresh.
        let mut fresh = self.away.as_ref().is_some_and(|a| a.left_wal) || !header_wal;
        let (w, in_wal) = loop {
            if fresh {
                self.cap.src = Source::open(&db).map_err(|e| self.io_err("reading database", e))?;
            } else {
                self.cap.src.reopen_files();
            }
            let w = conn::open(&db, self.cfg.busy_timeout)?;
            let in_wal = match conn::ensure_wal(&w, &db, false) {
                Ok(()) => header_wal,
                Err(OpenError::NotWal { .. }) => false,
                Err(e) => return Err(e.into()),
            };
            if in_wal || (rollback_ok && fresh) {
                break (w, in_wal);
            }
            // SQLite disagrees with the header just read (a switch in between).
            drop(w);
            if !rollback_ok {
                self.note_left_wal();
                return Ok(false);
            }
            fresh = true;
        };
        let r = conn::open(&db, self.cfg.busy_timeout)?;
        let away = self.away.take().expect("checked above");
        self.release.returned(std::time::Instant::now());
        self.session.reopen(Conns { r, w });
        let mut mark = away.mark;
        if fresh {
            mark = None;
            tracing::info!(
                "{}",
                if in_wal {
                    format!(
                        "{shown}: back in WAL mode; replication resumed (shipping the pages changed meanwhile)"
                    )
                } else {
                    format!(
                        "{shown}: not in WAL mode at shutdown; shipping the pages changed in rollback mode"
                    )
                }
            );
        }
        let resyncs = self.stats.resyncs.load(Ordering::Relaxed);
        self.continue_or_resync(mark, false)?;
        tracing::debug!(
            "{shown}: reopened after idle at position {:016x} ({})",
            self.cap.cur.pos.map_or(0, replica_formats::TxId::get),
            if self.stats.resyncs.load(Ordering::Relaxed) == resyncs {
                "the WAL index proves nothing was missed"
            } else {
                "resynchronised"
            }
        );
        Ok(true)
    }

    /// Records (and logs once) that the database left WAL mode.
    fn note_left_wal(&mut self) {
        let Some(away) = self.away.as_mut() else {
            return;
        };
        if std::mem::replace(&mut away.left_wal, true) {
            return;
        }
        away.mark = None;
        tracing::warn!(
            "{}: the database left WAL mode (the application switched it to a rollback journal, e.g. journal_mode=DELETE); replication is paused until it is back in WAL mode",
            self.cfg.db_path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index header read while away stands only while no file changed and the WAL was
    /// last written well before the read (a write in the same mtime tick would not show).
    #[test]
    fn an_index_read_stands_only_for_a_wal_quiet_since_well_before_it() {
        let s = 1_000_000i64;
        let at = |secs: i64, ns: i64| Some((1u64, 2u64, 4096u64, secs, ns));
        let files = [at(s - 100, 0), at(s, 500), None];
        let read = |secs: i64| i128::from(secs) * 1_000_000_000;
        assert!(index_read_stands(&files, &files, read(s + 4)));
        assert!(
            !index_read_stands(&files, &files, read(s + 2)),
            "written within the slack"
        );
        let mut moved = files;
        moved[1] = at(s, 501);
        assert!(
            !index_read_stands(&files, &moved, read(s + 10)),
            "the WAL changed"
        );
        moved = files;
        moved[0] = at(s + 5, 0);
        assert!(
            !index_read_stands(&files, &moved, read(s + 10)),
            "the database changed"
        );
        let no_wal = [at(s, 0), None, None];
        assert!(index_read_stands(&no_wal, &no_wal, read(s)));
    }
}
