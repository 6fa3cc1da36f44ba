//! `memsync serve`, the real binary on 127.0.0.1: the API key, path confinement, uploads that
//! are cut off, repeated or racing, ranges, listings and size limits. (TLS, object_store's
//! HttpStore and argument errors: `serve_clients.rs`.)

mod common;

use std::time::{Duration, Instant};

use common::serve::{KEY, Server, bearer, client, files_under, request, rt, scene};
use reqwest::StatusCode;

#[test]
fn keys_are_required_except_for_health() {
    let (_tmp, root) = scene();
    let srv = Server::start(&root, &["-api-key", KEY], &[]);
    let rt = rt();
    let c = client();
    let get = |path: &str, auth: Option<&str>| {
        let mut r = c.get(format!("{}{path}", srv.url));
        if let Some(a) = auth {
            r = r.header("Authorization", a);
        }
        rt.block_on(async { r.send().await.unwrap() })
    };
    let h = get("/health", None);
    assert_eq!(h.status(), StatusCode::OK);
    assert_eq!(rt.block_on(h.text()).unwrap(), "ok");
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer k3y-for-test"),
        Some("Basic dXNlcjp3cm9uZw=="), // user:wrong
        Some("k3y-for-tests"),
    ] {
        let r = get("/missing", auth);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        let challenge: Vec<_> = r.headers().get_all("www-authenticate").iter().collect();
        assert!(
            challenge
                .iter()
                .any(|v| v.to_str().unwrap().starts_with("Basic")),
            "{challenge:?}"
        );
    }
    assert_eq!(
        get("/missing", Some(&format!("Bearer {KEY}"))).status(),
        StatusCode::NOT_FOUND
    );
    let basic = rt.block_on(async {
        c.get(format!("{}/missing", srv.url))
            .basic_auth("anyone", Some(KEY))
            .send()
            .await
            .unwrap()
    });
    assert_eq!(basic.status(), StatusCode::NOT_FOUND);
    // A refused upload writes nothing.
    let put = srv.raw(&request("PUT", "/x", &[], b"data"));
    assert_eq!(put.status, 401, "{}", put.head);
    assert!(files_under(&root).is_empty());
    let (st, log) = srv.stop();
    assert!(st.success(), "exit {st}:\n{log}");

    // The key from the environment.
    let srv = Server::start(&root, &[], &[("MEMSYNC_SERVE_API_KEY", "from-env")]);
    assert_eq!(get_status(&srv, &[]), 401);
    assert_eq!(
        get_status(&srv, &[("Authorization", "Bearer from-env")]),
        404
    );
}

fn get_status(srv: &Server, headers: &[(&str, &str)]) -> u16 {
    srv.raw(&request("GET", "/nothing", headers, b"")).status
}

#[test]
fn paths_stay_inside_the_directory() {
    let (tmp, root) = scene();
    let outside = tmp.path().join("outside");
    std::os::unix::fs::symlink(&outside, root.join("out")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), root.join("leak")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("nowhere"), root.join("dangling")).unwrap();
    let srv = Server::start(&root, &["-api-key", KEY], &[]);
    let (k, v) = bearer();
    let auth = [(k, v.as_str())];
    for path in [
        "/../escape",
        "/a/../../escape",
        "/%2e%2e/escape",
        "/%2E%2E/escape",
        "/a/%2e%2E/%2E%2e/escape",
        "/.%2e/escape",
        "//tmp/escape",
        "/%2Ftmp%2Fescape",
        "/a%2f..%2f..%2fescape",
        "/a\\..\\..\\escape",
        "/a%5c..%5c..%5cescape",
        "/a%00b",
        "/out/escape",
        "/out/sub/escape",
        "/dangling",
        "/.tmp-0001",
    ] {
        for method in ["PUT", "MKCOL"] {
            let r = srv.raw(&request(method, path, &auth, b"x"));
            assert!(
                r.status == 400 || r.status == 403,
                "{method} {path}: {}",
                r.head
            );
        }
    }
    for path in [
        "/../outside/secret",
        "/%2e%2e/outside/secret",
        "/%2E%2E/outside/secret",
        "/out/secret",
        "/leak",
    ] {
        for method in ["GET", "DELETE", "PROPFIND"] {
            let r = srv.raw(&request(method, path, &auth, b""));
            assert!(
                r.status == 400 || r.status == 403,
                "{method} {path}: {}",
                r.head
            );
        }
    }
    // Nothing was written outside, nor deleted; the listing does not show the escapes.
    assert_eq!(files_under(&outside), ["secret"]);
    let mut beside: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    beside.sort();
    assert_eq!(beside, ["outside", "root", "root.log"]);
    let list = srv.raw(&request("PROPFIND", "/", &auth, b""));
    assert_eq!(list.status, 207);
    let xml = String::from_utf8_lossy(&list.body);
    assert!(!xml.contains("/out") && !xml.contains("/leak") && !xml.contains("dangling"));
    // An absolute-form request target names a path on this server, confined the same way.
    let r = srv.raw(&request(
        "GET",
        "http://127.0.0.1/../outside/secret",
        &auth,
        b"",
    ));
    assert_ne!(r.status, 200, "{}", r.head);
}

#[test]
fn a_cut_off_upload_leaves_nothing() {
    let (_tmp, root) = scene();
    let srv = Server::start(&root, &["-api-key", KEY], &[]);
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(srv.addr).unwrap();
        let head = format!(
            "PUT /cut/deep/object HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Length: 200000\r\n\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&vec![7u8; 100_000]).unwrap();
        s.flush().unwrap();
        // The server has started writing the upload before the client goes away.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !root.join("cut/deep").is_dir() {
            assert!(Instant::now() < deadline, "the upload never started");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // The server sees the connection end and removes the temp file and the directories it made.
    let deadline = Instant::now() + Duration::from_secs(30);
    while root.join("cut").exists() {
        assert!(
            Instant::now() < deadline,
            "left behind: {:?}",
            files_under(&root)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(files_under(&root).is_empty());
    let (k, v) = bearer();
    let r = srv.raw(&request("GET", "/cut/deep/object", &[(k, &v)], b""));
    assert_eq!(r.status, 404);
    let r = srv.raw(&request("PROPFIND", "/", &[(k, &v)], b""));
    assert_eq!(
        String::from_utf8_lossy(&r.body)
            .matches("<response>")
            .count(),
        1
    );
}

#[test]
fn objects_are_never_replaced() {
    let (_tmp, root) = scene();
    let srv = Server::start(&root, &["-api-key", KEY], &[]);
    let (k, v) = bearer();
    let a = [(k, v.as_str())];
    assert_eq!(srv.raw(&request("PUT", "/a/obj", &a, b"first")).status, 201);
    assert_eq!(
        srv.raw(&request("PUT", "/a/obj", &a, b"second")).status,
        412
    );
    let got = srv.raw(&request("GET", "/a/obj", &a, b""));
    assert_eq!((got.status, got.body.as_slice()), (200, &b"first"[..]));
    let inm = [(k, v.as_str()), ("If-None-Match", "*")];
    assert_eq!(srv.raw(&request("PUT", "/a/new", &inm, b"1")).status, 201);
    assert_eq!(srv.raw(&request("PUT", "/a/new", &inm, b"2")).status, 412);
    assert_eq!(srv.raw(&request("PUT", "/a", &a, b"on a dir")).status, 405);
    assert_eq!(
        srv.raw(&request("PUT", "/a/c/", &a, b"to a dir")).status,
        405
    );
    assert_eq!(
        srv.raw(&request("PUT", "/a/obj/x", &a, b"under a file"))
            .status,
        409
    );
    assert_eq!(srv.raw(&request("GET", "/a/obj/x", &a, b"")).status, 404);
    // Racing uploads of one new key: exactly one wins, whole.
    let statuses: Vec<(u16, Vec<u8>)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8u8)
            .map(|i| {
                let (srv, a) = (&srv, &a);
                s.spawn(move || {
                    let body = vec![i; 100_000];
                    (srv.raw(&request("PUT", "/race/obj", a, &body)).status, body)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won: Vec<_> = statuses.iter().filter(|(st, _)| *st == 201).collect();
    assert_eq!(
        won.len(),
        1,
        "{:?}",
        statuses.iter().map(|s| s.0).collect::<Vec<_>>()
    );
    assert!(statuses.iter().all(|(st, _)| *st == 201 || *st == 412));
    assert_eq!(std::fs::read(root.join("race/obj")).unwrap(), won[0].1);
    std::fs::remove_dir_all(root.join("race")).unwrap();
    assert_eq!(files_under(&root), ["a/new", "a/obj"]);
    assert_eq!(std::fs::read(root.join("a/new")).unwrap(), b"1");
}

#[test]
fn ranges_listings_and_collections() {
    let (_tmp, root) = scene();
    let srv = Server::start(&root, &[], &[]);
    let data: Vec<u8> = (0..100u8).collect();
    let put = srv.raw(&request("PUT", "/r/data", &[], &data));
    assert_eq!(put.status, 201, "{}", put.head);
    let range = |spec: &str| srv.raw(&request("GET", "/r/data", &[("Range", spec)], b""));
    let r = range("bytes=10-19");
    assert_eq!(r.status, 206);
    assert!(
        r.head.contains("content-range: bytes 10-19/100"),
        "{}",
        r.head
    );
    assert_eq!(r.body, &data[10..20]);
    let r = range("bytes=90-");
    assert_eq!((r.status, r.body.as_slice()), (206, &data[90..]));
    let r = range("bytes=-5");
    assert_eq!((r.status, r.body.as_slice()), (206, &data[95..]));
    let r = range("bytes=100-");
    assert_eq!(r.status, 416);
    assert!(r.head.contains("content-range: bytes */100"), "{}", r.head);
    let r = srv.raw(&request("HEAD", "/r/data", &[], b""));
    assert_eq!(r.status, 200);
    assert!(r.head.contains("content-length: 100"), "{}", r.head);
    assert!(r.body.is_empty());

    // Listings: an upload in progress (a temp file) is neither listed nor reachable.
    std::fs::write(root.join("r/.tmp-0123456789abcdef"), b"partial").unwrap();
    let propfind =
        |path: &str, depth: &str| srv.raw(&request("PROPFIND", path, &[("Depth", depth)], b""));
    let one = propfind("/r/", "1");
    assert_eq!(one.status, 207);
    let xml = String::from_utf8_lossy(&one.body);
    assert!(xml.contains("<href>/r/</href>"), "{xml}");
    assert!(xml.contains("<href>/r/data</href>"), "{xml}");
    assert!(xml.contains("<getcontentlength>100</getcontentlength>"));
    assert!(xml.contains("<collection/>"));
    assert!(!xml.contains("tmp-"), "{xml}");
    let zero = propfind("/r/data", "0");
    assert_eq!(
        String::from_utf8_lossy(&zero.body)
            .matches("<response>")
            .count(),
        1
    );
    let all = propfind("/", "infinity");
    assert_eq!(
        String::from_utf8_lossy(&all.body)
            .matches("<response>")
            .count(),
        3
    );
    assert_eq!(propfind("/none", "1").status, 404);
    assert_eq!(
        srv.raw(&request("GET", "/r/.tmp-0123456789abcdef", &[], b""))
            .status,
        403
    );

    assert_eq!(srv.raw(&request("MKCOL", "/m", &[], b"")).status, 201);
    assert_eq!(srv.raw(&request("MKCOL", "/m", &[], b"")).status, 405);
    assert_eq!(srv.raw(&request("MKCOL", "/x/y", &[], b"")).status, 409);
    assert_eq!(srv.raw(&request("GET", "/m", &[], b"")).status, 405);
    // A file named as a collection (trailing slash) is not found, as PUT refuses that name.
    assert_eq!(srv.raw(&request("GET", "/r/data/", &[], b"")).status, 404);
    assert_eq!(srv.raw(&request("HEAD", "/r/data/", &[], b"")).status, 404);
    let opts = srv.raw(&request("OPTIONS", "/", &[], b""));
    assert!(
        opts.head.to_ascii_lowercase().contains("dav: 1"),
        "{}",
        opts.head
    );
    assert_eq!(srv.raw(&request("DELETE", "/r/data", &[], b"")).status, 204);
    assert_eq!(srv.raw(&request("DELETE", "/r/data", &[], b"")).status, 404);
    assert_eq!(srv.raw(&request("DELETE", "/m", &[], b"")).status, 204);
    assert!(!root.join("m").exists());
}

#[test]
fn bodies_and_heads_are_bounded() {
    let (_tmp, root) = scene();
    let srv = Server::start(&root, &["-max-body", "1000"], &[]);
    assert_eq!(
        srv.raw(&request("PUT", "/big", &[], &[1; 2000])).status,
        413
    );
    // Chunked, no length announced: refused once it passes the limit.
    let mut chunked =
        b"PUT /big2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..4 {
        chunked.extend_from_slice(b"1f4\r\n");
        chunked.extend_from_slice(&[2; 500]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(srv.raw(&chunked).status, 413);
    assert_eq!(
        srv.raw(&request("PUT", "/fits", &[], &[3; 1000])).status,
        201
    );
    let huge = "a".repeat(100 * 1024);
    let r = srv.raw(&request("GET", "/fits", &[("X-Huge", &huge)], b""));
    assert_eq!(r.status, 431, "{}", r.head);
    // Nothing of the refused uploads stays.
    let deadline = Instant::now() + Duration::from_secs(30);
    while files_under(&root) != ["fits"] {
        assert!(Instant::now() < deadline, "{:?}", files_under(&root));
        std::thread::sleep(Duration::from_millis(20));
    }
    let (st, log) = srv.stop_with(libc::SIGINT);
    assert!(st.success(), "exit {st} on SIGINT:\n{log}");
}
