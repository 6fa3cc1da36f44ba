//! Go-style durations (`time.ParseDuration` syntax): `500ms`, `1m30s`, `1.5h`, `0`.
//!
//! Units: `ns`, `us` (also `µs`/`μs`), `ms`, `s`, `m`, `h`. No days, as in Go.
//! Unlike Go, negative durations are rejected: no memsync setting can use one.

use std::time::Duration;

const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Largest accepted duration, as in Go (`1<<63 - 1` nanoseconds, about 292 years).
const MAX_NANOS: u128 = i64::MAX as u128;

/// Parses a Go duration string. The error is a short message (without the value).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if body.is_empty() {
        return Err("empty duration".into());
    }
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = body;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac_len = after_dot
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after_dot.len());
            frac_part = &after_dot[..frac_len];
            rest = &after_dot[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err("expected a number".into());
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        if unit.is_empty() {
            return Err("missing unit (use one of ns, us, ms, s, m, h; e.g. \"10s\")".into());
        }
        let Some(&(_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(format!(
                "unknown unit {unit:?} (use one of ns, us, ms, s, m, h)"
            ));
        };
        let too_large = || "duration too large".to_string();
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| too_large())?
        };
        let mut nanos = int.checked_mul(scale).ok_or_else(too_large)?;
        // Fraction: only the first 18 digits matter at nanosecond resolution.
        let frac_digits = &frac_part[..frac_part.len().min(18)];
        if !frac_digits.is_empty() {
            let frac: u128 = frac_digits.parse().map_err(|_| too_large())?;
            nanos += frac * scale / 10u128.pow(frac_digits.len() as u32);
        }
        total = total.checked_add(nanos).ok_or_else(too_large)?;
        if total > MAX_NANOS {
            return Err(too_large());
        }
    }
    if neg && total > 0 {
        return Err("negative duration".into());
    }
    Ok(Duration::from_nanos(total as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Duration {
        parse_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn go_syntax() {
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("1s"), Duration::from_secs(1));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("24h"), Duration::from_secs(86_400));
        assert_eq!(ok("1h0m0s"), Duration::from_secs(3600));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("10us"), Duration::from_micros(10));
        assert_eq!(ok("10µs"), Duration::from_micros(10));
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
        assert_eq!(ok("+2s"), Duration::from_secs(2));
        assert_eq!(ok("-0s"), Duration::ZERO);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(parse_duration("-1s").unwrap_err(), "negative duration");
        assert!(parse_duration("10").unwrap_err().contains("missing unit"));
        assert!(
            parse_duration("1d")
                .unwrap_err()
                .contains("unknown unit \"d\"")
        );
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1s ").is_err());
        assert!(parse_duration("1.s.").is_err());
        assert!(
            parse_duration("3000000h")
                .unwrap_err()
                .contains("too large")
        );
    }
}
