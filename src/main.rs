//! The `memsync` command: parses arguments and reports errors as one line.

fn main() {
    // memsync runs next to the user's application: one malloc arena keeps the few threads'
    // short-lived buffers from each pinning their own arena's pages.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes two integers and only tunes glibc's allocator; this is the first
    // line of main, before the process starts any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    let code = memsync::cli::main(std::env::args_os().collect());
    std::process::exit(code);
}
