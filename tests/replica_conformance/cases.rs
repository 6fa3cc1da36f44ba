//! The cases every backend passes. Each works under its own replica roots of the fixture.

use memsync::replica::{ReplicaClient, ReplicaError};
use replica_formats::testkit::{seg, snap};
use replica_formats::{LINEAGE_OBJECT, Level, ObjectKey};

use crate::fixture::Fixture;

/// `len` deterministic pseudo-random bytes (xorshift), different for each seed.
fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

async fn upload(f: &Fixture, c: &ReplicaClient, key: &ObjectKey, bytes: &[u8]) {
    let n = c
        .upload(key, &f.source(bytes))
        .await
        .unwrap_or_else(|e| panic!("{:?}: upload {}: {e}", f.backend, key.path()));
    assert_eq!(n, bytes.len() as u64, "upload returns the size");
}

async fn read_all(c: &ReplicaClient, key: &ObjectKey) -> Vec<u8> {
    let n = c.size(key).await.unwrap();
    c.get_range(key, 0, n).await.unwrap().to_vec()
}

fn assert_already_exists<T: std::fmt::Debug>(r: Result<T, ReplicaError>, what: &str) {
    match r {
        Err(ReplicaError::AlreadyExists { .. }) => {}
        other => panic!("{what}: expected AlreadyExists, got {other:?}"),
    }
}

fn assert_not_found<T: std::fmt::Debug>(r: Result<T, ReplicaError>, what: &str) {
    match r {
        Err(ReplicaError::NotFound { .. }) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

/// An upload never replaces an existing file: the second is refused, the first stays whole.
pub async fn put_if_absent(f: &Fixture) {
    let c = f.client("db");
    let k = seg(0, 1, 1);
    upload(f, &c, &k, b"first version").await;
    assert_already_exists(
        c.upload(&k, &f.source(b"second, longer version")).await,
        "second upload of one key",
    );
    assert_eq!(read_all(&c, &k).await, b"first version");
    assert_eq!(c.list().await.unwrap(), vec![k]);
}

/// Of several uploads of one key at once (two replicators racing), exactly one wins and the
/// file is the winner's, whole. WebDAV has no conditional write: the client checks, then puts,
/// so racing uploads may all "win"; there the file must still be one of them, whole.
pub async fn concurrent_creates(f: &Fixture) {
    let k = seg(0, 1, 1);
    let contents: Vec<Vec<u8>> = (0..6).map(|i| data(100 + i, 300_000)).collect();
    let uploads = contents.iter().map(|bytes| {
        let (c, src) = (f.client("db"), f.source(bytes));
        async move { c.upload(&k, &src).await }
    });
    let results = futures::future::join_all(uploads).await;
    let winners: Vec<usize> = (0..results.len()).filter(|&i| results[i].is_ok()).collect();
    if f.backend.atomic_create() {
        assert_eq!(winners.len(), 1, "winners of 6 racing creates: {results:?}");
    } else {
        assert!(!winners.is_empty(), "no upload won: {results:?}");
    }
    for r in results.into_iter().filter(|r| r.is_err()) {
        assert_already_exists(r, "a losing create");
    }
    let got = read_all(&f.client("db"), &k).await;
    assert!(
        winners.iter().any(|&w| got == contents[w]),
        "the file is not one winner's, whole"
    );
}

pub async fn get_whole(f: &Fixture) {
    let c = f.client("db");
    let (k, bytes) = (snap(7), data(1, 70_001));
    upload(f, &c, &k, &bytes).await;
    assert_eq!(c.get_range(&k, 0, bytes.len() as u64).await.unwrap(), bytes);
}

/// Ranges at the start, in the middle and at the very end, and a single byte.
pub async fn ranged_get(f: &Fixture) {
    let c = f.client("db");
    let (k, bytes) = (seg(0, 3, 9), data(2, 100_000));
    upload(f, &c, &k, &bytes).await;
    for (off, len) in [
        (0, 100),
        (50_000, 123),
        (99_923, 77),
        (99_999, 1),
        (4096, 4096),
    ] {
        let got = c.get_range(&k, off, len).await.unwrap();
        assert_eq!(
            got,
            &bytes[off as usize..(off + len) as usize],
            "range {off}+{len}"
        );
    }
}

pub async fn size(f: &Fixture) {
    let c = f.client("db");
    for (i, len) in [1usize, 4097, 65_536].into_iter().enumerate() {
        let k = seg(0, i as u64 + 1, i as u64 + 1);
        upload(f, &c, &k, &data(i as u64, len)).await;
        assert_eq!(c.size(&k).await.unwrap(), len as u64);
    }
}

/// A listing is every format key, sorted by position, and nothing else: temp files, other
/// tools' objects and the lineage record are not keys.
pub async fn list_sorted_format_keys_only(f: &Fixture) {
    let c = f.client("db");
    let mut keys = vec![
        seg(0, 5, 5),
        snap(4),
        seg(1, 1, 4),
        seg(0, 1, 1),
        seg(0, 2, 4),
        seg(2, 1, 4),
        snap(9),
        seg(0, 6, 9),
    ];
    for (i, k) in keys.iter().enumerate() {
        upload(f, &c, k, &data(i as u64, 100 + i)).await;
    }
    let stray_seg = seg(0, 10, 10).path();
    for rel in [
        "notes.txt".to_string(),
        "segments/0/junk.tmp".into(),
        format!("{stray_seg}.tmp"),
        stray_seg.to_uppercase(),
        "snapshots/README".into(),
        "segments/x/0000000000000001-0000000000000001-0000000000000001.seg".into(),
        "other/segments/0/0000000000000001-0000000000000001-0000000000000001.seg".into(),
    ] {
        f.plant("db", &rel, b"not a replica file").await;
    }
    c.put_raw(LINEAGE_OBJECT, b"lineage".to_vec(), true)
        .await
        .unwrap();
    keys.sort();
    assert_eq!(c.list().await.unwrap(), keys);
}

/// The keys of one level after a given key (the store's list offset), in order.
pub async fn list_after(f: &Fixture) {
    let c = f.client("db");
    let l0 = [seg(0, 1, 1), seg(0, 2, 5), seg(0, 6, 6), seg(0, 7, 20)];
    let l1 = [seg(1, 1, 5), seg(1, 6, 20)];
    for (i, k) in l0.iter().chain(&l1).chain(&[snap(5)]).enumerate() {
        upload(f, &c, k, &data(i as u64, 64)).await;
    }
    f.plant("db", "segments/0/zzz.tmp", b"foreign").await;
    let after = |level: u8, k: Option<ObjectKey>| {
        let c = c.clone();
        async move {
            c.list_after(Level::new(level).unwrap(), k.as_ref())
                .await
                .unwrap()
        }
    };
    assert_eq!(after(0, None).await, l0);
    assert_eq!(after(0, Some(l0[0])).await, l0[1..]);
    assert_eq!(after(0, Some(l0[2])).await, l0[3..]);
    assert_eq!(after(0, Some(l0[3])).await, []);
    assert_eq!(after(1, None).await, l1);
    assert_eq!(after(1, Some(l1[0])).await, l1[1..]);
    assert_eq!(after(2, None).await, []);
}

/// Deleting removes exactly the given keys; deleting a missing key is fine.
pub async fn delete(f: &Fixture) {
    let c = f.client("db");
    let keys = [seg(0, 1, 1), seg(0, 2, 2), snap(2)];
    for (i, k) in keys.iter().enumerate() {
        upload(f, &c, k, &data(i as u64, 1000)).await;
    }
    c.delete(&keys[..2]).await.unwrap();
    assert_eq!(c.list().await.unwrap(), vec![keys[2]]);
    assert_not_found(c.get_range(&keys[0], 0, 10).await, "get of a deleted key");
    c.delete(&keys[..2]).await.unwrap();
    c.delete(&[seg(3, 1, 100)]).await.unwrap();
    assert_eq!(read_all(&c, &keys[2]).await, data(2, 1000));
}

pub async fn not_found(f: &Fixture) {
    let c = f.client("db");
    let k = seg(0, 1, 1);
    assert_not_found(c.get_range(&k, 0, 1).await, "get of a missing key");
    assert_not_found(c.size(&k).await, "size of a missing key");
    assert_eq!(c.get_raw(LINEAGE_OBJECT).await.unwrap(), None);
    assert_eq!(c.list().await.unwrap(), []);
    assert_eq!(c.list_after(Level::ZERO, None).await.unwrap(), []);
}

/// Two replicas whose roots share a string prefix (`a/db1`, `a/db10`) never see each other.
pub async fn prefix_isolation(f: &Fixture) {
    let (one, ten) = (f.client("a/db1"), f.client("a/db10"));
    let shared = seg(0, 1, 1);
    upload(f, &one, &shared, b"db1's").await;
    upload(f, &ten, &shared, b"db10's").await;
    upload(f, &ten, &snap(1), b"db10's snapshot").await;
    one.put_raw(LINEAGE_OBJECT, b"lineage of db1".to_vec(), true)
        .await
        .unwrap();
    assert_eq!(one.list().await.unwrap(), vec![shared]);
    assert_eq!(ten.list().await.unwrap(), vec![shared, snap(1)]);
    assert_eq!(one.list_after(Level::ZERO, None).await.unwrap(), [shared]);
    assert_eq!(read_all(&one, &shared).await, b"db1's");
    assert_eq!(read_all(&ten, &shared).await, b"db10's");
    assert_eq!(ten.get_raw(LINEAGE_OBJECT).await.unwrap(), None);
    ten.delete(&[shared]).await.unwrap();
    assert_eq!(read_all(&one, &shared).await, b"db1's");
    assert_eq!(ten.list().await.unwrap(), vec![snap(1)]);
}

/// 12 MiB, more than one part (a multipart upload on S3): read back by ranges across the
/// boundaries of 5 MiB parts (S3's minimum) and of the client's parts; a second upload of the
/// key is refused as a small one is, and leaves the first whole.
pub async fn large_object(f: &Fixture) {
    const MIB: u64 = 1 << 20;
    let part = memsync::replica::PART_SIZE as u64;
    assert!(12 * MIB > part && 12 * MIB > memsync::replica::SINGLE_PUT_MAX);
    let c = f.client("db");
    let (k, bytes) = (snap(100), data(12, 12 * MIB as usize));
    upload(f, &c, &k, &bytes).await;
    assert_eq!(c.size(&k).await.unwrap(), 12 * MIB);
    for (off, len) in [
        (0, 65_536),
        (5 * MIB - 100, 200),
        (part - 1, 2),
        (part - 4096, 8192),
        (10 * MIB - 1, 2),
        (12 * MIB - 1000, 1000),
        (3 * MIB, 7 * MIB),
    ] {
        let got = c.get_range(&k, off, len).await.unwrap();
        assert!(
            got == bytes[off as usize..(off + len) as usize],
            "range {off}+{len} differs"
        );
    }
    assert!(read_all(&c, &k).await == bytes, "whole object differs");
    assert_already_exists(
        c.upload(&k, &f.source(&data(13, 12 * MIB as usize))).await,
        "second upload of a large key",
    );
    assert!(read_all(&c, &k).await == bytes, "first upload not intact");
    assert_eq!(c.list().await.unwrap(), vec![k]);
    assert_eq!(
        f.pending_uploads("db"),
        0,
        "the refused multipart upload was not aborted"
    );
}

/// The lineage record: absent, created once, refused the second time when create-only,
/// replaced when not.
pub async fn lineage_record(f: &Fixture) {
    let c = f.client("db");
    assert_eq!(c.get_raw(LINEAGE_OBJECT).await.unwrap(), None);
    c.put_raw(LINEAGE_OBJECT, b"one".to_vec(), true)
        .await
        .unwrap();
    assert_eq!(
        c.get_raw(LINEAGE_OBJECT).await.unwrap().unwrap(),
        &b"one"[..]
    );
    assert_already_exists(
        c.put_raw(LINEAGE_OBJECT, b"two".to_vec(), true).await,
        "create-only lineage over an existing one",
    );
    assert_eq!(
        c.get_raw(LINEAGE_OBJECT).await.unwrap().unwrap(),
        &b"one"[..]
    );
    c.put_raw(LINEAGE_OBJECT, b"three".to_vec(), false)
        .await
        .unwrap();
    assert_eq!(
        c.get_raw(LINEAGE_OBJECT).await.unwrap().unwrap(),
        &b"three"[..]
    );
    assert_eq!(c.list().await.unwrap(), []);
}
