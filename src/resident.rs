//! Keeping the replicator's resident memory small while it runs next to the application.
//!
//! Why: about two thirds of a running replicator's resident set was code, its own and the C
//! library's: the kernel maps code in 64 KiB fault-around windows, so starting up (argument
//! parsing, config, opening the database, the first snapshot) or an occasional compaction leaves
//! most of the binary mapped although the steady loop needs a small part of it. Code and
//! read-only data pages are clean copies of their files: unmapping them with `MADV_DONTNEED`
//! costs a later minor fault, nothing more, and only the code actually running comes back.

/// Sets up the allocator for a long-running process: buffers of 128 KiB and more (segment runs,
/// spool writers) are mapped and unmapped on their own, instead of glibc's default of raising
/// that threshold after the first free and keeping every later buffer in the heap for good; and
/// one arena, not one per thread that ever allocated (memsync allocates little, and rarely).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before the worker threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Gives back what an occasional burst of work (startup, a compaction pass) left mapped: the
/// clean pages of read-only file mappings (executable, shared libraries), which come back from
/// the page cache on the next touch, and free heap memory. Best effort: does nothing where
/// unsupported.
pub fn shed() {
    #[cfg(target_os = "linux")]
    linux::drop_code_pages();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(target_os = "linux")]
mod linux {
    pub(super) fn drop_code_pages() {
        let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
            return;
        };
        let mut current: Option<(usize, usize)> = None;
        for line in smaps.lines() {
            let mut f = line.split_whitespace();
            let Some(first) = f.next() else {
                continue;
            };
            if let Some((a, b)) = first.split_once('-')
                && let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                // A mapping header: "start-end perms offset dev inode path".
                let perms = f.next().unwrap_or("");
                let file = f.nth(3).is_some_and(|p| p.starts_with('/'));
                current =
                    (file && perms.starts_with('r') && !perms.contains('w')).then_some((a, b));
            } else if first == "Anonymous:" {
                // Only mappings whose every page is still a clean copy of the file: the
                // relocated read-only data (RELRO) holds private copies and must stay.
                if let (Some((a, b)), Some("0")) = (current.take(), f.next()) {
                    // SAFETY: a read-only, file-backed mapping with no private page: dropping its
                    // pages only makes the next access fault them in again from the file.
                    unsafe {
                        libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_DONTNEED);
                    }
                }
            }
        }
    }
}
