//! One randomized test, seeded and replayable: a server and three machines, each with its own
//! local mcp-memory-service, under the default merge policy. A few dozen random stores, local
//! tag edits, edits and deletes by other clients on the server, syncs and server outages; then
//! every machine syncs until quiet, and the properties of the sync are checked against a model
//! of what happened.
//!
//! `MEMSYNC_RANDOM_SEED` (one seed or a comma-separated list) and `MEMSYNC_RANDOM_STEPS` replay
//! a run; every assertion message names the seed.

#[path = "../common/mod.rs"]
mod common;
mod model;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use common::mms::{Machine, Server, curl, hash_of};
use serde_json::json;

use model::{Ev, MACHINES, Mem, Model, Rng, live, seeds, steps};

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
