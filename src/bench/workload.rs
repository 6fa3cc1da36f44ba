//! An mcp-memory-service-shaped database and a steady writer, for the demo and the benchmark.
//! The schema mirrors the service's `sqlite_vec` backend (memories, indexes, vec0 embeddings,
//! FTS5 trigram table with triggers); each memory is one transaction, as in the service.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{Connection, params};

/// Embedding dimension of the service's default model.
pub const DIM: usize = 384;

/// Registers sqlite-vec (moved to `crate::vec`; re-exported for the bench and old callers).
pub use crate::vec::register_vec;

/// Opens a connection configured like the service's (WAL, busy timeout 5 s, NORMAL).
pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    register_vec();
    let c = Connection::open(path)?;
    c.busy_timeout(Duration::from_secs(5))?;
    c.pragma_update(None, "journal_mode", "wal")?;
    c.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(c)
}

/// Creates the schema (idempotent).
pub fn create(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(&format!(
        "BEGIN;
        CREATE TABLE IF NOT EXISTS metadata (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS memories (
            id INTEGER PRIMARY KEY AUTOINCREMENT, content_hash TEXT UNIQUE NOT NULL,
            content TEXT NOT NULL, tags TEXT, memory_type TEXT, metadata TEXT,
            created_at REAL, updated_at REAL, created_at_iso TEXT, updated_at_iso TEXT,
            deleted_at REAL DEFAULT NULL);
        CREATE VIRTUAL TABLE IF NOT EXISTS memory_embeddings USING vec0(content_embedding FLOAT[{DIM}] distance_metric=cosine);
        INSERT OR REPLACE INTO metadata (key, value) VALUES ('distance_metric', 'cosine');
        INSERT OR REPLACE INTO metadata (key, value) VALUES ('embedding_dimension', '{DIM}');
        CREATE INDEX IF NOT EXISTS idx_content_hash ON memories(content_hash);
        CREATE INDEX IF NOT EXISTS idx_created_at ON memories(created_at);
        CREATE INDEX IF NOT EXISTS idx_memory_type ON memories(memory_type);
        CREATE INDEX IF NOT EXISTS idx_deleted_at ON memories(deleted_at);
        CREATE VIRTUAL TABLE IF NOT EXISTS memory_content_fts USING fts5(content, content='memories', content_rowid='id', tokenize='trigram');
        CREATE TRIGGER IF NOT EXISTS memories_fts_ai AFTER INSERT ON memories BEGIN
            INSERT INTO memory_content_fts(rowid, content) VALUES (new.id, new.content); END;
        CREATE TRIGGER IF NOT EXISTS memories_fts_au AFTER UPDATE ON memories BEGIN
            DELETE FROM memory_content_fts WHERE rowid = old.id;
            INSERT INTO memory_content_fts(rowid, content) VALUES (new.id, new.content); END;
        CREATE TRIGGER IF NOT EXISTS memories_fts_ad AFTER DELETE ON memories BEGIN
            DELETE FROM memory_content_fts WHERE rowid = old.id; END;
        COMMIT;"
    ))
}

const WORDS: &[&str] = &[
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
    "pi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "chi",
    "psi",
    "omega",
    "litestream",
    "wal",
    "page",
    "checkpoint",
    "replica",
    "snapshot",
];
const TYPES: &[&str] = &["note", "decision", "task", "reference", "observation"];

/// A small deterministic generator (xorshift), so runs are reproducible.
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// A random embedding, as little-endian f32 bytes.
pub fn embedding(rng: &mut Rng) -> Vec<u8> {
    (0..DIM).flat_map(|_| rng.unit().to_le_bytes()).collect()
}

/// Inserts one memory (row + embedding) in one transaction; returns its id.
pub fn insert(c: &Connection, rng: &mut Rng, content_bytes: usize) -> rusqlite::Result<i64> {
    let mut content = String::with_capacity(content_bytes + 20);
    while content.len() < content_bytes {
        content.push_str(WORDS[(rng.next_u64() % WORDS.len() as u64) as usize]);
        content.push(' ');
    }
    content.truncate(content_bytes);
    content.push_str(&format!(" #{:016x}", rng.next_u64()));
    let hash = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let iso = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let ty = TYPES[(rng.next_u64() % TYPES.len() as u64) as usize];
    let meta = format!(
        "{{\"source\": \"memsync-bench\", \"n\": {}}}",
        rng.next_u64() % 1000
    );
    let emb = embedding(rng);
    let tx = c.unchecked_transaction()?;
    tx.prepare_cached(
        "INSERT INTO memories (content_hash, content, tags, memory_type, metadata, created_at, updated_at, created_at_iso, updated_at_iso) VALUES (?1,?2,?3,?4,?5,?6,?6,?7,?7)",
    )?
    .execute(params![hash, content, "project,rust", ty, meta, now, iso])?;
    let id = tx.last_insert_rowid();
    tx.prepare_cached("INSERT INTO memory_embeddings (rowid, content_embedding) VALUES (?1, ?2)")?
        .execute(params![id, emb])?;
    tx.commit()?;
    Ok(id)
}

/// Bulk-loads memories until the database file is at least `mb` megabytes, then truncates the WAL.
pub fn fill(c: &Connection, mb: u64, rng: &mut Rng) -> rusqlite::Result<i64> {
    let path = c.path().map(std::path::PathBuf::from).unwrap_or_default();
    let mut n = 0;
    loop {
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        if size >= mb << 20 {
            break;
        }
        c.execute_batch("BEGIN")?;
        for _ in 0..2000 {
            // Plain inserts inside one big transaction.
            insert_in_tx(c, rng, 400)?;
            n += 1;
        }
        c.execute_batch("COMMIT")?;
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    }
    Ok(n)
}

fn insert_in_tx(c: &Connection, rng: &mut Rng, content_bytes: usize) -> rusqlite::Result<()> {
    let content: String = (0..content_bytes / 6)
        .map(|_| WORDS[(rng.next_u64() % WORDS.len() as u64) as usize])
        .collect::<Vec<_>>()
        .join(" ");
    let hash = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
    c.prepare_cached("INSERT INTO memories (content_hash, content, tags, memory_type, metadata, created_at, updated_at) VALUES (?1,?2,'bulk','note','{}',0,0)")?
        .execute(params![hash, content])?;
    let id = c.last_insert_rowid();
    c.prepare_cached("INSERT INTO memory_embeddings (rowid, content_embedding) VALUES (?1, ?2)")?
        .execute(params![id, embedding(rng)])?;
    Ok(())
}

/// Writes `rate` memories per second for `duration`, one transaction each; returns the commit
/// time of every id (for lag measurement).
pub fn write_steady(
    c: &Connection,
    rate: u32,
    duration: Duration,
    rng: &mut Rng,
    mut each: impl FnMut(i64, SystemTime),
) -> rusqlite::Result<u64> {
    let start = Instant::now();
    let period = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let mut n = 0u64;
    while start.elapsed() < duration {
        let id = insert(c, rng, 400)?;
        each(id, SystemTime::now());
        n += 1;
        let next = start + period * n as u32;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    Ok(n)
}

/// Commits one memory at a time at random moments, `mean_gap` apart on average (exponential
/// gaps, as independent users storing memories); returns how many. `each` gets every id with
/// the time its transaction committed.
pub fn write_sparse(
    c: &Connection,
    mean_gap: Duration,
    duration: Duration,
    rng: &mut Rng,
    mut each: impl FnMut(i64, SystemTime),
) -> rusqlite::Result<u64> {
    let start = Instant::now();
    let mut n = 0u64;
    let mut next = start;
    while next < start + duration {
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let id = insert(c, rng, 400)?;
        each(id, SystemTime::now());
        n += 1;
        // Uniform in (0, 1], then an exponential gap.
        let u = ((rng.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
        next += mean_gap.mul_f64(-u.ln());
    }
    Ok(n)
}

/// Soundness of a (restored) memory database: integrity check, one embedding per memory, and a
/// KNN query answered. Returns the number of memories.
pub fn verify(path: &Path) -> Result<i64, String> {
    register_vec();
    // Read-write (nothing is written): a read-only connection to a WAL database leaves its
    // `-wal` and `-shm` behind at close, beside the user's restored file.
    let c = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|e| e.to_string())?;
    let q = |sql: &str| -> Result<String, String> {
        c.query_row(sql, [], |r| r.get::<_, rusqlite::types::Value>(0))
            .map(|v| match v {
                rusqlite::types::Value::Integer(i) => i.to_string(),
                rusqlite::types::Value::Text(t) => t,
                other => format!("{other:?}"),
            })
            .map_err(|e| e.to_string())
    };
    let ic = q("PRAGMA integrity_check")?;
    if ic != "ok" {
        return Err(format!("integrity_check: {ic}"));
    }
    let n: i64 = q("SELECT count(*) FROM memories")?.parse().unwrap_or(-1);
    let e: i64 = q("SELECT count(*) FROM memory_embeddings")?
        .parse()
        .unwrap_or(-2);
    if n != e {
        return Err(format!("{n} memories but {e} embeddings"));
    }
    if n > 0 {
        let mut rng = Rng::new(99);
        let hits: i64 = c
            .query_row(
                "SELECT count(*) FROM (SELECT rowid FROM memory_embeddings WHERE content_embedding MATCH ?1 AND k = 5)",
                [embedding(&mut rng)],
                |r| r.get(0),
            )
            .map_err(|e| format!("KNN query: {e}"))?;
        if hits != n.min(5) {
            return Err(format!("KNN returned {hits} rows"));
        }
    }
    Ok(n)
}
