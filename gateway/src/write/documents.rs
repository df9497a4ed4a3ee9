//! A document write (DESIGN §5), stage by stage: parse ([`super::parse`]), route
//! ([`super::route`]), record its task before any node sees it ([`super::task`]), fan out
//! ([`super::fan_out`]), require the quorum ([`super::quorum`]), record the node tasks.

use super::fan_out::{self, NodeCall};
use super::parse::{DocumentBatch, WriteOptions};
use super::payload;
use super::quorum::{Owners, acknowledge};
use super::route::{Refused, node_batches, route};
use super::task;
use crate::api::auth::Caller;
use crate::api::error::MeiliError;
use crate::state::AppState;
use axum::body::Body;
use axum::http::HeaderMap;
use axum::response::Response;
use http::Method;
use miroir_proto::pb;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};

/// The task type of every document addition or update.
const TASK_TYPE: &str = "documentAdditionOrUpdate";

/// Adds (`POST`, replacing documents) or updates (`PUT`, merging fields) the documents of
/// `body` in index `uid`.
pub async fn write_documents(
    state: &AppState,
    caller: &Caller,
    uid: &str,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
    method: Method,
) -> Result<Response, MeiliError> {
    let enqueued_at_ms = miroir_proto::time::now_ms();
    // Checked before the body is read (a lapsed lease answers at once), and again with
    // the cutover hold once the shards are known.
    if !state.topology.lease.is_valid() {
        return Err(super::gate::lease_expired());
    }
    let options = WriteOptions::from_query(params)?;
    let batch = DocumentBatch::read(body, headers, params, state.config.payload_size_limit).await?;
    let received = batch.received();
    let route = match route(state, caller, uid, &batch, &options).await {
        Ok(route) => route,
        Err(Refused::Error(error)) => return Err(error),
        Err(Refused::FailedTask { received, error }) => {
            let details = json!({"receivedDocuments": received, "indexedDocuments": 0});
            return task::failed_task(state, uid, TASK_TYPE, details, error).await;
        }
    };
    // Recorded before any node sees the write: if the control plane is out of reach
    // now, nothing is written; once nodes took it, there is a task to follow.
    let reserved = task::reserve(
        state,
        pb::CreateTaskRequest {
            index_uid: Some(uid.to_owned()),
            task_type: TASK_TYPE.into(),
            node_tasks: Vec::new(),
            details_json: json!({"receivedDocuments": received, "indexedDocuments": null})
                .to_string(),
            enqueued_at_ms,
            error_json: String::new(),
            cancels: Vec::new(),
            custom_metadata: options.custom_metadata.clone(),
            reserve: true,
        },
    )
    .await?;
    let mut path = miroir_proto::node_paths::documents_with_primary_key(uid, &route.primary_key);
    if let Some(skip) = options.skip_creation {
        path.push_str(&format!("&skipCreation={skip}"));
    }
    let calls = node_batches(&route.index, &route.topology, &route.by_shard)
        .into_iter()
        .map(|(node, picks)| {
            let call = NodeCall {
                method: method.clone(),
                path: path.clone(),
                body: Some(payload::node_body(batch.documents.clone(), picks)),
            };
            (node, call)
        })
        .collect();
    let acks = fan_out::send(state, &route.topology, calls).await;
    let shards: BTreeSet<u32> = route.by_shard.keys().copied().collect();
    let owners = Owners::of(&route.index, &route.topology, &shards);
    acknowledge(state, reserved, uid, &owners, acks).await
}
