//! Real server processes the tests start (SeaweedFS, nginx): each in its own process group,
//! killed with the group on drop, and killed by a guard when the test binary exits while the
//! server still runs (servers shared by a whole test binary live in statics, which are never
//! dropped).

use std::ffi::OsStr;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Where scripts/harness.sh installs the external components.
pub fn harness() -> PathBuf {
    std::env::var_os("MEMSYNC_HARNESS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/memsync-harness")
        })
}

/// Panics with what to run when an external program the tests need is missing: tests never
/// skip because a component is absent.
pub fn require(program: &Path, what: &str) {
    assert!(
        program.is_file(),
        "{what} is not installed ({} missing): run scripts/harness.sh (scripts/test.sh does)",
        program.display()
    );
}

/// `n` distinct free loopback ports (all bound at once, then released).
pub fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    ls.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// Runs the server, keeps fd 3 on the test's pipe, and when that pipe reaches end of file (the
/// test binary exited, however it exited) kills the server, removes its leftovers and scratch
/// directory, and kills the rest of the process group. A line on the pipe ([`Proc::kill`]: the
/// owner stops the server and keeps its directory) kills the group and removes nothing: a
/// server that had died on its own left this watcher behind, and dropping its `Proc` used to
/// make it remove the directory a restarted server was using (CI saw SeaweedFS "exit during
/// startup" with its data directory gone). The shell itself exits when the server does, so
/// `try_wait` sees a server that died on its own.
const GUARD: &str = r#"exec 3<&0
leftovers=$1; scratch=$2; shift 2
"$@" </dev/null 3<&- &
server=$!
( if read -r _ <&3; then kill -KILL 0; fi; kill -KILL "$server" 2>/dev/null; rm -rf -- $leftovers "$scratch"; kill -KILL 0 ) &
wait "$server"
"#;

/// One running server process (with its guard) in its own process group.
pub struct Proc {
    name: String,
    child: Child,
    /// Held open: its end of file tells the guard the test binary is gone; a line, that the
    /// owner stopped the server.
    guard: ChildStdin,
    log: PathBuf,
    leftovers: Vec<PathBuf>,
    killed: bool,
}

impl Proc {
    /// Starts `program args` with stdout and stderr appended to `log`. `leftovers` (paths
    /// without spaces) are removed once the server is killed, by `kill` or by the guard;
    /// `scratch` (the server's temporary directory) only by the guard, for a server that outlives
    /// its owner (a static one): otherwise its owner removes it.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[&OsStr],
        log: &Path,
        leftovers: &[PathBuf],
        scratch: &Path,
    ) -> Proc {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("{name}: opening log {}: {e}", log.display()));
        let joined: Vec<&str> = leftovers
            .iter()
            .map(|p| {
                let s = p.to_str().unwrap();
                assert!(
                    !s.contains(char::is_whitespace),
                    "leftover path {s:?} has spaces"
                );
                s
            })
            .collect();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(GUARD)
            .arg("sh")
            .arg(joined.join(" "))
            .arg(scratch)
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: starting {}: {e}", program.display()));
        let guard = child.stdin.take().unwrap();
        Proc {
            name: name.to_string(),
            child,
            guard,
            log: log.to_path_buf(),
            leftovers: leftovers.to_vec(),
            killed: false,
        }
    }

    /// The server's exit status if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log, 40)
    }

    /// Polls `ready` until it is true; panics with the log if the server exits or takes longer
    /// than `limit`.
    pub fn wait_ready(&mut self, limit: Duration, ready: impl FnMut() -> bool) {
        if !self.wait_ready_or_exit(limit, ready) {
            let st = self.exited().unwrap();
            panic!(
                "{} exited ({st}) during startup:\n{}",
                self.name,
                self.log_tail()
            );
        }
    }

    /// Like [`wait_ready`](Self::wait_ready), but a server that exits makes it return false
    /// (the caller may try again, e.g. when its port was taken meanwhile).
    pub fn wait_ready_or_exit(&mut self, limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
        let t0 = Instant::now();
        loop {
            if ready() {
                return true;
            }
            if self.exited().is_some() {
                return false;
            }
            assert!(
                t0.elapsed() < limit,
                "{} not ready after {limit:?}:\n{}",
                self.name,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the server said its address was taken (a free port we picked was taken before
    /// the server bound it).
    pub fn port_was_taken(&self) -> bool {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .to_ascii_lowercase()
            .contains("address already in use")
    }

    /// SIGKILL to the whole process group (as a crash), then removes the leftovers.
    pub fn kill(&mut self) {
        if std::mem::replace(&mut self.killed, true) {
            return;
        }
        // Tells a watcher left by a server that died on its own to go without removing
        // anything (see [`GUARD`]).
        let _ = std::io::Write::write_all(&mut self.guard, b"stop\n");
        // While the group's leader (the guard shell) is not reaped, its id is still ours. Once
        // reaped, the server is gone and the id may be reused: leave the group alone.
        if self.child.try_wait().unwrap().is_none() {
            let pgid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
            let _ = self.child.wait();
        }
        for p in &self.leftovers {
            let _ = std::fs::remove_dir_all(p).or_else(|_| std::fs::remove_file(p));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `n` lines of a log file.
pub fn log_tail(path: &Path, n: usize) -> String {
    let t = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Whether something accepts TCP connections on the loopback port.
pub fn listening(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Writes `text` to `path`, creating parent directories.
pub fn write_file(path: &Path, text: &str) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}
