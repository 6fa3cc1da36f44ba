//! Any input must decode to an error or to a file that satisfies the
//! format's invariants, without panicking or allocating without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use replica_formats::{FileDecoder, FileKind, decode_file};

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = decode_file(data) {
        let ps = f.header.page_size.as_usize();
        assert_eq!(f.data.len(), f.pgnos.len() * ps);
        assert!(f.pgnos.windows(2).all(|w| w[0] < w[1]));
        assert!(f.pgnos.iter().all(|p| p.get() <= f.header.commit));
        assert_eq!(f.trailer.total_pages as usize, f.pgnos.len());
        if f.header.kind == FileKind::Snapshot {
            assert_eq!(f.trailer.total_pages, f.header.snapshot_page_count());
        }
    }
    // The streaming path, without decompression, must not panic either.
    if let Ok(mut dec) = FileDecoder::new(data) {
        while let Ok(Some(_)) = dec.next_run() {}
        let _ = dec.finish();
    }
});
