//! A sink that keeps files in memory, for tests of the capture side and the pool: they need
//! nothing of `replicate/`.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

use replica_formats::{DbChecksum, Header, ObjectKey, TxId};

use super::sink::{CaptureKind, Captured, DbShape, Sink, SinkError};

/// Files and notifications kept in memory: the capture side needs nothing of `replicate/`.
#[derive(Clone, Default)]
pub struct MemSink {
    pub files: Arc<Mutex<BTreeMap<ObjectKey, Vec<u8>>>>,
    pub captured: Arc<Mutex<Vec<(ObjectKey, CaptureKind)>>>,
    /// While closed, writes wait (a monitor held up on its worker).
    pub gate: Gate,
}

/// A gate writes wait at while it is closed.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<GateState>, Condvar)>);

#[derive(Default)]
struct GateState {
    closed: bool,
    waiting: usize,
}

impl Gate {
    pub fn close(&self) {
        self.0.0.lock().unwrap().closed = true;
    }

    pub fn open(&self) {
        self.0.0.lock().unwrap().closed = false;
        self.0.1.notify_all();
    }

    /// How many writes wait at it now.
    pub fn waiting(&self) -> usize {
        self.0.0.lock().unwrap().waiting
    }

    fn pass(&self) {
        let mut st = self.0.0.lock().unwrap();
        st.waiting += 1;
        while st.closed {
            st = self.0.1.wait(st).unwrap();
        }
        st.waiting -= 1;
    }
}

impl Sink for MemSink {
    fn prepare(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn dir(&self) -> &Path {
        Path::new("memory")
    }
    fn keys(&self) -> io::Result<Vec<ObjectKey>> {
        Ok(self.files.lock().unwrap().keys().copied().collect())
    }
    fn header(&self, key: &ObjectKey) -> io::Result<Header> {
        Ok(replica_formats::decode_file(&self.read(key)?)
            .map_err(io::Error::other)?
            .header)
    }
    fn post_checksum(&self, key: &ObjectKey) -> io::Result<DbChecksum> {
        Ok(replica_formats::decode_file(&self.read(key)?)
            .map_err(io::Error::other)?
            .trailer
            .post_checksum)
    }
    fn read(&self, key: &ObjectKey) -> io::Result<Vec<u8>> {
        let files = self.files.lock().unwrap();
        files
            .get(key)
            .cloned()
            .ok_or(io::ErrorKind::NotFound.into())
    }
    fn write(
        &self,
        key: &ObjectKey,
        fill: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<u64> {
        self.gate.pass();
        let mut buf = Vec::new();
        fill(&mut buf)?;
        let len = buf.len() as u64;
        self.files.lock().unwrap().insert(*key, buf);
        Ok(len)
    }
    fn captured(&mut self, file: &Captured) {
        self.captured.lock().unwrap().push((file.key, file.kind));
    }
    fn resumed(&mut self, _: TxId) {}
    fn map_saved(&mut self, _: TxId) {}
    fn maintain(&mut self, _: DbShape, _: bool) -> Result<bool, SinkError> {
        Ok(false)
    }
}

/// A new WAL database `name` in `dir` holding table `t(x)`, and the application's connection.
pub fn wal_db(dir: &Path, name: &str) -> (std::path::PathBuf, rusqlite::Connection) {
    let db = dir.join(name);
    let c = rusqlite::Connection::open(&db).unwrap();
    c.pragma_update(None, "journal_mode", "wal").unwrap();
    c.execute_batch("CREATE TABLE t(x)").unwrap();
    (db, c)
}
