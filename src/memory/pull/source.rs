//! Where pull reads the server's memories from: its replica (with embeddings and tombstones)
//! or its REST API.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::super::MemoryError;
use super::super::client::RemoteClient;
use super::super::hash::ContentHash;
use super::super::localdb::LocalDb;
use super::super::record::Fields;

/// One memory as the server holds it.
#[derive(Debug, Clone)]
pub struct RemoteRecord {
    pub hash: ContentHash,
    pub content: String,
    pub fields: Fields,
    pub created_at: f64,
    pub updated_at: f64,
    /// Set for a tombstone (only a replica shows them).
    pub deleted_at: Option<f64>,
    pub embedding: Option<Vec<u8>>,
    /// The service's `store` partition (v12), when the source shows it (a replica does).
    pub store: Option<String>,
}

/// The server's memories as read from one source.
pub struct RemoteState {
    pub records: Vec<RemoteRecord>,
    /// Where they came from, for messages.
    pub source: String,
    /// Read through the REST API: a memory missing from the listing may have been skipped by
    /// paging while the server changed, so removals are confirmed one by one.
    pub rest: bool,
    /// Hashes the server holds as tombstones, when it says so without a time (REST, v12). A
    /// replica's tombstones come as records with `deleted_at` instead.
    pub deleted: HashSet<ContentHash>,
    /// The server listed its tombstones ([`list_tombstones`]): a memory it had at an earlier
    /// pull that it now shows neither live nor deleted was lost there (a server restored from
    /// an older backup, another server at the same address), not deleted.
    pub tombstones_listed: bool,
    /// Memories a replica shows differently from this machine that the server could not be
    /// asked about ([`super::fresh`]): this pull leaves them alone.
    pub unconfirmed: HashSet<ContentHash>,
}

/// Reads every live memory (or those with any of `tags`) through the REST API.
pub fn fetch_rest(client: &RemoteClient, tags: &[String]) -> Result<RemoteState, MemoryError> {
    let tag_arg = (!tags.is_empty()).then(|| tags.join(","));
    let mut seen: HashMap<ContentHash, RemoteRecord> = HashMap::new();
    let mut page = 1;
    loop {
        let p = client.list(page, 100, tag_arg.as_deref())?;
        for m in p.memories {
            let created = m.created_at.unwrap_or(0.0);
            seen.entry(m.content_hash.clone()).or_insert(RemoteRecord {
                store: None,
                hash: m.content_hash,
                content: m.content,
                fields: Fields {
                    tags: m.tags,
                    memory_type: m.memory_type,
                    metadata: m.metadata,
                },
                created_at: created,
                updated_at: m.updated_at.unwrap_or(created),
                deleted_at: None,
                embedding: None,
            });
        }
        if !p.has_more {
            break;
        }
        page += 1;
    }
    let mut records: Vec<RemoteRecord> = seen.into_values().collect();
    records.sort_by(|a, b| a.created_at.total_cmp(&b.created_at));
    let mut state = RemoteState {
        records,
        source: format!("{} (REST API)", client.base_url()),
        rest: true,
        deleted: HashSet::new(),
        tombstones_listed: false,
        unconfirmed: HashSet::new(),
    };
    // Only a full listing needs them (removals are decided on full pulls only).
    if tags.is_empty() {
        list_tombstones(client, &mut state)?;
    }
    Ok(state)
}

/// Asks the server which memories it holds as tombstones: every hash it holds, deleted ones
/// included, less the live ones and those `state` shows live (revived since). Servers without
/// the route (before v12) show none, and `tombstones_listed` stays false.
pub fn list_tombstones(client: &RemoteClient, state: &mut RemoteState) -> Result<(), MemoryError> {
    let Some(all) = client.hashes(true)? else {
        return Ok(());
    };
    let live: HashSet<ContentHash> = client
        .hashes(false)?
        .unwrap_or_default()
        .into_iter()
        .collect();
    let shown: HashSet<&ContentHash> = state
        .records
        .iter()
        .filter(|r| r.deleted_at.is_none())
        .map(|r| &r.hash)
        .collect();
    state.deleted = all
        .into_iter()
        .filter(|h| !live.contains(h) && !shown.contains(h))
        .collect();
    state.tombstones_listed = true;
    Ok(())
}

/// Restores the server's replica as the (missing) local database at `path`: temp file, fsync,
/// rename, as every restore.
pub fn bootstrap_from_replica(
    url: &str,
    path: &Path,
    trust: &crate::replica::Trust,
) -> Result<(), MemoryError> {
    let client =
        crate::restore::open_url_trusting(url, trust).map_err(|source| MemoryError::Replica {
            url: super::super::settings::shown_url(url),
            source: Box::new(source),
        })?;
    // The restore makes the database's missing folders itself, and takes them away again when
    // it restores nothing (an unreachable replica, a refused key).
    let rt = crate::runtime().map_err(|source| MemoryError::Io {
        what: "async runtime".into(),
        source,
    })?;
    let opts = crate::restore::RestoreOptions {
        if_db_not_exists: true,
        integrity_check: crate::restore::IntegrityCheck::Quick,
        progress: true,
        ..crate::restore::RestoreOptions::latest(path)
    };
    match crate::restore::restore(&client, rt.handle(), &opts) {
        Ok(crate::restore::RestoreOutcome::NoReplica) => Err(MemoryError::NoBackup {
            url: super::super::settings::shown_url(url),
        }),
        Ok(_) => Ok(()),
        Err(source) => Err(MemoryError::Replica {
            url: super::super::settings::shown_url(url),
            source: Box::new(source),
        }),
    }
}

/// Restores the server's replica into `work_dir` and reads its memories with their embeddings.
pub fn fetch_replica(
    url: &str,
    work_dir: &Path,
    trust: &crate::replica::Trust,
) -> Result<RemoteState, MemoryError> {
    std::fs::create_dir_all(work_dir).map_err(|e| MemoryError::file(work_dir, e))?;
    let tmp = tempfile_in(work_dir)?;
    let out = tmp.path().join("remote.db");
    let rt = crate::runtime().map_err(|source| MemoryError::Io {
        what: "async runtime".into(),
        source,
    })?;
    let opts = crate::restore::RestoreOptions {
        integrity_check: crate::restore::IntegrityCheck::Quick,
        ..crate::restore::RestoreOptions::latest(&out)
    };
    let restored = crate::restore::open_url_trusting(url, trust)
        .and_then(|client| crate::restore::restore(&client, rt.handle(), &opts));
    match restored {
        Ok(crate::restore::RestoreOutcome::Restored { .. }) => {}
        Ok(_) => {
            return Err(MemoryError::NoBackup {
                url: super::super::settings::shown_url(url),
            });
        }
        Err(source) => {
            return Err(MemoryError::Replica {
                url: super::super::settings::shown_url(url),
                source: Box::new(source),
            });
        }
    }
    // Named by the replica: the temporary copy is gone by the time anyone reads the message.
    let db = LocalDb::open_read_only(&out).map_err(|e| match e {
        crate::memory::localdb::LocalDbError::NotMemoryDb { reason, .. } => {
            crate::memory::localdb::LocalDbError::NotMemoryDb {
                path: format!(
                    "the database in replica {}",
                    super::super::settings::shown_url(url)
                )
                .into(),
                reason,
            }
        }
        e => e,
    })?;
    let mut records = Vec::new();
    for m in db.all()? {
        let embedding = if m.deleted_at.is_none() {
            db.embedding(m.id)?
        } else {
            None
        };
        records.push(RemoteRecord {
            hash: m.hash,
            content: m.content,
            fields: m.fields,
            created_at: m.created_at,
            updated_at: m.updated_at,
            deleted_at: m.deleted_at,
            embedding,
            store: m.store,
        });
    }
    Ok(RemoteState {
        records,
        source: format!("{} (replica)", super::super::settings::shown_url(url)),
        rest: false,
        deleted: HashSet::new(),
        tombstones_listed: false,
        unconfirmed: HashSet::new(),
    })
}

fn tempfile_in(dir: &Path) -> Result<TempDir, MemoryError> {
    let p = dir.join(format!(
        "pull-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir(&p).map_err(|e| MemoryError::file(&p, e))?;
    Ok(TempDir(p))
}

/// A scratch folder removed on drop (the restored copy of the server's database).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
