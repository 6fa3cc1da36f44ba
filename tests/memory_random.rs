//! One randomized test, seeded and replayable: a server and three machines, each with its own
//! local mcp-memory-service, under the default merge policy. A few dozen random stores, local
//! tag edits, edits and deletes by other clients on the server, syncs and server outages; then
//! every machine syncs until quiet, and the properties of the sync are checked against a model
//! of what happened.
//!
//! `MEMSYNC_RANDOM_SEED` (one seed or a comma-separated list) and `MEMSYNC_RANDOM_STEPS` replay
//! a run; every assertion message names the seed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use common::mms::{Machine, Server, curl, hash_of};
use serde_json::json;

const DEFAULT_SEEDS: [u64; 3] = [1, 2, 3];
const DEFAULT_STEPS: usize = 60;
const POOL: [&str; 5] = ["red", "green", "blue", "gold", "grey"];
const MACHINES: usize = 3;

/// splitmix64: small, good enough, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A non-empty random subset of the tag pool, sorted.
    fn tags(&mut self) -> Vec<String> {
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

fn seeds() -> Vec<u64> {
    match std::env::var("MEMSYNC_RANDOM_SEED") {
        Ok(s) if !s.trim().is_empty() => s
            .split(',')
            .map(|x| x.trim().parse().expect("MEMSYNC_RANDOM_SEED: numbers"))
            .collect(),
        _ => DEFAULT_SEEDS.to_vec(),
    }
}

fn steps() -> usize {
    std::env::var("MEMSYNC_RANDOM_STEPS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(DEFAULT_STEPS)
}

/// Live memories of an mcp-memory-service database file: hash -> sorted tags (without the
/// `untagged` placeholder), plus the hashes that have more than one live row.
fn live(db: &Path) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
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
enum Ev {
    /// A store or a tag edit through machine `m`'s local service.
    Local(usize),
    /// A tag edit by another client on the server.
    RemoteEdit,
    /// A delete by another client on the server.
    RemoteDelete,
}

struct Mem {
    content: String,
    hash: String,
    /// Every tag set ever written (store, local edits, server edits).
    versions: Vec<Vec<String>>,
    /// (step, event), in order.
    events: Vec<(usize, Ev)>,
    /// The tags machine m last wrote.
    last_local: [Option<Vec<String>>; MACHINES],
}

#[derive(Default)]
struct Model {
    mems: Vec<Mem>,
    /// (step, exit code) of every sync of each machine.
    syncs: [Vec<(usize, i32)>; MACHINES],
}

impl Model {
    /// The step of machine m's last sync that exited 0 before `step`.
    fn last_ok_sync(&self, m: usize, step: usize) -> Option<usize> {
        self.syncs[m]
            .iter()
            .filter(|(s, c)| *s < step && *c == 0)
            .map(|(s, _)| *s)
            .next_back()
    }

    /// Whether a delete on the server may have been undone by a machine's edit: some machine
    /// stored or edited the memory after its last successful sync before a delete.
    fn delete_may_be_undone(&self, mem: &Mem) -> bool {
        mem.events.iter().any(|(d, ev)| {
            *ev == Ev::RemoteDelete
                && mem.events.iter().any(|(e, ev2)| match ev2 {
                    Ev::Local(m) => self.last_ok_sync(*m, *d).is_none_or(|l| *e > l),
                    _ => false,
                })
        })
    }

    fn ever_deleted(mem: &Mem) -> bool {
        mem.events.iter().any(|(_, e)| *e == Ev::RemoteDelete)
    }
}

struct World {
    seed: u64,
    remote: Server,
    locals: Vec<Server>,
    machines: Vec<Machine>,
    model: Model,
    trace: Vec<String>,
    down: bool,
    /// How often property 6 was checked, and how many outages there were (for the summary).
    own_checks: usize,
    outages: usize,
}

impl World {
    fn log(&mut self, step: usize, what: String) {
        let line = format!("seed {} step {step}: {what}", self.seed);
        eprintln!("{line}");
        self.trace.push(line);
    }

    fn local_live(&self, m: usize) -> BTreeMap<String, Vec<String>> {
        live(&self.locals[m].db()).0
    }

    fn remote_live(&self) -> BTreeMap<String, Vec<String>> {
        live(&self.remote.db()).0
    }

    /// Runs `sync` on machine m; returns the exit code. Accepted: 0, 3, 4, and 5 exactly
    /// while the server is down.
    fn sync(&mut self, step: usize, m: usize) -> i32 {
        let before = self.local_live(m);
        let o = self.machines[m].run(&["sync"]);
        let code = o.status.code().unwrap_or(-1);
        let out = format!(
            "stdout: {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        self.log(step, format!("machine {m} sync -> exit {code}"));
        if self.down {
            assert_eq!(
                code, 5,
                "seed {}: step {step}: sync of machine {m} while the server is down should exit 5\n{out}",
                self.seed
            );
            assert_eq!(
                self.local_live(m),
                before,
                "seed {}: step {step}: a failed sync of machine {m} changed its local memories\n{out}",
                self.seed
            );
        } else {
            assert!(
                [0, 3, 4].contains(&code),
                "seed {}: step {step}: sync of machine {m} exited {code}\n{out}",
                self.seed
            );
        }
        self.model.syncs[m].push((step, code));
        if code == 0 {
            self.own_checks += self.check_own_edits_pushed(step, m, &out);
        }
        code
    }

    /// Property 6: after a successful sync of machine m, a memory that only m changed since its
    /// previous successful sync shows m's latest tags on the server and locally.
    fn check_own_edits_pushed(&self, step: usize, m: usize, out: &str) -> usize {
        let mut checked = 0;
        let prev = self.model.last_ok_sync(m, step);
        let after = |e: usize| prev.is_none_or(|l| e > l);
        let (server, local) = (self.remote_live(), self.local_live(m));
        for mem in &self.model.mems {
            if Model::ever_deleted(mem) {
                continue;
            }
            let mine = mem
                .events
                .iter()
                .any(|(e, ev)| *ev == Ev::Local(m) && after(*e));
            if !mine {
                continue;
            }
            let foreign = mem.events.iter().any(|(e, ev)| match ev {
                Ev::RemoteEdit | Ev::RemoteDelete => after(*e),
                Ev::Local(n) if *n != m => {
                    // n's edit at e is settled if n synced successfully before m's previous
                    // sync; otherwise any sync of n since may have pushed it.
                    let settled = self.model.syncs[*n]
                        .iter()
                        .any(|(s, c)| *c == 0 && *s > *e && prev.is_some_and(|l| *s < l));
                    let pushed_since = self.model.syncs[*n]
                        .iter()
                        .any(|(s, c)| *c != 5 && *s > *e && after(*s));
                    !settled && pushed_since
                }
                _ => false,
            });
            if foreign {
                continue;
            }
            let want = mem.last_local[m].clone().unwrap();
            assert_eq!(
                server.get(&mem.hash),
                Some(&want),
                "seed {}: step {step}: after machine {m}'s successful sync the server should show its latest tags for {:?}\n{out}\ntrace:\n{}",
                self.seed,
                mem.content,
                self.trace.join("\n")
            );
            assert_eq!(
                local.get(&mem.hash),
                Some(&want),
                "seed {}: step {step}: machine {m}'s local copy of {:?} lost its latest tags\n{out}\ntrace:\n{}",
                self.seed,
                mem.content,
                self.trace.join("\n")
            );
            checked += 1;
        }
        checked
    }

    /// Everything: the server's and every machine's live memories.
    fn snapshot(&self) -> Vec<BTreeMap<String, Vec<String>>> {
        let mut v = vec![self.remote_live()];
        v.extend((0..MACHINES).map(|m| self.local_live(m)));
        v
    }
}

fn run_seed(seed: u64, steps: usize) {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Four servers, started in parallel: the remote and one local service per machine.
    let (remote, locals) = std::thread::scope(|s| {
        let r = s.spawn(|| Server::start(&d.join("remote")));
        let ls: Vec<_> = (0..MACHINES)
            .map(|i| s.spawn(move || Server::start(&d.join(format!("local-{i}")))))
            .collect();
        (
            r.join().unwrap(),
            ls.into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>(),
        )
    });
    let machines = (0..MACHINES)
        .map(|i| {
            Machine::new(&d.join(format!("m-{i}")), remote.port).with(
                "MCP_MEMORY_SQLITE_PATH",
                &locals[i].db().display().to_string(),
            )
        })
        .collect();
    let mut w = World {
        seed,
        remote,
        locals,
        machines,
        model: Model::default(),
        trace: Vec::new(),
        down: false,
        own_checks: 0,
        outages: 0,
    };
    let mut rng = Rng(seed);
    let mut outage_left = 0usize;
    let mut stored = 0usize;

    for step in 1..=steps {
        let roll = rng.below(100);
        let m = rng.below(MACHINES);
        if roll < 20 || w.model.mems.is_empty() {
            // A machine's local service stores a new memory.
            stored += 1;
            let content = format!("memory {stored} of seed {seed}, stored on machine {m}");
            let tags = rng.tags();
            let t: Vec<&str> = tags.iter().map(String::as_str).collect();
            w.locals[m].post(&content, &t, json!({}));
            w.log(step, format!("machine {m} stores {content:?} {tags:?}"));
            let mut last_local: [Option<Vec<String>>; MACHINES] = Default::default();
            last_local[m] = Some(tags.clone());
            w.model.mems.push(Mem {
                hash: hash_of(&content),
                content,
                versions: vec![tags],
                events: vec![(step, Ev::Local(m))],
                last_local,
            });
        } else if roll < 45 {
            // A machine edits the tags of a memory its local service holds.
            let held = w.local_live(m);
            let cands: Vec<usize> = (0..w.model.mems.len())
                .filter(|&i| held.contains_key(&w.model.mems[i].hash))
                .collect();
            if cands.is_empty() {
                w.log(step, format!("machine {m} has nothing to edit"));
            } else {
                let i = cands[rng.below(cands.len())];
                let tags = rng.tags();
                let t: Vec<&str> = tags.iter().map(String::as_str).collect();
                let content = w.model.mems[i].content.clone();
                w.locals[m].put_tags(&content, &t);
                w.log(step, format!("machine {m} edits {content:?} -> {tags:?}"));
                let mem = &mut w.model.mems[i];
                mem.versions.push(tags.clone());
                mem.events.push((step, Ev::Local(m)));
                mem.last_local[m] = Some(tags);
            }
        } else if roll < 62 && !w.down {
            // Another client edits (2/3) or deletes (1/3) a memory on the server.
            let held = w.remote_live();
            let cands: Vec<usize> = (0..w.model.mems.len())
                .filter(|&i| held.contains_key(&w.model.mems[i].hash))
                .collect();
            if cands.is_empty() {
                w.log(step, "the server has nothing to edit".into());
            } else {
                let i = cands[rng.below(cands.len())];
                let content = w.model.mems[i].content.clone();
                if rng.below(3) < 2 {
                    let tags = rng.tags();
                    let t: Vec<&str> = tags.iter().map(String::as_str).collect();
                    w.remote.put_tags(&content, &t);
                    w.log(step, format!("server client edits {content:?} -> {tags:?}"));
                    let mem = &mut w.model.mems[i];
                    mem.versions.push(tags);
                    mem.events.push((step, Ev::RemoteEdit));
                } else {
                    let (status, body) = curl(
                        "DELETE",
                        &format!("{}/api/memories/{}", w.remote.url(), hash_of(&content)),
                        None,
                    );
                    assert_eq!(status, 200, "seed {seed}: step {step}: DELETE: {body}");
                    w.log(step, format!("server client deletes {content:?}"));
                    w.model.mems[i].events.push((step, Ev::RemoteDelete));
                }
            }
        } else if roll < 95 || w.down {
            w.sync(step, m);
        } else {
            // An outage of a few steps; at least one sync happens during it.
            w.remote.stop();
            w.down = true;
            w.outages += 1;
            outage_left = 2 + rng.below(4);
            w.log(step, format!("server down for {outage_left} steps"));
            w.sync(step, m);
        }
        if w.down {
            if outage_left == 0 {
                w.remote.restart();
                w.down = false;
                w.log(step, "server up again".into());
            } else {
                outage_left -= 1;
            }
        }
    }
    if w.down {
        w.remote.restart();
        w.down = false;
        w.log(steps, "server up again".into());
    }

    // Every machine syncs until two full rounds change nothing anywhere.
    let mut quiet = 0;
    let mut round = 0;
    let mut step = steps;
    while quiet < 2 {
        round += 1;
        assert!(
            round <= 6,
            "seed {seed}: not quiet after 6 rounds of syncs\ntrace:\n{}",
            w.trace.join("\n")
        );
        let before = w.snapshot();
        for m in 0..MACHINES {
            step += 1;
            w.sync(step, m);
        }
        if w.snapshot() == before {
            quiet += 1;
        } else {
            quiet = 0;
        }
    }

    let trace = w.trace.join("\n");
    let names = ["server", "machine 0", "machine 1", "machine 2"];
    let dbs: Vec<_> = std::iter::once(w.remote.db())
        .chain(w.locals.iter().map(|l| l.db()))
        .collect();
    let all: Vec<_> = dbs.iter().map(|p| live(p)).collect();
    // (1) No duplicates anywhere.
    for (name, (_, dups)) in names.iter().zip(&all) {
        assert!(
            dups.is_empty(),
            "seed {seed}: duplicates on {name}: {dups:?}\ntrace:\n{trace}"
        );
    }
    let server = &all[0].0;
    for mem in &w.model.mems {
        let on: Vec<bool> = all.iter().map(|(m, _)| m.contains_key(&mem.hash)).collect();
        if !Model::ever_deleted(mem) {
            // (2) Stored and never deleted: live everywhere.
            assert!(
                on.iter().all(|&b| b),
                "seed {seed}: {:?} was never deleted but is missing on {:?}\ntrace:\n{trace}",
                mem.content,
                names
                    .iter()
                    .zip(&on)
                    .filter(|(_, b)| !**b)
                    .map(|(n, _)| n)
                    .collect::<Vec<_>>()
            );
        } else if !w.model.delete_may_be_undone(mem) {
            // (3) Deleted on the server, and no machine edited it after it last synced before
            // the delete: deleted everywhere.
            assert!(
                on.iter().all(|&b| !b),
                "seed {seed}: the deletion of {:?} was undone on {:?}\ntrace:\n{trace}",
                mem.content,
                names
                    .iter()
                    .zip(&on)
                    .filter(|(_, b)| **b)
                    .map(|(n, _)| n)
                    .collect::<Vec<_>>()
            );
        } else {
            assert!(
                on.iter().all(|&b| b) || on.iter().all(|&b| !b),
                "seed {seed}: {:?} is live on some and deleted on others: {on:?} (server, machines)\ntrace:\n{trace}",
                mem.content
            );
        }
        // (5) Final tags between the intersection and the union of every version ever set.
        if let Some(tags) = server.get(&mem.hash) {
            let union: BTreeSet<&String> = mem.versions.iter().flatten().collect();
            let inter: BTreeSet<&String> = mem.versions[0]
                .iter()
                .filter(|t| mem.versions.iter().all(|v| v.contains(t)))
                .collect();
            let fin: BTreeSet<&String> = tags.iter().collect();
            assert!(
                fin.is_subset(&union) && inter.is_subset(&fin),
                "seed {seed}: {:?} ends with {tags:?}, versions were {:?}\ntrace:\n{trace}",
                mem.content,
                mem.versions
            );
        }
    }
    // (4) The same memories with the same tags everywhere.
    for (name, (m, _)) in names.iter().zip(&all).skip(1) {
        assert_eq!(
            m, server,
            "seed {seed}: {name} differs from the server (left: {name}, right: server)\ntrace:\n{trace}"
        );
    }
    let deleted = w
        .model
        .mems
        .iter()
        .filter(|m| Model::ever_deleted(m))
        .count();
    let undone = w
        .model
        .mems
        .iter()
        .filter(|m| w.model.delete_may_be_undone(m))
        .count();
    eprintln!(
        "seed {seed}: {steps} steps, {} memories, {} live, {deleted} deleted on the server \
         ({undone} of them edited concurrently), {} outages, {} own-edit checks, {:.1?}",
        w.model.mems.len(),
        server.len(),
        w.outages,
        w.own_checks,
        t0.elapsed()
    );
}

#[test]
fn random_stores_edits_deletes_syncs_and_outages_converge() {
    let steps = steps();
    for seed in seeds() {
        run_seed(seed, steps);
    }
}
