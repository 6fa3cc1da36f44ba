//! The replica client: list, upload, read, delete, over one `object_store` store. A file
//! replica also keeps its directory, so uploads from the spool can be hard links.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use replica_formats::ObjectKey;

use super::local::{Side, link_or_copy, list_local};
use super::{PART_SIZE, REQUEST_TIMEOUT, ReplicaError};

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
