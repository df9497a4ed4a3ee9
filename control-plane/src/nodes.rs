//! Calls the control plane makes to Meilisearch nodes (index lifecycle), each with a
//! timeout, the master key and a span.

use serde_json::Value;
use std::time::Duration;
use tracing::Instrument;

/// An HTTP client for Meilisearch nodes.
#[derive(Clone)]
pub struct NodeClient {
    http: reqwest::Client,
    master_key: String,
}

/// A node call that did not produce a task.
#[derive(Debug, Clone)]
pub struct NodeCallError {
    /// A Meilisearch-shaped error object.
    pub error: Value,
}

impl NodeCallError {
    fn unreachable(node: &str, detail: impl std::fmt::Display) -> Self {
        Self {
            error: crate::error::meili_error(
                "miroir_node_unavailable",
                "system",
                format!("node `{node}` could not be reached: {detail}"),
            ),
        }
    }
}

impl NodeClient {
    /// A client with a per-call `timeout`.
    pub fn new(master_key: &str, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(2)))
                .build()?,
            master_key: master_key.to_owned(),
        })
    }

    /// Sends one request: the node's status and JSON body (`Null` when empty).
    pub async fn send(
        &self,
        node: &str,
        method: reqwest::Method,
        url: String,
        body: Option<Value>,
    ) -> Result<(u16, Value), NodeCallError> {
        let span = tracing::info_span!("node_call", node, %method, url = %url);
        async {
            let mut headers = http::HeaderMap::new();
            miroir_proto::telemetry::inject_current_context(&mut headers);
            let mut request = self
                .http
                .request(method, &url)
                .bearer_auth(&self.master_key)
                .headers(headers);
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request
                .send()
                .await
                .map_err(|e| NodeCallError::unreachable(node, e))?;
            let status = response.status().as_u16();
            let bytes = response
                .bytes()
                .await
                .map_err(|e| NodeCallError::unreachable(node, e))?;
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).map_err(|e| {
                    NodeCallError::unreachable(node, format!("answer is not JSON: {e}"))
                })?
            };
            Ok((status, body))
        }
        .instrument(span)
        .await
    }

    /// `GET url`: the node's JSON answer, or its Meilisearch error.
    pub async fn get(&self, node: &str, url: String) -> Result<Value, NodeCallError> {
        match self.send(node, reqwest::Method::GET, url, None).await? {
            (200..=299, body) => Ok(body),
            (_, body) if body.get("code").is_some() => Err(NodeCallError { error: body }),
            (status, _) => Err(NodeCallError::unreachable(
                node,
                format!("answered {status}"),
            )),
        }
    }

    /// Sends one request; returns the node's task uid from its 202 answer.
    pub async fn enqueue(
        &self,
        node: &str,
        method: reqwest::Method,
        url: String,
        body: Option<Value>,
    ) -> Result<u64, NodeCallError> {
        let (status, body) = self.send(node, method, url, body).await?;
        match body.get("taskUid").and_then(Value::as_u64) {
            Some(uid) if (200..300).contains(&status) => Ok(uid),
            _ if body.get("code").is_some() => Err(NodeCallError { error: body }),
            _ => Err(NodeCallError::unreachable(
                node,
                format!("unexpected answer {status}: {body}"),
            )),
        }
    }

    /// Polls `base/tasks/{uid}` until the task finished; its final JSON (status
    /// `succeeded`, `failed` or `canceled`).
    pub async fn wait_task(
        &self,
        node: &str,
        base: &str,
        uid: u64,
    ) -> Result<Value, NodeCallError> {
        let mut pause = Duration::from_millis(2);
        loop {
            let task = self.get(node, format!("{base}/tasks/{uid}")).await?;
            if matches!(
                task["status"].as_str(),
                Some("succeeded" | "failed" | "canceled")
            ) {
                return Ok(task);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}
