//! A real S3 server on 127.0.0.1: SeaweedFS (`weed server -s3`, installed by
//! scripts/harness.sh), with SigV4 credentials checked and conditional writes enforced.
//!
//! It takes seconds to start and some 100 MB of memory, so a test binary normally shares one
//! ([`shared`]) and gives each test its own prefix ([`unique_prefix`]); tests that stop the
//! server (outages) start their own ([`SeaweedS3::start`]).

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::server::{Proc, free_ports, harness, require, write_file};

pub const ACCESS_KEY: &str = "testkey";
pub const SECRET_KEY: &str = "testsecret";
pub const REGION: &str = "us-east-1";
/// The bucket every server is started with.
pub const BUCKET: &str = "memsync-test";
/// An object written at start: once it reads back, the volumes holding data are served again
/// (after a restart, S3 answers before the volume server has told the master its volumes).
const PROBE: &str = "memsync-harness-probe";

/// One SeaweedFS server (master, volume, filer and S3 gateway in one process).
pub struct SeaweedS3 {
    proc: Option<Proc>,
    dir: tempfile::TempDir,
    /// master, master grpc, volume, volume grpc, filer, filer grpc, s3, s3 grpc.
    ports: Vec<u16>,
}

/// The server shared by every test of this test binary, started on first use. It is killed
/// (and its data removed) when the test binary exits.
pub fn shared() -> &'static SeaweedS3 {
    static S3: OnceLock<SeaweedS3> = OnceLock::new();
    S3.get_or_init(SeaweedS3::start)
}

/// A key prefix no other test of this binary uses: `<name>-<n>`.
pub fn unique_prefix(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{name}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// A temporary directory for one server: its credentials file and an empty data directory.
fn scratch_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("memsync-s3-")
        .tempdir()
        .unwrap();
    write_file(
        &dir.path().join("s3.json"),
        &format!(
            r#"{{"identities":[{{"name":"admin","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        ),
    );
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    dir
}

impl SeaweedS3 {
    /// Starts a server with bucket [`BUCKET`] on free ports, data in a temporary directory;
    /// returns once the bucket exists.
    pub fn start() -> SeaweedS3 {
        let mut s = SeaweedS3 {
            proc: None,
            dir: scratch_dir(),
            ports: free_ports(8),
        };
        // A port taken between our probe and SeaweedFS's bind makes it exit: try others, in a
        // fresh directory (a server that died at startup may have had its directory removed
        // by its guard, as CI saw once: the retry then failed on the missing data directory).
        for attempt in 0.. {
            if s.launch(attempt < 4) {
                break;
            }
            s.proc = None;
            s.ports = free_ports(8);
            s.dir = scratch_dir();
        }
        s.create_bucket(BUCKET);
        let probe = s.dir.path().join("s3.json");
        let (st, body) = signed(&["-T", probe.to_str().unwrap(), &s.probe_url()]);
        assert_eq!(st, 200, "writing the probe object: {body}");
        s
    }

    fn probe_url(&self) -> String {
        format!("{}/{BUCKET}/{PROBE}", self.endpoint())
    }

    /// Starts the process and waits until it serves; false if it exited during startup and
    /// `may_fail` (the caller tries again, on fresh internal ports).
    fn launch(&mut self, may_fail: bool) -> bool {
        let weed = harness().join("venv/bin/weed");
        require(&weed, "SeaweedFS (weed)");
        let d = self.dir.path();
        let p = &self.ports;
        let mut args: Vec<String> = vec![
            "server".into(),
            format!("-dir={}", d.join("data").display()),
            // Loopback only, no telemetry (the defaults are the host's address, 0.0.0.0, on).
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            "-master.telemetry=false".into(),
            "-s3".into(),
            "-iam=false".into(),
            "-webdav=false".into(),
            format!("-master.port={}", p[0]),
            format!("-master.port.grpc={}", p[1]),
            format!("-volume.port={}", p[2]),
            format!("-volume.port.grpc={}", p[3]),
            format!("-filer.port={}", p[4]),
            format!("-filer.port.grpc={}", p[5]),
            format!("-s3.port={}", p[6]),
            format!("-s3.port.grpc={}", p[7]),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            format!("-s3.config={}", d.join("s3.json").display()),
            format!("-filer.localSocket={}", d.join("filer.sock").display()),
            format!("-s3.localSocket={}", d.join("s3.sock").display()),
            // Small volumes, as many as the disk allows; no wait before a stop.
            "-master.volumeSizeLimitMB=64".into(),
            "-volume.max=0".into(),
            "-volume.preStopSeconds=0".into(),
        ];
        // A resume: the server has run on this data before.
        let resume = d.join("data").read_dir().unwrap().next().is_some();
        if resume {
            // A restarted master elects itself (the only peer) in a second, not ten. (Not on a
            // first start: it would elect itself just after the volume server's first
            // heartbeat, which then waits 5 s to try again.)
            args.push("-master.electionTimeout=1s".into());
        }
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        // SeaweedFS puts its gRPC sockets in /tmp whatever the flags say; a killed server
        // leaves them behind.
        let mut leftovers = Vec::new();
        for (kind, port) in [
            ("master", p[1]),
            ("volume", p[3]),
            ("filer", p[5]),
            ("s3", p[7]),
        ] {
            leftovers.push(PathBuf::from(format!(
                "/tmp/seaweedfs-{kind}-grpc-{port}.sock"
            )));
        }
        let proc = Proc::spawn(
            "SeaweedFS",
            &weed,
            &args,
            &d.join("weed.log"),
            &leftovers,
            d,
        );
        self.proc = Some(proc);
        let port = self.ports[6];
        let probe_url = self.probe_url();
        let proc = self.proc.as_mut().unwrap();
        let ready = proc.wait_ready_or_exit(Duration::from_secs(60), || {
            super::server::listening(port)
                && if resume {
                    signed(&["--max-time", "3", &probe_url]).0 == 200
                } else {
                    signed_status("GET", &format!("http://127.0.0.1:{port}/")) == 200
                }
        });
        if ready {
            return true;
        }
        let taken = proc.port_was_taken();
        // A port taken is the usual cause; a server that exits before it writes a line (seen
        // once in CI when resuming under load) is tried again the same way, saying so.
        if may_fail {
            if !taken {
                eprintln!(
                    "SeaweedFS exited during startup; trying again:\n{}",
                    self.log_tail()
                );
            }
            self.proc = None;
            return false;
        }
        panic!(
            "SeaweedFS exited during startup{}:\n{}",
            if taken { " (a port was taken)" } else { "" },
            self.log_tail()
        );
    }

    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[6])
    }

    /// The replica URL of `prefix` in [`BUCKET`], in memsync's (and Litestream's) URL form.
    pub fn url(&self, prefix: &str) -> String {
        self.url_in(BUCKET, prefix)
    }

    /// The replica URL of `prefix` in `bucket`.
    pub fn url_in(&self, bucket: &str, prefix: &str) -> String {
        format!(
            "s3://{bucket}/{prefix}?endpoint={}&region={REGION}&forcePathStyle=true",
            self.endpoint()
        )
    }

    /// One item of a database's `replicas:` list (6-space indent, as [`Scene`](super::Scene)
    /// writes its config: pass it in `extra_replica`), credentials included.
    pub fn replica_item(&self, name: &str, prefix: &str) -> String {
        format!(
            "      - name: {name}\n        type: s3\n        bucket: {BUCKET}\n        path: {prefix}\n        endpoint: {}\n        region: {REGION}\n        force-path-style: true\n        access-key-id: {ACCESS_KEY}\n        secret-access-key: {SECRET_KEY}\n",
            self.endpoint()
        )
    }

    /// Environment that gives a `memsync` process the server's credentials.
    pub fn env(&self) -> [(&'static str, &'static str); 2] {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ]
    }

    /// Creates `bucket` (a signed PUT); an existing bucket is fine.
    pub fn create_bucket(&self, bucket: &str) {
        let url = format!("{}/{bucket}", self.endpoint());
        let st = signed_status("PUT", &url);
        assert!(
            st == 200 || st == 409,
            "creating bucket {bucket}: HTTP {st}:\n{}",
            self.log_tail()
        );
    }

    /// SIGKILL (as a crash or an outage); the data stays. [`resume`](Self::resume) starts it
    /// again.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Starts the server again on the same ports and data, after [`stop`](Self::stop).
    pub fn resume(&mut self) {
        assert!(self.proc.is_none(), "SeaweedFS is running");
        // While it was down, another server or a client's ephemeral port may have taken one of
        // its ports. Clients know only the S3 port; the internal ones (master, volume, filer
        // and their gRPC) can move, and the volume server tells the master where it is.
        for attempt in 0.. {
            if self.launch(attempt < 4) {
                return;
            }
            let fresh = free_ports(8);
            for (i, p) in fresh.into_iter().enumerate() {
                if i != 6 {
                    self.ports[i] = p;
                }
            }
        }
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        super::server::log_tail(&self.dir.path().join("weed.log"), 40)
    }
}

impl SeaweedS3 {
    /// Multipart uploads begun and neither completed nor aborted under `prefix` of [`BUCKET`]
    /// (a client must abort the ones it gives up).
    pub fn pending_uploads(&self, prefix: &str) -> usize {
        // Query parameters sorted, `/` encoded and `uploads=` spelled out: the form curl
        // signs as SigV4 canonicalizes it.
        assert!(
            prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/-_.".contains(c)),
            "prefix {prefix:?} needs more encoding"
        );
        let url = format!(
            "{}/{BUCKET}?prefix={}&uploads=",
            self.endpoint(),
            prefix.replace('/', "%2F")
        );
        let (st, body) = signed(&["-X", "GET", &url]);
        assert_eq!(st, 200, "listing multipart uploads: {body}");
        body.matches("<Upload>").count()
    }
}

/// A SigV4-signed curl request (`args` after the signing ones): (status, body).
pub fn signed(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "--noproxy",
            "*",
            "--max-time",
            "20",
            "-w",
            "\n%{http_code}",
        ])
        .args(["--aws-sigv4", &format!("aws:amz:{REGION}:s3")])
        .args(["--user", &format!("{ACCESS_KEY}:{SECRET_KEY}")])
        .args(args)
        .output()
        .expect("curl (Debian package curl)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.parse().unwrap_or(0), body.to_string())
}

/// Status of a SigV4-signed request without a body, 0 if nothing answered.
pub fn signed_status(method: &str, url: &str) -> u16 {
    signed(&["-X", method, url]).0
}

/// Runs memsync with the S3 server's credentials in the environment.
pub fn run_env(args: &[&str]) -> std::process::Output {
    std::process::Command::new(super::BIN)
        .envs([
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ])
        .args(args)
        .output()
        .unwrap()
}

/// Restores the newest state from `url` into `dir/name` and opens it, checked sound.
pub fn restore_from(dir: &std::path::Path, name: &str, url: &str) -> rusqlite::Connection {
    let out = dir.join(name);
    let o = run_env(&["restore", "-o", out.to_str().unwrap(), url]);
    assert!(
        o.status.success(),
        "restore from {url} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    super::check_sound(&out)
}

/// The replica client of `url`, with the S3 server's credentials.
pub fn client_of(url: &str) -> memsync::replica::ReplicaClient {
    use memsync::config::ReplicaTarget;
    let mut cfg = memsync::config::replica_from_url(url).unwrap();
    if let ReplicaTarget::S3 {
        access_key_id,
        secret_access_key,
        ..
    } = &mut cfg.target
    {
        *access_key_id = Some(ACCESS_KEY.into());
        *secret_access_key = Some(SECRET_KEY.into());
    }
    memsync::replica::client_for(&cfg, false).unwrap()
}

/// Every file a replica holds.
pub fn listing(url: &str) -> Vec<memsync::formats::ObjectKey> {
    let rt = memsync::runtime().unwrap();
    rt.block_on(client_of(url).list()).unwrap()
}
