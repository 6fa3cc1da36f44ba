//! Running a replicator under measurement: its own session (so every process it starts is
//! counted), CPU seconds from /proc, peak RSS.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A replicator command line: program plus leading arguments (e.g. `env -u X litestream`).
#[derive(Debug, Clone)]
pub struct Replicator {
    /// Label in reports.
    pub name: String,
    /// Program and arguments placed before the subcommand.
    pub argv: Vec<String>,
}

impl Replicator {
    fn command(&self) -> Command {
        let mut c = Command::new(&self.argv[0]);
        c.args(&self.argv[1..]);
        c
    }

    /// `replicate -config CFG` in a new session, logging to `log`.
    pub fn start(&self, cfg: &Path, log: &Path) -> std::io::Result<Running> {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(log)?;
        let mut c = self.command();
        c.args(["replicate", "-config"]).arg(cfg);
        // Both streams: memsync logs to stdout by default, as Litestream does.
        c.stdout(log.try_clone()?).stderr(log);
        // SAFETY: the closure runs in the forked child before exec, where only
        // async-signal-safe work is allowed: it makes one system call (setsid), allocates
        // nothing and takes no lock.
        unsafe {
            c.pre_exec(|| {
                let _ = rustix::process::setsid();
                Ok(())
            });
        }
        let child = c.spawn()?;
        Ok(Running { child })
    }

    /// `restore -config CFG -o OUT DB`; true on success.
    pub fn restore(&self, cfg: &Path, out: &Path, db: &Path) -> bool {
        self.restore_output(cfg, out, db).is_some()
    }

    /// `restore -config CFG -o OUT DB`: what the tool printed (stdout and stderr), on success.
    pub fn restore_output(&self, cfg: &Path, out: &Path, db: &Path) -> Option<String> {
        for s in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(crate::sqlite::sidecar(out, s));
        }
        let mut c = self.command();
        c.args(["restore", "-config"])
            .arg(cfg)
            .arg("-o")
            .arg(out)
            .arg(db);
        let o = c.output().ok()?;
        o.status.success().then(|| {
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
        })
    }
}

/// A running replicator.
pub struct Running {
    child: Child,
}

impl Running {
    /// Process id (also its session id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds (user + system) of every live process in the replicator's session.
    pub fn cpu_seconds(&self) -> f64 {
        super::procfs::session_cpu_seconds(self.pid() as i64)
    }

    /// Peak resident set size of the main process, in kB.
    pub fn peak_rss_kb(&self) -> u64 {
        super::procfs::status(self.pid()).map_or(0, |s| s.hwm_kb)
    }

    /// SIGTERM, wait up to 30 s, then SIGKILL the session; returns seconds to exit.
    pub fn stop(mut self) -> f64 {
        let t0 = Instant::now();
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        while t0.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return t0.elapsed().as_secs_f64();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid() as i32) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.child.wait();
        t0.elapsed().as_secs_f64()
    }

    /// True while it runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// Total size in bytes and number of files under `dir`.
pub fn dir_size(dir: &Path) -> (u64, u64) {
    let mut bytes = 0;
    let mut files = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => {
                    let (b, f) = dir_size(&e.path());
                    bytes += b;
                    files += f;
                }
                Ok(_) => {
                    bytes += e.metadata().map_or(0, |m| m.len());
                    files += 1;
                }
                Err(_) => {}
            }
        }
    }
    (bytes, files)
}
