//! The Unix side of [`super`]: `pread`/`pwrite`, device and inode, `kill(pid, 0)`, `uname`.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use super::Stop;

/// `pread` until `buf` is full; `UnexpectedEof` if the file is shorter.
pub fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    file.read_exact_at(buf, offset)
}

/// `path` with every symlink resolved, absolute.
pub fn canonicalize(path: &Path) -> io::Result<std::path::PathBuf> {
    std::fs::canonicalize(path)
}

/// Makes the file at `path` durable (`fsync` through a read-only descriptor).
pub fn sync_file(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Makes the entries of directory `dir` durable (a rename or link into it).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Makes every file of `paths` durable, one result each. On Linux the writeback of all of
/// them is started before the first `fsync`: the file system then allocates and writes them
/// together, and a journalling one commits them in one transaction (each `fsync` alone was a
/// journal commit of its own).
pub fn sync_files(paths: &[&Path]) -> Vec<io::Result<()>> {
    let files: Vec<io::Result<File>> = paths.iter().map(File::open).collect();
    #[cfg(target_os = "linux")]
    for f in files.iter().flatten() {
        use std::os::fd::AsRawFd;
        // A hint only: the `fsync` below reports any error.
        // SAFETY: a valid descriptor, offsets and flags as the call documents.
        unsafe {
            libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    files.into_iter().map(|f| f?.sync_all()).collect()
}

/// `pwrite` until `buf` is written.
pub fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    file.write_all_at(buf, offset)
}

/// Device and inode of `path` (following symlinks): equal for two names of one file even
/// across hard links and bind mounts.
pub fn file_id(path: &Path) -> io::Result<(u64, u64)> {
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// Whether two [`file_id`]s name one file.
pub fn same_file(a: (u64, u64), b: (u64, u64)) -> bool {
    a == b
}

/// Identity, size and modification time (seconds, nanoseconds) of `path` in one `stat`: what
/// tells a file changed or replaced.
pub fn stamp(path: &Path) -> io::Result<(u64, u64, u64, i64, i64)> {
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
}

/// Whether a process `pid` exists (it may belong to another user: that still counts).
pub fn process_alive(pid: u32) -> bool {
    let Some(p) = rustix::process::Pid::from_raw(pid as i32) else {
        return false;
    };
    match rustix::process::test_kill_process(p) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// This machine's name, as `hostname` prints it (uname's node name).
pub fn hostname() -> Option<String> {
    let u = rustix::system::uname();
    let s = u.nodename().to_string_lossy();
    (!s.is_empty()).then(|| s.into_owned())
}

/// Sends the child `pid` the signal `stop` stands for; a child already gone is not an error
/// (its exit is the caller's next event).
pub fn forward(pid: u32, stop: Stop) -> io::Result<()> {
    use rustix::process::Signal;
    let sig = match stop {
        Stop::Term => Signal::TERM,
        Stop::Int => Signal::INT,
        Stop::Hup => Signal::HUP,
    };
    let pid = rustix::process::Pid::from_raw(pid as i32)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    match rustix::process::kill_process(pid, sig) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The exit code a shell would give for `status`: the child's code, or 128 + the signal that
/// killed it.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    }
}

/// Bytes an unprivileged writer may still use on the file system holding `file`.
pub fn free_bytes(file: &File) -> Option<u64> {
    let st = rustix::fs::fstatvfs(file).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Takes, without waiting, an exclusive lock of the one byte at `offset` of `file`, owned by
/// this open file (an OFD lock: closing another descriptor of the file does not drop it, and
/// it drops none of SQLite's). `Ok(false)` if another open file holds it. Linux only; `Ok(true)`
/// elsewhere, where the lock is not taken.
pub fn lock_byte_exclusive(file: &File, offset: u64) -> io::Result<bool> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: `flock` is plain data; every field the call reads is set below.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = offset as libc::off_t;
        fl.l_len = 1;
        // SAFETY: a valid descriptor (borrowed for the call) and a valid `flock` it reads;
        // OFD locks need `l_pid` 0, which the zeroed struct has.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
        if r == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
            _ => Err(e),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, offset);
        Ok(true)
    }
}

/// Arranges for the `-exec` child to get SIGTERM when memsync dies, however it dies (SIGKILL,
/// the OOM killer): an application left running unreplicated, and started a second time by
/// the next memsync, is what `-exec` is there to prevent. Linux only (`PR_SET_PDEATHSIG`); it
/// fires when the spawning thread ends, and the supervisor spawns from its own thread, which
/// lives as long as the process.
#[cfg(target_os = "linux")]
pub fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec the closure calls only async-signal-safe functions
    // (prctl, getppid, raise) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(io::Error::last_os_error());
            }
            // memsync died before the call: the signal would never come.
            if libc::getppid() != parent {
                libc::raise(libc::SIGTERM);
            }
            Ok(())
        });
    }
}

/// Elsewhere the child outlives a killed memsync (no portable way to tie it).
#[cfg(not(target_os = "linux"))]
pub fn die_with_parent(_cmd: &mut std::process::Command) {}
