//! Whether the WAL still holds every commit since a known point: at startup (the spool's last
//! WAL position) and after memsync released its read transaction (an application's checkpoint,
//! an idle spell). The decisions are pure functions over headers and counts, table-tested
//! below; `Source` applies them to the files.

use super::{Poll, Source};
use crate::sqlite::wal::{self, Scan, WalCursor, WalError, WalHeader};
use crate::sqlite::walindex::{IndexHeader, WalIndex};

/// What the reader does after it saw the WAL restarted under it while following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterRestart {
    /// Nothing can have been lost: read the new generation from its first frame.
    ReadOn,
    /// Ship the pages that differ from the replicated state instead.
    Resync,
}

/// The decision after a WAL restart seen while polling. `protected`: memsync held its read
/// transaction, restarted under the write lock with every frame copied, all along (no restart
/// can then drop an uncopied frame). A restart that kept the checkpoint sequence number is not
/// one SQLite makes (the file was rewritten some other way). Frames gathered from the old
/// generation but not yet written can no longer be read safely (a frame of the new one at the
/// same offset would pass for them): the pages that differ are shipped instead.
pub fn after_restart(
    prev: &WalHeader,
    next: Option<&WalHeader>,
    protected: bool,
    gathered: bool,
) -> AfterRestart {
    let sane = next.is_none_or(|h| h.ckpt_seq != prev.ckpt_seq);
    if gathered || !(protected && sane) {
        AfterRestart::Resync
    } else {
        AfterRestart::ReadOn
    }
}

/// What SQLite's WAL index says happened since `mark` (see [`Source::continue_after`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinceMark {
    /// Same salts: no restart; the frames after the cursor are all there.
    SameGeneration,
    /// Exactly one restart (the first salt one higher), and `commits` commits since the mark,
    /// all of which must be in the new generation.
    OneRestart {
        /// Commits counted by the index since the mark.
        commits: u64,
    },
    /// Anything else (two restarts, a re-randomised salt): nothing can be proven.
    Unproven,
}

/// Compares the index header at the mark with the one now.
pub fn since_mark(mark: &IndexHeader, now: &IndexHeader) -> SinceMark {
    if now.salt == mark.salt {
        return SinceMark::SameGeneration;
    }
    let salt1 = |h: &IndexHeader| u32::from_be_bytes([h.salt[0], h.salt[1], h.salt[2], h.salt[3]]);
    if salt1(now) != salt1(mark).wrapping_add(1) {
        return SinceMark::Unproven;
    }
    SinceMark::OneRestart {
        commits: u64::from(now.change.wrapping_sub(mark.change)),
    }
}

/// After one restart: true when the new generation, read from its first frame to `frames`,
/// holds exactly the `commits` counted since the mark, up to the frame the index `now`
/// publishes, and no commit frame repeats (a commit padded to a sector boundary repeats its
/// commit frame; any repeat refuses the proof rather than be miscounted).
pub fn holds_every_commit(commits: u64, frames: u64, now: &IndexHeader, scan: &Scan) -> bool {
    frames == u64::from(now.mx_frame) && scan.transactions == commits && scan.repeated_commits == 0
}

impl Source {
    /// Positions the reader after the frame that ends at `offset` with running checksum `cksum`
    /// in the generation with the given salts, indexing every frame before it. Returns the
    /// frames committed after that point, or `None` if the WAL no longer holds that position
    /// (restarted, truncated or rewritten): the caller must then resynchronise.
    pub fn resume(&mut self, pos: &replica_formats::WalPosition) -> Result<Option<Scan>, WalError> {
        self.reset();
        let Some(wal) = self.wal_file()? else {
            return Ok(None);
        };
        let Some(h) = wal::read_header(wal)? else {
            return Ok(None);
        };
        if h.salt1 != pos.salt1 || h.salt2 != pos.salt2 {
            return Ok(None);
        }
        let mut cur = WalCursor::start(h);
        let cap = self.published_frames(&h);
        let wal = self.wal.as_ref().expect("opened above");
        let mut scan = wal::scan_committed(wal, &mut cur, 0, cap, &mut self.scan_buf)?;
        let split = if pos.offset == wal::WAL_HEADER_LEN {
            (h.cksum == wal::Cksum(pos.cksum1, pos.cksum2)).then_some(0)
        } else {
            scan.frames
                .iter()
                .position(|f| f.offset + h.frame_len() == pos.offset)
                .filter(|&i| {
                    wal::stored_cksum(wal, scan.frames[i].offset).ok()
                        == Some(wal::Cksum(pos.cksum1, pos.cksum2))
                })
                .map(|i| i + 1)
        };
        let Some(split) = split else {
            return Ok(None);
        };
        for f in &scan.frames {
            self.index.insert(f.pgno, *f);
        }
        self.last_commit = scan.commit;
        self.cursor = Some(cur);
        let after = scan.frames.split_off(split);
        scan.frames = after;
        Ok(Some(scan))
    }

    /// After memsync released its read transaction (stepping aside for an application's
    /// checkpoint), decides whether the WAL still holds every commit made since `mark` and, if
    /// so, returns those commits. Call with the write lock held. `None` means it cannot be
    /// proven and the caller must resynchronise.
    ///
    /// Proof: SQLite counts commits in the index header (`iChange`; only a rebuild of the index
    /// after a writer died mid-update resets it, and a false match would then need exactly as
    /// many lost commits as the old count) and adds one to the first salt at each WAL restart
    /// made by a connection that already knew the WAL (a fresh connection re-randomises both
    /// salts: the proof then fails and a resync follows, which is only slower). With the same
    /// salts nothing was restarted, so the frames after the cursor are all there. With the first
    /// salt one higher, exactly one restart happened; every commit since the mark is in the new
    /// generation exactly when the commit frames found there, checksums verified from its first
    /// frame, number as many as the counter moved (a commit padded to a sector boundary repeats
    /// its commit frame; any repeat refuses the proof rather than be miscounted).
    pub fn continue_after(&mut self, mark: &IndexHeader) -> Result<Option<Scan>, WalError> {
        let Some(now) = self.walindex.as_ref().and_then(WalIndex::header) else {
            return Ok(None);
        };
        let commits = match since_mark(mark, &now) {
            SinceMark::SameGeneration => {
                return Ok(match self.poll(0)? {
                    Poll::Idle => Some(Scan::default()),
                    Poll::Frames(scan) => Some(scan),
                    Poll::Restarted { .. } => None,
                });
            }
            SinceMark::Unproven => return Ok(None),
            SinceMark::OneRestart { commits } => commits,
        };
        self.reset();
        if now.mx_frame == 0 {
            // Restarted and nothing committed since: the next frame starts the new generation.
            return Ok((commits == 0).then(Scan::default));
        }
        let Some(wal) = self.wal_file()? else {
            return Ok(None);
        };
        let Some(h) = wal::read_header(wal)? else {
            return Ok(None);
        };
        if !now.describes(&h) {
            return Ok(None);
        }
        let mut cur = WalCursor::start(h);
        let wal = self.wal.as_ref().expect("opened above");
        let cap = Some(u64::from(now.mx_frame));
        let scan = wal::scan_committed(wal, &mut cur, 0, cap, &mut self.scan_buf)?;
        if !holds_every_commit(commits, cur.frame_count(), &now, &scan) {
            self.reset();
            return Ok(None);
        }
        for f in &scan.frames {
            self.index.insert(f.pgno, *f);
        }
        self.last_commit = scan.commit;
        self.last_change = Some(now.change);
        self.cursor = Some(cur);
        Ok(Some(scan))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::wal::Cksum;

    fn setup() -> (tempfile::TempDir, rusqlite::Connection, Source) {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("x.db");
        let c = rusqlite::Connection::open(&db).unwrap();
        c.pragma_update(None, "journal_mode", "wal").unwrap();
        c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        let src = Source::open(&db).unwrap();
        (d, c, src)
    }

    fn drain(src: &mut Source) {
        while let Poll::Frames(_) | Poll::Restarted { .. } = src.poll(0).unwrap() {}
    }

    fn write(c: &rusqlite::Connection, n: usize) {
        for _ in 0..n {
            c.execute("INSERT INTO t VALUES (randomblob(100))", [])
                .unwrap();
        }
    }

    fn checkpoint(c: &rusqlite::Connection, mode: &str) {
        c.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))
            .unwrap();
    }

    /// The proof `continue_after` relies on holds on real SQLite: it accepts exactly the cases
    /// where every commit since the mark is still in the WAL.
    #[test]
    fn continuing_after_a_yield_is_proven_or_refused() {
        // Same generation: the new commits are returned.
        let (_d, c, mut src) = setup();
        drain(&mut src);
        let mark = src.index_mark().unwrap();
        write(&c, 2);
        assert_eq!(src.continue_after(&mark).unwrap().unwrap().transactions, 2);

        // One restart (RESTART, then the next writer restarts the WAL), everything after it.
        for mode in ["RESTART", "TRUNCATE"] {
            let (_d, c, mut src) = setup();
            drain(&mut src);
            let mark = src.index_mark().unwrap();
            checkpoint(&c, mode);
            write(&c, 3);
            let scan = src.continue_after(&mark).unwrap().expect(mode);
            assert_eq!(scan.transactions, 3, "{mode}");
            // The reader goes on from there.
            write(&c, 1);
            let Poll::Frames(next) = src.poll(0).unwrap() else {
                panic!("{mode}: the next commit is read")
            };
            assert_eq!(next.transactions, 1);
        }

        // Restarted, nothing committed yet.
        let (_d, c, mut src) = setup();
        drain(&mut src);
        let mark = src.index_mark().unwrap();
        checkpoint(&c, "TRUNCATE");
        assert!(src.continue_after(&mark).unwrap().is_some());

        // Commits made before the restart were checkpointed away: refused.
        let (_d, c, mut src) = setup();
        drain(&mut src);
        let mark = src.index_mark().unwrap();
        write(&c, 2);
        checkpoint(&c, "TRUNCATE");
        write(&c, 1);
        assert!(src.continue_after(&mark).unwrap().is_none());

        // Two restarts: refused even with nothing lost in between.
        let (_d, c, mut src) = setup();
        drain(&mut src);
        let mark = src.index_mark().unwrap();
        checkpoint(&c, "TRUNCATE");
        write(&c, 1);
        checkpoint(&c, "TRUNCATE");
        write(&c, 1);
        assert!(src.continue_after(&mark).unwrap().is_none());
    }

    fn wal_header(ckpt_seq: u32) -> WalHeader {
        WalHeader {
            big_endian: false,
            page_size: replica_formats::PageSize::new(4096).unwrap(),
            ckpt_seq,
            salt1: 1,
            salt2: 2,
            cksum: Cksum(0, 0),
        }
    }

    #[test]
    fn after_a_restart_the_reader_reads_on_only_when_nothing_can_be_lost() {
        use AfterRestart::*;
        let prev = wal_header(7);
        let (next, same_seq) = (wal_header(8), wal_header(7));
        // (next generation, protected, frames gathered, decision)
        let table = [
            (Some(&next), true, false, ReadOn),
            (None, true, false, ReadOn),
            (Some(&next), false, false, Resync),
            (None, false, false, Resync),
            (Some(&next), true, true, Resync),
            (Some(&same_seq), true, false, Resync),
            (Some(&same_seq), false, true, Resync),
        ];
        for (next, protected, gathered, want) in table {
            assert_eq!(
                after_restart(&prev, next, protected, gathered),
                want,
                "{next:?} protected={protected} gathered={gathered}"
            );
        }
    }

    fn index(salt1: u32, salt2: u32, change: u32, mx_frame: u32) -> IndexHeader {
        let mut salt = [0u8; 8];
        salt[..4].copy_from_slice(&salt1.to_be_bytes());
        salt[4..].copy_from_slice(&salt2.to_be_bytes());
        IndexHeader {
            change,
            mx_frame,
            n_page: 2,
            frame_cksum: Cksum(0, 0),
            salt,
        }
    }

    #[test]
    fn the_index_says_how_many_restarts_and_commits_since_the_mark() {
        use SinceMark::*;
        let mark = index(10, 99, 40, 5);
        let table = [
            (index(10, 99, 42, 9), SameGeneration),
            (index(10, 99, 40, 5), SameGeneration),
            (index(11, 7, 43, 3), OneRestart { commits: 3 }),
            (index(11, 7, 40, 0), OneRestart { commits: 0 }),
            (index(12, 7, 45, 3), Unproven),
            (index(10, 7, 45, 3), Unproven),
            (index(3, 99, 45, 3), Unproven),
        ];
        for (now, want) in table {
            assert_eq!(since_mark(&mark, &now), want, "{now:?}");
        }
        // The counters wrap.
        let mark = index(u32::MAX, 1, u32::MAX, 5);
        assert_eq!(
            since_mark(&mark, &index(0, 2, 1, 2)),
            OneRestart { commits: 2 }
        );
    }

    #[test]
    fn the_new_generation_must_hold_exactly_the_counted_commits() {
        let now = index(11, 7, 43, 6);
        let scan = |transactions, repeated_commits| Scan {
            transactions,
            repeated_commits,
            ..Scan::default()
        };
        // (commits counted, frames read, scan, proven)
        let table = [
            (3, 6, scan(3, 0), true),
            (3, 5, scan(3, 0), false),
            (4, 6, scan(3, 0), false),
            (2, 6, scan(3, 0), false),
            (3, 6, scan(3, 1), false),
        ];
        for (commits, frames, scan, want) in table {
            assert_eq!(
                holds_every_commit(commits, frames, &now, &scan),
                want,
                "{commits} commits, {frames} frames, {scan:?}"
            );
        }
    }
}
