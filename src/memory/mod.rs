//! Memory sync with an mcp-memory-service server, git-like: `store` (remote first, staged when
//! the server is away), `pull` (server → local database), `push` (staging → server), `sync`
//! (stage → pull → apply → push), with content-hash dedup and explicit conflict policies.
//! Nothing a user stores is dropped: a row leaves staging only when the server confirmed it, and
//! a conflict's losing side is kept in the conflict record.

pub(crate) mod cli;
pub mod client;
mod clock;
pub(crate) mod commands;
pub(crate) mod conflict;
mod ctx;
mod error;
pub mod hash;
pub mod host;
mod kind;
pub(crate) mod localdb;
pub(crate) mod lock;
pub(crate) mod maintenance;
pub(crate) mod outcome;
pub(crate) mod progress;
pub(crate) mod pull;
pub(crate) mod push;
pub(crate) mod queue;
mod readonly;
mod record;
pub(crate) mod rounds;
pub(crate) mod runner;
pub(crate) mod settings;
pub(crate) mod settle;
pub(crate) mod staging;
pub(crate) mod status;
mod store;
mod swaplock;
pub(crate) mod synclog;

pub use error::MemoryError;
pub use kind::ErrorKind;
