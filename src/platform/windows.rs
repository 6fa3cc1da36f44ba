//! The Windows side of [`super`]: positioned reads and writes through `seek_read`/`seek_write`,
//! the volume serial and file index, `OpenProcess`, `COMPUTERNAME`.

use std::fs::File;
use std::io;
use std::os::windows::fs::FileExt;
use std::os::windows::io::AsRawHandle;
use std::path::Path;
use std::time::UNIX_EPOCH;

use windows_sys::Win32::Foundation::{CloseHandle, ERROR_ACCESS_DENIED, GetLastError};
use windows_sys::Win32::Storage::FileSystem::{
    BY_HANDLE_FILE_INFORMATION, GetFileInformationByHandle, LOCKFILE_EXCLUSIVE_LOCK,
    LOCKFILE_FAIL_IMMEDIATELY, LockFileEx, UnlockFileEx,
};
use windows_sys::Win32::System::IO::OVERLAPPED;
use windows_sys::Win32::System::Threading::{
    GetExitCodeProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_TERMINATE,
    TerminateProcess,
};

use super::Stop;

/// `ReadFile` at `offset` until `buf` is full; `UnexpectedEof` if the file is shorter.
pub fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `path` with every link resolved, absolute, and without the `\\?\` prefix Windows'
/// resolution adds where the plain form means the same (`C:\...`, `\\server\share\...`):
/// verbatim paths take no `/` and no `..`, and memsync joins keys spelled with `/` to them.
pub fn canonicalize(path: &Path) -> io::Result<std::path::PathBuf> {
    let c = std::fs::canonicalize(path)?;
    let Some(s) = c.to_str() else {
        return Ok(c);
    };
    if let Some(rest) = s.strip_prefix(r"\\?\UNC\") {
        return Ok(format!(r"\\{rest}").into());
    }
    match s.strip_prefix(r"\\?\") {
        Some(rest) if rest.as_bytes().get(1) == Some(&b':') && rest.len() < 260 => Ok(rest.into()),
        _ => Ok(c),
    }
}

/// Makes the file at `path` durable: `FlushFileBuffers` needs a handle open for writing.
pub fn sync_file(path: &Path) -> io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .sync_all()
}

/// Makes every file of `paths` durable, one result each.
pub fn sync_files(paths: &[&Path]) -> Vec<io::Result<()>> {
    paths.iter().map(|p| sync_file(p)).collect()
}

/// Nothing to do: NTFS journals directory entries, and Windows cannot flush a directory
/// handle (the entry of a renamed or linked file is durable with the file system's journal).
pub fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// `WriteFile` at `offset` until `buf` is written.
pub fn write_all_at(file: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match file.seek_write(buf, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Volume serial number and file index of `path`: equal for two names of one file.
pub fn file_id(path: &Path) -> io::Result<(u64, u64)> {
    let f = File::open(path)?;
    // SAFETY: a plain struct of integers: all zeroes is a valid value of it.
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: the handle is open for the call (`f` lives until the end of the function) and
    // `info` is a valid out-pointer the call fills.
    let ok = unsafe { GetFileInformationByHandle(f.as_raw_handle() as _, &mut info) };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    let index = (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow);
    Ok((u64::from(info.dwVolumeSerialNumber), index))
}

/// Whether two [`file_id`]s name one file: the file index must match, and the volume serial
/// too unless one of them reads 0 (no serial known; Wine reports 0 until the volume's serial
/// is first set, then the real one, for the same file).
pub fn same_file(a: (u64, u64), b: (u64, u64)) -> bool {
    a.1 == b.1 && (a.0 == b.0 || a.0 == 0 || b.0 == 0)
}

/// Identity, size and modification time (seconds, nanoseconds) of `path`: what tells a file
/// changed or replaced.
pub fn stamp(path: &Path) -> io::Result<(u64, u64, u64, i64, i64)> {
    let m = std::fs::metadata(path)?;
    let (vol, index) = file_id(path)?;
    let t = m.modified()?.duration_since(UNIX_EPOCH).unwrap_or_default();
    Ok((
        vol,
        index,
        m.len(),
        t.as_secs() as i64,
        i64::from(t.subsec_nanos()),
    ))
}

/// Whether a process `pid` runs (one of another user that cannot be opened still counts).
pub fn process_alive(pid: u32) -> bool {
    const STILL_ACTIVE: u32 = 259;
    // SAFETY: OpenProcess takes integers; the handle it returns is closed below.
    let h = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if h.is_null() {
        // SAFETY: reads the calling thread's last error; no memory of ours.
        return unsafe { GetLastError() } == ERROR_ACCESS_DENIED;
    }
    let mut code = 0u32;
    // SAFETY: `h` is a live process handle and `code` a valid out-pointer.
    let ok = unsafe { GetExitCodeProcess(h, &mut code) };
    // SAFETY: `h` was opened above and is not used after.
    unsafe { CloseHandle(h) };
    ok != 0 && code == STILL_ACTIVE
}

/// This machine's name (`COMPUTERNAME`).
pub fn hostname() -> Option<String> {
    std::env::var("COMPUTERNAME").ok().filter(|s| !s.is_empty())
}

/// Windows has no signals to forward: a stop ends the child (`TerminateProcess`, exit code 1).
/// A child already gone is not an error.
pub fn forward(pid: u32, _stop: Stop) -> io::Result<()> {
    // SAFETY: OpenProcess takes integers; the handle it returns is closed below.
    let h = unsafe { OpenProcess(PROCESS_TERMINATE, 0, pid) };
    if h.is_null() {
        return Ok(());
    }
    // SAFETY: `h` is a live process handle opened with PROCESS_TERMINATE.
    let ok = unsafe { TerminateProcess(h, 1) };
    let err = io::Error::last_os_error();
    // SAFETY: `h` was opened above and is not used after.
    unsafe { CloseHandle(h) };
    if ok == 0 { Err(err) } else { Ok(()) }
}

/// The child's exit code (Windows has no signal deaths).
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    status.code().unwrap_or(1)
}

/// Not asked of Windows: the restore's size check is skipped there (the write still fails
/// cleanly on a full disk).
pub fn free_bytes(_file: &File) -> Option<u64> {
    None
}

/// True when another handle holds the byte at `offset` of `file` (shared or exclusive): the
/// byte is taken exclusively without waiting and, if that worked, given back at once.
pub fn range_locked(file: &File, offset: u64) -> bool {
    let h = file.as_raw_handle() as _;
    // SAFETY: a plain struct of integers and a union of them: all zeroes is a valid value.
    let mut ov: OVERLAPPED = unsafe { std::mem::zeroed() };
    ov.Anonymous.Anonymous.Offset = offset as u32;
    ov.Anonymous.Anonymous.OffsetHigh = (offset >> 32) as u32;
    // SAFETY: `h` is open for the call (`file` is borrowed) and `ov` is a valid OVERLAPPED
    // naming the range; the handle is synchronous, so the call completes before returning.
    let got = unsafe {
        LockFileEx(
            h,
            LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY,
            0,
            1,
            0,
            &mut ov,
        )
    };
    if got == 0 {
        return true;
    }
    // SAFETY: as above; releases exactly the byte just locked through the same handle.
    unsafe { UnlockFileEx(h, 0, 1, 0, &mut ov) };
    false
}

/// Not taken on Windows (see the Unix version): `Ok(true)`.
pub fn lock_byte_exclusive(_file: &File, _offset: u64) -> io::Result<bool> {
    Ok(true)
}

/// The child outlives a killed memsync on Windows (a job object would tie them; not done).
pub fn die_with_parent(_cmd: &mut std::process::Command) {}
