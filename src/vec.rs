//! sqlite-vec, statically linked into the bundled SQLite: registered once per process so every
//! connection opened afterwards knows `vec0` tables (the memory service's embeddings). Memory
//! sync reads and writes such databases; the demo and the benchmark build them.

use std::sync::Once;

/// Registers sqlite-vec in every connection opened afterwards.
pub fn register_vec() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        type Init = unsafe extern "C" fn(
            *mut rusqlite::ffi::sqlite3,
            *mut *mut std::os::raw::c_char,
            *const rusqlite::ffi::sqlite3_api_routines,
        ) -> std::os::raw::c_int;
        // SAFETY: sqlite3_vec_init is defined in C with exactly the extension entry-point
        // signature `Init`; the crate declares it without arguments only to avoid depending on
        // SQLite's headers, so the transmuted pointer is called as what it is.
        // sqlite3_auto_extension is thread-safe and keeps only the function pointer, which is
        // valid for the whole process (statically linked).
        unsafe {
            let init: Init = std::mem::transmute(sqlite_vec::sqlite3_vec_init as *const ());
            rusqlite::ffi::sqlite3_auto_extension(Some(init));
        }
    });
}
