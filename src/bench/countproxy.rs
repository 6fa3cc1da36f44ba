//! A counting TCP proxy for the `s3` phase: it sits between one replicator and the S3 server,
//! forwards bytes both ways untouched, and reads the HTTP/1.1 request heads that flow towards
//! the server ([`httphead`](super::httphead)), so the bench can say how many requests of each
//! kind a tool made and how many bytes it sent. A byte-level proxy (not an HTTP one) changes
//! nothing the tools see: the `Host` they sign is the one the server receives.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::httphead::{Event, Kind, Parser, classify};

/// Running totals, updated as bytes pass.
#[derive(Debug, Default)]
pub struct Counts {
    requests: [AtomicU64; Kind::ALL.len()],
    body_up: AtomicU64,
    wire_up: AtomicU64,
    wire_down: AtomicU64,
    lost: AtomicU64,
}

/// The totals at one moment; two of them subtract to a window's figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tally {
    /// Requests per kind, in [`Kind::ALL`] order.
    pub requests: [u64; Kind::ALL.len()],
    /// Request body bytes.
    pub body_up: u64,
    /// Every byte towards the server (heads and framing included).
    pub wire_up: u64,
    /// Every byte towards the client.
    pub wire_down: u64,
    /// Connections whose requests could no longer be read (they are then only forwarded).
    pub lost: u64,
}

impl Tally {
    /// Requests of one kind.
    pub fn of(&self, k: Kind) -> u64 {
        self.requests[Kind::ALL.iter().position(|x| *x == k).unwrap_or(0)]
    }

    /// All requests.
    pub fn total(&self) -> u64 {
        self.requests.iter().sum()
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Tally) -> Tally {
        let mut t = *self;
        for (a, b) in t.requests.iter_mut().zip(earlier.requests) {
            *a -= b;
        }
        t.body_up -= earlier.body_up;
        t.wire_up -= earlier.wire_up;
        t.wire_down -= earlier.wire_down;
        t.lost -= earlier.lost;
        t
    }
}

impl Counts {
    fn record(&self, e: &Event) {
        match e {
            Event::Request { method, target, .. } => {
                let k = classify(method, target);
                let i = Kind::ALL.iter().position(|x| *x == k).unwrap_or(0);
                self.requests[i].fetch_add(1, Ordering::Relaxed);
            }
            Event::Body(n) => {
                self.body_up.fetch_add(*n, Ordering::Relaxed);
            }
            Event::Lost(_) => {
                self.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The totals now.
    pub fn tally(&self) -> Tally {
        let mut t = Tally::default();
        for (a, b) in t.requests.iter_mut().zip(&self.requests) {
            *a = b.load(Ordering::Relaxed);
        }
        t.body_up = self.body_up.load(Ordering::Relaxed);
        t.wire_up = self.wire_up.load(Ordering::Relaxed);
        t.wire_down = self.wire_down.load(Ordering::Relaxed);
        t.lost = self.lost.load(Ordering::Relaxed);
        t
    }
}

/// A running proxy on 127.0.0.1 (its own one-thread runtime; stopped on drop).
pub struct CountProxy {
    rt: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
    counts: Arc<Counts>,
    logger: Option<std::thread::JoinHandle<()>>,
}

impl CountProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`; one line
    /// per request (`<ms since start> <method> <target> <body framing>`) goes to `log`.
    pub fn start(upstream: SocketAddr, log: &Path) -> std::io::Result<CountProxy> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("bench-proxy")
            .enable_all()
            .build()?;
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counts::default());
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let mut file = std::io::BufWriter::new(std::fs::File::create(log)?);
        // The request log is written off the proxy's thread, flushed whenever it falls idle.
        let logger = std::thread::spawn(move || {
            use std::io::Write;
            while let Ok(line) = rx.recv() {
                let _ = writeln!(file, "{line}");
                while let Ok(line) = rx.try_recv() {
                    let _ = writeln!(file, "{line}");
                }
                let _ = file.flush();
            }
        });
        let c = counts.clone();
        rt.spawn(async move {
            let t0 = std::time::Instant::now();
            while let Ok((client, _)) = listener.accept().await {
                let (c, tx) = (c.clone(), tx.clone());
                tokio::spawn(async move {
                    if let Err(e) = relay(client, upstream, &c, &tx, t0).await {
                        let _ = tx.send(format!("# connection ended: {e}"));
                    }
                });
            }
        });
        Ok(CountProxy {
            rt: Some(rt),
            addr,
            counts,
            logger: Some(logger),
        })
    }

    /// Where the replicator connects.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The totals now.
    pub fn tally(&self) -> Tally {
        self.counts.tally()
    }
}

impl Drop for CountProxy {
    fn drop(&mut self) {
        // Its tasks, and with them every sender of the log, are dropped: the logger ends.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
        }
        if let Some(l) = self.logger.take() {
            let _ = l.join();
        }
    }
}

/// One connection: client→server through the parser, server→client counted.
async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    c: &Counts,
    log: &std::sync::mpsc::Sender<String>,
    t0: std::time::Instant,
) -> std::io::Result<()> {
    let server = TcpStream::connect(upstream).await?;
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let mut parser = Parser::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = cr.read(&mut buf).await?;
            if n == 0 {
                return sw.shutdown().await;
            }
            c.wire_up.fetch_add(n as u64, Ordering::Relaxed);
            parser.feed(&buf[..n], &mut |e| {
                match &e {
                    Event::Request {
                        method,
                        target,
                        framing,
                    } => {
                        let ms = t0.elapsed().as_millis();
                        let _ = log.send(format!("{ms} {method} {target} {framing}"));
                    }
                    Event::Lost(why) => {
                        let _ = log.send(format!("# stopped reading a connection: {why}"));
                    }
                    Event::Body(_) => {}
                }
                c.record(&e);
            });
            sw.write_all(&buf[..n]).await?;
        }
    };
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = sr.read(&mut buf).await?;
            if n == 0 {
                return cw.shutdown().await;
            }
            c.wire_down.fetch_add(n as u64, Ordering::Relaxed);
            cw.write_all(&buf[..n]).await?;
        }
    };
    let (a, b) = tokio::join!(up, down);
    a.and(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_subtract() {
        let c = Counts::default();
        c.record(&Event::Request {
            method: "PUT".into(),
            target: "/b/k".into(),
            framing: "len=10".into(),
        });
        c.record(&Event::Body(10));
        let a = c.tally();
        c.record(&Event::Request {
            method: "GET".into(),
            target: "/b?list-type=2".into(),
            framing: String::new(),
        });
        c.record(&Event::Body(5));
        let d = c.tally().since(&a);
        assert_eq!((d.of(Kind::List), d.of(Kind::Put), d.total()), (1, 0, 1));
        assert_eq!(d.body_up, 5);
    }
}
