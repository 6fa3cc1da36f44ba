//! Timestamps as mcp-memory-service keeps them: seconds since the epoch as `f64`, and their ISO
//! form in its `*_iso` columns.

use std::time::Duration;

/// Seconds since the epoch, as the server stores timestamps.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Python's `datetime.utcfromtimestamp(ts).isoformat() + "Z"`, as the service writes `*_iso`.
pub fn iso(ts: f64) -> String {
    // Clamped to years 1970..9999 (a millisecond timestamp in a seconds column must not panic).
    let ts = if ts.is_finite() {
        ts.clamp(0.0, 253_402_300_799.0)
    } else {
        0.0
    };
    let d = Duration::from_secs_f64(ts);
    humantime::format_rfc3339_micros(std::time::UNIX_EPOCH + d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_matches_the_services_format() {
        assert_eq!(iso(1_764_070_331.109_924), "2025-11-25T11:32:11.109924Z");
    }
}
