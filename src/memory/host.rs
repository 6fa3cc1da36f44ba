//! The machine's name, which memories carry as their source and the server sees in a header.

/// The machine's name, as `hostname` prints it.
pub fn hostname() -> String {
    if let Some(s) = crate::platform::hostname() {
        return s;
    }
    std::env::var("HOSTNAME").unwrap_or_else(|_| "unknown".into())
}
