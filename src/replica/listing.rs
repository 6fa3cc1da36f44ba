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
    let prefix = super::client::under(root, &dir);
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
        return walk_tree(store, prefix, REPLICA_DEPTH).await;
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
        let mut all = walk_tree(store, Some(prefix), REPLICA_DEPTH).await?;
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

/// Levels a walk of one replica goes down (it has two, `segments/<level>/`).
const REPLICA_DEPTH: usize = 4;
/// Levels a walk of a directory replica goes down: the databases' subdirectories, then theirs.
const DIRECTORY_DEPTH: usize = 24;

/// The replicas below `root` (a directory replica: one per database, at the database's path
/// under the replicated directory): the paths relative to `root` of every prefix holding format
/// files, sorted. A replica at `root` itself (a single database's) is left out.
pub(super) async fn replica_dirs(
    store: &dyn ObjectStore,
    root: &StorePath,
    walk: bool,
) -> Result<Dirs, object_store::Error> {
    let prefix = (!root.as_ref().is_empty()).then_some(root);
    let found = if walk {
        walk_tree(store, prefix, DIRECTORY_DEPTH).await?
    } else {
        collect(store.list(prefix)).await?
    };
    let skip = if root.as_ref().is_empty() {
        0
    } else {
        root.as_ref().len() + 1
    };
    let mut out = std::collections::BTreeSet::new();
    let mut litestream = std::collections::BTreeSet::new();
    for m in &found {
        let Some(rel) = m.location.as_ref().get(skip..) else {
            continue;
        };
        // The replica's own part starts at a `snapshots/` or `segments/` component.
        let mut starts = rel.match_indices('/').map(|(i, _)| i);
        if let Some(i) = starts.rfind(|&i| ObjectKey::parse(&rel[i + 1..]).is_some())
            && !in_meta_dir(&rel[..i])
        {
            out.insert(rel[..i].to_string());
        } else if let Some(db) = litestream_db(rel) {
            litestream.insert(db.to_string());
        }
    }
    Ok(Dirs {
        memsync: out.into_iter().collect(),
        litestream: litestream.into_iter().collect(),
    })
}

/// The databases a directory replica holds: memsync's, and Litestream's (which memsync does
/// not read, but names).
pub struct Dirs {
    /// Paths under the replica of memsync's database replicas.
    pub memsync: Vec<String>,
    /// Paths under the replica of Litestream 0.5's (`<db>/ltx/<level>/*.ltx` on a file
    /// replica, `<db>/<level>/*.ltx` on object stores).
    pub litestream: Vec<String>,
}

/// The database part of a Litestream 0.5 file's path under a directory replica.
fn litestream_db(rel: &str) -> Option<&str> {
    let dir = rel.strip_suffix(".ltx").and_then(|r| r.rsplit_once('/'))?.0;
    let (up, level) = dir.rsplit_once('/').unwrap_or(("", dir));
    let is_level = (level.len() == 1 && level.as_bytes()[0].is_ascii_digit())
        || (level.len() == 4 && level.bytes().all(|b| b.is_ascii_hexdigit()));
    if !is_level {
        return None;
    }
    Some(
        up.strip_suffix("/ltx")
            .or(up.strip_suffix("ltx"))
            .unwrap_or(up),
    )
}

/// A path through a database's meta directory (`.<name>-memsync/spool` has the replica
/// layout): found when a database directory is taken for a directory replica, never one of its
/// databases.
fn in_meta_dir(rel: &str) -> bool {
    rel.split('/')
        .any(|c| c.len() > 9 && c.starts_with('.') && c.ends_with("-memsync"))
}

/// Breadth-first, one `Depth: 1` listing per directory, at most `max_depth` levels deep.
async fn walk_tree(
    store: &dyn ObjectStore,
    prefix: Option<&StorePath>,
    max_depth: usize,
) -> Result<Vec<ObjectMeta>, object_store::Error> {
    let mut out = Vec::new();
    let mut dirs = vec![prefix.cloned()];
    for _ in 0..max_depth {
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

#[cfg(test)]
mod tests {
    #[test]
    fn litestream_files_name_their_database() {
        let db = super::litestream_db;
        assert_eq!(
            db("a.db/ltx/0/0000000000000001-0000000000000001.ltx"),
            Some("a.db")
        );
        assert_eq!(
            db("x/b.db/0001/00000000000000a1-00000000000000a1.ltx"),
            Some("x/b.db")
        );
        assert_eq!(db("ltx/0/0000000000000001-0000000000000001.ltx"), Some(""));
        assert_eq!(db("a.db/snapshots/x.snap"), None);
        assert_eq!(db("a.db/notes/readme.ltx"), None);
    }
}
