//! Replication to real remote stores (SeaweedFS S3 and nginx WebDAV on 127.0.0.1, started by
//! the test): several replicas at once, outages, a memsync killed during one, the spool
//! budget, and a fault proxy in front of S3.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::proxy::{self, Proxy};
use common::s3::{self, SeaweedS3, listing, restore_from};
use common::webdav;
use common::*;
use memsync::formats::ObjectKey;

/// No two files of one level overlap, and no level-0 file is shipped twice: a replica's
/// history is one chain per level, whatever retries and outages did.
fn assert_no_overlap(url: &str) {
    let keys = listing(url);
    for level in 0..=9u8 {
        let mut segs: Vec<&ObjectKey> = keys
            .iter()
            .filter(|k| k.level().is_some_and(|l| l.get() == level))
            .collect();
        segs.sort_by_key(|k| k.min_txid());
        for w in segs.windows(2) {
            // Pieces of one busy bucket are consolidated into a file covering both, which may
            // coexist with them for a grace period: only partial overlaps are wrong.
            let (a, b) = (w[0], w[1]);
            let nested = (a.min_txid() <= b.min_txid() && b.max_txid() <= a.max_txid())
                || (b.min_txid() <= a.min_txid() && a.max_txid() <= b.max_txid());
            assert!(
                a.max_txid() < b.min_txid() || nested,
                "{url}: level {level} files overlap: {} and {}",
                a.path(),
                b.path()
            );
        }
    }
}

/// Writes `n` memories from `from`, one per transaction, a few milliseconds apart; returns
/// commits per second.
fn write(c: &rusqlite::Connection, from: u64, n: u64) -> f64 {
    let t = Instant::now();
    for i in from..from + n {
        insert_memory(c, i);
        if i % 20 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn s3_replica(url: &str) -> String {
    format!("      - url: \"{url}\"\n        name: s3\n")
}

fn dav_replica(url: &str) -> String {
    format!("      - url: \"{url}\"\n        name: dav\n")
}

fn spool_dir(scene: &Scene) -> PathBuf {
    scene.dir.path().join(".db.sqlite-memsync/spool")
}

fn dir_bytes(p: &Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let m = e.metadata().unwrap();
            n += if m.is_dir() {
                dir_bytes(&e.path())
            } else {
                m.len()
            };
        }
    }
    n
}

#[test]
fn one_database_to_file_s3_and_webdav_at_once_restores_exactly_from_each() {
    let s3 = s3::shared();
    let dav = webdav::shared();
    let s3_url = s3.url(&s3::unique_prefix("three"));
    let dav_url = dav.url(&s3::unique_prefix("three"));
    let scene = Scene::new(
        "",
        &format!("{}{}", s3_replica(&s3_url), dav_replica(&dav_url)),
    );
    let app = create_memdb(&scene.db);
    // A CA bundle variable naming nothing useful (set in some environments for other tools)
    // must not stop the S3 client: it is ignored with a warning.
    // Nor a bundle whose certificate block does not parse (it made the client fail to build,
    // plain-HTTP replicas included).
    let bad_pem = scene.dir.path().join("bad.pem");
    std::fs::write(
        &bad_pem,
        "-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGUsIGp1c3QgYnl0ZXMgaW4gYmFzZTY0Lg==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let bad_pem = bad_pem.to_str().unwrap().to_owned();
    let mut env = s3.env().to_vec();
    env.push(("AWS_CA_BUNDLE", "/nonexistent/ca-bundle.pem"));
    env.push(("SSL_CERT_FILE", &bad_pem));
    let r = scene.start_with(&env);
    write(&app, 0, 600);
    let (st, log) = r.stop();
    assert!(st.success(), "replicate failed:\n{log}");
    assert!(
        log.contains("AWS_CA_BUNDLE=/nonexistent/ca-bundle.pem not used"),
        "no warning about the unusable CA bundle:\n{log}"
    );
    assert!(
        log.contains("none of its 1 certificates parses"),
        "no warning about the certificate that does not parse:\n{log}"
    );
    assert_eq!(
        log.matches("bad.pem not used").count(),
        1,
        "said once:\n{log}"
    );
    // Three empty replicas share the first run's one snapshot.
    assert!(
        log.contains(" 1 snapshots,"),
        "a fresh database's first run took more than one snapshot:\n{log}"
    );
    for (name, url) in [("file", scene.url()), ("s3", s3_url), ("dav", dav_url)] {
        let restored = restore_from(scene.dir.path(), &format!("{name}.db"), &url);
        assert_same(&app, &restored);
        assert_no_overlap(&url);
    }
}

#[test]
fn an_s3_outage_during_writes_and_a_killed_memsync_lose_nothing() {
    let mut s3 = SeaweedS3::start();
    let s3_url = s3.url("outage");
    let scene = Scene::new(
        "",
        &format!("{}        sync-interval: 1s\n", s3_replica(&s3_url)),
    );
    let app = create_memdb(&scene.db);
    let r = scene.start_with(&s3.env());
    let before = write(&app, 0, 300);
    s3.stop();
    let during = write(&app, 300, 300);
    // Killed in the middle of the outage: what it had not shipped is in its spool.
    std::thread::sleep(Duration::from_secs(2));
    r.kill();
    let mut r = scene.start_with(&s3.env());
    write(&app, 600, 100);
    r.wait_for_log("retrying");
    s3.resume();
    write(&app, 700, 100);
    let (st, log) = r.stop();
    assert!(st.success(), "replicate failed:\n{log}");
    eprintln!(
        "application commits/s before the outage {before:.0}, during it {during:.0} (not asserted: timing)"
    );
    let file = restore_from(scene.dir.path(), "file.db", &scene.url());
    assert_same(&app, &file);
    let cfg_env = s3.env();
    let out = scene.dir.path().join("s3.db");
    let o = Command::new(BIN)
        .envs(cfg_env)
        .args(["restore", "-o", out.to_str().unwrap(), &s3_url])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same(&app, &check_sound(&out));
}

#[test]
fn past_the_spool_budget_an_unreachable_replica_gets_a_fresh_snapshot_and_the_spool_stays_bounded()
{
    let mut s3 = SeaweedS3::start();
    let s3_url = s3.url("budget");
    let scene = Scene::new("", "");
    // The S3 replica alone: no other replica's confirmations wake the spool's pruner.
    std::fs::write(
        &scene.config,
        format!(
            "dbs:\n  - path: {}\n    spool-budget: 256KB\n    replicas:\n{}levels:\n  - interval: 2s\n  - interval: 10s\n",
            scene.db.display(),
            s3_replica(&s3_url)
        ),
    )
    .unwrap();
    let app = create_memdb(&scene.db);
    let mut r = scene.start_with(&s3.env());
    write(&app, 0, 100);
    // The replica holds a backup before the outage.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !listing(&s3_url).iter().any(ObjectKey::is_snapshot) {
        assert!(
            Instant::now() < deadline,
            "no snapshot reached S3:\n{}",
            r.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Quiet long enough for the replica to have everything: the outage starts with no replica
    // behind (then nothing confirmed the captures that followed, nothing weighed the spool,
    // and it grew without bound until the replica answered again).
    std::thread::sleep(Duration::from_secs(3));
    s3.stop();
    // Writes spread over ~20 s, so the budget's checks see the spool grow.
    let mut sizes = Vec::new();
    for k in 0..10 {
        write(&app, 100 + k * 100, 100);
        std::thread::sleep(Duration::from_secs(2));
        sizes.push(dir_bytes(&spool_dir(&scene)));
    }
    r.wait_for_log("reached its budget");
    s3.resume();
    r.wait_for_log("every replica caught up");
    assert!(
        r.log().contains("behind (the spool no longer holds"),
        "the replica did not start over from a snapshot:\n{}",
        r.log()
    );
    write(&app, 2000, 50);
    let (st, log) = r.stop();
    assert!(st.success(), "replicate failed:\n{log}");
    // Without the budget the spool keeps everything the replica lacks and only grows through
    // the outage; with it, it is cut back to what compaction and crash replay still need
    // (which grows again until the next check).
    eprintln!("spool bytes during the outage: {sizes:?}");
    let cut = sizes
        .windows(2)
        .any(|w| w[0] > 256 << 10 && w[1] < w[0] / 2);
    assert!(
        cut,
        "the spool was never cut back during the outage: {sizes:?}\n{log}"
    );
    // The positions the replica never got are a gap in `memsync wal`, as a -timestamp
    // restore inside them fails (it listed one stretch across them).
    let o = Command::new(BIN)
        .envs(s3.env())
        .args(["wal", "-json", &s3_url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        text.contains("\"resumes_txid\""),
        "no gap listed after the dropped stretch:\n{text}"
    );
    let out = scene.dir.path().join("s3.db");
    let o = Command::new(BIN)
        .envs(s3.env())
        .args(["restore", "-o", out.to_str().unwrap(), &s3_url])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same(&app, &check_sound(&out));
}

#[test]
fn through_a_proxy_answering_500_resetting_and_delaying_replication_completes_without_overlap() {
    let s3 = s3::shared();
    let port: u16 = s3.endpoint().rsplit(':').next().unwrap().parse().unwrap();
    let p = Proxy::start(port);
    let prefix = s3::unique_prefix("proxy");
    let url = format!(
        "s3://{}/{prefix}?endpoint=http://127.0.0.1:{}&region={}&forcePathStyle=true",
        s3::BUCKET,
        p.port,
        s3::REGION
    );
    let scene = Scene::new("", &s3_replica(&url));
    let app = create_memdb(&scene.db);
    let r = scene.start_with(&s3.env());
    write(&app, 0, 100);
    for (i, mode) in [proxy::ERROR_500, proxy::REFUSE, proxy::GARBAGE]
        .into_iter()
        .enumerate()
    {
        p.set_mode(mode);
        write(&app, 100 + i as u64 * 100, 100);
        std::thread::sleep(Duration::from_secs(2));
    }
    p.set_mode(proxy::FORWARD);
    p.set_delay(Duration::from_millis(300));
    write(&app, 400, 100);
    p.set_delay(Duration::ZERO);
    std::thread::sleep(Duration::from_secs(3));
    let (st, log) = r.stop();
    assert!(st.success(), "replicate failed:\n{log}");
    // Read straight from the server, not through the proxy.
    let direct = s3.url(&prefix);
    let restored = restore_from(scene.dir.path(), "s3.db", &direct);
    assert_same(&app, &restored);
    assert_no_overlap(&direct);
}

#[test]
fn a_second_database_pointed_at_the_same_s3_replica_is_refused() {
    let s3 = s3::shared();
    let url = s3.url(&s3::unique_prefix("owned"));
    let first = Scene::new("", &s3_replica(&url));
    let _app = create_memdb(&first.db);
    let r = first.start_with(&s3.env());
    std::thread::sleep(Duration::from_secs(2));
    let (st, log) = r.stop();
    assert!(st.success(), "{log}");
    let second = Scene::new("", &s3_replica(&url));
    let _app2 = create_memdb(&second.db);
    let mut r = second.start_with(&s3.env());
    let st = r
        .wait_exit(Duration::from_secs(30))
        .expect("a second database on the same S3 replica must be refused");
    assert!(!st.success());
    let log = r.log();
    assert!(
        log.contains("belongs to database"),
        "the refusal does not say why:\n{log}"
    );
}

#[test]
fn restore_picks_the_replica_with_the_newest_state_and_works_while_another_is_down() {
    let mut s3 = SeaweedS3::start();
    let s3_url = s3.url("pick");
    // S3 first in the config: the newest state, not the order, decides.
    let scene = Scene::new("", "");
    std::fs::write(
        &scene.config,
        format!(
            "dbs:\n  - path: {}\n    replicas:\n{}        access-key-id: {}\n        secret-access-key: {}\n      - type: file\n        path: {}\n",
            scene.db.display(),
            s3_replica(&s3_url),
            s3::ACCESS_KEY,
            s3::SECRET_KEY,
            scene.replica.display()
        ),
    )
    .unwrap();
    let app = create_memdb(&scene.db);
    let r = scene.start();
    write(&app, 0, 100);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !listing(&s3_url).iter().any(ObjectKey::is_snapshot) {
        assert!(
            Instant::now() < deadline,
            "no snapshot reached S3:\n{}",
            r.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    s3.stop();
    write(&app, 100, 100);
    let (st, log) = r.stop();
    assert!(st.success(), "{log}");
    // S3 holds an older state (and is down): the file replica is chosen, and says so.
    let out = restore_by_config(&scene, "picked.db", "file");
    assert_same(&app, &check_sound(&out));
    // S3 back and the file replica gone: S3's state, all it has, is restored.
    s3.resume();
    std::fs::remove_dir_all(&scene.replica).unwrap();
    let out2 = restore_by_config(&scene, "from-s3.db", "s3");
    assert_prefix(&app, &check_sound(&out2));
}

/// `restore -config` of the scene's database into `name`; it must say it chose `replica`.
fn restore_by_config(scene: &Scene, name: &str, replica: &str) -> PathBuf {
    let (out, err) = restore_via_config(scene, name);
    assert!(
        err.contains(&format!("restoring from replica {replica}")),
        "{err}"
    );
    out
}

/// `restore -config` of the scene's database into `name`, which must succeed; its stderr.
fn restore_via_config(scene: &Scene, name: &str) -> (PathBuf, String) {
    let out = scene.dir.path().join(name);
    let o = run(&[
        "restore",
        "-config",
        scene.config.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        scene.db.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    (out, err)
}

/// A Litestream 0.5 WebDAV replica config (`type: webdav`, `webdav-url`, `webdav-username`,
/// `webdav-password`) works unchanged against a server requiring Basic auth (it was refused:
/// unknown key "webdav-url").
#[test]
fn litestream_webdav_keys_replicate_and_restore() {
    let mut dav = webdav::WebDav::start_with_auth("lite", "s3cret:pw");
    let url = dav.url(&s3::unique_prefix("lite"));
    let scene = Scene::new("", "");
    std::fs::write(
        &scene.config,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      type: webdav\n      webdav-url: {url}\n      webdav-username: lite\n      webdav-password: \"s3cret:pw\"\n",
            scene.db.display()
        ),
    )
    .unwrap();
    let app = create_memdb(&scene.db);
    write(&app, 0, 50);
    let o = run(&[
        "replicate",
        "-once",
        "-config",
        scene.config.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (out, _) = restore_via_config(&scene, "dav.db");
    assert_same(&app, &check_sound(&out));
    dav.stop();
}

/// An endpoint written without a scheme (`127.0.0.1:PORT`, which Litestream accepts) is plain
/// HTTP on this machine, in the URL form and as the `endpoint` key (before: a panic at the
/// first request, and a replicator that never shipped while `/health` said ok).
#[test]
fn an_s3_endpoint_without_a_scheme_works() {
    let s3 = s3::shared();
    let bare = s3.endpoint().trim_start_matches("http://").to_string();
    let prefix = s3::unique_prefix("bare");
    let url = format!(
        "s3://{}/{prefix}?endpoint={bare}&region={}&forcePathStyle=true",
        s3::BUCKET,
        s3::REGION
    );
    let scene = Scene::new("", &s3_replica(&url));
    let app = create_memdb(&scene.db);
    write(&app, 0, 20);
    let o = Command::new(BIN)
        .envs(s3.env())
        .args(["replicate", "-once", "-config"])
        .arg(&scene.config)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same(&app, &restore_from(scene.dir.path(), "url.db", &url));
    let item = s3
        .replica_item("bare", &prefix)
        .replace(&s3.endpoint(), &bare);
    let keyed = Scene::new("", &item);
    let o = Command::new(BIN)
        .args(["restore", "-o"])
        .arg(keyed.dir.path().join("keyed.db"))
        .arg("-config")
        .arg(&keyed.config)
        .arg(&keyed.db)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same(&app, &check_sound(&keyed.dir.path().join("keyed.db")));
}

/// A replica that refuses the key is said at ERROR with what to check, not taken for an
/// outage ("unreachable", a warning, before); `-once` still fails, naming it.
#[test]
fn a_refused_key_is_an_error_to_check_not_an_outage() {
    let s3 = s3::shared();
    let url = s3.url(&s3::unique_prefix("badkey"));
    let scene = Scene::new("", &s3_replica(&url));
    let app = create_memdb(&scene.db);
    write(&app, 0, 5);
    let o = Command::new(BIN)
        .env("AWS_ACCESS_KEY_ID", s3::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .args(["replicate", "-once", "-config"])
        .arg(&scene.config)
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("ERROR") && out.contains("check the replica's credentials"),
        "{out}"
    );
    assert!(!out.contains("unreachable"), "{out}");
}
