//! `repair` of a damaged staging database: what it salvages and what it says was lost, all or
//! nothing, the merge base kept, the damaged file kept aside under a name of its own, and
//! stores made while it rebuilds. Real mcp-memory-service servers, real SQLite.

mod common;

use std::path::Path;

use common::mms::{Machine, Server, free_port, named_path, remote_and_local};
use serde_json::json;

/// The rows a repair salvaged and those it could not read, from its message.
fn repair_counts(out: &str) -> (usize, usize) {
    let count = |marker: &str| -> usize {
        out.split(marker)
            .next()
            .and_then(|s| s.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count before {marker:?} in: {out}"))
    };
    (count(" rows salvaged"), count(" could not be read"))
}

/// Overwrites a leaf page in the middle of the `staged_memories` table: the rows on it become
/// unreadable, the others (and the index counts) stay readable.
fn damage_a_table_leaf(staging: &Path) {
    let c = rusqlite::Connection::open(staging).unwrap();
    c.pragma_update(None, "wal_checkpoint", "TRUNCATE").unwrap();
    let root: u32 = c
        .query_row(
            "SELECT rootpage FROM sqlite_master WHERE name = 'staged_memories'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let page_size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    let page_size = page_size as usize;
    drop(c);
    let mut bytes = std::fs::read(staging).unwrap();
    let at = (root as usize - 1) * page_size;
    let page = &bytes[at..at + page_size];
    assert_eq!(page[0], 0x05, "the table needs an interior root page");
    let cells = u16::from_be_bytes([page[3], page[4]]) as usize;
    assert!(cells >= 2, "the table needs several leaves");
    // The cell pointer array starts at offset 12; each cell opens with its child's page number.
    let ptr = 12 + 2 * (cells / 2);
    let cell = u16::from_be_bytes([page[ptr], page[ptr + 1]]) as usize;
    let child = u32::from_be_bytes(page[cell..cell + 4].try_into().unwrap()) as usize;
    bytes[(child - 1) * page_size..child * page_size].fill(0xA5);
    std::fs::write(staging, &bytes).unwrap();
}

#[test]
fn two_repairs_in_one_second_keep_both_damaged_files_and_count_what_was_lost() {
    let dir = tempfile::tempdir().unwrap();
    let m = Machine::new(&dir.path().join("m"), free_port());
    let pad = "padding so the rows span several pages ".repeat(8);
    for i in 0..40 {
        m.ok(&["store", "--offline", &format!("staged {i} {pad}")]);
    }
    let ids = |p: &Path| -> Vec<(i64, String)> {
        let c = rusqlite::Connection::open(p).unwrap();
        let mut s = c
            .prepare("SELECT id, content FROM staged_memories ORDER BY id")
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let before = ids(&m.staging_path());
    damage_a_table_leaf(&m.staging_path());
    let first = m.ok(&["repair"]);
    let (salvaged, lost) = repair_counts(&first);
    assert!(lost > 0 && salvaged + lost == 40, "{first}");
    assert_eq!(m.staged("pending") as usize, salvaged);
    // The rows keep the ids `edit` and `drop` know them by (before: renumbered in the order
    // they were read), and a new row does not take a lost row's id.
    let after = ids(&m.staging_path());
    let moved: Vec<i64> = after
        .iter()
        .filter(|r| !before.contains(r))
        .map(|r| r.0)
        .collect();
    assert!(moved.is_empty(), "rows given other ids: {moved:?}");
    m.ok(&["store", "--offline", "staged after the repair"]);
    let newest = ids(&m.staging_path()).last().unwrap().0;
    assert_eq!(newest, 41, "a lost row's id handed out again");
    // Damaged again at once: the second repair keeps its own damaged file.
    damage_a_table_leaf(&m.staging_path());
    let second = m.ok(&["repair"]);
    let (a, b) = (
        named_path(&first, "the damaged file is kept as "),
        named_path(&second, "the damaged file is kept as "),
    );
    assert_ne!(a, b, "{first}\n{second}");
    for p in [&a, &b] {
        let rows: i64 = rusqlite::Connection::open(p)
            .unwrap()
            .query_row(
                "SELECT COUNT(*) FROM staged_memories WHERE state = 'pending'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(rows > 0, "{} holds the damaged rows", p.display());
    }
}

#[test]
fn a_damaged_staging_database_is_named_by_push_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let m = Machine::new(&dir.path().join("m"), server.port);
    let pad = "padding so the rows span several pages ".repeat(8);
    for i in 0..40 {
        m.ok(&["store", "--offline", &format!("waiting {i} {pad}")]);
    }
    damage_a_table_leaf(&m.staging_path());
    let status = m.ok(&["status"]);
    assert!(
        status.contains("damaged") && status.contains("memsync repair"),
        "{status}"
    );
    let err = m.fails(&["push"]);
    assert!(
        err.contains("damaged") && err.contains("memsync repair") && !err.contains("left pending"),
        "{err}"
    );
    let err = m.fails(&["sync"]);
    assert!(
        err.contains("memsync repair") && !err.contains("left pending"),
        "{err}"
    );
    // Repaired, what could be read goes out.
    m.ok(&["repair"]);
    let salvaged = m.staged("pending");
    assert!(m.ok(&["push"]).contains(&format!("pushed {salvaged}")));
}

/// A repair killed while it rebuilds leaves the damaged database where it was (the next repair
/// salvages all of it again), and a completed repair keeps the merge base: the next sync does
/// not bring back a tag another machine removed. (Before: the damaged file was moved aside
/// first, so a kill left a sound-looking database with part of the queue; and the rebuilt
/// file had no merge base, so the sync took the union and restored the removed tag.)
#[test]
fn a_repair_is_all_or_nothing_and_keeps_the_merge_base() {
    common::require_fault_points();
    let dir = tempfile::tempdir().unwrap();
    let (server, _local, m) = remote_and_local(dir.path());
    let c = "a memory whose tag another machine removes";
    server.post(c, &["keep", "obsolete"], json!({}));
    m.ok(&["pull"]);
    server.put_tags(c, &["keep"]);
    let pad = "padding so the rows span several pages ".repeat(8);
    for i in 0..40 {
        m.ok(&["store", "--offline", &format!("staged {i} {pad}")]);
    }
    damage_a_table_leaf(&m.staging_path());
    let killed = m
        .with("MEMSYNC_FAULT", "repair-rebuild:crash")
        .run(&["repair"]);
    assert!(!killed.status.success());
    let out = m.ok(&["repair"]);
    let (salvaged, lost) = repair_counts(&out);
    assert!(lost > 0 && salvaged + lost == 40, "{out}");
    assert!(out.contains("merge base of 1 memories kept"), "{out}");
    m.ok(&["sync"]);
    assert_eq!(server.tags(c), vec!["keep"]);
}

/// A store while `repair` rebuilds the staging database waits, and lands in the rebuilt file.
/// (Before: it went into the damaged file after the repair had read it, was acknowledged as
/// staged, and was gone once the rebuilt file replaced it, kept only in the file set aside.)
#[test]
fn a_store_during_a_repair_lands_in_the_rebuilt_database() {
    common::require_fault_points();
    let dir = tempfile::tempdir().unwrap();
    let m = Machine::new(&dir.path().join("m"), free_port());
    let pad = "padding so the rows span several pages ".repeat(8);
    for i in 0..40 {
        m.ok(&["store", "--offline", &format!("staged {i} {pad}")]);
    }
    damage_a_table_leaf(&m.staging_path());
    let hold = dir.path().join("hold");
    std::fs::write(&hold, "").unwrap();
    let log = dir.path().join("repair.err");
    let mut repair = m
        .with("MEMSYNC_FAULT", "repair-rebuild:pause")
        .with("MEMSYNC_FAULT_HOLD", hold.to_str().unwrap())
        .command(&["repair"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("paused")
    {
        assert!(t0.elapsed().as_secs() < 60, "repair never paused");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let content = "stored while the repair runs";
    let mut store = m
        .with("SYNC_LOCK_WAIT", "120")
        .command(&["store", "--offline", content]);
    store.stdin(std::process::Stdio::null());
    // The store runs on its own thread of this test: it waits for the repair, released below.
    let store = std::thread::spawn(move || store.output());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    std::fs::remove_file(&hold).unwrap();
    assert!(repair.wait().unwrap().success());
    let out = store.join().unwrap().unwrap();
    assert!(out.status.success(), "{out:?}");
    let n: i64 = rusqlite::Connection::open(m.staging_path())
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM staged_memories WHERE content = ?1",
            [content],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        n, 1,
        "the store acknowledged during the repair is not in staging"
    );
}
