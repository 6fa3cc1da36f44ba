//! Keeping the replicator's resident memory small while it runs next to the application: the
//! allocator is told to map big buffers on their own and to keep one arena, and after a burst of
//! work (startup, a compaction pass) free heap memory is given back and memsync's own code pages
//! the burst left mapped are unmapped.
//!
//! About two thirds of an idle replicator's resident set is code, mapped in 64 KiB fault-around
//! windows, most of which the steady loop never runs again. Only the executable's own read-only
//! mappings without private pages are dropped (`MADV_DONTNEED`): they are clean copies of the
//! file, stay in the page cache, and come back on the next touch with a minor fault. The
//! executable is mapped once at exec and never unmapped or mapped again, so what `/proc/self/smaps`
//! said about those ranges still holds when they are dropped. Shared libraries are left alone:
//! one can be unmapped and another mapped at the same place between the read and the call (a
//! `dlopen` on another thread), and dropping a relocated private page would lose its contents.
//! (`MADV_PAGEOUT`, which never discards contents, evicts the pages from the page cache too, so
//! every later touch is a disk read.)

/// Sets up the allocator for a long-running process: buffers of 128 KiB and more (segment runs,
/// spool writers) are mapped and unmapped on their own, instead of glibc's default of raising
/// that threshold after the first free and keeping every later buffer in the heap for good; and
/// one arena, not one per thread that ever allocated (memsync allocates little, and rarely).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes two integers and changes only glibc's allocator parameters, under
    // the allocator's own lock. glibc marks it MT-Unsafe only while malloc is first initialised
    // ("init"), which is long over here (the process has allocated), so the runtime's threads,
    // already running, may allocate meanwhile.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// [`shed_now`] at most once per 10 s, for work that recurs (a compaction pass of each of
/// hundreds of databases, the replicator's one-second loop): reading `/proc/self/smaps` and
/// trimming the heap walk every mapping and the heap, and doing it after each pass took a sixth
/// of memsync's CPU at 500 databases.
pub fn shed() {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST.load(Ordering::Relaxed);
    if now.saturating_sub(last) < 10
        || LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    shed_now();
}

/// Gives back what an occasional burst of work (startup, a compaction pass) left: free heap
/// memory, and the clean pages of the executable's read-only mappings, which come back from the
/// page cache on the next touch. Best effort: does nothing where unsupported.
pub fn shed_now() {
    #[cfg(target_os = "linux")]
    linux::page_out_code();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes an integer and only returns free memory of glibc's allocator to
    // the kernel, under the allocator's locks; glibc documents it as MT-Safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(target_os = "linux")]
mod linux {
    /// Drops the pages of the executable's read-only mappings that hold no private page.
    pub(super) fn page_out_code() {
        let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
            return;
        };
        let Some(exe) = exe.to_str() else {
            return;
        };
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
                let ours = f.nth(3) == Some(exe);
                current =
                    (ours && perms.starts_with('r') && !perms.contains('w')).then_some((a, b));
            } else if first == "Anonymous:" {
                // Relocated read-only data (RELRO) holds private pages: it must stay.
                if let (Some((a, b)), Some("0")) = (current.take(), f.next()) {
                    // SAFETY: [a, b) is a read-only mapping of the executable with no private
                    // page; the executable's mappings are made at exec and never replaced, and
                    // nothing writes to them, so every page in the range is a clean copy of the
                    // file: dropping it only makes the next access fault it in again from the
                    // page cache. No reference into the range is held across the call.
                    unsafe {
                        libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_DONTNEED);
                    }
                }
            }
        }
    }
}
