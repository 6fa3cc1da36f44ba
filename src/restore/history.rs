//! What `memsync wal` / `snapshots` say about a replica's restore points: the restorable range
//! and, per stretch of history, how far apart the points are, so a user knows before a
//! disaster what they can get back.

use replica_formats::{ObjectKey, RestorePoints, Timestamp};
use serde_json::{Value, json};

/// RFC 3339 UTC with milliseconds.
pub fn fmt_ts(ts: Timestamp) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ts.get().max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// The granularity of a stretch in words.
fn granularity(level: u8, max_gap_ms: i64) -> String {
    if level == 0 {
        "every sync".to_owned()
    } else {
        format!("points at most {:.1} s apart", max_gap_ms as f64 / 1000.0)
    }
}

/// What a replica holds instead, for a restore asking for a state older than all of it
/// (`; restorable: T1 .. T2 (positions ...)`); empty for any other failure.
pub fn held_instead(why: &replica_formats::PlanError, keys: &[ObjectKey]) -> String {
    match (why, replica_formats::restore_points(keys)) {
        (replica_formats::PlanError::NoSnapshot { .. }, Some(p)) => format!(
            "; restorable: {} .. {} (positions {} .. {})",
            fmt_ts(p.first.ts),
            fmt_ts(p.last.ts),
            p.first.txid,
            p.last.txid
        ),
        _ => String::new(),
    }
}

/// Lines describing the restore points of `keys` (one replica).
pub fn text(keys: &[ObjectKey]) -> Vec<String> {
    let Some(p) = replica_formats::restore_points(keys) else {
        return vec!["  nothing restorable (no snapshot)".to_owned()];
    };
    let mut out = vec![format!(
        "  restorable: {} .. {} (positions {} .. {}, {} restore points)",
        fmt_ts(p.first.ts),
        fmt_ts(p.last.ts),
        p.first.txid,
        p.last.txid,
        p.count
    )];
    if let Some(next) = replica_formats::hole_after(keys, p.last.txid) {
        out.push(format!(
            "  gap: files from position {next} on are held, but none continues position {}: a latest restore fails, and so does a -timestamp restore at or after {} (the missing files may hold commits of that very millisecond); -txid {} restores the last point before the gap",
            p.last.txid,
            fmt_ts(p.last.ts),
            p.last.txid
        ));
    }
    for (before, after) in &p.gaps {
        out.push(format!(
            "  gap: nothing held between position {} ({}) and the snapshot at {} ({}): a -timestamp inside it fails; -txid {} restores the last point before it",
            before.txid,
            fmt_ts(before.ts),
            after.txid,
            fmt_ts(after.ts),
            before.txid
        ));
    }
    for s in &p.stretches {
        let level = match s.level {
            0 => String::new(),
            l => format!("level {l}, "),
        };
        out.push(format!(
            "    {} .. {}  {} ({level}{} points)",
            fmt_ts(s.from.ts),
            fmt_ts(s.to.ts),
            granularity(s.level, s.max_gap_ms),
            s.points
        ));
    }
    out
}

/// The same as JSON (`null` when nothing is restorable).
pub fn json(keys: &[ObjectKey]) -> Value {
    let Some(RestorePoints {
        first,
        last,
        count,
        stretches,
        gaps,
    }) = replica_formats::restore_points(keys)
    else {
        return Value::Null;
    };
    json!({
        "from": fmt_ts(first.ts),
        "to": fmt_ts(last.ts),
        "first_txid": first.txid.to_string(),
        "last_txid": last.txid.to_string(),
        "points": count,
        "gap_resumes_at": replica_formats::hole_after(keys, last.txid).map(|t| t.to_string()),
        "gaps": gaps.iter().map(|(a, b)| json!({
            "after_txid": a.txid.to_string(),
            "after": fmt_ts(a.ts),
            "resumes_txid": b.txid.to_string(),
            "resumes": fmt_ts(b.ts),
        })).collect::<Vec<_>>(),
        "stretches": stretches.iter().map(|s| json!({
            "from": fmt_ts(s.from.ts),
            "to": fmt_ts(s.to.ts),
            "from_txid": s.from.txid.to_string(),
            "to_txid": s.to.txid.to_string(),
            "level": s.level,
            "every_sync": s.level == 0,
            "max_gap_seconds": s.max_gap_ms as f64 / 1000.0,
            "granularity": granularity(s.level, s.max_gap_ms),
            "points": s.points,
        })).collect::<Vec<_>>(),
    })
}
