//! Listing object paths under a prefix, whatever the store can do: S3 and the in-memory store
//! list recursively in one paginated request, WebDAV servers often refuse `Depth: infinity`
//! (nginx, Apache by default), so there the tree is walked one level at a time (a replica is
//! two directories deep: `snapshots/`, `segments/<level>/`).

use futures::StreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectMeta, ObjectStore};
use replica_formats::{Level, ObjectKey, SEGMENTS_DIR};

/// Every format file under `root` with its size, sorted; foreign objects left out.
pub(super) async fn keys(
    store: &dyn ObjectStore,
    root: &StorePath,
    walk: bool,
) -> Result<Vec<(ObjectKey, u64)>, object_store::Error> {
    let prefix = (!root.as_ref().is_empty()).then_some(root);
    let mut out: Vec<(ObjectKey, u64)> = objects(store, prefix, walk)
        .await?
        .iter()
        .filter_map(|m| Some((key_under(root, &m.location)?, m.size)))
        .collect();
    out.sort();
    Ok(out)
}

/// The segments of `level` under `root` after the stored path `after` (all without it).
pub(super) async fn keys_after(
    store: &dyn ObjectStore,
    root: &StorePath,
    level: Level,
    after: Option<&StorePath>,
    walk: bool,
) -> Result<Vec<ObjectKey>, object_store::Error> {
    let dir = format!("{SEGMENTS_DIR}/{level}");
    let prefix = if root.as_ref().is_empty() {
        StorePath::from(dir)
    } else {
        StorePath::from(format!("{root}/{dir}"))
    };
    let found = match after {
        Some(a) => objects_after(store, &prefix, a, walk).await?,
        None => objects(store, Some(&prefix), walk).await?,
    };
    Ok(found
        .iter()
        .filter_map(|m| key_under(root, &m.location))
        .collect())
}

/// The format key of a stored path under `root`; `None` for foreign objects.
fn key_under(root: &StorePath, location: &StorePath) -> Option<ObjectKey> {
    let skip = if root.as_ref().is_empty() {
        0
    } else {
        root.as_ref().len() + 1
    };
    location.as_ref().get(skip..).and_then(ObjectKey::parse)
}

/// Every object under `prefix` (`None`: the whole store), in no particular order. A prefix
/// that does not exist lists as empty; an object deleted while listing is left out.
async fn objects(
    store: &dyn ObjectStore,
    prefix: Option<&StorePath>,
    walk: bool,
) -> Result<Vec<ObjectMeta>, object_store::Error> {
    if walk {
        return walk_tree(store, prefix).await;
    }
    collect(store.list(prefix)).await
}

/// Objects strictly after `offset` under `prefix`, using the store's offset listing where it
/// has one.
async fn objects_after(
    store: &dyn ObjectStore,
    prefix: &StorePath,
    offset: &StorePath,
    walk: bool,
) -> Result<Vec<ObjectMeta>, object_store::Error> {
    if walk {
        let mut all = walk_tree(store, Some(prefix)).await?;
        all.retain(|m| m.location > *offset);
        return Ok(all);
    }
    collect(store.list_with_offset(Some(prefix), offset)).await
}

/// A listing's objects; one deleted between the listing and its stat is left out.
async fn collect(
    mut stream: futures::stream::BoxStream<'static, Result<ObjectMeta, object_store::Error>>,
) -> Result<Vec<ObjectMeta>, object_store::Error> {
    let mut out = Vec::new();
    while let Some(meta) = stream.next().await {
        match meta {
            Err(object_store::Error::NotFound { .. }) => continue,
            other => out.push(other?),
        }
    }
    Ok(out)
}

/// Breadth-first, one `Depth: 1` listing per directory, at most a few levels deep.
async fn walk_tree(
    store: &dyn ObjectStore,
    prefix: Option<&StorePath>,
) -> Result<Vec<ObjectMeta>, object_store::Error> {
    const MAX_DEPTH: usize = 4;
    let mut out = Vec::new();
    let mut dirs = vec![prefix.cloned()];
    for _ in 0..MAX_DEPTH {
        let mut next = Vec::new();
        for dir in dirs {
            match store.list_with_delimiter(dir.as_ref()).await {
                Ok(r) => {
                    out.extend(r.objects);
                    next.extend(r.common_prefixes.into_iter().map(Some));
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if next.is_empty() {
            break;
        }
        dirs = next;
    }
    Ok(out)
}
