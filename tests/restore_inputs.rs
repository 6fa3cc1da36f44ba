//! Restore and listing inputs as people write them: a plain path to a replica directory with no
//! config, timestamps with offsets, a time without a zone refused unless read as local time, and
//! a failed replicate start that leaves no empty replica directory behind.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

/// memsync in `cwd`, with no config reachable through the environment.
fn run_in(cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_remove("MEMSYNC_CONFIG")
        .env_remove("LITESTREAM_CONFIG")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    assert!(!o.status.success(), "should fail");
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
    e
}

/// A database with 20 memories replicated once to `<dir>/backup/sqlite_vec.db`.
fn replicated(dir: &Path) {
    let db = dir.join("sqlite_vec.db");
    let c = create_memdb(&db);
    for i in 0..20 {
        insert_memory(&c, i);
    }
    drop(c);
    let rep = dir.join("backup/sqlite_vec.db");
    ok(&run_in(
        dir,
        &[],
        &[
            "replicate",
            "-once",
            db.to_str().unwrap(),
            rep.to_str().unwrap(),
        ],
    ));
}

#[test]
fn a_plain_path_to_a_replica_directory_needs_no_config() {
    let d = tempfile::tempdir().unwrap();
    replicated(d.path());
    // Relative, as the guide writes it, from a folder with no litestream.yml.
    let snaps = ok(&run_in(
        d.path(),
        &[],
        &["snapshots", "backup/sqlite_vec.db"],
    ));
    assert!(snaps.lines().count() >= 2, "{snaps}");
    ok(&run_in(d.path(), &[], &["wal", "backup/sqlite_vec.db"]));
    ok(&run_in(
        d.path(),
        &[],
        &["restore", "-o", "out.db", "backup/sqlite_vec.db"],
    ));
    let c = rusqlite::Connection::open(d.path().join("out.db")).unwrap();
    let n: i64 = c
        .query_row("SELECT COUNT(*) FROM memories", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 20);
    // A dry run says what a restore would use and writes nothing.
    let said = ok(&run_in(
        d.path(),
        &[],
        &[
            "restore",
            "-dry-run",
            "-o",
            "dry.db",
            "backup/sqlite_vec.db",
        ],
    ));
    assert!(
        said.contains("would restore") && said.contains("nothing written"),
        "{said}"
    );
    let written: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("dry"))
        .collect();
    assert!(written.is_empty(), "a dry run wrote {written:?}");
    let e = err(&run_in(
        d.path(),
        &[],
        &[
            "restore",
            "-dry-run",
            "-o",
            "out.db",
            "backup/sqlite_vec.db",
        ],
    ));
    assert!(e.contains("already exists"), "{e}");
    // Restoring a replica directory needs -o; a path that is neither says what it expected.
    let e = err(&run_in(d.path(), &[], &["restore", "backup/sqlite_vec.db"]));
    assert!(e.contains("-o"), "{e}");
    std::fs::create_dir(d.path().join("empty")).unwrap();
    let e = err(&run_in(d.path(), &[], &["snapshots", "empty"]));
    assert!(e.contains("not a replica directory"), "{e}");
    // A path that does not exist is said to be missing (not "no snapshots/ in it").
    let e = err(&run_in(d.path(), &[], &["snapshots", "nothing/here"]));
    assert!(
        e.contains("No such file or directory") && !e.contains("not a replica"),
        "{e}"
    );
    // `-replica` with a replica directory or URL may name only that replica (before: with a
    // directory, its own name was refused as "not a replica directory"; with a URL, any name
    // was ignored).
    let args = [
        "restore",
        "-o",
        "named.db",
        "-replica",
        "file",
        "backup/sqlite_vec.db",
    ];
    ok(&run_in(d.path(), &[], &args));
    let url = format!("file://{}", d.path().join("backup/sqlite_vec.db").display());
    for target in ["backup/sqlite_vec.db", url.as_str()] {
        let args = ["restore", "-o", "other.db", "-replica", "nosuch", target];
        let e = err(&run_in(d.path(), &[], &args));
        assert!(
            e.contains("-replica nosuch") && e.contains("itself a replica"),
            "{e}"
        );
    }
    assert!(!d.path().join("other.db").exists());
    // `-if-replica-exists` with a plain path to a replica never made (a first boot): nothing
    // to do, as with a `file://` URL (before: "No such file or directory", exit 1).
    for target in ["nothing/here", "backup/never.db"] {
        let args = ["restore", "-if-replica-exists", "-o", "first.db", target];
        ok(&run_in(d.path(), &[], &args));
    }
    // Nor with a folder that exists and holds no replica, or only a replicator's record.
    std::fs::create_dir_all(d.path().join("bare/rec")).unwrap();
    std::fs::copy(
        d.path().join("backup/sqlite_vec.db/lineage"),
        d.path().join("bare/rec/lineage"),
    )
    .unwrap();
    for target in ["bare", "bare/rec"] {
        let args = ["restore", "-if-replica-exists", "-o", "first.db", target];
        ok(&run_in(d.path(), &[], &args));
    }
    let e = err(&run_in(
        d.path(),
        &[],
        &["restore", "-o", "first.db", "bare/rec"],
    ));
    assert!(e.contains("holds no backup"), "{e}");
    assert!(!d.path().join("first.db").exists());
    // `-level` is a level, 0 to 9.
    let o = run_in(
        d.path(),
        &[],
        &["wal", "-level", "10", "backup/sqlite_vec.db"],
    );
    assert_eq!(o.status.code(), Some(2));
    ok(&run_in(
        d.path(),
        &[],
        &["wal", "-level", "0", "backup/sqlite_vec.db"],
    ));
    // Level 9 is the snapshots, as in Litestream (it listed nothing).
    let o = run_in(
        d.path(),
        &[],
        &["ltx", "-level", "9", "backup/sqlite_vec.db"],
    );
    ok(&o);
    let listed = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        listed
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some("9")),
        "{listed}"
    );
    // A config's database named with `..` or through a symlinked folder is that database.
    let cfg = d.path().join("c.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {0}/sqlite_vec.db\n    replica:\n      path: {0}/backup/sqlite_vec.db\n",
            d.path().display()
        ),
    )
    .unwrap();
    std::os::unix::fs::symlink(d.path(), d.path().join("link")).unwrap();
    // Through the symlinked folder also once the database file is gone.
    std::fs::rename(d.path().join("sqlite_vec.db"), d.path().join("moved.db")).unwrap();
    for (i, db) in ["empty/../sqlite_vec.db", "./link/sqlite_vec.db"]
        .iter()
        .enumerate()
    {
        let out = format!("via{i}.db");
        let args = ["restore", "-config", "c.yml", "-o", &out, db];
        ok(&run_in(d.path(), &[], &args));
        assert!(d.path().join(&out).is_file());
    }
}

#[test]
fn timestamps_take_every_rfc3339_form_and_refuse_a_missing_zone() {
    let d = tempfile::tempdir().unwrap();
    replicated(d.path());
    let rep = "backup/sqlite_vec.db";
    // Far in the future under every spelling: the latest state.
    for (i, ts) in [
        "2099-12-02T08:22:31+02:00",
        "2099-12-02T08:22:31-05:00",
        "2099-12-02T08:22:31Z",
        "2099-12-02 08:22:31.250+05:30",
    ]
    .iter()
    .enumerate()
    {
        let out = format!("at-{i}.db");
        ok(&run_in(
            d.path(),
            &[],
            &["restore", "-o", &out, "-timestamp", ts, rep],
        ));
        assert!(d.path().join(&out).exists(), "{ts}");
    }
    // Before the first snapshot, with an offset: nothing that old, and nothing written.
    let e = err(&run_in(
        d.path(),
        &[],
        &[
            "restore",
            "-o",
            "old.db",
            "-timestamp",
            "2001-01-01T00:00:00+02:00",
            rep,
        ],
    ));
    assert!(!d.path().join("old.db").exists(), "{e}");
    // The error says what can be restored instead, as times.
    assert!(e.contains("restorable: 20") && e.contains(" .. 20"), "{e}");
    // No zone: refused (it used to be read as UTC whatever TZ said), unless asked for local time.
    let e = err(&run_in(
        d.path(),
        &[("TZ", "America/New_York")],
        &[
            "restore",
            "-o",
            "nz.db",
            "-timestamp",
            "2099-12-02T08:22:31",
            rep,
        ],
    ));
    assert!(e.contains("zone") && e.contains("-timestamp-local"), "{e}");
    assert!(!d.path().join("nz.db").exists());
    let o = run_in(
        d.path(),
        &[("TZ", "America/New_York")],
        &[
            "restore",
            "-o",
            "local.db",
            "-timestamp-local",
            "-timestamp",
            "2099-12-02T08:22:31",
            rep,
        ],
    );
    ok(&o);
    // The answer names the instant in UTC: 08:22:31 in New York in December is 13:22:31Z.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        said.contains("state as of 2099-12-02T13:22:31.000Z"),
        "{said}"
    );
}

#[test]
fn a_failed_replicate_start_leaves_no_replica_directory() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("r");
    let junk = d.path().join("junk.db");
    std::fs::write(&junk, b"hello, this is not a database at all.............").unwrap();
    std::fs::create_dir(d.path().join("adir")).unwrap();
    for db in [d.path().join("nope.db"), junk, d.path().join("adir")] {
        let o = run_in(
            d.path(),
            &[],
            &["replicate", db.to_str().unwrap(), r.to_str().unwrap()],
        );
        err(&o);
        assert!(!r.exists(), "{} left {}", db.display(), r.display());
    }
}

/// Rewrites the header of the first file under `dir` with an absurd database size (4 billion
/// pages, 16 TB at 4 KiB) and a valid header CRC.
fn craft_commit(dir: &Path) -> String {
    use memsync::formats::{HEADER_LEN, Header};
    let f = std::fs::read_dir(dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&f).unwrap();
    let mut h = Header::from_bytes(bytes[..HEADER_LEN].try_into().unwrap()).unwrap();
    h.commit = u32::MAX - 1;
    bytes[..HEADER_LEN].copy_from_slice(&h.to_bytes());
    std::fs::write(&f, &bytes).unwrap();
    f.file_name().unwrap().to_string_lossy().into_owned()
}

/// [`replicated`], then ten more memories shipped as a level-0 segment; the replica's path.
fn replicated_with_a_segment(dir: &Path) -> std::path::PathBuf {
    replicated(dir);
    let db = dir.join("sqlite_vec.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    for i in 100..110 {
        insert_memory(&c, i);
    }
    drop(c);
    let rep = dir.join("backup/sqlite_vec.db");
    ok(&run_in(
        dir,
        &[],
        &[
            "replicate",
            "-once",
            db.to_str().unwrap(),
            rep.to_str().unwrap(),
        ],
    ));
    rep
}

#[test]
fn a_crafted_page_count_fails_fast_within_bounded_memory() {
    let d = tempfile::tempdir().unwrap();
    replicated(d.path());
    craft_commit(&d.path().join("backup/sqlite_vec.db/snapshots"));
    restore_fails_bounded(d.path(), "snapshots/");
    // The same in a segment after an intact snapshot.
    let d = tempfile::tempdir().unwrap();
    let rep = replicated_with_a_segment(d.path());
    let name = craft_commit(&rep.join("segments/0"));
    restore_fails_bounded(d.path(), &name);
}

fn restore_fails_bounded(dir: &Path, names: &str) {
    let d = dir;
    // Under a 1 GiB address-space limit: sizing the page table from the header first would
    // need 32 GiB and abort.
    let out = d.join("out.db");
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v 1048576; exec {BIN} restore -o {} {}",
            out.display(),
            d.join("backup/sqlite_vec.db").display()
        ))
        .output()
        .unwrap();
    let e = err(&o);
    assert!(e.contains(names), "{e}");
    assert!(!out.exists());
    let left: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("out"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

/// `restore` into a directory that does not exist yet makes it, parents too, as Litestream
/// does (before: "output directory ... does not exist", which broke the container pattern of
/// restoring into an empty volume); a restore that fails or finds no replica leaves no
/// directory behind, and a file in the way is named.
#[test]
fn restore_makes_the_missing_output_directories_and_only_keeps_them_on_success() {
    let d = tempfile::tempdir().unwrap();
    replicated(d.path());
    let rep = "backup/sqlite_vec.db";
    ok(&run_in(
        d.path(),
        &[],
        &["restore", "-o", "vol/data/db/out.db", rep],
    ));
    let c = rusqlite::Connection::open(d.path().join("vol/data/db/out.db")).unwrap();
    let n: i64 = c
        .query_row("SELECT COUNT(*) FROM memories", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 20);
    // Nothing to restore: no directory made.
    std::fs::create_dir(d.path().join("empty")).unwrap();
    let url = format!("file://{}", d.path().join("empty").display());
    let args = [
        "restore",
        "-if-replica-exists",
        "-o",
        "new/a/b.db",
        url.as_str(),
    ];
    ok(&run_in(d.path(), &[], &args));
    assert!(!d.path().join("new").exists());
    let e = err(&run_in(
        d.path(),
        &[],
        &["restore", "-o", "new/a/b.db", url.as_str()],
    ));
    assert!(e.contains("holds no backup"), "{e}");
    assert!(!d.path().join("new").exists());
    std::fs::write(d.path().join("afile"), b"x").unwrap();
    let e = err(&run_in(
        d.path(),
        &[],
        &["restore", "-o", "afile/x/out.db", rep],
    ));
    assert!(e.contains("afile") && e.contains("not a directory"), "{e}");
}

/// A level-0 file in the format before run indexes (restore still reads it, file by file),
/// crafted from the real one at `path`: `pages` zero pages in runs of 4096 (a few kB on disk,
/// 4 KiB each decoded) and a valid CRC everywhere, but a `pre_checksum` no state has.
fn craft_unindexed(path: &Path, pages: u32) {
    use memsync::formats::{DbChecksum, EncodeOptions, FileEncoder, HEADER_LEN, Header, PageNo};
    let bytes = std::fs::read(path).unwrap();
    let mut h = Header::from_bytes(bytes[..HEADER_LEN].try_into().unwrap()).unwrap();
    h.commit = pages + 10;
    h.pre_checksum = DbChecksum::from_raw(0x5eed);
    let opts = EncodeOptions {
        zstd_level: 1,
        pages_per_run: 4096,
    };
    let mut enc = FileEncoder::new(Vec::new(), &h, opts).unwrap();
    let zero = vec![0u8; h.page_size.as_usize()];
    for p in 2..pages + 2 {
        enc.write_page(PageNo::new(p).unwrap(), &zero).unwrap();
    }
    let sum = enc.pages_checksum();
    let (indexed, _) = enc.finish(sum).unwrap();
    // Without its index: header flags cleared, the index and its length left out of the
    // trailer, the file CRC computed again.
    let n = indexed.len();
    let fields = &indexed[n - 24..n - 8];
    let index_len = u32::from_le_bytes(fields[12..16].try_into().unwrap()) as usize;
    let mut out = h.to_bytes().to_vec();
    out.extend_from_slice(&indexed[HEADER_LEN..n - 24 - index_len]);
    out.extend_from_slice(&fields[..12]);
    out.extend_from_slice(&0u32.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&indexed[n - 4..]);
    std::fs::write(path, out).unwrap();
}

/// Decoded whole before use, such a file took memory in proportion to the pages it declares
/// (1 GB here, from a file of a few kB); it is now verified and refused one run at a time.
#[test]
fn an_unindexed_file_of_many_pages_fails_within_bounded_memory() {
    let d = tempfile::tempdir().unwrap();
    let rep = replicated_with_a_segment(d.path());
    let seg = std::fs::read_dir(rep.join("segments/0"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    craft_unindexed(&seg, 250_000);
    assert!(std::fs::metadata(&seg).unwrap().len() < 4 << 20);
    restore_fails_bounded(d.path(), &seg.file_name().unwrap().to_string_lossy());
}
