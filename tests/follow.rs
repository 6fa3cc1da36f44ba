//! A followed copy (the benchmark's precise lag probe) applies each new segment as it arrives,
//! verified as a restore verifies it, and ends equal to the source.

mod common;

use std::time::{Duration, Instant};

use common::*;
use memsync::restore::follow::Follower;

#[test]
fn a_followed_copy_keeps_up_with_every_commit() {
    let s = Scene::new("", "        sync-interval: 0s\n");
    let app = create_memdb(&s.db);
    let r = s.start();
    let rt = memsync::runtime().unwrap();
    let out = s.dir.path().join("follow.db");
    // The replica appears with the replicator's first snapshot.
    let t0 = Instant::now();
    let mut f = loop {
        let _ = std::fs::remove_file(&out);
        let started = memsync::restore::open_url(&s.url())
            .map_err(|e| e.to_string())
            .and_then(|c| Follower::start(c, rt.handle(), &out).map_err(|e| e.to_string()));
        match started {
            Ok(f) => break f,
            Err(e) => {
                assert!(t0.elapsed() < Duration::from_secs(20), "no replica: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    let mut applied = 0;
    for i in 1..=300u64 {
        insert_memory(&app, i);
        if i % 3 == 0 {
            applied += f
                .catch_up(rt.handle())
                .unwrap_or_else(|e| panic!("after row {i}: {e}"));
        }
        std::thread::sleep(Duration::from_millis(4));
    }
    let t0 = Instant::now();
    loop {
        applied += f.catch_up(rt.handle()).unwrap();
        let c =
            rusqlite::Connection::open_with_flags(&out, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
        let n: i64 = c
            .query_row("SELECT count(*) FROM memories", [], |r| r.get(0))
            .unwrap();
        if n == 300 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "followed copy stuck at {n} rows"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(applied > 10, "followed only {applied} segments");
    let (st, err) = r.stop();
    assert!(st.success(), "{err}");
    assert_same(&app, &check_sound(&out));
}
