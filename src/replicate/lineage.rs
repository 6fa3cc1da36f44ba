//! One database per replica: the replica's lineage record (see replica-formats/README.md) is
//! checked, and written if missing, before anything else touches the replica.
//!
//! The database's own lineage id lives in `<meta dir>/lineage`, made when its replicator first
//! runs. If that file is missing (a new meta directory) but a replica's record names this very
//! database (same host and real path), that lineage is adopted: it is the same database whose
//! spool was lost, and the monitor starts a new chain above the replica's newest position.

use std::path::{Path, PathBuf};

use replica_formats::{LINEAGE_OBJECT, Lineage, LineageId};
use thiserror::Error;

use crate::replica::{ReplicaClient, ReplicaError};

/// Why a replica may not be written.
#[derive(Debug, Error)]
pub enum LineageError {
    /// The replica holds another database's files.
    #[error(
        "replica {replica} belongs to database {owner} (lineage {id}), not {db}; pass -takeover (or set `takeover: true` on the replica) to replace it"
    )]
    Foreign {
        /// Replica name and location.
        replica: String,
        /// `host:path` of the database the record names.
        owner: String,
        /// Its lineage.
        id: LineageId,
        /// This database.
        db: String,
    },
    /// The record names this lineage but another database file that still exists on this
    /// host: this one is a copy, made with its meta directory.
    #[error(
        "replica {replica} belongs to database {owner}, which still exists; {db} carries the same lineage because it was copied with its memsync meta directory (.NAME-memsync): remove the copy's meta directory to give it a history of its own, and a replica of its own, or pass -takeover"
    )]
    Copy {
        /// Replica name and location.
        replica: String,
        /// `host:path` of the database the record names.
        owner: String,
        /// This database.
        db: String,
    },
    /// The record exists but cannot be read as one.
    #[error(
        "replica {replica}: `{LINEAGE_OBJECT}` is not a memsync lineage record; move it away or pass -takeover"
    )]
    Damaged {
        /// Replica.
        replica: String,
    },
    /// The replica holds Litestream's files and no lineage record.
    #[error(
        "replica {replica} holds a Litestream backup (its `{dir}/` folder), which memsync does not write into: point this replica elsewhere, or pass -takeover (or `takeover: true`) to write memsync's replica beside Litestream's files, which memsync never reads nor deletes"
    )]
    Litestream {
        /// Replica.
        replica: String,
        /// The folder that shows it.
        dir: &'static str,
    },
    /// The replica could not be read or written.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// The local id file could not be read or written.
    #[error("lineage file {path}: {source}")]
    Local {
        /// `<meta>/lineage`.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// Who this database is: its record as it would be written to a replica.
pub fn identity(id: LineageId, real_db: &Path) -> Lineage {
    Lineage {
        id,
        host: hostname(),
        path: real_db.to_string_lossy().into_owned(),
    }
}

/// The database's lineage: `<meta>/lineage`, else the lineage of a replica whose record names
/// this database, else a new random one; written to `<meta>/lineage` if it was not there.
pub async fn local_lineage(
    meta: &Path,
    real_db: &Path,
    clients: &[&ReplicaClient],
) -> Result<LineageId, LineageError> {
    let path = meta.join("lineage");
    let local_err = |source| LineageError::Local {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            if let Some(id) = LineageId::parse(text.trim()) {
                return Ok(id);
            }
            // A torn or foreign file: treated as missing.
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(local_err(e)),
    }
    let me = identity(LineageId::from_bits(0), real_db);
    let mut id = None;
    for c in clients {
        // A replica that does not answer now is asked again when it ships (its record then
        // either names this lineage or is refused as another's).
        // Within the start's allowance: a replica that accepts connections but never answers
        // held the first start for its whole request timeout (30 s, said as 5).
        let found = match tokio::time::timeout(super::startup::START_WAIT, read(c)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::warn!("{e} (looking for this database's lineage record)");
                None
            }
            Err(_) => {
                tracing::warn!(
                    "replica {} did not answer within {}s (looking for this database's lineage record)",
                    c.name(),
                    super::startup::START_WAIT.as_secs()
                );
                None
            }
        };
        if let Some(rec) = found
            && rec.host == me.host
            && rec.path == me.path
        {
            tracing::info!(
                "{}: continuing lineage {} recorded in replica {}",
                real_db.display(),
                rec.id,
                c.name()
            );
            id = Some(rec.id);
            break;
        }
    }
    let id = id.unwrap_or_else(|| LineageId::from_bits(rand::random()));
    std::fs::create_dir_all(meta).map_err(local_err)?;
    match crate::fsutil::write_atomic(&path, format!("{id}\n").as_bytes()) {
        Ok(()) => {}
        // A full disk under the spool is waited out later; the id lives in memory until then
        // and its replicas' records carry it (a restart adopts it from them).
        Err(e) if crate::platform::is_full(&e) => {
            tracing::warn!("lineage file {}: {e}", path.display());
        }
        Err(e) => return Err(local_err(e)),
    }
    Ok(id)
}

/// Makes sure `client` holds `me`'s lineage: writes the record where there is none, accepts
/// one with the same id, and refuses another's unless `takeover`, which deletes every file of
/// the replica and then replaces the record.
pub async fn claim(
    client: &ReplicaClient,
    me: &Lineage,
    takeover: bool,
) -> Result<(), LineageError> {
    // Twice: a create-only write that loses a race reads the winner's record.
    for _ in 0..2 {
        let raw = client.get_raw(LINEAGE_OBJECT).await?;
        let found = raw.as_deref().map(Lineage::parse);
        if found.is_none()
            && !takeover
            && let Some(dir) = client.foreign_layout().await?
        {
            return Err(LineageError::Litestream {
                replica: client.name().to_owned(),
                dir,
            });
        }
        // Best effort: a failure here shows again at the first placement, named there.
        let made = found
            .is_none()
            .then(|| client.make_snapshot_dir())
            .flatten();
        let unmake = || {
            if let Some(d) = &made {
                let _ = std::fs::remove_dir(d);
            }
        };
        match found {
            None => match client.put_raw(LINEAGE_OBJECT, me.encode(), true).await {
                Ok(()) => {
                    if !client.list().await?.is_empty() {
                        tracing::info!(
                            "replica {}: adopted (it had no lineage record)",
                            client.name()
                        );
                    }
                    return Ok(());
                }
                Err(ReplicaError::AlreadyExists { .. }) => {
                    unmake();
                    continue;
                }
                // A full replica disk must not stop replication (its writes are retried):
                // the record is written at the next start.
                Err(e) if crate::fsutil::is_disk_full(&e) => {
                    tracing::error!(
                        "{e}; replication goes on, the lineage record is written at the next start"
                    );
                    return Ok(());
                }
                Err(e) => {
                    unmake();
                    return Err(e.into());
                }
            },
            Some(Some(rec)) if rec.id == me.id => {
                if rec.host != me.host || rec.path != me.path {
                    // Two live files with one lineage would write one history in turns.
                    if !takeover && rec.host == me.host && another_file(&rec.path, &me.path) {
                        return Err(LineageError::Copy {
                            replica: client.name().to_owned(),
                            owner: rec.source(),
                            db: me.source(),
                        });
                    }
                    // Moved (on this host, the old path gone; or from another host): the record
                    // follows the database.
                    client.put_raw(LINEAGE_OBJECT, me.encode(), false).await?;
                    tracing::info!(
                        "replica {}: its database {} is now {}; its lineage record says so",
                        client.name(),
                        rec.source(),
                        me.source()
                    );
                }
                // Ours, but another tool writes here too (Litestream pointed at this path since):
                // a restore reads memsync's files only.
                if let Ok(Some(dir)) = client.foreign_layout().await {
                    tracing::warn!(
                        "replica {} also holds a Litestream backup (its `{dir}/` folder): another replicator writes this replica too; memsync neither reads nor deletes its files",
                        client.name()
                    );
                }
                return Ok(());
            }
            Some(found) if takeover => {
                let keys = client.list().await?;
                client.delete(&keys).await?;
                client.put_raw(LINEAGE_OBJECT, me.encode(), false).await?;
                let from = found.map_or_else(
                    || "an unreadable lineage record".to_string(),
                    |r| format!("database {} (lineage {})", r.source(), r.id),
                );
                tracing::info!(
                    "replica {}: taken over from {from}; deleted its {} files",
                    client.name(),
                    keys.len()
                );
                return Ok(());
            }
            Some(Some(rec)) => {
                return Err(LineageError::Foreign {
                    replica: client.name().to_owned(),
                    owner: rec.source(),
                    id: rec.id,
                    db: me.source(),
                });
            }
            Some(None) => {
                return Err(LineageError::Damaged {
                    replica: client.name().to_owned(),
                });
            }
        }
    }
    Err(LineageError::Damaged {
        replica: client.name().to_owned(),
    })
}

/// Whether `recorded` names an existing file other than `mine`.
fn another_file(recorded: &str, mine: &str) -> bool {
    match crate::platform::file_id(Path::new(recorded)) {
        Ok(theirs) => crate::platform::file_id(Path::new(mine))
            .is_ok_and(|m| !crate::platform::same_file(m, theirs)),
        Err(_) => false,
    }
}

async fn read(client: &ReplicaClient) -> Result<Option<Lineage>, LineageError> {
    Ok(client
        .get_raw(LINEAGE_OBJECT)
        .await?
        .and_then(|b| Lineage::parse(&b)))
}

/// This machine's host name (what gethostname(2) returns: uname's node name).
fn hostname() -> String {
    crate::platform::hostname().unwrap_or_default()
}
