//! Golden files: a small replica (a snapshot and two segments) checked in under `tests/golden/`,
//! with what each decodes to listed as text beside it (`<file>.txt`: header fields, key, then
//! one `page <number> <page hash>` line per page). Decoding must keep giving exactly those
//! listings, and merging the two segments must give `merged-2-3.txt`, so a change to the format,
//! the decoder or the merge shows in review as a changed golden file, not only as code.
//!
//! `unindexed-*` are the same three files as written before files carried a run index (header
//! flag 1): readers must keep decoding them to the same listings.
//!
//! The three files form a chain: the snapshot at position 1 (4 pages), segment 2 growing the
//! database to 6 pages, segment 3 rewriting page 1 and 5 and truncating to 5 pages.
//!
//! To regenerate them after an intended format change (then review the diff of `tests/golden/`):
//!
//! ```text
//! REGENERATE_GOLDEN=1 cargo test -p replica-formats --test golden
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use replica_formats::{
    DbChecksum, DecodedFile, EncodeOptions, FileEncoder, FileKind, HEADER_LEN, Header, Level,
    PageNo, PageSize, Timestamp, TxId, WalPosition, decode_file, index_of, merge_segments,
    page_hash, read_run,
};

const PAGE_SIZE: u32 = 512;
/// The golden files' commit times: 2023-11-14T22:13:20Z plus one second per position.
const T0_MS: i64 = 1_700_000_000_000;

const SNAPSHOT: &str = "snapshot-1.snap";
const SEGMENT_2: &str = "segment-2.seg";
const SEGMENT_3: &str = "segment-3.seg";
const MERGED: &str = "merged-2-3.txt";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn regenerating() -> bool {
    std::env::var_os("REGENERATE_GOLDEN").is_some_and(|v| v == "1")
}

/// Page `p` as written at position `t`: text that names both, so a listing's hash changes with
/// either.
fn page(p: u32, t: u64) -> Vec<u8> {
    let unit = format!("position {t} page {p}|");
    unit.bytes().cycle().take(PAGE_SIZE as usize).collect()
}

/// A database as its pages (index 0 is page 1).
type Db = Vec<Vec<u8>>;

fn checksum(db: &Db) -> DbChecksum {
    let mut sum = DbChecksum::EMPTY;
    for (i, d) in db.iter().enumerate() {
        sum.toggle(page_hash(PageNo::new(i as u32 + 1).unwrap(), d));
    }
    sum
}

/// Applies a decoded file the way a restore does.
fn apply(db: &mut Db, f: &DecodedFile) {
    for (p, data) in f.pages() {
        let i = p.get() as usize - 1;
        if db.len() <= i {
            db.resize(i + 1, vec![0; PAGE_SIZE as usize]);
        }
        db[i] = data.to_vec();
    }
    db.resize(f.header.commit as usize, vec![0; PAGE_SIZE as usize]);
}

/// Encodes the file taking `db` to position `t` by writing `pages` and resizing to `commit`.
fn encode(kind: FileKind, db: &mut Db, t: u64, commit: u32, pages: &[u32]) -> Vec<u8> {
    let pre = match kind {
        FileKind::Snapshot => DbChecksum::EMPTY,
        _ => checksum(db),
    };
    let header = Header {
        kind,
        page_size: PageSize::new(PAGE_SIZE).unwrap(),
        commit,
        min_txid: TxId::new(t).unwrap(),
        max_txid: TxId::new(t).unwrap(),
        timestamp: Timestamp::from_millis(T0_MS + t as i64 * 1000),
        pre_checksum: pre,
        wal: WalPosition::default(),
    };
    let opts = EncodeOptions {
        pages_per_run: 2,
        ..Default::default()
    };
    let mut enc = FileEncoder::new(Vec::new(), &header, opts).unwrap();
    for &p in pages {
        let data = page(p, t);
        enc.write_page(PageNo::new(p).unwrap(), &data).unwrap();
        let i = p as usize - 1;
        if db.len() <= i {
            db.resize(i + 1, vec![0; PAGE_SIZE as usize]);
        }
        db[i] = data;
    }
    db.resize(commit as usize, vec![0; PAGE_SIZE as usize]);
    enc.finish(checksum(db)).unwrap().0
}

/// Writes the three replica files (only when regenerating).
fn generate() {
    let mut db = Db::new();
    let files = [
        (
            SNAPSHOT,
            encode(FileKind::Snapshot, &mut db, 1, 4, &[1, 2, 3, 4]),
        ),
        (
            SEGMENT_2,
            encode(FileKind::Segment, &mut db, 2, 6, &[2, 5, 6]),
        ),
        (SEGMENT_3, encode(FileKind::Segment, &mut db, 3, 5, &[1, 5])),
    ];
    std::fs::create_dir_all(dir()).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir().join(name), bytes).unwrap();
    }
}

fn read(name: &str) -> Vec<u8> {
    if regenerating() && !name.ends_with(".txt") {
        static GENERATED: std::sync::Once = std::sync::Once::new();
        GENERATED.call_once(generate);
    }
    let path = dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What a decoded file holds, one fact a line; `level` names a segment's key (the header has
/// no level).
fn listing(f: &DecodedFile, level: u8) -> String {
    let h = &f.header;
    let mut s = String::new();
    let kind = match h.kind {
        FileKind::Snapshot => "snapshot",
        _ => "segment",
    };
    writeln!(s, "kind {kind}").unwrap();
    writeln!(s, "key {}", h.object_key(Level::new(level).unwrap()).path()).unwrap();
    writeln!(s, "page_size {}", h.page_size).unwrap();
    writeln!(s, "commit {}", h.commit).unwrap();
    writeln!(s, "txids {}..={}", h.min_txid.get(), h.max_txid.get()).unwrap();
    writeln!(s, "timestamp_ms {}", h.timestamp.get()).unwrap();
    writeln!(s, "pre_checksum {:016x}", h.pre_checksum.get()).unwrap();
    writeln!(s, "post_checksum {:016x}", f.trailer.post_checksum.get()).unwrap();
    for (p, data) in f.pages() {
        writeln!(s, "page {} {:016x}", p.get(), page_hash(p, data)).unwrap();
    }
    s
}

/// Compares `actual` with the checked-in listing `name` (or writes it when regenerating).
fn check_listing(name: &str, actual: &str) {
    let path = dir().join(name);
    if regenerating() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        actual, expected,
        "{name} changed: if the format change is intended, regenerate (see the top of \
         replica-formats/tests/golden.rs) and review the diff"
    );
}

fn txt(file: &str) -> String {
    format!("{}.txt", file.rsplit_once('.').unwrap().0)
}

#[test]
fn golden_files_decode_to_their_listed_pages() {
    for name in [SNAPSHOT, SEGMENT_2, SEGMENT_3] {
        let f = decode_file(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_listing(&txt(name), &listing(&f, 0));
    }
}

/// Files written before the run index existed decode exactly as they did.
#[test]
fn unindexed_golden_files_still_decode_to_their_listed_pages() {
    for name in [SNAPSHOT, SEGMENT_2, SEGMENT_3] {
        let old = format!("unindexed-{name}");
        let f = decode_file(&read(&old)).unwrap_or_else(|e| panic!("{old}: {e}"));
        check_listing(&txt(name), &listing(&f, 0));
        assert!(
            Header::parse(&read(&old)[..HEADER_LEN].try_into().unwrap()).is_ok_and(|(_, i)| !i)
        );
    }
}

/// Reading through the run index (header, tail, index, then each run on its own) gives the same
/// listing as decoding the whole file.
#[test]
fn golden_files_read_through_their_run_index_give_the_listed_pages() {
    for name in [SNAPSHOT, SEGMENT_2, SEGMENT_3] {
        let b = read(name);
        let idx = index_of(&b).unwrap();
        let mut pgnos = Vec::new();
        let mut data = Vec::new();
        for e in &idx.runs {
            let at = e.offset as usize;
            let run = read_run(e, &b[at..at + e.len() as usize])
                .unwrap()
                .decode(idx.header.page_size)
                .unwrap();
            pgnos.extend_from_slice(&run.pgnos);
            data.extend_from_slice(&run.data);
        }
        let f = DecodedFile {
            header: idx.header,
            pgnos,
            data,
            trailer: idx.trailer,
        };
        check_listing(&txt(name), &listing(&f, 0));
    }
}

/// The chain is consistent: each segment applies to the state before it (its pre checksum),
/// and each file's post checksum is the state after it.
#[test]
fn golden_chain_restores_with_matching_checksums() {
    let mut db = Db::new();
    for name in [SNAPSHOT, SEGMENT_2, SEGMENT_3] {
        let f = decode_file(&read(name)).unwrap();
        assert_eq!(f.header.pre_checksum, checksum(&db), "{name} pre_checksum");
        apply(&mut db, &f);
        assert_eq!(
            f.trailer.post_checksum,
            checksum(&db),
            "{name} post_checksum"
        );
    }
    assert_eq!(db.len(), 5);
    assert_eq!(db[0], page(1, 3));
    assert_eq!(db[4], page(5, 3));
}

/// Merging the two segments gives the listed pages (newest image wins, page 6 truncated away),
/// and the merged file takes the snapshot's state to the same database as the two in turn.
#[test]
fn merging_the_golden_segments_gives_the_listed_pages() {
    let (s2, s3) = (read(SEGMENT_2), read(SEGMENT_3));
    let mut out = Vec::new();
    let key = merge_segments(
        [&s2[..], &s3[..]],
        Level::new(1).unwrap(),
        &mut out,
        EncodeOptions::default(),
    )
    .unwrap();
    assert_eq!(
        key.path(),
        "segments/1/0000000000000002-0000000000000003-0000018bcfe573b8.seg"
    );
    let merged = decode_file(&out).unwrap();
    merged.header.check_key(&key).unwrap();
    check_listing(MERGED, &listing(&merged, 1));

    let snapshot = decode_file(&read(SNAPSHOT)).unwrap();
    let mut in_turn = Db::new();
    apply(&mut in_turn, &snapshot);
    let mut at_once = in_turn.clone();
    apply(&mut in_turn, &decode_file(&s2).unwrap());
    apply(&mut in_turn, &decode_file(&s3).unwrap());
    apply(&mut at_once, &merged);
    assert_eq!(at_once, in_turn);
    assert_eq!(merged.trailer.post_checksum, checksum(&at_once));
}
