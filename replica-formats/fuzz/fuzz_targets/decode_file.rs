//! Any input must decode to an error or to a file that satisfies the
//! format's invariants, without panicking or allocating without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::decode_file_input(data));
