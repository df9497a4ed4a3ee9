//! A client for Meilisearch's own API over [`crate::node_client`] (timeouts, a key, a span,
//! TLS, a pool per address): JSON calls, task enqueueing and waiting. The control plane
//! calls its nodes with it, and `miroir-ctl import` a source Meilisearch and a gateway.

use serde_json::Value;
use std::time::Duration;

/// An HTTP client for Meilisearch nodes.
#[derive(Clone)]
pub struct MeiliClient {
    client: crate::node_client::NodeClient,
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
            error: crate::error::meili_error_body(
                "miroir_node_unavailable",
                crate::error::ErrorType::System,
                &format!("node `{node}` could not be reached: {detail}"),
            ),
        }
    }
}

/// `url` as the node's address (`scheme://host:port`) and the path with its query.
fn split_url(url: &str) -> (&str, &str) {
    let authority = url.find("://").map_or(0, |at| at + 3);
    let path = url[authority..]
        .find('/')
        .map_or(url.len(), |at| authority + at);
    url.split_at(path)
}

impl MeiliClient {
    /// A client calling nodes as `options` say.
    pub fn new(
        options: crate::node_client::NodeClientOptions,
    ) -> Result<Self, crate::node_client::NodeClientError> {
        Ok(Self {
            client: crate::node_client::NodeClient::new(options)?,
        })
    }

    /// The shared client underneath.
    pub fn inner(&self) -> &crate::node_client::NodeClient {
        &self.client
    }

    /// Sends one request to `url` (a node's address and a path): the node's status and
    /// JSON body (`Null` when empty).
    pub async fn send(
        &self,
        node: &str,
        method: http::Method,
        url: String,
        body: Option<Value>,
    ) -> Result<(u16, Value), NodeCallError> {
        let (address, path) = split_url(&url);
        let answer = self
            .client
            .call(node, address, method, path, body.as_ref())
            .await
            .map_err(|unreachable| NodeCallError {
                error: unreachable.error(),
            })?;
        Ok((answer.status, answer.body))
    }

    /// `GET url`: the node's JSON answer, or its Meilisearch error.
    pub async fn get(&self, node: &str, url: String) -> Result<Value, NodeCallError> {
        match self.send(node, http::Method::GET, url, None).await? {
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
        method: http::Method,
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_url_splits_into_the_node_address_and_the_path() {
        assert_eq!(
            super::split_url("http://10.0.0.1:7700/indexes/a/documents?limit=2"),
            ("http://10.0.0.1:7700", "/indexes/a/documents?limit=2")
        );
        assert_eq!(super::split_url("https://node-1"), ("https://node-1", ""));
    }
}
