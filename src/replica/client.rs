//! The replica client: list, upload, read, delete, over one `object_store` store. A file
//! replica also keeps its directory, so uploads from the spool can be hard links.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use replica_formats::{Level, ObjectKey};

use super::ReplicaError;
use super::davput::DavPut;
use super::listing;
use super::local::list_local;

mod create;

/// What kind of store a client talks to: it decides how uploads keep their no-overwrite
/// promise (object stores differ in what they can do atomically).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// `object_store`'s in-memory store (tests, conformance).
    Memory,
    /// S3 or an S3-compatible store: conditional `PutObject` (`If-None-Match: *`), multipart
    /// uploads for large files.
    S3,
    /// A WebDAV server: no conditional writes nor multipart in the protocol subset, so an
    /// upload checks first that the key is free.
    Http,
}

/// Where a replica's objects live.
#[derive(Clone)]
enum Backing {
    /// A local directory: uploads from the spool are hard links (or in-kernel copies across
    /// file systems) instead of buffered writes, listings read the directory.
    Dir(std::path::PathBuf),
    /// Any other object store.
    Store(StoreKind),
}

/// A replica's storage: an object store plus the root every key lives under.
#[derive(Clone)]
pub struct ReplicaClient {
    name: String,
    store: Arc<dyn ObjectStore>,
    root: StorePath,
    backing: Backing,
    /// WebDAV: large files go up streamed from disk rather than through the store.
    dav: Option<Arc<DavPut>>,
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
        if dir.exists() && !dir.is_dir() {
            return Err(ReplicaError::Local {
                replica: shown,
                path: dir.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    "a file is there, not a replica directory",
                ),
            });
        }
        if create {
            std::fs::create_dir_all(dir).map_err(|source| ReplicaError::Write {
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
            backing: Backing::Dir(dir.to_path_buf()),
            dav: None,
        })
    }

    /// A replica over any object store, every key under `root` (`""` for the store's root;
    /// leading and trailing slashes are ignored).
    pub fn new(name: &str, store: Arc<dyn ObjectStore>, root: &str, kind: StoreKind) -> Self {
        let root = root.trim_matches('/');
        ReplicaClient {
            name: name.to_string(),
            store,
            root: store_path(root),
            backing: Backing::Store(kind),
            dav: None,
        }
    }

    /// Streams uploads larger than [`SINGLE_PUT_MAX`] through `dav` (WebDAV replicas).
    pub(super) fn with_dav(mut self, dav: DavPut) -> Self {
        self.dav = Some(Arc::new(dav));
        self
    }

    /// Whether listings walk the tree a level at a time (WebDAV) instead of asking for it all.
    fn walks(&self) -> bool {
        matches!(self.backing, Backing::Store(StoreKind::Http))
    }

    /// The local directory of a file replica.
    /// For a file replica, removes the temporary files of a replicator killed part way (see
    /// `local::remove_stale_temps`); how many.
    pub fn remove_stale_temps(&self) -> usize {
        self.local_dir()
            .map_or(0, |d| super::local::remove_stale_temps(d))
    }

    /// A file replica's snapshot folder, made before its lineage record is written: that
    /// write's directory fsync covers the folder too, and the first snapshot's placement needs
    /// no `mkdir` and parent fsync of its own (each fsync counts at a first start of hundreds).
    /// Returns the folder if this call made it (for the caller to remove if the record
    /// cannot be written after all).
    pub fn make_snapshot_dir(&self) -> Option<std::path::PathBuf> {
        let d = self.local_dir()?.join(replica_formats::SNAPSHOTS_DIR);
        (!d.exists() && std::fs::create_dir_all(&d).is_ok()).then_some(d)
    }

    fn local_dir(&self) -> Option<&std::path::PathBuf> {
        match &self.backing {
            Backing::Dir(d) => Some(d),
            Backing::Store(_) => None,
        }
    }

    /// Human-readable name and location, used in every error.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn path(&self, key: &ObjectKey) -> StorePath {
        under(&self.root, &key.path())
    }

    fn storage(&self, what: impl Into<String>) -> impl FnOnce(object_store::Error) -> ReplicaError {
        super::error::from_store(self.name.clone(), what.into())
    }

    async fn timed<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, ReplicaError>>,
    ) -> Result<T, ReplicaError> {
        super::error::timed(&self.name, what, fut).await
    }

    /// Every replica file, sorted by position; foreign objects (temp files, other tools) are
    /// ignored.
    pub async fn list(&self) -> Result<Vec<ObjectKey>, ReplicaError> {
        if let Some(dir) = self.local_dir() {
            let (dir, name) = (dir.clone(), self.name.clone());
            return tokio::task::spawn_blocking(move || list_local(&name, &dir))
                .await
                .map_err(|e| ReplicaError::Local {
                    replica: self.name.clone(),
                    path: "(listing)".into(),
                    source: std::io::Error::other(e),
                })?;
        }
        Ok(self
            .list_remote()
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// The databases of a directory replica: the relative paths under this replica's root
    /// that hold a replica of their own, sorted (`sub/x.db` for `<root>/sub/x.db/snapshots/...`).
    pub async fn databases(&self) -> Result<super::listing::Dirs, ReplicaError> {
        self.timed("listing", async {
            listing::replica_dirs(self.store.as_ref(), &self.root, self.walks())
                .await
                .map_err(self.storage("listing"))
        })
        .await
    }

    /// The top folder of another tool's replica at this one's root, when there is one:
    /// Litestream 0.5's `ltx/`, or 0.3's `generations/`.
    pub async fn foreign_layout(&self) -> Result<Option<&'static str>, ReplicaError> {
        let root = (!self.root.as_ref().is_empty()).then_some(&self.root);
        let listed = self
            .timed("listing", async {
                self.store
                    .list_with_delimiter(root)
                    .await
                    .map_err(self.storage("listing"))
            })
            .await;
        let listed = match listed {
            Ok(l) => l,
            Err(ReplicaError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        // Litestream 0.5 keeps its files under `ltx/<level>/` on a file replica and under
        // `<level>/` (four hex digits, `0000` to `0009`) on object stores; 0.3 under
        // `generations/`. memsync's own folders have other names.
        let level_dir = |n: &str| n.len() == 4 && n.bytes().all(|b| b.is_ascii_hexdigit());
        Ok(listed
            .common_prefixes
            .iter()
            .find_map(|p| match p.filename() {
                Some("ltx") => Some("ltx"),
                Some("generations") => Some("generations"),
                Some(n) if level_dir(n) => Some("0000"),
                _ => None,
            }))
    }

    /// Every replica file with its size, sorted by position: from the listing itself on
    /// object stores (no request per file), from the directory on a file replica.
    pub async fn list_sized(&self) -> Result<Vec<(ObjectKey, u64)>, ReplicaError> {
        let Some(dir) = self.local_dir() else {
            return self.list_remote().await;
        };
        let keys = self.list().await?;
        let dir = dir.clone();
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            match std::fs::metadata(dir.join(k.path())) {
                Ok(m) => out.push((k, m.len())),
                // Deleted since the listing (retention, compaction): not there any more.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(ReplicaError::Local {
                        replica: self.name.clone(),
                        path: dir.join(k.path()).display().to_string(),
                        source,
                    });
                }
            }
        }
        Ok(out)
    }

    async fn list_remote(&self) -> Result<Vec<(ObjectKey, u64)>, ReplicaError> {
        self.timed("listing", async {
            listing::keys(self.store.as_ref(), &self.root, self.walks())
                .await
                .map_err(self.storage("listing"))
        })
        .await
    }

    /// Uploads the local file `src` under `key`, refusing to overwrite an existing file (two
    /// writers on one replica must fail loudly, not interleave).
    pub async fn upload(&self, key: &ObjectKey, src: &Path) -> Result<u64, ReplicaError> {
        create::upload(self, key, src).await
    }

    /// Whether this is a file replica (see [`Self::place_grouped`]).
    pub fn is_file(&self) -> bool {
        self.local_dir().is_some()
    }

    /// A file replica places `src` under `key` as [`Self::upload`] would, in a group with
    /// other files on a shared thread (`grouped.rs`), and calls `done` there once it is
    /// durably in place or failed; false (and `done` dropped) for other stores.
    pub fn place_grouped(
        &self,
        key: &ObjectKey,
        src: &Path,
        done: Box<dyn FnOnce(Result<(), ReplicaError>) + Send>,
    ) -> bool {
        let Some(dir) = self.local_dir() else {
            return false;
        };
        create::place_grouped(self, dir, key, src, done);
        true
    }

    /// Keys of one level strictly after `after` (all of the level without it), sorted: a
    /// listing that starts where the last one ended instead of reading the whole replica.
    pub async fn list_after(
        &self,
        level: Level,
        after: Option<&ObjectKey>,
    ) -> Result<Vec<ObjectKey>, ReplicaError> {
        let mut keys: Vec<ObjectKey> = if self.local_dir().is_some() {
            self.list()
                .await?
                .into_iter()
                .filter(|k| k.level() == Some(level))
                .collect()
        } else {
            let after = after.map(|k| self.path(k));
            self.timed("listing", async {
                let store = self.store.as_ref();
                listing::keys_after(store, &self.root, level, after.as_ref(), self.walks())
                    .await
                    .map_err(self.storage("listing"))
            })
            .await?
        };
        keys.sort();
        if let Some(a) = after {
            keys.retain(|k| k > a);
        }
        Ok(keys)
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
        under(&self.root, name)
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
        let what = match self.local_dir() {
            Some(d) => format!("writing {}", d.join(name).display()),
            None => format!("writing {name}"),
        };
        let path = self.raw_path(name);
        if create_only {
            return create::put_new(self, &path, name, Bytes::from(data), &what).await;
        }
        // A WebDAV server may refuse to overwrite (`memsync serve` never does): the record is
        // removed first. Only a takeover replaces it, on a replica emptied just before.
        if matches!(self.backing, Backing::Store(StoreKind::Http)) {
            self.delete_path(&path, &what).await?;
        }
        let opts = PutOptions {
            mode: PutMode::Overwrite,
            ..Default::default()
        };
        self.timed(&what, async {
            self.store
                .put_opts(&path, PutPayload::from(Bytes::from(data)), opts)
                .await
                .map_err(self.storage(what.clone()))
        })
        .await?;
        Ok(())
    }

    /// Deletes the object at `path`; one already gone is fine.
    async fn delete_path(&self, path: &StorePath, what: &str) -> Result<(), ReplicaError> {
        let res = self
            .timed(what, async {
                self.store.delete(path).await.map_err(self.storage(what))
            })
            .await;
        match res {
            Ok(()) | Err(ReplicaError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes `keys` (missing ones are fine: deletion is idempotent).
    pub async fn delete(&self, keys: &[ObjectKey]) -> Result<(), ReplicaError> {
        for key in keys {
            self.delete_path(&self.path(key), &format!("deleting {}", key.path()))
                .await?;
            crate::fault::point("delete").map_err(|source| ReplicaError::Write {
                replica: self.name.clone(),
                path: key.path(),
                source,
            })?;
        }
        Ok(())
    }
}

/// A replica's root as the store names it: the user's path as it is (`düsseldorf`, `a~b`,
/// `50%`), the same key Litestream writes, and the same a listing gives back. (Built with
/// `StorePath::from`, which percent-encodes, and then joined as text, it was encoded twice:
/// uploads went where no listing found them.) A path `parse` refuses (control characters,
/// `.` or `..` segments) is encoded.
pub(super) fn store_path(root: &str) -> StorePath {
    StorePath::parse(root).unwrap_or_else(|_| StorePath::from(root))
}

/// `rel` (memsync's own names: ASCII, `/`-separated) under `root`, with no re-encoding of the
/// root's parts.
pub(super) fn under(root: &StorePath, rel: &str) -> StorePath {
    StorePath::from_iter(
        root.parts().chain(
            rel.split('/')
                .filter(|s| !s.is_empty())
                .map(object_store::path::PathPart::from),
        ),
    )
}
