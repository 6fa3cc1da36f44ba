//! Whole-format tests: round trips, decoder rules, and corruption.

use std::collections::BTreeSet;

use proptest::prelude::*;

use crate::*;

fn tx(v: u64) -> TxId {
    TxId::new(v).unwrap()
}
fn pg(v: u32) -> PageNo {
    PageNo::new(v).unwrap()
}

fn header(kind: FileKind, page_size: u32, commit: u32, min: u64, max: u64) -> Header {
    Header {
        kind,
        page_size: PageSize::new(page_size).unwrap(),
        commit,
        min_txid: tx(min),
        max_txid: tx(max),
        timestamp: Timestamp::from_millis(1_700_000_000_000),
        pre_checksum: if kind == FileKind::Snapshot {
            DbChecksum::EMPTY
        } else {
            DbChecksum::from_raw(0x1234_5678_9abc_def0)
        },
        wal: WalPosition {
            salt1: 1,
            salt2: 2,
            offset: 4096 + 24,
            cksum1: 3,
            cksum2: 4,
            ckpt_seq: 5,
        },
    }
}

/// Semi-compressible page content, different for every (pgno, seed).
fn page(pgno: u32, size: u32, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| {
            if i % 7 == 0 {
                (i as u8) ^ seed ^ pgno as u8
            } else {
                seed
            }
        })
        .collect()
}

fn encode(h: &Header, pages: &[(u32, Vec<u8>)], per_run: usize, post: DbChecksum) -> Vec<u8> {
    let opts = EncodeOptions {
        zstd_level: 1,
        pages_per_run: per_run,
    };
    let mut enc = FileEncoder::new(Vec::new(), h, opts).unwrap();
    for (p, d) in pages {
        enc.write_page(pg(*p), d).unwrap();
    }
    enc.finish(post).unwrap().0
}

fn snapshot_bytes(commit: u32) -> (Vec<u8>, Vec<(u32, Vec<u8>)>) {
    let h = header(FileKind::Snapshot, 512, commit, 7, 7);
    let pages: Vec<_> = (1..=commit).map(|p| (p, page(p, 512, 9))).collect();
    let post = db_checksum(pages.iter().map(|(p, d)| (pg(*p), d.as_slice())));
    (encode(&h, &pages, 3, post), pages)
}

fn segment_bytes() -> Vec<u8> {
    let h = header(FileKind::Segment, 512, 40, 3, 5);
    let pages: Vec<_> = [1, 2, 9, 10, 11, 30, 40]
        .iter()
        .map(|&p| (p, page(p, 512, 1)))
        .collect();
    encode(&h, &pages, 3, DbChecksum::from_raw(42))
}

/// Recomputes the header CRC after a test edits header bytes.
fn fix_header(mut b: [u8; HEADER_LEN]) -> [u8; HEADER_LEN] {
    let crc = crc32fast::hash(&b[..92]);
    b[92..].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Builds a file byte by byte with valid CRCs, bypassing the encoder's checks.
fn raw_file(h: [u8; HEADER_LEN], runs: &[(Vec<u32>, Vec<u8>)], total: u32, post: u64) -> Vec<u8> {
    let mut out = h.to_vec();
    for (pgnos, data) in runs {
        out.extend_from_slice(&(pgnos.len() as u32).to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        for p in pgnos {
            out.extend_from_slice(&p.to_le_bytes());
            crc.update(&p.to_le_bytes());
        }
        crc.update(data);
        let comp = zstd::bulk::compress(data, 1).unwrap();
        out.extend_from_slice(&(comp.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc.finalize().to_le_bytes());
        out.extend_from_slice(&comp);
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(&post.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(b"MEND");
    out
}

fn seg_header_bytes() -> [u8; HEADER_LEN] {
    header(FileKind::Segment, 512, 20, 2, 3).to_bytes()
}

fn data(pgnos: &[u32]) -> Vec<u8> {
    pgnos.iter().flat_map(|&p| page(p, 512, 3)).collect()
}

fn expect_corrupt(bytes: &[u8], needle: &str) {
    match decode_file(bytes) {
        Err(e) => assert!(
            e.to_string().contains(needle),
            "error {e:?} lacks {needle:?}"
        ),
        Ok(f) => panic!("decoded corrupt file: {:?}", f.header),
    }
}

#[test]
fn snapshot_round_trip() {
    let (bytes, pages) = snapshot_bytes(10);
    let f = decode_file(&bytes).unwrap();
    assert_eq!(f.header, header(FileKind::Snapshot, 512, 10, 7, 7));
    assert_eq!(f.trailer.total_pages, 10);
    let got: Vec<_> = f.pages().map(|(p, d)| (p.get(), d.to_vec())).collect();
    assert_eq!(got, pages);
    assert_eq!(f.page(pg(4)), Some(&pages[3].1[..]));
    assert_eq!(f.page(pg(11)), None);
}

#[test]
fn push_run_mixes_with_write_page() {
    let h = header(FileKind::Snapshot, 1024, 6, 1, 1);
    let pages: Vec<_> = (1..=6).map(|p| page(p, 1024, 2)).collect();
    let mut enc = FileEncoder::new(Vec::new(), &h, EncodeOptions::default()).unwrap();
    enc.write_page(pg(1), &pages[0]).unwrap();
    let run = encode_run(
        &[
            (pg(2), &pages[1][..]),
            (pg(3), &pages[2][..]),
            (pg(4), &pages[3][..]),
        ],
        h.page_size,
        3,
    )
    .unwrap();
    assert_eq!(run.pgnos(), &[pg(2), pg(3), pg(4)]);
    // Out of order with what is already written.
    let early = encode_run(&[(pg(1), &pages[0][..])], h.page_size, 1).unwrap();
    assert!(enc.push_run(early).is_err());
    let mut enc = FileEncoder::new(Vec::new(), &h, EncodeOptions::default()).unwrap();
    enc.write_page(pg(1), &pages[0]).unwrap();
    enc.push_run(run).unwrap();
    enc.write_page(pg(5), &pages[4]).unwrap();
    enc.write_page(pg(6), &pages[5]).unwrap();
    let post = enc.pages_checksum();
    let (bytes, trailer) = enc.finish(post).unwrap();
    let f = decode_file(&bytes).unwrap();
    assert_eq!(f.trailer, trailer);
    assert_eq!(f.data, pages.concat());
}

#[test]
fn streaming_decoder_matches_decode_file() {
    let bytes = segment_bytes();
    let mut dec = FileDecoder::new(&bytes[..]).unwrap();
    let ps = dec.header().page_size;
    let mut runs = Vec::new();
    while let Some(raw) = dec.next_run().unwrap() {
        assert!(raw.compressed_len() > 0);
        runs.push(std::thread::spawn(move || raw.decode(ps)));
    }
    assert_eq!(runs.len(), 3);
    let trailer = dec.finish().unwrap();
    let mut pgnos = Vec::new();
    for r in runs {
        pgnos.extend(r.join().unwrap().unwrap().pgnos);
    }
    let f = decode_file(&bytes).unwrap();
    assert_eq!(f.pgnos, pgnos);
    assert_eq!(f.trailer, trailer);
    assert_eq!(trailer.post_checksum, DbChecksum::from_raw(42));
    // finish() without reading runs drains them.
    assert_eq!(
        FileDecoder::new(&bytes[..]).unwrap().finish().unwrap(),
        trailer
    );
}

#[test]
fn empty_segment_round_trips() {
    let h = header(FileKind::Segment, 4096, 3, 9, 9);
    let bytes = encode(&h, &[], 64, DbChecksum::from_raw(1));
    // Header, terminator, the run index (only its CRC) and the trailer.
    assert_eq!(bytes.len(), HEADER_LEN + 4 + 4 + TRAILER_LEN);
    assert!(decode_file(&bytes).unwrap().pgnos.is_empty());
}

#[test]
fn encoder_rejects_misuse() {
    let h = header(FileKind::Segment, 512, 10, 1, 2);
    let opts = EncodeOptions::default();
    let mut enc = FileEncoder::new(Vec::new(), &h, opts).unwrap();
    assert!(enc.write_page(pg(2), &[0; 511]).is_err());
    enc.write_page(pg(2), &[0; 512]).unwrap();
    assert!(enc.write_page(pg(2), &[0; 512]).is_err());
    assert!(enc.write_page(pg(1), &[0; 512]).is_err());
    assert!(enc.write_page(pg(11), &[0; 512]).is_err());
    let wrong_size =
        encode_run(&[(pg(3), &[0; 1024][..])], PageSize::new(1024).unwrap(), 1).unwrap();
    assert!(enc.push_run(wrong_size).is_err());

    let big = header(FileKind::Segment, 65536, 20_000, 1, 1);
    let mut enc = FileEncoder::new(Vec::new(), &big, opts).unwrap();
    assert!(
        enc.write_page(PageNo::lock_page(big.page_size), &vec![0; 65536])
            .is_err()
    );
    assert!(encode_run(&[(pg(16385), &vec![0; 65536][..])], big.page_size, 1).is_err());
    assert!(encode_run(&[], big.page_size, 1).is_err());
    let bad_opts = |n| EncodeOptions {
        zstd_level: 1,
        pages_per_run: n,
    };
    assert!(FileEncoder::new(Vec::new(), &big, bad_opts(0)).is_err());
    assert!(FileEncoder::new(Vec::new(), &big, bad_opts(4096)).is_err());
    assert!(FileEncoder::new(Vec::new(), &big, bad_opts(512)).is_ok());

    let mut bad_header = h;
    bad_header.min_txid = tx(3);
    assert!(FileEncoder::new(Vec::new(), &bad_header, opts).is_err());

    let snap = header(FileKind::Snapshot, 512, 2, 4, 4);
    let mut enc = FileEncoder::new(Vec::new(), &snap, opts).unwrap();
    enc.write_page(pg(1), &[1; 512]).unwrap();
    assert!(
        enc.finish(DbChecksum::EMPTY).is_err(),
        "incomplete snapshot"
    );
    let mut enc = FileEncoder::new(Vec::new(), &snap, opts).unwrap();
    enc.write_page(pg(1), &[1; 512]).unwrap();
    enc.write_page(pg(2), &[1; 512]).unwrap();
    assert!(
        enc.finish(DbChecksum::from_raw(5)).is_err(),
        "wrong post checksum"
    );
}

#[test]
fn snapshot_page_count_skips_lock_page() {
    let mut h = header(FileKind::Snapshot, 65536, 16_384, 1, 1);
    assert_eq!(h.snapshot_page_count(), 16_384);
    h.commit = 16_385;
    assert_eq!(h.snapshot_page_count(), 16_384);
    h.commit = 16_386;
    assert_eq!(h.snapshot_page_count(), 16_385);
}

#[test]
fn raw_builder_baseline_decodes() {
    let bytes = raw_file(
        seg_header_bytes(),
        &[(vec![1, 2], data(&[1, 2])), (vec![5], data(&[5]))],
        3,
        0,
    );
    assert_eq!(
        decode_file(&bytes).unwrap().pgnos,
        vec![pg(1), pg(2), pg(5)]
    );
}

#[test]
fn decoder_rules() {
    let ok_runs = [(vec![1, 2], data(&[1, 2]))];
    let with = |f: &dyn Fn(&mut [u8; HEADER_LEN])| {
        let mut h = seg_header_bytes();
        f(&mut h);
        raw_file(fix_header(h), &ok_runs, 2, 0)
    };
    expect_corrupt(&with(&|h| h[4] = 2), "version 2");
    expect_corrupt(&with(&|h| h[5] = 3), "file kind 3");
    expect_corrupt(&with(&|h| h[6] = 2), "flags");
    expect_corrupt(&with(&|h| h[0] = b'X'), "bad magic");
    expect_corrupt(&with(&|h| h[8] = 1), "page size");
    expect_corrupt(&with(&|h| h[16] = 9), "min_txid");
    expect_corrupt(&with(&|h| h[16..24].fill(0)), "min_txid is 0");
    expect_corrupt(&with(&|h| h[12..16].fill(0)), "commit");
    expect_corrupt(&with(&|h| h[80] = 1), "reserved");
    expect_corrupt(&with(&|h| h[5] = 1), "snapshot covers a range");
    expect_corrupt(
        &with(&|h| {
            h[5] = 1;
            h[16] = 3;
        }),
        "pre_checksum",
    );
    let h = seg_header_bytes();
    let bad_hdr_crc = {
        let mut b = raw_file(h, &ok_runs, 2, 0);
        b[92] ^= 1;
        b
    };
    expect_corrupt(&bad_hdr_crc, "header crc32");
    expect_corrupt(
        &raw_file(h, &[(vec![2, 1], data(&[2, 1]))], 2, 0),
        "ascending",
    );
    expect_corrupt(
        &raw_file(h, &[(vec![2], data(&[2])), (vec![2], data(&[2]))], 2, 0),
        "ascending",
    );
    expect_corrupt(
        &raw_file(h, &[(vec![0], data(&[0]))], 1, 0),
        "page number 0",
    );
    expect_corrupt(
        &raw_file(h, &[(vec![21], data(&[21]))], 1, 0),
        "beyond database size",
    );
    expect_corrupt(
        &raw_file(h, &[(vec![1], data(&[1, 2]))], 1, 0),
        "zstd frame declares",
    );
    expect_corrupt(&raw_file(h, &ok_runs, 3, 0), "trailer says 3 pages");
    let mut trailing = raw_file(h, &ok_runs, 2, 0);
    trailing.push(0);
    expect_corrupt(&trailing, "trailing bytes");

    let lock = header(FileKind::Segment, 65536, 20_000, 1, 1).to_bytes();
    let lock_data = vec![0u8; 65536];
    expect_corrupt(
        &raw_file(lock, &[(vec![16385], lock_data)], 1, 0),
        "lock page",
    );

    // Huge counts and lengths are refused before allocating.
    let mut big_count = h.to_vec();
    big_count.extend_from_slice(&4097u32.to_le_bytes());
    expect_corrupt(&big_count, "exceeds the limit");
    let mut big_len = h.to_vec();
    big_len.extend_from_slice(&1u32.to_le_bytes());
    big_len.extend_from_slice(&1u32.to_le_bytes());
    big_len.extend_from_slice(&(MAX_COMPRESSED_LEN + 1).to_le_bytes());
    expect_corrupt(&big_len, "exceeds the limit");
    let mut short = big_len.clone();
    short.truncate(HEADER_LEN + 8);
    short.extend_from_slice(&MAX_COMPRESSED_LEN.to_le_bytes());
    short.extend_from_slice(&[0; 4]);
    expect_corrupt(&short, "truncated while reading run data");

    // Snapshot completeness and post checksum.
    let snap = fix_header({
        let mut b = header(FileKind::Snapshot, 512, 3, 4, 4).to_bytes();
        b[40..48].fill(0);
        b
    });
    let pages = [1, 2, 3];
    let sum = db_checksum(
        pages
            .iter()
            .zip(data(&pages).chunks(512))
            .map(|(&p, d)| (pg(p), d)),
    );
    assert!(
        decode_file(&raw_file(
            snap,
            &[(pages.to_vec(), data(&pages))],
            3,
            sum.get()
        ))
        .is_ok()
    );
    expect_corrupt(
        &raw_file(snap, &[(vec![1, 3], data(&[1, 3]))], 2, sum.get()),
        "snapshot holds 2 pages",
    );
    expect_corrupt(
        &raw_file(snap, &[(pages.to_vec(), data(&pages))], 3, sum.get() ^ 1),
        "post_checksum",
    );
}

/// Every strict prefix and every single-byte corruption of `bytes` must fail.
fn assert_fragile(bytes: &[u8]) {
    decode_file(bytes).unwrap();
    for len in 0..bytes.len() {
        assert!(
            decode_file(&bytes[..len]).is_err(),
            "truncated to {len} decoded"
        );
    }
    for i in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.to_vec();
            b[i] ^= mask;
            assert!(decode_file(&b).is_err(), "byte {i} ^ {mask:#x} decoded");
        }
    }
}

#[test]
fn every_truncation_and_flip_fails_segment() {
    assert_fragile(&segment_bytes());
}

#[test]
fn every_truncation_and_flip_fails_snapshot() {
    assert_fragile(&snapshot_bytes(8).0);
}

fn arb_pages() -> impl Strategy<Value = (u32, Vec<(u32, Vec<u8>)>, usize)> {
    (prop::sample::select(vec![512u32, 1024, 4096]), 1usize..=9).prop_flat_map(|(ps, per_run)| {
        (
            Just(ps),
            prop::collection::btree_set(1u32..=300, 0..40),
            any::<u8>(),
            any::<bool>(),
            Just(per_run),
        )
            .prop_map(
                |(ps, set, seed, random, per_run): (u32, BTreeSet<u32>, u8, bool, usize)| {
                    let pages = set
                        .into_iter()
                        .map(|p| {
                            let d = if random {
                                // Incompressible: xorshift noise.
                                let mut x = u64::from(p).wrapping_mul(0x9e37_79b9_7f4a_7c15)
                                    | 1
                                    | (u64::from(seed) << 32);
                                (0..ps)
                                    .map(|_| {
                                        x ^= x << 13;
                                        x ^= x >> 7;
                                        x ^= x << 17;
                                        x as u8
                                    })
                                    .collect()
                            } else {
                                page(p, ps, seed)
                            };
                            (p, d)
                        })
                        .collect();
                    (ps, pages, per_run)
                },
            )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn segment_round_trip((ps, pages, per_run) in arb_pages()) {
        let h = header(FileKind::Segment, ps, 300, 10, 20);
        let bytes = encode(&h, &pages, per_run, DbChecksum::from_raw(7));
        let f = decode_file(&bytes).unwrap();
        prop_assert_eq!(f.header, h);
        prop_assert_eq!(f.trailer.total_pages as usize, pages.len());
        let got: Vec<_> = f.pages().map(|(p, d)| (p.get(), d.to_vec())).collect();
        prop_assert_eq!(got, pages);
    }

    #[test]
    fn garbage_is_rejected(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        prop_assert!(decode_file(&bytes).is_err());
    }

    #[test]
    fn garbage_after_valid_header_is_rejected(tail in prop::collection::vec(any::<u8>(), 0..2048)) {
        let mut bytes = seg_header_bytes().to_vec();
        bytes.extend_from_slice(&tail);
        prop_assert!(decode_file(&bytes).is_err());
    }

    #[test]
    fn random_splices_are_rejected(cut in 0usize..1000, junk in prop::collection::vec(any::<u8>(), 1..64)) {
        let bytes = segment_bytes();
        let at = cut % bytes.len();
        let mut b = bytes[..at].to_vec();
        b.extend_from_slice(&junk);
        b.extend_from_slice(&bytes[at..]);
        prop_assert!(decode_file(&b).is_err());
    }
}
