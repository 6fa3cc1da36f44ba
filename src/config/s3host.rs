//! The hosts of `s3://` URLs that name a provider as well as a bucket, as Litestream reads
//! them: `s3://my-bucket.s3.us-west-2.amazonaws.com/db`, `s3://bkt.nyc3.digitaloceanspaces.com/db`,
//! `s3://bkt.localhost:9000/db`. A plain host is the bucket's name.

/// Where a provider's host keeps the region.
enum Region {
    /// The label before the provider's suffix (after an `s3.` label when `s3`).
    Label { s3: bool },
    /// None in the host: this one, if any.
    Fixed(Option<&'static str>),
}

/// A provider: the host's suffix after the bucket, where its region is, and its endpoint
/// (scheme, host with `{region}`); `None` for AWS, whose endpoint follows from the region.
struct Provider {
    suffix: &'static str,
    region: Region,
    endpoint: Option<(&'static str, &'static str)>,
}

/// Litestream's list, in its order; AWS's two forms last.
const PROVIDERS: &[Provider] = &[
    Provider {
        suffix: "localhost",
        region: Region::Fixed(Some("us-east-1")),
        endpoint: Some(("http", "localhost")),
    },
    Provider {
        suffix: "digitaloceanspaces.com",
        region: Region::Label { s3: false },
        endpoint: Some(("https", "{region}.digitaloceanspaces.com")),
    },
    Provider {
        suffix: "linodeobjects.com",
        region: Region::Label { s3: false },
        endpoint: Some(("https", "{region}.linodeobjects.com")),
    },
    Provider {
        suffix: "s3.filebase.com",
        region: Region::Fixed(None),
        endpoint: Some(("https", "s3.filebase.com")),
    },
    Provider {
        suffix: "backblazeb2.com",
        region: Region::Label { s3: true },
        endpoint: Some(("https", "s3.{region}.backblazeb2.com")),
    },
    Provider {
        suffix: "amazonaws.com",
        region: Region::Label { s3: true },
        endpoint: None,
    },
    Provider {
        suffix: "s3.amazonaws.com",
        region: Region::Fixed(None),
        endpoint: None,
    },
];

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
    let found = PROVIDERS.iter().find_map(|p| {
        let rest = lower.strip_suffix(p.suffix)?.strip_suffix('.')?;
        let (bucket, region) = match p.region {
            // `<bucket>[.s3].<region>.<suffix>`
            Region::Label { s3 } => {
                let (b, r) = rest.rsplit_once('.')?;
                (
                    if s3 { b.strip_suffix(".s3")? } else { b },
                    Some(r.to_owned()),
                )
            }
            Region::Fixed(r) => (rest, r.map(str::to_owned)),
        };
        if bucket.is_empty() || region.as_deref() == Some("") {
            return None;
        }
        let endpoint = p.endpoint.map(|(scheme, at)| {
            let at = at.replace("{region}", region.as_deref().unwrap_or_default());
            match port {
                Some(port) => format!("{scheme}://{at}:{port}"),
                None => format!("{scheme}://{at}"),
            }
        });
        Some(S3Host {
            // As written (a bucket's name may have capitals).
            bucket: host[..bucket.len()].to_owned(),
            region,
            endpoint,
        })
    });
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
