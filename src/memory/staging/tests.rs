//! Staging database tests.
use super::*;
use crate::memory::hash::ContentHash;
use crate::memory::record::Fields;
use serde_json::Map;

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
    assert!(s.mark_pushed(&row, "stored").unwrap());
    assert_eq!(s.count(State::Pending).unwrap(), 0);
    assert!(s.upkeep().check().unwrap().is_empty());
}

/// `store` takes no lock: tags merged into a row while push sends it (or pull settles it) are
/// not undone by what push then writes about the row; the row stays pending, to go again.
#[test]
fn a_row_changed_while_it_was_sent_stays_pending() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("staging.db");
    let mut s = Staging::open(&path).unwrap();
    let (a, _) = s.stage("race", &fields(&["r"]), "m1").unwrap();
    let sent = s.get(a).unwrap().unwrap();
    // Another process stores the same content with another tag meanwhile.
    let mut other = Staging::open(&path).unwrap();
    other.stage("race", &fields(&["extra"]), "m1").unwrap();
    assert!(!s.mark_pushed(&sent, "stored").unwrap());
    assert!(
        !s.rewrite(
            &sent,
            Operation::Update,
            &fields(&["r"]),
            State::Pending,
            false
        )
        .unwrap()
    );
    let row = s.get(a).unwrap().unwrap();
    assert_eq!(row.state, State::Pending);
    assert_eq!(row.fields.tags, vec!["r", "extra"]);
    assert!(s.mark_pushed(&row, "stored").unwrap());
    assert_eq!(s.count(State::Pending).unwrap(), 0);
}

#[test]
fn upstream_schema_is_migrated_without_losing_rows() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("staging.db");
    let c = Connection::open(&p).unwrap();
    let gone = ContentHash::of("gone");
    c.execute_batch(&format!(
        "CREATE TABLE staged_memories(id TEXT PRIMARY KEY, content TEXT NOT NULL, content_hash TEXT NOT NULL,
           tags TEXT, metadata TEXT, memory_type TEXT DEFAULT 'note',
           operation TEXT NOT NULL CHECK (operation IN ('INSERT','UPDATE','DELETE')),
           staged_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, original_created_at TIMESTAMP, source_machine TEXT,
           conflict_status TEXT DEFAULT 'none');
         CREATE TABLE sync_status(key TEXT PRIMARY KEY, value TEXT, updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
         INSERT INTO sync_status(key, value) VALUES ('last_remote_sync', '2026-01-01 00:00:00');
         INSERT INTO staged_memories(id, content, content_hash, tags, operation, source_machine, staged_at)
           VALUES ('a', 'it''s | here', 'x', '[\"t1\",\"t2\"]', 'INSERT', 'laptop', '2026-01-01 00:00:01'),
                  ('b', 'second', 'y', 't3,t4', 'UPDATE', 'laptop', '2026-01-01 00:00:02'),
                  ('c', '', '{gone}', NULL, 'DELETE', 'laptop', '2026-01-01 00:00:03'),
                  ('d', 'Deleted By Content ', 'raw', NULL, 'DELETE', NULL, '2026-01-01 00:00:04');"
    ))
    .unwrap();
    drop(c);
    let s = Staging::open(&p).unwrap();
    let rows = s.in_state(State::Pending, 10).unwrap();
    assert_eq!(rows.len(), 4, "every upstream row is carried");
    assert_eq!(rows[0].content, "it's | here");
    assert_eq!(rows[0].hash, ContentHash::of("it's | here"));
    assert_eq!(rows[1].fields.tags, vec!["t3", "t4"]);
    let ops: Vec<Operation> = rows.iter().map(|r| r.op).collect();
    use Operation::{Delete, Store};
    assert_eq!(ops, [Store, Store, Delete, Delete]);
    // A delete without content keeps the hash it names; with content, the server's hash of it.
    assert_eq!(rows[2].hash, gone);
    assert_eq!(rows[2].content, "");
    assert_eq!(rows[3].hash, ContentHash::of("deleted by content"));
    assert_eq!(s.pending_deletes().unwrap(), 2);
    assert_eq!(
        s.book().state_get("last_remote_sync").unwrap().as_deref(),
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

#[test]
fn a_version_1_database_is_migrated_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("staging.db");
    let c = Connection::open(&p).unwrap();
    c.execute_batch(schema::SCHEMA_V1).unwrap();
    c.execute_batch(
        "INSERT INTO pulled (content_hash, pulled_at) VALUES ('h1', 1.0);
         INSERT INTO staged_memories (content_hash, content, operation, source_machine, staged_at, updated_at)
           VALUES ('x', 'kept across the migration', 'store', 'm', 1.0, 1.0);",
    )
    .unwrap();
    c.pragma_update(None, "application_id", APPLICATION_ID)
        .unwrap();
    c.pragma_update(None, "user_version", 1).unwrap();
    drop(c);
    let s = Staging::open(&p).unwrap();
    let base = s.book().pulled().unwrap();
    assert_eq!(
        base.get(&row::stored_hash("h1")),
        Some(&None),
        "rows pulled before v2 have no base fields"
    );
    assert_eq!(
        s.in_state(State::Pending, 10).unwrap()[0].content,
        "kept across the migration"
    );
    s.conn
        .execute(
            "UPDATE staged_memories SET operation = 'delete' WHERE content_hash = 'x'",
            [],
        )
        .expect("version 3 takes deletes");
    let h2 = ContentHash::of("h2");
    s.book()
        .set_pulled([(&h2, &fields(&["t"]))].into_iter(), &[], false, &[])
        .unwrap();
    assert_eq!(s.book().pulled().unwrap()[&h2], Some(fields(&["t"])));
    let v: i64 = s
        .conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("staging.db");
    drop(Staging::open(&p).unwrap());
    let c = Connection::open(&p).unwrap();
    c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(c);
    let e = Staging::open(&p).err().unwrap().to_string();
    assert!(e.contains("newer than this memsync knows"), "{e}");
}

#[test]
fn processes_creating_the_same_staging_database_at_once_all_succeed() {
    // `sync --watch` and a `store` starting together on a fresh machine (seen in CI).
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("staging.db");
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let p = p.clone();
                std::thread::spawn(move || {
                    let mut s = Staging::open(&p).map_err(|e| e.to_string())?;
                    s.stage(&format!("round {round} writer {i}"), &fields(&[]), "m")
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        assert_eq!(Staging::open(&p).unwrap().count(State::Pending).unwrap(), 4);
    }
}

#[test]
fn an_upstream_row_that_cannot_be_carried_refuses_the_migration_and_changes_nothing() {
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
         INSERT INTO staged_memories(id, content, content_hash, operation)
           VALUES ('fine', 'a memory', 'x', 'INSERT'), ('9f3c', '', 'not-a-hash', 'DELETE');",
    )
    .unwrap();
    drop(c);
    let before = std::fs::read(&p).unwrap();
    let e = Staging::open(&p).err().unwrap().to_string();
    assert!(
        e.contains("\"9f3c\" (DELETE)") && e.contains("nothing was changed"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        std::fs::read(&p).unwrap() == before,
        "a refused migration changed the file"
    );
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "{files:?}");
}

#[test]
fn a_version_2_database_is_migrated_to_take_deletes_and_keeps_ids_and_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("staging.db");
    let c = Connection::open(&p).unwrap();
    c.execute_batch(schema::SCHEMA_V1).unwrap();
    c.execute_batch(schema::V1_TO_V2).unwrap();
    c.execute_batch(
        "INSERT INTO staged_memories (content_hash, content, operation, state, source_machine, staged_at, updated_at)
           VALUES ('h1', 'one', 'store', 'pushed', 'm', 1.0, 1.0),
                  ('h2', 'two', 'update', 'conflict', 'm', 2.0, 2.0),
                  ('h3', 'three', 'store', 'pushed', 'm', 3.0, 3.0);
         DELETE FROM staged_memories WHERE id = 3;
         INSERT INTO conflicts (staged_id, content_hash, kind, local, detected_at)
           VALUES (2, 'h2', 'diverged', '{}', 2.0);
         INSERT INTO pulled (content_hash, pulled_at, fields) VALUES ('h1', 1.0, '{\"tags\":[\"t\"]}');",
    )
    .unwrap();
    c.pragma_update(None, "application_id", APPLICATION_ID)
        .unwrap();
    c.pragma_update(None, "user_version", 2).unwrap();
    drop(c);

    let mut s = Staging::open(&p).unwrap();
    let all = s.all().unwrap();
    assert_eq!(
        all.iter()
            .map(|r| (r.id, r.content.as_str(), r.op, r.state))
            .collect::<Vec<_>>(),
        [
            (1, "one", Operation::Store, State::Pushed),
            (2, "two", Operation::Update, State::Conflict)
        ]
    );
    let open = s.conflict_log().list(true).unwrap();
    assert_eq!((open.len(), open[0].staged_id), (1, 2));
    assert_eq!(
        s.book().pulled().unwrap()[&row::stored_hash("h1")]
            .as_ref()
            .unwrap()
            .tags,
        ["t"]
    );
    let problems = s.upkeep().check().unwrap();
    assert!(
        !problems.iter().any(|p| p.contains("conflict")),
        "{problems:?}"
    );
    // The table takes deletes now, and ids are never handed out twice (3 was used before).
    s.conn
        .execute(
            "INSERT INTO staged_memories (content_hash, content, operation, source_machine, staged_at, updated_at)
               VALUES ('h4', '', 'delete', 'm', 4.0, 4.0)",
            [],
        )
        .unwrap();
    assert_eq!(s.conn.last_insert_rowid(), 4);
    assert_eq!(s.pending_deletes().unwrap(), 1);
    let (id, _) = s.stage("five", &fields(&[]), "m").unwrap();
    assert_eq!(id, 5);
    let indexes: i64 = s
        .conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index'
               AND name IN ('idx_staged_state', 'idx_staged_hash')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexes, 2);
    let v: i64 = s
        .conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
}

#[test]
fn storing_content_whose_delete_waits_turns_the_delete_into_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Staging::open(&dir.path().join("staging.db")).unwrap();
    let h = ContentHash::of("back again");
    s.conn
        .execute(
            "INSERT INTO staged_memories (content_hash, content, operation, source_machine, staged_at, updated_at)
               VALUES (?1, '', 'delete', 'm', 1.0, 1.0)",
            [h.as_str()],
        )
        .unwrap();
    let (id, new) = s.stage("Back again", &fields(&["x"]), "m").unwrap();
    assert!(!new);
    let row = s.get(id).unwrap().unwrap();
    assert_eq!(
        (row.op, row.content.as_str(), row.fields.tags.clone()),
        (Operation::Store, "Back again", vec!["x".to_owned()])
    );
    assert_eq!(s.pending_deletes().unwrap(), 0);
}
