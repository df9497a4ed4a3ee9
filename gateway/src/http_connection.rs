//! One client connection: a lean HTTP/1.1 request loop for the common case, handing the
//! connection over to hyper for everything else.
//!
//! Most requests (searches, reads, small writes) are HTTP/1.1 with a small body sent
//! whole behind a `Content-Length`. For those, a served round trip through hyper and its
//! connection machinery cost about 25 µs more than nginx's on this machine
//! (docs/benchmarks.md), a third of the gateway's own time per query. This loop reads
//! such a request into one buffer, parses its head with `httparse`, calls the router and
//! writes the answer in one write.
//!
//! Anything else (a chunked or large body, `Expect: 100-continue`, `HEAD`, HTTP/1.0, an
//! upgrade, a malformed `Content-Length`) hands the connection, with the bytes already
//! read, to hyper for the rest of its life: streaming uploads, body limits and the rare
//! corners of HTTP/1.1 keep hyper's tested handling.

use crate::http_threads::Peer;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tower::{Service, ServiceExt};

/// Most header lines a request may have (hyper's default too); more is a 431.
const MAX_HEADERS: usize = 100;
/// Largest request head read here; a longer one is a 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest body this loop buffers whole; a larger one goes to hyper, which streams it.
const LEAN_BODY_MAX: usize = 1024 * 1024;
/// How long a request head may take once its first byte arrived (hyper's default).
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the (at most 1 MiB) body may take to arrive once its head has.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Answers up to this size leave in one write with their head.
const ONE_WRITE_MAX: usize = 64 * 1024;

/// Serves one connection until the client closes it, an error, or `stopping` turns true
/// while no request is in progress.
pub async fn serve<S>(
    mut stream: TcpStream,
    peer: SocketAddr,
    mut service: S,
    mut stopping: watch::Receiver<bool>,
) where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let mut buffer = BytesMut::with_capacity(8 * 1024);
    let mut out = Vec::with_capacity(8 * 1024);
    loop {
        // A head must be whole within HEAD_TIMEOUT of its first byte, however it trickles.
        let mut head_deadline = None;
        let head = loop {
            if !buffer.is_empty() {
                match parse_head(&buffer) {
                    Ok(Some(Parsed::Lean(head))) => break head,
                    Ok(Some(Parsed::HandOver)) => {
                        return hand_over(stream, buffer.freeze(), peer, service, stopping).await;
                    }
                    Ok(None) if buffer.len() > MAX_HEAD_BYTES => {
                        return refuse(stream, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE).await;
                    }
                    Ok(None) => {}
                    Err(status) => return refuse(stream, status).await,
                }
            }
            if buffer.is_empty() {
                // Between requests: shutdown closes the idle connection.
                let read = tokio::select! {
                    biased;
                    _ = stopping.wait_for(|stop| *stop) => return,
                    read = stream.read_buf(&mut buffer) => read,
                };
                if matches!(read, Ok(0) | Err(_)) {
                    return;
                }
            } else {
                let deadline = *head_deadline
                    .get_or_insert_with(|| tokio::time::Instant::now() + HEAD_TIMEOUT);
                if !read_more(&mut stream, &mut buffer, deadline, &mut stopping).await {
                    return;
                }
            }
        };
        let whole = head.length + head.body_length;
        if buffer.len() < whole {
            // A body that stops arriving does not hold the connection forever.
            let body_deadline = tokio::time::Instant::now() + BODY_TIMEOUT;
            while buffer.len() < whole {
                buffer.reserve(whole - buffer.len());
                if !read_more(&mut stream, &mut buffer, body_deadline, &mut stopping).await {
                    return;
                }
            }
        }
        let mut bytes = buffer.split_to(whole);
        let body = bytes.split_off(head.length).freeze();
        let keep_alive = head.keep_alive;
        let mut request = Request::new(axum::body::Body::from(body));
        *request.method_mut() = head.method;
        *request.uri_mut() = head.uri;
        *request.headers_mut() = head.headers;
        request.extensions_mut().insert(ConnectInfo(Peer(peer)));
        let Ok(ready) = service.ready().await;
        let Ok(response) = ready.call(request).await;
        let written = write_response(&mut stream, &mut out, response, keep_alive).await;
        if written.is_err() || !keep_alive {
            return;
        }
        // A buffer grown for a large body is not kept for the connection's life.
        if buffer.capacity() > 64 * 1024 && buffer.is_empty() {
            buffer = BytesMut::with_capacity(8 * 1024);
        }
    }
}

/// Reads more of a request already begun; false when the client closed the connection,
/// `deadline` passed, or the gateway is stopping (a request not yet whole is not in
/// flight: dropping it loses nothing acknowledged).
async fn read_more(
    stream: &mut TcpStream,
    buffer: &mut BytesMut,
    deadline: tokio::time::Instant,
    stopping: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        biased;
        _ = stopping.wait_for(|stop| *stop) => false,
        read = tokio::time::timeout_at(deadline, stream.read_buf(buffer)) => {
            matches!(read, Ok(Ok(n)) if n > 0)
        }
    }
}

/// A request head this loop serves.
#[derive(Debug)]
struct Head {
    method: Method,
    uri: http::Uri,
    headers: HeaderMap,
    /// Bytes of the head, up to and including its blank line.
    length: usize,
    body_length: usize,
    keep_alive: bool,
}

/// What to do with a complete head. (Returned once per request and never stored, so the
/// size difference between variants costs nothing.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Parsed {
    Lean(Head),
    HandOver,
}

/// The head at the start of `buffer`: `None` until it is complete, an error status when
/// it cannot be a request.
fn parse_head(buffer: &[u8]) -> Result<Option<Parsed>, StatusCode> {
    let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut lines);
    let length = match parsed.parse(buffer) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        Err(_) => return Err(StatusCode::BAD_REQUEST),
    };
    if parsed.version != Some(1) {
        return Ok(Some(Parsed::HandOver));
    }
    let method = match parsed.method.unwrap_or_default() {
        "GET" => Method::GET,
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        "DELETE" => Method::DELETE,
        _ => return Ok(Some(Parsed::HandOver)),
    };
    let Ok(uri) = http::Uri::try_from(parsed.path.unwrap_or_default()) else {
        return Err(StatusCode::BAD_REQUEST);
    };
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    let (mut body_length, mut keep_alive) = (None, true);
    for line in parsed.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(line.name.as_bytes()),
            HeaderValue::from_bytes(line.value),
        ) else {
            return Err(StatusCode::BAD_REQUEST);
        };
        if name == header::CONTENT_LENGTH {
            let length = std::str::from_utf8(line.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok());
            match (body_length, length) {
                (None, Some(length)) => body_length = Some(length),
                // Repeated or malformed: hyper's answer.
                _ => return Ok(Some(Parsed::HandOver)),
            }
        } else if name == header::TRANSFER_ENCODING
            || name == header::EXPECT
            || name == header::UPGRADE
        {
            return Ok(Some(Parsed::HandOver));
        } else if name == header::CONNECTION
            && line
                .value
                .split(|b| *b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
        {
            keep_alive = false;
        }
        headers.append(name, value);
    }
    let body_length = body_length.unwrap_or(0);
    if body_length > LEAN_BODY_MAX {
        return Ok(Some(Parsed::HandOver));
    }
    Ok(Some(Parsed::Lean(Head {
        method,
        uri,
        headers,
        length,
        body_length,
        keep_alive,
    })))
}

/// Writes `response` as HTTP/1.1: one write for a small answer of known size, chunks for
/// one of unknown size.
async fn write_response(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    response: Response,
    keep_alive: bool,
) -> io::Result<()> {
    use http_body_util::BodyExt;
    let (parts, mut body) = response.into_parts();
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or("Unknown")
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        // Framing is this writer's.
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !parts.headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        date::write(out);
        out.extend_from_slice(b"\r\n");
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    // No body, and no length, on the answers that cannot have one.
    let bodiless = parts.status.is_informational()
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED;
    if bodiless {
        out.extend_from_slice(b"\r\n");
        return stream.write_all(out).await;
    }
    if let Some(length) = http_body::Body::size_hint(&body).exact() {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        let one_write = length as usize <= ONE_WRITE_MAX;
        if !one_write {
            stream.write_all(out).await?;
            out.clear();
        }
        while let Some(frame) = body.frame().await {
            let Some(data) = data_of(frame)? else {
                continue;
            };
            if one_write {
                out.extend_from_slice(&data);
            } else {
                stream.write_all(&data).await?;
            }
        }
        if one_write {
            stream.write_all(out).await?;
        }
        return Ok(());
    }
    out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
    stream.write_all(out).await?;
    while let Some(frame) = body.frame().await {
        let Some(data) = data_of(frame)?.filter(|d| !d.is_empty()) else {
            continue;
        };
        out.clear();
        out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        out.extend_from_slice(&data);
        out.extend_from_slice(b"\r\n");
        stream.write_all(out).await?;
    }
    stream.write_all(b"0\r\n\r\n").await
}

/// The data of a body frame (`None` for trailers). A body that fails midway ends the
/// connection: the client sees a truncated answer, not a well-formed short one.
fn data_of(frame: Result<http_body::Frame<Bytes>, axum::Error>) -> io::Result<Option<Bytes>> {
    match frame {
        Ok(frame) => Ok(frame.into_data().ok()),
        Err(error) => Err(io::Error::other(error)),
    }
}

/// Answers a request that cannot be read with `status` and closes the connection.
async fn refuse(mut stream: TcpStream, status: StatusCode) {
    let answer = format!(
        "HTTP/1.1 {} {}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    );
    let _ = stream.write_all(answer.as_bytes()).await;
}

/// Serves the rest of the connection with hyper, replaying the bytes already read.
async fn hand_over<S>(
    stream: TcpStream,
    read: Bytes,
    peer: SocketAddr,
    service: S,
    mut stopping: watch::Receiver<bool>,
) where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let service = service.map_request(move |request: http::Request<hyper::body::Incoming>| {
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(ConnectInfo(Peer(peer)));
        request
    });
    let io = hyper_util::rt::TokioIo::new(Replayed { read, stream });
    let connection = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, hyper_util::service::TowerToHyperService::new(service));
    tokio::pin!(connection);
    tokio::select! {
        served = connection.as_mut() => {
            if let Err(error) = served {
                tracing::debug!(%error, "connection ended with an error");
            }
        }
        () = async { let _ = stopping.wait_for(|stop| *stop).await; } => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// A connection whose first bytes were already read: they are read again first.
struct Replayed {
    read: Bytes,
    stream: TcpStream,
}

impl AsyncRead for Replayed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read.has_remaining() {
            let n = self.read.len().min(buf.remaining());
            buf.put_slice(&self.read[..n]);
            self.read.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replayed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The `Date` header's value, formatted once per second per thread.
mod date {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};

    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }

    /// Appends the current date in HTTP's format (`Wed, 02 Dec 2026 18:42:30 GMT`).
    pub fn write(out: &mut Vec<u8>) {
        let now = SystemTime::now();
        let second = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        CACHED.with_borrow_mut(|(cached_second, text)| {
            if *cached_second != second {
                *cached_second = second;
                *text = httpdate::fmt_http_date(now);
            }
            out.extend_from_slice(text.as_bytes());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lean(request: &str) -> Head {
        match parse_head(request.as_bytes()) {
            Ok(Some(Parsed::Lean(head))) => head,
            other => panic!("not a lean request: {other:?}"),
        }
    }

    fn handed_over(request: &str) -> bool {
        matches!(parse_head(request.as_bytes()), Ok(Some(Parsed::HandOver)))
    }

    #[test]
    fn a_small_request_is_served_here() {
        let request = "POST /indexes/a/search?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nX-A: 1\r\nX-A: 2\r\n\r\n{}";
        let head = lean(request);
        assert_eq!(head.method, Method::POST);
        assert_eq!(head.uri.path(), "/indexes/a/search");
        assert_eq!(head.uri.query(), Some("x=1"));
        assert_eq!(head.body_length, 2);
        assert_eq!(head.length, request.len() - 2);
        assert!(head.keep_alive);
        assert_eq!(head.headers.get_all("x-a").iter().count(), 2);
        let head = lean("GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n");
        assert!(!head.keep_alive);
        assert_eq!(head.body_length, 0);
    }

    #[test]
    fn an_incomplete_head_waits_and_a_broken_one_is_refused() {
        assert!(matches!(
            parse_head(b"POST /indexes HTTP/1.1\r\nHost"),
            Ok(None)
        ));
        assert_eq!(
            parse_head(b"POST /in dexes HTTP/1.1\r\n\r\n").err(),
            Some(StatusCode::BAD_REQUEST)
        );
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(101));
        assert_eq!(
            parse_head(many.as_bytes()).err(),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
    }

    #[test]
    fn what_this_loop_does_not_handle_goes_to_hyper() {
        assert!(handed_over(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(handed_over(
            "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
        ));
        assert!(handed_over("HEAD / HTTP/1.1\r\n\r\n"));
        assert!(handed_over("GET / HTTP/1.0\r\n\r\n"));
        assert!(handed_over(
            "POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n"
        ));
        assert!(handed_over("POST / HTTP/1.1\r\nContent-Length: +2\r\n\r\n"));
        assert!(handed_over(&format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            LEAN_BODY_MAX + 1
        )));
        assert!(!handed_over(&format!(
            "POST / HTTP/1.1\r\nContent-Length: {LEAN_BODY_MAX}\r\n\r\n"
        )));
    }

    /// A loopback server running [`serve`] over a small router, and its shutdown switch.
    async fn server() -> (SocketAddr, watch::Sender<bool>) {
        use axum::routing::{delete, get, post};
        let router =
            axum::Router::new()
                .route("/echo", post(|body: Bytes| async move { body }))
                .route("/gone", delete(|| async { StatusCode::NO_CONTENT }))
                .route(
                    "/peer",
                    get(|ConnectInfo(Peer(peer)): ConnectInfo<Peer>| async move {
                        peer.ip().to_string()
                    }),
                )
                .route(
                    "/stream",
                    get(|| async {
                        let parts = [
                            Ok::<_, Infallible>(Bytes::from("ab")),
                            Ok(Bytes::from("cde")),
                        ];
                        axum::body::Body::from_stream(tokio_stream::iter(parts))
                    }),
                );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopping) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                tokio::spawn(serve(stream, peer, router.clone(), stopping.clone()));
            }
        });
        (address, stop)
    }

    #[tokio::test]
    async fn shutdown_ends_a_connection_waiting_for_the_rest_of_a_request() {
        for partial in [
            "GET /peer HTTP/1.1\r\nX-Slow: ",
            "POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
        ] {
            let (address, stop) = server().await;
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream.write_all(partial.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            stop.send(true).unwrap();
            let mut answer = Vec::new();
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
                .await
                .expect("the connection is closed at shutdown")
                .unwrap();
            assert!(answer.is_empty(), "{partial}: {answer:?}");
        }
    }

    /// Sends `parts` with a pause between them and returns all the server wrote until it
    /// closed the connection (the last request asks it to).
    async fn exchange(address: SocketAddr, parts: &[&str]) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        for part in parts {
            stream.write_all(part.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
            .await
            .expect("the server closes the connection")
            .unwrap();
        answer
    }

    #[tokio::test]
    async fn pipelined_and_split_requests_are_answered_in_order() {
        let (address, _stop) = server().await;
        let answer = exchange(
            address,
            &[
                "POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\none\
                 POST /echo HTTP/1.1\r\nContent-Le",
                "ngth: 3\r\n\r\ntw",
                "oPOST /echo HTTP/1.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nthree",
            ],
        )
        .await;
        let bodies: Vec<&str> = answer
            .split("HTTP/1.1 200 OK\r\n")
            .skip(1)
            .map(|a| a.split("\r\n\r\n").nth(1).unwrap())
            .collect();
        assert_eq!(bodies, ["one", "two", "three"], "{answer}");
        assert!(answer.contains("content-length: 5\r\n"), "{answer}");
        assert!(answer.contains("connection: close\r\n"), "{answer}");
        assert!(answer.contains("date: "), "{answer}");
    }

    #[tokio::test]
    async fn a_connection_moves_to_hyper_with_the_bytes_already_read() {
        let (address, _stop) = server().await;
        // A lean request, then a chunked one sent in the same write: hyper must see the
        // second from its first byte.
        let answer = exchange(
            address,
            &["POST /echo HTTP/1.1\r\nContent-Length: 4\r\n\r\nlean\
               POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
               3\r\nhyp\r\n2\r\ner\r\n0\r\n\r\n"],
        )
        .await;
        let lean = answer.find("\r\n\r\nlean").expect(&answer);
        let hyper = answer.find("\r\n\r\nhyper").expect(&answer);
        assert!(lean < hyper, "{answer}");
        let answer = exchange(address, &["GET /peer HTTP/1.0\r\n\r\n"]).await;
        assert!(
            answer.ends_with("\r\n\r\n127.0.0.1"),
            "the client's address reaches handlers through hyper too: {answer}"
        );
    }

    #[tokio::test]
    async fn bodiless_and_streamed_answers_are_framed() {
        let (address, _stop) = server().await;
        let answer = exchange(
            address,
            &["DELETE /gone HTTP/1.1\r\n\r\nGET /stream HTTP/1.1\r\n\r\nGET /peer HTTP/1.1\r\nConnection: close\r\n\r\n"],
        )
        .await;
        let (gone, rest) = answer.split_once("\r\n\r\n").unwrap();
        assert!(gone.starts_with("HTTP/1.1 204 No Content\r\n"), "{answer}");
        assert!(!gone.contains("content-length"), "{answer}");
        assert!(
            rest.starts_with("HTTP/1.1 200 OK\r\n")
                && rest
                    .contains("transfer-encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"),
            "{answer}"
        );
        assert!(answer.ends_with("\r\n\r\n127.0.0.1"), "{answer}");
    }

    #[tokio::test]
    async fn a_broken_request_gets_a_400_and_the_connection_closes() {
        let (address, _stop) = server().await;
        let answer = exchange(address, &["POST /ec ho HTTP/1.1\r\n\r\n"]).await;
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{answer}"
        );
    }

    #[test]
    fn the_date_is_http_formatted() {
        let mut out = Vec::new();
        date::write(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with(" GMT") && text.len() == 29, "{text}");
    }
}
