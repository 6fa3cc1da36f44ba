//! A TCP proxy in front of a real server, for fault injection: forward (optionally slowly),
//! refuse connections, answer 500, answer garbage, cut an answer off mid-body, or close
//! without one. The mode is read per connection.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

pub const FORWARD: u8 = 0;
pub const REFUSE: u8 = 1;
pub const ERROR_500: u8 = 2;
pub const GARBAGE: u8 = 3;
pub const CUT: u8 = 4;
/// 500 to `GET /api/memories/{hash}`, everything else forwarded.
pub const GET_MEMORY_500: u8 = 5;
/// The request read, then the connection closed without an answer.
pub const DROP: u8 = 6;

pub struct Proxy {
    pub port: u16,
    mode: Arc<AtomicU8>,
    delay_ms: Arc<AtomicU64>,
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(FORWARD));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (m, d) = (mode.clone(), delay_ms.clone());
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { continue };
                let (m, d) = (m.load(Ordering::SeqCst), d.clone());
                std::thread::spawn(move || serve(c, upstream, m, d));
            }
        });
        Proxy {
            port,
            mode,
            delay_ms,
        }
    }

    pub fn set_mode(&self, m: u8) {
        self.mode.store(m, Ordering::SeqCst);
    }

    /// Delay before each client→server chunk is forwarded.
    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::SeqCst);
    }
}

fn read_request(c: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    c.set_read_timeout(Some(Duration::from_secs(5))).ok();
    while let Ok(n) = c.read(&mut chunk) {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                break;
            }
        }
    }
    buf
}

/// Whether the request waiting on `c` (peeked, not read) is `GET /api/memories/{hash}`.
fn asks_for_a_memory(c: &TcpStream) -> bool {
    let want = b"GET /api/memories/";
    let mut head = [0u8; 18];
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        match c.peek(&mut head) {
            Ok(n) if n >= want.len() => return &head[..] == want,
            Ok(0) | Err(_) => return false,
            Ok(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    false
}

fn answer(mut c: TcpStream, status: &str, ctype: &str, body: &str) {
    let _ = read_request(&mut c);
    let _ = write!(
        c,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = c.shutdown(Shutdown::Both);
}

fn serve(c: TcpStream, upstream: u16, mode: u8, delay: Arc<AtomicU64>) {
    match mode {
        REFUSE => drop(c),
        DROP => {
            let mut c = c;
            let mut head = [0u8; 65536];
            let _ = c.read(&mut head);
        }
        ERROR_500 => answer(
            c,
            "500 Internal Server Error",
            "application/json",
            r#"{"detail":"injected failure"}"#,
        ),
        GARBAGE => answer(
            c,
            "200 OK",
            "text/html",
            "<html>this is not the memory service</html>",
        ),
        GET_MEMORY_500 if asks_for_a_memory(&c) => answer(
            c,
            "500 Internal Server Error",
            "application/json",
            r#"{"detail":"injected failure"}"#,
        ),
        // Any other request goes through alone, its connection closed after it (so the
        // client's next request comes on a new connection, and is looked at again).
        GET_MEMORY_500 => {
            let mut c = c;
            let req = read_request(&mut c);
            let Some(eol) = req.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let Ok(mut u) = TcpStream::connect(("127.0.0.1", upstream)) else {
                return;
            };
            let mut sent = req[..eol + 2].to_vec();
            sent.extend_from_slice(b"Connection: close\r\n");
            sent.extend_from_slice(&req[eol + 2..]);
            if u.write_all(&sent).is_ok() {
                let _ = std::io::copy(&mut u, &mut c);
            }
            let _ = c.shutdown(Shutdown::Both);
        }
        CUT => {
            let mut c = c;
            let _ = read_request(&mut c);
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"status\": \"hea"
            );
            let _ = c.shutdown(Shutdown::Both);
        }
        _ => {
            let Ok(u) = TcpStream::connect(("127.0.0.1", upstream)) else {
                return;
            };
            let (mut c2, mut u2) = (c.try_clone().unwrap(), u.try_clone().unwrap());
            let back = std::thread::spawn(move || {
                let _ = std::io::copy(&mut u2, &mut c2);
                let _ = c2.shutdown(Shutdown::Both);
            });
            let (mut c, mut u) = (c, u);
            let mut buf = [0u8; 16384];
            loop {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let d = delay.load(Ordering::SeqCst);
                        if d > 0 {
                            std::thread::sleep(Duration::from_millis(d));
                        }
                        if u.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = u.shutdown(Shutdown::Both);
            let _ = back.join();
        }
    }
}
