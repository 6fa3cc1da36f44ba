//! What responses say about a file: its ETag, its date in HTTP's format, and the part a `Range`
//! header asks for. Pure functions over numbers and strings.

use std::fs::Metadata;
use std::time::{SystemTime, UNIX_EPOCH};

/// An ETag that changes whenever the file is replaced or rewritten: inode, mtime, size.
pub(super) fn etag(m: &Metadata) -> String {
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(m);
    // Windows: no inode in the metadata; a replaced file differs in its times anyway.
    #[cfg(not(unix))]
    let ino = m
        .created()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    let nanos = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("\"{:x}-{:x}-{:x}\"", ino, nanos, m.len())
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110's IMF-fixdate), for Last-Modified and PROPFIND.
pub(super) fn http_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// What to send for a `Range` header over a file of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Part {
    /// The whole file (no range, one the server ignores, or several ranges).
    Whole,
    /// Bytes `start..=end` (206).
    Range { start: u64, end: u64 },
    /// No byte of the file is in the range (416).
    Unsatisfiable,
}

/// Reads a `Range` header: `bytes=a-b`, `bytes=a-` or `bytes=-n`. A header that does not parse,
/// or asks for several ranges, is ignored (RFC 9110 lets a server send the whole file).
pub(super) fn part(header: Option<&str>, len: u64) -> Part {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Part::Whole;
    };
    let spec = spec.trim();
    if spec.contains(',') {
        return Part::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Part::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    match (a.is_empty(), b.is_empty()) {
        // bytes=-n: the last n bytes.
        (true, false) => match num(b) {
            None => Part::Whole,
            Some(0) => Part::Unsatisfiable,
            Some(_) if len == 0 => Part::Unsatisfiable,
            Some(n) => Part::Range {
                start: len.saturating_sub(n),
                end: len - 1,
            },
        },
        // bytes=a-: from a to the end.
        (false, true) => match num(a) {
            None => Part::Whole,
            Some(start) if start >= len => Part::Unsatisfiable,
            Some(start) => Part::Range {
                start,
                end: len - 1,
            },
        },
        (false, false) => match (num(a), num(b)) {
            (Some(start), Some(end)) if start <= end => {
                if start >= len {
                    Part::Unsatisfiable
                } else {
                    Part::Range {
                        start,
                        end: end.min(len - 1),
                    }
                }
            }
            _ => Part::Whole,
        },
        (true, true) => Part::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_in_http_format() {
        let at = |s| http_date(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(at(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(at(1_796_230_061), "Wed, 02 Dec 2026 16:47:41 GMT");
    }

    #[test]
    fn ranges() {
        let r = |s, e| Part::Range { start: s, end: e };
        assert_eq!(part(None, 10), Part::Whole);
        assert_eq!(part(Some("bytes=0-4"), 10), r(0, 4));
        assert_eq!(part(Some("bytes=2-"), 10), r(2, 9));
        assert_eq!(part(Some("bytes=-3"), 10), r(7, 9));
        assert_eq!(part(Some("bytes=-30"), 10), r(0, 9));
        assert_eq!(part(Some("bytes=5-100"), 10), r(5, 9));
        assert_eq!(part(Some("bytes=9-9"), 10), r(9, 9));
        assert_eq!(part(Some("bytes=10-"), 10), Part::Unsatisfiable);
        assert_eq!(part(Some("bytes=10-20"), 10), Part::Unsatisfiable);
        assert_eq!(part(Some("bytes=-0"), 10), Part::Unsatisfiable);
        assert_eq!(part(Some("bytes=0-0"), 0), Part::Unsatisfiable);
        assert_eq!(part(Some("bytes=-1"), 0), Part::Unsatisfiable);
        // Ignored: malformed, reversed, several ranges, another unit.
        for h in [
            "bytes=5-2",
            "bytes=a-b",
            "bytes=-",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=+1-2",
        ] {
            assert_eq!(part(Some(h), 10), Part::Whole, "{h}");
        }
    }
}
