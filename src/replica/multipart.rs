//! Large files to S3 in parts: at most two parts in memory, and a failed upload aborted so its
//! parts do not linger (and cost) in the bucket.

use std::path::Path;

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use tokio::io::AsyncReadExt;

use super::error::{from_store, timed};
use super::{PART_SIZE, ReplicaError};

/// Uploads `src` to `path` in parts of [`PART_SIZE`]. Multipart uploads cannot be made
/// conditional: the caller checks first that the key is free.
pub(super) async fn upload(
    store: &dyn ObjectStore,
    replica: &str,
    path: &StorePath,
    src: &Path,
    what: &str,
) -> Result<(), ReplicaError> {
    let local = |source| ReplicaError::Local {
        replica: replica.to_string(),
        path: src.display().to_string(),
        source,
    };
    let storage = || from_store(replica.to_string(), what.to_string());
    let mut file = tokio::fs::File::open(src).await.map_err(local)?;
    let upload = timed(replica, what, async {
        store.put_multipart(path).await.map_err(storage())
    })
    .await?;
    let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
    let mut buf = vec![0u8; 1 << 20];
    let res: Result<(), ReplicaError> = async {
        loop {
            let n = file.read(&mut buf).await.map_err(local)?;
            if n == 0 {
                return Ok(());
            }
            timed(replica, what, async {
                w.wait_for_capacity(1).await.map_err(storage())
            })
            .await?;
            w.write(&buf[..n]);
        }
    }
    .await;
    if let Err(e) = res {
        if let Err(a) = w.abort().await {
            tracing::warn!("replica {replica}: aborting the upload of {path}: {a}");
        }
        return Err(e);
    }
    timed(replica, what, async { w.finish().await.map_err(storage()) }).await?;
    Ok(())
}
