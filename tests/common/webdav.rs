//! A real WebDAV server on 127.0.0.1: nginx with its dav module (PUT, DELETE, MKCOL, COPY,
//! MOVE) and the dav-ext module (PROPFIND, OPTIONS), installed by scripts/harness.sh, run as a
//! foreground process with its own configuration, logs and temp files in a temporary directory.
//! Cheap to start (milliseconds, a few MB), so tests may start their own; [`shared`] serves a
//! whole test binary.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::server::{Proc, free_ports, listening, require, write_file};

const NGINX: &str = "/usr/sbin/nginx";
const DAV_EXT: &str = "/usr/lib/nginx/modules/ngx_http_dav_ext_module.so";

/// One nginx WebDAV server; files live under [`root`](Self::root).
pub struct WebDav {
    proc: Option<Proc>,
    dir: tempfile::TempDir,
    port: u16,
    auth: Option<(String, String)>,
}

/// The server (without auth) shared by every test of this test binary, started on first use;
/// killed, its files removed, when the test binary exits.
pub fn shared() -> &'static WebDav {
    static DAV: OnceLock<WebDav> = OnceLock::new();
    DAV.get_or_init(WebDav::start)
}

impl WebDav {
    /// A server without authentication.
    pub fn start() -> WebDav {
        WebDav::launch(None)
    }

    /// A server requiring HTTP Basic auth with this user and password.
    pub fn start_with_auth(user: &str, password: &str) -> WebDav {
        WebDav::launch(Some((user.to_string(), password.to_string())))
    }

    fn launch(auth: Option<(String, String)>) -> WebDav {
        require(Path::new(NGINX), "nginx");
        require(
            Path::new(DAV_EXT),
            "nginx's WebDAV PROPFIND module (libnginx-mod-http-dav-ext)",
        );
        let dir = tempfile::Builder::new()
            .prefix("memsync-dav-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        for sub in ["root", "tmp", "logs"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let auth_conf = match &auth {
            Some((user, password)) => {
                let hash = apr1(password);
                write_file(&d.join("htpasswd"), &format!("{user}:{hash}\n"));
                format!(
                    "auth_basic \"memsync test\"; auth_basic_user_file {};",
                    d.join("htpasswd").display()
                )
            }
            None => String::new(),
        };
        // A port taken between our probe and nginx's bind makes nginx exit: try a few.
        for attempt in 0.. {
            let port = free_ports(1)[0];
            write_file(&d.join("nginx.conf"), &config(d, port, &auth_conf));
            let args = [
                "-p".into(),
                d.display().to_string(),
                "-c".into(),
                d.join("nginx.conf").display().to_string(),
                "-e".into(),
                d.join("logs/error.log").display().to_string(),
                "-g".into(),
                "daemon off;".to_string(),
            ];
            let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
            let log = d.join("logs/nginx.out");
            let mut p = Proc::spawn("nginx", Path::new(NGINX), &args, &log, &[], d);
            let t0 = std::time::Instant::now();
            while !listening(port) && p.exited().is_none() && t0.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            let in_use = p.exited().is_some()
                && std::fs::read_to_string(d.join("logs/error.log"))
                    .unwrap_or_default()
                    .contains("Address already in use");
            if in_use && attempt < 4 {
                continue;
            }
            p.wait_ready(Duration::from_secs(10), || listening(port));
            return WebDav {
                proc: Some(p),
                dir,
                port,
                auth,
            };
        }
        unreachable!()
    }

    /// The server's base URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The replica URL of `prefix` (no credentials in it).
    pub fn url(&self, prefix: &str) -> String {
        format!("{}/{prefix}", self.endpoint())
    }

    /// One item of a database's `replicas:` list (6-space indent, as [`Scene`](super::Scene)
    /// writes its config: pass it in `extra_replica`); credentials in the URL when the server
    /// has auth.
    pub fn replica_item(&self, name: &str, prefix: &str) -> String {
        let url = match &self.auth {
            Some((u, p)) => self
                .url(prefix)
                .replacen("http://", &format!("http://{u}:{p}@"), 1),
            None => self.url(prefix),
        };
        format!("      - name: {name}\n        type: http\n        url: {url}\n")
    }

    /// User and password, for a server started with auth.
    pub fn auth(&self) -> Option<(&str, &str)> {
        self.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The directory served, to look at or plant files behind the server's back.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The last lines of the error log.
    pub fn log_tail(&self) -> String {
        super::server::log_tail(&self.dir.path().join("logs/error.log"), 40)
    }

    /// Kills nginx (as a crash or an outage); the files stay.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }
}

fn config(d: &Path, port: u16, auth_conf: &str) -> String {
    let d = d.display();
    // Run as root, nginx's workers would switch to `nobody` and could not write into our
    // directories; as anyone else `user` is ignored.
    let user = if rustix::process::geteuid().is_root() {
        "user root root;"
    } else {
        ""
    };
    format!(
        r#"load_module {DAV_EXT};
{user}
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log info;
events {{ worker_connections 128; }}
http {{
    access_log {d}/logs/access.log;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    client_max_body_size 0;
    server {{
        listen 127.0.0.1:{port};
        root {d}/root;
        location / {{
            dav_methods PUT DELETE MKCOL COPY MOVE;
            dav_ext_methods PROPFIND OPTIONS;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
            {auth_conf}
        }}
        # An append-only backup target: DELETE answers 405.
        location /append-only/ {{
            dav_methods PUT MKCOL;
            dav_ext_methods PROPFIND OPTIONS;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
            {auth_conf}
        }}
    }}
}}
"#
    )
}

/// An htpasswd hash (Apache MD5) of `password`, by `openssl passwd -apr1`.
fn apr1(password: &str) -> String {
    let out = Command::new("openssl")
        .args(["passwd", "-apr1", password])
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(out.status.success(), "openssl passwd -apr1 failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
