//! The hosts of `s3://` URLs that name a provider as well as a bucket, as Litestream reads
//! them: `s3://my-bucket.s3.us-west-2.amazonaws.com/db`, `s3://bkt.nyc3.digitaloceanspaces.com/db`,
//! `s3://bkt.localhost:9000/db`. A plain host is the bucket's name.

/// What such a host says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct S3Host {
    pub bucket: String,
    pub region: Option<String>,
    /// Set for every provider but AWS (whose endpoint follows from the region).
    pub endpoint: Option<String>,
}

/// Reads `authority` (the URL's host, with its port if any). `Err` for a port on a host that
/// names no provider: the requests would go to AWS, the port ignored.
pub(super) fn parse(authority: &str) -> Result<S3Host, String> {
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
        _ => (authority, None),
    };
    let lower = host.to_ascii_lowercase();
    let with_port = |h: &str| match port {
        Some(p) => format!("{h}:{p}"),
        None => h.to_owned(),
    };
    // `<bucket>.<rest>`, the bucket being everything before the provider's part.
    let split = |suffix: &str| {
        lower
            .strip_suffix(suffix)
            .and_then(|b| b.strip_suffix('.'))
            .filter(|b| !b.is_empty())
            .map(|b| host[..b.len()].to_owned())
    };
    // `<bucket>.<label>.<suffix>`: the label is the region.
    let regional = |suffix: &str| {
        let rest = lower.strip_suffix(suffix)?.strip_suffix('.')?;
        let (bucket, region) = rest.rsplit_once('.')?;
        (!bucket.is_empty() && !region.is_empty())
            .then(|| (host[..bucket.len()].to_owned(), region.to_owned()))
    };
    let found = if let Some(bucket) = split("localhost") {
        Some(S3Host {
            bucket,
            region: Some("us-east-1".into()),
            endpoint: Some(format!("http://{}", with_port("localhost"))),
        })
    } else if let Some((bucket, region)) = regional("digitaloceanspaces.com") {
        let endpoint = Some(format!(
            "https://{}",
            with_port(&format!("{region}.digitaloceanspaces.com"))
        ));
        Some(S3Host {
            bucket,
            region: Some(region),
            endpoint,
        })
    } else if let Some((bucket, region)) = regional("linodeobjects.com") {
        let endpoint = Some(format!(
            "https://{}",
            with_port(&format!("{region}.linodeobjects.com"))
        ));
        Some(S3Host {
            bucket,
            region: Some(region),
            endpoint,
        })
    } else if let Some(bucket) = split("s3.filebase.com") {
        let endpoint = Some(format!("https://{}", with_port("s3.filebase.com")));
        Some(S3Host {
            bucket,
            region: None,
            endpoint,
        })
    } else if let Some((bucket, region)) =
        regional("backblazeb2.com").and_then(|(b, r)| Some((b.strip_suffix(".s3")?.to_owned(), r)))
    {
        let endpoint = Some(format!(
            "https://{}",
            with_port(&format!("s3.{region}.backblazeb2.com"))
        ));
        Some(S3Host {
            bucket,
            region: Some(region),
            endpoint,
        })
    } else if let Some((bucket, region)) =
        regional("amazonaws.com").and_then(|(b, r)| Some((b.strip_suffix(".s3")?.to_owned(), r)))
    {
        Some(S3Host {
            bucket,
            region: Some(region),
            endpoint: None,
        })
    } else {
        split("s3.amazonaws.com").map(|bucket| S3Host {
            bucket,
            region: None,
            endpoint: None,
        })
    };
    match (found, port) {
        (Some(h), _) => Ok(h),
        (None, Some(p)) => Err(format!(
            "s3://{authority}: a port names no bucket; give the server as ?endpoint=http://HOST:{p} and the bucket as the host"
        )),
        (None, None) => Ok(S3Host {
            bucket: host.to_owned(),
            region: None,
            endpoint: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(b: &str, r: Option<&str>, e: Option<&str>) -> S3Host {
        S3Host {
            bucket: b.into(),
            region: r.map(Into::into),
            endpoint: e.map(Into::into),
        }
    }

    #[test]
    fn provider_hosts_are_read_as_litestream_reads_them() {
        for (authority, want) in [
            ("plain-bucket", host("plain-bucket", None, None)),
            ("my.dotted.bucket", host("my.dotted.bucket", None, None)),
            (
                "bkt.s3.us-west-2.amazonaws.com",
                host("bkt", Some("us-west-2"), None),
            ),
            ("bkt.s3.amazonaws.com", host("bkt", None, None)),
            (
                "b.x.s3.eu-west-1.amazonaws.com",
                host("b.x", Some("eu-west-1"), None),
            ),
            (
                "bkt.nyc3.digitaloceanspaces.com",
                host(
                    "bkt",
                    Some("nyc3"),
                    Some("https://nyc3.digitaloceanspaces.com"),
                ),
            ),
            (
                "bkt.us-east-1.linodeobjects.com",
                host(
                    "bkt",
                    Some("us-east-1"),
                    Some("https://us-east-1.linodeobjects.com"),
                ),
            ),
            (
                "bkt.s3.filebase.com",
                host("bkt", None, Some("https://s3.filebase.com")),
            ),
            (
                "bkt.s3.us-west-002.backblazeb2.com",
                host(
                    "bkt",
                    Some("us-west-002"),
                    Some("https://s3.us-west-002.backblazeb2.com"),
                ),
            ),
            (
                "bkt.localhost:9000",
                host("bkt", Some("us-east-1"), Some("http://localhost:9000")),
            ),
            (
                "bkt.localhost",
                host("bkt", Some("us-east-1"), Some("http://localhost")),
            ),
        ] {
            assert_eq!(parse(authority).unwrap(), want, "{authority}");
        }
        let e = parse("bkt:9000").unwrap_err();
        assert!(e.contains("?endpoint=http://HOST:9000"), "{e}");
        // A provider's name alone is no bucket.
        assert_eq!(parse("localhost").unwrap(), host("localhost", None, None));
    }
}
