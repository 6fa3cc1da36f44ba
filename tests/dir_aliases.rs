//! Two names of one database in a replicated directory (a symlink, a hard link): replicated
//! once, under its real name, at start and while running; the other name is said once.

mod common;

use std::time::Duration;

use common::{BIN, Replicator, app_conn, run};

#[cfg(unix)]
#[test]
fn links_to_a_database_are_replicated_once_at_start_and_while_running() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    let b = data.join("sub/b.db");
    let c = app_conn(&b);
    c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    std::os::unix::fs::symlink("sub/b.db", data.join("link.db")).unwrap();
    // A symlink loop: cannot be read, said once.
    std::os::unix::fs::symlink("loop2.db", data.join("loop1.db")).unwrap();
    std::os::unix::fs::symlink("loop1.db", data.join("loop2.db")).unwrap();
    let cfg = d.path().join("c.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n    recursive: true\n    watch: true\n    replica:\n      path: {}\n",
            data.display(),
            d.path().join("backup").display()
        ),
    )
    .unwrap();
    // Twice: a restart must not refuse the config either ("configured twice").
    for round in 0..2 {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(["replicate", "-config", cfg.to_str().unwrap()]);
        let mut r = Replicator::spawn(cmd, d.path().join(format!("r{round}.log")));
        r.wait_for_log("replicating 1 database(s)");
        if round == 0 {
            // A hard link made while running is another name too.
            std::fs::hard_link(&b, data.join("hard.db")).unwrap();
        }
        std::thread::sleep(Duration::from_millis(3000));
        let (st, log) = r.stop();
        assert!(st.success(), "{log}");
        assert!(log.contains("link.db: another name of"), "{log}");
        assert!(!log.contains("already being replicated"), "{log}");
        assert!(!log.contains("refuses this config"), "{log}");
        assert!(
            !log.contains("new database"),
            "a second name was replicated:\n{log}"
        );
        if round == 0 {
            assert!(log.contains("hard.db: another name of"), "{log}");
        }
        // Each said once per run (the watcher's first scan said again what the start had).
        // At the restart the hard link, first by path, is the name replicated.
        let twin = ["hard.db: another name of", "sub/b.db: another name of"][round];
        for name in ["link.db: another name of", twin] {
            assert_eq!(log.matches(name).count(), 1, "{name}:\n{log}");
        }
        for name in ["loop1.db", "loop2.db"] {
            let lines = log.lines().filter(|l| l.contains(name)).count();
            assert_eq!(lines, 1, "{name}:\n{log}");
        }
    }
    let o = run(&["databases", "-config", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A `dir` entry named through a symlinked folder: restore by the folder's real path finds
/// the database (before: "not in config, nor a replica directory").
#[cfg(unix)]
#[test]
fn a_database_of_a_symlinked_dir_entry_restores_by_its_real_path() {
    let d = tempfile::tempdir().unwrap();
    let real = d.path().join("real/ten");
    std::fs::create_dir_all(real.join("acme")).unwrap();
    let c = app_conn(&real.join("acme/data.db"));
    c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (7);")
        .unwrap();
    drop(c);
    std::os::unix::fs::symlink(d.path().join("real"), d.path().join("lnk")).unwrap();
    let cfg = d.path().join("c.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n    recursive: true\n    replica:\n      path: {}\n",
            d.path().join("lnk/ten").display(),
            d.path().join("backup").display()
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let o = run(&["replicate", "-once", "-config", cfg]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = d.path().join("out.db");
    let db = real.join("acme/data.db");
    let o = run(&[
        "restore",
        "-config",
        cfg,
        "-o",
        out.to_str().unwrap(),
        db.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.is_file());
}
