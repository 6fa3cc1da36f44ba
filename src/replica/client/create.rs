//! Writes that must not overwrite: each store keeps the promise its own way (a hard link on a
//! file replica, a conditional PUT on S3 with a check before a multipart upload, a check
//! before the PUT on WebDAV).

use std::path::Path;

use bytes::Bytes;
use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use replica_formats::ObjectKey;

use super::super::davput::Put;
use super::super::local::{Side, link_or_copy};
use super::super::{ReplicaError, SINGLE_PUT_MAX};
use super::{Backing, ReplicaClient, StoreKind};

/// Puts the spool file `src` under `key` of a file replica, on the calling thread (it links
/// and fsyncs: a blocking call), refusing to overwrite an existing file.
pub(super) fn place(
    c: &ReplicaClient,
    dir: &Path,
    key: &ObjectKey,
    src: &Path,
) -> Result<u64, ReplicaError> {
    let dest = dir.join(key.path());
    match link_or_copy(src, &dest) {
        Err(side) => Err(side_error(&c.name, key, &dest, src, side)),
        Ok(n) => Ok(n),
    }
}

/// What a failed put of `src` at `dest` means to the caller.
fn side_error(replica: &str, key: &ObjectKey, dest: &Path, src: &Path, side: Side) -> ReplicaError {
    match side {
        Side::Write(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            ReplicaError::AlreadyExists {
                replica: replica.to_owned(),
                key: key.path(),
            }
        }
        Side::Write(source) => ReplicaError::Write {
            replica: replica.to_owned(),
            path: dest.display().to_string(),
            source,
        },
        Side::Read(source) => ReplicaError::Local {
            replica: replica.to_owned(),
            path: src.display().to_string(),
            source,
        },
    }
}

/// Puts the spool file `src` under `key` of a file replica in a group with other files
/// (`grouped.rs`), refusing to overwrite an existing file; `done` learns how it fared.
pub(super) fn place_grouped(
    c: &ReplicaClient,
    dir: &Path,
    key: &ObjectKey,
    src: &Path,
    done: Box<dyn FnOnce(Result<(), ReplicaError>) + Send>,
) {
    let dest = dir.join(key.path());
    let (name, key2, from, to) = (c.name.clone(), *key, src.to_owned(), dest.clone());
    let mapped = move |r: Result<(), Side>| {
        done(r.map_err(|side| side_error(&name, &key2, &to, &from, side)))
    };
    super::super::grouped::submit(src.to_owned(), dest, Box::new(mapped));
}

/// Uploads the local file `src` under `key`, refusing to overwrite an existing file (two
/// writers on one replica must fail loudly, not interleave).
pub(super) async fn upload(
    c: &ReplicaClient,
    key: &ObjectKey,
    src: &Path,
) -> Result<u64, ReplicaError> {
    let local = |source| ReplicaError::Local {
        replica: c.name.clone(),
        path: src.display().to_string(),
        source,
    };
    if let Some(dir) = c.local_dir() {
        // On a blocking thread of its own, not the placements' shared one: a replica whose
        // file system hangs holds up its own shipper, not every other replica's placements.
        let (c2, dir, key, src) = (c.clone(), dir.clone(), *key, src.to_path_buf());
        return tokio::task::spawn_blocking(move || place(&c2, &dir, &key, &src))
            .await
            .map_err(|e| local(std::io::Error::other(e)))?;
    }
    let size = tokio::fs::metadata(src).await.map_err(local)?.len();
    let path = c.path(key);
    let what = format!("uploading {}", key.path());
    let kind = match c.backing {
        Backing::Store(k) => k,
        Backing::Dir(_) => unreachable!("file replicas returned above"),
    };
    if kind == StoreKind::S3 && size > SINGLE_PUT_MAX {
        refuse_existing(c, &path, key).await?;
        super::super::multipart::upload(c.store.as_ref(), &c.name, &path, src, &what).await?;
        return Ok(size);
    }
    if let (Some(dav), true) = (&c.dav, size > SINGLE_PUT_MAX) {
        refuse_existing(c, &path, key).await?;
        return match dav.put_file(&path, src, size).await {
            Ok(Put::Done) => Ok(size),
            Ok(Put::Exists) => Err(ReplicaError::AlreadyExists {
                replica: c.name.clone(),
                key: key.path(),
            }),
            Err(msg) => Err(ReplicaError::Storage {
                replica: c.name.clone(),
                what,
                source: object_store::Error::Generic {
                    store: "HTTP",
                    source: msg.into(),
                },
            }),
        };
    }
    let data = tokio::fs::read(src).await.map_err(local)?;
    put_new(c, &path, &key.path(), Bytes::from(data), &what).await?;
    Ok(size)
}

/// Writes `data` at `path` unless something is there: one conditional request where the
/// store has them, a check first where it has not (WebDAV), which leaves a window only to
/// a second writer racing the same key (replica ownership guards against that already).
pub(super) async fn put_new(
    c: &ReplicaClient,
    path: &StorePath,
    shown: &str,
    data: Bytes,
    what: &str,
) -> Result<(), ReplicaError> {
    let mode = match c.backing {
        Backing::Store(StoreKind::Http) => {
            refuse_existing_path(c, path, shown).await?;
            PutMode::Overwrite
        }
        _ => PutMode::Create,
    };
    let opts = PutOptions {
        mode,
        ..Default::default()
    };
    let res = c
        .timed(what, async {
            c.store
                .put_opts(path, PutPayload::from(data), opts)
                .await
                .map_err(c.storage(what))
        })
        .await;
    match res {
        // A WebDAV server that refuses overwrites (`memsync serve`) answers 412.
        Err(ReplicaError::Storage {
            source: object_store::Error::Precondition { .. },
            ..
        }) => Err(ReplicaError::AlreadyExists {
            replica: c.name.clone(),
            key: shown.to_string(),
        }),
        Err(e) => Err(e),
        Ok(_) => Ok(()),
    }
}

async fn refuse_existing(
    c: &ReplicaClient,
    path: &StorePath,
    key: &ObjectKey,
) -> Result<(), ReplicaError> {
    refuse_existing_path(c, path, &key.path()).await
}

async fn refuse_existing_path(
    c: &ReplicaClient,
    path: &StorePath,
    shown: &str,
) -> Result<(), ReplicaError> {
    let what = format!("checking {shown}");
    let res = c
        .timed(&what, async {
            c.store.head(path).await.map_err(c.storage(what.clone()))
        })
        .await;
    match res {
        Err(ReplicaError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
        Ok(_) => Err(ReplicaError::AlreadyExists {
            replica: c.name.clone(),
            key: shown.to_string(),
        }),
    }
}
