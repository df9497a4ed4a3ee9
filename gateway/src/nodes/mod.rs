//! HTTP calls from the gateway to Meilisearch nodes: each with a timeout, the master key,
//! a span and the W3C trace context.

mod http1;

use http::Method;
use serde_json::{Value, json};
use std::time::Duration;
use tracing::Instrument;

/// A node's answer: HTTP status and JSON body (`Null` when empty).
#[derive(Debug, Clone)]
pub struct NodeAnswer {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Value,
}

/// Why a node gave no answer.
#[derive(Debug, Clone)]
pub struct Unreachable {
    /// Node id.
    pub node: String,
    /// What happened.
    pub detail: String,
}

impl Unreachable {
    /// As a Meilisearch-shaped error object.
    pub fn error(&self) -> Value {
        json!({
            "message": format!("node `{}` could not be reached: {}", self.node, self.detail),
            "code": "miroir_node_unavailable",
            "type": "system",
            "link": "https://docs.meilisearch.com/errors#miroir_node_unavailable",
        })
    }
}

thread_local! {
    /// Which HTTP thread this is (0: not one), to pick its connection pool.
    static HTTP_THREAD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the calling thread as HTTP thread `index` (from 1).
pub fn set_http_thread(index: usize) {
    HTTP_THREAD.set(index);
}

/// The body of a request to a node.
pub enum NodeBody {
    /// JSON text.
    Json(axum::body::Bytes),
    /// A JSON text in chunks, sent as they come (`Transfer-Encoding: chunked`): a large
    /// batch is never copied whole per node.
    Chunks(Box<dyn Iterator<Item = axum::body::Bytes> + Send>),
}

impl NodeBody {
    /// `value` as JSON text.
    pub fn json(value: &Value) -> Self {
        Self::Json(value.to_string().into())
    }
}

/// The HTTP client for nodes: kept-alive connections per node, one pool per HTTP thread
/// (see [`http1`] for why not hyper's or reqwest's client).
#[derive(Clone)]
pub struct NodeClient {
    /// One pool per HTTP thread (index 0: everything else), so a request's node
    /// connections live on the event loop of the thread that serves it.
    pools: std::sync::Arc<[http1::Pool]>,
    /// `authorization: Bearer <master key>\r\n`.
    authorization: std::sync::Arc<[u8]>,
    timeout: Duration,
}

impl NodeClient {
    /// A client whose calls (connect, send and read the whole answer) time out after
    /// `timeout`, for a gateway serving HTTP on `threads` threads.
    pub fn new(master_key: &str, timeout: Duration, threads: usize) -> anyhow::Result<Self> {
        if master_key
            .bytes()
            .any(|b| !(0x20..0x7f).contains(&b) && b != b'\t')
        {
            anyhow::bail!("the master key cannot be sent in an HTTP header");
        }
        let connect_timeout = timeout.min(Duration::from_secs(2));
        let pools = (0..=threads)
            .map(|_| http1::Pool::new(connect_timeout))
            .collect();
        Ok(Self {
            pools,
            authorization: format!("authorization: Bearer {master_key}\r\n")
                .into_bytes()
                .into(),
            timeout,
        })
    }

    /// Sends `body` (JSON) to `address` + `path`.
    pub async fn call(
        &self,
        node: &str,
        address: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<NodeAnswer, Unreachable> {
        let body = body.map(NodeBody::json);
        self.send(node, address, method, path, body).await
    }

    /// Sends a body that is already encoded (or streamed) to `address` + `path`; the
    /// answer parsed as JSON.
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
    ) -> Result<(u16, axum::body::Bytes), Unreachable> {
        let span = tracing::info_span!(target: miroir_proto::telemetry::REQUEST_TARGET, "node_call", node, %method, path);
        let unreachable = |detail: String| Unreachable {
            node: node.to_owned(),
            detail,
        };
        let exchange = async {
            let mut trace = http::HeaderMap::new();
            miroir_proto::telemetry::inject_current_context(&mut trace);
            let mut headers = self.authorization.to_vec();
            for (name, value) in &trace {
                headers.extend_from_slice(name.as_str().as_bytes());
                headers.extend_from_slice(b": ");
                headers.extend_from_slice(value.as_bytes());
                headers.extend_from_slice(b"\r\n");
            }
            let pool = &self.pools[HTTP_THREAD.get() % self.pools.len()];
            pool.send(address, &method, path, &headers, body)
                .await
                .map(|answer| (answer.status, answer.body))
                .map_err(|error| unreachable(error.to_string()))
        };
        match tokio::time::timeout(self.timeout, exchange.instrument(span)).await {
            Ok(result) => result,
            Err(_) => Err(unreachable(format!(
                "no answer within {}",
                humantime::format_duration(self.timeout)
            ))),
        }
    }
}

/// Tries `candidates` in turn until one gives an answer: the first within its own call's
/// timeout, the others sharing one more `node_timeout`, so a read that fails over never
/// lasts past twice the node timeout, however many nodes are slow. Without an answer, the
/// last error seen (`None`: no candidate, or none failed before the shared timeout).
pub async fn in_turn<C, T, E, F, Fut>(
    node_timeout: Duration,
    candidates: impl IntoIterator<Item = C>,
    mut try_one: F,
) -> Result<T, Option<E>>
where
    F: FnMut(C) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut candidates = candidates.into_iter();
    let Some(first) = candidates.next() else {
        return Err(None);
    };
    let mut last = match try_one(first).await {
        Ok(answer) => return Ok(answer),
        Err(error) => Some(error),
    };
    let others = async {
        for candidate in candidates {
            match try_one(candidate).await {
                Ok(answer) => return Some(answer),
                Err(error) => last = Some(error),
            }
        }
        None
    };
    let answered = tokio::time::timeout(node_timeout, others).await;
    answered.ok().flatten().ok_or(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failing_over_takes_at_most_two_node_timeouts() {
        let timeout = Duration::from_millis(100);
        let started = tokio::time::Instant::now();
        // Every node hangs (a minute): the first is cut by its own call's timeout (here,
        // by hand), the others by the one they share.
        let answer: Result<(), Option<usize>> = in_turn(timeout, 0..5, |i| async move {
            let wait = if i == 0 {
                timeout
            } else {
                Duration::from_secs(60)
            };
            tokio::time::sleep(wait).await;
            Err(i)
        })
        .await;
        assert_eq!(
            answer,
            Err(Some(0)),
            "the last error seen is the first node's"
        );
        let elapsed = started.elapsed();
        assert!(
            elapsed >= 2 * timeout && elapsed < Duration::from_secs(30),
            "{elapsed:?}: not one minute per node"
        );
        // The second answers at once after the first failed.
        let answer = in_turn(timeout, 0..5, |i| async move {
            if i == 1 { Ok(i) } else { Err(i) }
        })
        .await;
        assert_eq!(answer, Ok(1));
    }
}
