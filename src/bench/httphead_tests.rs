//! The request-head parser and the classification of S3 requests.

use super::*;

/// Feeds `stream` in pieces of `step` bytes; returns (method target) of each request and the
/// body bytes seen per request, and whether the parser gave up.
fn parse(stream: &[u8], step: usize) -> (Vec<(String, u64)>, bool) {
    let mut p = Parser::default();
    let mut reqs: Vec<(String, u64)> = Vec::new();
    let mut lost = false;
    for piece in stream.chunks(step) {
        p.feed(piece, &mut |e| match e {
            Event::Request { method, target, .. } => reqs.push((format!("{method} {target}"), 0)),
            Event::Body(n) => reqs.last_mut().expect("body before a head").1 += n,
            Event::Lost(_) => lost = true,
        });
    }
    (reqs, lost)
}

/// Every split of the stream gives the same answer (a read may end anywhere).
fn parse_all_ways(stream: &[u8]) -> Vec<(String, u64)> {
    let (whole, lost) = parse(stream, stream.len());
    assert!(!lost);
    for step in 1..=40 {
        assert_eq!(parse(stream, step), (whole.clone(), false), "step {step}");
    }
    whole
}

fn r(s: &str, body: u64) -> (String, u64) {
    (s.to_string(), body)
}

#[test]
fn plain_request_without_body() {
    let got = parse_all_ways(
        b"GET /bucket/p/0000/a.ltx HTTP/1.1\r\nHost: 127.0.0.1:9000\r\nRange: bytes=0-99\r\n\r\n",
    );
    assert_eq!(got, vec![r("GET /bucket/p/0000/a.ltx", 0)]);
}

#[test]
fn keep_alive_with_bodies() {
    let mut s = Vec::new();
    s.extend_from_slice(b"PUT /b/k1 HTTP/1.1\r\nHost: h\r\ncontent-length: 11\r\n\r\nhello world");
    // A body that looks like a head must not be taken for one.
    s.extend_from_slice(
        b"PUT /b/k2 HTTP/1.1\r\nContent-Length: 25\r\n\r\nGET /x HTTP/1.1\r\n\r\n\r\n\r\n\r\n",
    );
    s.extend_from_slice(b"HEAD /b/k2 HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    s.extend_from_slice(b"GET /b?list-type=2&prefix=p%2F HTTP/1.1\r\n\r\n");
    s.extend_from_slice(b"\r\nDELETE /b/k1 HTTP/1.1\r\n\r\n");
    let got = parse_all_ways(&s);
    assert_eq!(
        got,
        vec![
            r("PUT /b/k1", 11),
            r("PUT /b/k2", 25),
            r("HEAD /b/k2", 0),
            r("GET /b?list-type=2&prefix=p%2F", 0),
            r("DELETE /b/k1", 0),
        ]
    );
}

#[test]
fn chunked_bodies_with_extensions_and_trailers() {
    let mut s = Vec::new();
    s.extend_from_slice(
        b"PUT /b/k HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 999\r\n\r\n",
    );
    s.extend_from_slice(b"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n");
    s.extend_from_slice(b"x-amz-checksum-crc32: AAAAAA==\r\n\r\n");
    // aws-chunked content inside a plain chunked framing, no trailer.
    s.extend_from_slice(
        b"PUT /b/k2 HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-encoding: aws-chunked\r\n\r\n",
    );
    s.extend_from_slice(b"3\r\na\r\n\r\n0\r\n\r\n");
    s.extend_from_slice(b"POST /b/k2?uploads HTTP/1.1\r\n\r\n");
    let got = parse_all_ways(&s);
    assert_eq!(
        got,
        vec![
            r("PUT /b/k", 31),
            r("PUT /b/k2", 3),
            r("POST /b/k2?uploads", 0)
        ]
    );
}

#[test]
fn garbage_stops_reading_without_panicking() {
    for s in [
        &b"\x16\x03\x01\x02\x00 not http\r\n\r\n"[..],
        b"GET / SPDY/3\r\n\r\n",
        b"PUT /b/k HTTP/1.1\r\nContent-Length: lots\r\n\r\n",
        b"PUT /b/k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"PUT /b/k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
    ] {
        let (_, lost) = parse(s, 3);
        assert!(lost, "{:?}", String::from_utf8_lossy(s));
    }
    let (reqs, lost) = parse(&vec![b'a'; MAX_HEAD + 10], 4096);
    assert!(lost && reqs.is_empty());
}

#[test]
fn s3_requests_by_kind() {
    let cases = [
        ("GET", "/bucket?list-type=2&prefix=db%2F0000%2F", Kind::List),
        ("GET", "/bucket/?delimiter=%2F&prefix=gen%2F", Kind::List),
        ("GET", "/bucket?uploads&prefix=x", Kind::List),
        ("GET", "/?list-type=2&prefix=x", Kind::List),
        ("GET", "http://127.0.0.1:1/bucket?list-type=2", Kind::List),
        ("GET", "/bucket/db/0000/0001-0001.ltx", Kind::Get),
        ("PUT", "/bucket/db/0000/0001-0001.ltx", Kind::Put),
        ("PUT", "/bucket/db/big?partNumber=2&uploadId=u", Kind::Put),
        ("POST", "/bucket/db/big?uploads", Kind::Post),
        ("POST", "/bucket/db/big?uploadId=u", Kind::Post),
        ("POST", "/bucket?delete", Kind::Delete),
        ("POST", "/bucket?delete=", Kind::Delete),
        ("DELETE", "/bucket/db/big?uploadId=u", Kind::Delete),
        ("HEAD", "/bucket/db/x", Kind::Head),
        ("OPTIONS", "/bucket", Kind::Other),
    ];
    for (m, t, k) in cases {
        assert_eq!(classify(m, t), k, "{m} {t}");
    }
}

#[test]
fn framing_is_reported() {
    let mut p = Parser::default();
    let mut seen = Vec::new();
    p.feed(
        b"PUT /b/k HTTP/1.1\r\nContent-Length: 3\r\nContent-Encoding: aws-chunked\r\n\r\nabcGET /b/k HTTP/1.1\r\n\r\nPUT /b/k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        &mut |e| {
            if let Event::Request { framing, .. } = e {
                seen.push(framing);
            }
        },
    );
    assert_eq!(seen, ["len=3+aws-chunked", "", "chunked"]);
}
