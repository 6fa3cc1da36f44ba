//! The temporary outputs of restores in progress. A signal that stops `memsync restore` (Ctrl-C,
//! SIGTERM, a closed terminal) removes them before the process exits: an interrupted restore
//! leaves nothing behind (it left `OUTPUT.<pid>.tmp`, which nothing ever removed), neither the
//! WAL and index an integrity check opens beside it nor the output directories it made.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::platform::Stop;
use crate::signals::StopSignals;

static OPEN: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
/// Directories made for outputs, outermost first within each restore.
static MADE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A temporary output, listed until dropped.
pub(super) struct Listed(PathBuf);

impl Drop for Listed {
    fn drop(&mut self) {
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|p| p != &self.0);
    }
}

/// Lists `tmp` as a temporary output until the returned guard is dropped.
pub(super) fn list(tmp: &Path) -> Listed {
    OPEN.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(tmp.to_path_buf());
    Listed(tmp.to_path_buf())
}

/// Output directories a restore made, listed until the returned guard is dropped (the restore
/// then removes them itself when nothing was restored).
pub(super) struct MadeDirs(Vec<PathBuf>);

impl Drop for MadeDirs {
    fn drop(&mut self) {
        let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
        made.retain(|p| !self.0.contains(p));
    }
}

/// Lists `dirs` (outermost first) as made by a restore in progress.
pub(super) fn list_dirs(dirs: &[PathBuf]) -> MadeDirs {
    MADE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(dirs.iter().cloned());
    MadeDirs(dirs.to_vec())
}

/// From now on a stop signal removes the listed temporary outputs and exits (128 + the
/// signal's number, as the shell reports a process the signal killed). Listening starts before
/// this returns, so no signal falls between.
pub fn clean_up_on_stop(rt: &tokio::runtime::Runtime) -> std::io::Result<()> {
    let mut signals = {
        let _in = rt.enter();
        StopSignals::new(true)?
    };
    rt.spawn(async move {
        let stop = signals.next().await;
        let open = OPEN.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for p in open {
            for s in ["", "-wal", "-shm", "-journal"] {
                let _ = std::fs::remove_file(crate::sqlite::sidecar(&p, s));
            }
        }
        // Innermost first; one that is not empty (another restore's output) stays.
        let made = MADE.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for d in made.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
        crate::stdout::errln!("memsync: restore interrupted; nothing written");
        std::process::exit(match stop {
            Stop::Hup => 129,
            Stop::Int => 130,
            Stop::Term => 143,
        });
    });
    Ok(())
}
