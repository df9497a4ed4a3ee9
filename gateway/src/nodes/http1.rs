//! A minimal HTTP/1.1 client for the gateway's calls to nodes.
//!
//! Nodes are Meilisearch servers, asked a small set of requests: a JSON body or none, or
//! a large batch streamed in chunks. A general client's machinery (hyper's task and
//! channel per connection, its header maps, its pool's bookkeeping) cost 25–35 µs per
//! call, measured in docs/benchmarks.md, on a path whose whole budget is 300 µs. Here a
//! call writes its request from one buffer and reads the answer into one, on the
//! caller's own task, over a kept-alive connection from this thread's pool.

use crate::nodes::NodeBody;
use axum::body::Bytes;
use bytes::{Buf, BytesMut};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An idle connection older than this is closed instead of reused. Meilisearch itself
/// keeps connections open (actix-web with `KeepAlive::Os`), but what may stand in front of
/// a node (a proxy, a sidecar, actix-web's default) can close idle ones after 5 s: below
/// that, a node's side never closes a connection at the moment the gateway sends on it.
pub const IDLE_LIMIT: Duration = Duration::from_secs(4);
/// Idle connections kept per node, per pool.
const MAX_IDLE: usize = 64;
/// The largest answer head (status line and headers) accepted.
const MAX_HEAD: usize = 64 * 1024;
/// The most headers in an answer.
const MAX_HEADERS: usize = 64;
/// JSON bodies up to this size go out in the same write as the head.
const INLINE_BODY: usize = 16 * 1024;

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum Http1Error {
    /// The node address is not `http://host[:port]`.
    #[error("the address {0:?} is not an http:// URL (the gateway does not call nodes over TLS)")]
    Address(String),
    /// The path cannot be sent as a request target.
    #[error("invalid request path {0:?}")]
    Path(String),
    /// No connection could be opened.
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// Opening a connection took too long.
    #[error("cannot connect: no connection within {}", humantime::format_duration(*.0))]
    ConnectTimeout(Duration),
    /// The request could not be written.
    #[error("cannot send the request: {0}")]
    Write(std::io::Error),
    /// The answer could not be read.
    #[error("cannot read the answer: {0}")]
    Read(std::io::Error),
    /// The node closed the connection before its answer was complete.
    #[error("the connection closed before the answer was complete")]
    Closed,
    /// The answer is not valid HTTP/1.
    #[error("invalid answer: {0}")]
    Invalid(String),
}

/// A node's answer: status and body (decoded from chunks when sent so).
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Bytes,
}

/// Kept-alive connections, per node address (`host:port`). Every connection in a pool
/// belongs to one runtime's event loop: the gateway keeps one pool per HTTP thread.
pub struct Pool {
    idle: Mutex<HashMap<String, Vec<Idle>>>,
    connect_timeout: Duration,
}

struct Idle {
    stream: TcpStream,
    since: Instant,
}

/// How an exchange failed, and whether sending it again on a new connection is safe.
struct Failure {
    error: Http1Error,
    /// Nothing of the answer arrived and the node cannot have acted on the request: the
    /// request was not fully written, or the connection was closed with no answer.
    retry: bool,
}

impl Pool {
    /// An empty pool whose new connections time out after `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> Self {
        Self {
            idle: Mutex::new(HashMap::new()),
            connect_timeout,
        }
    }

    /// Sends one request to `address` (`http://host:port`) and reads the whole answer.
    /// `headers` are extra header lines, each ending in `\r\n`. A kept-alive connection
    /// that turns out closed is replaced once, for a body that can be sent again.
    pub async fn send(
        &self,
        address: &str,
        method: &http::Method,
        path: &str,
        headers: &[u8],
        body: Option<NodeBody>,
    ) -> Result<Answer, Http1Error> {
        let authority = address
            .strip_prefix("http://")
            .map(|rest| rest.trim_end_matches('/'))
            .filter(|a| !a.is_empty() && !a.contains('/'))
            .ok_or_else(|| Http1Error::Address(address.to_owned()))?;
        // A request target is visible ASCII, nothing else (http::Uri's rule, which the
        // node's parser applies too).
        if !path.starts_with('/') || !path.bytes().all(|b| (0x21..0x7f).contains(&b)) {
            return Err(Http1Error::Path(path.to_owned()));
        }
        let mut head = Vec::with_capacity(
            256 + headers.len()
                + match &body {
                    Some(NodeBody::Json(json)) if json.len() <= INLINE_BODY => json.len(),
                    _ => 0,
                },
        );
        head.extend_from_slice(method.as_str().as_bytes());
        head.push(b' ');
        head.extend_from_slice(path.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        head.extend_from_slice(authority.as_bytes());
        head.extend_from_slice(b"\r\n");
        head.extend_from_slice(headers);
        match &body {
            Some(NodeBody::Json(json)) => {
                head.extend_from_slice(b"content-type: application/json\r\ncontent-length: ");
                head.extend_from_slice(json.len().to_string().as_bytes());
                head.extend_from_slice(b"\r\n\r\n");
                if json.len() <= INLINE_BODY {
                    head.extend_from_slice(json);
                }
            }
            Some(NodeBody::Chunks(_)) => head.extend_from_slice(
                b"content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
            ),
            None if matches!(*method, http::Method::GET | http::Method::HEAD) => {
                head.extend_from_slice(b"\r\n")
            }
            None => head.extend_from_slice(b"content-length: 0\r\n\r\n"),
        }
        let no_body = *method == http::Method::HEAD;
        let mut body = body;
        let (mut stream, reused) = match self.checkout(authority) {
            Some(stream) => (stream, true),
            None => (self.connect(authority).await?, false),
        };
        let mut failure = match exchange(&mut stream, &head, &mut body, no_body).await {
            Ok((answer, reusable)) => {
                if reusable {
                    self.checkin(authority, stream);
                }
                return Ok(answer);
            }
            Err(failure) => failure,
        };
        // A kept-alive connection the node had closed: once more on a new one.
        let replayable = !matches!(body, Some(NodeBody::Chunks(_)));
        if reused && failure.retry && replayable {
            let mut stream = self.connect(authority).await?;
            failure = match exchange(&mut stream, &head, &mut body, no_body).await {
                Ok((answer, reusable)) => {
                    if reusable {
                        self.checkin(authority, stream);
                    }
                    return Ok(answer);
                }
                Err(failure) => failure,
            };
        }
        Err(failure.error)
    }

    /// The most recently used live connection to `authority`, if any.
    fn checkout(&self, authority: &str) -> Option<TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let connections = idle.get_mut(authority)?;
        while let Some(Idle { stream, since }) = connections.pop() {
            if since.elapsed() >= IDLE_LIMIT {
                // The rest are older still.
                connections.clear();
                return None;
            }
            // An idle connection has nothing to read: anything (or end of stream) means
            // the node closed it or broke the protocol. No system call unless the event
            // loop saw the socket become readable.
            match stream.try_read(&mut [0u8; 1]) {
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    return Some(stream);
                }
                _ => continue,
            }
        }
        None
    }

    fn checkin(&self, authority: &str, stream: TcpStream) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let connections = idle.entry(authority.to_owned()).or_default();
        if connections.len() < MAX_IDLE {
            connections.push(Idle {
                stream,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self, authority: &str) -> Result<TcpStream, Http1Error> {
        // `host` alone means port 80, as in a URL.
        let with_port;
        let target = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.contains(']'))
        {
            authority
        } else {
            with_port = format!("{authority}:80");
            &with_port
        };
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(target))
            .await
            .map_err(|_| Http1Error::ConnectTimeout(self.connect_timeout))?
            .map_err(Http1Error::Connect)?;
        // Small requests and answers must leave at once, not wait for Nagle.
        stream.set_nodelay(true).map_err(Http1Error::Connect)?;
        Ok(stream)
    }
}

/// Writes the request and reads the answer. `Ok((answer, reusable))`.
async fn exchange(
    stream: &mut TcpStream,
    head: &[u8],
    body: &mut Option<NodeBody>,
    no_body: bool,
) -> Result<(Answer, bool), Failure> {
    let written = write_request(stream, head, body).await;
    if let Err(error) = written {
        // The node may have answered before it stopped reading (a body over its limit):
        // its answer beats the write error. The connection is left mid-request: not reused.
        return match read_answer(stream, no_body).await {
            Ok((answer, _)) => Ok((answer, false)),
            Err(_) => Err(Failure {
                retry: !matches!(body, Some(NodeBody::Chunks(_))),
                error,
            }),
        };
    }
    read_answer(stream, no_body).await
}

async fn write_request(
    stream: &mut TcpStream,
    head: &[u8],
    body: &mut Option<NodeBody>,
) -> Result<(), Http1Error> {
    stream.write_all(head).await.map_err(Http1Error::Write)?;
    match body {
        Some(NodeBody::Json(json)) if json.len() > INLINE_BODY => {
            stream.write_all(json).await.map_err(Http1Error::Write)?;
        }
        Some(NodeBody::Chunks(chunks)) => {
            let mut frame = Vec::new();
            for chunk in chunks.by_ref().filter(|c| !c.is_empty()) {
                frame.clear();
                frame.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                frame.extend_from_slice(&chunk);
                frame.extend_from_slice(b"\r\n");
                stream.write_all(&frame).await.map_err(Http1Error::Write)?;
            }
            stream
                .write_all(b"0\r\n\r\n")
                .await
                .map_err(Http1Error::Write)?;
        }
        _ => {}
    }
    Ok(())
}

/// How the body of an answer ends.
#[derive(Debug, PartialEq)]
enum Framing {
    Length(usize),
    Chunked,
    /// Until the node closes the connection (then it cannot be reused).
    Close,
}

/// A parsed answer head.
#[derive(Debug)]
struct Head {
    status: u16,
    len: usize,
    framing: Framing,
    keep_alive: bool,
}

/// The head at the start of `buf`, `None` while incomplete.
fn parse_head(buf: &[u8], no_body: bool) -> Result<Option<Head>, Http1Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(Http1Error::Invalid(error.to_string())),
    };
    let status = response
        .code
        .ok_or_else(|| Http1Error::Invalid("no status".into()))?;
    let mut keep_alive = response.version == Some(1);
    let (mut length, mut chunked, mut encoded) = (None, false, false);
    for header in response.headers.iter() {
        let value = std::str::from_utf8(header.value)
            .map_err(|_| Http1Error::Invalid(format!("header {} is not text", header.name)))?;
        if header.name.eq_ignore_ascii_case("content-length") {
            let parsed: usize = value
                .trim()
                .parse()
                .map_err(|_| Http1Error::Invalid(format!("content-length {value:?}")))?;
            if length.is_some_and(|l| l != parsed) {
                return Err(Http1Error::Invalid("two content-lengths".into()));
            }
            length = Some(parsed);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            encoded = true;
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if header.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    let framing = if no_body || status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::Length(0)
    } else if encoded {
        // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3).
        if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else {
        length.map_or(Framing::Close, Framing::Length)
    };
    if framing == Framing::Close {
        keep_alive = false;
    }
    Ok(Some(Head {
        status,
        len,
        framing,
        keep_alive,
    }))
}

/// Reads more of the answer into `buf`; `false` at the end of the stream.
async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<bool, Http1Error> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(16 * 1024);
    }
    match stream.read_buf(buf).await {
        Ok(0) => Ok(false),
        Ok(_) => Ok(true),
        Err(error) => Err(Http1Error::Read(error)),
    }
}

/// Reads one answer (after any `1xx`). `Ok((answer, reusable))`.
async fn read_answer(stream: &mut TcpStream, no_body: bool) -> Result<(Answer, bool), Failure> {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut received = false;
    let head = loop {
        if !buf.is_empty() {
            match parse_head(&buf, no_body).map_err(|error| Failure {
                error,
                retry: false,
            })? {
                Some(head) if (100..200).contains(&head.status) => {
                    buf.advance(head.len);
                    continue;
                }
                Some(head) => break head,
                None if buf.len() > MAX_HEAD => {
                    return Err(Failure {
                        error: Http1Error::Invalid("answer head too large".into()),
                        retry: false,
                    });
                }
                None => {}
            }
        }
        match read_more(stream, &mut buf).await {
            Ok(true) => received = true,
            Ok(false) => {
                return Err(Failure {
                    error: Http1Error::Closed,
                    retry: !received,
                });
            }
            // A reset with nothing received: the node closed an idle connection.
            Err(error) => {
                return Err(Failure {
                    error,
                    retry: !received,
                });
            }
        }
    };
    buf.advance(head.len);
    let fail = |error| Failure {
        error,
        retry: false,
    };
    let (body, reusable) = match head.framing {
        Framing::Length(length) => {
            if buf.len() < length {
                buf.reserve(length - buf.len());
            }
            while buf.len() < length {
                if !read_more(stream, &mut buf).await.map_err(fail)? {
                    return Err(fail(Http1Error::Closed));
                }
            }
            let body = buf.split_to(length).freeze();
            // Bytes past the answer: the node broke the exchange; do not reuse.
            (body, head.keep_alive && buf.is_empty())
        }
        Framing::Chunked => {
            let body = read_chunked(stream, &mut buf).await.map_err(fail)?;
            (body, head.keep_alive && buf.is_empty())
        }
        Framing::Close => {
            while read_more(stream, &mut buf).await.map_err(fail)? {}
            (buf.freeze(), false)
        }
    };
    Ok((
        Answer {
            status: head.status,
            body,
        },
        reusable,
    ))
}

/// The end of the line starting `buf` (the index of its `\r\n`), reading more as needed.
async fn line_end(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<usize, Http1Error> {
    let mut searched = 0;
    loop {
        if let Some(i) = buf[searched..].windows(2).position(|w| w == b"\r\n") {
            return Ok(searched + i);
        }
        searched = buf.len().saturating_sub(1);
        if buf.len() > MAX_HEAD {
            return Err(Http1Error::Invalid("chunk line too long".into()));
        }
        if !read_more(stream, buf).await? {
            return Err(Http1Error::Closed);
        }
    }
}

/// A chunked body, decoded (RFC 9112 §7.1); trailers are read and dropped.
async fn read_chunked(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<Bytes, Http1Error> {
    let mut body = BytesMut::new();
    loop {
        let end = line_end(stream, buf).await?;
        let line = std::str::from_utf8(&buf[..end])
            .map_err(|_| Http1Error::Invalid("chunk size is not text".into()))?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| Http1Error::Invalid(format!("chunk size {size:?}")))?;
        buf.advance(end + 2);
        if size == 0 {
            // Trailer lines, then an empty line.
            loop {
                let end = line_end(stream, buf).await?;
                buf.advance(end + 2);
                if end == 0 {
                    return Ok(body.freeze());
                }
            }
        }
        let needed = size
            .checked_add(2)
            .ok_or_else(|| Http1Error::Invalid("chunk size overflows".into()))?;
        while buf.len() < needed {
            if !read_more(stream, buf).await? {
                return Err(Http1Error::Closed);
            }
        }
        if &buf[size..needed] != b"\r\n" {
            return Err(Http1Error::Invalid("chunk not followed by CRLF".into()));
        }
        body.extend_from_slice(&buf[..size]);
        buf.advance(needed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;

    /// A scripted node: for each connection, answers each request with the next of
    /// `answers` (raw bytes; `None` closes the connection right after the answer before
    /// it). Records the raw requests and counts connections.
    struct Script {
        address: String,
        connections: Arc<AtomicUsize>,
        requests: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    async fn node(answers: Vec<Option<&'static [u8]>>) -> Script {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(answers.into_iter()));
        let (counted, recorded) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, Ordering::SeqCst);
                let (answers, recorded) = (answers.clone(), recorded.clone());
                tokio::spawn(async move {
                    loop {
                        let Some(request) = read_request(&mut stream).await else {
                            return;
                        };
                        recorded.lock().unwrap().push(request);
                        let next = answers.lock().unwrap().next().flatten();
                        match next {
                            Some(answer) => stream.write_all(answer).await.unwrap(),
                            None => return,
                        }
                        // A `None` next: close right after this answer.
                        let mut answers = answers.lock().unwrap();
                        if matches!(answers.clone().next(), Some(None)) {
                            answers.next();
                            return;
                        }
                    }
                });
            }
        });
        Script {
            address,
            connections,
            requests,
        }
    }

    /// One request (head, then a body by Content-Length or up to the chunked end).
    async fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await.ok()? == 0 {
                return None;
            }
            request.push(byte[0]);
        }
        let text = String::from_utf8_lossy(&request).to_lowercase();
        if let Some(length) = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
        {
            let mut body = vec![0u8; length.trim().parse().unwrap()];
            stream.read_exact(&mut body).await.ok()?;
            request.extend(body);
        } else if text.contains("transfer-encoding: chunked") {
            while !request.ends_with(b"0\r\n\r\n") {
                stream.read_exact(&mut byte).await.ok()?;
                request.push(byte[0]);
            }
        }
        Some(request)
    }

    fn pool() -> Pool {
        Pool::new(Duration::from_secs(1))
    }

    async fn get(pool: &Pool, script: &Script) -> Result<Answer, Http1Error> {
        pool.send(&script.address, &http::Method::GET, "/health", b"", None)
            .await
    }

    #[tokio::test]
    async fn answers_by_length_reuse_the_connection() {
        let ok: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        let script = node(vec![Some(ok), Some(ok), Some(ok)]).await;
        let pool = pool();
        for _ in 0..3 {
            let answer = get(&pool, &script).await.unwrap();
            assert_eq!((answer.status, &answer.body[..]), (200, &b"{}"[..]));
        }
        assert_eq!(script.connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn chunked_answers_are_decoded_after_an_interim_answer() {
        let chunked: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\nx-trailer: t\r\n\r\n";
        let ok: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        let script = node(vec![Some(chunked), Some(ok)]).await;
        let pool = pool();
        let answer = get(&pool, &script).await.unwrap();
        assert_eq!((answer.status, &answer.body[..]), (202, &b"{\"a\":1}"[..]));
        let answer = get(&pool, &script).await.unwrap();
        assert_eq!((answer.status, answer.body.len()), (200, 0));
        assert_eq!(script.connections.load(Ordering::SeqCst), 1, "reused");
    }

    #[tokio::test]
    async fn an_answer_without_length_ends_with_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                read_request(&mut stream).await;
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\n\r\n[1,2,3]")
                    .await
                    .unwrap();
                // Dropped: the end of the body.
            }
        });
        let pool = pool();
        for _ in 0..2 {
            let answer = pool
                .send(&address, &http::Method::GET, "/", b"", None)
                .await
                .unwrap();
            assert_eq!(&answer.body[..], b"[1,2,3]");
        }
        assert!(
            pool.checkout(address.trim_start_matches("http://"))
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_connection_the_node_closed_is_replaced() {
        let ok: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        // The first connection answers once, then the node closes it (no
        // `connection: close`, as when its keep-alive ends).
        let script = node(vec![Some(ok), None, Some(ok)]).await;
        let pool = pool();
        get(&pool, &script).await.unwrap();
        // Whether the closed connection is noticed at checkout or when sending, the
        // request is answered on a new one.
        let answer = get(&pool, &script).await.unwrap();
        assert_eq!(&answer.body[..], b"ok");
        assert_eq!(script.connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn requests_are_written_as_http_1_1() {
        let ok: &[u8] = b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}";
        let script = node(vec![Some(ok), Some(ok), Some(ok)]).await;
        let pool = pool();
        let json = NodeBody::Json(Bytes::from_static(br#"{"q":"a"}"#));
        pool.send(
            &script.address,
            &http::Method::POST,
            "/indexes/a/search",
            b"authorization: Bearer k\r\n",
            Some(json),
        )
        .await
        .unwrap();
        let chunks = vec![
            Bytes::from_static(b"[{\"id\":1}"),
            Bytes::from_static(b",{\"id\":2}]"),
        ];
        pool.send(
            &script.address,
            &http::Method::PUT,
            "/indexes/a/documents?primaryKey=id",
            b"",
            Some(NodeBody::Chunks(Box::new(chunks.into_iter()))),
        )
        .await
        .unwrap();
        pool.send(
            &script.address,
            &http::Method::DELETE,
            "/indexes/a",
            b"",
            None,
        )
        .await
        .unwrap();
        let host = script.address.trim_start_matches("http://");
        let requests = script.requests.lock().unwrap().clone();
        let requests: Vec<String> = requests
            .iter()
            .map(|r| String::from_utf8(r.clone()).unwrap())
            .collect();
        assert_eq!(
            requests[0],
            format!(
                "POST /indexes/a/search HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer k\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n{{\"q\":\"a\"}}"
            )
        );
        assert_eq!(
            requests[1],
            format!(
                "PUT /indexes/a/documents?primaryKey=id HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n9\r\n[{{\"id\":1}}\r\na\r\n,{{\"id\":2}}]\r\n0\r\n\r\n"
            )
        );
        assert_eq!(
            requests[2],
            format!("DELETE /indexes/a HTTP/1.1\r\nhost: {host}\r\ncontent-length: 0\r\n\r\n")
        );
    }

    #[tokio::test]
    async fn an_answer_sent_before_the_body_was_read_is_returned_and_not_reused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            // The head only, then the refusal (a body over the node's limit), then close.
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            stream
                .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 2\r\n\r\n{}")
                .await
                .unwrap();
        });
        let pool = pool();
        let chunks = (0..256).map(|_| Bytes::from(vec![b' '; 64 * 1024]));
        let answer = pool
            .send(
                &address,
                &http::Method::POST,
                "/indexes/a/documents",
                b"",
                Some(NodeBody::Chunks(Box::new(chunks))),
            )
            .await
            .unwrap();
        assert_eq!((answer.status, &answer.body[..]), (413, &b"{}"[..]));
        let idle: usize = pool.idle.lock().unwrap().values().map(Vec::len).sum();
        assert_eq!(idle, 0, "a connection left mid-request was kept");
    }

    #[tokio::test]
    async fn broken_answers_are_errors() {
        let garbage: &[u8] = b"HTTX/1.1 200 OK\r\n\r\n";
        let short: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{}";
        let bad_chunk: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n";
        for (answer, expected) in [
            (garbage, "invalid answer"),
            (short, "closed before the answer was complete"),
            (bad_chunk, "chunk size"),
        ] {
            let script = node(vec![Some(answer), None]).await;
            let error = get(&pool(), &script).await.unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
        let pool = pool();
        for (address, path) in [
            ("https://127.0.0.1:1", "/"),
            ("127.0.0.1:1", "/"),
            ("http://127.0.0.1:1", "/a b"),
            ("http://127.0.0.1:1", "/é"),
        ] {
            let error = pool
                .send(address, &http::Method::GET, path, b"", None)
                .await
                .unwrap_err();
            assert!(
                matches!(error, Http1Error::Address(_) | Http1Error::Path(_)),
                "{error}"
            );
        }
    }
}
