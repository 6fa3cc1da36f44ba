//! Level-0 files placed on file replicas right where they are captured, on the pool worker
//! that wrote them to the spool, while the replica's shipper is caught up.
//!
//! Shipping each commit through the shipper cost, per file, a wake of the runtime, a hand-off
//! to a blocking thread for the link and its fsyncs and a hand-off back: about four context
//! switches, a sixth of memsync's CPU at 500 databases taking a commit a second each
//! (`docs/measurements.md`). Placed here, the file costs the link and its fsyncs alone, and
//! the shipper sleeps until there is something else to do (a compacted file, a snapshot, a
//! failure).
//!
//! The shipper stays in charge: it opens placement only after a pass that left its replica
//! caught up, closes it at the start of each pass (taking over what was placed meanwhile), and
//! a placement only ever continues the replica's chain exactly (its first position right
//! after the replica's newest). A failed placement closes it and hands the file back to the
//! shipper, which retries, backs off and reports as it always does.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use replica_formats::{ObjectKey, TxId};
use tokio::sync::watch;

use crate::replica::ReplicaClient;
use crate::stats::ShipStats;

/// One file replica's placement, shared by its shipper and the database's sink.
pub struct Inline {
    client: ReplicaClient,
    state: Mutex<State>,
    stats: Arc<ShipStats>,
    /// The replica's confirmed position, updated without waking the spool's pruner (which
    /// only has work once compaction moved files; the shipper tells it then).
    confirmed: watch::Sender<Option<TxId>>,
}

#[derive(Default)]
struct State {
    /// The shipper lets captures be placed.
    open: bool,
    /// The replica's newest position, as the shipper left it plus what was placed since.
    remote: Option<TxId>,
    /// Placed since the shipper last took over.
    placed: Vec<ObjectKey>,
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
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The shipper takes over: placement closes, and it learns what was placed since it last
    /// looked and the replica's newest position.
    pub fn take_over(&self) -> (Vec<ObjectKey>, Option<TxId>) {
        let mut st = self.lock();
        st.open = false;
        (std::mem::take(&mut st.placed), st.remote)
    }

    /// The shipper is caught up at `remote`: captures continuing from it may be placed.
    pub fn open_at(&self, remote: Option<TxId>) {
        let mut st = self.lock();
        st.open = true;
        st.remote = remote;
    }

    /// Places the spooled file `src` under `key` if placement is open and `key` continues the
    /// replica's chain; true if it did. On failure placement closes and the shipper takes the
    /// file (and the error) over.
    fn place(&self, key: &ObjectKey, src: &Path) -> bool {
        let mut st = self.lock();
        let follows = st.remote.map_or(0, TxId::get) + 1 == key.min_txid().get();
        if !st.open || !follows {
            return false;
        }
        let placed = self.client.place_now(key, src).and_then(|r| {
            let size = r.ok()?;
            crate::fault::point("place").ok()?;
            Some(size)
        });
        let Some(size) = placed else {
            st.open = false;
            return false;
        };
        let pos = key.max_txid();
        st.remote = Some(pos);
        st.placed.push(*key);
        drop(st);
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
        true
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
    /// database has it now (no shipper needs waking for it).
    pub fn place(&self, key: &ObjectKey, src: &Path) -> bool {
        if self.targets.is_empty() || key.is_snapshot() || key.level().is_none_or(|l| l.get() > 0) {
            return false;
        }
        // Each target is tried: one replica refusing does not keep the others waiting.
        let placed = self.targets.iter().filter(|t| t.place(key, src)).count();
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

    /// Placement waits for the shipper, only continues the chain, and hands over what it placed.
    #[test]
    fn places_only_what_continues_the_chain_while_open() {
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
        let (a, b, c) = (seg(1, 2), seg(3, 3), seg(5, 6));
        assert!(
            !placer.place(&a, &file(&a)),
            "closed until the shipper opens it"
        );
        inline.open_at(None);
        assert!(placer.place(&a, &file(&a)));
        assert!(placer.place(&b, &file(&b)));
        assert!(!placer.place(&c, &file(&c)), "a gap: not placed");
        assert_eq!(*rx.borrow(), Some(TxId::new(3).unwrap()));
        assert!(!rx.has_changed().unwrap(), "the pruner is not woken");
        assert_eq!(
            inline.take_over(),
            (vec![a, b], Some(TxId::new(3).unwrap()))
        );
        let d2 = seg(4, 4);
        assert!(
            !placer.place(&d2, &file(&d2)),
            "closed while the shipper works"
        );
        assert!(d.path().join("replica").join(a.path()).exists());
        // A file the replica has already (another writer) closes placement.
        inline.open_at(Some(TxId::new(3).unwrap()));
        std::fs::create_dir_all(d.path().join("replica").join(d2.path()).parent().unwrap())
            .unwrap();
        std::fs::write(d.path().join("replica").join(d2.path()), b"y").unwrap();
        assert!(!placer.place(&d2, &file(&d2)));
        assert_eq!(inline.take_over(), (vec![], Some(TxId::new(3).unwrap())));
        // Another replica shipped the usual way: every placement still needs its shipper.
        let both = Placer::new(vec![inline.clone()], 1);
        inline.open_at(Some(TxId::new(3).unwrap()));
        let e = seg(4, 4);
        std::fs::remove_file(d.path().join("replica").join(e.path())).unwrap();
        assert!(!both.place(&e, &file(&e)));
        assert_eq!(inline.take_over().0, vec![e]);
    }
}
