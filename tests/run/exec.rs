//! Litestream's `exec`: the child started once replication runs, signals forwarded, its exit
//! code memsync's.

use super::*;

#[test]
fn exec_forwards_sigterm_and_exits_with_the_childs_code() {
    let scene = Scene::new("", "        sync-interval: 100ms\n");
    let c = create_memdb(&scene.db);
    for i in 1..=10 {
        insert_memory(&c, i);
    }
    let home = scene.dir.path().join("home");
    let config = scene.config.display().to_string();
    // A child that exits 7 on SIGTERM, under `replicate -exec`.
    let child = "sh -c 'trap \"exit 7\" TERM; echo child-ready; while :; do sleep 0.1; done'";
    let mut r = Replicator::spawn(
        memsync(
            scene.dir.path(),
            &home,
            &[],
            &["replicate", "-config", &config, "-exec", child],
        ),
        scene.dir.path().join("exec.log"),
    );
    r.wait_for_log("child-ready");
    for i in 11..=25 {
        insert_memory(&c, i);
    }
    let (status, log) = r.stop();
    assert_eq!(status.code(), Some(7), "{log}");
    assert!(
        log.contains("SIGTERM received: forwarding it to sh"),
        "{log}"
    );
    let started = log.find("started sh").expect("child started");
    assert!(
        log.find("replicating 1 database(s)")
            .is_some_and(|i| i < started),
        "the child starts once replication runs:\n{log}"
    );
    let restored = scene.restore("restored.db", &[]);
    assert_same(&c, &check_sound(&restored));

    // Under `run`, the config's `exec`, a child killed by the forwarded signal: 128 + 15.
    let with_exec = scene.dir.path().join("exec.yml");
    let text = std::fs::read_to_string(&scene.config).unwrap();
    std::fs::write(&with_exec, format!("exec: sleep 600\n{text}")).unwrap();
    let mut r = Replicator::spawn(
        memsync(
            scene.dir.path(),
            &home,
            &[],
            &["run", "-config", with_exec.to_str().unwrap()],
        ),
        scene.dir.path().join("exec-run.log"),
    );
    r.wait_for_log("started sleep");
    let (status, log) = r.stop();
    assert_eq!(status.code(), Some(143), "{log}");
    assert!(log.contains("memory sync off"), "{log}");
    // Litestream refuses -exec with -once too.
    let out = memsync(
        scene.dir.path(),
        &home,
        &[],
        &["replicate", "-config", &config, "-once", "-exec", "true"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("-exec cannot be used with -once"));
}

#[test]
fn a_child_that_exits_by_itself_stops_memsync_after_a_final_flush() {
    let scene = Scene::new("", "        sync-interval: 1s\n");
    let c = common::app_conn(&scene.db);
    c.execute_batch("CREATE TABLE t(x INTEGER); INSERT INTO t VALUES (-1);")
        .unwrap();
    // The child commits 100 transactions, the last just before it exits 3: they reach the
    // replica only through memsync's final flush.
    let code = "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nfor i in range(100):\n    c.execute(\"INSERT INTO t VALUES (?)\", (i,))\n    c.commit()\nsys.exit(3)\n";
    let exec = format!("/usr/bin/python3 -c '{code}' {}", scene.db.display());
    assert!(
        Path::new("/usr/bin/python3").exists(),
        "this test's child is /usr/bin/python3 (scripts/harness.sh needs it too)"
    );
    let config = scene.config.display().to_string();
    let mut r = Replicator::spawn(
        memsync(
            scene.dir.path(),
            &scene.dir.path().join("home"),
            &[],
            &["replicate", "-config", &config, "-exec", &exec],
        ),
        scene.dir.path().join("exec.log"),
    );
    let status = r.wait_exit(Duration::from_secs(60));
    let log = r.log();
    assert_eq!(status.and_then(|s| s.code()), Some(3), "{log}");
    assert!(
        log.contains("exited (exit status: 3): shutting down"),
        "{log}"
    );
    let restored = scene.restore("restored.db", &[]);
    let r = rusqlite::Connection::open(&restored).unwrap();
    let (n, max): (i64, i64) = r
        .query_row("SELECT count(*), max(x) FROM t", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((n, max), (101, 99), "the last commits before the exit");
}

/// memsync killed outright (SIGKILL, the OOM killer) takes its `-exec` child with it (SIGTERM
/// on Linux): before, the application went on writing unreplicated, and the next memsync
/// started a second copy of it.
#[cfg(target_os = "linux")]
#[test]
fn a_killed_memsync_takes_its_child_along() {
    let scene = Scene::new("", "        sync-interval: 100ms\n");
    let c = create_memdb(&scene.db);
    insert_memory(&c, 1);
    let home = scene.dir.path().join("home");
    let config = scene.config.display().to_string();
    let mut r = Replicator::spawn(
        memsync(
            scene.dir.path(),
            &home,
            &[],
            &["replicate", "-config", &config, "-exec", "sleep 300"],
        ),
        scene.dir.path().join("exec.log"),
    );
    r.wait_for_log("started sleep (pid ");
    let log = r.log();
    let pid: i32 = log
        .split("started sleep (pid ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .expect("the child's pid in the log");
    r.kill();
    let alive = || {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive() {
        assert!(
            Instant::now() < deadline,
            "the child {pid} outlived memsync"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
