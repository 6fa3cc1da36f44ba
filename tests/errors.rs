//! Bad input gets one clear line, a non-zero exit, no panic, and nothing half-written.

mod common;

use common::refuse::*;
use common::*;

#[test]
fn bad_configs_are_refused_with_the_key_and_line() {
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("db.sqlite");
    create_memdb(&db);
    let p = db.display();
    let r = d.path().join("r").display().to_string();
    let cases: Vec<(String, Vec<&str>)> = vec![
        (String::new(), vec!["no databases"]),
        (
            format!(
                "dbs:\n  - path: {p}\n    replicas:\n      - path: {r}\n        sync-intervall: 1s\n"
            ),
            vec!["sync-intervall", ":5:", "sync-interval"],
        ),
        (
            format!(
                "dbs:\n  - path: {p}\n    monitor-interval: -1s\n    replicas:\n      - path: {r}\n"
            ),
            vec!["negative"],
        ),
        (
            format!(
                "dbs:\n  - path: {p}\n    replicas:\n      - path: {r}\n  - path: {p}2\n    replicas:\n      - path: {r}\n"
            ),
            vec!["same place"],
        ),
        (
            format!("dbs:\n  - path: {p}\n    replicas:\n      - path: $NO_SUCH_VAR_MEMSYNC/x\n"),
            vec!["NO_SUCH_VAR_MEMSYNC"],
        ),
        ("dbs: [unclosed\n".to_string(), vec!["litestream.yml"]),
    ];
    for (yaml, needles) in cases {
        let o = replicate_with(d.path(), &yaml);
        assert_fails(&o, &needles);
    }
    assert!(
        !d.path().join("r").exists(),
        "a refused config created the replica"
    );
}

#[test]
fn databases_that_cannot_be_replicated_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("r");
    // Missing database, missing directory.
    let o = run(&[
        "replicate",
        d.path().join("nope.db").to_str().unwrap(),
        r.to_str().unwrap(),
    ]);
    assert_fails(&o, &["nope.db", "does not exist"]);
    let o = run(&[
        "replicate",
        d.path().join("no/dir.db").to_str().unwrap(),
        r.to_str().unwrap(),
    ]);
    assert_fails(&o, &["directory", "does not exist"]);
    // Not an SQLite file.
    let junk = d.path().join("junk.db");
    std::fs::write(&junk, b"hello, this is not a database at all.............").unwrap();
    let o = run(&["replicate", junk.to_str().unwrap(), r.to_str().unwrap()]);
    assert_fails(&o, &["junk.db", "not an SQLite database"]);
    // Rollback-journal database: refused unless converting is asked for, and left untouched.
    let rb = d.path().join("rollback.db");
    {
        let c = rusqlite::Connection::open(&rb).unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    let o = run(&["replicate", rb.to_str().unwrap(), r.to_str().unwrap()]);
    assert_fails(&o, &["rollback.db", "delete", "-convert-to-wal"]);
    let mode: String = rusqlite::Connection::open(&rb)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
    let o = run(&[
        "replicate",
        "-once",
        "-convert-to-wal",
        rb.to_str().unwrap(),
        r.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn bad_restores_fail_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out.db");
    let missing = format!("file://{}", d.path().join("missing").display());
    let o = run(&["restore", "-o", out.to_str().unwrap(), &missing]);
    assert_fails(&o, &["missing", "does not exist"]);
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let url = format!("file://{}", empty.display());
    let o = run(&["restore", "-o", out.to_str().unwrap(), &url]);
    assert_fails(&o, &["holds no backup"]);
    let o = run(&[
        "restore",
        "-if-replica-exists",
        "-o",
        out.to_str().unwrap(),
        &url,
    ]);
    assert!(o.status.success());
    // Places that are not what the command needs are named for what they are.
    let afile = d.path().join("afile");
    std::fs::write(&afile, b"x").unwrap();
    let o = run(&["wal", &format!("file://{}", afile.display())]);
    assert_fails(&o, &["afile", "not a replica directory"]);
    assert!(o.stdout.is_empty(), "no listing header above the error");
    let o = run(&["restore", "-o", afile.join("o.db").to_str().unwrap(), &url]);
    assert_fails(&o, &["afile is not a directory"]);
    let o = run(&["restore", "-o", d.path().to_str().unwrap(), &url]);
    assert_fails(&o, &["is a directory"]);
    std::fs::write(d.path().join("stale.db-wal"), b"").unwrap();
    let stale = d.path().join("stale.db");
    let o = run(&["restore", "-o", stale.to_str().unwrap(), &url]);
    assert_fails(&o, &["stale.db-wal exists without its database"]);
    std::fs::remove_file(d.path().join("stale.db-wal")).unwrap();
    std::fs::remove_file(&afile).unwrap();
    // A replica never created (a first boot) is no backup either.
    let o = run(&[
        "restore",
        "-if-replica-exists",
        "-o",
        out.to_str().unwrap(),
        &missing,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!out.exists());
    let o = run(&["restore", &url]);
    assert_fails(&o, &["-o"]);
    let o = run(&[
        "restore",
        "-timestamp",
        "yesterday",
        "-o",
        out.to_str().unwrap(),
        &url,
    ]);
    assert_fails(&o, &["-timestamp", "RFC 3339"]);
    let o = run(&["restore", "-txid", "xyz", "-o", out.to_str().unwrap(), &url]);
    assert_fails(&o, &["-txid"]);
    let o = run(&[
        "restore",
        "-o",
        d.path().join("no/such/dir.db").to_str().unwrap(),
        &url,
    ]);
    // Missing directories are made for a restore, and taken away again when it fails.
    assert_fails(&o, &["holds no backup"]);
    assert!(
        !d.path().join("no").exists(),
        "a failed restore left its directory"
    );
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "restore left files behind: {leftovers:?}"
    );
}

#[test]
fn unknown_commands_and_flags_are_usage_errors() {
    let o = run(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["restore", "-bogus-flag", "x"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["version"]);
    assert!(o.status.success());
}

/// Places reached through symlinks are the same places: one database listed under two names,
/// and two replicas whose paths lead to one directory, are refused before anything starts.
#[test]
fn symlinked_aliases_of_one_database_or_replica_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("db.sqlite");
    create_memdb(&db);
    let alias = d.path().join("alias.db");
    std::os::unix::fs::symlink(&db, &alias).unwrap();
    let (p, a) = (db.display(), alias.display());
    let (r1, r2) = (d.path().join("r1"), d.path().join("r2"));
    let o = replicate_with(
        d.path(),
        &format!(
            "dbs:\n  - path: {p}\n    replicas:\n      - path: {}\n  - path: {a}\n    replicas:\n      - path: {}\n",
            r1.display(),
            r2.display()
        ),
    );
    assert_fails(&o, &["configured twice", "alias.db"]);
    let other = d.path().join("other.sqlite");
    create_memdb(&other);
    let shared = d.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let via = d.path().join("via");
    std::os::unix::fs::symlink(&shared, &via).unwrap();
    let o = replicate_with(
        d.path(),
        &format!(
            "dbs:\n  - path: {p}\n    replicas:\n      - path: {}\n  - path: {}\n    replicas:\n      - path: {}/x\n",
            shared.join("x").display(),
            other.display(),
            via.display()
        ),
    );
    assert_fails(&o, &["same place"]);
    assert!(
        !r1.exists() && !shared.join("x").exists(),
        "a refused config started replicating"
    );
}

/// A reader that stops early (`memsync … | head`) ends the listing quietly: no panic.
#[test]
fn a_closed_stdout_is_no_panic() {
    let mut child = std::process::Command::new(BIN)
        .arg("version")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}

/// `replicate -once` that could not bring every replica to what was committed fails, naming
/// the replica; the replicas that answered got everything.
#[test]
fn once_fails_when_a_replica_did_not_get_everything() {
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("d.db");
    let c = create_memdb(&db);
    insert_memories(&c, 1..=3);
    let cfg = d.path().join("c.yml");
    let rep = d.path().join("rep");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replicas:\n      - name: local\n        path: {}\n      - name: away\n        url: http://127.0.0.1:9/x\n",
            db.display(),
            rep.display()
        ),
    )
    .unwrap();
    let o = run(&["replicate", "-once", "-config", cfg.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.starts_with("memsync: error: replica away") && last.contains("did not get everything"),
        "{err}"
    );
    let out = d.path().join("out.db");
    let o = run(&[
        "restore",
        "-o",
        out.to_str().unwrap(),
        rep.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same(&c, &check_sound(&out));
}

/// Ctrl-C, SIGTERM or SIGHUP during a restore: the temporary output goes, the exit code says
/// which signal (it left `OUTPUT.<pid>.tmp` behind, which nothing removed). Held at its fault
/// points (debug builds) with the output written, so the signal provably lands mid-restore:
/// before it is put in place, and inside `-integrity-check` (whose WAL and index beside the
/// temporary output stayed), with the output's directories made by the restore (they stayed).
#[test]
fn a_restore_stopped_by_a_signal_leaves_nothing() {
    require_fault_points();
    let s = Scene::new("", "");
    let app = create_memdb(&s.db);
    for i in 1..=20 {
        insert_memory(&app, i);
    }
    let o = run(&["replicate", "-once", s.db.to_str().unwrap(), &s.url()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out_dir = s.dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let hold = s.dir.path().join("hold");
    let signals = [
        (libc::SIGINT, 130),
        (libc::SIGTERM, 143),
        (libc::SIGHUP, 129),
    ];
    for (point, check) in [("restore-finish", "none"), ("restore-check", "full")] {
        for (sig, code) in signals {
            std::fs::write(&hold, b"").unwrap();
            let mut cmd = std::process::Command::new(BIN);
            cmd.args([
                "restore",
                "-integrity-check",
                check,
                "-o",
                out_dir.join("made/deeper/x.db").to_str().unwrap(),
                &s.url(),
            ])
            .env("MEMSYNC_FAULT", format!("{point}:pause"))
            .env("MEMSYNC_FAULT_HOLD", &hold);
            let log = s.dir.path().join(format!("restore-{point}-{sig}.log"));
            let mut r = Replicator::spawn(cmd, log);
            r.wait_for_log(&format!("fault point {point}: paused"));
            r.signal(sig);
            let (st, log) = r.wait();
            assert_eq!(st.code(), Some(code), "{point}: {log}");
            let left: Vec<_> = std::fs::read_dir(&out_dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert!(left.is_empty(), "{point}: left behind: {left:?}\n{log}");
        }
    }
}

/// `serve` that cannot start (an address it cannot listen on, a missing certificate) says so
/// in one line, exits non-zero and leaves no served directory behind (it made `-dir` first).
#[test]
fn a_serve_that_cannot_start_leaves_no_directory() {
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("srv/z");
    let key = dir.path().join("key.pem");
    std::fs::write(&key, "not a key").unwrap();
    for extra in [
        &["-addr", "127.0.0.1"][..],
        &[
            "-addr",
            "127.0.0.1:0",
            "-tls-cert",
            "/nonexistent/cert.pem",
            "-tls-key",
            key.to_str().unwrap(),
        ],
    ] {
        let o = run(&[&["serve", "-dir", served.to_str().unwrap()], extra].concat());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{extra:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{extra:?}: {err}");
        assert!(
            !dir.path().join("srv").exists(),
            "{extra:?} left {}",
            served.display()
        );
    }
}

/// `serve -dir` naming a file says so (it said "File exists").
#[test]
fn serve_of_a_file_says_it_is_not_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.db");
    std::fs::write(&file, b"x").unwrap();
    let o = run(&[
        "serve",
        "-dir",
        file.to_str().unwrap(),
        "-addr",
        "127.0.0.1:0",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("not a directory") && err.contains("app.db"),
        "{err}"
    );
}

/// A `LOG_LEVEL` naming no level: the long-running commands refuse it in one line naming the
/// variable; the others say it is ignored and go on (it was ignored silently).
#[test]
fn a_bad_log_level_variable_is_refused_or_said_to_be_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("srv");
    let o = std::process::Command::new(BIN)
        .args([
            "serve",
            "-dir",
            served.to_str().unwrap(),
            "-addr",
            "127.0.0.1:0",
        ])
        .env("LOG_LEVEL", "loud")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("LOG_LEVEL=\"loud\""), "{err}");
    let o = std::process::Command::new(BIN)
        .args(["version"])
        .env("LOG_LEVEL", "loud")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("warning: LOG_LEVEL=\"loud\"") && err.contains("ignored"),
        "{err}"
    );
}

/// A relative `file:` URL is refused by the reading commands as `replicate` refuses it (they
/// took it for a folder named `file:rel` and said "No such file or directory"); `file:/abs`
/// names the replica.
#[test]
fn a_relative_file_url_is_refused_by_restore_and_listings() {
    let s = Scene::new("", "");
    let app = create_memdb(&s.db);
    insert_memory(&app, 1);
    let o = run(&["replicate", "-once", s.db.to_str().unwrap(), &s.url()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = s.dir.path().join("out.db");
    let o = run(&["restore", "-o", out.to_str().unwrap(), "file:rel/rep"]);
    assert_fails(&o, &["file:rel/rep", "absolute path"]);
    let o = run(&["snapshots", "file:rel/rep"]);
    assert_fails(&o, &["file:rel/rep", "absolute path"]);
    let abs = format!("file:{}", s.replica.display());
    let o = run(&["restore", "-o", out.to_str().unwrap(), &abs]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.exists());
}

/// Every replica of a database unreachable: each is listed once (they were listed to pick the
/// newest, then each tried again), and the error names them all, not the last one alone.
#[test]
fn a_restore_with_no_replica_answering_says_so_for_each_once() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replicas:\n      - name: one\n        url: http://127.0.0.1:9/a\n      - name: two\n        url: http://127.0.0.1:9/b\n",
            d.path().join("app.db").display()
        ),
    )
    .unwrap();
    let out = d.path().join("out.db");
    let o = run(&[
        "restore",
        "-config",
        cfg.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        d.path().join("app.db").to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.contains("none of the 2 replicas could be listed")
            && last.contains("replica one")
            && last.contains("replica two"),
        "{err}"
    );
    assert_eq!(
        err.matches("replica one").count(),
        2,
        "listed again:\n{err}"
    );
    assert!(!out.exists());
}
