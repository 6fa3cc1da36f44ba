//! Builds the object stores behind S3 and HTTP/WebDAV replicas from their configuration.
//!
//! Both are `object_store` stores over reqwest with rustls (ring), so they differ from a file
//! replica only in how the store is made. Settings come from the replica's configuration first,
//! then Litestream's variables (`LITESTREAM_ACCESS_KEY_ID`, ...), then the `AWS_*` ones.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::http::HttpBuilder;
use object_store::{BackoffConfig, Certificate, ClientOptions, ObjectStore, RetryConfig};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use url::Url;

use super::{REQUEST_TIMEOUT, ReplicaError};

/// S3 settings as configured (`ReplicaTarget::S3`).
pub(super) struct S3Settings<'a> {
    pub bucket: &'a str,
    pub endpoint: Option<&'a str>,
    pub region: Option<&'a str>,
    pub force_path_style: bool,
    pub skip_verify: bool,
    pub access_key_id: Option<&'a str>,
    pub secret_access_key: Option<&'a str>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Retries inside one request (5xx answers, reset connections): some 6 s of them, enough for
/// a store restarting under us; the shipper retries a failed upload with its own backoff
/// beyond that and keeps the file in the spool meanwhile.
fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(4),
            base: 2.0,
        },
        max_retries: 5,
        retry_timeout: REQUEST_TIMEOUT,
    }
}

/// Certificates a caller trusts beyond the system's for one replica: memory sync's
/// `--ca-file` / `--insecure` (`REMOTE_MEMORY_CA_FILE`, ...) also apply to the server's replica
/// it pulls from, which is often a `memsync serve` with a private CA.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// A PEM bundle whose certificates are trusted as well.
    pub ca_file: Option<std::path::PathBuf>,
    /// No certificate check at all.
    pub insecure: bool,
}

/// Client options shared by S3 and HTTP stores, trusting `certs` (from [`extra_certs`]) besides
/// the system's certificates.
fn client_options(
    url: Option<&str>,
    skip_verify: bool,
    certs: &[Vec<u8>],
    trust: &Trust,
) -> ClientOptions {
    install_crypto();
    let mut o = ClientOptions::new()
        .with_timeout(REQUEST_TIMEOUT)
        .with_connect_timeout(Duration::from_secs(10))
        .with_allow_http(url.is_some_and(|u| u.starts_with("http://")))
        .with_allow_invalid_certificates(skip_verify || trust.insecure)
        .with_http1_only();
    for der in certs {
        if let Ok(c) = Certificate::from_der(der) {
            o = o.with_root_certificate(c);
        }
    }
    o
}

/// The certificates of a PEM bundle that parse (DER form), and how many did not. A block
/// that does not parse made the whole client fail to build ("invalid peer certificate:
/// BadEncoding"), plain-HTTP replicas included; a system bundle with one bad block appended is
/// still the system bundle.
fn usable_certs(pem: &[u8]) -> Result<(Vec<Vec<u8>>, usize), String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut check = rustls::RootCertStore::empty();
    let (mut good, mut bad) = (Vec::new(), 0);
    for item in CertificateDer::pem_slice_iter(pem) {
        match item {
            Ok(der) if check.add(der.clone()).is_ok() => good.push(der.to_vec()),
            _ => bad += 1,
        }
    }
    match (good.is_empty(), bad) {
        (true, 0) => Err("no PEM certificate in it".into()),
        (true, _) => Err(format!("none of its {bad} certificates parses")),
        _ => Ok((good, bad)),
    }
}

/// Certificates (DER) a replica's client trusts besides the system's: `trust`'s CA file (an
/// error when unusable), then `SSL_CERT_FILE` (the variable OpenSSL-based tools read: how
/// `replicate` and `restore` trust a private or self-signed server) and, for S3,
/// `AWS_CA_BUNDLE`. A variable naming something unusable is ignored with a warning (once per
/// process): tools read them differently, and it must not stop replication. Certificates of a
/// bundle that do not parse are left out, with a warning.
fn extra_certs(replica: &str, trust: &Trust, aws: bool) -> Result<Vec<Vec<u8>>, ReplicaError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|pem| usable_certs(&pem))
    };
    let mut out = Vec::new();
    if let Some(path) = &trust.ca_file {
        let (certs, bad) = read(path).map_err(|e| ReplicaError::Config {
            replica: replica.to_string(),
            msg: format!("CA file {}: {e}", path.display()),
        })?;
        if bad > 0 {
            warn_once(format!(
                "CA file {}: {bad} certificates that do not parse left out",
                path.display()
            ));
        }
        out.extend(certs);
    }
    let vars: &[&str] = if aws {
        &["SSL_CERT_FILE", "AWS_CA_BUNDLE"]
    } else {
        &["SSL_CERT_FILE"]
    };
    for var in vars {
        if let Some(path) = env(var) {
            match read(std::path::Path::new(&path)) {
                Ok((certs, bad)) => {
                    if bad > 0 {
                        warn_once(format!(
                            "{var}={path}: {bad} certificates that do not parse left out"
                        ));
                    }
                    out.extend(certs);
                }
                Err(e) => warn_once(format!(
                    "{var}={path} not used ({e}); using the system's certificates"
                )),
            }
        }
    }
    Ok(out)
}

/// A warning about the environment, said once however many clients read it.
fn warn_once(msg: String) {
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|p| p.into_inner());
    if !said.contains(&msg) {
        tracing::warn!("{msg}");
        said.push(msg);
    }
}

/// reqwest is built without a default TLS provider (ring instead of aws-lc: no cmake build).
fn install_crypto() {
    // A second install returns Err, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An S3 (or S3-compatible) store for `s`. Path-style requests when an endpoint is given
/// (MinIO, SeaweedFS and most self-hosted stores need them; R2 and B2 accept them) or when
/// `force-path-style` is set; virtual-hosted style on AWS itself.
pub(super) fn s3_store(
    replica: &str,
    s: &S3Settings,
    trust: &Trust,
) -> Result<Arc<dyn ObjectStore>, ReplicaError> {
    let key_id = s
        .access_key_id
        .map(str::to_string)
        .or_else(|| env("LITESTREAM_ACCESS_KEY_ID"))
        .or_else(|| env("AWS_ACCESS_KEY_ID"));
    let secret = s
        .secret_access_key
        .map(str::to_string)
        .or_else(|| env("LITESTREAM_SECRET_ACCESS_KEY"))
        .or_else(|| env("AWS_SECRET_ACCESS_KEY"));
    let region = s
        .region
        .map(str::to_string)
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".into());
    let endpoint = s
        .endpoint
        .map(|e| {
            endpoint_url(e).map_err(|msg| ReplicaError::Config {
                replica: replica.to_string(),
                msg,
            })
        })
        .transpose()?;
    let endpoint = endpoint.as_deref();
    // Starts from the AWS environment (session tokens, container and instance credentials),
    // then the configuration wins.
    let mut b = aws_environment()
        .with_bucket_name(s.bucket)
        .with_region(region)
        .with_retry(retry())
        .with_client_options(client_options(
            endpoint,
            s.skip_verify,
            &extra_certs(replica, trust, true)?,
            trust,
        ))
        .with_virtual_hosted_style_request(endpoint.is_none() && !s.force_path_style);
    if let Some(e) = endpoint {
        b = b.with_endpoint(e);
    }
    if let Some(k) = key_id {
        b = b.with_access_key_id(k);
    }
    if let Some(k) = secret {
        b = b.with_secret_access_key(k);
    }
    let store = b.build().map_err(|source| ReplicaError::Storage {
        replica: replica.to_string(),
        what: "configuring the S3 client".into(),
        source,
    })?;
    Ok(Arc::new(store))
}

/// The builder `AmazonS3Builder::from_env` makes, but for `AWS_ENDPOINT` (and its aliases):
/// that would send AWS-region requests elsewhere without the configuration saying so, so it
/// is honoured only as the `endpoint` key. (It was cleared by setting it empty, which
/// object_store then took for an endpoint: every replica without one panicked at its first
/// request.)
fn aws_environment() -> AmazonS3Builder {
    let mut b = AmazonS3Builder::new();
    for (k, v) in std::env::vars_os() {
        let (Some(k), Some(v)) = (k.to_str(), v.to_str()) else {
            continue;
        };
        if !k.starts_with("AWS_") {
            continue;
        }
        match k.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
            Ok(AmazonS3ConfigKey::Endpoint) | Err(_) => {}
            Ok(key) => b = b.with_config(key, v),
        }
    }
    b
}

/// An S3 endpoint as a URL. One without a scheme (`127.0.0.1:9000`, which Litestream accepts)
/// gets `http://` when its host is this machine or a private network, `https://` otherwise, as
/// Litestream does; what is still not an http(s) URL then is refused (object_store panicked on
/// it at the first request).
fn endpoint_url(e: &str) -> Result<String, String> {
    let full = if e.contains("://") {
        e.to_string()
    } else {
        let scheme = match url::Url::parse(&format!("http://{e}")) {
            Ok(u) if u.host().is_some_and(|h| is_local(&h)) => "http",
            _ => "https",
        };
        format!("{scheme}://{e}")
    };
    match url::Url::parse(&full) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(full),
        _ => Err(format!(
            "endpoint {e:?} is not a URL (write it as http://host:port or https://host)"
        )),
    }
}

/// This machine, a private network or a `.local` name.
fn is_local(h: &url::Host<&str>) -> bool {
    match h {
        url::Host::Domain(d) => {
            let d = d.to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost") || d.ends_with(".local")
        }
        url::Host::Ipv4(a) => a.is_loopback() || a.is_private() || a.is_link_local(),
        url::Host::Ipv6(a) => a.is_loopback() || (a.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// A WebDAV store at `url`; user and password in the URL become Basic authentication, and
/// `MEMSYNC_HTTP_TOKEN`, when set, a Bearer token (what `memsync serve -api-key` checks).
/// Returns the store, the URL without its credentials (for names and logs) and the URL's path,
/// which becomes the client's root: the store itself is made for the server's origin because
/// object_store reads a PROPFIND's `href`s as paths from the server root.
pub(super) fn http_store(
    replica: &str,
    url: &str,
    trust: &Trust,
) -> Result<(Arc<dyn ObjectStore>, String, String, super::davput::DavPut), ReplicaError> {
    install_crypto();
    let bad = |msg: String| ReplicaError::Config {
        replica: replica.to_string(),
        msg,
    };
    let mut parsed = Url::parse(url).map_err(|e| bad(format!("URL {url:?}: {e}")))?;
    let mut headers = HeaderMap::new();
    if !parsed.username().is_empty() || parsed.password().is_some() {
        use base64::Engine as _;
        let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let user = percent_encoding::percent_decode_str(parsed.username()).decode_utf8_lossy();
        let pass = parsed
            .password()
            .map(|p| {
                percent_encoding::percent_decode_str(p)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .unwrap_or_default();
        let mut v = HeaderValue::from_str(&format!("Basic {}", encode(&format!("{user}:{pass}"))))
            .map_err(|_| bad("user or password in the URL is not a valid header".into()))?;
        v.set_sensitive(true);
        headers.insert(AUTHORIZATION, v);
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
    } else if let Some(token) = env("MEMSYNC_HTTP_TOKEN") {
        let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| bad("MEMSYNC_HTTP_TOKEN is not a valid header value".into()))?;
        v.set_sensitive(true);
        headers.insert(AUTHORIZATION, v);
    }
    let clean = parsed.to_string().trim_end_matches('/').to_string();
    let root = percent_encoding::percent_decode_str(parsed.path())
        .decode_utf8()
        .map_err(|_| bad("the URL's path is not UTF-8".into()))?
        .trim_matches('/')
        .to_string();
    parsed.set_path("/");
    parsed.set_query(None);
    let ders = extra_certs(replica, trust, false)?;
    let dav = super::davput::DavPut::new(&parsed, headers.clone(), &ders, trust.insecure)
        .map_err(|e| bad(format!("HTTP client: {e}")))?;
    let store = HttpBuilder::new()
        .with_url(parsed.to_string())
        .with_retry(retry())
        .with_client_options(
            client_options(Some(&clean), false, &ders, trust).with_default_headers(headers),
        )
        .build()
        .map_err(|source| ReplicaError::Storage {
            replica: replica.to_string(),
            what: "configuring the HTTP client".into(),
            source,
        })?;
    Ok((Arc::new(store), clean, root, dav))
}

#[cfg(test)]
mod tests {
    use super::endpoint_url;

    #[test]
    fn endpoints_without_a_scheme_get_one() {
        let ok = |e: &str| endpoint_url(e).unwrap();
        assert_eq!(ok("127.0.0.1:9000"), "http://127.0.0.1:9000");
        assert_eq!(ok("localhost:9000"), "http://localhost:9000");
        assert_eq!(ok("192.168.1.5"), "http://192.168.1.5");
        assert_eq!(ok("[::1]:9000"), "http://[::1]:9000");
        assert_eq!(ok("s3.example.com"), "https://s3.example.com");
        assert_eq!(ok("minio:9000"), "https://minio:9000");
        assert_eq!(ok("http://minio:9000"), "http://minio:9000");
        assert!(endpoint_url("ftp://host").is_err());
        assert!(endpoint_url("http://exa mple").is_err());
    }
}
