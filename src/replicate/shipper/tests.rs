//! The shipper with a real file replica and spool: what wakes it.

use super::*;
use crate::replicate::placer::Placer;
use replica_formats::{Level, Timestamp};

/// A placement that fails after the shipper went idle wakes it, and it ships the file:
/// nothing else need be captured for the replica's position to move on.
#[tokio::test(flavor = "current_thread")]
async fn a_failed_placement_wakes_the_idle_shipper() {
    let d = tempfile::tempdir().unwrap();
    let spool = Spool::open(d.path()).unwrap();
    let put = |k: &ObjectKey, body: &'static [u8]| {
        spool
            .write(k, |w| std::io::Write::write_all(w, body))
            .unwrap()
    };
    let tx = |n| TxId::new(n).unwrap();
    let snap = ObjectKey::Snapshot {
        txid: tx(1),
        ts: Timestamp::from_millis(1),
    };
    put(&snap, b"s");
    let client = ReplicaClient::file("r", &d.path().join("replica"), true).unwrap();
    let (confirmed, mut seen) = watch::channel(None);
    let stats: Arc<ShipStats> = Arc::default();
    let inline = Inline::new(client.clone(), stats.clone(), confirmed.clone());
    let shipper = Shipper {
        client,
        spool: spool.clone(),
        sync_interval: Duration::ZERO,
        remote: None,
        known: BTreeSet::new(),
        doomed: Vec::new(),
        retention: Duration::from_secs(3600),
        retention_check: Duration::from_secs(3600),
        tiers: crate::config::Tiers::default(),
        confirmed,
        stats,
        restart: None,
        snapshot_wanted: Arc::default(),
        since: None,
        asked: false,
        inline: Some(inline.clone()),
        lineage: test_lineage(),
        deletes_held: None,
        sweeps: 0,
    };
    let (_positions, positions_rx) = watch::channel(Some(tx(1)));
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(shipper.run(positions_rx, stop_rx, Duration::from_secs(5)));
    let wait_for = |seen: &mut watch::Receiver<Option<TxId>>, want| {
        let mut seen = seen.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(10), seen.wait_for(|p| *p == want))
                .await
                .is_ok()
        }
    };
    assert!(
        wait_for(&mut seen, Some(tx(1))).await,
        "the snapshot shipped"
    );
    // The shipper is idle and placement open; the next file's name is taken on the
    // replica, so its placement fails after it was handed over.
    let seg = ObjectKey::Segment {
        level: Level::new(0).unwrap(),
        min: tx(2),
        max: tx(2),
        ts: Timestamp::from_millis(2),
    };
    put(&seg, b"x");
    let on_replica = d.path().join("replica").join(seg.path());
    std::fs::create_dir_all(on_replica.parent().unwrap()).unwrap();
    std::fs::write(&on_replica, b"x").unwrap();
    let placer = Placer::new(vec![inline.clone()], 0);
    let mut handed = false;
    for _ in 0..200 {
        handed = placer.place(&seg, &spool.path(&seg), 1);
        if handed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(handed, "placement opened once the shipper was caught up");
    assert!(
        wait_for(&mut seen, Some(tx(2))).await,
        "the shipper took the failed placement over"
    );
    stop.send_replace(true);
    assert_eq!(task.await.unwrap(), Some(tx(2)));
}

/// A replica holding a file past a hole (a placement after a failed one landed, then the
/// process stopped before the shipper filled the hole) continues from before the hole: the
/// start does not take its newest file for its position, and the missing file is shipped.
#[tokio::test(flavor = "current_thread")]
async fn a_restart_fills_a_hole_below_the_newest_replica_file() {
    let d = tempfile::tempdir().unwrap();
    let spool = Spool::open(d.path()).unwrap();
    let tx = |n| TxId::new(n).unwrap();
    let snap = ObjectKey::Snapshot {
        txid: tx(1),
        ts: Timestamp::from_millis(1),
    };
    let seg = |n: u64| ObjectKey::Segment {
        level: Level::new(0).unwrap(),
        min: tx(n),
        max: tx(n),
        ts: Timestamp::from_millis(n as i64),
    };
    let keys = [snap, seg(2), seg(3), seg(4)];
    for k in keys {
        let body = format!("{k:?}");
        spool
            .write(&k, |w| std::io::Write::write_all(w, body.as_bytes()))
            .unwrap();
    }
    let dir = d.path().join("replica");
    let client = ReplicaClient::file("r", &dir, true).unwrap();
    for k in [snap, seg(2), seg(4)] {
        let at = dir.join(k.path());
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::fs::copy(spool.path(&k), at).unwrap();
    }
    let start = crate::replicate::startup::Start {
        client: client.clone(),
        me: Arc::new(replica_formats::Lineage {
            id: replica_formats::LineageId::from_bits(7),
            host: String::new(),
            path: "/db".into(),
        }),
        takeover: false,
        spool: spool.clone(),
        spool_keys: Arc::new(keys.to_vec()),
        stats: Arc::default(),
    };
    let ready = start.attempt().await.unwrap();
    assert_eq!(ready.restart, None);
    assert_eq!(
        ready.remote(),
        Some(tx(2)),
        "the hole at 3 is below the position"
    );
    let (confirmed, seen) = watch::channel(None);
    let mut shipper = ShipperParts {
        lineage: test_lineage(),
        client,
        spool,
        sync_interval: Duration::ZERO,
        retention: Duration::from_secs(3600),
        retention_check: Duration::from_secs(3600),
        tiers: crate::config::Tiers::default(),
        confirmed,
        stats: Arc::default(),
        snapshot_wanted: Arc::default(),
        inline: None,
    }
    .build(ready);
    shipper.ship_pending().await.unwrap();
    assert!(dir.join(seg(3).path()).exists(), "the hole was filled");
    assert_eq!(*seen.borrow(), Some(tx(4)));
}

fn test_lineage() -> Arc<replica_formats::Lineage> {
    Arc::new(crate::replicate::lineage::identity(
        replica_formats::LineageId::from_bits(7),
        std::path::Path::new("/test.db"),
    ))
}
