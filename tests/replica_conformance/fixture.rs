//! One test's view of a backend: replica clients at roots under the test's own prefix, and a
//! way to put foreign objects next to them behind the client's back.

use std::path::Path;
use std::sync::Arc;

use memsync::config::{ReplicaTarget, replica_from_url};
use memsync::replica::{ReplicaClient, StoreKind, client_for};
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use std::ffi::OsStr;
use std::sync::OnceLock;
use std::time::Duration;

use crate::common::server::{Proc, free_ports, listening};
use crate::common::{self, s3, webdav};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `object_store`'s in-memory store, one per test.
    Memory,
    /// A file replica in a temporary directory.
    File,
    /// The test binary's SeaweedFS, bucket [`s3::BUCKET`].
    S3,
    /// The test binary's nginx WebDAV server.
    WebDav,
    /// The test binary's `memsync serve` (branch `serve`; see main.rs).
    Serve,
}

impl Backend {
    /// Whether the store creates a key atomically if absent (of racing creates, one wins).
    /// WebDAV has no such write.
    pub fn atomic_create(self) -> bool {
        self != Backend::WebDav
    }
}

pub struct Fixture {
    pub backend: Backend,
    /// This test's prefix (S3, WebDAV, memory) under which every root lives.
    base: String,
    memory: Arc<InMemory>,
    /// Scratch files: the file backend's replicas and every test's upload sources.
    pub tmp: tempfile::TempDir,
}

/// The runtime a case runs on (object_store's HTTP clients need time and I/O drivers).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

impl Fixture {
    /// Starts the backend's server if this test binary has none yet.
    pub fn new(backend: Backend, test: &str) -> Fixture {
        match backend {
            Backend::S3 => {
                s3::shared();
            }
            Backend::WebDav => {
                webdav::shared();
            }
            Backend::Serve => {
                serve_shared();
            }
            Backend::Memory | Backend::File => {}
        }
        Fixture {
            backend,
            base: s3::unique_prefix(test),
            memory: Arc::new(InMemory::new()),
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    /// The client of the replica at `root` (a relative path like `a/db1`).
    pub fn client(&self, root: &str) -> ReplicaClient {
        let prefixed = format!("{}/{root}", self.base);
        match self.backend {
            Backend::Memory => {
                let store: Arc<dyn ObjectStore> = self.memory.clone();
                ReplicaClient::new(root, store, &prefixed, StoreKind::Memory)
            }
            Backend::File => {
                ReplicaClient::file(root, &self.tmp.path().join("replicas").join(root), true)
                    .unwrap()
            }
            Backend::S3 => {
                let mut cfg = replica_from_url(&s3::shared().url(&prefixed)).unwrap();
                // Credentials in the config, not the process environment, which tests running
                // in parallel share.
                if let ReplicaTarget::S3 {
                    access_key_id,
                    secret_access_key,
                    ..
                } = &mut cfg.target
                {
                    *access_key_id = Some(s3::ACCESS_KEY.into());
                    *secret_access_key = Some(s3::SECRET_KEY.into());
                }
                client_for(&cfg, true).unwrap()
            }
            Backend::WebDav => {
                let cfg = replica_from_url(&webdav::shared().url(&prefixed)).unwrap();
                client_for(&cfg, true).unwrap()
            }
            Backend::Serve => {
                let url = format!("{}/{prefixed}", serve_shared().url);
                client_for(&replica_from_url(&url).unwrap(), true).unwrap()
            }
        }
    }

    /// Puts `data` at `rel` under the replica at `root`, as another tool (or a stray temp file)
    /// would: not through the client.
    pub async fn plant(&self, root: &str, rel: &str, data: &[u8]) {
        let key = format!("{}/{root}/{rel}", self.base);
        match self.backend {
            Backend::Memory => {
                self.memory
                    .put(&key.as_str().into(), PutPayload::from(data.to_vec()))
                    .await
                    .unwrap();
            }
            Backend::File => {
                let p = self.tmp.path().join("replicas").join(root).join(rel);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, data).unwrap();
            }
            Backend::S3 => {
                let src = self.source(data);
                let url = format!("{}/{}/{key}", s3::shared().endpoint(), s3::BUCKET);
                let (st, body) = crate::servers::curl_s3(&["-T", src.to_str().unwrap(), &url]);
                assert_eq!(st, 200, "planting {url}: {body}");
            }
            Backend::WebDav | Backend::Serve => {
                let root = match self.backend {
                    Backend::Serve => serve_shared().dir.clone(),
                    _ => webdav::shared().root(),
                };
                let p = root.join(&key);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, data).unwrap();
            }
        }
    }

    /// Multipart uploads left pending under the replica at `root` (S3 only; 0 elsewhere).
    pub fn pending_uploads(&self, root: &str) -> usize {
        match self.backend {
            Backend::S3 => s3::shared().pending_uploads(&format!("{}/{root}/", self.base)),
            _ => 0,
        }
    }

    /// A fresh local file holding `data`, to upload (file replicas may hard-link it, so it is
    /// never reused or changed).
    pub fn source(&self, data: &[u8]) -> std::path::PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = self.tmp.path().join("sources");
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(N.fetch_add(1, Ordering::Relaxed).to_string());
        write_new(&p, data);
        p
    }
}

/// A `memsync serve` process for the whole test binary (no API key), in its own process group
/// and killed with its files when the binary exits, like the other shared servers.
pub struct Serve {
    _proc: Proc,
    _scratch: tempfile::TempDir,
    /// The directory served.
    pub dir: std::path::PathBuf,
    pub url: String,
}

fn serve_shared() -> &'static Serve {
    static SERVE: OnceLock<Serve> = OnceLock::new();
    SERVE.get_or_init(|| {
        let scratch = tempfile::Builder::new()
            .prefix("memsync-serve-")
            .tempdir()
            .unwrap();
        let dir = scratch.path().join("served");
        let port = free_ports(1)[0];
        let args = [
            "serve".to_string(),
            "-dir".into(),
            dir.display().to_string(),
            "-addr".into(),
            format!("127.0.0.1:{port}"),
        ];
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        let log = scratch.path().join("serve.log");
        let mut proc = Proc::spawn(
            "memsync serve",
            Path::new(common::BIN),
            &args,
            &log,
            &[],
            scratch.path(),
        );
        proc.wait_ready(Duration::from_secs(30), || listening(port));
        Serve {
            _proc: proc,
            _scratch: scratch,
            dir,
            url: format!("http://127.0.0.1:{port}"),
        }
    })
}

fn write_new(p: &Path, data: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::File::create_new(p).unwrap();
    f.write_all(data).unwrap();
}
