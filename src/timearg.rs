//! `-timestamp` as people write it: every RFC 3339 form (`Z`, `z`, `+02:00`, `-05:00`, a space
//! or `t` for the `T`, any number of fractional digits). A time without a zone is refused unless
//! the caller says to read it in the local zone (`-timestamp-local`): guessing UTC restored a
//! state newer than the user asked for under another `TZ`.

/// Why a timestamp was refused; rendered as the tail of a one-line error.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("not an RFC 3339 time (e.g. 2026-12-02T08:22:31+02:00 or 2026-12-02T06:22:31Z)")]
    Malformed,
    #[error("out of range")]
    OutOfRange,
    #[error(
        "no zone: add Z (UTC) or an offset such as +02:00, or pass -timestamp-local to read it in the local zone"
    )]
    NoZone,
    #[error("the local zone cannot place this time (it falls in a clock change)")]
    LocalAmbiguous,
    #[cfg_attr(not(unix), allow(dead_code))]
    #[error(
        "the local zone TZ={0:?} is unknown (no such zone file): set TZ to a zone such as Europe/Berlin, or give the time an offset"
    )]
    UnknownZone(String),
}

/// Milliseconds since the Unix epoch of `s`; without a zone only when `local`.
pub fn parse_millis(s: &str, local: bool) -> Result<i64, TimeError> {
    let b = s.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Result<i64, TimeError> {
        let d = b.get(r).ok_or(TimeError::Malformed)?;
        if d.is_empty() || !d.iter().all(u8::is_ascii_digit) {
            return Err(TimeError::Malformed);
        }
        Ok(d.iter().fold(0i64, |n, c| n * 10 + i64::from(c - b'0')))
    };
    let sep = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if b.len() < 19 || !sep(4, b"-") || !sep(7, b"-") || !sep(10, b"Tt ") {
        return Err(TimeError::Malformed);
    }
    if !sep(13, b":") || !sep(16, b":") {
        return Err(TimeError::Malformed);
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return Err(TimeError::Malformed);
        }
        let frac = &b[start..i];
        for k in 0..3 {
            millis = millis * 10 + frac.get(k).map_or(0, |c| i64::from(c - b'0'));
        }
    }
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60
    {
        return Err(TimeError::OutOfRange);
    }
    // A leap second reads as the last millisecond of its minute.
    let (sec, millis) = if sec == 60 { (59, 999) } else { (sec, millis) };
    let civil = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec;
    let offset = match &b[i..] {
        [] => {
            if !local {
                return Err(TimeError::NoZone);
            }
            return local_to_utc(y, mo, d, h, mi, sec).map(|t| t * 1000 + millis);
        }
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), rest @ ..] if rest.len() == 5 && rest[2] == b':' => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            if oh > 23 || om > 59 {
                return Err(TimeError::OutOfRange);
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'-' { -o } else { o }
        }
        _ => return Err(TimeError::Malformed),
    };
    Ok((civil - offset) * 1000 + millis)
}

/// The instant in UTC with milliseconds, as the answer names it.
pub fn format_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// Seconds since the epoch of a wall-clock time in the process's local zone (`TZ`), through
/// the C library, which knows the zone rules.
fn local_to_utc(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> Result<i64, TimeError> {
    known_zone()?;
    // Read as standard time and as summer time: a wall-clock time both place (the hour a
    // clock goes back repeats) names two instants, and guessing one could restore a state an
    // hour off; one that neither places falls in the hour skipped.
    let placed: Vec<i64> = [0, 1]
        .into_iter()
        .filter_map(|dst| mktime_as(y, mo, d, h, mi, s, dst).transpose())
        .collect::<Result<_, _>>()?;
    match placed.as_slice() {
        [t] => Ok(*t),
        [a, b] if a == b => Ok(*a),
        _ => Err(TimeError::LocalAmbiguous),
    }
}

/// A `TZ` that names no zone file makes the C library read times as UTC without a word: a
/// timestamp restore would then pick a state hours off. POSIX rule strings (`EST5EDT`,
/// `UTC0`: they hold a digit) are the library's own and pass.
fn known_zone() -> Result<(), TimeError> {
    #[cfg(unix)]
    if let Some(tz) = std::env::var_os("TZ").and_then(|v| v.into_string().ok()) {
        let name = tz.strip_prefix(':').unwrap_or(&tz);
        if name.is_empty() || name.bytes().any(|c| c.is_ascii_digit()) {
            return Ok(());
        }
        let dir = std::env::var_os("TZDIR").unwrap_or_else(|| "/usr/share/zoneinfo".into());
        let file = std::path::Path::new(&dir).join(name);
        if !file.is_file() {
            return Err(TimeError::UnknownZone(tz));
        }
    }
    Ok(())
}

/// The instant of a wall-clock time read with `tm_isdst = dst`; `None` when the library
/// moved it (that reading does not hold at that date).
fn mktime_as(
    y: i64,
    mo: i64,
    d: i64,
    h: i64,
    mi: i64,
    s: i64,
    dst: i32,
) -> Result<Option<i64>, TimeError> {
    let conv = |v: i64| i32::try_from(v).map_err(|_| TimeError::OutOfRange);
    // SAFETY: libc::tm is plain integers (and, on glibc, a zone-name pointer that may be null):
    // all zeroes is a valid value of it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = conv(y - 1900)?;
    tm.tm_mon = conv(mo - 1)?;
    tm.tm_mday = conv(d)?;
    tm.tm_hour = conv(h)?;
    tm.tm_min = conv(mi)?;
    tm.tm_sec = conv(s)?;
    tm.tm_isdst = dst;
    // SAFETY: `tm` is a valid, exclusively borrowed struct for the call, which reads and
    // normalises it. mktime also reads TZ from the environment; memsync never changes its
    // environment (no set_var anywhere), so no other thread can be writing it meanwhile.
    // (rustix has no mktime: zone rules are the C library's.)
    #[cfg(unix)]
    let t = unsafe { libc::mktime(&mut tm) };
    // The C runtime's 64-bit mktime (`TZ`, else the system's zone).
    #[cfg(windows)]
    let t = {
        unsafe extern "C" {
            fn _mktime64(tm: *mut libc::tm) -> i64;
        }
        // SAFETY: as mktime above: `tm` is valid and exclusively borrowed for the call.
        unsafe { _mktime64(&mut tm) }
    };
    if t == -1 {
        return Err(TimeError::LocalAmbiguous);
    }
    // mktime moves a time that this reading does not place (inside a spring-forward gap, or
    // summer time asked of a winter date).
    if i64::from(tm.tm_hour) != h || i64::from(tm.tm_min) != mi || tm.tm_isdst != dst {
        return Ok(None);
    }
    Ok(Some(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_796_192_551_000; // 2026-12-02T06:22:31Z

    #[test]
    fn every_rfc3339_form_names_the_same_instant() {
        for s in [
            "2026-12-02T06:22:31Z",
            "2026-12-02t06:22:31z",
            "2026-12-02 06:22:31Z",
            "2026-12-02T08:22:31+02:00",
            "2026-12-02T01:22:31-05:00",
            "2026-12-02T06:22:31+00:00",
            "2026-12-02T06:22:31.000Z",
            "2026-12-02T11:52:31+05:30",
        ] {
            assert_eq!(parse_millis(s, false), Ok(T), "{s}");
        }
        assert_eq!(parse_millis("2026-12-02T06:22:31.5Z", false), Ok(T + 500));
        assert_eq!(
            parse_millis("2026-12-02T06:22:31.123456789Z", false),
            Ok(T + 123)
        );
        assert_eq!(format_utc(T + 7), "2026-12-02T06:22:31.007Z");
    }

    #[test]
    fn no_zone_is_refused_unless_local() {
        assert_eq!(
            parse_millis("2026-12-02T06:22:31", false),
            Err(TimeError::NoZone)
        );
        // The local zone is TZ, read by the C library. Setting it here would race with other
        // test threads' C code reading the environment (SQLite does), so this test runs itself
        // again in a child process that has TZ=UTC from the start.
        if std::env::var_os("MEMSYNC_TEST_TZ_CHILD").is_some() {
            assert_eq!(parse_millis("2026-12-02T06:22:31", true), Ok(T));
            return;
        }
        let name = "timearg::tests::no_zone_is_refused_unless_local";
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--test-threads=1"])
            .env("TZ", "UTC")
            .env("MEMSYNC_TEST_TZ_CHILD", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("1 passed"), "{text}");
    }

    #[test]
    fn nonsense_is_refused() {
        for s in [
            "",
            "yesterday",
            "2026-13-02T06:22:31Z",
            "2026-02-30T06:22:31Z",
            "2026-12-02T24:00:00Z",
            "2026-12-02T06:22:31+2:00",
            "2026-12-02T06:22:31Z junk",
            "2026-12-02T06:22:31.Z",
        ] {
            assert!(parse_millis(s, false).is_err(), "{s}");
        }
    }

    /// In a zone with summer time, the hour a clock goes back repeats (two instants) and the
    /// hour it skips does not exist: both are refused, not guessed; an unknown `TZ` is refused
    /// rather than read as UTC. Run in child processes with `TZ` set from the start (see
    /// `no_zone_is_refused_unless_local`).
    #[cfg(unix)]
    #[test]
    fn local_times_a_zone_cannot_place_are_refused() {
        match std::env::var("MEMSYNC_TEST_TZ_CASE").as_deref() {
            Ok("berlin") => {
                assert_eq!(parse_millis("2026-12-02T07:22:31", true), Ok(T));
                assert_eq!(
                    parse_millis("2026-07-01T14:00:00", true),
                    Ok(1_782_907_200_000)
                );
                for s in ["2026-10-25T02:30:00", "2026-03-29T02:30:00"] {
                    assert_eq!(parse_millis(s, true), Err(TimeError::LocalAmbiguous), "{s}");
                }
                return;
            }
            Ok("bogus") => {
                assert!(matches!(
                    parse_millis("2026-12-02T07:22:31", true),
                    Err(TimeError::UnknownZone(_))
                ));
                return;
            }
            _ => {}
        }
        let name = "timearg::tests::local_times_a_zone_cannot_place_are_refused";
        for (tz, case) in [("Europe/Berlin", "berlin"), ("Nowhere/Bogus", "bogus")] {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", name, "--test-threads=1"])
                .env("TZ", tz)
                .env("MEMSYNC_TEST_TZ_CASE", case)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && text.contains("1 passed"),
                "{tz}: {text}"
            );
        }
    }
}
