//! Which of several replicas a restore reads: the one holding the newest state the target
//! admits. They are listed at once; one that does not answer is skipped with a warning, so a
//! restore works while a backup server is down.

use futures::future::join_all;
use replica_formats::{Target, TxId, plan_restore};

use super::common::open_client;
use crate::config::ReplicaConfig;

/// The replicas that answered, ordered by the newest position each can restore to `target`
/// (empty ones last, in configured order), each ranking logged; and why each of the others
/// could not be listed (they are not asked again: every one of them was tried, with retries).
fn by_newest(
    reps: &[ReplicaConfig],
    rt: &tokio::runtime::Runtime,
    target: Target,
) -> (Vec<ReplicaConfig>, Vec<String>) {
    let newest = rt.block_on(join_all(reps.iter().map(|r| async move {
        let client = match open_client(r) {
            Ok(c) => c,
            // Never made: nothing there, which the restore says (or `-if-replica-exists`
            // takes for no backup), not a replica that did not answer.
            Err(super::error::CliError::MissingReplica(_)) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let keys = client.list().await.map_err(|e| e.to_string())?;
        Ok::<Option<TxId>, String>(plan_restore(&keys, target).ok().map(|p| p.txid))
    })));
    let mut ranked: Vec<(Option<TxId>, usize)> = Vec::new();
    let mut failed = Vec::new();
    for (i, (r, n)) in reps.iter().zip(newest).enumerate() {
        match n {
            Ok(Some(t)) => ranked.push((Some(t), i)),
            Ok(None) => {
                tracing::info!("replica {}: nothing restorable", r.name);
                ranked.push((None, i));
            }
            Err(e) => {
                tracing::warn!("{e}; restoring from another replica");
                failed.push(e);
            }
        }
    }
    // Newest first; equal positions keep the configured order.
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    if let Some((Some(t), i)) = ranked.first() {
        let answered = ranked.len();
        let of = match failed.len() {
            0 => format!("of {answered} replicas"),
            n => format!("of the {answered} replicas that answered ({n} did not)"),
        };
        tracing::info!(
            "restoring from replica {}: newest restorable position {t} {of}",
            reps[*i].name
        );
    }
    (
        ranked.into_iter().map(|(_, i)| reps[i].clone()).collect(),
        failed,
    )
}

/// With several replicas, those that answered, newest first ([`by_newest`]); an error naming
/// each when none did. One replica is taken as it is (its own errors say what failed).
pub(super) fn answering(
    reps: &[ReplicaConfig],
    rt: &tokio::runtime::Runtime,
    target: Target,
) -> Result<Vec<ReplicaConfig>, super::error::CliError> {
    if reps.len() < 2 {
        return Ok(reps.to_vec());
    }
    let (answered, failed) = by_newest(reps, rt, target);
    if answered.is_empty() {
        return Err(super::error::CliError::NoReplicaAnswered {
            count: failed.len(),
            why: failed.join("; "),
        });
    }
    Ok(answered)
}
