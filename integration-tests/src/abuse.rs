//! Protocol abuse of a gateway's HTTP server (issue 24, point 3): requests no client should
//! send, sent as raw bytes over loopback TCP (the attacker's side is hand-written on
//! purpose; the gateway's side is hyper's), each followed by a probe that the gateway still
//! answers and a sample of its resident memory.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What one abuse got.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The abuse.
    pub name: &'static str,
    /// The gateway's status lines, in order (`HTTP/1.1 400 Bad Request`), or how the
    /// connection ended without one.
    pub answer: String,
    /// How long until that answer (or the end of the connection).
    pub after: Duration,
    /// The gateway's resident memory once the abuse was over, in KiB.
    pub rss_kib: u64,
    /// Whether a plain `GET /health` on a new connection was answered 200 right after.
    pub still_serving: bool,
}

/// How hard to push.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    /// Headers in the many-headers request.
    pub headers: usize,
    /// Bytes of the one huge header.
    pub huge_header: usize,
    /// Idle connections held at once.
    pub idle_connections: usize,
    /// Pause between the bytes a slow client sends.
    pub slow_byte: Duration,
    /// How long to wait for an answer before giving up.
    pub patience: Duration,
}

impl Default for Counts {
    fn default() -> Self {
        Self {
            headers: 100_000,
            huge_header: 1 << 20,
            idle_connections: 10_000,
            slow_byte: Duration::from_millis(500),
            patience: Duration::from_secs(20),
        }
    }
}

/// The gateway's resident memory (`VmRSS`), in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// Reads what the gateway sends until it closes, `wanted` status lines came or
/// `patience` runs out; the status lines seen, and how the connection ended.
async fn answers(
    reader: &mut (impl AsyncRead + Unpin),
    patience: Duration,
    wanted: usize,
) -> String {
    let deadline = tokio::time::Instant::now() + patience;
    let mut read = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    let ended = loop {
        let lines = status_lines(&read);
        if lines.len() >= wanted {
            // Whether the gateway then ends the connection (as it must after a message it
            // cannot frame safely), or keeps it for the next request.
            let after = tokio::time::timeout(Duration::from_secs(1), reader.read(&mut buffer));
            let then = match after.await {
                Ok(Ok(0)) | Ok(Err(_)) => "closed",
                _ => "kept open",
            };
            return format!("{}, then {then}", lines.join(" / "));
        }
        match tokio::time::timeout_at(deadline, reader.read(&mut buffer)).await {
            Err(_) => break format!("no answer within {patience:?}"),
            Ok(Ok(0)) => break "closed".to_owned(),
            Ok(Ok(n)) => read.extend_from_slice(&buffer[..n]),
            Ok(Err(error)) => break format!("closed ({})", error.kind()),
        }
    };
    let lines = status_lines(&read);
    match (lines.is_empty(), ended.starts_with("closed")) {
        (true, true) => format!("{ended} without an answer"),
        (true, false) => ended,
        (false, _) => format!("{}, then {ended}", lines.join(" / ")),
    }
}

/// Every status line in what was read (a pipelined answer follows the previous body with
/// no line end between them).
fn status_lines(read: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(read);
    text.match_indices("HTTP/1.")
        .map(|(at, _)| {
            let line = &text[at..];
            line[..line.find(['\r', '\n']).unwrap_or(line.len())].to_owned()
        })
        .collect()
}

/// Sends `request` while reading the answers (the gateway may answer, and close, before
/// the end of a request it refuses).
async fn exchange(address: SocketAddr, request: &[u8], counts: Counts, wanted: usize) -> String {
    let Ok(mut stream) = TcpStream::connect(address).await else {
        return "connection refused".to_owned();
    };
    let (mut reader, mut writer) = stream.split();
    let write = async {
        // A write cut short by the gateway's refusal is expected.
        let _ = tokio::time::timeout(counts.patience, writer.write_all(request)).await;
    };
    let ((), answer) = tokio::join!(write, answers(&mut reader, counts.patience, wanted));
    answer
}

/// Sends `head` then `trickle` one byte at a time, `slow_byte` apart, reading meanwhile;
/// what the gateway answered and when.
async fn slowly(address: SocketAddr, head: &[u8], trickle: &[u8], counts: Counts) -> String {
    let Ok(stream) = TcpStream::connect(address).await else {
        return "connection refused".to_owned();
    };
    let (mut reader, mut writer) = stream.into_split();
    let _ = writer.write_all(head).await;
    let trickle = trickle.to_vec();
    let sender = tokio::spawn(async move {
        for byte in trickle.iter().cycle() {
            tokio::time::sleep(counts.slow_byte).await;
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
        }
    });
    let answer = answers(&mut reader, counts.patience, 1).await;
    sender.abort();
    answer
}

/// Whether `GET /health` on a new connection is answered 200.
pub async fn serving(address: SocketAddr) -> bool {
    let request = b"GET /health HTTP/1.1\r\nHost: miroir\r\nConnection: close\r\n\r\n";
    let counts = Counts {
        patience: Duration::from_secs(10),
        ..Counts::default()
    };
    exchange(address, request, counts, 1)
        .await
        .contains(" 200 ")
}

/// The outcome of an abuse that `started` and got `answer`.
async fn outcome(
    name: &'static str,
    started: Instant,
    answer: String,
    address: SocketAddr,
    pid: u32,
) -> Outcome {
    Outcome {
        name,
        answer,
        after: started.elapsed(),
        rss_kib: rss_kib(pid),
        still_serving: serving(address).await,
    }
}

/// Runs every abuse in turn against the gateway at `address` (process `pid`), whose
/// master key is `key`.
pub async fn run_all(address: SocketAddr, pid: u32, key: &str, counts: Counts) -> Vec<Outcome> {
    let search = |extra: &str, body: &str| {
        format!(
            "POST /indexes/abuse/search HTTP/1.1\r\nHost: miroir\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n{extra}\r\n{body}"
        )
        .into_bytes()
    };
    let mut many_headers = b"GET /health HTTP/1.1\r\nHost: miroir\r\n".to_vec();
    for i in 0..counts.headers {
        many_headers.extend_from_slice(format!("X-Abuse-{i}: v\r\n").as_bytes());
    }
    many_headers.extend_from_slice(b"\r\n");
    let mut huge_header = b"GET /health HTTP/1.1\r\nHost: miroir\r\nX-Huge: ".to_vec();
    huge_header.extend(std::iter::repeat_n(b'a', counts.huge_header));
    huge_header.extend_from_slice(b"\r\n\r\n");
    let sent_whole: [(&'static str, Vec<u8>, usize); 7] = [
        (
            "Content-Length with Transfer-Encoding",
            search("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"),
            1,
        ),
        (
            "two different Content-Lengths",
            search("Content-Length: 2\r\nContent-Length: 3\r\n", "{}x"),
            1,
        ),
        (
            "bare LF line ends",
            b"GET /health HTTP/1.1\nHost: miroir\nConnection: close\n\n".to_vec(),
            1,
        ),
        (
            "a body declared past the payload limit",
            format!(
                "POST /indexes/abuse/documents HTTP/1.1\r\nHost: miroir\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n[",
                1u64 << 40
            )
            .into_bytes(),
            1,
        ),
        ("100 000 headers", many_headers, 1),
        ("one 1 MiB header", huge_header, 1),
        (
            "three pipelined requests",
            b"GET /health HTTP/1.1\r\nHost: miroir\r\n\r\nGET /health HTTP/1.1\r\nHost: miroir\r\n\r\nGET /health HTTP/1.1\r\nHost: miroir\r\nConnection: close\r\n\r\n".to_vec(),
            3,
        ),
    ];
    let mut outcomes = Vec::new();
    for (name, request, wanted) in sent_whole {
        let started = Instant::now();
        let answer = exchange(address, &request, counts, wanted).await;
        outcomes.push(outcome(name, started, answer, address, pid).await);
    }

    let started = Instant::now();
    let head = b"GET /health HTTP/1.1\r\nHost: miroir\r\n";
    let answer = slowly(address, head, b"X-Slow: v\r\n", counts).await;
    outcomes.push(outcome("slowloris on the head", started, answer, address, pid).await);

    let started = Instant::now();
    let head = search("Content-Length: 100000\r\n", "{");
    let answer = slowly(address, &head, b" ", counts).await;
    outcomes.push(outcome("slowloris on the body", started, answer, address, pid).await);

    let started = Instant::now();
    let answer = match TcpStream::connect(address).await {
        Ok(mut stream) => {
            let _ = stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: miroir\r\n\r\n")
                .await;
            let _ = stream.shutdown().await;
            answers(&mut stream, counts.patience, 1).await
        }
        Err(_) => "connection refused".to_owned(),
    };
    outcomes.push(
        outcome(
            "half-closed after the request",
            started,
            answer,
            address,
            pid,
        )
        .await,
    );

    let started = Instant::now();
    let mut idle = Vec::with_capacity(counts.idle_connections);
    for _ in 0..counts.idle_connections {
        match TcpStream::connect(address).await {
            Ok(stream) => idle.push(stream),
            Err(_) => break,
        }
    }
    let opened = idle.len();
    let opening = started.elapsed();
    // Sampled while all are held open.
    let rss_held = rss_kib(pid);
    let ended = match idle.last_mut() {
        Some(stream) => answers(stream, counts.patience, 1).await,
        None => "none opened".to_owned(),
    };
    drop(idle);
    let mut held = outcome(
        "10 000 idle connections",
        started,
        format!(
            "{opened} opened in {:.1} s; the last: {ended}",
            opening.as_secs_f64()
        ),
        address,
        pid,
    )
    .await;
    held.rss_kib = rss_held;
    outcomes.push(held);
    outcomes
}

/// The outcomes as a Markdown table.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut out =
        String::from("| abuse | answer | after | RSS | serving after |\n|---|---|---|---|---|\n");
    for o in outcomes {
        out.push_str(&format!(
            "| {} | {} | {:.1} s | {:.1} MiB | {} |\n",
            o.name,
            o.answer,
            o.after.as_secs_f64(),
            o.rss_kib as f64 / 1024.0,
            if o.still_serving { "yes" } else { "NO" }
        ));
    }
    out
}
