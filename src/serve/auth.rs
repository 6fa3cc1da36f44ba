//! The API key: `Authorization: Bearer KEY`, or Basic with the key as the password (any user
//! name, so plain WebDAV clients that only know user and password work). Keys are compared by
//! their SHA-256 digests in constant time: neither the key's length nor a matching prefix shows
//! in the answer's timing.

use base64::Engine;
use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;
use sha2::{Digest, Sha256};

/// The key a server requires, or none.
pub(super) struct ApiKey {
    digest: Option<[u8; 32]>,
}

impl ApiKey {
    /// Requires `key` on every request (except the health check); `None` requires nothing.
    pub(super) fn new(key: Option<&str>) -> ApiKey {
        ApiKey {
            digest: key.map(|k| Sha256::digest(k.as_bytes()).into()),
        }
    }

    /// True if the request may proceed.
    pub(super) fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(want) = &self.digest else {
            return true;
        };
        let Some(given) = headers
            .get(AUTHORIZATION)
            .and_then(|v| presented_key(v.as_bytes()))
        else {
            return false;
        };
        let got: [u8; 32] = Sha256::digest(&given).into();
        equal(want, &got)
    }
}

/// The key an `Authorization` value carries: the Bearer token, or the Basic password.
fn presented_key(value: &[u8]) -> Option<Vec<u8>> {
    let s = std::str::from_utf8(value).ok()?.trim();
    let (scheme, rest) = s.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.as_bytes().to_vec());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let colon = decoded.iter().position(|&b| b == b':')?;
        return Some(decoded[colon + 1..].to_vec());
    }
    None
}

/// Compares two digests without an early exit.
fn equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn bearer_and_basic() {
        let k = ApiKey::new(Some("s3cret"));
        assert!(k.allows(&with("Bearer s3cret")));
        assert!(k.allows(&with("bearer  s3cret ")));
        // user "anyone", password "s3cret"; and an empty user name.
        assert!(k.allows(&with("Basic YW55b25lOnMzY3JldA==")));
        assert!(k.allows(&with("Basic OnMzY3JldA==")));
        assert!(!k.allows(&with("Bearer s3cre")));
        assert!(!k.allows(&with("Bearer s3cret2")));
        assert!(!k.allows(&with("Basic czNjcmV0")), "no colon: no password");
        assert!(!k.allows(&with("Basic !!!")));
        assert!(!k.allows(&with("Digest s3cret")));
        assert!(!k.allows(&HeaderMap::new()));
        assert!(ApiKey::new(None).allows(&HeaderMap::new()));
    }
}
