//! `/health`: healthy when every replica of every database keeps up and the last memory-sync
//! round (when this process syncs) finished. A pure decision over one reading.
//!
//! A replica keeps up when it holds the database's newest position, or when it has lacked
//! something for no longer than its allowance, or answered a whole shipping pass within it:
//! the allowance is `max(3 × sync-interval, 10 s)`, so a replica waiting out its own interval
//! or one failed attempt is not reported, and one that is down while writes come in is. A
//! replica with nothing to ship is reported when its last attempt (an idle probe, every
//! 30 s) failed and it has not answered within its allowance.

use std::time::Duration;

use serde::Serialize;

use super::reading::{DbReading, ReplicaReading};

/// Shortest allowance of any replica.
const MIN_ALLOWANCE: Duration = Duration::from_secs(10);

/// How long a replica with something to ship may go without shipping it.
pub fn allowance(sync_interval: Duration) -> Duration {
    (sync_interval * 3).max(MIN_ALLOWANCE)
}

/// Why the process is not healthy: one database's replica, or the memory sync.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    pub reason: String,
}

/// The replica's problem, if it has one, at `now_ms`.
fn replica_problem(db: &DbReading, r: &ReplicaReading, now_ms: i64) -> Option<String> {
    if let Some(owner) = &r.taken_by {
        return Some(format!(
            "taken over by database {owner} (its lineage record replaced this one's); nothing more is shipped to it"
        ));
    }
    let allowed = allowance(r.sync_interval).as_millis() as i64;
    if r.caught_up(db.position) {
        let failing = r.last_err_ms > r.last_ok_ms && now_ms - r.last_ok_ms > allowed;
        return failing.then(|| {
            let answered = match r.last_ok_ms {
                0 => "not reached since start".to_owned(),
                t => format!("last answered {}s ago", (now_ms - t).max(0) / 1000),
            };
            format!(
                "failing with nothing new to ship (its probes, or uploads of merged files, fail: the log says why); {answered}; {} failed attempts",
                r.errors
            )
        });
    }
    // Behind since when, or answered since: whichever is newer bounds how long it has had
    // something to ship without shipping.
    let stale = now_ms - r.behind_since_ms.max(r.last_ok_ms);
    if r.behind_since_ms == 0 || stale <= allowed {
        return None;
    }
    let answered = match r.last_ok_ms {
        0 => "not reached since start".to_owned(),
        t => format!("last answered {}s ago", (now_ms - t).max(0) / 1000),
    };
    Some(format!(
        "{}s behind (allowed {}s); {answered}; {} failed attempts",
        r.lag_ms / 1000,
        allowed / 1000,
        r.errors
    ))
}

/// Every problem at `now_ms`; empty means healthy. `sync_failing` is why the last memory-sync
/// round failed, when this process syncs and it did.
pub fn judge(dbs: &[DbReading], sync_failing: Option<String>, now_ms: i64) -> Vec<Problem> {
    let mut out = Vec::new();
    for db in dbs {
        for r in &db.replicas {
            if let Some(reason) = replica_problem(db, r, now_ms) {
                out.push(Problem {
                    db: Some(db.db.clone()),
                    replica: Some(r.name.clone()),
                    reason,
                });
            }
        }
    }
    if let Some(why) = sync_failing {
        out.push(Problem {
            db: None,
            replica: None,
            reason: format!("the last memory sync round failed: {why}"),
        });
    }
    out
}

#[derive(Serialize)]
struct Healthy {
    status: &'static str,
    databases: usize,
    replicas: usize,
}

#[derive(Serialize)]
struct Unhealthy<'a> {
    status: &'static str,
    problems: &'a [Problem],
}

/// HTTP status and JSON body for `problems`.
pub fn answer(dbs: &[DbReading], problems: &[Problem]) -> (u16, String) {
    let body = if problems.is_empty() {
        serde_json::to_string(&Healthy {
            status: "ok",
            databases: dbs.len(),
            replicas: dbs.iter().map(|d| d.replicas.len()).sum(),
        })
    } else {
        serde_json::to_string(&Unhealthy {
            status: "unhealthy",
            problems,
        })
    };
    let code = if problems.is_empty() { 200 } else { 503 };
    (code, body.unwrap_or_default() + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(position: u64, since: i64, ok: i64, interval_s: u64) -> ReplicaReading {
        ReplicaReading {
            name: "r".into(),
            sync_interval: Duration::from_secs(interval_s),
            position,
            lag_ms: super::super::reading::lag_ms(10, position, since, 100_000),
            behind_since_ms: since,
            last_ok_ms: ok,
            last_err_ms: 0,
            uploads: 0,
            bytes: 0,
            errors: 3,
            taken_by: None,
        }
    }

    fn db(r: ReplicaReading) -> DbReading {
        DbReading {
            db: "/d.db".into(),
            position: 10,
            replicas: vec![r],
        }
    }

    #[test]
    fn the_allowance_is_three_intervals_and_at_least_ten_seconds() {
        assert_eq!(allowance(Duration::from_secs(1)), Duration::from_secs(10));
        assert_eq!(allowance(Duration::from_secs(20)), Duration::from_secs(60));
    }

    #[test]
    fn a_replica_is_reported_once_it_lacks_something_longer_than_its_allowance() {
        let now = 100_000;
        // (replica, healthy): the database is at position 10.
        let table = [
            // Caught up, whatever its last answer.
            (rep(10, 0, 0, 1), true),
            (rep(10, 1_000, 1_000, 1), true),
            // Behind for 5 s (allowance 10 s).
            (rep(9, 95_000, 0, 1), true),
            // Behind for 50 s, but answered 2 s ago: it is catching up.
            (rep(9, 50_000, 98_000, 1), true),
            // Behind for 50 s, answered 20 s ago.
            (rep(9, 50_000, 80_000, 1), false),
            // Never reached since start, 30 s ago.
            (rep(0, 70_000, 0, 1), false),
            // The same with a 20 s interval: allowance 60 s.
            (rep(0, 70_000, 0, 20), true),
            // Behind, but the shipper saw nothing missing (a capture it has not woken for).
            (rep(9, 0, 0, 1), true),
        ];
        for (i, (r, healthy)) in table.into_iter().enumerate() {
            let problems = judge(&[db(r)], None, now);
            assert_eq!(problems.is_empty(), healthy, "case {i}: {problems:?}");
        }
    }

    #[test]
    fn a_replica_taken_over_is_a_problem_even_when_caught_up() {
        let r = ReplicaReading {
            taken_by: Some("host:/other.db (lineage 1)".into()),
            ..rep(10, 0, 99_000, 1)
        };
        let problems = judge(&[db(r)], None, 100_000);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0]
                .reason
                .starts_with("taken over by database host:/other.db"),
            "{}",
            problems[0].reason
        );
    }

    #[test]
    fn a_caught_up_replica_is_reported_when_its_last_attempt_failed_past_its_allowance() {
        let now = 100_000;
        let r = |ok, err| ReplicaReading {
            last_err_ms: err,
            ..rep(10, 0, ok, 1)
        };
        // (replica, healthy): allowance 10 s.
        let table = [
            // Failed 1 s ago, answered 5 s ago: within its allowance.
            (r(95_000, 99_000), true),
            // Failed 1 s ago, answered 40 s ago.
            (r(60_000, 99_000), false),
            // Answered after its last failure.
            (r(99_500, 60_000), true),
            // Never answered, failed.
            (r(0, 99_000), false),
        ];
        for (i, (r, healthy)) in table.into_iter().enumerate() {
            let problems = judge(&[db(r)], None, now);
            assert_eq!(problems.is_empty(), healthy, "case {i}: {problems:?}");
        }
        let problems = judge(&[db(r(60_000, 99_000))], None, now);
        assert_eq!(
            problems[0].reason,
            "failing with nothing new to ship (its probes, or uploads of merged files, fail: the log says why); last answered 40s ago; 3 failed attempts"
        );
    }

    #[test]
    fn answers_name_the_replica_or_the_sync() {
        let now = 100_000;
        let dbs = [db(rep(0, 70_000, 0, 1))];
        let problems = judge(&dbs, None, now);
        assert_eq!(
            problems[0].reason,
            "30s behind (allowed 10s); not reached since start; 3 failed attempts"
        );
        let (code, body) = answer(&dbs, &problems);
        assert_eq!(code, 503);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "unhealthy");
        assert_eq!(v["problems"][0]["db"], "/d.db");
        assert_eq!(v["problems"][0]["replica"], "r");

        let dbs = [db(rep(10, 0, 0, 1))];
        let problems = judge(&dbs, Some("server unreachable".into()), now);
        let (code, body) = answer(&dbs, &problems);
        assert_eq!(code, 503);
        assert!(
            body.contains("the last memory sync round failed: server unreachable"),
            "{body}"
        );
        assert!(!body.contains("\"db\""), "{body}");

        let (code, body) = answer(&dbs, &judge(&dbs, None, now));
        assert_eq!(code, 200);
        assert_eq!(body, "{\"status\":\"ok\",\"databases\":1,\"replicas\":1}\n");
    }
}
