//! The scalar values of a config file, each read with the line it came from for the
//! error: durations, sizes, counts and paths.

use std::path::PathBuf;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::convert::{Ctx, line_of};
use super::raw::{S, Scalar};
use super::url::is_url;
use super::{ConfigError, parse_duration, resolve_path};

pub(super) fn duration(
    ctx: &Ctx,
    v: &S<Scalar>,
    key: &str,
) -> Result<Option<Duration>, ConfigError> {
    let Some(v) = v else { return Ok(None) };
    let bad = |value: String, msg: String| ConfigError::BadDuration {
        file: ctx.file.to_path_buf(),
        line: line_of(v),
        key: key.to_string(),
        value,
        msg,
    };
    match &v.value {
        Scalar::Int(0) => Ok(Some(Duration::ZERO)),
        Scalar::Int(n) if *n < 0 => Err(bad(n.to_string(), "negative duration".into())),
        Scalar::Int(n) => Err(bad(
            n.to_string(),
            format!("a number needs a unit, e.g. \"{n}s\" or \"{n}ms\" (only 0 may omit it)"),
        )),
        Scalar::Str(s) => parse_duration(s).map(Some).map_err(|m| bad(s.clone(), m)),
        Scalar::Other(s) => Err(bad(s.clone(), "expected a duration such as \"1s\"".into())),
    }
}

/// A size: bytes, or a number with a unit (`KB`, `MB`, `GB`, `TB` and their `KiB`... forms,
/// all read as powers of 1024, as `du` and `df -h` show them).
pub(super) fn size(ctx: &Ctx, v: &S<Scalar>, key: &str, default: u64) -> Result<u64, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    let bad = |what: String| {
        ctx.invalid(
            Some(line_of(v)),
            format!("`{key}` {what}: expected a size such as 512MB or 2GB"),
        )
    };
    match &v.value {
        Scalar::Int(n) => u64::try_from(*n).map_err(|_| bad(n.to_string())),
        Scalar::Str(s) => parse_size(s).ok_or_else(|| bad(format!("{s:?}"))),
        Scalar::Other(s) => Err(bad(s.clone())),
    }
}

pub(super) fn count(ctx: &Ctx, v: &S<i64>, key: &str, default: u32) -> Result<u32, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    u32::try_from(v.value).map_err(|_| {
        ctx.invalid(
            Some(line_of(v)),
            format!("{key} must be between 0 and {}", u32::MAX),
        )
    })
}

pub(super) fn path(ctx: &Ctx, v: &Spanned<String>, key: &str) -> Result<PathBuf, ConfigError> {
    if v.value.is_empty() {
        return Err(ctx.invalid(Some(line_of(v)), format!("`{key}` is empty")));
    }
    if is_url(&v.value) {
        return Err(ctx.invalid(
            Some(line_of(v)),
            format!(
                "`{key}` {:?} is a URL; use `url:` for replica URLs",
                v.value
            ),
        ));
    }
    resolve_path(&v.value, ctx.cwd, ctx.home.as_deref())
        .map_err(|m| ctx.invalid(Some(line_of(v)), m))
}

/// `512MB`, `2 GiB`, `1048576`: bytes, with 1024-based units.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}
