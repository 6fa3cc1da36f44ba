//! `/health` for replicas that go away while nothing is written: the idle probe finds them.

use super::*;
use crate::common::{assert_same, check_sound};

/// The application writes a first memory and `s`'s replicator starts; returns once `/health`
/// at `port` says 200 (the application's connection stays open with it).
fn start_healthy(s: &Scene, port: u16) -> (rusqlite::Connection, common::Replicator) {
    let app = create_memdb(&s.db);
    insert_memory(&app, 1);
    let r = s.start();
    wait_until(
        "healthy",
        || s.log_tail(),
        || get(port, "/health").is_some_and(|(code, _)| code == 200),
    );
    (app, r)
}

/// `/health` at `port` is 503 for a replica with nothing to ship that does not answer; its body.
fn idle_unreachable(port: u16) -> Option<String> {
    get(port, "/health")
        .filter(|(code, body)| *code == 503 && body.contains("failing with nothing new to ship"))
        .map(|(_, body)| body)
}

/// A replica that goes away while nothing is written: an idle probe finds it, /health turns 503
/// naming it, and 200 once it answers again; nothing is written meanwhile.
#[test]
fn health_sees_an_idle_replica_go_away_and_come_back() {
    let s = Scene::new("", "");
    let (root, serve_log) = serve_paths(&s);
    let ports = free_ports(2);
    let (addr_port, serve_port) = (ports[0], ports[1]);
    let server = start_serve(&root, serve_port, &serve_log);
    std::fs::write(
        &s.config,
        format!(
            "addr: 127.0.0.1:{addr_port}\ndbs:\n  - path: {}\n    replicas:\n      - name: remote\n        url: http://memsync:{KEY}@127.0.0.1:{serve_port}/app\n        sync-interval: 1s\n",
            s.db.display()
        ),
    )
    .unwrap();
    let (_app, r) = start_healthy(&s, addr_port);
    let log = || s.log_tail();
    stop(server);
    wait_until("/health names the idle replica that went away", log, || {
        idle_unreachable(addr_port).is_some_and(|body| {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            v["problems"][0]["replica"] == "remote"
        })
    });
    let server = start_serve(&root, serve_port, &serve_log);
    wait_until("/health is 200 again", log, || {
        get(addr_port, "/health").is_some_and(|(code, _)| code == 200)
    });
    let (st, out) = r.stop();
    assert!(st.success(), "{out}");
    assert!(out.contains("): answers again"), "{out}");
    stop(server);
}

/// A file replica wiped while nothing is written: the idle probe finds its lineage record gone
/// and starts the replica over (the record written again, a fresh snapshot), as a start would;
/// the replica restores the database again without another commit.
#[test]
fn an_idle_file_replica_wiped_is_started_over() {
    let s = Scene::new("", "        sync-interval: 1s\n");
    let addr_port = free_ports(1)[0];
    let mut yml = std::fs::read_to_string(&s.config).unwrap();
    yml.push_str(&format!("addr: 127.0.0.1:{addr_port}\n"));
    std::fs::write(&s.config, yml).unwrap();
    let (app, r) = start_healthy(&s, addr_port);
    std::fs::remove_dir_all(&s.replica).unwrap();
    wait_until(
        "the wiped replica started over",
        || s.log_tail(),
        || s.log_tail().contains("its lineage record is gone"),
    );
    let out = s.wait_for_rows(1);
    assert_same(&app, &check_sound(&out));
    let (st, out) = r.stop();
    assert!(st.success(), "{out}");
}

/// A replica that is down when replication starts counts each failed attempt, as one that
/// fails later does (its error counter stayed 0 and `/health` said "0 failed attempts" while
/// it was retried, so an alert on the counter never fired for a backup target down at boot).
#[test]
fn a_replica_down_at_start_counts_its_failed_attempts() {
    let s = Scene::new("", "");
    let ports = free_ports(2);
    let (addr_port, closed_port) = (ports[0], ports[1]);
    std::fs::write(
        &s.config,
        format!(
            "addr: 127.0.0.1:{addr_port}\ndbs:\n  - path: {}\n    replicas:\n      - name: remote\n        url: http://memsync:{KEY}@127.0.0.1:{closed_port}/app\n        sync-interval: 1s\n",
            s.db.display()
        ),
    )
    .unwrap();
    let app = create_memdb(&s.db);
    insert_memory(&app, 1);
    let r = s.start();
    wait_until(
        "the failed start counted",
        || s.log_tail(),
        || {
            get(addr_port, "/metrics").is_some()
                && exposition::Scrape::take(addr_port)
                    .value("memsync_replica_errors_total", Some("remote"))
                    >= 1.0
        },
    );
    let (_, out) = r.stop();
    assert!(out.contains("retrying"), "{out}");
}
