//! A blocking `Read` over one replica file, fetching ranges ahead so decoding (on a blocking
//! thread) and downloading (on the runtime) overlap.

use std::collections::VecDeque;
use std::io::{self, Read};

use bytes::Bytes;
use replica_formats::ObjectKey;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::{ReplicaClient, ReplicaError};

/// Bytes fetched per request.
const CHUNK: u64 = 4 << 20;
/// Requests kept in flight.
const AHEAD: usize = 2;

/// Sequential reader of a replica file.
pub struct ObjectReader {
    client: ReplicaClient,
    key: ObjectKey,
    handle: Handle,
    size: u64,
    next: u64,
    cur: Bytes,
    pending: VecDeque<JoinHandle<Result<Bytes, ReplicaError>>>,
}

impl ObjectReader {
    /// Opens `key` (its size is read first). Must be called outside the runtime's threads.
    pub fn open(
        client: &ReplicaClient,
        key: &ObjectKey,
        handle: &Handle,
    ) -> Result<Self, ReplicaError> {
        let size = handle.block_on(client.size(key))?;
        let mut r = ObjectReader {
            client: client.clone(),
            key: *key,
            handle: handle.clone(),
            size,
            next: 0,
            cur: Bytes::new(),
            pending: VecDeque::new(),
        };
        r.fill_ahead();
        Ok(r)
    }

    /// Size of the file.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn fill_ahead(&mut self) {
        while self.pending.len() < AHEAD && self.next < self.size {
            let len = CHUNK.min(self.size - self.next);
            let (c, k, off) = (self.client.clone(), self.key, self.next);
            self.pending.push_back(
                self.handle
                    .spawn(async move { c.get_range(&k, off, len).await }),
            );
            self.next += len;
        }
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cur.is_empty() {
            let Some(task) = self.pending.pop_front() else {
                return Ok(0);
            };
            let got = self
                .handle
                .block_on(task)
                .map_err(io::Error::other)?
                .map_err(|e| match e {
                    ReplicaError::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e),
                    e => io::Error::other(e),
                })?;
            self.cur = got;
            self.fill_ahead();
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}
