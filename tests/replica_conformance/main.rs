//! The replica-client conformance suite: every backend (in-memory, local directory, SeaweedFS
//! S3, nginx WebDAV) passes the same cases, through the same `ReplicaClient` the replicator
//! uses (S3 and WebDAV clients built from replica URLs, as a config would). The servers are
//! real processes on 127.0.0.1, one of each per test binary; each test works under its own
//! prefix. `servers.rs` first checks the servers behave as the cases assume.

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod cases;
mod fixture;
mod servers;

/// One `#[test]` per case for a backend, in a module named after the backend.
macro_rules! backend_tests {
    ($module:ident, $backend:expr) => {
        mod $module {
            backend_tests!(@cases $backend;
                put_if_absent,
                concurrent_creates,
                get_whole,
                ranged_get,
                size,
                list_sorted_format_keys_only,
                list_after,
                delete,
                not_found,
                prefix_isolation,
                large_object,
                lineage_record,
            );
        }
    };
    (@cases $backend:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let f = crate::fixture::Fixture::new($backend, stringify!($case));
                crate::fixture::runtime().block_on(crate::cases::$case(&f));
            }
        )*
    };
}

backend_tests!(memory, crate::fixture::Backend::Memory);
backend_tests!(file, crate::fixture::Backend::File);
backend_tests!(s3, crate::fixture::Backend::S3);
backend_tests!(webdav, crate::fixture::Backend::WebDav);
backend_tests!(serve, crate::fixture::Backend::Serve);
