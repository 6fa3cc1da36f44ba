//! What each fuzz target asserts about one input, shared by the cargo-fuzz targets and by
//! `tests/fuzz_corpus.rs`, which replays the checked-in corpus (and bounded mutations of it) as
//! an ordinary test on stable Rust.

use replica_formats::{FileDecoder, FileKind, ObjectKey, decode_file};

/// Any input must decode to an error or to a file that satisfies the format's invariants,
/// without panicking or allocating without bound.
pub fn decode_file_input(data: &[u8]) {
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
}

/// Key parsing accepts only canonical paths.
pub fn parse_key_input(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data)
        && let Some(k) = ObjectKey::parse(s)
    {
        assert_eq!(k.path(), s);
    }
}
