//! Keeping the replicator's resident memory small while it runs next to the application: the
//! allocator is told to map big buffers on their own and to keep one arena, and free heap memory
//! is given back after a burst of work.
//!
//! Code pages are left alone. Dropping the clean pages of the executable and shared libraries
//! with `madvise(MADV_DONTNEED)` after startup saved a few MB (README, "Small footprint"), but it
//! walks the read-only file mappings listed in `/proc/self/smaps` and discards pages of mappings
//! it read a moment earlier: a library mapped again in between (a `dlopen`, which name
//! resolution can do on another thread) would lose its relocated pages; and every code page
//! dropped is read from the file again, so a library replaced in place by a package update
//! turns into a SIGBUS sooner rather than perhaps never.

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

/// Gives back the heap memory an occasional burst of work (startup, a compaction pass) freed.
/// Best effort: does nothing where unsupported.
pub fn shed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes an integer and only returns free memory of glibc's allocator to
    // the kernel, under the allocator's locks; glibc documents it as MT-Safe.
    unsafe {
        libc::malloc_trim(0);
    }
}
