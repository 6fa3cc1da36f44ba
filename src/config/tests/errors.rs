//! Whole-file parsing tests: rejected configs and their messages.

use std::path::Path;
use std::time::Duration;

use super::{err, ok, p, s3};
use crate::config::*;

#[test]
fn misspelled_keys_give_line_column_and_suggestion() {
    let text =
        "dbs:\n  - path: /a.db\n    replicas:\n      - path: /b\n        sync-intervall: 1s\n";
    assert_eq!(
        err(text),
        "litestream.yml:5:9: unknown key \"sync-intervall\" in replica (did you mean \"sync-interval\"?)"
    );
    let e = p("dbs:\n  - path: /a.db\n    monitr-interval: 1s\n").unwrap_err();
    assert!(
        matches!(&e, ConfigError::UnknownKey { line: 3, col: 5, key, context, suggestion: Some(s), .. }
        if key == "monitr-interval" && context == "db" && s == "monitor-interval"),
        "{e}"
    );
    assert_eq!(
        err("dbz:\n  - path: /a\n"),
        "litestream.yml:1:1: unknown key \"dbz\" in top level (did you mean \"dbs\"?)"
    );
    assert_eq!(
        err("logging:\n  levl: info\n"),
        "litestream.yml:2:3: unknown key \"levl\" in logging (did you mean \"level\"?)"
    );
    assert_eq!(
        err("frobnicate: 1\n"),
        "litestream.yml:1:1: unknown key \"frobnicate\" in top level"
    );
}

#[test]
fn unsupported_litestream_keys() {
    let e = err(
        "dbs:\n  - path: /a.db\n    replica:\n      path: /b\n      age:\n        recipients: [x]\n",
    );
    assert_eq!(
        e,
        "litestream.yml:5:7: key \"age\" in replica is a Litestream setting that memsync does not support; remove it"
    );
    for (text, key) in [
        ("mcp-addr: x\n", "mcp-addr"),
        (
            "dbs:\n  - path: /a\n    max-checkpoint-page-count: 10\n",
            "max-checkpoint-page-count",
        ),
        (
            "dbs:\n  - path: /a\n    replicas:\n      - path: /b\n        validation-interval: 1h\n",
            "validation-interval",
        ),
        (
            "dbs:\n  - path: /a\n    replicas:\n      - url: s3://b/x\n        storage-class: GLACIER\n",
            "storage-class",
        ),
        (
            "dbs:\n  - path: /a\n    replicas:\n      - path: /b\n        auto-recover: true\n",
            "auto-recover",
        ),
        ("verify-compaction: true\n", "verify-compaction"),
        ("validation:\n  interval: 1h\n", "validation"),
        ("dbs:\n  - path: /a\n    meta-dir: /m\n", "meta-dir"),
        (
            "dbs:\n  - path: /a\n    max-sync-wal-bytes: 1000\n",
            "max-sync-wal-bytes",
        ),
        (
            "dbs:\n  - path: /a\n    replicas:\n      - path: /b\n        max-sync-ltx-files: 5\n",
            "max-sync-ltx-files",
        ),
    ] {
        let e = p(text).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Unsupported { key: k, line, .. } if k == key && *line > 0),
            "{e}"
        );
    }
}

#[test]
fn bad_durations() {
    let base = |v: &str| {
        format!("dbs:\n  - path: /a.db\n    replica:\n      path: /b\n      sync-interval: {v}\n")
    };
    assert_eq!(
        err(&base("-1s")),
        "litestream.yml:5: invalid duration \"-1s\" for \"sync-interval\": negative duration"
    );
    assert!(err(&base("10")).contains("a number needs a unit, e.g. \"10s\""));
    assert!(err(&base("-5")).contains("negative duration"));
    assert!(err(&base("1d")).contains("unknown unit \"d\""));
    assert!(err(&base("1.5")).contains("expected a duration"));
    assert!(err(&base("\"10\"")).contains("missing unit"));
    assert_eq!(
        ok(&base("0")).dbs[0].replicas[0].sync_interval,
        Duration::ZERO
    );
    assert_eq!(
        ok(&base("0s")).dbs[0].replicas[0].sync_interval,
        Duration::ZERO
    );
    assert!(err("retention: -1h\ndbs: []\n").starts_with("litestream.yml:1: invalid duration"));
}

#[test]
fn empty_and_missing_dbs() {
    for text in [
        "",
        "\n\n",
        "# just a comment\n",
        "dbs: []\n",
        "dbs:\n",
        "addr: ':9090'\n",
    ] {
        assert_eq!(
            err(text),
            "litestream.yml: no databases configured",
            "{text:?}"
        );
    }
}

#[test]
fn yaml_syntax_error_has_line() {
    let e = p("dbs:\n  - path: /a.db\n    replicas: [\n      - x\n").unwrap_err();
    assert!(
        matches!(e, ConfigError::Yaml { line, .. } if line >= 3),
        "{e}"
    );
    let e = p("dbs:\n  - path: [a\n").unwrap_err();
    assert!(matches!(&e, ConfigError::Yaml { line: 2, .. }), "{e}");
    assert!(e.to_string().starts_with("litestream.yml:2:"), "{e}");
    assert!(!e.to_string().contains('\n'), "{e}");
    assert!(!e.to_string().contains("at line"), "{e}");
    let e = err(
        "dbs:\n  - path: /a\n    replica:\n      url: s3://b/p\n      force-path-style: maybe\n",
    );
    assert_eq!(e, "litestream.yml:5:25: invalid boolean");
    // A key set twice: said plainly, without the parser's advice on its own options.
    let e = err(
        "dbs:\n  - path: /a\n    replica:\n      path: /r\n      sync-interval: 1s\n      sync-interval: 2s\n",
    );
    assert!(e.contains("`sync-interval` is set twice"), "{e}");
    assert!(!e.contains("DuplicateKeyPolicy"), "{e}");
    assert_eq!(
        err("dbs: 3\n"),
        "litestream.yml:1:6: expected sequence start"
    );
    let e = err("dbs:\n  - path: /a\n    path: /b\n");
    assert!(
        e == "litestream.yml:3:5: `path` is set twice here (keep one)",
        "{e}"
    );
}

#[test]
fn db_rules() {
    assert_eq!(
        err("dbs:\n  - replica:\n      path: /b\n"),
        "litestream.yml:2: dbs[0] has no `path` (or `dir` and `pattern`)"
    );
    let e = err(
        "dbs:\n  - path: /a.db\n    replica: {path: /b}\n  - path: /x/../a.db\n    replica: {path: /c}\n",
    );
    assert_eq!(
        e,
        "litestream.yml:4: db /a.db is configured twice (first at dbs[0] (line 2))"
    );
    assert!(err("dbs:\n  - path: /a.db\n").contains("db /a.db has no replicas"));
    let e =
        err("dbs:\n  - path: /a.db\n    replica: {path: /b}\n    replicas:\n      - path: /c\n");
    assert!(e.contains("both `replica` and `replicas`"), "{e}");
    for key in [
        "monitor-interval: 0",
        "checkpoint-interval: 0s",
        "busy-timeout: 0",
        "min-checkpoint-page-count: 0",
    ] {
        let e = err(&format!(
            "dbs:\n  - path: /a.db\n    {key}\n    replica: {{path: /b}}\n"
        ));
        let name = key.split(':').next().unwrap();
        assert_eq!(
            e,
            format!("litestream.yml:2: db /a.db: `{name}` must not be 0")
        );
    }
    assert!(
        err("dbs:\n  - path: /a.db\n    truncate-page-n: -1\n    replica: {path: /b}\n")
            .contains("truncate-page-n must be between")
    );
    assert!(
        err("dbs:\n  - path: ~bob/a.db\n    replica: {path: /b}\n")
            .contains("~user paths are not supported")
    );
}

#[test]
fn replica_rules() {
    let db = |r: &str| format!("dbs:\n  - path: /a.db\n    replicas:\n{r}");
    assert!(
        err(&db("      - path: s3://b/p\n")).contains("`path` \"s3://b/p\" is a URL; use `url:`")
    );
    assert!(
        err(&db("      - type: s3\n        path: s3://b/p\n")).contains("is a URL; use `url:`")
    );
    assert_eq!(
        err(&db("      - name: x\n")),
        "litestream.yml:4: file replica has no `path` or `url`"
    );
    assert!(err(&db("      - type: s3\n        path: x\n")).contains("s3 replica has no `bucket`"));
    assert!(err(&db("      - type: http\n")).contains("http replica needs `url"));
    assert!(
        err(&db("      - path: /b\n        url: s3://b/p\n")).contains("both `path` and `url`")
    );
    assert!(err(&db("      - type: file\n        url: s3://b/p\n")).contains("does not match url"));
    assert!(err(&db("      - type: gs\n        bucket: b\n")).contains("not supported by memsync"));
    assert!(
        err(&db("      - path: /b\n        region: x\n"))
            .contains("`region` only applies to s3 replicas")
    );
    assert!(
        err(&db("      - url: s3://b/p\n        bucket: other\n"))
            .contains("conflicts with the bucket")
    );
    let e = err(&db("      - url: s3://b/p?nope=1\n"));
    assert!(
        e.starts_with(
            "litestream.yml:4: invalid replica URL \"s3://b/p?nope=1\": unknown query parameter"
        ),
        "{e}"
    );
    let e = err(&db("      - path: /b\n      - path: /c\n"));
    assert_eq!(
        e,
        "litestream.yml:5: replica \"file\" of db /a.db: duplicate replica name; give each replica a distinct `name`"
    );
    assert!(err(&db("      - path: /b\n        name: ''\n")).contains("`name` is empty"));
    assert!(
        err(&db("      - path: /b\n        snapshot-interval: 0\n"))
            .contains("`snapshot-interval` must not be 0")
    );
    assert!(
        err(&db(
            "      - path: /b\n        retention-check-interval: 0\n"
        ))
        .contains("must not be 0")
    );
    assert_eq!(
        err(&format!("addr: notaport\n{}", db("      - path: /b\n"))),
        "litestream.yml: `addr` \"notaport\" is not HOST:PORT (or :PORT for every interface)"
    );
    assert!(
        ok(&format!("addr: \":9090\"\n{}", db("      - path: /b\n")))
            .addr
            .is_some()
    );
    assert!(
        err(&db("      - path: /b\n        retention: 0s\n")).contains("`retention` must not be 0")
    );
    // bucket without type means s3; two distinctly named replicas are fine.
    let c = ok(&db(
        "      - bucket: b\n      - name: f2\n        path: /c\n      - name: f3\n        path: /d\n",
    ));
    assert_eq!(c.dbs[0].replicas[0].target, s3("b", ""));
}

#[test]
fn replicas_sharing_a_location_are_rejected() {
    let two = |a: &str, b: &str| {
        format!(
            "dbs:\n  - path: /a.db\n    replica:\n      {a}\n  - path: /b.db\n    replica:\n      {b}\n"
        )
    };
    let e = err(&two("path: /backup/x", "path: /backup/./x/"));
    assert_eq!(
        e,
        "litestream.yml:7: replica \"file\" of db /b.db points at the same place as replica \"file\" of db /a.db (line 4); replicas sharing a location corrupt each other"
    );
    assert!(err(&two("path: /backup", "path: /backup/b")).contains("is inside"));
    assert!(err(&two("path: /backup/b", "url: file:///backup")).contains("contains"));
    assert!(err(&two("url: s3://bkt/db", "url: s3://bkt/db/")).contains("same place"));
    assert!(
        err(&two(
            "url: s3://bkt/db",
            "{type: s3, bucket: bkt, path: db}"
        ))
        .contains("same place")
    );
    assert!(err(&two("url: https://h:443/x", "url: webdavs://H/x")).contains("same place"));
    // Percent-encoding spells the same key two ways.
    assert!(err(&two("url: https://h/d/db", "url: https://h/d/%64b")).contains("same place"));
    assert!(err(&two("url: s3://bkt/d/db", "url: s3://bkt/d/%64b")).contains("same place"));
    assert!(err(&two("path: /b.db", "path: /c")).contains("is or contains the database file"));
    // Different buckets, endpoints, hosts or sibling paths are fine.
    ok(&two("url: s3://bkt/a", "url: s3://bkt/b"));
    ok(&two(
        "url: s3://bkt/db",
        "url: s3://bkt/db?endpoint=http://minio:9000",
    ));
    ok(&two("url: http://h1/x", "url: http://h2/x"));
    ok(&two("path: /backup/a", "path: /backup/ab"));
}

#[test]
fn bad_logging_values() {
    assert!(
        err("logging:\n  level: loud\n").starts_with("litestream.yml:2: logging level \"loud\"")
    );
    assert!(err("logging:\n  type: xml\n").contains("logging type \"xml\""));
}

#[test]
fn directory_entries() {
    let rep = "    replica:\n      path: /b\n";
    for (entry, want) in [
        (
            "  - dir: /data\n",
            "litestream.yml:2: dbs[0]: `dir` \"/data\" needs a `pattern` naming its database files, such as \"*.db\"",
        ),
        (
            "  - dir: /data\n    pattern: \"[a-\"\n",
            "litestream.yml:3: dbs[0]: `pattern` \"[a-\" has an empty or unclosed [class]",
        ),
        (
            "  - dir: /data\n    pattern: \"sub/*.db\"\n",
            "litestream.yml:3: dbs[0]: `pattern` \"sub/*.db\" contains '/'",
        ),
        (
            "  - path: /a.db\n    watch: true\n",
            "litestream.yml:3: dbs[0]: `watch` applies to a `dir` entry; this one has no `dir`",
        ),
        (
            "  - path: /a.db\n    dir: /data\n    pattern: \"*.db\"\n",
            "litestream.yml:3: dbs[0] has both `path` and `dir`; use one",
        ),
    ] {
        let e = err(&format!("dbs:\n{entry}{rep}"));
        assert!(e.starts_with(want), "{e}\nwanted: {want}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
    let e = err(
        "dbs:\n  - dir: /data\n    pattern: \"*.db\"\n    replicas:\n      - path: /b\n      - path: /c\n",
    );
    assert!(e.contains("duplicate replica name"), "{e}");
    let c = ok(&format!(
        "dbs:\n  - dir: ~/data\n    pattern: \"*.db\"\n    recursive: true\n    watch: true\n{rep}"
    ));
    assert!(c.dbs.is_empty());
    let d = &c.dirs[0];
    assert_eq!(d.dir, Path::new("/home/me/data"));
    assert!(d.recursive && d.watch);
    assert_eq!(d.pattern.as_str(), "*.db");
    assert_eq!(
        d.relative(Path::new("/home/me/data/sub/x.db")),
        Some("sub/x.db".into())
    );
    assert_eq!(d.relative(Path::new("/home/me/data/x.txt")), None);
    assert_eq!(d.relative(Path::new("/home/me/data/x.db-wal")), None);
    assert_eq!(
        d.relative(Path::new("/home/me/data/.x.db-memsync/y.db")),
        None
    );
    assert_eq!(d.relative(Path::new("/home/me/other/x.db")), None);
    let db = d.db_at(Path::new("sub/x.db"));
    assert_eq!(db.path, Path::new("/home/me/data/sub/x.db"));
    assert_eq!(
        db.replicas[0].target,
        ReplicaTarget::File {
            path: "/b/sub/x.db".into()
        }
    );
}

#[test]
fn directory_replica_targets_join() {
    let base = s3("bkt", "tenants");
    assert_eq!(base.join(Path::new("a/x.db")), s3("bkt", "tenants/a/x.db"));
    assert_eq!(s3("bkt", "").join(Path::new("x.db")), s3("bkt", "x.db"));
    let http = ReplicaTarget::Http {
        url: "https://h:8443/backups/".into(),
    };
    assert_eq!(
        http.join(Path::new("a b/x.db")),
        ReplicaTarget::Http {
            url: "https://h:8443/backups/a%20b/x.db".into()
        }
    );
}

/// Litestream 0.5's WebDAV keys are read as one `url` with Basic auth; half of them, or with
/// `url`, is refused by name.
#[test]
fn litestream_webdav_keys() {
    let c = ok(
        "dbs:\n  - path: /a.db\n    replica:\n      type: webdav\n      webdav-url: https://dav.example.com/backups/app\n      webdav-username: me\n      webdav-password: p@ss:w/rd\n",
    );
    assert_eq!(
        c.dbs[0].replicas[0].target,
        ReplicaTarget::Http {
            url: "https://me:p%40ss%3Aw%2Frd@dav.example.com/backups/app".into()
        }
    );
    assert!(
        err("dbs:\n  - path: /a.db\n    replica:\n      type: webdav\n      webdav-url: https://h/x\n      url: https://h/y\n")
            .contains("give the whole address in `webdav-url`")
    );
    assert!(
        err("dbs:\n  - path: /a.db\n    replica:\n      type: webdav\n      url: https://h/y\n      webdav-password: x\n")
            .contains("without `webdav-url`")
    );
    assert!(
        err("dbs:\n  - path: /a.db\n    replica:\n      webdav-url: ftp://h/x\n")
            .contains("http:// or https://")
    );
}

/// Two YAML documents in one config name the problem, not the parser's API.
#[test]
fn several_yaml_documents() {
    let e = err("dbs:\n  - path: /a.db\n    replica:\n      path: /b\n---\ndbs: []\n");
    assert!(e.contains("more than one YAML document"), "{e}");
    assert!(!e.contains("from_str_multiple"), "{e}");
}

/// Litestream 0.5 forms with no counterpart say what memsync has instead; the ones it has
/// (a top-level `bucket`, `logging.level: trace`) are taken.
#[test]
fn litestream_05_blocks_point_at_memsyncs_keys() {
    let e =
        err("retention:\n  enabled: false\ndbs:\n  - path: /a.db\n    replica:\n      path: /b\n");
    assert!(
        e.contains("enabled: false") && e.contains("retention"),
        "{e}"
    );
    let e = err("snapshot:\n  interval: 1h\n  retention: 24h\ndbs: []\n");
    assert!(e.contains("`snapshot-interval` and `retention`"), "{e}");
    let c = ok(
        "bucket: global-bkt\nlogging:\n  level: trace\ndbs:\n  - path: /a.db\n    replica:\n      type: s3\n      path: p\n",
    );
    assert_eq!(c.dbs[0].replicas[0].target, s3("global-bkt", "p"));
    assert_eq!(c.logging.level, LogLevel::Debug);
    // A replica is named by its `type` when it has one, as Litestream names it.
    let c = ok(
        "dbs:\n  - path: /a.db\n    replica:\n      type: webdav\n      webdav-url: http://h/x\n",
    );
    assert_eq!(c.dbs[0].replicas[0].name, "webdav");
    // A replica's own bucket wins.
    let c = ok(
        "bucket: global-bkt\ndbs:\n  - path: /a.db\n    replica:\n      type: s3\n      bucket: own\n      path: p\n",
    );
    assert_eq!(c.dbs[0].replicas[0].target, s3("own", "p"));
}
