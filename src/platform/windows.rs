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
    BY_HANDLE_FILE_INFORMATION, GetFileInformationByHandle,
};
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
