//! HTTP calls from the gateway to Meilisearch nodes: each with a timeout, the master key,
//! a span and the W3C trace context.

use reqwest::Method;
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

/// The HTTP client for nodes.
#[derive(Clone)]
pub struct NodeClient {
    http: reqwest::Client,
    master_key: String,
}

impl NodeClient {
    /// A client whose calls time out after `timeout`.
    pub fn new(master_key: &str, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(2)))
                .pool_max_idle_per_host(64)
                .build()?,
            master_key: master_key.to_owned(),
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
        let body = body.map(|b| reqwest::Body::from(b.to_string()));
        self.send(node, address, method, path, body).await
    }

    /// Sends a JSON body that is already encoded (or streamed) to `address` + `path`.
    pub async fn send_json_body(
        &self,
        node: &str,
        address: &str,
        method: Method,
        path: &str,
        body: reqwest::Body,
    ) -> Result<NodeAnswer, Unreachable> {
        self.send(node, address, method, path, Some(body)).await
    }

    async fn send(
        &self,
        node: &str,
        address: &str,
        method: Method,
        path: &str,
        body: Option<reqwest::Body>,
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
        body: Option<reqwest::Body>,
    ) -> Result<(u16, axum::body::Bytes), Unreachable> {
        let span = tracing::info_span!("node_call", node, %method, path);
        async {
            let mut request = self
                .http
                .request(method, format!("{address}{path}"))
                .bearer_auth(&self.master_key);
            let mut headers = http::HeaderMap::new();
            miroir_proto::telemetry::inject_current_context(&mut headers);
            request = request.headers(headers);
            if let Some(body) = body {
                request = request
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(body);
            }
            let unreachable = |detail: String| Unreachable {
                node: node.to_owned(),
                detail,
            };
            let response = request
                .send()
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let status = response.status().as_u16();
            let bytes = response
                .bytes()
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            Ok((status, bytes))
        }
        .instrument(span)
        .await
    }
}
