//! Meilisearch's `POST /export` for the fleet, run by the leader: for each index a pattern
//! names, the target gets the index (with its primary key) and, when it is new or the
//! pattern overrides settings, the settings clients see; then the documents, each shard
//! read once, from one in-sync copy (so RF > 1 sends no duplicate), with Miroir's
//! `_miroir_shard` removed, in bodies of at most `payloadSize`.
//!
//! Nodes are not asked to run their own export: theirs would send `_miroir_shard` in
//! every document and Miroir's hidden settings to the target.

use crate::nodes::NodeClient;
use crate::state::{ServiceState, now_ms};
use crate::topology::in_sync_source;
use http::Method;
use miroir_proto::ErrorType;
use miroir_proto::node_client::NodeClientOptions;
use miroir_proto::pb;
use miroir_proto::settings::{SHARD_FIELD, client_view, shard_filter};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Documents per page read from a node.
const PAGE: usize = 1000;

/// Starts export task `uid` in the background.
pub fn start(state: Arc<ServiceState>, uid: u32, request: pb::StartExportRequest) {
    state.exports.set(uid, true);
    let span = tracing::info_span!("export", task = uid, target = %request.url);
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            let started_at_ms = now_ms();
            let _ = state
                .decide_task(uid, "processing", started_at_ms, None)
                .await;
            let outcome = export(&state, &request).await;
            let error = outcome.as_ref().err();
            match error {
                None => tracing::info!("export finished"),
                Some(error) => tracing::warn!(%error, "export failed"),
            }
            let status = if error.is_some() {
                "failed"
            } else {
                "succeeded"
            };
            if let Err(e) = state.decide_task(uid, status, started_at_ms, error).await {
                tracing::warn!(error = %e, "export outcome not recorded");
            }
            state.exports.set(uid, false);
        },
        span,
    ));
}

/// Fails the exports no process runs any more (their leader stopped): an export is not
/// resumed, and running it again is safe. Only exports older than a few seconds: the one
/// just recorded is started right after.
pub async fn fail_interrupted(state: &ServiceState) {
    let before = now_ms().saturating_sub(10_000);
    let Ok(uids) = state.store.unfinished_tasks("export", before).await else {
        return;
    };
    for uid in uids.into_iter().filter(|uid| !state.exports.runs(*uid)) {
        let error = failure(
            "miroir_export_interrupted",
            ErrorType::System,
            "The control plane running this export stopped (a leader change) before it finished. Exporting again is safe: documents are replaced, settings set again.",
        );
        match state.decide_task(uid, "failed", 0, Some(&error)).await {
            Ok(()) => tracing::warn!(
                task = uid,
                "an export interrupted by a leader change was failed"
            ),
            Err(e) => tracing::debug!(task = uid, error = %e, "interrupted export not failed yet"),
        }
    }
}

fn failure(code: &str, kind: ErrorType, message: impl Into<String>) -> Value {
    crate::error::meili_error(code, kind, message)
}

/// The options of the first pattern naming `uid`, in the request's order.
fn pattern_for<'a>(
    patterns: &'a [pb::ExportIndexPattern],
    uid: &str,
) -> Option<&'a pb::ExportIndexPattern> {
    patterns.iter().find(|p| match p.pattern.strip_suffix('*') {
        Some(prefix) => uid.starts_with(prefix),
        None => p.pattern == uid,
    })
}

async fn export(state: &ServiceState, request: &pb::StartExportRequest) -> Result<(), Value> {
    let url = request.url.trim_end_matches('/').to_owned();
    check_target(&url, state.config.export_to_private_networks).await?;
    let target = NodeClient::new(NodeClientOptions::new(
        &request.api_key,
        state.config.node_timeout,
    ))
    .map_err(|e| {
        failure(
            "invalid_export_api_key",
            ErrorType::InvalidRequest,
            e.to_string(),
        )
    })?;
    let topology = state.topology();
    let mut indexes: Vec<&pb::Index> = topology.indexes.iter().collect();
    indexes.sort_by(|a, b| a.uid.cmp(&b.uid));
    for index in indexes {
        let Some(pattern) = pattern_for(&request.indexes, &index.uid) else {
            continue;
        };
        let filter: Option<Value> = (!pattern.filter_json.is_empty())
            .then(|| serde_json::from_str(&pattern.filter_json).unwrap_or(Value::Null))
            .filter(|f| !f.is_null());
        let job = IndexExport {
            state,
            target: &target,
            url: &url,
            topology: &topology,
            index,
            filter,
            override_settings: pattern.override_settings,
            payload_size: request.payload_size_bytes.max(1) as usize,
        };
        job.run().await?;
        tracing::info!(index = %index.uid, "index exported");
    }
    Ok(())
}

/// Refuses a target on a loopback, private or link-local address unless
/// `--export-to-private-networks` allows it (as Meilisearch blocks internal IPs).
async fn check_target(url: &str, private_allowed: bool) -> Result<(), Value> {
    let refuse =
        |message: String| failure("invalid_export_url", ErrorType::InvalidRequest, message);
    let parsed = url::Url::parse(url).map_err(|e| refuse(format!("`{url}` is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(refuse(format!("`{url}` is not an http(s) URL")));
    }
    if private_allowed {
        return Ok(());
    }
    let host = parsed.host_str().unwrap_or_default();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let addresses = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| refuse(format!("cannot resolve `{host}`: {e}")))?;
    for address in addresses {
        let private = match address.ip() {
            std::net::IpAddr::V4(ip) => {
                ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified()
            }
            std::net::IpAddr::V6(ip) => {
                ip.is_loopback()
                    || ip.is_unspecified()
                    || ip.is_unique_local()
                    || ip.is_unicast_link_local()
            }
        };
        if private {
            return Err(refuse(format!(
                "`{host}` resolves to the internal address {}; exports go to internal addresses only with the control plane's --export-to-private-networks",
                address.ip()
            )));
        }
    }
    Ok(())
}

/// One index going to the target.
struct IndexExport<'a> {
    state: &'a ServiceState,
    target: &'a NodeClient,
    url: &'a str,
    topology: &'a pb::Topology,
    index: &'a pb::Index,
    filter: Option<Value>,
    override_settings: bool,
    payload_size: usize,
}

impl IndexExport<'_> {
    fn uid(&self) -> &str {
        &self.index.uid
    }

    /// A target error, named after the index.
    fn target_error(&self, what: &str, error: &Value) -> Value {
        let message = error["message"].as_str().unwrap_or("failed");
        failure(
            error["code"].as_str().unwrap_or("miroir_export_failed"),
            ErrorType::System,
            format!("Index `{}`: {what} on the target: {message}", self.uid()),
        )
    }

    async fn enqueue(&self, method: Method, path: &str, body: Value) -> Result<u64, Value> {
        self.target
            .enqueue(
                "export-target",
                method,
                format!("{}{path}", self.url),
                Some(body),
            )
            .await
            .map_err(|e| self.target_error(path, &e.error))
    }

    async fn succeeded(&self, task: u64, what: &str) -> Result<(), Value> {
        let done = self
            .target
            .wait_task("export-target", self.url, task)
            .await
            .map_err(|e| self.target_error(what, &e.error))?;
        match done["status"].as_str() {
            Some("succeeded") => Ok(()),
            _ => Err(self.target_error(what, &done["error"])),
        }
    }

    async fn run(&self) -> Result<(), Value> {
        let uid = self.uid();
        let exists = match self
            .target
            .send(
                "export-target",
                Method::GET,
                format!("{}/indexes/{uid}", self.url),
                None,
            )
            .await
        {
            Ok((200, _)) => true,
            Ok((404, _)) => false,
            Ok((_, error)) => return Err(self.target_error("reading the index", &error)),
            Err(e) => return Err(self.target_error("reading the index", &e.error)),
        };
        if !exists {
            let mut body = json!({"uid": uid});
            if let Some(pk) = &self.index.primary_key {
                body["primaryKey"] = json!(pk);
            }
            let task = self.enqueue(Method::POST, "/indexes", body).await?;
            self.succeeded(task, "creating the index").await?;
        }
        let owners = self.owners()?;
        if !exists || self.override_settings {
            let settings = self.settings(&owners).await?;
            let path = format!("/indexes/{uid}/settings");
            let task = self
                .enqueue(Method::PATCH, &path, Value::Object(settings))
                .await?;
            self.succeeded(task, "applying the settings").await?;
        }
        self.documents(&owners).await
    }

    /// For each shard, one in-sync copy on a serving node (the first group's when it has
    /// one): the nodes to read, each with its shards.
    fn owners(&self) -> Result<BTreeMap<String, (pb::Node, Vec<u32>)>, Value> {
        let group = self
            .index
            .routing
            .iter()
            .map(|r| r.group_id)
            .min()
            .unwrap_or(0);
        let mut owners: BTreeMap<String, (pb::Node, Vec<u32>)> = BTreeMap::new();
        for shard in 0..self.index.shard_count {
            let node =
                in_sync_source(self.topology, self.index, shard, group).ok_or_else(|| {
                    failure(
                        "miroir_shard_unavailable",
                        ErrorType::System,
                        format!(
                            "Index `{}`: shard {shard} has no live in-sync copy",
                            self.uid()
                        ),
                    )
                })?;
            owners
                .entry(node.id.clone())
                .or_insert_with(|| (node.clone(), Vec::new()))
                .1
                .push(shard);
        }
        Ok(owners)
    }

    /// The settings clients read (Miroir's hidden ones removed), from one owner.
    async fn settings(
        &self,
        owners: &BTreeMap<String, (pb::Node, Vec<u32>)>,
    ) -> Result<Map<String, Value>, Value> {
        let Some((node, _)) = owners.values().next() else {
            return Ok(Map::new());
        };
        let base = node.address.trim_end_matches('/');
        let read = self
            .state
            .nodes
            .get(&node.id, format!("{base}/indexes/{}/settings", self.uid()))
            .await
            .map_err(|e| e.error)?;
        let node_settings = read.as_object().cloned().unwrap_or_default();
        let committed: Option<Map<String, Value>> = (self.index.settings_version > 0)
            .then(|| serde_json::from_str(&self.index.settings_json).unwrap_or_default());
        Ok(client_view(&node_settings, committed.as_ref(), &Map::new()))
    }

    /// Every owner's shards, page by page, in bodies of at most `payload_size` bytes.
    async fn documents(
        &self,
        owners: &BTreeMap<String, (pb::Node, Vec<u32>)>,
    ) -> Result<(), Value> {
        let uid = self.uid();
        let path = match &self.index.primary_key {
            Some(pk) => miroir_proto::node_paths::documents_with_primary_key(uid, pk),
            None => format!("/indexes/{uid}/documents"),
        };
        let (mut batch, mut batch_bytes): (Vec<Value>, usize) = (Vec::new(), 2);
        let mut tasks = Vec::new();
        let mut sent = 0u64;
        for (node, shards) in owners.values() {
            let mut filter = vec![json!(shard_filter(shards))];
            match &self.filter {
                Some(Value::Array(parts)) => filter.extend(parts.iter().cloned()),
                Some(other) => filter.push(other.clone()),
                None => {}
            }
            let url = format!(
                "{}/indexes/{uid}/documents/fetch",
                node.address.trim_end_matches('/')
            );
            let mut offset = 0;
            loop {
                let request = json!({"filter": filter, "offset": offset, "limit": PAGE});
                let page = match self
                    .state
                    .nodes
                    .send(&node.id, Method::POST, url.clone(), Some(request))
                    .await
                {
                    Ok((200, page)) => page,
                    Ok((_, error)) => {
                        let message = error["message"].as_str().unwrap_or("failed");
                        let code = error["code"].as_str().unwrap_or("invalid_document_filter");
                        return Err(failure(
                            code,
                            ErrorType::InvalidRequest,
                            format!("Index `{uid}`: {message}"),
                        ));
                    }
                    Err(e) => return Err(e.error),
                };
                let documents = page["results"].as_array().cloned().unwrap_or_default();
                if documents.is_empty() {
                    break;
                }
                offset += documents.len();
                for mut document in documents {
                    if let Some(fields) = document.as_object_mut() {
                        fields.remove(SHARD_FIELD);
                    }
                    // Its size as sent, with the comma.
                    let size = serde_json::to_vec(&document).map_or(0, |t| t.len()) + 1;
                    if !batch.is_empty() && batch_bytes + size > self.payload_size {
                        let full = std::mem::take(&mut batch);
                        batch_bytes = 2;
                        tasks.push(
                            self.enqueue(Method::POST, &path, Value::Array(full))
                                .await?,
                        );
                    }
                    batch.push(document);
                    batch_bytes += size;
                    sent += 1;
                }
            }
        }
        if !batch.is_empty() {
            tasks.push(
                self.enqueue(Method::POST, &path, Value::Array(batch))
                    .await?,
            );
        }
        for task in tasks {
            self.succeeded(task, "adding documents").await?;
        }
        tracing::info!(index = %uid, documents = sent, "documents exported");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_pattern_naming_an_index_applies() {
        let pattern = |p: &str, override_settings: bool| pb::ExportIndexPattern {
            pattern: p.into(),
            filter_json: String::new(),
            override_settings,
        };
        let patterns = [
            pattern("movies", true),
            pattern("mov*", false),
            pattern("*", false),
        ];
        assert!(pattern_for(&patterns, "movies").unwrap().override_settings);
        assert_eq!(pattern_for(&patterns, "movies2").unwrap().pattern, "mov*");
        assert_eq!(pattern_for(&patterns, "books").unwrap().pattern, "*");
        assert!(pattern_for(&patterns[..1], "books").is_none());
    }

    #[tokio::test]
    async fn internal_targets_need_the_flag() {
        assert!(check_target("http://127.0.0.1:7700", false).await.is_err());
        assert!(check_target("http://10.1.2.3", false).await.is_err());
        assert!(check_target("http://127.0.0.1:7700", true).await.is_ok());
        assert!(check_target("ftp://example.com", true).await.is_err());
        assert!(check_target("not a url", true).await.is_err());
    }
}
