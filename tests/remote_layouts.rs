//! Where a remote replica's files are (real SeaweedFS S3 and nginx WebDAV on 127.0.0.1,
//! started by the test): paths with non-ASCII letters, `~` or `%` are the keys as written, and
//! a place where Litestream replicates is named as such and never written into.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::s3::{self, client_of, listing, restore_from, run_env};
use common::webdav;
use common::*;

/// A remote replica whose path holds non-ASCII letters, `~` or `%` restores from the URL it
/// was written to, and its files are where the path says (before: uploads went to a key
/// percent-encoded twice, which no listing found: "holds no backup"); on S3 the key is the
/// path as written, as Litestream writes it.
#[test]
fn replica_paths_with_non_ascii_tilde_and_percent_restore_from_their_url() {
    let s3 = s3::shared();
    let dav = webdav::shared();
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("db.sqlite");
    let app = create_memdb(&db);
    insert_memories(&app, 0..=40);
    let prefix = s3::unique_prefix("odd");
    let name = "d%C3%BCsseldorf/a~b/50%25";
    for (i, url) in [
        s3.url(&format!("{prefix}/{name}")),
        dav.url(&format!("{prefix}/{name}")),
    ]
    .into_iter()
    .enumerate()
    {
        let o = run_env(&["replicate", "-once", db.to_str().unwrap(), &url]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(!listing(&url).is_empty(), "{url}: nothing listed");
        let restored = restore_from(d.path(), &format!("r{i}.db"), &url);
        assert_same(&app, &restored);
    }
    // The WebDAV server's files are at the path as written.
    assert!(
        dav.root().join(&prefix).join("düsseldorf/a~b/50%").is_dir(),
        "not at the written path"
    );
}

/// A replica path where Litestream 0.5.17 replicates (on S3 its files sit in `<path>/0000/`,
/// with no `ltx/` folder; on a directory under `ltx/`): `restore` says it is Litestream's, also
/// with `-if-replica-exists`, and `replicate` refuses to write into it (before: on S3 "holds
/// no backup", "nothing to do", and memsync's own files were added to Litestream's).
#[test]
fn a_litestream_replica_is_named_and_not_written_into() {
    let s3 = s3::shared();
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("db.sqlite");
    let app = create_memdb(&db);
    insert_memories(&app, 0..=20);
    // Litestream 0.5 takes one replica per database: a second database for the directory.
    let db2 = d.path().join("db2.sqlite");
    insert_memories(&create_memdb(&db2), 0..=5);
    let url = s3.url(&s3::unique_prefix("litestream"));
    let dir = d.path().join("lt-dir");
    let cfg = d.path().join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      url: \"{url}\"\n  - path: {}\n    replica:\n      path: {}\n",
            db.display(),
            db2.display(),
            dir.display()
        ),
    )
    .unwrap();
    litestream_until(d.path(), &cfg, &s3.env(), || {
        dir.join("ltx").is_dir() && !listing_raw_is_empty(&url)
    });
    let dir_url = format!("file://{}", dir.display());
    let dir_path = dir.display().to_string();
    // Listed, it is named too, by URL or as a plain path (before: "nothing restorable").
    for target in [url.as_str(), dir_url.as_str(), dir_path.as_str()] {
        let o = run_env(&["wal", target]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{target}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            out.contains("a Litestream backup is there"),
            "{target}: {out}"
        );
    }
    let o = run_env(&[
        "restore",
        "-o",
        d.path().join("p.db").to_str().unwrap(),
        &dir_path,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("a Litestream one"), "plain path: {err}");
    for (target, db) in [(url.as_str(), &db), (dir_url.as_str(), &db2)] {
        for extra in [&[][..], &["-if-replica-exists"][..]] {
            let out = d.path().join("out.db");
            let mut args = vec!["restore", "-o", out.to_str().unwrap()];
            args.extend_from_slice(extra);
            args.push(target);
            let o = run_env(&args);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success(), "{target} {extra:?}: {err}");
            assert!(err.contains("a Litestream one"), "{err}");
        }
        let o = run_env(&["replicate", "-once", db.to_str().unwrap(), target]);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!o.status.success(), "{target}: {all}");
        assert!(all.contains("holds a Litestream backup"), "{all}");
    }
    assert!(!dir.join("lineage").exists() && !dir.join("snapshots").exists());
}

/// Runs Litestream 0.5.17 on `cfg` (log in `dir/litestream.log`) until `done`, one second
/// more, then kills it.
fn litestream_until(dir: &Path, cfg: &Path, env: &[(&str, &str)], done: impl Fn() -> bool) {
    let log_path = dir.join("litestream.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let litestream = common::server::harness().join("venv/bin/litestream");
    common::server::require(&litestream, "Litestream");
    let mut lt = Command::new(&litestream)
        .args(["replicate", "-config", cfg.to_str().unwrap()])
        .env_remove("AWS_CA_BUNDLE")
        .envs(env.iter().copied())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "Litestream wrote nothing:\n{}",
            std::fs::read_to_string(&log_path).unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    let _ = lt.kill();
    let _ = lt.wait();
}

/// Whether no other tool's files are stored under an S3 replica URL yet.
fn listing_raw_is_empty(url: &str) -> bool {
    let rt = memsync::runtime().unwrap();
    rt.block_on(client_of(url).foreign_layout())
        .unwrap()
        .is_none()
}

/// memsync's replica, then Litestream pointed at the same path (it writes its `ltx/` beside
/// memsync's files): `restore`, which reads memsync's files only, and the next `replicate`
/// say so (before: a restore of memsync's older state, silently).
#[test]
fn a_replica_litestream_wrote_into_since_is_named_at_restore_and_replicate() {
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("db.sqlite");
    let app = create_memdb(&db);
    insert_memories(&app, 0..=20);
    let dir = d.path().join("replica");
    let o = run_env(&[
        "replicate",
        "-once",
        db.to_str().unwrap(),
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cfg = d.path().join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      path: {}\n",
            db.display(),
            dir.display()
        ),
    )
    .unwrap();
    insert_memories(&app, 21..=40);
    litestream_until(d.path(), &cfg, &[], || dir.join("ltx").is_dir());
    let out = d.path().join("out.db");
    let o = run_env(&[
        "restore",
        "-o",
        out.to_str().unwrap(),
        dir.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("also holds a Litestream backup") && err.contains("restore with Litestream"),
        "{err}"
    );
    let o = run_env(&[
        "replicate",
        "-once",
        db.to_str().unwrap(),
        dir.to_str().unwrap(),
    ]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{all}");
    assert!(
        all.contains("another replicator writes this replica too"),
        "{all}"
    );
}

/// Litestream's provider host forms: `s3://BUCKET.localhost:PORT/path` is the bucket at
/// `http://localhost:PORT`, path-style (it panicked: the bucket-and-host was taken for a bucket
/// on AWS, with the endpoint cleared to an empty string). An S3 replica on AWS itself (no
/// endpoint) is an error naming the replica, never a panic, whatever the network does.
#[test]
fn provider_hosts_and_aws_itself_are_no_panic() {
    let s3 = s3::shared();
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("db.sqlite");
    let app = create_memdb(&db);
    insert_memories(&app, 0..=10);
    let port = s3.endpoint().rsplit(':').next().unwrap().to_owned();
    let url = format!(
        "s3://{}.localhost:{port}/{}",
        s3::BUCKET,
        s3::unique_prefix("hostform")
    );
    let o = run_env(&["replicate", "-once", db.to_str().unwrap(), &url]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let restored = restore_from(d.path(), "r.db", &url);
    assert_same(&app, &restored);

    for url in [
        "s3://memsync-no-such-bucket-7f3a/db",
        "s3://memsync-no-such-bucket-7f3a.s3.us-west-2.amazonaws.com/db",
        "s3://my.dotted.bucket/db?region=eu-west-1",
    ] {
        let out = d.path().join("aws.db");
        let o = run_env(&["restore", "-o", out.to_str().unwrap(), url]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{url}: {err}");
        assert!(!err.contains("panicked"), "{url}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{url}: one line: {err}");
        assert!(!out.exists());
    }
}
