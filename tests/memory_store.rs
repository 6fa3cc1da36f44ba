//! Memory sync, store and push, against a real mcp-memory-service 12.4.0 on 127.0.0.1:
//! hashes equal the server's, offline staging, dedup across machines, failures that lose
//! nothing, and a push interrupted by a killed server.

mod common;

use std::time::{Duration, Instant};

use common::mms::{Machine, Server, curl, free_port, hash_of};
use common::proxy::{self, Proxy};

/// Contents that broke the upstream scripts or trip naive hashing.
fn tricky() -> Vec<String> {
    vec![
        "  leading and trailing spaces  ".into(),
        "\u{3000}\u{2003}ideographic and em spaces\u{a0}\n\t".into(),
        "\u{1c}\u{1f}ASCII separators Python strips\u{1e}".into(),
        "ΣΊΣΥΦΟΣ ΌΣΟΣ: Greek capitals with final sigma".into(),
        "İstanbul and ıspanak: Turkish dotted and dotless I".into(),
        "ẞ capital sharp s and ǅ titlecase digraph".into(),
        "emoji 🧠💾 and a ZWJ sequence 👩‍💻".into(),
        "quotes ' \" ` and pipes | || and a backslash \\ and $(echo no)".into(),
        "multi\nline\r\ncontent\n\nwith | blank lines".into(),
        format!("100 KB: {}", "Ünïcödé text, ΣΑΣ | 'quoted' ".repeat(3400)),
    ]
}

#[test]
fn stores_land_under_the_servers_hash_and_restaging_them_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let m = Machine::new(&dir.path().join("m1"), server.port);
    let contents = tricky();
    for c in &contents {
        assert!(c.len() < 1 << 20);
        let out = m.ok(&["store", "--tags", "Test,Unicode", c]);
        let h = hash_of(c);
        assert!(out.contains(&format!("stored {h}")), "{out}");
        // The server files it under our hash, with the content byte for byte.
        let (status, body) = curl("GET", &format!("{}/api/memories/{h}", server.url()), None);
        assert_eq!(status, 200, "{h}: {body}");
        assert_eq!(body["content"].as_str(), Some(c.as_str()));
        assert_eq!(body["content_hash"].as_str(), Some(h.as_str()));
    }
    // The same contents staged offline (as through the upstream scripts' broken push) and
    // pushed: all already there, nothing added.
    for c in &contents {
        let out = m.ok(&["store", "--offline", "--tags", "unicode, TEST", c]);
        assert!(out.contains("staged locally"), "{out}");
    }
    let out = m.ok(&["push"]);
    assert!(
        out.contains(&format!("already on server {}", contents.len())),
        "{out}"
    );
    assert_eq!(server.live_count(), contents.len() as i64);
    assert_eq!(m.staged("pending"), 0);
    // A duplicate answer is success, not failure.
    let out = m.ok(&["store", &contents[0]]);
    assert!(out.contains("already on the server"), "{out}");
}

#[test]
fn store_is_staged_when_the_server_is_down_or_slow_and_push_delivers_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    // Down: nothing listens on the port.
    let down = Machine::new(&dir.path().join("m1"), free_port());
    let out = down.ok(&[
        "store",
        "--tags",
        "offline",
        "written while the server was down",
    ]);
    assert!(
        out.contains("staged locally") && out.contains("cannot connect"),
        "{out}"
    );
    // Slow: the answer takes longer than the offline threshold.
    let p = Proxy::start(server.port);
    p.set_delay(Duration::from_millis(2500));
    let slow = down
        .with("REMOTE_MEMORY_PORT", &p.port.to_string())
        .with("SYNC_OFFLINE_THRESHOLD", "1");
    let t0 = Instant::now();
    let out = slow.ok(&["store", "written while the server was slow"]);
    assert!(
        out.contains("staged locally") && out.contains("no answer within 1s"),
        "{out}"
    );
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert_eq!(down.staged("pending"), 2);
    let st = down.ok(&["status"]);
    assert!(
        st.contains("pending    2") && st.contains("NOT reachable"),
        "{st}"
    );

    let up = down.with("REMOTE_MEMORY_PORT", &server.port.to_string());
    let out = up.ok(&["push"]);
    assert!(out.contains("pushed 2"), "{out}");
    assert_eq!(up.staged("pending"), 0);
    for c in [
        "written while the server was down",
        "written while the server was slow",
    ] {
        assert_eq!(server.rows_with_hash(&hash_of(c)), 1, "{c}");
    }
    let st = up.ok(&["status"]);
    assert!(
        st.contains("pending    0") && st.contains("reachable, mcp-memory-service 12.4.0"),
        "{st}"
    );
    let log = std::fs::read_to_string(dir.path().join("m1/staging/sync.log")).unwrap();
    assert!(
        log.contains("store staged #1") && log.contains("push #1"),
        "{log}"
    );
}

#[test]
fn the_same_memory_from_two_machines_ends_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let a = Machine::new(&dir.path().join("a"), server.port);
    let b = Machine::new(&dir.path().join("b"), server.port);
    a.ok(&[
        "store",
        "--offline",
        "--project",
        "p",
        "Decision: the replica is the source of truth",
    ]);
    b.ok(&[
        "store",
        "--offline",
        "--project",
        "p",
        "  decision: THE REPLICA is the source of truth\n",
    ]);
    assert!(a.ok(&["push"]).contains("stored 1"));
    let out = b.ok(&["push"]);
    assert!(out.contains("already on server 1"), "{out}");
    assert_eq!(
        server.rows_with_hash(&hash_of("Decision: the replica is the source of truth")),
        1
    );
    assert_eq!(server.live_count(), 1);
    assert_eq!((a.staged("pending"), b.staged("pending")), (0, 0));
}

#[test]
fn wrong_key_unreachable_server_and_bad_answers_fail_in_one_line_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let m = Machine::new(&dir.path().join("m"), server.port);
    let bad_key = m.with("REMOTE_MEMORY_API_KEY", "not-the-key");
    let err = bad_key.fails(&["store", "stored with a wrong key"]);
    assert!(
        err.contains("refused the API key (HTTP 401)") && err.contains("kept in staging as #1"),
        "{err}"
    );
    let err = bad_key.fails(&["push"]);
    assert!(err.contains("refused the API key"), "{err}");
    assert_eq!(m.staged("pending"), 1);
    // A key with a newline inside cannot be sent: the setting is named, the key is not shown.
    let err = m
        .with("REMOTE_MEMORY_API_KEY", "test\nkey")
        .fails(&["push"]);
    assert!(
        err.contains("REMOTE_MEMORY_API_KEY")
            && err.contains("control character")
            && !err.contains("test"),
        "{err}"
    );
    assert_eq!(m.staged("pending"), 1);

    let nowhere = m.with("REMOTE_MEMORY_PORT", &free_port().to_string());
    let err = nowhere.fails(&["push"]);
    assert!(
        err.contains("cannot connect") && err.contains("/api/health"),
        "{err}"
    );
    let err = nowhere.fails(&["pull"]);
    assert!(
        err.contains("local memory database") || err.contains("cannot connect"),
        "{err}"
    );

    let p = Proxy::start(server.port);
    let via = m.with("REMOTE_MEMORY_PORT", &p.port.to_string());
    p.set_mode(proxy::GARBAGE);
    let err = via.fails(&["push"]);
    assert!(
        err.contains("unexpected answer") && err.contains("not the memory service"),
        "{err}"
    );
    p.set_mode(proxy::ERROR_500);
    let err = via.fails(&["push"]);
    assert!(
        err.contains("HTTP 500") && err.contains("injected failure"),
        "{err}"
    );
    let err = m.with("REMOTE_MEMORY_PORT", "99999").fails(&["push"]);
    assert!(
        err.contains("REMOTE_MEMORY_PORT") && err.contains("99999"),
        "{err}"
    );
    let err = m
        .with("SYNC_CONFLICT_RESOLUTION", "newest")
        .fails(&["status"]);
    assert!(
        err.contains("SYNC_CONFLICT_RESOLUTION") && err.contains("merge, local, remote"),
        "{err}"
    );
    // An answer cut off mid-body is the network failing: retried, then "try again later".
    p.set_mode(proxy::CUT);
    let o = via.run(&["push"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(5), "{said}");
    assert!(said.contains("broke off"), "{said}");
    assert_eq!(m.staged("pending"), 1, "nothing lost");
    assert_eq!(server.live_count(), 0);

    // A connection closed without an answer once the request went: not "cannot connect"
    // (the request may have arrived), and no https:// hint when TLS does not answer either.
    p.set_mode(proxy::DROP);
    let o = via.run(&["push"]);
    let said = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(5), "{said}");
    assert!(said.contains("broke off without an answer"), "{said}");
    assert!(
        !said.contains("cannot connect") && !said.contains("https"),
        "{said}"
    );
    assert_eq!(m.staged("pending"), 1, "nothing lost");

    p.set_mode(proxy::FORWARD);
    assert!(via.ok(&["push"]).contains("stored 1"));
    assert_eq!(
        server.rows_with_hash(&hash_of("stored with a wrong key")),
        1
    );

    // https:// to a server speaking plain HTTP is a setting to fix, not "offline": one line,
    // exit 1, the memory kept in staging.
    let err = m
        .with("REMOTE_MEMORY_PROTOCOL", "https")
        .fails(&["store", "sent over the wrong protocol"]);
    assert!(
        err.contains("does not speak TLS") && err.contains("http://"),
        "{err}"
    );
    assert_eq!(m.staged("pending"), 1, "kept in staging");
}

#[test]
fn a_push_interrupted_by_a_killed_server_is_rerun_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("server"));
    let m = Machine::new(&dir.path().join("m"), server.port);
    let n = 24;
    let contents: Vec<String> = (0..n)
        .map(|i| format!("memory number {i} written offline"))
        .collect();
    for c in &contents {
        m.ok(&["store", "--offline", c]);
    }
    // Slow the wire so the kill lands in the middle of the push.
    let p = Proxy::start(server.port);
    p.set_delay(Duration::from_millis(150));
    let via = m
        .with("REMOTE_MEMORY_PORT", &p.port.to_string())
        .with("SYNC_BATCH_SIZE", "5");
    let child = via
        .command(&["push"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while server.live_count() < 6 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "push made no progress"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "push should fail when the server dies"
    );
    assert!(
        err.contains("push stopped after") && err.contains("nothing lost"),
        "{err}"
    );
    let stored_before = server.live_count();
    assert!(
        stored_before < n as i64,
        "the kill came too late to test anything"
    );
    assert!(m.staged("pending") > 0);

    server.restart();
    p.set_delay(Duration::ZERO);
    let out = via.ok(&["push"]);
    assert!(out.contains("pushed "), "{out}");
    assert_eq!(m.staged("pending"), 0);
    assert_eq!(m.staged("pushed"), n as i64);
    assert_eq!(server.live_count(), n as i64, "every memory exactly once");
    for c in &contents {
        assert_eq!(server.rows_with_hash(&hash_of(c)), 1, "{c}");
    }
}

/// The server keeps at most 100 tags of at most 100 characters and silently drops the rest:
/// memsync refuses what it would not keep, at `store` and `edit` (nothing stored or changed),
/// and at `push` for a row that got there another way (failed, with the reason; nothing sent).
#[test]
fn tags_the_server_would_silently_drop_are_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let m = Machine::new(&dir.path().join("m"), server.port);
    let many: Vec<String> = (0..99).map(|i| format!("t{i}")).collect();
    let err = m.fails(&["store", "--tags", &many.join(","), "with too many tags"]);
    assert!(
        err.contains("101 tags") && err.contains("at most 100"),
        "{err}"
    );
    let long = "x".repeat(101);
    let err = m.fails(&["store", "--offline", "--tags", &long, "with a long tag"]);
    assert!(err.contains("101 characters"), "{err}");
    assert_eq!(server.live_count(), 0);
    assert!(!m.staging_path().exists(), "nothing staged");

    // 98 of the user's tags and memsync's two fit exactly.
    let fit = &many[..98].join(",");
    assert!(
        m.ok(&["store", "--tags", fit, "with 100 tags"])
            .contains("stored")
    );
    assert_eq!(server.tags("with 100 tags").len(), 100);

    // A staged row that holds too many (an older memsync, a script): refused at push.
    m.ok(&["store", "--offline", "staged, then given too many tags"]);
    let c = rusqlite::Connection::open(m.staging_path()).unwrap();
    let tags = serde_json::to_string(&(0..198).map(|i| format!("row-tag-{i}")).collect::<Vec<_>>())
        .unwrap();
    c.execute(
        "UPDATE staged_memories SET tags = ?1 WHERE state = 'pending'",
        [&tags],
    )
    .unwrap();
    let out = m.exits(3, &["push", "--verbose"]);
    assert!(out.contains("198 tags"), "{out}");
    assert_eq!(server.live_count(), 1);
    let id = c
        .query_row(
            "SELECT id FROM staged_memories WHERE state = 'failed'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap();
    let err = m.fails(&[
        "edit",
        &id.to_string(),
        "--tags",
        &format!("{},a,b", many.join(",")),
    ]);
    assert!(
        err.contains("left as it was") && err.contains("101 tags"),
        "{err}"
    );
    m.ok(&["edit", &id.to_string(), "--tags", "fits"]);
    assert!(m.ok(&["push"]).contains("stored 1"));
    assert_eq!(server.tags("staged, then given too many tags"), ["fits"]);
}

/// `store` of content the server holds, when the comparison (GET) fails: what the store adds
/// is kept in staging ("try again later", exit 5) and reaches the server with the next push;
/// before, it was reported as "already on the server" and dropped.
#[test]
fn a_store_whose_comparison_with_the_server_fails_keeps_what_it_adds() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let m = Machine::new(&dir.path().join("m"), server.port);
    let c = "stored, then stored again with another tag";
    m.ok(&["store", "--tags", "orig", c]);
    let p = Proxy::start(server.port);
    p.set_mode(proxy::GET_MEMORY_500);
    let o = m
        .with("REMOTE_MEMORY_PORT", &p.port.to_string())
        .run(&["store", "--tags", "extra", c]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(5), "{err}");
    assert!(err.contains("kept in staging"), "{err}");
    assert!(!server.tags(c).contains(&"extra".to_owned()));
    assert!(m.ok(&["push"]).contains("updated 1"));
    let tags = server.tags(c);
    assert!(
        tags.contains(&"orig".to_owned()) && tags.contains(&"extra".to_owned()),
        "{tags:?}"
    );
}
