//! Directory replication (`dir`, `pattern`, `recursive`): the databases found at start are
//! replicated each to `<replica>/<path under dir>`, listed by `memsync databases`, restored one
//! by its relative path or all at once with `restore -all`; matching files that are not WAL
//! databases are skipped with a warning; config mistakes are one-line errors naming the key.

mod common;

use std::path::{Path, PathBuf};

use common::{app_conn, run};
use rusqlite::Connection;

/// A WAL database at `path` with `n` rows whose values name it.
fn wal_db(path: &Path, n: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let c = app_conn(path);
    c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        .unwrap();
    for i in 0..n {
        c.execute(
            "INSERT INTO t(v) VALUES (?1)",
            [format!("{}-{i}", path.display())],
        )
        .unwrap();
    }
}

fn rows(path: &Path) -> Vec<(i64, String)> {
    let c = Connection::open(path).unwrap();
    let mut s = c.prepare("SELECT id, v FROM t ORDER BY id").unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The database lines of `memsync databases` (a header, one line per database; where each
/// setting came from follows after a blank line).
fn listed(out: &str) -> usize {
    out.lines().take_while(|l| !l.is_empty()).count()
}

fn text(o: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ok(args: &[&str]) -> (String, String) {
    let o = run(args);
    let (out, err) = text(&o);
    assert!(o.status.success(), "memsync {args:?} failed:\n{out}\n{err}");
    (out, err)
}

struct Tree {
    tmp: tempfile::TempDir,
    data: PathBuf,
}

impl Tree {
    /// `data/` with three WAL databases (one per level), a text file and a rollback-journal
    /// database that match `*.db`, and a file that does not.
    fn new() -> Tree {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        wal_db(&data.join("a.db"), 3);
        wal_db(&data.join("sub/b.db"), 5);
        wal_db(&data.join("sub/deeper/c.db"), 7);
        std::fs::write(data.join("notes.db"), "these are notes, not a database").unwrap();
        std::fs::write(data.join("readme.txt"), "not matched").unwrap();
        let old = Connection::open(data.join("old.db")).unwrap();
        old.execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES ('x');",
        )
        .unwrap();
        Tree { tmp, data }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// A config replicating `data/` to `backup` (a directory under the scratch dir).
    fn config(&self, name: &str, backup: &str, extra: &str) -> String {
        let path = self.p(name);
        std::fs::write(
            &path,
            format!(
                "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n{extra}    replica:\n      path: {}\n",
                self.data.display(),
                self.p(backup).display()
            ),
        )
        .unwrap();
        path.to_string_lossy().into_owned()
    }
}

const DBS: [&str; 3] = ["a.db", "sub/b.db", "sub/deeper/c.db"];

#[test]
fn recursive_directory_replicates_lists_and_restores_each_database() {
    let t = Tree::new();
    let cfg = t.config("c.yml", "backup", "    recursive: true\n");

    // `databases` lists the three WAL databases with their own replica places.
    let (out, err) = ok(&["databases", "-config", &cfg]);
    for rel in DBS {
        let want = format!("file={}", t.p("backup").join(rel).display());
        let line = out
            .lines()
            .find(|l| l.starts_with(&t.data.join(rel).display().to_string()))
            .unwrap_or_else(|| panic!("{rel} not listed:\n{out}"));
        assert!(line.ends_with(&want), "{line}");
    }
    assert_eq!(listed(&out), 1 + DBS.len(), "{out}");
    // The settings the entry gives its databases, and where each came from (before: none
    // were shown for a `dir` entry).
    assert!(
        out.contains("(every database the `dir` entry finds)")
            && out
                .lines()
                .any(|l| l.trim_start().starts_with("sync-interval")),
        "{out}"
    );
    assert!(err.contains("notes.db: is not an SQLite database"), "{err}");
    assert!(
        err.contains("old.db: is an SQLite database in rollback-journal mode"),
        "{err}"
    );

    // One pass of replication; the skipped files are named once each.
    let (log, _) = ok(&["replicate", "-once", "-config", &cfg]);
    assert_eq!(log.matches("notes.db").count(), 1, "{log}");
    for rel in DBS {
        assert!(
            t.p("backup").join(rel).join("snapshots").is_dir(),
            "{rel}: {log}"
        );
    }
    assert!(!t.p("backup/notes.db").exists() && !t.p("backup/old.db").exists());

    // Every database into a fresh directory, same relative paths, same rows.
    let out_dir = t.p("restored");
    let (said, _) = ok(&[
        "restore",
        "-all",
        "-o",
        out_dir.to_str().unwrap(),
        t.p("backup").to_str().unwrap(),
    ]);
    for rel in DBS {
        assert_eq!(rows(&out_dir.join(rel)), rows(&t.data.join(rel)), "{rel}");
        assert!(
            said.contains(&format!("restored {rel} at position")),
            "{said}"
        );
    }
    let mut files: Vec<String> = walk(&out_dir);
    files.sort();
    assert_eq!(files, DBS, "only the databases, no temporary files");

    // One database by its path under the configured directory (the file need not exist)...
    let one = t.p("one.db");
    std::fs::rename(t.data.join("sub/b.db"), t.p("b-moved.db")).unwrap();
    ok(&[
        "restore",
        "-config",
        &cfg,
        "-o",
        one.to_str().unwrap(),
        t.data.join("sub/b.db").to_str().unwrap(),
    ]);
    assert_eq!(rows(&one), rows(&t.p("b-moved.db")));
    // ...or by its relative path in a directory replica URL.
    let two = t.p("two.db");
    let url = format!("file://{}", t.p("backup").display());
    ok(&[
        "restore",
        "-o",
        two.to_str().unwrap(),
        "-db",
        "sub/deeper/c.db",
        &url,
    ]);
    assert_eq!(rows(&two), rows(&t.data.join("sub/deeper/c.db")));

    // -all from the configured directory; one output already there fails by name, the others
    // are restored and nothing partial is left.
    let again = t.p("again");
    std::fs::create_dir_all(again.join("sub")).unwrap();
    std::fs::write(again.join("sub/b.db"), "in the way").unwrap();
    let o = run(&[
        "restore",
        "-all",
        "-config",
        &cfg,
        "-o",
        again.to_str().unwrap(),
        t.data.to_str().unwrap(),
    ]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("memsync: error: sub/b.db: output"), "{err}");
    assert!(err.contains("1 of 3 databases failed"), "{err}");
    assert_eq!(
        std::fs::read_to_string(again.join("sub/b.db")).unwrap(),
        "in the way"
    );
    assert_eq!(rows(&again.join("a.db")), rows(&t.data.join("a.db")));
    assert_eq!(
        rows(&again.join("sub/deeper/c.db")),
        rows(&t.data.join("sub/deeper/c.db"))
    );
    let mut files = walk(&again);
    files.sort();
    assert_eq!(files, DBS);
}

#[test]
fn flat_directory_leaves_subdirectories_alone() {
    let t = Tree::new();
    let cfg = t.config("flat.yml", "flat", "");
    // Asked to, the rollback-journal database is switched to WAL and replicated too.
    let (log, _) = ok(&["replicate", "-once", "-convert-to-wal", "-config", &cfg]);
    assert!(!log.contains("rollback-journal mode"), "{log}");
    assert!(t.p("flat/old.db/snapshots").is_dir(), "{log}");
    let (out, _) = ok(&["databases", "-config", &cfg]);
    assert_eq!(listed(&out), 3, "a.db and old.db, now in WAL mode: {out}");
    ok(&["replicate", "-once", "-config", &cfg]);
    assert!(t.p("flat/a.db/snapshots").is_dir());
    assert!(!t.p("flat/sub").exists());
    let out_dir = t.p("restored");
    ok(&[
        "restore",
        "-all",
        "-o",
        out_dir.to_str().unwrap(),
        &format!("file://{}", t.p("flat").display()),
    ]);
    assert_eq!(walk(&out_dir), ["a.db", "old.db"]);
    assert_eq!(rows(&out_dir.join("a.db")), rows(&t.data.join("a.db")));
}

#[test]
fn directory_config_mistakes_are_one_line_naming_the_key() {
    let t = Tree::new();
    let missing = t.p("missing.yml");
    std::fs::write(
        &missing,
        format!(
            "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n    replica:\n      path: {}\n",
            t.p("nowhere").display(),
            t.p("b").display()
        ),
    )
    .unwrap();
    let bad = t.p("bad.yml");
    std::fs::write(
        &bad,
        format!(
            "dbs:\n  - dir: {}\n    pattern: \"[*.db\"\n    replica:\n      path: {}\n",
            t.data.display(),
            t.p("b").display()
        ),
    )
    .unwrap();
    let nopat = t.p("nopat.yml");
    std::fs::write(
        &nopat,
        format!(
            "dbs:\n  - dir: {}\n    replica:\n      path: {}\n",
            t.data.display(),
            t.p("b").display()
        ),
    )
    .unwrap();
    for (cfg, key) in [
        (&missing, "`dir`"),
        (&bad, "`pattern`"),
        (&nopat, "`pattern`"),
    ] {
        for cmd in ["replicate", "databases"] {
            let o = run(&[cmd, "-config", cfg.to_str().unwrap()]);
            let (_, err) = text(&o);
            assert!(!o.status.success(), "{cmd} {}", cfg.display());
            assert_eq!(err.trim_end().lines().count(), 1, "{err}");
            assert!(
                err.contains(key) && err.contains(&cfg.display().to_string()),
                "{err}"
            );
        }
    }
    assert!(
        !t.p("b").exists(),
        "a failed start leaves no replica directory"
    );
}

/// Forty databases in nested directories: one replication pass, then `restore -all` restores
/// each exactly, a few at a time; a database whose replica is corrupt fails by name and
/// leaves neither a file nor a directory; a second run with `-if-db-not-exists` keeps what
/// is there and fills in the rest.
#[test]
fn many_databases_restore_all_in_parallel() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut rels: Vec<String> = (0..39)
        .map(|i| format!("tenant-{}/{}/db-{i}.db", i % 5, i % 3))
        .collect();
    // Alone in its directories: its failure must leave none behind.
    let victim = "lonely/deep/db-99.db".to_string();
    rels.push(victim.clone());
    for (i, rel) in rels.iter().enumerate() {
        wal_db(&data.join(rel), i + 1);
    }
    let cfg = tmp.path().join("c.yml");
    let backup = tmp.path().join("backup");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - dir: {}\n    pattern: \"db-*.db\"\n    recursive: true\n    replica:\n      path: {}\n",
            data.display(),
            backup.display()
        ),
    )
    .unwrap();
    let (out, _) = ok(&["databases", "-config", cfg.to_str().unwrap()]);
    assert_eq!(listed(&out), 41, "{out}");
    ok(&["replicate", "-once", "-config", cfg.to_str().unwrap()]);

    // Corrupt the victim's snapshot.
    for e in std::fs::read_dir(backup.join(&victim).join("snapshots")).unwrap() {
        let p = e.unwrap().path();
        let mut bytes = std::fs::read(&p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&p, bytes).unwrap();
    }

    let out_dir = tmp.path().join("restored");
    let o = run(&[
        "restore",
        "-all",
        "-o",
        out_dir.to_str().unwrap(),
        backup.to_str().unwrap(),
    ]);
    let (said, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains(&format!("memsync: error: {victim}: ")),
        "{err}"
    );
    assert!(err.contains("1 of 40 databases failed"), "{err}");
    assert!(!out_dir.join("lonely").exists(), "no directory left for it");
    let mut want: Vec<String> = rels.iter().filter(|r| **r != victim).cloned().collect();
    for rel in &want {
        assert_eq!(rows(&out_dir.join(rel)), rows(&data.join(rel)), "{rel}");
        assert!(said.contains(&format!("restored {rel} ")), "{said}");
    }
    want.sort();
    assert_eq!(
        walk(&out_dir),
        want,
        "only the databases, no temporary files"
    );

    // The replica started afresh, a second run fills in only what is missing.
    std::fs::remove_dir_all(backup.join(&victim)).unwrap();
    ok(&["replicate", "-once", "-config", cfg.to_str().unwrap()]);
    let (said, _) = ok(&[
        "restore",
        "-all",
        "-if-db-not-exists",
        "-o",
        out_dir.to_str().unwrap(),
        backup.to_str().unwrap(),
    ]);
    assert_eq!(said.matches("already exists").count(), 39, "{said}");
    assert_eq!(rows(&out_dir.join(&victim)), rows(&data.join(&victim)));
}

/// The same on S3 (SeaweedFS) and WebDAV (nginx) replicas: each database at `<url>/<rel>`,
/// and `restore -all` finds them by listing the store (S3 in one listing, WebDAV level by level).
#[test]
fn remote_directory_replicas_restore_all() {
    let t = Tree::new();
    let s3 = common::s3::shared();
    let dav = common::webdav::shared();
    let prefix = common::s3::unique_prefix("dirs");
    let (s3_url, dav_url) = (s3.url(&prefix), dav.url(&prefix));
    let cfg = t.p("remote.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n    recursive: true\n    replicas:\n      - name: s3\n        url: {s3_url}\n      - name: dav\n        url: {dav_url}\n",
            t.data.display()
        ),
    )
    .unwrap();
    let memsync = |args: &[&str]| {
        let o = std::process::Command::new(common::BIN)
            .envs(s3.env())
            .args(args)
            .output()
            .unwrap();
        let (out, err) = text(&o);
        assert!(o.status.success(), "memsync {args:?} failed:\n{out}\n{err}");
        out
    };
    memsync(&["replicate", "-once", "-config", cfg.to_str().unwrap()]);
    for (name, url) in [("s3", &s3_url), ("dav", &dav_url)] {
        let out_dir = t.p(&format!("from-{name}"));
        memsync(&["restore", "-all", "-o", out_dir.to_str().unwrap(), url]);
        assert_eq!(walk(&out_dir), DBS, "{name}");
        for rel in DBS {
            assert_eq!(
                rows(&out_dir.join(rel)),
                rows(&t.data.join(rel)),
                "{name} {rel}"
            );
        }
    }
    // By the configured directory, choosing the replica by name.
    let one = t.p("one-dav.db");
    memsync(&[
        "restore",
        "-config",
        cfg.to_str().unwrap(),
        "-replica",
        "dav",
        "-o",
        one.to_str().unwrap(),
        t.data.join("sub/b.db").to_str().unwrap(),
    ]);
    assert_eq!(rows(&one), rows(&t.data.join("sub/b.db")));
}

/// Files under `dir`, as relative paths.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// `restore -all` where every database fails leaves nothing: not even the output directory it
/// made (one that existed before stays).
#[test]
fn restore_all_that_restores_nothing_leaves_nothing() {
    let t = Tree::new();
    let cfg = t.config("c.yml", "backup", "    recursive: true\n");
    ok(&["replicate", "-once", "-config", &cfg]);
    for rel in DBS {
        for e in std::fs::read_dir(t.p("backup").join(rel).join("snapshots")).unwrap() {
            std::fs::write(e.unwrap().path(), b"").unwrap();
        }
    }
    let backup = t.p("backup");
    for (out_dir, existed) in [(t.p("new/restored"), false), (t.p("there"), true)] {
        if existed {
            std::fs::create_dir(&out_dir).unwrap();
        }
        let o = run(&[
            "restore",
            "-all",
            "-o",
            out_dir.to_str().unwrap(),
            backup.to_str().unwrap(),
        ]);
        let (_, err) = text(&o);
        assert!(!o.status.success(), "{err}");
        assert!(err.contains("3 of 3 databases failed"), "{err}");
        assert_eq!(out_dir.exists(), existed, "{}", out_dir.display());
        assert!(!t.p("new").exists(), "a directory made for nothing stayed");
    }
}
