//! A SeaweedFS S3 server for the `s3` phase (`weed server -s3` from the test harness, as
//! tests/common/s3.rs starts it): loopback only, telemetry off, free ports, SigV4 credentials
//! from an identities file, one bucket. It runs in its own process group under a guard shell
//! that kills it when the bench exits however it exits; dropping [`Seaweed`] kills it at once.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "testkey";
pub const SECRET_KEY: &str = "testsecret";
pub const REGION: &str = "us-east-1";
pub const BUCKET: &str = "memsync-bench";

/// Kills the server when the pipe on fd 3 (held by the bench) reaches end of file.
const GUARD: &str = r#"exec 3<&0
leftovers=$1; shift
"$@" </dev/null 3<&- &
server=$!
( read -r _ <&3; kill -KILL "$server" 2>/dev/null; rm -f -- $leftovers; kill -KILL 0 ) &
wait "$server"
"#;

/// Where scripts/harness.sh installs `weed`.
pub fn weed_path() -> Option<PathBuf> {
    let home = std::env::var_os("MEMSYNC_HARNESS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/memsync-harness"))
        })?;
    Some(home.join("venv/bin/weed"))
}

/// The `weed` binary, or the one-line error that says how to get it.
pub fn require_weed() -> Result<PathBuf, String> {
    match weed_path() {
        Some(p) if p.is_file() => Ok(p),
        p => Err(format!(
            "the s3 phase needs SeaweedFS ({} missing): run scripts/harness.sh",
            p.map_or("$MEMSYNC_HARNESS/venv/bin/weed".into(), |p| p
                .display()
                .to_string())
        )),
    }
}

/// A running server.
pub struct Seaweed {
    child: Child,
    _guard: ChildStdin,
    dir: PathBuf,
    /// master, master grpc, volume, volume grpc, filer, filer grpc, s3, s3 grpc.
    ports: Vec<u16>,
}

impl Seaweed {
    /// Starts a server with its data under `dir` (recreated), creates [`BUCKET`] and writes one
    /// object (the first write allocates volumes: not on the first tool's clock).
    pub fn start(dir: &Path) -> Result<Seaweed, String> {
        let weed = require_weed()?;
        for s in ["s3.json", "data", "weed.log"] {
            let p = dir.join(s);
            let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(
            dir.join("s3.json"),
            format!(
                r#"{{"identities":[{{"name":"admin","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .map_err(|e| format!("{}: {e}", dir.display()))?;
        // A port taken between our probe and SeaweedFS's bind makes it exit: try others.
        let mut attempt = 0;
        loop {
            let mut s = Seaweed::launch(&weed, dir)?;
            match s.wait_ready(Duration::from_secs(60)) {
                Ok(()) => return s.prepare(),
                Err(_) if attempt < 3 && s.port_was_taken() => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    fn port_was_taken(&self) -> bool {
        std::fs::read_to_string(self.dir.join("weed.log"))
            .unwrap_or_default()
            .to_ascii_lowercase()
            .contains("address already in use")
    }

    fn launch(weed: &Path, dir: &Path) -> Result<Seaweed, String> {
        let ports: Vec<u16> = {
            let ls: Vec<TcpListener> = (0..8)
                .map(|_| TcpListener::bind("127.0.0.1:0"))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("free ports: {e}"))?;
            ls.iter()
                .map(|l| l.local_addr().map(|a| a.port()))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("free ports: {e}"))?
        };
        // A failed attempt's data went with it.
        std::fs::create_dir_all(dir.join("data")).map_err(|e| format!("{}: {e}", dir.display()))?;
        let p = &ports;
        let d = dir.display();
        let args = vec![
            "server".to_string(),
            format!("-dir={d}/data"),
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
            format!("-s3.config={d}/s3.json"),
            format!("-filer.localSocket={d}/filer.sock"),
            format!("-s3.localSocket={d}/s3.sock"),
            "-master.volumeSizeLimitMB=64".into(),
            "-volume.max=0".into(),
            "-volume.preStopSeconds=0".into(),
        ];
        // SeaweedFS puts its gRPC sockets in /tmp whatever the flags say.
        let leftovers: Vec<String> = [
            ("master", p[1]),
            ("volume", p[3]),
            ("filer", p[5]),
            ("s3", p[7]),
        ]
        .iter()
        .map(|(k, port)| format!("/tmp/seaweedfs-{k}-grpc-{port}.sock"))
        .collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("weed.log"))
            .map_err(|e| format!("{}/weed.log: {e}", dir.display()))?;
        let err = |e: std::io::Error| format!("starting {}: {e}", weed.display());
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(GUARD)
            .arg("sh")
            .arg(leftovers.join(" "))
            .arg(weed)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(log.try_clone().map_err(err)?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(err)?;
        let guard = child
            .stdin
            .take()
            .ok_or_else(|| "SeaweedFS guard: no stdin".to_string())?;
        Ok(Seaweed {
            child,
            _guard: guard,
            dir: dir.to_path_buf(),
            ports,
        })
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let t0 = Instant::now();
        let root = format!("{}/", self.endpoint());
        loop {
            if TcpStream::connect(self.s3_addr()).is_ok() && signed(&["-X", "GET", &root])?.0 == 200
            {
                return Ok(());
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                return Err(format!(
                    "SeaweedFS exited ({st}) during startup: {}",
                    self.log_tail()
                ));
            }
            if t0.elapsed() > limit {
                return Err(format!(
                    "SeaweedFS not ready after {limit:?}: {}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn prepare(self) -> Result<Seaweed, String> {
        let (st, body) = signed(&["-X", "PUT", &format!("{}/{BUCKET}", self.endpoint())])?;
        if st != 200 && st != 409 {
            return Err(format!(
                "SeaweedFS: creating bucket {BUCKET}: HTTP {st} {body}"
            ));
        }
        let probe = self.dir.join("s3.json");
        let url = format!("{}/{BUCKET}/bench-probe", self.endpoint());
        let (st, body) = signed(&["-T", &probe.display().to_string(), &url])?;
        if st != 200 {
            return Err(format!(
                "SeaweedFS: writing a probe object: HTTP {st} {body}"
            ));
        }
        Ok(self)
    }

    /// The S3 gateway's address.
    pub fn s3_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports[6]))
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.s3_addr())
    }

    fn log_tail(&self) -> String {
        let t = std::fs::read_to_string(self.dir.join("weed.log")).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        // While the group's leader (the guard shell) is not reaped its id is still ours.
        if matches!(self.child.try_wait(), Ok(None)) {
            if let Some(pg) = rustix::process::Pid::from_raw(self.child.id() as i32) {
                let _ = rustix::process::kill_process_group(pg, rustix::process::Signal::KILL);
            }
            let _ = self.child.wait();
        }
        for k in [("master", 1), ("volume", 3), ("filer", 5), ("s3", 7)] {
            let _ = std::fs::remove_file(format!(
                "/tmp/seaweedfs-{}-grpc-{}.sock",
                k.0, self.ports[k.1]
            ));
        }
        // The objects are not kept (hundreds of MB); the log is.
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
        for sock in ["filer.sock", "s3.sock"] {
            let _ = std::fs::remove_file(self.dir.join(sock));
        }
    }
}

/// A SigV4-signed curl request: (status, body).
fn signed(args: &[&str]) -> Result<(u16, String), String> {
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
        .map_err(|e| format!("the s3 phase needs curl (Debian package curl): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    Ok((code.parse().unwrap_or(0), body.to_string()))
}
