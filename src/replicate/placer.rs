//! Level-0 files placed on file replicas right where they are captured, on the pool worker
//! that wrote them to the spool, while the replica's shipper is caught up.
//!
//! Shipping each commit through the shipper cost, per file, a wake of the runtime, a hand-off
//! to a blocking thread for the link and its fsyncs and a hand-off back: about four context
//! switches, a sixth of memsync's CPU at 500 databases taking a commit a second each
//! (`docs/measurements.md`). Placed here, the file costs a hand-off to the thread that makes
//! it durable, and the shipper sleeps until there is something else to do (a compacted file,
//! a snapshot, a failure).
//!
//! The file itself is made durable and linked on a shared thread, in a group with other
//! databases' files (`replica/grouped.rs`): the worker goes back to capturing at once, and the
//! replica's position moves only once the file is durably there.
//!
//! The shipper stays in charge: it opens placement only after a pass that left its replica
//! caught up, closes it at the start of each pass (waiting for placements in flight and taking
//! over what was placed meanwhile), and a placement only ever continues the replica's chain
//! exactly (its first position right after the newest placed). A failed placement closes it,
//! leaves the position where the last durable one put it, and wakes the shipper, which
//! retries, backs off and reports as it always does.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use replica_formats::{ObjectKey, TxId};
use tokio::sync::{Notify, watch};

use crate::replica::{ReplicaClient, ReplicaError};
use crate::stats::ShipStats;

/// One file replica's placement, shared by its shipper and the database's sink.
pub struct Inline {
    client: ReplicaClient,
    state: Mutex<State>,
    stats: Arc<ShipStats>,
    /// The replica's confirmed position, updated without waking the spool's pruner (which
    /// only has work once compaction moved files; the shipper tells it then).
    confirmed: watch::Sender<Option<TxId>>,
    /// No placement is in flight any more (a shipper waits for this to take over).
    settled: Notify,
    /// A placement failed: the shipper has a file to ship.
    failed: Notify,
}

#[derive(Default)]
struct State {
    /// The shipper lets captures be placed.
    open: bool,
    /// The newest position placed, durable or in flight: the next placement continues it.
    head: Option<TxId>,
    /// The replica's newest durable position, as the shipper left it plus what was placed since.
    durable: Option<TxId>,
    /// Placements handed to the shared thread and not yet reported.
    in_flight: usize,
    /// A placement failed since the shipper last took over: the ones after it are not
    /// counted (the chain has a gap until the shipper fills it).
    broken: bool,
    /// Durably placed since the shipper last took over.
    placed: Vec<ObjectKey>,
    /// The replica refuses links from the spool (another file system, or a permission the
    /// spool's files lack): every file goes through the shipper, which copies.
    unlinkable: bool,
}

impl Inline {
    /// Placement on `client` (a file replica), closed until its shipper opens it.
    pub fn new(
        client: ReplicaClient,
        stats: Arc<ShipStats>,
        confirmed: watch::Sender<Option<TxId>>,
    ) -> Arc<Self> {
        Arc::new(Inline {
            client,
            state: Mutex::default(),
            stats,
            confirmed,
            settled: Notify::new(),
            failed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The shipper takes over: placement closes, and once no placement is in flight it learns
    /// what was durably placed since it last looked and the replica's newest position.
    pub async fn take_over(&self) -> (Vec<ObjectKey>, Option<TxId>) {
        loop {
            let settled = self.settled.notified();
            let mut settled = std::pin::pin!(settled);
            settled.as_mut().enable();
            {
                let mut st = self.lock();
                st.open = false;
                if st.in_flight == 0 {
                    st.broken = false;
                    st.head = st.durable;
                    return (std::mem::take(&mut st.placed), st.durable);
                }
            }
            settled.await;
        }
    }

    /// The shipper is caught up at `remote`: captures continuing from it may be placed.
    pub fn open_at(&self, remote: Option<TxId>) {
        let mut st = self.lock();
        st.open = !st.unlinkable;
        st.head = remote;
        st.durable = remote;
    }

    /// Returns once a placement failed since the last call (at once if one did meanwhile).
    pub async fn failed(&self) {
        self.failed.notified().await;
    }

    /// [`Self::failed`] of a replica's placement; never for a replica without one.
    pub async fn failed_in(inline: Option<&Inline>) {
        match inline {
            Some(i) => i.failed().await,
            None => std::future::pending().await,
        }
    }

    /// Places the spooled file `src` under `key` if placement is open and `key` continues the
    /// replica's chain; true if it was handed over for placing. If that fails later, placement
    /// closes and the shipper is woken to ship the file.
    fn place(self: &Arc<Self>, key: &ObjectKey, src: &Path, size: u64) -> bool {
        {
            let mut st = self.lock();
            let follows = st.head.map_or(0, TxId::get) + 1 == key.min_txid().get();
            // A big file would hold up every other database's behind it: the shipper's.
            if !st.open || !follows || size > crate::replica::GROUP_MAX {
                return false;
            }
            st.head = Some(key.max_txid());
            st.in_flight += 1;
        }
        // Outside the lock: `done` may run right here. A database's captures are placed one
        // at a time, so they still reach the shared thread in order.
        let (me, k) = (self.clone(), *key);
        let handed = self
            .client
            .place_grouped(key, src, Box::new(move |r| me.finish(k, size, r)));
        if !handed {
            // Not a file replica after all: the shipper takes it.
            let mut st = self.lock();
            st.in_flight -= 1;
            st.head = st.durable;
            st.open = false;
            if st.in_flight == 0 {
                self.settled.notify_waiters();
            }
        }
        handed
    }

    /// A placement's outcome, on the shared thread.
    fn finish(&self, key: ObjectKey, size: u64, r: Result<(), ReplicaError>) {
        let r = r.and_then(|()| {
            crate::fault::point("place").map_err(|source| ReplicaError::Local {
                replica: self.client.name().to_owned(),
                path: key.path(),
                source,
            })
        });
        let mut st = self.lock();
        st.in_flight -= 1;
        match r {
            Ok(()) if !st.broken => {
                let pos = key.max_txid();
                st.durable = Some(pos);
                st.placed.push(key);
                let s = &self.stats;
                s.uploads.fetch_add(1, Ordering::Relaxed);
                s.bytes.fetch_add(size, Ordering::Relaxed);
                s.position.store(pos.get(), Ordering::Relaxed);
                s.set_behind_since(None);
                s.answered(crate::stats::unix_ms());
                self.confirmed.send_if_modified(|c| {
                    *c = Some(pos);
                    false
                });
            }
            // After a failed one: on the replica, not counted; the shipper finds it there.
            Ok(()) => {}
            Err(e) => {
                if let ReplicaError::Write { source, .. } = &e
                    && matches!(
                        source.kind(),
                        std::io::ErrorKind::CrossesDevices | std::io::ErrorKind::PermissionDenied
                    )
                {
                    st.unlinkable = true;
                }
                tracing::debug!("{key}: placement failed, left to the shipper: {e}");
                st.broken = true;
                st.open = false;
                self.failed.notify_one();
            }
        }
        if st.in_flight == 0 {
            self.settled.notify_waiters();
        }
    }
}

/// A database's placements: one per file replica whose shipper would ship a file as soon as
/// it is captured.
#[derive(Default)]
pub struct Placer {
    targets: Vec<Arc<Inline>>,
    /// Replicas placement does not cover (object stores, longer sync intervals).
    others: usize,
}

impl Placer {
    /// Placement on `targets`, beside `others` replicas shipped the usual way.
    pub fn new(targets: Vec<Arc<Inline>>, others: usize) -> Self {
        Placer { targets, others }
    }

    /// Places a level-0 file on every replica that takes it; true if every replica of the
    /// database is getting it that way (no shipper needs waking for it; one whose placement
    /// fails is woken then).
    pub fn place(&self, key: &ObjectKey, src: &Path, size: u64) -> bool {
        if self.targets.is_empty() || key.is_snapshot() || key.level().is_none_or(|l| l.get() > 0) {
            return false;
        }
        // Each target is tried: one replica refusing does not keep the others waiting.
        let placed = self
            .targets
            .iter()
            .filter(|t| t.place(key, src, size))
            .count();
        placed == self.targets.len() && self.others == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use replica_formats::Timestamp;

    fn seg(min: u64, max: u64) -> ObjectKey {
        ObjectKey::Segment {
            level: replica_formats::Level::new(0).unwrap(),
            min: TxId::new(min).unwrap(),
            max: TxId::new(max).unwrap(),
            ts: Timestamp::from_millis(1),
        }
    }

    /// Placement waits for the shipper, only continues the chain, and hands over what it placed
    /// once it is durably there.
    #[tokio::test(flavor = "current_thread")]
    async fn places_only_what_continues_the_chain_while_open() {
        let d = tempfile::tempdir().unwrap();
        let spool = d.path().join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        let client = ReplicaClient::file("r", &d.path().join("replica"), true).unwrap();
        let (tx, rx) = watch::channel(None);
        let inline = Inline::new(client, Arc::default(), tx);
        let placer = Placer::new(vec![inline.clone()], 0);
        let file = |k: &ObjectKey| {
            let p = spool.join(k.path().replace('/', "_"));
            std::fs::write(&p, b"x").unwrap();
            p
        };
        let tx = |n| Some(TxId::new(n).unwrap());
        let (a, b, c) = (seg(1, 2), seg(3, 3), seg(5, 6));
        assert!(
            !placer.place(&a, &file(&a), 1),
            "closed until the shipper opens it"
        );
        inline.open_at(None);
        assert!(placer.place(&a, &file(&a), 1));
        assert!(placer.place(&b, &file(&b), 1));
        let big = seg(4, 4);
        let too_big = crate::replica::GROUP_MAX + 1;
        assert!(
            !placer.place(&big, &file(&big), too_big),
            "too big: the shipper's"
        );
        assert!(!placer.place(&c, &file(&c), 1), "a gap: not placed");
        assert_eq!(inline.take_over().await, (vec![a, b], tx(3)));
        assert_eq!(*rx.borrow(), tx(3));
        assert!(!rx.has_changed().unwrap(), "the pruner is not woken");
        let d2 = seg(4, 4);
        assert!(
            !placer.place(&d2, &file(&d2), 1),
            "closed while the shipper works"
        );
        assert!(d.path().join("replica").join(a.path()).exists());
        // A file the replica has already (another writer) fails the placement: placement
        // closes, the position stays, the files after it are not counted, the shipper is woken.
        inline.open_at(tx(3));
        std::fs::create_dir_all(d.path().join("replica").join(d2.path()).parent().unwrap())
            .unwrap();
        std::fs::write(d.path().join("replica").join(d2.path()), b"y").unwrap();
        assert!(placer.place(&d2, &file(&d2), 1), "handed over");
        tokio::time::timeout(std::time::Duration::from_secs(10), inline.failed())
            .await
            .expect("the shipper is woken");
        assert!(!placer.place(&seg(5, 5), &file(&seg(5, 5)), 1), "closed");
        assert_eq!(inline.take_over().await, (vec![], tx(3)));
        assert_eq!(*rx.borrow(), tx(3));
        // Another replica shipped the usual way: every placement still needs its shipper.
        let both = Placer::new(vec![inline.clone()], 1);
        inline.open_at(tx(3));
        std::fs::remove_file(d.path().join("replica").join(d2.path())).unwrap();
        assert!(!both.place(&d2, &file(&d2), 1));
        assert_eq!(inline.take_over().await, (vec![d2], tx(4)));
    }

    /// A placement that finishes after an earlier one failed is not counted: the chain has a
    /// gap there until the shipper fills it.
    #[tokio::test(flavor = "current_thread")]
    async fn nothing_after_a_failed_placement_counts() {
        let d = tempfile::tempdir().unwrap();
        let client = ReplicaClient::file("r", &d.path().join("replica"), true).unwrap();
        let (tx, rx) = watch::channel(None);
        let inline = Inline::new(client, Arc::default(), tx);
        let pos = |n| Some(TxId::new(n).unwrap());
        inline.open_at(pos(1));
        {
            let mut st = inline.lock();
            st.in_flight = 2;
            st.head = pos(3);
        }
        let refused = std::io::Error::from(std::io::ErrorKind::StorageFull);
        inline.finish(
            seg(2, 2),
            1,
            Err(ReplicaError::Write {
                replica: "r".into(),
                path: "p".into(),
                source: refused,
            }),
        );
        inline.finish(seg(3, 3), 1, Ok(()));
        assert_eq!(inline.take_over().await, (vec![], pos(1)));
        assert_eq!(*rx.borrow(), None, "nothing confirmed");
        inline.open_at(pos(1));
        assert!(
            inline.lock().open,
            "a full disk does not end placement for good"
        );
    }
}
