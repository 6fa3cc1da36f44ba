//! The spool's pruning: files every replica confirmed go, and while a replica is behind what
//! it lacks is kept up to the database's `spool-budget`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use replica_formats::TxId;
use tokio::sync::watch;

use super::spool::Spool;
use crate::stats::DbStats;

/// How often the spool's size is checked against its budget while a replica is behind.
const BUDGET_CHECK: Duration = Duration::from_secs(2);

/// Deletes spooled files once every replica confirmed them. While a replica is behind (cannot
/// be reached), the spool keeps what it lacks up to `budget` bytes; past that, it keeps only
/// what the replicas that are up need, and a replica coming back finds no way from its
/// position to the spool's and gets a fresh snapshot (the shipper asks for one).
pub(super) async fn prune_spool(
    spool: Spool,
    mut confirmed: Vec<watch::Receiver<Option<TxId>>>,
    map_saved: watch::Receiver<Option<TxId>>,
    mut position: watch::Receiver<Option<TxId>>,
    top: u8,
    budget: u64,
    stats: Arc<DbStats>,
) {
    let mut over = false;
    let mut position_open = true;
    let mut tick = tokio::time::interval(BUDGET_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let positions: Vec<Option<TxId>> = confirmed.iter().map(|c| *c.borrow()).collect();
        // Only while a replica lacks the newest position is the spool weighed (no I/O when
        // every replica keeps up).
        let lagging = positions.iter().any(|p| *p < *position.borrow());
        let s = spool.clone();
        let keep_after = *map_saved.borrow();
        let stats = stats.clone();
        let min = positions.iter().copied().min().flatten();
        // Decided in memory (the spool is listed once): most confirmations delete nothing,
        // and then no thread is woken for them.
        let victims = match min {
            Some(t) => spool.prunable(t, keep_after, top),
            None => Ok(Vec::new()),
        };
        let nothing_to_do = matches!(&victims, Ok(v) if v.is_empty()) && !lagging && !over;
        let res = if nothing_to_do {
            Ok(Ok(None))
        } else {
            tokio::task::spawn_blocking(move || {
                let max = positions.iter().copied().max().flatten();
                stats.spool_shrunk(s.remove(&victims?)?.1);
                if !lagging {
                    return Ok::<_, std::io::Error>(None);
                }
                let keys = s.keys()?;
                // Measured anyway: the tracked figure starts again from it.
                stats.spool_bytes.store(s.bytes(&keys), Ordering::Relaxed);
                // The budget is for what the replicas behind lack, not for what the spool keeps
                // anyway (files the next merge reads): counting those, a small budget was
                // "reached" whenever a replica was a file behind, as it is for a moment after
                // every sync, and the warning came and went with each one.
                let held = lacking_bytes(&s, &keys, min);
                if held <= budget {
                    return Ok(Some((false, held)));
                }
                // The replicas that are up have what they confirmed; the ones behind lose what they
                // lack: the newest snapshot past them and what follows it if that fits, or all of it
                // (they get a snapshot when they are back).
                let newest = keys.iter().map(|k| k.max_txid()).max();
                let snap = keys
                    .iter()
                    .filter(|k| k.is_snapshot() && Some(k.max_txid()) > min)
                    .max();
                let from_snap = snap.map(|sn| {
                    let after: Vec<_> = keys.iter().filter(|k| k >= &sn).copied().collect();
                    (sn.max_txid(), s.bytes(&after))
                });
                let upto = match from_snap {
                    Some((t, bytes)) if bytes <= budget => TxId::new(t.get() - 1),
                    _ => max.max(newest),
                };
                if let Some(upto) = upto.max(min) {
                    stats.spool_shrunk(s.prune(upto, keep_after, top)?.1);
                }
                Ok(Some((true, held)))
            })
            .await
        };
        match res {
            Ok(Ok(Some((true, held)))) if !over => {
                over = true;
                tracing::warn!(
                    "spool {}: {} KiB kept for replicas that are behind reached its budget of {} KiB (`spool-budget`); dropping what they lack past the newest snapshot that fits: each catches up from what is left when it is back, or gets a fresh snapshot",
                    spool.dir().display(),
                    held >> 10,
                    budget >> 10
                );
            }
            Ok(Ok(None)) if over => {
                over = false;
                tracing::info!("spool {}: every replica caught up", spool.dir().display());
            }
            Ok(Err(e)) => tracing::warn!("spool {}: pruning: {e}", spool.dir().display()),
            _ => {}
        }
        let mut lagging = lagging;
        loop {
            // A replica whose shipper ended (given up on for this run, or stopping) keeps its
            // last position, which holds the spool back only up to the budget; the pruner goes
            // on for the others, and ends with the last of them.
            let open: Vec<_> = confirmed
                .iter_mut()
                .filter(|c| c.has_changed().is_ok())
                .collect();
            if open.is_empty() {
                return;
            }
            let changed =
                futures::future::select_all(open.into_iter().map(|c| Box::pin(c.changed())));
            let captured = tokio::select! {
                _ = changed => false,
                // The budget is checked on a timer too: with every replica down nothing
                // confirms.
                _ = tick.tick(), if lagging || over => false,
                r = position.changed(), if position_open => {
                    position_open = r.is_ok();
                    true
                }
            };
            if !captured {
                break;
            }
            // A new capture while the replicas had everything: if none confirms it, the timer
            // is what weighs the spool (a replica that went down after catching up let it grow
            // without bound, unweighed, until it answered again).
            let now = *position.borrow();
            if !lagging && confirmed.iter().any(|c| *c.borrow() < now) {
                lagging = true;
                tick.reset();
            }
        }
    }
}

/// The bytes of the spooled files some replica lacks (past `min`, the lowest confirmed
/// position): what the budget weighs.
fn lacking_bytes(spool: &Spool, keys: &[replica_formats::ObjectKey], min: Option<TxId>) -> u64 {
    let lacking: Vec<_> = keys
        .iter()
        .filter(|k| Some(k.max_txid()) > min)
        .copied()
        .collect();
    spool.bytes(&lacking)
}

#[cfg(test)]
mod tests {
    use super::*;
    use replica_formats::{ObjectKey, Timestamp};

    /// The budget weighs what the replicas behind lack, not what the spool keeps anyway: a
    /// replica one file behind (as after every sync, for a moment) next to a big snapshot the
    /// spool keeps is far below a small budget (the warning came and went with every sync).
    #[test]
    fn the_budget_is_for_what_replicas_lack() {
        let d = tempfile::tempdir().unwrap();
        let spool = Spool::open(d.path()).unwrap();
        let tx = |n| TxId::new(n).unwrap();
        let snap = ObjectKey::Snapshot {
            txid: tx(1),
            ts: Timestamp::from_millis(1),
        };
        let seg = |n: u64| ObjectKey::Segment {
            level: replica_formats::Level::ZERO,
            min: tx(n),
            max: tx(n),
            ts: Timestamp::from_millis(n as i64),
        };
        spool
            .write(&snap, |w| std::io::Write::write_all(w, &[0u8; 4096]))
            .unwrap();
        for n in 2..=3 {
            spool
                .write(&seg(n), |w| std::io::Write::write_all(w, b"pages"))
                .unwrap();
        }
        let keys = spool.keys().unwrap();
        let all = spool.bytes(&keys);
        let one = spool.bytes(&[seg(3)]);
        assert!(all > 4096 && one < 100);
        assert_eq!(lacking_bytes(&spool, &keys, Some(tx(2))), one);
        assert_eq!(lacking_bytes(&spool, &keys, Some(tx(3))), 0);
        assert_eq!(
            lacking_bytes(&spool, &keys, None),
            all,
            "no position yet: all of it"
        );
    }

    /// One replica's shipper ending (given up on for this run) does not stop the pruning for
    /// the others: the spool would grow without bound.
    #[tokio::test(flavor = "current_thread")]
    async fn pruning_goes_on_when_one_shipper_ends() {
        let d = tempfile::tempdir().unwrap();
        let spool = Spool::open(d.path()).unwrap();
        let tx = |n| TxId::new(n).unwrap();
        let snap = |n: u64| ObjectKey::Snapshot {
            txid: tx(n),
            ts: Timestamp::from_millis(n as i64),
        };
        for n in 1..=3 {
            spool
                .write(&snap(n), |w| std::io::Write::write_all(w, b"s"))
                .unwrap();
        }
        let (a, a_rx) = watch::channel(None);
        let (b, b_rx) = watch::channel(Some(tx(3)));
        let (_saved, saved_rx) = watch::channel(None);
        let (_pos, pos_rx) = watch::channel(Some(tx(3)));
        let task = tokio::spawn(prune_spool(
            spool.clone(),
            vec![a_rx, b_rx],
            saved_rx,
            pos_rx,
            1,
            u64::MAX,
            Arc::default(),
        ));
        tokio::task::yield_now().await;
        drop(b);
        tokio::time::sleep(Duration::from_millis(50)).await;
        a.send_replace(Some(tx(3)));
        let gone = async {
            while spool.path(&snap(1)).exists() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        assert!(
            tokio::time::timeout(Duration::from_secs(10), gone)
                .await
                .is_ok(),
            "the snapshots every live replica has were pruned"
        );
        assert!(spool.path(&snap(3)).exists(), "the newest file stays");
        drop(a);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the pruner ends with the last shipper")
            .unwrap();
    }
}
