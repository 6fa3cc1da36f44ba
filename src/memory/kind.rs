//! What a memory-sync failure means to the caller, whichever layer it came from: each layer's
//! error says its kind, and the command line picks the exit code from it. Depends on nothing.

/// What a failure means to the caller, whichever layer it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Settings, flags or input that cannot be used as given.
    Invalid,
    /// The server could not be reached, did not answer in time, or failed itself: worth
    /// another try later.
    Unreachable,
    /// The server refused the API key.
    Unauthorized,
    /// The server refused the request or answered something unreadable.
    Refused,
    /// A row, conflict, database or backup that is not there.
    NotFound,
    /// A row or conflict is not in the state the command needs.
    Conflict,
    /// A database or a written copy is damaged or does not read back.
    Corrupt,
    /// SQLite gave up waiting for another connection's lock.
    Busy,
    /// Another memsync holds the staging database.
    Locked,
    /// A file or the system failed.
    Io,
}
