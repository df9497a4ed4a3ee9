//! The HTTP client for Meilisearch nodes, shared by the control plane and the gateway:
//! hyper-util's pooled client with rustls (hyper-rustls), one pool per node. (reqwest
//! wraps the same client; without its URL and middleware layers a call costs about 4 µs
//! less, measured in docs/benchmarks.md.)
//!
//! - TLS: `https://` node addresses work, trusting the system's roots and, with
//!   [`NodeClientOptions::ca_pem`], an operator's own CA.
//! - Timeouts: connecting has its own; a call's whole exchange has
//!   [`NodeClientOptions::timeout`], plus the time its body takes at
//!   [`NodeClientOptions::upload_bytes_per_second`] (a 100 MiB batch is not held to a
//!   search's bound).
//! - An answer larger than [`NodeClientOptions::max_answer_bytes`] is an error, never an
//!   allocation of whatever a `Content-Length` says.
//! - Pools: at most [`NodeClientOptions::max_calls_per_node`] calls (so connections) in
//!   flight per node, at most [`NodeClientOptions::max_idle_per_node`] idle ones,
//!   closed after [`NodeClientOptions::idle_timeout`]; a node's pool is dropped by
//!   [`NodeClient::retain`] once the node leaves the topology.
//! - Retries: none here. hyper sends a request again only when its pooled connection
//!   closed before any of it was written (provably never sent); callers fail over to
//!   another replica only for reads.

use bytes::Bytes;
use http::Method;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tracing::Instrument;

/// How the client calls nodes.
#[derive(Clone, Debug)]
pub struct NodeClientOptions {
    /// The master key every node runs with (sent as `Authorization: Bearer`).
    pub master_key: String,
    /// Longest a connection may take to open.
    pub connect_timeout: Duration,
    /// Longest a call may take, from sending to the last byte of the answer (plus the
    /// upload allowance for a body).
    pub timeout: Duration,
    /// The slowest upload rate a body is allowed: a body of `n` bytes adds
    /// `n / upload_bytes_per_second` seconds to its call's timeout.
    pub upload_bytes_per_second: u64,
    /// Largest answer accepted.
    pub max_answer_bytes: usize,
    /// Idle connections kept per node.
    pub max_idle_per_node: usize,
    /// Calls (and so connections) in flight to one node at once; more wait their turn.
    pub max_calls_per_node: usize,
    /// An idle connection older than this is closed.
    pub idle_timeout: Duration,
    /// A PEM bundle of CA certificates to trust besides the system's, for nodes served
    /// over `https://` with an operator's own CA.
    pub ca_pem: Option<Vec<u8>>,
}

impl NodeClientOptions {
    /// Defaults for a per-call `timeout`: 2 s to connect (at most `timeout`), 10 MB/s
    /// uploads, 256 MiB answers, 64 idle connections per node kept 30 s, 512 calls at once
    /// per node.
    pub fn new(master_key: &str, timeout: Duration) -> Self {
        Self {
            master_key: master_key.to_owned(),
            connect_timeout: timeout.min(Duration::from_secs(2)),
            timeout,
            upload_bytes_per_second: 10_000_000,
            max_answer_bytes: 256 << 20,
            max_idle_per_node: 64,
            max_calls_per_node: 512,
            idle_timeout: Duration::from_secs(30),
            ca_pem: None,
        }
    }
}

/// The node client's flags, shared by the control plane and the gateway (each has its
/// own `--node-timeout`).
#[derive(Debug, Clone, clap::Args)]
pub struct NodeClientArgs {
    /// Longest a connection to a node may take to open (at most `--node-timeout`).
    #[arg(long, env = "MIROIR_NODE_CONNECT_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub node_connect_timeout: Duration,

    /// The slowest upload to a node allowed, in bytes per second: a request body of `n`
    /// bytes adds `n / rate` seconds to its call's `--node-timeout`.
    #[arg(long, env = "MIROIR_NODE_UPLOAD_RATE", default_value_t = 10_000_000)]
    pub node_upload_rate: u64,

    /// Largest answer read from a node, in bytes; a larger one fails the call.
    #[arg(long, env = "MIROIR_NODE_ANSWER_LIMIT", default_value_t = 256 << 20)]
    pub node_answer_limit: usize,

    /// Idle connections kept open per node.
    #[arg(long, env = "MIROIR_NODE_IDLE_CONNECTIONS", default_value_t = 64)]
    pub node_idle_connections: usize,

    /// Calls in flight to one node at once, and so its open connections; more wait their
    /// turn within their timeout.
    #[arg(long, env = "MIROIR_NODE_MAX_CONNECTIONS", default_value_t = 512)]
    pub node_max_connections: usize,

    /// A PEM file of CA certificates to trust for `https://` node addresses, besides the
    /// system's roots.
    #[arg(long, env = "MIROIR_NODE_CA_FILE")]
    pub node_ca_file: Option<std::path::PathBuf>,
}

impl NodeClientArgs {
    /// The client's options for calls timing out after `timeout`.
    pub fn options(
        &self,
        master_key: &str,
        timeout: Duration,
    ) -> Result<NodeClientOptions, NodeClientError> {
        let ca_pem = match &self.node_ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                NodeClientError::Ca(format!("cannot read {}: {e}", path.display()))
            })?),
            None => None,
        };
        Ok(NodeClientOptions {
            master_key: master_key.to_owned(),
            connect_timeout: self.node_connect_timeout.min(timeout),
            timeout,
            upload_bytes_per_second: self.node_upload_rate,
            max_answer_bytes: self.node_answer_limit,
            max_idle_per_node: self.node_idle_connections,
            max_calls_per_node: self.node_max_connections,
            idle_timeout: Duration::from_secs(30),
            ca_pem,
        })
    }
}

/// Why a client cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum NodeClientError {
    /// The master key cannot be sent in a header.
    #[error("the master key cannot be sent in an HTTP header")]
    MasterKey,
    /// The CA bundle cannot be read, or is not PEM certificates.
    #[error("--node-ca-file: {0}")]
    Ca(String),
}

/// The body of a request to a node.
pub enum NodeBody {
    /// JSON text.
    Json(Bytes),
    /// A JSON text in chunks, sent as they come (`Transfer-Encoding: chunked`), so a large
    /// batch is never copied whole per node; `len` is about its size, for the timeout.
    Chunks {
        /// The chunks.
        parts: Box<dyn Iterator<Item = Bytes> + Send + Sync>,
        /// About how many bytes they make.
        len: u64,
    },
}

impl NodeBody {
    /// `value` as JSON text.
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Self {
        // Serializing a `Value` or a derived struct into memory cannot fail.
        Self::Json(serde_json::to_vec(value).unwrap_or_default().into())
    }

    fn len(&self) -> u64 {
        match self {
            Self::Json(bytes) => bytes.len() as u64,
            Self::Chunks { len, .. } => *len,
        }
    }
}

/// A node's answer: HTTP status and JSON body (`Null` when empty).
#[derive(Debug, Clone)]
pub struct NodeAnswer {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Value,
}

/// Why a node gave no answer (or one that could not be read).
#[derive(Debug, Clone, thiserror::Error)]
#[error("node `{node}` could not be reached: {detail}")]
pub struct Unreachable {
    /// Node id.
    pub node: String,
    /// What happened.
    pub detail: String,
}

impl Unreachable {
    /// As a Meilisearch-shaped error object (`miroir_node_unavailable`).
    pub fn error(&self) -> Value {
        crate::error::meili_error_body(
            "miroir_node_unavailable",
            crate::error::ErrorType::System,
            &self.to_string(),
        )
    }
}

/// The client: cheap to clone, one pool per node address.
#[derive(Clone)]
pub struct NodeClient(Arc<Inner>);

/// What a request to a node carries.
type RequestBody = UnsyncBoxBody<Bytes, std::convert::Infallible>;
/// One node's pool, and the calls it may carry at once.
#[derive(Clone)]
struct Pool {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, RequestBody>,
    calls: Arc<tokio::sync::Semaphore>,
}

struct Inner {
    options: NodeClientOptions,
    authorization: HeaderValue,
    tls: rustls::ClientConfig,
    pools: RwLock<HashMap<String, Pool>>,
}

impl NodeClient {
    /// A client calling nodes as `options` say.
    pub fn new(options: NodeClientOptions) -> Result<Self, NodeClientError> {
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", options.master_key))
            .map_err(|_| NodeClientError::MasterKey)?;
        authorization.set_sensitive(true);
        let tls = tls_config(options.ca_pem.as_deref())?;
        Ok(Self(Arc::new(Inner {
            options,
            authorization,
            tls,
            pools: RwLock::default(),
        })))
    }

    /// The options the client was made with.
    pub fn options(&self) -> &NodeClientOptions {
        &self.0.options
    }

    /// Sends `body` (JSON) to `address` + `path`; the answer parsed as JSON.
    pub async fn call(
        &self,
        node: &str,
        address: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<NodeAnswer, Unreachable> {
        self.send(node, address, method, path, body.map(NodeBody::json))
            .await
    }

    /// Sends a body already encoded (or streamed) to `address` + `path`; the answer
    /// parsed as JSON.
    pub async fn send(
        &self,
        node: &str,
        address: &str,
        method: Method,
        path: &str,
        body: Option<NodeBody>,
    ) -> Result<NodeAnswer, Unreachable> {
        let (status, bytes) = self.send_raw(node, address, method, path, body).await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| Unreachable {
                node: node.to_owned(),
                detail: format!("answer is not JSON: {e}"),
            })?
        };
        Ok(NodeAnswer { status, body })
    }

    /// Sends one request; the node's status and body as it sent them (not parsed).
    pub async fn send_raw(
        &self,
        node: &str,
        address: &str,
        method: Method,
        path: &str,
        body: Option<NodeBody>,
    ) -> Result<(u16, Bytes), Unreachable> {
        let span = tracing::info_span!(
            target: crate::telemetry::REQUEST_TARGET,
            "node_call", node, %method, path
        );
        let unreachable = |detail: String| Unreachable {
            node: node.to_owned(),
            detail,
        };
        let options = &self.0.options;
        let upload = body.as_ref().map_or(0, NodeBody::len);
        let timeout = options.timeout
            + Duration::from_secs_f64(
                upload as f64 / options.upload_bytes_per_second.max(1) as f64,
            );
        let exchange = async {
            let pool = self.pool(address);
            // Held until the answer is read: one connection per call in HTTP/1.1, so this
            // also bounds the node's open connections. Waiting counts against the timeout.
            let _call = pool
                .calls
                .acquire()
                .await
                .map_err(|_| unreachable("the node's pool was closed".into()))?;
            let uri: http::Uri = format!("{address}{path}")
                .parse()
                .map_err(|e| unreachable(format!("invalid address or path: {e}")))?;
            let mut request = http::Request::builder().method(method).uri(uri);
            if let Some(headers) = request.headers_mut() {
                crate::telemetry::inject_current_context(headers);
                headers.insert(AUTHORIZATION, self.0.authorization.clone());
                if body.is_some() {
                    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                }
            }
            let body: RequestBody = match body {
                None => http_body_util::Empty::new().boxed_unsync(),
                Some(NodeBody::Json(bytes)) => http_body_util::Full::new(bytes).boxed_unsync(),
                Some(NodeBody::Chunks { parts, .. }) => {
                    let frames = parts.map(|part| Ok(hyper::body::Frame::data(part)));
                    http_body_util::StreamBody::new(tokio_stream::iter(frames)).boxed_unsync()
                }
            };
            let request = request
                .body(body)
                .map_err(|e| unreachable(format!("invalid request: {e}")))?;
            let response = pool
                .client
                .request(request)
                .await
                .map_err(|e| unreachable(describe(&e)))?;
            let status = response.status().as_u16();
            let limit = options.max_answer_bytes;
            let announced = response
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if announced.is_some_and(|n| n > limit as u64) {
                return Err(unreachable(too_large(limit)));
            }
            let answer = http_body_util::Limited::new(response.into_body(), limit)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        unreachable(too_large(limit))
                    } else {
                        unreachable(describe(e.as_ref()))
                    }
                })?
                .to_bytes();
            Ok((status, answer))
        };
        match tokio::time::timeout(timeout, exchange.instrument(span)).await {
            Ok(result) => result,
            Err(_) => Err(unreachable(format!(
                "no answer within {}",
                humantime::format_duration(timeout)
            ))),
        }
    }

    /// Drops the pools of nodes whose address `keep` refuses (nodes gone from the
    /// topology): their idle connections close.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut pools = self.0.pools.write().unwrap_or_else(|e| e.into_inner());
        pools.retain(|address, _| keep(address));
    }

    /// The pool of the node at `address` (`scheme://host:port`), made on first use.
    fn pool(&self, address: &str) -> Pool {
        if let Some(pool) = self
            .0
            .pools
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(address)
        {
            return pool.clone();
        }
        let options = &self.0.options;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(options.connect_timeout));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(self.0.tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let pool = Pool {
            client: Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(options.idle_timeout)
                .pool_max_idle_per_host(options.max_idle_per_node)
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .build(connector),
            calls: Arc::new(tokio::sync::Semaphore::new(
                options.max_calls_per_node.max(1),
            )),
        };
        let mut pools = self.0.pools.write().unwrap_or_else(|e| e.into_inner());
        pools.entry(address.to_owned()).or_insert(pool).clone()
    }
}

/// TLS for `https://` nodes: the system's roots, and the operator's CA bundle if given.
fn tls_config(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, NodeClientError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(pem) = ca_pem {
        let mut added = 0;
        for certificate in CertificateDer::pem_slice_iter(pem) {
            let certificate = certificate.map_err(|e| NodeClientError::Ca(e.to_string()))?;
            roots
                .add(certificate)
                .map_err(|e| NodeClientError::Ca(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(NodeClientError::Ca("no certificate in the file".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| NodeClientError::Ca(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn too_large(limit: usize) -> String {
    format!("its answer is larger than {limit} bytes (the node client's answer limit)")
}

/// An error with its causes (hyper's own text stops at "client error (Connect)").
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server answering every request on a connection with `answer`, after reading
    /// the request head (and a chunked body until its end).
    async fn server(answer: &'static [u8]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buffer = [0u8; 4096];
                    loop {
                        let Ok(n) = stream.read(&mut buffer).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buffer[..n]);
                        let text = String::from_utf8_lossy(&seen);
                        let whole = text.contains("\r\n\r\n")
                            && (!text.contains("chunked") || text.ends_with("0\r\n\r\n"));
                        if whole {
                            seen.clear();
                            if stream.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        address
    }

    fn client(options: impl FnOnce(&mut NodeClientOptions)) -> NodeClient {
        let mut o = NodeClientOptions::new("key", Duration::from_secs(5));
        options(&mut o);
        NodeClient::new(o).unwrap()
    }

    #[tokio::test]
    async fn answers_are_read_and_bodies_streamed() {
        let address =
            server(b"HTTP/1.1 202 Accepted\r\ncontent-length: 13\r\n\r\n{\"taskUid\":1}").await;
        let client = client(|_| {});
        let parts: Vec<Bytes> = vec!["[".into(), "{\"id\":1}".into(), "]".into()];
        let body = NodeBody::Chunks {
            parts: Box::new(parts.into_iter()),
            len: 10,
        };
        let answer = client
            .send(
                "n",
                &address,
                Method::POST,
                "/indexes/a/documents",
                Some(body),
            )
            .await
            .unwrap();
        assert_eq!((answer.status, answer.body), (202, json!({"taskUid": 1})));
    }

    #[tokio::test]
    async fn an_answer_over_the_limit_is_an_error_whatever_its_framing() {
        for answer in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 100000000000\r\n\r\n{}"[..],
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n20\r\n[11111111111111111111111111111]\r\n0\r\n\r\n",
        ] {
            let address = server(answer).await;
            let client = client(|o| o.max_answer_bytes = 16);
            let error = client
                .send_raw("n", &address, Method::GET, "/stats", None)
                .await
                .unwrap_err();
            assert!(error.detail.contains("larger than"), "{error}");
        }
    }

    #[tokio::test]
    async fn a_silent_node_times_out_and_an_upload_gets_time_for_its_size() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        // Accepts and never answers.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let client = client(|o| {
            o.timeout = Duration::from_millis(100);
            o.upload_bytes_per_second = 1000;
        });
        let started = tokio::time::Instant::now();
        let error = client
            .send_raw("n", &address, Method::GET, "/health", None)
            .await
            .unwrap_err();
        assert!(error.detail.contains("no answer within 100ms"), "{error}");
        let body = NodeBody::Json(Bytes::from(vec![b' '; 200]));
        let error = client
            .send_raw("n", &address, Method::POST, "/x", Some(body))
            .await
            .unwrap_err();
        assert!(error.detail.contains("no answer within 300ms"), "{error}");
        assert!(started.elapsed() >= Duration::from_millis(400));
    }

    #[tokio::test]
    async fn pools_of_nodes_gone_are_dropped() {
        let first = server(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").await;
        let second = server(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").await;
        let client = client(|_| {});
        for address in [&first, &second] {
            client
                .send_raw("n", address, Method::GET, "/health", None)
                .await
                .unwrap();
        }
        client.retain(|address| address == first);
        let pools = client.0.pools.read().unwrap();
        assert_eq!(pools.keys().collect::<Vec<_>>(), [&first]);
    }

    #[tokio::test]
    async fn https_nodes_are_called_with_the_operators_ca() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certificate =
            CertificateDer::from_pem_slice(include_bytes!("../testdata/tls/node.pem")).unwrap();
        let key =
            PrivateKeyDer::from_pem_slice(include_bytes!("../testdata/tls/node.key")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certificate], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!(
            "https://localhost:{}",
            listener.local_addr().unwrap().port()
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let mut buffer = [0u8; 4096];
                    let _ = stream.read(&mut buffer).await;
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                        .await;
                    let _ = stream.flush().await;
                });
            }
        });
        let trusting =
            client(|o| o.ca_pem = Some(include_bytes!("../testdata/tls/ca.pem").to_vec()));
        let (status, _) = trusting
            .send_raw("n", &address, Method::GET, "/health", None)
            .await
            .unwrap();
        assert_eq!(status, 200);
        let error = client(|_| {})
            .send_raw("n", &address, Method::GET, "/health", None)
            .await
            .unwrap_err();
        assert!(error.detail.contains("certificate"), "{error}");
        let refused = NodeClient::new(NodeClientOptions {
            ca_pem: Some(b"not a certificate".to_vec()),
            ..NodeClientOptions::new("key", Duration::from_secs(1))
        });
        assert!(matches!(refused, Err(NodeClientError::Ca(_))));
    }

    #[test]
    fn a_master_key_that_is_no_header_value_is_refused() {
        let refused = NodeClient::new(NodeClientOptions::new("a\nb", Duration::from_secs(1)));
        assert!(matches!(refused, Err(NodeClientError::MasterKey)));
    }

    #[tokio::test]
    async fn calls_to_one_node_wait_past_its_connection_limit() {
        // A server that answers each request after 100 ms and counts the requests it
        // holds at once.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let (now, most) = (
            Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        );
        let (counting, highest) = (now.clone(), most.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (now, most) = (counting.clone(), highest.clone());
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buffer).await {
                        if n == 0 {
                            return;
                        }
                        let held = now.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        most.fetch_max(held, std::sync::atomic::Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        now.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let client = client(|o| o.max_calls_per_node = 2);
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let (client, address) = (client.clone(), address.clone());
            calls.spawn(async move {
                client
                    .call("n", &address, Method::GET, "/health", None)
                    .await
            });
        }
        while let Some(answer) = calls.join_next().await {
            assert_eq!(answer.unwrap().unwrap().status, 200);
        }
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
