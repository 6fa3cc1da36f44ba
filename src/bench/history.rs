//! The `history` phase: what keeping restore points costs over a long run. The same steady
//! writer as the cpu phase, for `history_duration` (10 minutes by default), against every
//! replicator at once (each on its own database: this phase measures bytes, not CPU, so the
//! tools need not take turns, and a 10-minute phase does not become a 20-minute one). Every
//! `history_sample` it records each replica's size against its database's; at the end it times
//! a restore of the newest state and, for memsync, compares the bytes that restore read with
//! the size of a snapshot of the same database taken fresh (what a restore right after a fresh
//! snapshot reads).

use std::path::Path;
use std::time::{Duration, Instant};

use super::proc::{Replicator, dir_size};
use super::{Figures, count_rows, start_on_new_db, workload};
use replica_formats::{
    DbChecksum, EncodeOptions, FileEncoder, FileKind, Header, PageNo, TxId, WalPosition,
};

/// Runs the phase for every replicator at once; one set of figures per replicator, in order.
pub fn phase_history(o: &super::BenchOptions) -> Result<Vec<Figures>, String> {
    let results: Vec<Result<Figures, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = o
            .replicators
            .iter()
            .map(|r| s.spawn(move || one(o, r)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("history phase panicked".into()))
            })
            .collect()
    });
    results.into_iter().collect()
}

fn one(o: &super::BenchOptions, r: &Replicator) -> Result<Figures, String> {
    let dir = o.workdir.join(&r.name).join("history");
    let (cfg, db, app, run) = start_on_new_db(o, r, &dir)?;
    let mut f = Figures::new();
    let mut rng = workload::Rng::new(7);
    let sample = o.history_sample.max(Duration::from_secs(1));
    let t0 = Instant::now();
    let mut next = sample;
    let record = |f: &mut Figures, at: Duration| {
        let (rep, _) = dir_size(&dir.join("replica"));
        let dbb = db_bytes(&db);
        let t = at.as_secs();
        f.push((format!("history.replica_mb_at_{t}s"), rep as f64 / 1e6));
        f.push((format!("history.db_mb_at_{t}s"), dbb as f64 / 1e6));
    };
    workload::write_steady(&app, o.rate, o.history_duration, &mut rng, |_, _| {
        if t0.elapsed() >= next {
            record(&mut f, next);
            next += sample;
        }
    })
    .map_err(|e| e.to_string())?;
    let rows = count_rows(&db);
    // Shipped and stopped: what stays on the replica.
    run.stop();
    let (rep, files) = dir_size(&dir.join("replica"));
    let dbb = db_bytes(&db);
    f.push(("history.replica_mb_end".into(), rep as f64 / 1e6));
    f.push(("history.replica_files_end".into(), files as f64));
    f.push(("history.db_mb_end".into(), dbb as f64 / 1e6));
    f.push((
        "history.replica_per_db_end".into(),
        rep as f64 / dbb.max(1) as f64,
    ));
    let out = dir.join("restored.db");
    let t = Instant::now();
    let said = r.restore_output(&cfg, &out, &db);
    let secs = t.elapsed().as_secs_f64();
    let Some(said) = said else {
        return Err(format!("{}: history restore failed", r.name));
    };
    let verified = workload::verify(&out) == Ok(rows);
    f.push(("history.restore_latest_s".into(), secs));
    f.push((
        "history.restore_verified".into(),
        if verified { 1.0 } else { 0.0 },
    ));
    if let Some(read) = bytes_read(&said) {
        let fresh = fresh_snapshot_bytes(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        f.push(("history.restore_read_mb".into(), read as f64 / 1e6));
        f.push(("history.fresh_snapshot_mb".into(), fresh as f64 / 1e6));
        f.push((
            "history.restore_read_per_fresh_snapshot".into(),
            read as f64 / fresh.max(1) as f64,
        ));
    }
    Ok(f)
}

fn db_bytes(db: &Path) -> u64 {
    std::fs::metadata(db).map_or(0, |m| m.len())
        + std::fs::metadata(crate::sqlite::sidecar(db, "-wal")).map_or(0, |m| m.len())
}

/// The byte count in memsync's restore line ("... (N files, B bytes)"); None for other tools.
fn bytes_read(said: &str) -> Option<u64> {
    let line = said.lines().find(|l| l.contains(" files, "))?;
    let tail = line.split(" files, ").nth(1)?;
    tail.split(' ').next()?.parse().ok()
}

/// Size of a snapshot of `db` encoded as memsync writes snapshots (level-1 zstd, 64-page
/// runs), counted without being stored.
fn fresh_snapshot_bytes(db: &Path) -> std::io::Result<u64> {
    use std::io::Read;
    let file = std::fs::File::open(db)?;
    let len = file.metadata()?.len();
    // Read page by page: the database may be hundreds of MB.
    let mut r = std::io::BufReader::with_capacity(1 << 20, file);
    let mut hdr = [0u8; 100];
    r.read_exact(&mut hdr)?;
    let page_size = match u16::from_be_bytes([hdr[16], hdr[17]]) {
        1 => 65536,
        n => u32::from(n),
    };
    let size = replica_formats::PageSize::new(page_size).map_err(std::io::Error::other)?;
    let header = Header {
        kind: FileKind::Snapshot,
        page_size: size,
        commit: (len / u64::from(page_size)) as u32,
        min_txid: TxId::new(1).expect("nonzero"),
        max_txid: TxId::new(1).expect("nonzero"),
        timestamp: replica_formats::Timestamp::from_millis(0),
        pre_checksum: DbChecksum::EMPTY,
        wal: WalPosition::default(),
    };
    let mut sink = Counter(0);
    let mut enc = FileEncoder::new(&mut sink, &header, EncodeOptions::default())
        .map_err(std::io::Error::other)?;
    let mut sum = DbChecksum::EMPTY;
    let mut page = vec![0u8; size.as_usize()];
    page[..100].copy_from_slice(&hdr);
    r.read_exact(&mut page[100..])?;
    for n in 1..=header.commit {
        if n > 1 {
            r.read_exact(&mut page)?;
        }
        let pgno = PageNo::new(n).expect("nonzero");
        if pgno.is_lock_page(size) {
            continue;
        }
        sum.toggle(replica_formats::page_hash(pgno, &page));
        enc.write_page(pgno, &page).map_err(std::io::Error::other)?;
    }
    enc.finish(sum).map_err(std::io::Error::other)?;
    Ok(sink.0)
}

/// A writer that only counts.
struct Counter(u64);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
