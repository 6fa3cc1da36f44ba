//! The servers checked with curl, independently of memsync's client: they behave as the cases
//! assume (a server that accepted anything would let client bugs through).

use std::process::Command;

use crate::common::{s3, webdav};

/// `curl` with extra arguments: (HTTP status, body).
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "--noproxy",
            "*",
            "--max-time",
            "20",
            "-w",
            "\n%{http_code}",
        ])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap_or(0), body.to_string())
}

pub fn curl_s3(args: &[&str]) -> (u16, String) {
    s3::signed(args)
}

/// SeaweedFS checks signatures and enforces `If-None-Match: *`, the two properties the S3
/// cases rely on (a server that accepted anything would let signing bugs through).
#[test]
fn seaweedfs_checks_signatures_and_conditional_puts() {
    let s = s3::shared();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    std::fs::write(&f, b"first").unwrap();
    let f = f.to_str().unwrap();
    let url = format!(
        "{}/{}/{}/obj",
        s.endpoint(),
        s3::BUCKET,
        s3::unique_prefix("smoke")
    );
    assert_eq!(curl_s3(&["-T", f, "-H", "If-None-Match: *", &url]).0, 200);
    let (st, body) = curl_s3(&["-T", f, "-H", "If-None-Match: *", &url]);
    assert_eq!(st, 412, "a second create-only PUT must fail: {body}");
    assert_eq!(curl_s3(&[&url]), (200, "first".into()));
    assert_eq!(curl_s3(&["-r", "1-3", &url]), (206, "irs".into()));
    let bad = format!("{}:wrong", s3::ACCESS_KEY);
    let (st, _) = curl(&["--aws-sigv4", "aws:amz:us-east-1:s3", "--user", &bad, &url]);
    assert_eq!(st, 403, "a wrong secret must be refused");
    assert_eq!(curl(&[&url]).0, 403, "an unsigned GET must be refused");
}

/// nginx serves the WebDAV subset the HTTP replica speaks: PUT creating parents, ranged GET,
/// PROPFIND, DELETE; with auth, a missing or wrong password is 401.
#[test]
fn nginx_speaks_webdav() {
    let d = webdav::shared();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    std::fs::write(&f, b"hello dav").unwrap();
    let f = f.to_str().unwrap();
    let base = d.url("smoke");
    let url = format!("{base}/a/b/obj");
    assert_eq!(curl(&["-T", f, &url]).0, 201);
    assert_eq!(curl(&[&url]), (200, "hello dav".into()));
    assert_eq!(curl(&["-r", "6-8", &url]), (206, "dav".into()));
    let (st, body) = curl(&["-X", "PROPFIND", "-H", "Depth: 1", &format!("{base}/a/b/")]);
    assert_eq!(st, 207, "{body}");
    assert!(body.contains("/smoke/a/b/obj"), "{body}");
    assert_eq!(
        std::fs::read(d.root().join("smoke/a/b/obj")).unwrap(),
        b"hello dav"
    );
    assert_eq!(curl(&["-X", "DELETE", &url]).0, 204);
    assert_eq!(curl(&[&url]).0, 404);

    let a = webdav::WebDav::start_with_auth("alice", "s3cret");
    let url = a.url("x/obj");
    assert_eq!(curl(&["-T", f, &url]).0, 401);
    assert_eq!(curl(&["-u", "alice:nope", "-T", f, &url]).0, 401);
    assert_eq!(curl(&["-u", "alice:s3cret", "-T", f, &url]).0, 201);
    assert_eq!(
        curl(&["-u", "alice:s3cret", &url]),
        (200, "hello dav".into())
    );
}

/// An S3 outage as the replication tests make one: the server killed, then started again on
/// the same ports with its data.
#[test]
fn seaweedfs_stops_and_resumes_with_its_data() {
    let mut s = s3::SeaweedS3::start();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    std::fs::write(&f, b"kept").unwrap();
    let url = format!("{}/{}/outage/obj", s.endpoint(), s3::BUCKET);
    assert_eq!(curl_s3(&["-T", f.to_str().unwrap(), &url]).0, 200);
    s.stop();
    assert_eq!(curl_s3(&[&url]).0, 0, "the server still answers after stop");
    s.resume();
    assert_eq!(curl_s3(&[&url]), (200, "kept".into()), "{}", s.log_tail());
}

/// The config items the replication tests use parse into the replicas the URLs give.
#[test]
fn replica_items_parse() {
    let (s, d) = (s3::shared(), webdav::shared());
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite");
    let yml = dir.path().join("litestream.yml");
    let text = format!(
        "dbs:\n  - path: {}\n    replicas:\n{}{}",
        db.display(),
        s.replica_item("s3", "items/db"),
        d.replica_item("dav", "items/db")
    );
    let cfg = memsync::config::parse(&text, &yml, false, &|_| None)
        .unwrap_or_else(|e| panic!("{e}:\n{text}"));
    let replicas = &cfg.dbs[0].replicas;
    let mut from_url = memsync::config::replica_from_url(&s.url("items/db")).unwrap();
    if let memsync::config::ReplicaTarget::S3 {
        access_key_id,
        secret_access_key,
        ..
    } = &mut from_url.target
    {
        *access_key_id = Some(s3::ACCESS_KEY.into());
        *secret_access_key = Some(s3::SECRET_KEY.into());
    }
    assert_eq!(replicas[0].target, from_url.target);
    let dav = memsync::config::replica_from_url(&d.url("items/db")).unwrap();
    assert_eq!(replicas[1].target, dav.target);
}
