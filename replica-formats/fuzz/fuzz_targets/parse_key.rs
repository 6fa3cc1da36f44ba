//! Key parsing accepts only canonical paths.
#![no_main]

use libfuzzer_sys::fuzz_target;
use replica_formats::ObjectKey;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Some(k) = ObjectKey::parse(s)
    {
        assert_eq!(k.path(), s);
    }
});
