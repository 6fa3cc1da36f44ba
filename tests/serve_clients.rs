//! `memsync serve` with real clients: reqwest over TLS (a self-signed certificate made by
//! openssl), object_store's own HttpStore (what memsync's HTTP replica client is built on), and
//! the command line's argument errors.

mod common;

use common::serve::{KEY, Server, files_under, make_cert, rt, scene};
use reqwest::{Method, StatusCode};

#[test]
fn tls_with_a_self_signed_certificate() {
    install_crypto();
    let (tmp, root) = scene();
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    make_cert(&cert, &key);
    let srv = Server::start(
        &root,
        &[
            "-api-key",
            KEY,
            "-tls-cert",
            cert.to_str().unwrap(),
            "-tls-key",
            key.to_str().unwrap(),
        ],
        &[],
    );
    assert!(srv.url.starts_with("https://127.0.0.1:"), "{}", srv.url);
    let pem = std::fs::read(&cert).unwrap();
    let c = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .build()
        .unwrap();
    let rt = rt();
    rt.block_on(async {
        let h = c.get(format!("{}/health", srv.url)).send().await.unwrap();
        assert_eq!(h.text().await.unwrap(), "ok");
        let p = c
            .put(format!("{}/over/tls", srv.url))
            .bearer_auth(KEY)
            .body("sealed")
            .send()
            .await
            .unwrap();
        assert_eq!(p.status(), StatusCode::CREATED);
        let g = c
            .request(Method::GET, format!("{}/over/tls", srv.url))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(g.text().await.unwrap(), "sealed");
    });
    let (st, log) = srv.stop();
    assert!(st.success(), "{log}");
}

/// `replicate` and `restore` to an https replica whose certificate no public CA signed: the
/// refusal names the certificate and the way to trust it, and `SSL_CERT_FILE` pointing at it
/// makes both work, big snapshots (streamed uploads) included (before: the refusal read like a
/// closed port, and nothing made the client trust the server).
#[test]
fn an_https_replica_is_trusted_through_ssl_cert_file() {
    let (tmp, root) = scene();
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    make_cert(&cert, &key);
    let args = [
        "-api-key",
        KEY,
        "-tls-cert",
        cert.to_str().unwrap(),
        "-tls-key",
        key.to_str().unwrap(),
    ];
    let srv = Server::start(&root, &args, &[]);
    let db = tmp.path().join("app.db");
    let app = common::create_memdb(&db);
    // Past the size of one PUT: the snapshot goes up streamed, through its own client.
    common::insert_memories(&app, 0..=12000);
    let url = srv
        .url
        .replacen("https://", &format!("https://x:{KEY}@"), 1)
        + "/db";
    let run = |trust: bool, args: &[&str]| {
        let mut c = std::process::Command::new(common::BIN);
        c.args(args).env_remove("SSL_CERT_FILE");
        if trust {
            c.env("SSL_CERT_FILE", &cert);
        }
        c.output().unwrap()
    };
    let o = run(false, &["replicate", "-once", db.to_str().unwrap(), &url]);
    // The log says why (the run's last line only that the replica lacks what was committed).
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!o.status.success());
    assert!(
        err.contains("certificate") && err.contains("SSL_CERT_FILE"),
        "{err}"
    );
    let o = run(true, &["replicate", "-once", db.to_str().unwrap(), &url]);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let out = tmp.path().join("restored.db");
    let o = run(true, &["restore", "-o", out.to_str().unwrap(), &url]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    common::assert_same(&app, &common::check_sound(&out));
    let biggest = files_under(&root)
        .iter()
        .map(|f| std::fs::metadata(root.join(f)).unwrap().len())
        .max()
        .unwrap();
    assert!(
        biggest > memsync::replica::SINGLE_PUT_MAX,
        "{biggest} bytes: not streamed"
    );
    let (st, log) = srv.stop();
    assert!(st.success(), "{log}");
}

#[test]
fn object_store_http_store_works_against_serve() {
    install_crypto();
    use futures::TryStreamExt;
    use object_store::http::HttpBuilder;
    use object_store::path::Path as ObjPath;
    use object_store::{
        ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    };

    let (_tmp, root) = scene();
    let srv = Server::start(&root, &["-api-key", KEY], &[]);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {KEY}").parse().unwrap(),
    );
    let store = HttpBuilder::new()
        .with_url(format!("{}/", srv.url))
        .with_client_options(
            ClientOptions::new()
                .with_allow_http(true)
                .with_default_headers(headers),
        )
        .build()
        .unwrap();
    let rt = rt();
    rt.block_on(async {
        let loc = ObjPath::from("db/0000/segment.ltx");
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let put = |bytes: Vec<u8>| {
            let opts = PutOptions {
                mode: PutMode::Overwrite,
                ..Default::default()
            };
            store.put_opts(&loc, PutPayload::from(bytes), opts)
        };
        put(data.clone()).await.unwrap();
        let again = put(vec![1, 2, 3]).await.unwrap_err();
        assert!(
            matches!(again, object_store::Error::Precondition { .. }),
            "{again:?}"
        );
        let got = store.get(&loc).await.unwrap().bytes().await.unwrap();
        assert_eq!(got.as_ref(), data.as_slice());
        let part = store.get_range(&loc, 100..300).await.unwrap();
        assert_eq!(part.as_ref(), &data[100..300]);
        let head = store.head(&loc).await.unwrap();
        assert_eq!(head.size, 10_000);
        store
            .put(&ObjPath::from("db/snapshot"), PutPayload::from_static(b"s"))
            .await
            .unwrap();
        store
            .put(&ObjPath::from("other/x"), PutPayload::from_static(b"o"))
            .await
            .unwrap();
        let mut listed: Vec<(String, u64)> = store
            .list(Some(&ObjPath::from("db")))
            .map_ok(|m| (m.location.to_string(), m.size))
            .try_collect()
            .await
            .unwrap();
        listed.sort();
        assert_eq!(
            listed,
            [
                ("db/0000/segment.ltx".to_string(), 10_000),
                ("db/snapshot".to_string(), 1)
            ]
        );
        let top = store
            .list_with_delimiter(Some(&ObjPath::from("db")))
            .await
            .unwrap();
        assert_eq!(top.common_prefixes, [ObjPath::from("db/0000")]);
        assert_eq!(top.objects.len(), 1);
        store.delete(&loc).await.unwrap();
        let gone = store.get(&loc).await.unwrap_err();
        assert!(
            matches!(gone, object_store::Error::NotFound { .. }),
            "{gone:?}"
        );
        let none: Vec<_> = store
            .list(Some(&ObjPath::from("nothing")))
            .try_collect()
            .await
            .unwrap();
        assert!(none.is_empty());
    });
    assert!(files_under(&root).iter().all(|f| !f.contains(".tmp-")));
}

#[test]
fn bad_arguments_fail_with_one_line() {
    let (tmp, root) = scene();
    let dir = root.to_str().unwrap();
    let cert = tmp.path().join("missing.pem");
    let cert = cert.to_str().unwrap();
    for (args, says) in [
        (
            vec!["-addr", "127.0.0.1:0", "-tls-cert", cert],
            "-tls-cert and -tls-key go together",
        ),
        (
            vec!["-addr", "127.0.0.1:0", "-tls-cert", cert, "-tls-key", cert],
            "TLS /",
        ),
        (
            vec!["-addr", "127.0.0.1:0", "-max-body", "lots"],
            "-max-body lots",
        ),
        (vec!["-addr", "300.0.0.1:1"], "cannot listen on 300.0.0.1:1"),
        (
            vec!["-addr", "127.0.0.1:0", "-api-key", ""],
            "the API key is empty",
        ),
    ] {
        let o = common::run(&[&["serve", "-dir", dir], &args[..]].concat());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

/// reqwest is built without a default TLS provider (memsync installs ring's; so do these tests).
fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
