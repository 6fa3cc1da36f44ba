//! `restore -all` at the edges: a first boot (the directory replica missing or empty) and a
//! database directory taken for a directory replica.

mod common;

use common::{app_conn, run};

fn ok(args: &[&str]) {
    let o = run(args);
    assert!(
        o.status.success(),
        "memsync {args:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `restore -all -if-replica-exists` on a first boot restores nothing and succeeds, as the
/// single-database form does (it failed: "holds no database replicas", or "not a directory
/// replica" for a missing one); and a database directory taken for a directory replica offers
/// none of memsync's spools (`.<name>-memsync/spool` has the replica layout: they were restored
/// as databases, then failed).
#[test]
fn restore_all_on_a_first_boot_or_a_database_directory() {
    let d = tempfile::tempdir().unwrap();
    let p = |rel: &str| d.path().join(rel);
    std::fs::create_dir(p("empty")).unwrap();
    for rep in ["never-made", "empty"] {
        ok(&[
            "restore",
            "-all",
            "-if-replica-exists",
            "-o",
            p("out").to_str().unwrap(),
            p(rep).to_str().unwrap(),
        ]);
        assert!(!p("out").exists(), "{rep}");
    }
    std::fs::create_dir(p("data")).unwrap();
    let c = app_conn(&p("data/a.db"));
    c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(c);
    let cfg = p("c.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n    replica:\n      path: {}\n",
            p("data").display(),
            p("backup").display()
        ),
    )
    .unwrap();
    ok(&["replicate", "-once", "-config", cfg.to_str().unwrap()]);
    assert!(p("data/.a.db-memsync/spool/snapshots").is_dir());
    let o = run(&[
        "restore",
        "-all",
        "-o",
        p("out2").to_str().unwrap(),
        p("data").to_str().unwrap(),
    ]);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(!o.status.success(), "{out}{err}");
    assert!(err.contains("holds no database replicas"), "{err}");
    assert!(
        !out.contains("-memsync") && !err.contains("-memsync/spool"),
        "{out}{err}"
    );
    // `-db ./a.db` is `a.db`; `-all -o` naming a file says so.
    ok(&[
        "restore",
        "-o",
        p("one.db").to_str().unwrap(),
        "-db",
        "./a.db",
        p("backup").to_str().unwrap(),
    ]);
    std::fs::write(p("afile"), b"x").unwrap();
    let o = run(&[
        "restore",
        "-all",
        "-o",
        p("afile").to_str().unwrap(),
        p("backup").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("a file is there"),
        "{err}"
    );
}

/// A directory replica Litestream wrote (`<db>/ltx/<level>/*.ltx`) is named as such, with its
/// databases counted (it said "holds no database replicas").
#[test]
fn restore_all_of_a_litestream_directory_replica_says_whose_it_is() {
    let d = tempfile::tempdir().unwrap();
    for db in ["a.db", "sub/b.db"] {
        let level = d.path().join("rep").join(db).join("ltx/0");
        std::fs::create_dir_all(&level).unwrap();
        std::fs::write(
            level.join("0000000000000001-0000000000000001.ltx"),
            b"LTX1 not read",
        )
        .unwrap();
    }
    let out = d.path().join("out");
    let o = run(&[
        "restore",
        "-all",
        "-o",
        out.to_str().unwrap(),
        d.path().join("rep").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("Litestream backups of 2 database(s)"), "{err}");
    assert!(!out.exists());
}
