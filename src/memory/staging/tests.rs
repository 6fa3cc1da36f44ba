//! Staging database tests.
use super::*;

fn fields(tags: &[&str]) -> Fields {
    Fields {
        tags: tags.iter().map(|s| s.to_string()).collect(),
        memory_type: Some("note".into()),
        metadata: Map::new(),
    }
}

#[test]
fn staging_twice_keeps_one_row_with_merged_tags() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Staging::open(&dir.path().join("s/staging.db")).unwrap();
    let (a, new_a) = s.stage("Hello", &fields(&["x"]), "m1").unwrap();
    let (b, new_b) = s.stage("  hello ", &fields(&["y"]), "m1").unwrap();
    assert!(new_a && !new_b);
    assert_eq!(a, b);
    let row = s.get(a).unwrap().unwrap();
    assert_eq!(row.fields.tags, vec!["x", "y"]);
    assert_eq!(s.count(State::Pending).unwrap(), 1);
    s.mark_pushed(a, "stored").unwrap();
    assert_eq!(s.count(State::Pending).unwrap(), 0);
    assert!(s.check().unwrap().is_empty());
}

#[test]
fn upstream_schema_is_migrated_without_losing_rows() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("staging.db");
    let c = Connection::open(&p).unwrap();
    c.execute_batch(
        "CREATE TABLE staged_memories(id TEXT PRIMARY KEY, content TEXT NOT NULL, content_hash TEXT NOT NULL,
           tags TEXT, metadata TEXT, memory_type TEXT DEFAULT 'note',
           operation TEXT NOT NULL CHECK (operation IN ('INSERT','UPDATE','DELETE')),
           staged_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, original_created_at TIMESTAMP, source_machine TEXT,
           conflict_status TEXT DEFAULT 'none');
         CREATE TABLE sync_status(key TEXT PRIMARY KEY, value TEXT, updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
         INSERT INTO sync_status(key, value) VALUES ('last_remote_sync', '2026-01-01 00:00:00');
         INSERT INTO staged_memories(id, content, content_hash, tags, operation, source_machine)
           VALUES ('a', 'it''s | here', 'x', '[\"t1\",\"t2\"]', 'INSERT', 'laptop'),
                  ('b', 'second', 'y', 't3,t4', 'INSERT', 'laptop');",
    )
    .unwrap();
    drop(c);
    let s = Staging::open(&p).unwrap();
    let rows = s.in_state(State::Pending, 10).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].content, "it's | here");
    assert_eq!(rows[0].hash, ContentHash::of("it's | here"));
    assert_eq!(rows[1].fields.tags, vec!["t3", "t4"]);
    assert_eq!(
        s.state_get("last_remote_sync").unwrap().as_deref(),
        Some("2026-01-01 00:00:00")
    );
}

#[test]
fn a_foreign_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("other.db");
    Connection::open(&p)
        .unwrap()
        .execute_batch("CREATE TABLE memories(id INTEGER);")
        .unwrap();
    let e = Staging::open(&p).err().unwrap().to_string();
    assert!(e.contains("not a staging database"), "{e}");
}
