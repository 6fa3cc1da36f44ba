//! `memsync serve`: the backup server for HTTP replicas.

use std::path::PathBuf;

use clap::Args;

use super::error::CliError;
use crate::serve::{self, ServeOptions};

/// The environment variable read for the key when `-api-key` is absent (a key given there does
/// not show in `ps`).
const KEY_ENV: &str = "MEMSYNC_SERVE_API_KEY";

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Directory holding the replicas served (created if missing).
    #[arg(long = "dir")]
    dir: PathBuf,
    /// Address to listen on, HOST:PORT (port 0 picks a free port).
    #[arg(long = "addr")]
    addr: String,
    /// Key required on every request but GET /health: `Authorization: Bearer KEY`, or Basic
    /// with KEY as the password (default: $MEMSYNC_SERVE_API_KEY; none: no key required).
    #[arg(long = "api-key")]
    api_key: Option<String>,
    /// Certificate chain (PEM) for HTTPS; needs -tls-key.
    #[arg(long = "tls-cert")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) for HTTPS; needs -tls-cert.
    #[arg(long = "tls-key")]
    tls_key: Option<PathBuf>,
    /// Largest upload accepted: bytes, or with a unit K, M, G (KiB, MiB, GiB).
    #[arg(long = "max-body", default_value = "1GiB")]
    max_body: String,
}

pub(super) fn cmd_serve(a: ServeArgs) -> Result<(), CliError> {
    let api_key = match a.api_key {
        Some(k) => Some(k),
        None => std::env::var(KEY_ENV).ok(),
    };
    if api_key.as_deref() == Some("") {
        return Err(CliError::Arguments(
            "the API key is empty (-api-key or MEMSYNC_SERVE_API_KEY)",
        ));
    }
    let tls = match (a.tls_cert, a.tls_key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(CliError::Arguments("-tls-cert and -tls-key go together"));
        }
    };
    let max_body = parse_size(&a.max_body).ok_or_else(|| CliError::BadFlag {
        flag: "-max-body",
        value: a.max_body.clone(),
        why: "not a size (e.g. 1073741824, 512M, 1GiB)".into(),
    })?;
    serve::run(ServeOptions {
        dir: a.dir,
        addr: a.addr,
        api_key,
        tls,
        max_body,
    })?;
    Ok(())
}

/// `1024`, `64K`, `512MiB`, `1g`: a byte count, units binary (as the config's sizes); not 0.
fn parse_size(s: &str) -> Option<u64> {
    crate::config::parse_size(s).filter(|&v| v > 0)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("64K"), Some(64 << 10));
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("2 GB"), Some(2 << 30));
        for bad in ["", "0", "G", "1x", "1ib", "-1", "99999999999T"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }
}
