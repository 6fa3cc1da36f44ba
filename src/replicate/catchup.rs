//! Which replicas cannot continue from the spool and must start over from a fresh snapshot.
//!
//! A replica ships by appending the spool's chain to its own newest position. That only works
//! when the spool still holds the file right after that position and the replica's newest file
//! is this database's: a replica added after the first run (empty), one whose position the
//! spool pruned long ago (behind), or one holding another database's files (another history)
//! must instead get a snapshot of the current state, at once, and never have our segments
//! appended to what it holds. The spool drops its snapshot once every replica has it, so the
//! monitor is asked for a new one (`snapshot_wanted`).

use std::fmt;

use replica_formats::{DbChecksum, ObjectKey, TxId};

use super::spool::Spool;
use crate::replica::{ReplicaClient, ReplicaError};

/// Why a replica starts over from a fresh snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// It holds no file, or nothing that restores (no snapshot).
    Empty,
    /// The spool no longer holds what follows its position (pruned while the replica
    /// was not configured, or compacted into files that start before it).
    Behind {
        /// The replica's newest position.
        newest: TxId,
    },
    /// Its newest file is not one of this database's: its state differs from the spool's at
    /// that position, or it lies past everything the spool ever wrote.
    OtherHistory {
        /// The replica's newest position.
        newest: TxId,
    },
}

impl fmt::Display for Restart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Restart::Empty => f.write_str("empty"),
            Restart::Behind { newest } => write!(
                f,
                "behind (the spool no longer holds what follows its position {})",
                newest
            ),
            Restart::OtherHistory { newest } => write!(
                f,
                "other history (its newest file, position {}, does not continue this database's chain)",
                newest
            ),
        }
    }
}

/// What the spool says about the replica's newest file `newest`, before any download.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It continues the spool's chain (the very same file is spooled, or nothing is spooled).
    Continues,
    /// It is empty, and the spool still holds this snapshot with its chain to the newest
    /// position: it is seeded from them (if the snapshot reads back whole).
    Seed(ObjectKey),
    /// It needs a fresh snapshot.
    Restart(Restart),
    /// Its database checksum must equal this spooled file's (post-checksum of a file ending
    /// at the same position, or pre-checksum of the segment starting right after).
    Compare(ObjectKey, Side),
}

/// Which checksum of the spooled file to compare with the replica file's post-checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The spooled file ends where the replica does.
    Post,
    /// The spooled segment starts right after.
    Pre,
}

/// Pure part of [`check`]: judges the replica's newest key against the spool's keys.
pub(crate) fn judge(newest: Option<&ObjectKey>, spool: &[ObjectKey]) -> Verdict {
    let Some(newest) = newest else {
        // An empty replica is seeded from the spool when the spool still holds a snapshot with
        // its chain to the newest position (an idle database's spool keeps its last one): a
        // new snapshot of the same state would only add a copy, to the spool and then to
        // every replica added after it.
        let chain = replica_formats::chain_after(spool, None);
        let spool_newest = spool.iter().map(ObjectKey::max_txid).max();
        return match chain.first() {
            Some(snap)
                if snap.is_snapshot() && chain.last().map(ObjectKey::max_txid) == spool_newest =>
            {
                Verdict::Seed(*snap)
            }
            _ => Verdict::Restart(Restart::Empty),
        };
    };
    let r = newest.max_txid();
    // An empty spool (first run, lost meta directory): the monitor starts a new chain with a
    // snapshot above every replica's position anyway.
    let Some(spool_newest) = spool.iter().map(ObjectKey::max_txid).max() else {
        return Verdict::Continues;
    };
    if spool.contains(newest) {
        return Verdict::Continues;
    }
    if r > spool_newest {
        return Verdict::Restart(Restart::OtherHistory { newest: r });
    }
    if let Some(k) = spool.iter().filter(|k| k.max_txid() == r).max() {
        return Verdict::Compare(*k, Side::Post);
    }
    if let Some(k) = spool
        .iter()
        .filter(|k| !k.is_snapshot() && k.min_txid() == r.next())
        .max()
    {
        return Verdict::Compare(*k, Side::Pre);
    }
    Verdict::Restart(Restart::Behind { newest: r })
}

/// Decides whether the replica holding `listing` can continue from the spool; `Some(reason)`
/// if it must start over from a fresh snapshot. Costs at most two small requests (the size and
/// the 24-byte trailer of the replica's newest file), only when the spool no longer holds that
/// very file.
pub async fn check(
    client: &ReplicaClient,
    listing: &[ObjectKey],
    spool: &Spool,
    spool_keys: &[ObjectKey],
) -> Result<Option<Restart>, ReplicaError> {
    // Its position is where what it holds restores to, not its newest file: a file past a
    // hole is not built on (the hole is filled from the spool, or the replica starts over).
    let newest = replica_formats::restorable_end(listing);
    let (key, side) = match judge(newest.as_ref(), spool_keys) {
        // Only if that file is whole: a file replica shares its spool file's inode, so damage
        // done to the replica's copy is the spool's too.
        Verdict::Seed(snap) => {
            let path = spool.path(&snap);
            let whole = tokio::task::spawn_blocking(move || is_whole(&path))
                .await
                .unwrap_or(false);
            return Ok((!whole).then_some(Restart::Empty));
        }
        Verdict::Continues => return Ok(None),
        Verdict::Restart(r) => return Ok(Some(r)),
        Verdict::Compare(key, side) => (key, side),
    };
    let newest = newest.expect("judged a replica file");
    let other = Restart::OtherHistory {
        newest: newest.max_txid(),
    };
    let ours = match side {
        Side::Post => spool.post_checksum(&key),
        Side::Pre => spool.header(&key).map(|h| h.pre_checksum),
    };
    // A spooled file that cannot be read proves nothing: start over rather than guess.
    let Ok(ours) = ours else {
        return Ok(Some(other));
    };
    match replica_post_checksum(client, &newest).await? {
        Some(theirs) if theirs == ours => Ok(None),
        _ => Ok(Some(other)),
    }
}

/// Whether the spooled file at `path` reads back whole (its file checksum and trailer): a
/// sequential read, no decompression.
fn is_whole(path: &std::path::Path) -> bool {
    std::fs::File::open(path)
        .map_err(replica_formats::FormatError::from)
        .and_then(|f| replica_formats::FileDecoder::new(std::io::BufReader::new(f)))
        .and_then(|d| d.finish())
        .is_ok()
}

/// The post-checksum in the trailer of the replica file `key`; `None` if it has no valid
/// trailer.
async fn replica_post_checksum(
    client: &ReplicaClient,
    key: &ObjectKey,
) -> Result<Option<DbChecksum>, ReplicaError> {
    let size = client.size(key).await?;
    if size < 24 {
        return Ok(None);
    }
    let t = client.get_range(key, size - 24, 24).await?;
    if t.len() != 24 || &t[20..] != b"MEND" {
        return Ok(None);
    }
    let raw = u64::from_le_bytes(t[4..12].try_into().expect("8 bytes"));
    Ok(Some(DbChecksum::from_raw(raw)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use replica_formats::testkit::{seg_at, snap_at as snap};

    fn seg(min: u64, max: u64, ts: i64) -> ObjectKey {
        seg_at(0, min, max, ts)
    }

    fn t(n: u64) -> TxId {
        TxId::new(n).unwrap()
    }

    #[test]
    fn empty_behind_ahead_and_continuing_replicas() {
        let spool = vec![seg(10, 10, 100), seg(11, 11, 110), seg(12, 12, 120)];
        assert_eq!(judge(None, &spool), Verdict::Restart(Restart::Empty));
        // Empty, but the spool holds a snapshot and its chain: seeded from it.
        let seeded = vec![snap(9, 90), seg(10, 10, 100), seg(11, 11, 110)];
        assert_eq!(judge(None, &seeded), Verdict::Seed(snap(9, 90)));
        let broken = vec![snap(9, 90), seg(11, 11, 110)];
        assert_eq!(judge(None, &broken), Verdict::Restart(Restart::Empty));
        // The very file is spooled: it continues, no download.
        assert_eq!(judge(Some(&seg(11, 11, 110)), &spool), Verdict::Continues);
        // Same position, another file: compare checksums.
        assert_eq!(
            judge(Some(&seg(11, 11, 999)), &spool),
            Verdict::Compare(seg(11, 11, 110), Side::Post)
        );
        // Its file was pruned from the spool, the next one is there: compare with its pre.
        assert_eq!(
            judge(Some(&snap(9, 90)), &spool),
            Verdict::Compare(seg(10, 10, 100), Side::Pre)
        );
        assert_eq!(
            judge(Some(&seg(3, 5, 50)), &spool),
            Verdict::Restart(Restart::Behind { newest: t(5) })
        );
        assert_eq!(
            judge(Some(&seg(13, 40, 50)), &spool),
            Verdict::Restart(Restart::OtherHistory { newest: t(40) })
        );
        // Nothing spooled: the monitor's first snapshot starts above it anyway.
        assert_eq!(judge(Some(&seg(3, 5, 50)), &[]), Verdict::Continues);
    }

    /// Compaction merged the files around its position: nothing to continue from.
    #[test]
    fn a_position_inside_a_compacted_spool_file_is_behind() {
        let spool = vec![seg(10, 12, 100), seg(13, 13, 130)];
        assert_eq!(
            judge(Some(&seg(11, 11, 110)), &spool),
            Verdict::Restart(Restart::Behind { newest: t(11) })
        );
    }
}
