//! Named fault points, for the crash tests: a test arms one with `MEMSYNC_FAULT` and memsync
//! crashes, fails or pauses exactly there.
//!
//! `MEMSYNC_FAULT=<point>:<action>[:<nth>]`, several separated by commas. `<action>` is
//! `crash` (abort the process at once: nothing after the point happens, as with a power cut or
//! SIGKILL there), `fail` (the operation at the point returns an I/O error, once), `panic` (a
//! bug there: the thread or task panics) or `pause`
//! (block while the file named by `MEMSYNC_FAULT_HOLD` exists, so a test can act while memsync
//! stands there; logged as `fault point <point>: paused`). `<nth>` (default 1) says which hit
//! of the point acts: the earlier ones pass.
//!
//! Points (see `docs/design.md`, "Crash points"): `spool-write` (a spool file's temp file
//! written, not yet flushed), `spool-rename` (complete temp file, before the rename into place),
//! `spool-renamed` (the file in place, its position not yet recorded; for `crash` and `pause`:
//! nothing after a rename can fail), `snapshot` (a snapshot's pages written, before its
//! trailer), `upload` (a file is on the replica, not yet recorded as shipped; while it is
//! armed, captured files go through the shipper rather than being placed on the spot), `place`
//! (the same for a level-0 file placed on a file replica as it was captured: on the thread
//! that places files, once the file is durably there; `pause` there holds up every database's
//! placements),
//! `delete` (one replica file deleted), `pagemap-save` (before the page map is written),
//! `restore-finish` (a restore's temporary output written, not yet checked and renamed),
//! `pull-apply` (a pull planned, its local writes not yet made), `repair-rebuild` (a
//! repair's new staging file holds the staged rows, not yet the rest) and
//! `restore-files` (armed with any action, a restore reads its chain file by file instead of
//! through the run index: the test of what restores read compares the two).
//!
//! Only debug builds (the tests' binary) read the variable; in release builds every point is
//! an empty inline function, so production code cannot be armed by its environment.

use std::io;

/// Passes, or acts as armed (see the module docs). `fail` gives an error of kind `Other`
/// naming the point.
#[inline]
pub fn point(name: &str) -> io::Result<()> {
    #[cfg(debug_assertions)]
    armed::hit(name)?;
    #[cfg(not(debug_assertions))]
    let _ = name;
    Ok(())
}

/// Whether a test armed `name` (always false in release builds): a path that would bypass an
/// armed point steps aside for it.
#[inline]
pub fn armed(name: &str) -> bool {
    #[cfg(debug_assertions)]
    return armed::is_armed(name);
    #[cfg(not(debug_assertions))]
    {
        let _ = name;
        false
    }
}

#[cfg(debug_assertions)]
mod armed {
    use std::io;
    use std::sync::Mutex;
    use std::time::Duration;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Action {
        Crash,
        Fail,
        Pause,
        Panic,
    }

    struct Arm {
        point: String,
        action: Action,
        nth: u64,
        hits: u64,
    }

    /// The armed points, read from the environment once.
    static ARMS: Mutex<Option<Vec<Arm>>> = Mutex::new(None);

    /// Parses `MEMSYNC_FAULT`; a malformed entry is reported and ignored (a test that armed
    /// nothing then fails on its own assertions, naming the variable in the log).
    fn parse(spec: &str) -> Vec<Arm> {
        spec.split(',')
            .filter(|s| !s.trim().is_empty())
            .filter_map(|s| {
                let mut it = s.trim().split(':');
                let point = it.next()?.to_owned();
                let action = match it.next() {
                    Some("crash") => Action::Crash,
                    Some("fail") => Action::Fail,
                    Some("pause") => Action::Pause,
                    Some("panic") => Action::Panic,
                    _ => {
                        tracing::error!("MEMSYNC_FAULT: cannot read {s:?}");
                        return None;
                    }
                };
                let nth = match it.next().map(str::parse) {
                    None => 1,
                    Some(Ok(n)) if n >= 1 => n,
                    Some(_) => {
                        tracing::error!("MEMSYNC_FAULT: cannot read {s:?}");
                        return None;
                    }
                };
                Some(Arm {
                    point,
                    action,
                    nth,
                    hits: 0,
                })
            })
            .collect()
    }

    /// Counts a hit of `name` on every arm of that point; the action of the first one due.
    fn count(arms: &mut [Arm], name: &str) -> Option<Action> {
        let mut due = None;
        for a in arms.iter_mut().filter(|a| a.point == name) {
            a.hits += 1;
            if a.hits == a.nth {
                due = due.or(Some(a.action));
            }
        }
        due
    }

    pub(super) fn is_armed(name: &str) -> bool {
        let mut arms = ARMS.lock().unwrap_or_else(|e| e.into_inner());
        let arms = arms.get_or_insert_with(|| {
            std::env::var("MEMSYNC_FAULT").map_or_else(|_| Vec::new(), |s| parse(&s))
        });
        arms.iter().any(|a| a.point == name)
    }

    pub(super) fn hit(name: &str) -> io::Result<()> {
        let action = {
            let mut arms = ARMS.lock().unwrap_or_else(|e| e.into_inner());
            let arms = arms.get_or_insert_with(|| {
                std::env::var("MEMSYNC_FAULT").map_or_else(|_| Vec::new(), |s| parse(&s))
            });
            count(arms, name)
        };
        match action {
            None => Ok(()),
            Some(Action::Crash) => {
                tracing::info!("fault point {name}: crashing");
                std::process::abort()
            }
            Some(Action::Panic) => panic!("fault point {name}: panicking"),
            Some(Action::Fail) => {
                tracing::info!("fault point {name}: failing");
                Err(io::Error::other(format!("fault point {name}")))
            }
            Some(Action::Pause) => {
                tracing::info!("fault point {name}: paused");
                if let Some(hold) = std::env::var_os("MEMSYNC_FAULT_HOLD") {
                    while std::path::Path::new(&hold).exists() {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                tracing::info!("fault point {name}: released");
                Ok(())
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn each_arm_acts_once_at_its_own_hit() {
            let mut arms = parse("upload:pause:2,upload:fail:3,delete:crash");
            let hits: Vec<Option<Action>> = (0..4).map(|_| count(&mut arms, "upload")).collect();
            assert_eq!(hits, [None, Some(Action::Pause), Some(Action::Fail), None]);
            assert_eq!(count(&mut arms, "spool-write"), None);
            assert_eq!(count(&mut arms, "delete"), Some(Action::Crash));
        }

        #[test]
        fn specs_parse_and_bad_ones_are_dropped() {
            let arms = parse("upload:crash:3, delete:fail,x:boom,y:pause:0,snapshot:pause");
            let got: Vec<(&str, Action, u64)> = arms
                .iter()
                .map(|a| (a.point.as_str(), a.action, a.nth))
                .collect();
            assert_eq!(
                got,
                [
                    ("upload", Action::Crash, 3),
                    ("delete", Action::Fail, 1),
                    ("snapshot", Action::Pause, 1)
                ]
            );
        }
    }
}
