//! Credentials: the right ones work, wrong ones are errors on every call. A refused request must
//! never read as "nothing there" (an empty listing or no lineage record would let a replicator
//! start a new history over someone else's replica).

use memsync::config::{ReplicaTarget, replica_from_url};
use memsync::replica::{ReplicaClient, ReplicaError, client_for};
use replica_formats::testkit::seg;
use replica_formats::{LINEAGE_OBJECT, Level};

use crate::common::{s3, webdav};
use crate::fixture::runtime;

/// Every call of `c` fails, and not as NotFound/AlreadyExists.
async fn refused_everywhere(c: &ReplicaClient, src: &std::path::Path) {
    let k = seg(0, 1, 1);
    let refused = |what: &str, e: Option<ReplicaError>| match e {
        None => panic!("{what} succeeded with wrong credentials"),
        Some(e @ (ReplicaError::NotFound { .. } | ReplicaError::AlreadyExists { .. })) => {
            panic!("{what} with wrong credentials read as {e:?}")
        }
        Some(_) => {}
    };
    refused("list", c.list().await.err());
    refused("list_after", c.list_after(Level::ZERO, None).await.err());
    refused("get_raw", c.get_raw(LINEAGE_OBJECT).await.err());
    refused("size", c.size(&k).await.err());
    refused("get_range", c.get_range(&k, 0, 1).await.err());
    refused("upload", c.upload(&seg(0, 2, 2), src).await.err());
    refused(
        "put_raw",
        c.put_raw(LINEAGE_OBJECT, b"x".to_vec(), true).await.err(),
    );
}

fn s3_client(prefix: &str, secret: &str) -> ReplicaClient {
    let mut cfg = replica_from_url(&s3::shared().url(prefix)).unwrap();
    if let ReplicaTarget::S3 {
        access_key_id,
        secret_access_key,
        ..
    } = &mut cfg.target
    {
        *access_key_id = Some(s3::ACCESS_KEY.into());
        *secret_access_key = Some(secret.into());
    }
    client_for(&cfg, true).unwrap()
}

#[test]
fn s3_wrong_secret_is_an_error_everywhere() {
    let prefix = s3::unique_prefix("auth");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::write(&src, b"segment").unwrap();
    runtime().block_on(async {
        let good = s3_client(&prefix, s3::SECRET_KEY);
        good.upload(&seg(0, 1, 1), &src).await.unwrap();
        refused_everywhere(&s3_client(&prefix, "wrong"), &src).await;
        assert_eq!(good.list().await.unwrap(), [seg(0, 1, 1)]);
    });
}

/// Basic auth from the URL's user info; a wrong password is refused on every call.
#[test]
fn webdav_basic_auth_from_url() {
    let dav = webdav::WebDav::start_with_auth("alice", "s3cret");
    let url = |user: &str| {
        dav.url("db")
            .replacen("http://", &format!("http://{user}@"), 1)
    };
    let client = |user: &str| client_for(&replica_from_url(&url(user)).unwrap(), true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::write(&src, b"segment").unwrap();
    runtime().block_on(async {
        let good = client("alice:s3cret");
        good.upload(&seg(0, 1, 1), &src).await.unwrap();
        assert_eq!(good.list().await.unwrap(), [seg(0, 1, 1)]);
        assert_eq!(
            good.get_range(&seg(0, 1, 1), 0, 7).await.unwrap(),
            &b"segment"[..]
        );
        refused_everywhere(&client("alice:wrong"), &src).await;
        refused_everywhere(
            &client_for(&replica_from_url(&dav.url("db")).unwrap(), true).unwrap(),
            &src,
        )
        .await;
        assert_eq!(good.list().await.unwrap(), [seg(0, 1, 1)]);
    });
    assert!(
        !format!("{:?}", client("alice:s3cret")).contains("s3cret"),
        "the client's name shows the password"
    );
}
