//! The request side of HTTP/1.1 as the `s3` phase's counting proxy reads it: request heads one
//! after the other, bodies skipped by their framing, and S3 requests named by kind. Pure: bytes
//! in, events out.

/// The kind of S3 request, as the bench reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Put,
    Get,
    List,
    Delete,
    Head,
    Post,
    Other,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 7] = [
        Kind::Put,
        Kind::Get,
        Kind::List,
        Kind::Delete,
        Kind::Head,
        Kind::Post,
        Kind::Other,
    ];

    /// Lower-case name for figure keys.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Put => "put",
            Kind::Get => "get",
            Kind::List => "list",
            Kind::Delete => "delete",
            Kind::Head => "head",
            Kind::Post => "post",
            Kind::Other => "other",
        }
    }
}

/// Classifies a request by method and target. A GET of a bucket (path-style `/bucket`) or with
/// `list-type=` is a listing (ListObjectsV2, ListObjects, ListMultipartUploads); a POST with a
/// `delete` parameter is a batch delete (DeleteObjects) and counts as DELETE; other POSTs are
/// the multipart calls (create, complete).
pub fn classify(method: &str, target: &str) -> Kind {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    // An absolute-form target (`http://host/path`) is reduced to its path.
    let path = match path.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => path,
    };
    let params = || query.split('&').map(|p| p.split('=').next().unwrap_or(""));
    match method {
        "GET"
            if params().any(|p| p == "list-type")
                || path
                    .trim_matches('/')
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .count()
                    <= 1 =>
        {
            Kind::List
        }
        "GET" => Kind::Get,
        "PUT" => Kind::Put,
        "DELETE" => Kind::Delete,
        "HEAD" => Kind::Head,
        "POST" if params().any(|p| p == "delete") => Kind::Delete,
        "POST" => Kind::Post,
        _ => Kind::Other,
    }
}

/// What the parser found in the client's byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A request head: method, target, and how its body is framed (`len=N`, `chunked`, and
    /// `+aws-chunked` when its content is SigV4-streamed; empty without a body).
    Request {
        method: String,
        target: String,
        framing: String,
    },
    /// This many bytes of request body (chunk framing not counted).
    Body(u64),
    /// The stream is not HTTP/1.1 the parser understands; it stops reading it.
    Lost(String),
}

/// The longest head accepted (SigV4 heads are 1-2 KB).
const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug)]
enum State {
    Head,
    Fixed(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailer,
    Lost,
}

/// An incremental parser of the request side of an HTTP/1.1 connection: heads one after the
/// other (keep-alive, pipelining), each body skipped by `Content-Length` or by its chunked
/// framing (`Transfer-Encoding: chunked`; `aws-chunked` content lies inside either framing).
#[derive(Debug)]
pub struct Parser {
    state: State,
    buf: Vec<u8>,
}

impl Default for Parser {
    fn default() -> Self {
        Parser {
            state: State::Head,
            buf: Vec::new(),
        }
    }
}

impl Parser {
    /// Feeds the next bytes of the stream; `out` gets what they complete.
    pub fn feed(&mut self, mut data: &[u8], out: &mut impl FnMut(Event)) {
        while !data.is_empty() {
            match self.state {
                State::Lost => return,
                State::Fixed(n) => {
                    let k = n.min(data.len() as u64);
                    out(Event::Body(k));
                    data = &data[k as usize..];
                    self.state = if n == k {
                        State::Head
                    } else {
                        State::Fixed(n - k)
                    };
                }
                State::ChunkData(n) => {
                    let k = n.min(data.len() as u64);
                    out(Event::Body(k));
                    data = &data[k as usize..];
                    self.state = if n == k {
                        State::ChunkEnd
                    } else {
                        State::ChunkData(n - k)
                    };
                }
                State::Head | State::ChunkSize | State::ChunkEnd | State::Trailer => {
                    // Line-oriented states: gather up to the end of what they need.
                    let need: &[u8] = if matches!(self.state, State::Head) {
                        b"\r\n\r\n"
                    } else {
                        b"\r\n"
                    };
                    let old = self.buf.len();
                    self.buf.extend_from_slice(data);
                    let from = old.saturating_sub(need.len() - 1);
                    let Some(at) = find(&self.buf[from..], need).map(|i| from + i) else {
                        data = &[];
                        if self.buf.len() > MAX_HEAD {
                            self.lose("a head or chunk line past 64 KiB", out);
                        }
                        continue;
                    };
                    let end = at + need.len();
                    // Bytes past the element go back to the loop.
                    data = &data[end.saturating_sub(old)..];
                    let line = std::mem::take(&mut self.buf);
                    self.element(&line[..at], out);
                }
            }
        }
    }

    fn lose(&mut self, why: &str, out: &mut impl FnMut(Event)) {
        self.state = State::Lost;
        self.buf = Vec::new();
        out(Event::Lost(why.to_string()));
    }

    /// A complete head (without its blank line) or line (without its CRLF).
    fn element(&mut self, el: &[u8], out: &mut impl FnMut(Event)) {
        match self.state {
            State::Head => {
                // Blank lines between requests are allowed (RFC 9112 §2.2).
                let el = trim_leading_crlf(el);
                if el.is_empty() {
                    return;
                }
                let text = String::from_utf8_lossy(el);
                let mut lines = text.split("\r\n");
                let first = lines.next().unwrap_or("");
                let mut parts = first.split(' ');
                let (Some(method), Some(target), Some(version)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return self.lose(&format!("not a request line: {first:?}"), out);
                };
                if !version.starts_with("HTTP/1.") {
                    return self.lose(&format!("not HTTP/1.x: {first:?}"), out);
                }
                let (mut length, mut chunked, mut aws) = (0u64, false, false);
                for h in lines {
                    let Some((name, value)) = h.split_once(':') else {
                        continue;
                    };
                    let value = value.trim();
                    if name.eq_ignore_ascii_case("content-length") {
                        let Ok(n) = value.parse() else {
                            return self.lose(&format!("bad Content-Length {value:?}"), out);
                        };
                        length = n;
                    } else if name.eq_ignore_ascii_case("transfer-encoding") {
                        chunked = value
                            .rsplit(',')
                            .next()
                            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
                    } else if name.eq_ignore_ascii_case("content-encoding") {
                        aws = value.to_ascii_lowercase().contains("aws-chunked");
                    }
                }
                let mut framing = match (chunked, length) {
                    (true, _) => "chunked".to_string(),
                    (false, 0) => String::new(),
                    (false, n) => format!("len={n}"),
                };
                if aws {
                    framing.push_str("+aws-chunked");
                }
                out(Event::Request {
                    method: method.to_string(),
                    target: target.to_string(),
                    framing,
                });
                // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3).
                self.state = if chunked {
                    State::ChunkSize
                } else if length > 0 {
                    State::Fixed(length)
                } else {
                    State::Head
                };
            }
            State::ChunkSize => {
                let text = String::from_utf8_lossy(el);
                let hex = text.split(';').next().unwrap_or("").trim();
                match u64::from_str_radix(hex, 16) {
                    Ok(0) => self.state = State::Trailer,
                    Ok(n) => self.state = State::ChunkData(n),
                    Err(_) => self.lose(&format!("bad chunk size {hex:?}"), out),
                }
            }
            State::ChunkEnd if el.is_empty() => self.state = State::ChunkSize,
            State::ChunkEnd => self.lose("chunk data longer than its size", out),
            // Trailer fields until the blank line that ends the request.
            State::Trailer if el.is_empty() => self.state = State::Head,
            State::Trailer => {}
            State::Fixed(_) | State::ChunkData(_) | State::Lost => {}
        }
    }
}

fn trim_leading_crlf(mut b: &[u8]) -> &[u8] {
    while let Some(rest) = b.strip_prefix(b"\r\n") {
        b = rest;
    }
    b
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
#[path = "httphead_tests.rs"]
mod tests;
