//! memsync: continuous SQLite replication (Litestream-compatible configuration) and, later,
//! mcp-memory-service memory sync. The binary is a thin layer over this library.

#[cfg(unix)]
pub mod bench;
/// The benchmark measures processes through Unix interfaces (`/proc`, signals, process
/// groups); on Windows only its workload is built, for `memsync demo`.
#[cfg(not(unix))]
pub mod bench {
    #[path = "workload.rs"]
    pub mod workload;
}
pub mod cli;
pub mod config;
mod demo;
mod errtext;
mod exec;
mod fault;
mod fsutil;
mod jobs;
mod log;
pub mod memory;
mod metrics;
mod platform;
pub mod replica;
mod replicate;
mod resident;
pub mod restore;
mod serve;
mod service;
mod signals;
pub mod sqlite;
mod stats;
mod stdout;
mod supervise;
mod timearg;
pub mod vec;
mod xmltext;

pub use replica_formats as formats;

/// The async runtime memsync uses for replica I/O: one worker thread (replication is I/O-bound
/// and runs next to the user's application) and a small blocking pool for local file I/O.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(4)
        .thread_name("memsync-io")
        .enable_all()
        .build()
}
