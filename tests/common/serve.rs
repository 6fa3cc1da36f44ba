//! A running `memsync serve` on 127.0.0.1 (port 0, read back from its first line), and a raw
//! HTTP/1.1 client for requests ordinary clients would normalise (`..`, `%2e%2e`) or would not
//! send (a body cut off halfway).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A `memsync serve` process; killed when dropped.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT` (or https).
    pub url: String,
    pub addr: SocketAddr,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

impl Server {
    /// Starts `memsync serve -dir DIR -addr 127.0.0.1:0 ARGS...` with `env` added; its output
    /// goes to `DIR.log` (beside the directory, never inside it).
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let log = dir.with_extension("log");
        let out = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(super::BIN)
            .env_remove("MEMSYNC_SERVE_API_KEY")
            .envs(env.iter().copied())
            .arg("serve")
            .arg("-dir")
            .arg(dir)
            .args(["-addr", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(rest) = text
                .lines()
                .find_map(|l| l.strip_prefix("serve: listening on "))
            {
                break rest.split(' ').next().unwrap().to_owned();
            }
            if let Some(st) = child.try_wait().unwrap() {
                panic!("memsync serve exited with {st}:\n{text}");
            }
            assert!(Instant::now() < deadline, "serve never listened:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let addr = url.split("://").nth(1).unwrap().parse().unwrap();
        Server {
            child: Some(child),
            url,
            addr,
            log,
        }
    }

    /// SIGTERM, then waits; the exit status and the output.
    pub fn stop(self) -> (ExitStatus, String) {
        self.stop_with(libc::SIGTERM)
    }

    /// Sends `sig`, then waits; the exit status and the output.
    pub fn stop_with(mut self, sig: i32) -> (ExitStatus, String) {
        let mut c = self.child.take().unwrap();
        // SAFETY: kill(2) takes two integers and reads or writes no memory of this process.
        unsafe {
            libc::kill(c.id() as i32, sig);
        }
        let st = c.wait().unwrap();
        (st, std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// Sends `request` as written (it should say `Connection: close`) and reads the answer.
    pub fn raw(&self, request: &[u8]) -> RawResponse {
        raw(self.addr, request)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An answer read off the socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Status line and headers.
    pub head: String,
    pub body: Vec<u8>,
}

/// Sends `request` to `addr` and reads until the server closes the connection.
pub fn raw(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // The server may answer (and close) before taking the whole request.
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer: {:?}", String::from_utf8_lossy(&buf)));
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    RawResponse {
        status,
        head,
        body: buf[split + 4..].to_vec(),
    }
}

/// A request with `Connection: close`, the headers given, and `body`.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "PUT" {
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

/// Every file (not directory) under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                todo.push(e.path());
            } else {
                out.push(
                    e.path()
                        .strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

/// The API key the tests give `serve`.
pub const KEY: &str = "k3y-for-tests";

/// A current-thread runtime for the async clients (reqwest, object_store).
pub fn rt() -> tokio::runtime::Runtime {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A plain HTTP client.
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A scratch directory with `root/` to serve and `outside/secret` beside it.
pub fn scene() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(tmp.path().join("outside")).unwrap();
    std::fs::write(tmp.path().join("outside/secret"), b"secret").unwrap();
    (tmp, root)
}

/// The `Authorization` header with [`KEY`].
pub fn bearer() -> (&'static str, String) {
    ("Authorization", format!("Bearer {KEY}"))
}

/// A self-signed certificate for 127.0.0.1, made by openssl (a test tool the harness checks).
pub fn make_cert(cert: &Path, key: &Path) {
    let o = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
        ])
        .arg(key)
        .arg("-out")
        .arg(cert)
        .output()
        .expect("openssl must be installed to run this test");
    assert!(
        o.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}
