//! The chaos run's clients: writers and readers that reach the gateways round-robin (no
//! stickiness), and the model of what was acknowledged.
//!
//! Each document's operations are serialized (a writer holds the document while its
//! request is in flight), so an acknowledged (202) write fixes the document's expected
//! state; a write that was not acknowledged (an error, or no answer) may or may not have
//! applied, and makes the document unknown: it must only be the same on every replica.

use crate::rng::Rng;
use reqwest::Method;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

use super::fleet::INDEX;

/// What a document should be at the end.
#[derive(Clone, Debug, PartialEq)]
pub enum Expected {
    /// This exact document.
    Present(Map<String, Value>),
    /// No document.
    Absent,
    /// Whatever the replicas agree on.
    Unknown,
}

/// The id of document `i`.
pub fn doc_id(i: usize) -> String {
    format!("d{i}")
}

/// What the clients counted.
#[derive(Default)]
pub struct Counters {
    /// Writes answered 202.
    pub writes_acknowledged: AtomicU64,
    /// Writes answered otherwise, or not answered.
    pub writes_refused: AtomicU64,
    /// Reads answered 200 (or 404 for a document by id).
    pub reads_ok: AtomicU64,
    /// Reads answered otherwise, or not answered.
    pub reads_failed: AtomicU64,
}

/// The clients' shared record.
pub struct Record {
    /// The model, one entry per document.
    pub docs: Vec<Mutex<Expected>>,
    /// Counts.
    pub counters: Counters,
    /// When each acknowledged write was answered.
    pub write_successes: std::sync::Mutex<Vec<Instant>>,
    /// When each good read was answered.
    pub read_successes: std::sync::Mutex<Vec<Instant>>,
    /// The task uid of every acknowledged write.
    pub tasks: std::sync::Mutex<Vec<u64>>,
    /// Refused writes by reason (status and code, or no answer): how many, and the first
    /// one's message.
    pub refusals: std::sync::Mutex<std::collections::BTreeMap<String, (u64, String)>>,
}

/// Running clients.
pub struct Clients {
    stop: Arc<AtomicBool>,
    handles: Vec<tokio::task::JoinHandle<()>>,
    /// What they do.
    pub record: Arc<Record>,
    /// When they started.
    pub started: Instant,
}

/// One HTTP client for every request, each bounded.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("HTTP client")
}

async fn send(
    http: &reqwest::Client,
    method: Method,
    url: String,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    let mut request = http.request(method, url).bearer_auth(crate::MASTER_KEY);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

impl Clients {
    /// Starts `writers` writers and `readers` readers over `pool` documents (none present
    /// yet) through `gateways`.
    pub fn start(
        seed: u64,
        gateways: Vec<String>,
        pool: usize,
        writers: usize,
        readers: usize,
    ) -> Self {
        let record = Arc::new(Record {
            docs: (0..pool).map(|_| Mutex::new(Expected::Absent)).collect(),
            counters: Counters::default(),
            write_successes: Default::default(),
            read_successes: Default::default(),
            tasks: Default::default(),
            refusals: Default::default(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let gateways = Arc::new(gateways);
        let mut handles = Vec::new();
        for c in 0..writers {
            let (record, stop, gateways) = (record.clone(), stop.clone(), gateways.clone());
            let rng = Rng((seed ^ ((c as u64 + 1) * 0x9E37_79B9)) | 1);
            handles.push(tokio::spawn(write(c, rng, record, stop, gateways)));
        }
        for r in 0..readers {
            let (record, stop, gateways) = (record.clone(), stop.clone(), gateways.clone());
            let rng = Rng((seed ^ ((r as u64 + 101) * 0x85EB_CA6B)) | 1);
            handles.push(tokio::spawn(read(rng, record, stop, gateways)));
        }
        Self {
            stop,
            handles,
            record,
            started: Instant::now(),
        }
    }

    /// Stops every client and waits for its request in flight.
    pub async fn stop(self) -> (Arc<Record>, Instant, Instant) {
        self.stop.store(true, Ordering::Relaxed);
        for handle in self.handles {
            let _ = handle.await;
        }
        (self.record, self.started, Instant::now())
    }
}

/// One writer: replaces, updates or deletes a random document through the next gateway.
async fn write(
    c: usize,
    mut rng: Rng,
    record: Arc<Record>,
    stop: Arc<AtomicBool>,
    gateways: Arc<Vec<String>>,
) {
    let http = http();
    let mut turn = c;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        turn += 1;
        let gateway = &gateways[turn % gateways.len()];
        let i = rng.next(record.docs.len());
        let mut doc = record.docs[i].lock().await;
        let id = doc_id(i);
        let op = rng.next(4);
        let value = json!({"id": id, "title": format!("t{c}x{n}"), "n": n, "client": c});
        let answer = match op {
            0 | 1 => {
                let url = format!("{gateway}/indexes/{INDEX}/documents");
                send(&http, Method::POST, url, Some(json!([value]))).await
            }
            2 => {
                let url = format!("{gateway}/indexes/{INDEX}/documents");
                send(
                    &http,
                    Method::PUT,
                    url,
                    Some(json!([{"id": id, "patch": n}])),
                )
                .await
            }
            _ => {
                let url = format!("{gateway}/indexes/{INDEX}/documents/{id}");
                send(&http, Method::DELETE, url, None).await
            }
        };
        let task = match &answer {
            Ok((202, body)) => body["taskUid"].as_u64(),
            _ => None,
        };
        let Some(task) = task else {
            record
                .counters
                .writes_refused
                .fetch_add(1, Ordering::Relaxed);
            let (reason, message) = match answer {
                Ok((status, body)) => (
                    format!("{status} {}", body["code"].as_str().unwrap_or("")),
                    body["message"].as_str().unwrap_or("").to_owned(),
                ),
                // A gateway killed: the connection is refused or reset.
                Err(error) => ("no answer (gateway down)".to_owned(), error),
            };
            record
                .refusals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(reason)
                .or_insert_with(|| (0, message))
                .0 += 1;
            *doc = Expected::Unknown;
            continue;
        };
        record
            .counters
            .writes_acknowledged
            .fetch_add(1, Ordering::Relaxed);
        record
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
        record
            .write_successes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Instant::now());
        *doc = match (op, &*doc) {
            (0 | 1, _) => Expected::Present(value.as_object().cloned().unwrap_or_default()),
            // Meilisearch's update creates a missing document from the patch.
            (2, Expected::Present(d)) => {
                let mut d = d.clone();
                d.insert("patch".into(), json!(n));
                Expected::Present(d)
            }
            (2, Expected::Absent) => Expected::Present(
                json!({"id": id, "patch": n})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
            (2, Expected::Unknown) => Expected::Unknown,
            _ => Expected::Absent,
        };
    }
}

/// One reader: a document by id or a search, through the next gateway.
async fn read(
    mut rng: Rng,
    record: Arc<Record>,
    stop: Arc<AtomicBool>,
    gateways: Arc<Vec<String>>,
) {
    let http = http();
    let mut turn = rng.next(gateways.len());
    while !stop.load(Ordering::Relaxed) {
        turn += 1;
        let gateway = &gateways[turn % gateways.len()];
        let good = if rng.next(2) == 0 {
            let url = format!(
                "{gateway}/indexes/{INDEX}/documents/{}",
                doc_id(rng.next(record.docs.len()))
            );
            matches!(
                send(&http, Method::GET, url, None).await,
                Ok((200 | 404, _))
            )
        } else {
            let url = format!("{gateway}/indexes/{INDEX}/search");
            let body = json!({"q": "t", "limit": 5});
            matches!(
                send(&http, Method::POST, url, Some(body)).await,
                Ok((200, _))
            )
        };
        if good {
            record.counters.reads_ok.fetch_add(1, Ordering::Relaxed);
            record
                .read_successes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Instant::now());
        } else {
            record.counters.reads_failed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
