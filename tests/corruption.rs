//! Corrupt replica files: restore fails with a clear error naming the file, or, only when asked
//! with -fallback, restores the newest consistent state before it. Never a wrong database.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// A replica with one snapshot and several segments; returns the scene and rows per segment.
fn build() -> (Scene, rusqlite::Connection) {
    let s = Scene::new("", "        sync-interval: 0s\n");
    let app = create_memdb(&s.db);
    let r = s.start();
    let mut n: i64 = 0;
    for _ in 0..4 {
        for _ in 0..25 {
            n += 1;
            insert_memory(&app, n as u64);
        }
        s.wait_for_rows(n);
    }
    let (st, err) = r.stop();
    assert!(st.success(), "{err}");
    (s, app)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

fn files(dir: &Path, sub: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join(sub))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Every segment file of a replica (all levels: compaction may have merged level 0), in chain
/// order (by last position).
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .flat_map(|l| std::fs::read_dir(l.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    let max = |p: &PathBuf| p.file_name().unwrap().to_str().unwrap()[17..33].to_owned();
    v.sort_by_key(max);
    v
}

/// A table of one row whose value is set to `first`, `first + 1` and `first + 2`, each
/// replicated by a `replicate -once` of its own: each update rewrites the one leaf page, so every
/// segment holds the same page.
fn one_row_updated(first: i64) -> Scene {
    let s = Scene::new("", "        sync-interval: 0s\n");
    let app = rusqlite::Connection::open(&s.db).unwrap();
    app.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER);
         INSERT INTO t VALUES (1, 0);",
    )
    .unwrap();
    let db = s.db.to_str().unwrap().to_owned();
    for v in first..first + 3 {
        app.execute("UPDATE t SET v = ?1", [v]).unwrap();
        let o = run(&["replicate", "-once", &db, &s.url()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    s
}

fn restore(url: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    run(&[&["restore", "-o", out.to_str().unwrap()], extra, &[url]].concat())
}

#[test]
fn corrupt_segments_fail_or_fall_back_when_asked() {
    let (s, app) = build();
    let total = rows(&app).len();
    type Damage = fn(&Path);
    let damages: [(&str, Damage); 4] = [
        ("empty", |p| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .unwrap()
                .set_len(0)
                .unwrap();
        }),
        ("truncated", |p| {
            let len = std::fs::metadata(p).unwrap().len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
        }),
        ("flipped", |p| {
            let mut b = std::fs::read(p).unwrap();
            let i = b.len() / 2;
            b[i] ^= 0x10;
            std::fs::write(p, b).unwrap();
        }),
        ("garbage", |p| {
            let b: Vec<u8> = (0..5000u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
                .collect();
            std::fs::write(p, b).unwrap();
        }),
    ];
    for (name, damage) in damages {
        let rep = s.dir.path().join(format!("rep-{name}"));
        copy_dir(&s.replica, &rep);
        let segs = segments(&rep);
        let victim = &segs[segs.len() - 1];
        damage(victim);
        let url = format!("file://{}", rep.display());
        let out = s.dir.path().join(format!("{name}.db"));
        let o = restore(&url, &out, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success(),
            "{name}: restore of a damaged replica succeeded"
        );
        assert!(err.contains("corrupt"), "{name}: {err}");
        assert!(
            err.contains(victim.file_name().unwrap().to_str().unwrap()),
            "{name}: {err}"
        );
        assert!(!out.exists(), "{name}: a failed restore left its output");
        let o = restore(&url, &out, &["-fallback"]);
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let c = check_sound(&out);
        let got = rows(&c).len();
        assert!(got < total, "{name}: fell back yet restored everything");
        assert_eq!(rows(&c), rows(&app)[..got].to_vec());
    }
    // Garbage under a valid name *after* the last real file: the chain must not silently stop.
    let rep = s.dir.path().join("rep-extra");
    copy_dir(&s.replica, &rep);
    let segs = segments(&rep);
    let last = segs
        .last()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let max = u64::from_str_radix(&last[17..33], 16).unwrap();
    let extra = format!("{:016x}-{:016x}-{}", max + 1, max + 1, &last[34..]);
    std::fs::create_dir_all(rep.join("segments/0")).unwrap();
    std::fs::write(rep.join("segments/0").join(extra), b"not a segment").unwrap();
    let url = format!("file://{}", rep.display());
    let o = restore(&url, &s.dir.path().join("extra.db"), &[]);
    assert!(!o.status.success());
}

#[test]
fn corrupt_snapshot_and_missing_segment_are_errors() {
    let (s, app) = build();
    let rep = s.dir.path().join("rep-snap");
    copy_dir(&s.replica, &rep);
    let snap = &files(&rep, "snapshots")[0];
    let mut b = std::fs::read(snap).unwrap();
    let i = b.len() / 2;
    b[i] ^= 1;
    std::fs::write(snap, b).unwrap();
    let url = format!("file://{}", rep.display());
    let out = s.dir.path().join("snap.db");
    let o = restore(&url, &out, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("corrupt"), "{err}");
    // No older snapshot to fall back to: still an error, never a partial database.
    let o = restore(&url, &out, &["-fallback"]);
    assert!(!o.status.success());
    assert!(!out.exists());

    // A gap: every file (of any level) covering the first position after the newest snapshot
    // goes, so no other file can stand in for it. Compaction may have merged everything into
    // one file, so two more level-0 segments are shipped first (`-once` does not compact): the
    // chain then has files after the gap, and the planner must see it.
    let db = s.db.to_str().unwrap().to_owned();
    for i in 0..2 {
        insert_memory(&app, 10_000 + i);
        let o = run(&["replicate", "-once", &db, &s.url()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let rep = s.dir.path().join("rep-gap");
    copy_dir(&s.replica, &rep);
    let name = |p: &PathBuf| p.file_name().unwrap().to_str().unwrap().to_owned();
    let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();
    let snap = files(&rep, "snapshots")
        .iter()
        .map(|p| hex(&name(p)[..16]))
        .max()
        .unwrap();
    let hole = snap + 1;
    let segs = segments(&rep);
    let mut removed = 0;
    for p in &segs {
        let n = name(p);
        if hex(&n[..16]) <= hole && hole <= hex(&n[17..33]) {
            std::fs::remove_file(p).unwrap();
            removed += 1;
        }
    }
    assert!(removed > 0, "no segment covers position {hole}");
    assert!(
        segments(&rep).iter().any(|p| hex(&name(p)[..16]) > hole),
        "the test needs a segment after the gap"
    );
    let url = format!("file://{}", rep.display());
    let o = restore(&url, &s.dir.path().join("gap.db"), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "a replica with a missing segment restored: {err}"
    );
    assert!(
        err.to_lowercase().contains("gap") || err.contains("missing"),
        "{err}"
    );
}

/// Asserts a failed restore with one line on stderr naming `file`.
fn assert_fails_naming(o: &std::process::Output, file: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "restore used a renamed file: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "want one line: {err}");
    assert!(err.contains(file), "{err:?} should name {file}");
}

/// A file copied under another name (another txid, another range) is refused, naming it:
/// planning trusts names, so without the header check the restore would claim a position the
/// file does not hold and exit 0 with an older database.
#[test]
fn renamed_snapshot_or_segment_is_refused() {
    let (s, _app) = build();
    let name = |p: &PathBuf| p.file_name().unwrap().to_str().unwrap().to_owned();
    let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();

    let rep = s.dir.path().join("rep-renamed-snap");
    copy_dir(&s.replica, &rep);
    let snap = files(&rep, "snapshots").pop().unwrap();
    let n = name(&snap);
    let moved = format!("{:016x}{}", hex(&n[..16]) + 100, &n[16..]);
    std::fs::copy(&snap, rep.join("snapshots").join(&moved)).unwrap();
    let out = s.dir.path().join("renamed-snap.db");
    let o = restore(
        &format!("file://{}", rep.display()),
        &out,
        &["-integrity-check", "full"],
    );
    assert_fails_naming(&o, &moved);
    assert!(!out.exists());

    let rep = s.dir.path().join("rep-renamed-seg");
    copy_dir(&s.replica, &rep);
    let seg = segments(&rep).pop().unwrap();
    let n = name(&seg);
    let moved = format!("{}-{:016x}{}", &n[..16], hex(&n[17..33]) + 50, &n[33..]);
    std::fs::copy(&seg, seg.with_file_name(&moved)).unwrap();
    let out = s.dir.path().join("renamed-seg.db");
    let o = restore(
        &format!("file://{}", rep.display()),
        &out,
        &["-integrity-check", "full"],
    );
    assert_fails_naming(&o, &moved);
    assert!(!out.exists());
}

/// A corrupt file whose pages all have newer versions does not stand between the replica and
/// its newest state: `-fallback` gives what a plain restore gives (it went file by file from
/// the start and stopped at the damage, an older state, though nothing newer was damaged).
#[test]
fn fallback_is_no_older_than_a_plain_restore() {
    let s = one_row_updated(1);
    let segs = segments(&s.replica);
    assert!(
        segs.len() >= 2,
        "want a segment before the newest: {segs:?}"
    );
    // A byte of the first page run (past the 96-byte header) of a segment before the newest.
    let victim = &segs[segs.len() - 2];
    let mut b = std::fs::read(victim).unwrap();
    b[100] ^= 0x55;
    std::fs::write(victim, b).unwrap();
    let value = |p: &Path| -> i64 {
        rusqlite::Connection::open(p)
            .unwrap()
            .query_row("SELECT v FROM t", [], |r| r.get(0))
            .unwrap()
    };
    for (name, extra) in [("plain", &[][..]), ("fallback", &["-fallback"][..])] {
        let out = s.dir.path().join(format!("{name}.db"));
        let o = restore(&s.url(), &out, extra);
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(value(&out), 3, "{name} restore is not the newest state");
    }
}

/// A segment of another history (checksums valid, positions right: copied from a replica of
/// another database) in the chain: a plain restore fails naming it; `-fallback` restores the
/// state before it and says so (it failed as without the flag).
#[test]
fn fallback_steps_over_a_segment_of_another_history() {
    let (a, b) = (one_row_updated(1), one_row_updated(101));
    let name = |p: &PathBuf| p.file_name().unwrap().to_str().unwrap().to_owned();
    let (mine, theirs) = (
        segments(&a.replica).pop().unwrap(),
        segments(&b.replica).pop().unwrap(),
    );
    assert_eq!(
        name(&mine)[..33],
        name(&theirs)[..33],
        "not the same positions"
    );
    std::fs::remove_file(&mine).unwrap();
    std::fs::copy(&theirs, mine.with_file_name(name(&theirs))).unwrap();
    let out = a.dir.path().join("plain.db");
    let o = restore(&a.url(), &out, &[]);
    assert_fails_naming(&o, &name(&theirs));
    assert!(!out.exists());
    let out = a.dir.path().join("fallback.db");
    let o = restore(&a.url(), &out, &["-fallback"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("warning") && err.contains(&name(&theirs)),
        "{err}"
    );
    let v: i64 = rusqlite::Connection::open(&out)
        .unwrap()
        .query_row("SELECT v FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 2, "not the state before the foreign segment");
}

/// With several replicas, a corrupt file in the one chosen sends the restore to the next, which
/// it names; a replica holding only Litestream's files is said to be one (it was "no backup",
/// and `-if-replica-exists` then did nothing, starting the application on an empty database).
#[test]
fn a_corrupt_replica_fails_over_and_a_litestream_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let app = create_memdb(&db);
    for i in 1..=30 {
        insert_memory(&app, i);
    }
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let cfg = dir.path().join("c.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replicas:\n      - name: a\n        path: {}\n      - name: b\n        path: {}\n",
            db.display(),
            a.display(),
            b.display()
        ),
    )
    .unwrap();
    let o = run(&["replicate", "-once", "-config", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Replica `a`'s snapshot, damaged in a copy of its own (file replicas share the spool's
    // files through hard links).
    for snap in files(&a, "snapshots") {
        let mut bytes = std::fs::read(&snap).unwrap();
        let i = bytes.len() / 2;
        bytes[i] ^= 0x40;
        std::fs::remove_file(&snap).unwrap();
        std::fs::write(&snap, bytes).unwrap();
    }
    let out = dir.path().join("out.db");
    let o = run(&[
        "restore",
        "-config",
        cfg.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        db.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("corrupt") && err.contains("trying the next replica"),
        "{err}"
    );
    assert_eq!(rows(&check_sound(&out)), rows(&app));

    // Litestream's layout at a replica path.
    let lt = dir.path().join("litestream-replica");
    std::fs::create_dir_all(lt.join("ltx/0")).unwrap();
    std::fs::write(
        lt.join("ltx/0/0000000000000001-0000000000000001.ltx"),
        b"LTX1",
    )
    .unwrap();
    let url = format!("file://{}", lt.display());
    for extra in [&[][..], &["-if-replica-exists"][..]] {
        let out = dir.path().join("lt.db");
        let o = restore(&url, &out, extra);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{extra:?}: {err}");
        assert!(
            err.contains("a Litestream one") && err.contains("`ltx/`"),
            "{err}"
        );
        assert!(!out.exists());
    }
}

/// A database damaged before it was replicated restores byte for byte, and
/// `-integrity-check full` refuses to put it in place: in one line naming the output (SQLite's
/// report spanned five lines and named nothing), with nothing written.
#[test]
fn a_failed_integrity_check_is_one_line_naming_the_output() {
    let s = Scene::new("", "");
    let app = rusqlite::Connection::open(&s.db).unwrap();
    app.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         CREATE INDEX t_v ON t(v);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
         INSERT INTO t SELECT i, printf('value %08d', i) FROM n;
         PRAGMA wal_checkpoint(TRUNCATE);",
    )
    .unwrap();
    drop(app);
    // Scribble over the cells of a page in the middle of the file.
    let mut bytes = std::fs::read(&s.db).unwrap();
    let page = 4096;
    let at = (bytes.len() / page / 2) * page + 200;
    bytes[at..at + 300].fill(0x5a);
    std::fs::write(&s.db, &bytes).unwrap();
    let o = run(&["replicate", "-once", s.db.to_str().unwrap(), &s.url()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let out = s.dir.path().join("checked.db");
    let o = restore(&s.url(), &out, &["-integrity-check", "full"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "want one line: {err}");
    assert!(
        err.contains("failed integrity_check") && err.contains(out.to_str().unwrap()),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("checked"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
