//! Replica clients: one small interface over `object_store`, so file, S3 and HTTP replicas share
//! every line above the storage call. Keys are always the format crate's typed [`ObjectKey`]s.

pub(crate) mod reader;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use replica_formats::ObjectKey;
use thiserror::Error;

/// Files at most this large are uploaded in one request; larger ones in parts of this size.
pub const PART_SIZE: usize = 5 << 20;
/// Longest a single storage request may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A failed replica operation, named by what it means to the caller.
#[derive(Debug, Error)]
pub enum ReplicaError {
    /// The object does not exist.
    #[error("replica {replica}: {key} not found")]
    NotFound {
        /// Replica name and location.
        replica: String,
        /// Key.
        key: String,
    },
    /// A file with that key already exists (another writer, or a retried upload).
    #[error("replica {replica}: {key} already exists")]
    AlreadyExists {
        /// Replica.
        replica: String,
        /// Key.
        key: String,
    },
    /// The storage could not be reached or refused the request.
    #[error("replica {replica}: {what}: {source}")]
    Storage {
        /// Replica.
        replica: String,
        /// Operation.
        what: String,
        /// Cause.
        source: object_store::Error,
    },
    /// The request did not finish in time.
    #[error("replica {replica}: {what} timed out after {secs}s")]
    Timeout {
        /// Replica.
        replica: String,
        /// Operation.
        what: String,
        /// Seconds waited.
        secs: u64,
    },
    /// Reading a local file to upload failed.
    #[error("replica {replica}: reading {path}: {source}")]
    Local {
        /// Replica.
        replica: String,
        /// Local file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Writing into a file replica failed (disk full, read-only, permissions).
    #[error("replica {replica}: writing {path}: {source}")]
    Write {
        /// Replica.
        replica: String,
        /// File in the replica.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The replica configuration cannot be used.
    #[error("replica {replica}: {what}")]
    Config {
        /// Replica.
        replica: String,
        /// Problem.
        what: String,
    },
}

/// A replica's storage: an object store plus the root every key lives under.
#[derive(Clone)]
pub struct ReplicaClient {
    name: String,
    store: Arc<dyn ObjectStore>,
    root: StorePath,
    /// For a file replica, its directory: uploads from the spool are then hard links (or
    /// in-kernel copies across file systems) instead of buffered writes.
    local_dir: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for ReplicaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReplicaClient({})", self.name)
    }
}

impl ReplicaClient {
    /// A replica in a local directory (created if missing), with fsync on every write so a
    /// rename never exposes a file whose contents are not on disk.
    pub fn file(name: &str, dir: &Path, create: bool) -> Result<Self, ReplicaError> {
        let shown = format!("{name} ({})", dir.display());
        if create {
            std::fs::create_dir_all(dir).map_err(|source| ReplicaError::Local {
                replica: shown.clone(),
                path: dir.display().to_string(),
                source,
            })?;
        } else if !dir.is_dir() {
            return Err(ReplicaError::NotFound {
                replica: shown,
                key: "(replica directory)".into(),
            });
        }
        let store = LocalFileSystem::new_with_prefix(dir)
            .map_err(|source| ReplicaError::Storage {
                replica: shown.clone(),
                what: "opening".into(),
                source,
            })?
            .with_fsync(true)
            .with_automatic_cleanup(true);
        Ok(ReplicaClient {
            name: shown,
            store: Arc::new(store),
            root: StorePath::default(),
            local_dir: Some(dir.to_path_buf()),
        })
    }

    /// Human-readable name and location, used in every error.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn path(&self, key: &ObjectKey) -> StorePath {
        let p = key.path();
        if self.root.as_ref().is_empty() {
            StorePath::from(p)
        } else {
            StorePath::from(format!("{}/{}", self.root, p))
        }
    }

    fn storage(&self, what: impl Into<String>) -> impl FnOnce(object_store::Error) -> ReplicaError {
        let (replica, what) = (self.name.clone(), what.into());
        move |source| match source {
            object_store::Error::NotFound { path, .. } => {
                ReplicaError::NotFound { replica, key: path }
            }
            object_store::Error::AlreadyExists { path, .. } => {
                ReplicaError::AlreadyExists { replica, key: path }
            }
            source => ReplicaError::Storage {
                replica,
                what,
                source,
            },
        }
    }

    async fn timed<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, ReplicaError>>,
    ) -> Result<T, ReplicaError> {
        match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
            Ok(r) => r,
            Err(_) => Err(ReplicaError::Timeout {
                replica: self.name.clone(),
                what: what.into(),
                secs: REQUEST_TIMEOUT.as_secs(),
            }),
        }
    }

    /// Every replica file, sorted by position; foreign objects (temp files, other tools) are
    /// ignored.
    pub async fn list(&self) -> Result<Vec<ObjectKey>, ReplicaError> {
        if let Some(dir) = &self.local_dir {
            let (dir, name) = (dir.clone(), self.name.clone());
            return tokio::task::spawn_blocking(move || list_local(&name, &dir))
                .await
                .map_err(|e| ReplicaError::Local {
                    replica: self.name.clone(),
                    path: "(listing)".into(),
                    source: std::io::Error::other(e),
                })?;
        }
        self.timed("listing", async {
            let prefix = (!self.root.as_ref().is_empty()).then_some(&self.root);
            let mut stream = self.store.list(prefix);
            let mut keys = Vec::new();
            let skip = if self.root.as_ref().is_empty() {
                0
            } else {
                self.root.as_ref().len() + 1
            };
            while let Some(meta) = stream.next().await {
                // A file deleted between the directory read and its stat (a compaction running
                // next to us) is simply not there any more.
                let meta = match meta {
                    Err(object_store::Error::NotFound { .. }) => continue,
                    other => other.map_err(self.storage("listing"))?,
                };
                if let Some(k) = meta
                    .location
                    .as_ref()
                    .get(skip..)
                    .and_then(ObjectKey::parse)
                {
                    keys.push(k);
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
    }

    /// Uploads the local file `src` under `key`, refusing to overwrite an existing file (two
    /// writers on one replica must fail loudly, not interleave).
    pub async fn upload(&self, key: &ObjectKey, src: &Path) -> Result<u64, ReplicaError> {
        let local = |source| ReplicaError::Local {
            replica: self.name.clone(),
            path: src.display().to_string(),
            source,
        };
        if let Some(dir) = &self.local_dir {
            let (src, dest) = (src.to_path_buf(), dir.join(key.path()));
            let res = tokio::task::spawn_blocking(move || link_or_copy(&src, &dest))
                .await
                .map_err(|e| local(std::io::Error::other(e)))?;
            return match res {
                Err(Side::Write(e)) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    Err(ReplicaError::AlreadyExists {
                        replica: self.name.clone(),
                        key: key.path(),
                    })
                }
                Err(Side::Write(source)) => Err(ReplicaError::Write {
                    replica: self.name.clone(),
                    path: dir.join(key.path()).display().to_string(),
                    source,
                }),
                Err(Side::Read(e)) => Err(local(e)),
                Ok(n) => Ok(n),
            };
        }
        let mut file = tokio::fs::File::open(src).await.map_err(local)?;
        let size = file.metadata().await.map_err(local)?.len();
        let path = self.path(key);
        let what = format!("uploading {}", key.path());
        if size as usize <= PART_SIZE {
            let data = tokio::fs::read(src).await.map_err(local)?;
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            self.timed(&what, async {
                self.store
                    .put_opts(&path, PutPayload::from(Bytes::from(data)), opts)
                    .await
                    .map_err(self.storage(what.clone()))
            })
            .await?;
            return Ok(size);
        }
        use tokio::io::AsyncReadExt;
        let upload = self
            .store
            .put_multipart(&path)
            .await
            .map_err(self.storage(what.clone()))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).await.map_err(local)?;
            if n == 0 {
                break;
            }
            self.timed(&what, async {
                w.wait_for_capacity(2)
                    .await
                    .map_err(self.storage(what.clone()))
            })
            .await?;
            w.write(&buf[..n]);
        }
        self.timed(&what, async {
            w.finish().await.map_err(self.storage(what.clone()))
        })
        .await?;
        Ok(size)
    }

    /// Reads `len` bytes at `offset` of `key`.
    pub async fn get_range(
        &self,
        key: &ObjectKey,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, ReplicaError> {
        let what = format!("reading {}", key.path());
        self.timed(&what, async {
            self.store
                .get_range(&self.path(key), offset..offset + len)
                .await
                .map_err(self.storage(what.clone()))
        })
        .await
    }

    /// Size of `key`.
    pub async fn size(&self, key: &ObjectKey) -> Result<u64, ReplicaError> {
        let what = format!("reading {}", key.path());
        self.timed(&what, async {
            Ok(self
                .store
                .head(&self.path(key))
                .await
                .map_err(self.storage(what.clone()))?
                .size)
        })
        .await
    }

    /// Path of an object at the replica root that is not a format file (the lineage record).
    fn raw_path(&self, name: &str) -> StorePath {
        if self.root.as_ref().is_empty() {
            StorePath::from(name)
        } else {
            StorePath::from(format!("{}/{name}", self.root))
        }
    }

    /// Reads the object `name` at the replica root; `None` if there is none.
    pub async fn get_raw(&self, name: &str) -> Result<Option<Bytes>, ReplicaError> {
        let what = format!("reading {name}");
        let res = self
            .timed(&what, async {
                let r = self
                    .store
                    .get(&self.raw_path(name))
                    .await
                    .map_err(self.storage(what.clone()))?;
                r.bytes().await.map_err(self.storage(what.clone()))
            })
            .await;
        match res {
            Ok(b) => Ok(Some(b)),
            Err(ReplicaError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes the object `name` at the replica root in one request; with `create_only`, fails
    /// with [`ReplicaError::AlreadyExists`] if it exists (of two writers, one wins).
    pub async fn put_raw(
        &self,
        name: &str,
        data: Vec<u8>,
        create_only: bool,
    ) -> Result<(), ReplicaError> {
        // A file replica names the file, as every other write error of it does.
        let what = match &self.local_dir {
            Some(d) => format!("writing {}", d.join(name).display()),
            None => format!("writing {name}"),
        };
        let opts = PutOptions {
            mode: if create_only {
                PutMode::Create
            } else {
                PutMode::Overwrite
            },
            ..Default::default()
        };
        self.timed(&what, async {
            self.store
                .put_opts(
                    &self.raw_path(name),
                    PutPayload::from(Bytes::from(data)),
                    opts,
                )
                .await
                .map_err(self.storage(what.clone()))
        })
        .await?;
        Ok(())
    }

    /// Deletes `keys` (missing ones are fine: deletion is idempotent).
    pub async fn delete(&self, keys: &[ObjectKey]) -> Result<(), ReplicaError> {
        for key in keys {
            let what = format!("deleting {}", key.path());
            let res = self
                .timed(&what, async {
                    self.store
                        .delete(&self.path(key))
                        .await
                        .map_err(self.storage(what.clone()))
                })
                .await;
            match res {
                Ok(()) | Err(ReplicaError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            crate::fault::point("delete").map_err(|source| ReplicaError::Write {
                replica: self.name.clone(),
                path: key.path(),
                source,
            })?;
        }
        Ok(())
    }
}

/// Builds the client for a configured replica.
pub fn client_for(
    cfg: &crate::config::ReplicaConfig,
    create: bool,
) -> Result<ReplicaClient, ReplicaError> {
    match &cfg.target {
        crate::config::ReplicaTarget::File { path } => ReplicaClient::file(&cfg.name, path, create),
        other => Err(ReplicaError::Config {
            replica: cfg.name.clone(),
            what: format!(
                "{} replicas are not available in this build yet (file replicas are)",
                target_kind(other)
            ),
        }),
    }
}

fn target_kind(t: &crate::config::ReplicaTarget) -> &'static str {
    match t {
        crate::config::ReplicaTarget::File { .. } => "file",
        crate::config::ReplicaTarget::S3 { .. } => "S3",
        crate::config::ReplicaTarget::Http { .. } => "HTTP",
    }
}

/// Lists a file replica by its layout (`snapshots/`, `segments/<level>/`) rather than by a
/// recursive walk: an entry that cannot be read (a symlink loop, a dangling link, a file removed
/// meanwhile) is skipped with a warning instead of failing the whole listing, and no stray
/// directory is ever descended into. A directory of the layout that cannot be read still fails:
/// a partial listing could plan an older database.
fn list_local(name: &str, dir: &Path) -> Result<Vec<ObjectKey>, ReplicaError> {
    let read_dir = |rel: &str| -> Result<Vec<(String, std::fs::DirEntry)>, ReplicaError> {
        let path = dir.join(rel);
        let entries = match std::fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(ReplicaError::Local {
                    replica: name.to_owned(),
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(|source| ReplicaError::Local {
                replica: name.to_owned(),
                path: path.display().to_string(),
                source,
            })?;
            if let Some(n) = e.file_name().to_str() {
                out.push((format!("{rel}/{n}"), e));
            }
        }
        Ok(out)
    };
    // Follows a symlink like any reader would; an entry that cannot be followed is skipped.
    let kind = |rel: &str, e: &std::fs::DirEntry| match std::fs::metadata(e.path()) {
        Ok(m) => Some(m.is_dir()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => {
            crate::log::warn(&format!("replica {name}: skipping {rel}: {err}"));
            None
        }
    };
    let mut keys = Vec::new();
    let mut file = |rel: &str, e: &std::fs::DirEntry| {
        if let Some(k) = ObjectKey::parse(rel)
            && kind(rel, e) == Some(false)
        {
            keys.push(k);
        }
    };
    for (rel, e) in read_dir(replica_formats::SNAPSHOTS_DIR)? {
        file(&rel, &e);
    }
    for (level, e) in read_dir(replica_formats::SEGMENTS_DIR)? {
        let is_level = level.len() == replica_formats::SEGMENTS_DIR.len() + 2
            && level.as_bytes().last().is_some_and(u8::is_ascii_digit);
        if is_level && kind(&level, &e) == Some(true) {
            for (rel, e) in read_dir(&level)? {
                file(&rel, &e);
            }
        }
    }
    keys.sort();
    Ok(keys)
}

/// Puts the immutable spool file `src` at `dest` without ever replacing an
/// existing file: a hard link when both are on one file system (no data written at all), else an
/// in-kernel copy to a temp file, fsync, and a no-clobber link into place. The directory entry is
/// fsynced either way.
fn link_or_copy(src: &Path, dest: &Path) -> Result<u64, Side> {
    let size = std::fs::metadata(src).map_err(Side::Read)?.len();
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(Side::Write)?;
    }
    match std::fs::hard_link(src, dest) {
        // The spool does not fsync; the replica's copy must be durable before it counts.
        Ok(()) => std::fs::File::open(dest)
            .and_then(|f| f.sync_all())
            .map_err(Side::Write)?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(Side::Write(e)),
        Err(_) => {
            let tmp = crate::fsutil::temp_sibling(dest);
            let res = (|| {
                std::fs::copy(src, &tmp).map_err(|e| {
                    // `copy` reads one file and writes the other: the error belongs to the
                    // spool file only if that cannot even be opened.
                    match std::fs::File::open(src) {
                        Err(_) => Side::Read(e),
                        Ok(_) => Side::Write(e),
                    }
                })?;
                std::fs::File::open(&tmp)
                    .and_then(|f| f.sync_all())
                    .map_err(Side::Write)?;
                std::fs::hard_link(&tmp, dest).map_err(Side::Write)
            })();
            let _ = std::fs::remove_file(&tmp);
            res?;
        }
    }
    crate::fsutil::sync_dir(dest).map_err(Side::Write)?;
    Ok(size)
}

/// Which end of a spool-to-replica copy failed: a full or read-only replica is a write error
/// of the replica path, not a read error of the spool file.
#[derive(Debug)]
enum Side {
    Read(std::io::Error),
    Write(std::io::Error),
}
