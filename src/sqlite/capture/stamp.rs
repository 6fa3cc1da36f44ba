//! The timestamps of the files capture writes: a restore point's time. Each is at least a
//! millisecond after the previous one, so two syncs in one millisecond stay two restore points
//! a `-timestamp` can tell apart; and after a restart with the clock set back (an NTP step, a
//! bad clock at boot), after where the last run got to, so restore points never go back in
//! time and a restore before the restart cannot reach positions written after it.

use std::cell::Cell;
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use replica_formats::Timestamp;

/// A restore point's time: now, in milliseconds rounded *up*. Every commit the file holds was
/// made before now, so a restore at any time at or after the label holds only commits made by
/// then (rounded down, a commit made in the label's last fraction of a millisecond could be in
/// a restore asked for a time just before it).
pub(super) fn label_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().div_ceil(1_000_000) as i64)
}

/// The stamps of one database's files.
#[derive(Debug, Default)]
pub struct Stamps {
    /// The last file's.
    last: Cell<i64>,
    /// Set when the clock read earlier than where the last run got to: from then on files are
    /// stamped at least that time plus the time elapsed since.
    floor: Cell<Option<(Instant, i64)>>,
}

impl Stamps {
    /// The next file's stamp.
    pub fn next(&self) -> Timestamp {
        let floor = self.floor.get().map_or(0, |(at, base)| {
            base + 1 + i64::try_from(at.elapsed().as_millis()).unwrap_or(i64::MAX / 2)
        });
        let ts = label_ms().max(self.last.get() + 1).max(floor);
        self.last.set(ts);
        Timestamp::from_millis(ts)
    }

    /// Files are stamped after `newest` (milliseconds: the newest file a previous run wrote,
    /// or when it stopped), moving on with the time elapsed since. Says so when the clock is
    /// more than a second behind it.
    pub fn after(&self, newest: i64, db: &Path) {
        let now = label_ms();
        if newest <= now {
            return;
        }
        if newest > now + 1000 {
            tracing::warn!(
                "{}: the clock reads {} s before the time the last run got to: new files are stamped from that time on, so restore points stay in commit order (a -timestamp restore names times as the files hold them)",
                db.display(),
                (newest - now) / 1000
            );
        }
        self.floor.set(Some((Instant::now(), newest)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A restore point's label is never before the moment it was taken, so nothing committed
    /// after a time asked for can be in the restore (rounded down it was, by up to a
    /// millisecond, in about one label in two hundred).
    #[test]
    fn a_label_is_never_before_now() {
        for _ in 0..1000 {
            let before = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let label = label_ms() as u128 * 1_000_000;
            assert!(label >= before, "{label} < {before}");
        }
    }

    #[test]
    fn stamps_move_on_from_where_the_last_run_got_to() {
        let s = Stamps::default();
        let a = s.next().get();
        assert!(s.next().get() > a, "at least a millisecond apart");
        let ahead = label_ms() + 3_600_000;
        s.after(ahead, Path::new("db"));
        let b = s.next().get();
        assert!(b > ahead && b < ahead + 60_000, "{b} after {ahead}");
        // A time already passed changes nothing.
        let t = Stamps::default();
        t.after(0, Path::new("db"));
        assert!(t.next().get() >= label_ms() - 1);
    }
}
