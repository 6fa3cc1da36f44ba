//! The randomized test's reproducible randomness and its model of what happened: the seeds and
//! steps to run, a small seeded generator, the memories and events the run made, and the live
//! memories a local database holds (what the model is checked against).

use std::collections::BTreeMap;
use std::path::Path;

const DEFAULT_SEEDS: [u64; 3] = [1, 2, 3];
const DEFAULT_STEPS: usize = 60;
const POOL: [&str; 5] = ["red", "green", "blue", "gold", "grey"];
pub const MACHINES: usize = 3;

/// splitmix64: small, good enough, no dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A non-empty random subset of the tag pool, sorted.
    pub fn tags(&mut self) -> Vec<String> {
        loop {
            let bits = self.next();
            let mut t: Vec<String> = POOL
                .iter()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .map(|(_, s)| s.to_string())
                .collect();
            if !t.is_empty() {
                t.sort();
                return t;
            }
        }
    }
}

pub fn seeds() -> Vec<u64> {
    match std::env::var("MEMSYNC_RANDOM_SEED") {
        Ok(s) if !s.trim().is_empty() => s
            .split(',')
            .map(|x| x.trim().parse().expect("MEMSYNC_RANDOM_SEED: numbers"))
            .collect(),
        _ => DEFAULT_SEEDS.to_vec(),
    }
}

pub fn steps() -> usize {
    std::env::var("MEMSYNC_RANDOM_STEPS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(DEFAULT_STEPS)
}

/// Live memories of an mcp-memory-service database file: hash -> sorted tags (without the
/// `untagged` placeholder), plus the hashes that have more than one live row.
pub fn live(db: &Path) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
    let mut map = BTreeMap::new();
    let mut dups = Vec::new();
    let Ok(c) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return (map, dups);
    };
    c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    let Ok(mut st) = c.prepare("SELECT content_hash, tags FROM memories WHERE deleted_at IS NULL")
    else {
        return (map, dups);
    };
    let rows = st
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
        })
        .unwrap();
    for row in rows {
        let (h, t) = row.unwrap();
        let t = t.unwrap_or_default();
        let mut tags: Vec<String> = if t.trim_start().starts_with('[') {
            serde_json::from_str(&t).unwrap_or_default()
        } else {
            t.split(',')
                .map(|x| x.trim().to_owned())
                .filter(|x| !x.is_empty())
                .collect()
        };
        // mcp-memory-service writes its placeholder `untagged` for a memory without tags, and
        // memsync treats the two as the same: so does the comparison.
        tags.retain(|t| t != "untagged");
        tags.sort();
        tags.dedup();
        if map.insert(h.clone(), tags).is_some() {
            dups.push(h);
        }
    }
    (map, dups)
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Ev {
    /// A store or a tag edit through machine `m`'s local service.
    Local(usize),
    /// A tag edit by another client on the server.
    RemoteEdit,
    /// A delete by another client on the server.
    RemoteDelete,
}

pub struct Mem {
    pub content: String,
    pub hash: String,
    /// Every tag set ever written (store, local edits, server edits).
    pub versions: Vec<Vec<String>>,
    /// (step, event), in order.
    pub events: Vec<(usize, Ev)>,
    /// The tags machine m last wrote.
    pub last_local: [Option<Vec<String>>; MACHINES],
}

#[derive(Default)]
pub struct Model {
    pub mems: Vec<Mem>,
    /// (step, exit code) of every sync of each machine.
    pub syncs: [Vec<(usize, i32)>; MACHINES],
}

impl Model {
    /// The step of machine m's last sync that exited 0 before `step`.
    pub fn last_ok_sync(&self, m: usize, step: usize) -> Option<usize> {
        self.syncs[m]
            .iter()
            .filter(|(s, c)| *s < step && *c == 0)
            .map(|(s, _)| *s)
            .next_back()
    }

    /// Whether a delete on the server may have been undone by a machine's edit: some machine
    /// stored or edited the memory after its last successful sync before a delete.
    pub fn delete_may_be_undone(&self, mem: &Mem) -> bool {
        mem.events.iter().any(|(d, ev)| {
            *ev == Ev::RemoteDelete
                && mem.events.iter().any(|(e, ev2)| match ev2 {
                    Ev::Local(m) => self.last_ok_sync(*m, *d).is_none_or(|l| *e > l),
                    _ => false,
                })
        })
    }

    pub fn ever_deleted(mem: &Mem) -> bool {
        mem.events.iter().any(|(_, e)| *e == Ev::RemoteDelete)
    }
}
