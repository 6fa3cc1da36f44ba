//! Whole-file parsing tests: accepted configs and env expansion (errors in `errors.rs`).

mod errors;

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

pub(super) fn env(name: &str) -> Option<String> {
    match name {
        "HOME" => Some("/home/me".into()),
        "BUCKET" => Some("env-bucket".into()),
        "SECRET" => Some("s3cr3t".into()),
        _ => None,
    }
}

pub(super) fn p(text: &str) -> Result<Config, ConfigError> {
    parse(text, Path::new("litestream.yml"), true, &env)
}

pub(super) fn ok(text: &str) -> Config {
    p(text).unwrap_or_else(|e| panic!("{e}"))
}

pub(super) fn err(text: &str) -> String {
    match p(text) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

pub(super) fn s3(bucket: &str, path: &str) -> ReplicaTarget {
    ReplicaTarget::S3 {
        bucket: bucket.into(),
        path: path.into(),
        endpoint: None,
        region: None,
        force_path_style: false,
        skip_verify: false,
        access_key_id: None,
        secret_access_key: None,
    }
}

#[test]
fn litestream_v03_examples() {
    let c = ok(
        "dbs:\n  - path: /var/lib/db\n    replicas:\n      - url: s3://mybkt.litestream.io/db\n",
    );
    assert_eq!(c.dbs.len(), 1);
    assert_eq!(c.source, PathBuf::from("litestream.yml"));
    assert_eq!(c.dbs[0].replicas[0].target, s3("mybkt.litestream.io", "db"));

    let c = ok(r#"
access-key-id: AKIAxxxxxxxxxxxxxxxx
secret-access-key: xxxxxx/xxxxxxxxx

dbs:
  - path: /var/lib/db1
    replicas:
      - url: s3://mybkt.litestream.io/db1
  - path: /var/lib/db2
    replicas:
      - type: s3
        bucket: mybkt.litestream.io
        path: db2
        region: us-east-1
        sync-interval: 10s
        retention: 24h
      - name: local
        path: /backups/db2
        retention: 72h
"#);
    let r = &c.dbs[1].replicas[0];
    assert_eq!(r.sync_interval, Duration::from_secs(10));
    let ReplicaTarget::S3 {
        bucket,
        path,
        region,
        access_key_id,
        secret_access_key,
        ..
    } = &r.target
    else {
        panic!("{r:?}")
    };
    assert_eq!(
        (bucket.as_str(), path.as_str()),
        ("mybkt.litestream.io", "db2")
    );
    assert_eq!(region.as_deref(), Some("us-east-1"));
    assert_eq!(access_key_id.as_deref(), Some("AKIAxxxxxxxxxxxxxxxx"));
    assert_eq!(secret_access_key.as_deref(), Some("xxxxxx/xxxxxxxxx"));
    let local = &c.dbs[1].replicas[1];
    assert_eq!(local.name, "local");
    assert_eq!(
        local.target,
        ReplicaTarget::File {
            path: "/backups/db2".into()
        }
    );
    assert_eq!(local.retention, Duration::from_secs(72 * 3600));
}

#[test]
fn litestream_v05_example_with_global_defaults() {
    let c = ok(r#"
# global replica settings
sync-interval: 5s
retention: 48h
region: us-west-2
logging:
  level: debug
  type: json
  stderr: true
addr: ":9090"
dbs:
  - path: /var/lib/app.db
    busy-timeout: 5s
    truncate-page-n: 0
    replica:
      url: s3://my-bucket/app?endpoint=http://minio:9000&forcePathStyle=true
  - path: /var/lib/other.db
    replica:
      type: file
      path: /mnt/backup/other
      sync-interval: 0
"#);
    assert_eq!(c.addr.as_deref(), Some(":9090"));
    assert_eq!(
        c.logging,
        LoggingConfig {
            level: LogLevel::Debug,
            format: LogFormat::Json,
            stderr: true
        }
    );
    let db = &c.dbs[0];
    assert_eq!(db.busy_timeout, Duration::from_secs(5));
    assert_eq!(db.truncate_page_n, 0);
    let r = &db.replicas[0];
    assert_eq!(r.name, "s3");
    assert_eq!(r.sync_interval, Duration::from_secs(5));
    assert_eq!(r.retention, Duration::from_secs(48 * 3600));
    let ReplicaTarget::S3 {
        endpoint,
        region,
        force_path_style,
        ..
    } = &r.target
    else {
        panic!()
    };
    assert_eq!(endpoint.as_deref(), Some("http://minio:9000"));
    assert_eq!(region.as_deref(), Some("us-west-2"));
    assert!(force_path_style);
    let r = &c.dbs[1].replicas[0];
    assert_eq!(r.sync_interval, Duration::ZERO);
    assert_eq!(r.retention, Duration::from_secs(48 * 3600));
}

#[test]
fn defaults() {
    let c = ok("dbs:\n  - path: /a.db\n    replicas:\n      - path: /backup/a\n");
    assert_eq!(c.logging, LoggingConfig::default());
    let db = &c.dbs[0];
    assert_eq!(db.meta_path, None);
    assert_eq!(db.monitor_interval, Duration::from_secs(1));
    assert_eq!(db.checkpoint_interval, Duration::from_secs(60));
    assert_eq!(db.min_checkpoint_page_count, 1000);
    assert_eq!(db.truncate_page_n, 121_359);
    assert_eq!(db.busy_timeout, Duration::from_secs(1));
    let r = &db.replicas[0];
    assert_eq!(r.name, "file");
    assert_eq!(r.sync_interval, Duration::from_secs(1));
    assert_eq!(r.retention, Duration::from_secs(86_400));
    assert_eq!(r.retention_check_interval, Duration::from_secs(3600));
    assert_eq!(r.snapshot_interval, None);
}

#[test]
fn all_db_and_replica_keys() {
    let c = ok(r#"
dbs:
  - path: ~/data/app.db
    meta-path: /var/lib/memsync/app
    monitor-interval: 250ms
    checkpoint-interval: 1m30s
    min-checkpoint-page-count: 500
    truncate-page-n: 20000
    busy-timeout: 2s
    replicas:
      - name: offsite
        type: s3
        bucket: b
        path: /x/y/
        endpoint: https://s3.example.com
        force-path-style: true
        skip-verify: true
        access-key-id: id
        secret-access-key: ${SECRET}
        retention-check-interval: 30m
        snapshot-interval: 6h
      - url: webdavs://dav.example.com/backups/app
"#);
    let db = &c.dbs[0];
    assert_eq!(db.path, PathBuf::from("/home/me/data/app.db"));
    assert_eq!(db.meta_path, Some(PathBuf::from("/var/lib/memsync/app")));
    assert_eq!(db.monitor_interval, Duration::from_millis(250));
    assert_eq!(db.checkpoint_interval, Duration::from_secs(90));
    assert_eq!(
        (db.min_checkpoint_page_count, db.truncate_page_n),
        (500, 20000)
    );
    let r = &db.replicas[0];
    assert_eq!(r.retention_check_interval, Duration::from_secs(1800));
    assert_eq!(r.snapshot_interval, Some(Duration::from_secs(6 * 3600)));
    assert_eq!(
        r.target,
        ReplicaTarget::S3 {
            bucket: "b".into(),
            path: "x/y".into(),
            endpoint: Some("https://s3.example.com".into()),
            region: None,
            force_path_style: true,
            skip_verify: true,
            access_key_id: Some("id".into()),
            secret_access_key: Some("s3cr3t".into()),
        }
    );
    let r = &db.replicas[1];
    assert_eq!(r.name, "http");
    assert_eq!(
        r.target,
        ReplicaTarget::Http {
            url: "https://dav.example.com/backups/app".into()
        }
    );
}

#[test]
fn relative_db_path_is_made_absolute_against_cwd() {
    let c = ok("dbs:\n  - path: data/./x/../app.db\n    replica:\n      path: bk\n");
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(c.dbs[0].path, cwd.join("data/app.db"));
    assert_eq!(
        c.dbs[0].replicas[0].target,
        ReplicaTarget::File {
            path: cwd.join("bk")
        }
    );
}

#[test]
fn env_expansion_in_config() {
    let text = "dbs:\n  - path: /a.db\n    replica:\n      url: s3://${BUCKET}/$BUCKET\n      secret-access-key: 'pa$$word'\n";
    let c = ok(text);
    let ReplicaTarget::S3 {
        bucket,
        path,
        secret_access_key,
        ..
    } = &c.dbs[0].replicas[0].target
    else {
        panic!()
    };
    assert_eq!(
        (bucket.as_str(), path.as_str()),
        ("env-bucket", "env-bucket")
    );
    assert_eq!(secret_access_key.as_deref(), Some("pa$word"));

    assert_eq!(
        err("dbs:\n  - path: /a.db\n    replica:\n      url: s3://${NOPE}/x\n"),
        "litestream.yml:4: environment variable \"NOPE\" is not set (write $$ for a literal $, or disable expansion with -no-expand-env)"
    );
    // -no-expand-env: the text is taken literally.
    let c = parse(
        "dbs:\n  - path: /a$$b.db\n    replica:\n      path: /x/$NOPE\n",
        Path::new("l.yml"),
        false,
        &env,
    )
    .unwrap();
    assert_eq!(c.dbs[0].path, PathBuf::from("/a$$b.db"));
    assert_eq!(
        c.dbs[0].replicas[0].target,
        ReplicaTarget::File {
            path: "/x/$NOPE".into()
        }
    );
}

#[test]
fn load_reads_file_and_reports_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("litestream.yml");
    std::fs::write(
        &path,
        "dbs:\n  - path: /a.db\n    replica:\n      path: /b\n",
    )
    .unwrap();
    let c = load(&path, true).unwrap();
    assert_eq!(c.source, path);
    assert_eq!(c.dbs[0].path, PathBuf::from("/a.db"));
    let missing = dir.path().join("nope.yml");
    let e = load(&missing, true).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }));
    assert!(
        e.to_string()
            .starts_with(&format!("{}: cannot read config", missing.display()))
    );
}

#[test]
fn example_file_parses() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/litestream.yml.example"
    ))
    .unwrap();
    let env = |n: &str| match n {
        "HOME" => Some("/home/me".to_string()),
        _ => Some(format!("value-of-{n}")),
    };
    let c = parse(&text, Path::new("litestream.yml.example"), true, &env)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!c.dbs.is_empty());
}

/// Validation is a lookup per entry, not a scan of every other entry: 20 000 databases took
/// over a minute when it was quadratic. Asserts only the results; prints the time.
#[test]
fn twenty_thousand_databases_validate_and_conflicts_are_still_found() {
    let mut text = String::from("dbs:\n");
    for i in 0..20_000 {
        text.push_str(&format!(
            "  - path: /data/db{i}.sqlite\n    replicas:\n      - path: /backups/db{i}\n        name: r\n"
        ));
    }
    let t = std::time::Instant::now();
    let c = ok(&text);
    eprintln!("20 000 databases parsed and validated in {:?}", t.elapsed());
    assert_eq!(c.dbs.len(), 20_000);

    let inside = format!(
        "{text}  - path: /data/extra.sqlite\n    replicas:\n      - path: /backups/db17/sub\n"
    );
    let e = err(&inside);
    assert!(
        e.contains("is inside") && e.contains("/data/db17.sqlite"),
        "{e}"
    );
    let contains =
        format!("{text}  - path: /data/extra.sqlite\n    replicas:\n      - path: /backups\n");
    let e = err(&contains);
    assert!(
        e.contains("contains") && e.contains("of db /data/db"),
        "{e}"
    );
    let same =
        format!("{text}  - path: /data/extra.sqlite\n    replicas:\n      - path: /backups/db5\n");
    let e = err(&same);
    assert!(
        e.contains("points at the same place as") && e.contains("/data/db5.sqlite"),
        "{e}"
    );
    let twice =
        format!("{text}  - path: /data/db9.sqlite\n    replicas:\n      - path: /backups/x\n");
    let e = err(&twice);
    assert!(e.contains("configured twice (first at dbs[9]"), "{e}");
    let over_db =
        format!("{text}  - path: /data/extra.sqlite\n    replicas:\n      - path: /data\n");
    let e = err(&over_db);
    assert!(
        e.contains("is or contains the database file /data/db"),
        "{e}"
    );
}

/// Restore-point tiers: Litestream's `levels` and `l0-retention`, a level's `retention`
/// defaulting to a day for level 1 and 0 above; nonsense refused with its line.
#[test]
fn restore_point_tiers() {
    let db = "dbs:\n  - path: /a.db\n    replica:\n      path: /b\n";
    assert_eq!(ok(db).tiers, Tiers::default());
    let c = ok(&format!(
        "l0-retention: 1m\nlevels:\n  - interval: 10s\n  - interval: 2m\n    retention: 1h\n{db}"
    ));
    let lvl = |i, r| LevelTier {
        interval: Duration::from_secs(i),
        retention: Duration::from_secs(r),
    };
    assert_eq!(
        c.tiers,
        Tiers {
            l0_retention: Duration::from_secs(60),
            levels: vec![lvl(10, 24 * 3600), lvl(120, 3600)],
        }
    );
    assert_eq!(
        err(&format!("levels: []\n{db}")),
        "litestream.yml:1: `levels` must list between 1 and 9 levels"
    );
    assert!(err(&format!("levels:\n  - interval: 0\n{db}")).contains("must not be 0"));
    assert!(err(&format!("levels:\n  - retention: 1h\n{db}")).contains("`interval` is required"));
    assert_eq!(
        err(&format!(
            "levels:\n  - interval: 5m\n  - interval: 30s\n{db}"
        )),
        "litestream.yml:3: level 2: `interval` 30s must be longer than level 1's 5m"
    );
    assert!(
        err(&format!(
            "levels:\n  - interval: 30s\n  - interval: 30s\n{db}"
        ))
        .contains("longer")
    );
    assert!(err(&format!("levels:\n  - interval: 1s\n    every: 2s\n{db}")).contains("every"));
}

#[test]
fn spool_budget_takes_sizes_and_refuses_nonsense() {
    let with = |v: &str| {
        format!(
            "dbs:\n  - path: /data/db.sqlite\n    spool-budget: {v}\n    replicas:\n      - path: /backups/db\n"
        )
    };
    assert_eq!(ok(&with("512MB")).dbs[0].spool_budget, 512 << 20);
    assert_eq!(ok(&with("2 GiB")).dbs[0].spool_budget, 2 << 30);
    assert_eq!(ok(&with("1048576")).dbs[0].spool_budget, 1 << 20);
    let d = ok("dbs:\n  - path: /data/db.sqlite\n    replicas:\n      - path: /backups/db\n");
    assert_eq!(d.dbs[0].spool_budget, crate::config::DEFAULT_SPOOL_BUDGET);
    for bad in ["lots", "-5", "12XB", "1.5GB"] {
        let e = parse(&with(bad), Path::new("l.yml"), true, &|_: &str| None).unwrap_err();
        assert!(e.to_string().contains("spool-budget"), "{bad}: {e}");
    }
}

#[test]
fn exec_is_kept_when_it_splits_into_words() {
    let c = ok(
        "exec: \"sh -c 'sleep 1; exit 3'\"\ndbs:\n  - path: /a.db\n    replica:\n      path: /b\n",
    );
    assert_eq!(c.exec.as_deref(), Some("sh -c 'sleep 1; exit 3'"));
    assert_eq!(
        err("exec: \"app 'unclosed\"\ndbs:\n  - path: /a.db\n    replica:\n      path: /b\n"),
        "litestream.yml:1: `exec`: a single quote is not closed"
    );
}

/// The place `memsync databases` shows for an S3 replica restores by itself: every setting
/// in the URL (region and path style too), each part encoded (a space in a database's name).
#[test]
fn an_s3_location_parses_back_to_the_same_replica() {
    let t = ReplicaTarget::S3 {
        bucket: "backups".into(),
        path: "tenants/sp ace.db".into(),
        endpoint: Some("http://127.0.0.1:8333".into()),
        region: Some("eu-west-1".into()),
        force_path_style: true,
        skip_verify: false,
        access_key_id: Some("id".into()),
        secret_access_key: Some("secret".into()),
    };
    let shown = t.location();
    assert!(!shown.contains(' ') && !shown.contains("secret"), "{shown}");
    let back = replica_from_url(&shown).unwrap().target;
    assert_eq!(back.location(), shown);
    let ReplicaTarget::S3 {
        path,
        region,
        force_path_style,
        endpoint,
        ..
    } = back
    else {
        panic!("not S3: {shown}")
    };
    assert_eq!(
        (path.as_str(), region.as_deref(), force_path_style),
        ("tenants/sp ace.db", Some("eu-west-1"), true)
    );
    assert_eq!(endpoint.as_deref(), Some("http://127.0.0.1:8333"));
}
