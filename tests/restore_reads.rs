//! What a restore reads (issue 13): restore time must not grow with history. After a run of
//! writes that rewrite the same pages sync after sync, a restore of the newest state reads
//! about what a restore of a fresh snapshot reads, not every version of every page the chain
//! holds; and what it builds is exactly the source. (Within 15 % here, with whole 4-page runs
//! fetched around the pages needed, on a 3 MB database where a few rewritten pages weigh more
//! than in the benchmark's 200 MB one, which reads 1.08× through the index against 1.16–1.61×
//! file by file; the file-by-file path reads 1.4–1.6× here.)

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// Bytes of replica files a restore may read besides the pages: per file, its header and its
/// trailer with the bytes fetched before it in case the run index fits (4 KiB).
const PER_FILE: u64 = 96 + 4096 + 24;

/// The "(N files, B bytes)" of memsync's restore line.
fn files_and_bytes(stdout: &str) -> (u64, u64) {
    let inner = stdout.rsplit_once(" files, ").and_then(|(a, b)| {
        let files = a.rsplit_once('(')?.1.parse().ok()?;
        let bytes = b.split_once(" bytes")?.0.parse().ok()?;
        Some((files, bytes))
    });
    inner.unwrap_or_else(|| panic!("no file and byte count in {stdout:?}"))
}

/// Size of the snapshot `memsync replicate -once` takes of `db` into a new replica.
fn fresh_snapshot_bytes(dir: &Path, db: &Path) -> u64 {
    let replica = dir.join("fresh-replica");
    let config = dir.join("fresh.yml");
    std::fs::write(
        &config,
        format!(
            "dbs:\n  - path: {}\n    replicas:\n      - type: file\n        path: {}\n",
            db.display(),
            replica.display()
        ),
    )
    .unwrap();
    let o = run(&["replicate", "-once", "-config", config.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let snaps: Vec<_> = std::fs::read_dir(replica.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .collect();
    assert_eq!(snaps.len(), 1, "one fresh snapshot");
    snaps[0]
}

/// Total size of the files under `dir`, recursively.
fn du(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    du(&e.path())
                } else {
                    e.metadata().unwrap().len()
                }
            })
            .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_restore_after_many_rewrites_reads_about_a_fresh_snapshot() {
    // Level-1 files of 2 s: the chain is a snapshot and a file per 2 s, each holding its own
    // version of the rewritten pages (as the 5-minute and hourly files do over hours).
    let s = Scene::new(
        "",
        "        sync-interval: 1s\nlevels:\n  - interval: 2s\n    retention: 1h\n",
    );
    let app = create_memdb(&s.db);
    for i in 1..=2000 {
        insert_memory(&app, i);
    }
    let r = s.start_with(&[("MEMSYNC_COMPACTION_INTERVAL", "1s")]);
    // Twelve seconds of syncs, each rewriting every memory's text (all of the table's pages
    // come back in every file of the chain) and adding a few memories.
    let mut next = 2001;
    for round in 0..24 {
        let tx = app.unchecked_transaction().unwrap();
        tx.execute(
            "UPDATE memories SET content = substr(content, 1, 60) || ?1 || hex(randomblob(40)), updated_at = ?2",
            rusqlite::params![format!(" r{round:02}"), round as f64],
        )
        .unwrap();
        tx.commit().unwrap();
        for _ in 0..5 {
            insert_memory(&app, next);
            next += 1;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    s.wait_for_rows(next as i64 - 1);
    let (st, log) = r.stop();
    assert!(st.success(), "{log}");

    let out = s.dir.path().join("restored.db");
    let o = run(&["restore", "-o", out.to_str().unwrap(), &s.url()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    let (files, read) = files_and_bytes(&stdout);
    assert_same(&app, &check_sound(&out));

    // The file-by-file path (the fault point `restore-files` forces it) reads every file of
    // the chain whole: the scenario must give the index something to skip.
    let seq_out = s.dir.path().join("sequential.db");
    let o = std::process::Command::new(common::BIN)
        .args(["restore", "-o", seq_out.to_str().unwrap(), &s.url()])
        .env("MEMSYNC_FAULT", "restore-files:fail")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let seq = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    let (_, whole) = files_and_bytes(&seq);
    assert_same(&app, &check_sound(&seq_out));

    let fresh = fresh_snapshot_bytes(s.dir.path(), &out);
    let replica = du(&s.replica);
    eprintln!(
        "restore read {read} bytes from {files} files (whole files: {whole}); fresh snapshot {fresh}; replica {replica}"
    );
    assert!(
        whole > fresh + fresh / 5,
        "the chain holds few superseded pages: {seq}"
    );
    assert!(files > 3, "the restore used a chain of files: {stdout}");
    assert!(
        read <= fresh + fresh * 15 / 100 + files * PER_FILE,
        "restore read {read} bytes from {files} files; a fresh snapshot is {fresh} bytes"
    );
}
