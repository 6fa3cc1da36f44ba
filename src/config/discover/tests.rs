use std::path::{Path, PathBuf};

use super::*;
use crate::config::{DbConfig, parse};

fn header(b18: u8, b19: u8) -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.extend([0x10, 0x00, b18, b19]);
    h
}

#[test]
fn classify_by_header() {
    let cases: Vec<(&str, Vec<u8>, Kind)> = vec![
        ("wal", header(2, 2), Kind::Wal),
        ("rollback", header(1, 1), Kind::Rollback),
        ("mixed versions", header(1, 2), Kind::NotSqlite),
        ("unknown version", header(3, 3), Kind::NotSqlite),
        ("empty", vec![], Kind::Incomplete),
        ("magic prefix", b"SQLite for".to_vec(), Kind::Incomplete),
        ("magic only", MAGIC.to_vec(), Kind::Incomplete),
        (
            "text",
            b"hello, this is not a database".to_vec(),
            Kind::NotSqlite,
        ),
        ("short text", b"hi".to_vec(), Kind::NotSqlite),
        (
            "wal file",
            vec![
                0x37, 0x7f, 0x06, 0x82, 0, 0x2d, 0xe2, 0x18, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
            Kind::NotSqlite,
        ),
    ];
    for (what, head, want) in cases {
        assert_eq!(classify(&head), want, "{what}");
    }
}

fn found(rel: &str, kind: Kind) -> Found {
    Found {
        rel: rel.into(),
        kind,
    }
}

fn paths(v: &[&str]) -> Vec<PathBuf> {
    v.iter().map(PathBuf::from).collect()
}

#[test]
fn tracker_reports_changes_once() {
    let mut t = Tracker::new(false);
    // Start: two databases, a text file, a rollback database, one being created.
    let ch = t.update(
        vec![
            found("a.db", Kind::Wal),
            found("b.db", Kind::Wal),
            found("notes.db", Kind::NotSqlite),
            found("old.db", Kind::Rollback),
            found("new.db", Kind::Incomplete),
        ],
        &[],
    );
    assert_eq!(ch.added, paths(&["a.db", "b.db"]));
    assert!(ch.removed.is_empty());
    let skipped: Vec<&str> = ch
        .skipped
        .iter()
        .map(|(p, _)| p.to_str().unwrap())
        .collect();
    assert_eq!(skipped, ["notes.db", "old.db"]);
    assert!(ch.skipped[1].1.contains("rollback"), "{}", ch.skipped[1].1);

    // Same scan again: nothing to say (the non-database is not reported twice).
    let same = t.update(
        vec![
            found("a.db", Kind::Wal),
            found("b.db", Kind::Wal),
            found("notes.db", Kind::NotSqlite),
            found("old.db", Kind::Rollback),
            found("new.db", Kind::Incomplete),
        ],
        &[],
    );
    assert_eq!(same, Changes::default());

    // b.db removed, new.db written, old.db switched to WAL, notes.db deleted.
    let ch = t.update(
        vec![
            found("a.db", Kind::Wal),
            found("new.db", Kind::Wal),
            found("old.db", Kind::Wal),
        ],
        &[],
    );
    assert_eq!(ch.added, paths(&["new.db", "old.db"]));
    assert_eq!(ch.removed, paths(&["b.db"]));
    assert!(ch.skipped.is_empty());
    let dbs: Vec<&Path> = t.databases().collect();
    assert_eq!(
        dbs,
        [Path::new("a.db"), Path::new("new.db"), Path::new("old.db")]
    );

    // A database overwritten by something else is dropped and reported.
    let ch = t.update(
        vec![found("a.db", Kind::NotSqlite), found("new.db", Kind::Wal)],
        &[],
    );
    assert_eq!(ch.removed, paths(&["a.db", "old.db"]));
    assert_eq!(ch.skipped.len(), 1);
}

#[test]
fn tracker_observes_one_file_at_a_time() {
    let mut t = Tracker::new(false);
    t.update(
        vec![found("a.db", Kind::Wal), found("x.db", Kind::NotSqlite)],
        &[],
    );
    let cases: Vec<(&str, Option<Kind>, Changes)> = vec![
        // A new file being created: nothing yet; once written, added.
        ("n.db", Some(Kind::Incomplete), Changes::default()),
        (
            "n.db",
            Some(Kind::Wal),
            Changes {
                added: paths(&["n.db"]),
                ..Default::default()
            },
        ),
        // Written again: no change.
        ("n.db", Some(Kind::Wal), Changes::default()),
        // The non-database touched again: not reported a second time.
        ("x.db", Some(Kind::NotSqlite), Changes::default()),
        // A new non-database: reported once.
        (
            "y.db",
            Some(Kind::NotSqlite),
            Changes {
                skipped: vec![("y.db".into(), "is not an SQLite database")],
                ..Default::default()
            },
        ),
        // Deleted: dropped.
        (
            "a.db",
            None,
            Changes {
                removed: paths(&["a.db"]),
                ..Default::default()
            },
        ),
        ("x.db", None, Changes::default()),
        ("never-seen.db", None, Changes::default()),
    ];
    for (i, (rel, kind, want)) in cases.into_iter().enumerate() {
        assert_eq!(
            t.observe(Path::new(rel), kind),
            want,
            "step {i}: {rel} {kind:?}"
        );
    }
    let dbs: Vec<&Path> = t.databases().collect();
    assert_eq!(dbs, [Path::new("n.db")]);
}

#[test]
fn tracker_with_convert_counts_rollback_databases() {
    let mut t = Tracker::new(true);
    let ch = t.update(vec![found("old.db", Kind::Rollback)], &[]);
    assert_eq!(ch.added, paths(&["old.db"]));
    // Switching to WAL is the same database, not a new one.
    assert_eq!(
        t.update(vec![found("old.db", Kind::Wal)], &[]),
        Changes::default()
    );
}

fn make_db(path: &Path, wal: bool) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let c = rusqlite::Connection::open(path).unwrap();
    if wal {
        c.pragma_update(None, "journal_mode", "wal").unwrap();
    }
    c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
}

fn config_for(dir: &Path, extra: &str) -> Config {
    let text = format!(
        "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n{extra}    replica:\n      path: {}\n",
        dir.display(),
        dir.join("backup").display()
    );
    parse(&text, Path::new("c.yml"), false, &|_| None).unwrap()
}

#[test]
fn scan_and_expand_a_real_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    make_db(&d.join("a.db"), true);
    make_db(&d.join("sub/b.db"), true);
    make_db(&d.join("sub/deeper/c.db"), true);
    make_db(&d.join("old.db"), false);
    std::fs::write(d.join("notes.db"), "not a database").unwrap();
    std::fs::write(d.join("other.txt"), "ignored by the pattern").unwrap();
    std::fs::write(d.join("empty.db"), "").unwrap();
    std::fs::create_dir_all(d.join(".a.db-memsync")).unwrap();
    make_db(&d.join(".a.db-memsync/spool.db"), true);
    // A WAL file that happens to match a broad pattern is a side file, not a candidate.
    std::fs::write(d.join("a.db-wal"), "x").unwrap();
    // The entry's own replica inside the directory is not walked.
    make_db(&d.join("backup/inside.db"), true);

    let flat = config_for(&d, "");
    let got: Vec<Found> = scan(&flat.dirs[0]).unwrap().found;
    let rels: Vec<&str> = got.iter().map(|f| f.rel.to_str().unwrap()).collect();
    assert_eq!(rels, ["a.db", "empty.db", "notes.db", "old.db"]);

    let mut deep = config_for(&d, "    recursive: true\n");
    let rels: Vec<String> = scan(&deep.dirs[0])
        .unwrap()
        .found
        .iter()
        .map(|f| f.rel.display().to_string())
        .collect();
    assert_eq!(
        rels,
        [
            "a.db",
            "empty.db",
            "notes.db",
            "old.db",
            "sub/b.db",
            "sub/deeper/c.db"
        ]
    );

    let skipped = expand(&mut deep, false).unwrap();
    let dbs: Vec<PathBuf> = deep.dbs.iter().map(|d| d.path.clone()).collect();
    assert_eq!(
        dbs,
        [
            d.join("a.db"),
            d.join("sub/b.db"),
            d.join("sub/deeper/c.db")
        ]
    );
    let reps: Vec<ReplicaTarget> = deep
        .dbs
        .iter()
        .map(|d| d.replicas[0].target.clone())
        .collect();
    assert_eq!(
        reps[2],
        ReplicaTarget::File {
            path: d.join("backup/sub/deeper/c.db")
        }
    );
    let skipped: Vec<PathBuf> = skipped.into_iter().map(|s| s.path).collect();
    assert_eq!(skipped, [d.join("notes.db"), d.join("old.db")]);

    let mut conv = config_for(&d, "");
    expand(&mut conv, true).unwrap();
    assert_eq!(conv.dbs.len(), 2, "a.db and old.db");

    // A database with a `path` entry of its own keeps it; two dir entries finding one
    // database are refused.
    let text = format!(
        "dbs:\n  - path: {a}\n    monitor-interval: 5s\n    replica:\n      path: /elsewhere/a\n  - dir: {d}\n    pattern: \"*.db\"\n    recursive: true\n    replica:\n      path: /b1\n",
        a = d.join("a.db").display(),
        d = d.display()
    );
    let mut own = parse(&text, Path::new("c.yml"), false, &|_| None).unwrap();
    expand(&mut own, false).unwrap();
    let a: Vec<&DbConfig> = own
        .dbs
        .iter()
        .filter(|x| x.path == d.join("a.db"))
        .collect();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].monitor_interval, std::time::Duration::from_secs(5));
    assert_eq!(
        own.dbs.len(),
        4,
        "a.db, sub/b.db, sub/deeper/c.db, backup/inside.db"
    );
    let twice = format!(
        "{text}  - dir: {d}\n    pattern: \"b*\"\n    recursive: true\n    replica:\n      path: /b2\n",
        d = d.display()
    );
    let mut two = parse(&twice, Path::new("c.yml"), false, &|_| None).unwrap();
    let e = expand(&mut two, false).unwrap_err().to_string();
    assert!(e.contains("configured twice"), "{e}");
}

#[test]
fn expand_refuses_missing_or_empty_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    let mut c = config_for(&d, "");
    let e = expand(&mut c, false).unwrap_err().to_string();
    assert!(
        e.starts_with("c.yml:2: `dir` ") && e.contains("data"),
        "{e}"
    );

    std::fs::create_dir_all(&d).unwrap();
    let e = expand(&mut c, false).unwrap_err().to_string();
    assert!(e.contains("holds no SQLite WAL database"), "{e}");

    // Watched, an empty directory is fine: databases come later.
    let mut w = config_for(&d, "    watch: true\n");
    expand(&mut w, false).unwrap();
    assert!(w.dbs.is_empty());

    std::fs::write(tmp.path().join("file"), "").unwrap();
    let mut f = config_for(&tmp.path().join("file"), "");
    let e = expand(&mut f, false).unwrap_err().to_string();
    assert!(e.contains("is not a directory"), "{e}");
}
