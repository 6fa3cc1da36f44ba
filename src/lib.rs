//! memsync: continuous SQLite replication (Litestream-compatible configuration) and, later,
//! mcp-memory-service memory sync. The binary is a thin layer over this library.

pub mod cli;
pub mod config;
pub mod fsutil;
pub mod log;
pub mod replica;
pub mod replicate;
pub mod restore;
pub mod sqlite;
pub mod stats;

pub use replica_formats as formats;
