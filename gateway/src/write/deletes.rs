//! Document deletes (DESIGN §5): by id, routed to each id's shard's write nodes; by filter,
//! and clears, sent to every node holding a copy. Each is one client task acknowledged on
//! the owners' quorum, like a write.

use super::fan_out::{self, NodeCall};
use super::gate::{Touches, admit};
use super::quorum::{Owners, acknowledge};
use super::task;
use crate::api::error::MeiliError;
use crate::api::indexes::find_index;
use crate::nodes::NodeBody;
use crate::state::AppState;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http::Method;
use miroir_proto::pb;
use miroir_proto::placement::shard_for_key;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// Makes `calls` (node id → its call) under one client task, reserved before any node
/// sees the delete and acknowledged once a majority of `owners` took it, as writes are.
pub async fn delete(
    state: &AppState,
    index: &pb::Index,
    calls: BTreeMap<String, NodeCall>,
    details: Value,
    owners: &Owners,
    custom_metadata: Option<String>,
) -> Result<Response, MeiliError> {
    let enqueued_at_ms = miroir_proto::time::now_ms();
    let reserved = task::reserve(
        state,
        pb::CreateTaskRequest {
            index_uid: Some(index.uid.clone()),
            task_type: "documentDeletion".into(),
            node_tasks: Vec::new(),
            details_json: details.to_string(),
            enqueued_at_ms,
            error_json: String::new(),
            cancels: Vec::new(),
            custom_metadata,
            reserve: true,
        },
    )
    .await?;
    let acks = fan_out::send(state, &state.topology.current(), calls).await;
    // No node took the task: answer the first node's error directly.
    if acks.node_tasks.is_empty()
        && let Some(error) = acks.errors.first().cloned()
    {
        let status = if error["code"] == "miroir_node_unavailable" {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::BAD_REQUEST
        };
        task::attach(state, reserved, acks.node_tasks, Some(&error)).await;
        return Ok((status, Json(error)).into_response());
    }
    // Deletes count like writes: a delete the owners did not take could come back from
    // them (a shard move copies from an owner).
    acknowledge(state, reserved, &index.uid, owners, acks).await
}

/// Makes `(method, path, body)` on every node holding a copy of index `uid` (deletes by
/// filter, clears), once writes to the whole index may go on.
pub async fn delete_everywhere(
    state: &AppState,
    uid: &str,
    (method, path, body): (Method, String, Option<Value>),
    details: Value,
    custom_metadata: Option<String>,
) -> Result<Response, MeiliError> {
    let _in_flight = admit(state, uid, Touches::All).await?;
    let index = find_index(state, uid)?;
    let topology = state.topology.current();
    let calls = all_nodes(&index, &topology)
        .into_iter()
        .map(|node| {
            let call = NodeCall {
                method: method.clone(),
                path: path.clone(),
                body: body.as_ref().map(NodeBody::json),
            };
            (node, call)
        })
        .collect();
    let owners = Owners::all(&index, &topology);
    delete(state, &index, calls, details, &owners, custom_metadata).await
}

/// Every node that holds a copy of `index` in a group taking writes.
fn all_nodes(index: &pb::Index, topology: &pb::Topology) -> Vec<String> {
    let writable = crate::write::quorum::writable_groups(topology);
    let mut nodes: Vec<String> = index
        .routing
        .iter()
        .filter(|r| writable.contains(&r.group_id))
        .flat_map(|r| r.shards.iter().flat_map(|s| s.write_nodes.iter().cloned()))
        .collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

/// Deletes `ids`, each sent to the write nodes of its shard.
pub async fn delete_ids(
    state: &AppState,
    uid: &str,
    ids: Vec<String>,
    custom_metadata: Option<String>,
) -> Result<Response, MeiliError> {
    let shard_count = find_index(state, uid)?.shard_count;
    let shards: BTreeSet<u32> = ids
        .iter()
        .map(|id| shard_for_key(id, shard_count).0)
        .collect();
    let _in_flight = admit(state, uid, Touches::Shards(&shards)).await?;
    let index = find_index(state, uid)?;
    // Counted again: a swap while the delete waited may have changed the shard count.
    let shards: BTreeSet<u32> = ids
        .iter()
        .map(|id| shard_for_key(id, index.shard_count).0)
        .collect();
    let mut per_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for id in &ids {
        let shard = shard_for_key(id, index.shard_count).0 as usize;
        for route in index.routing.iter().filter_map(|r| r.shards.get(shard)) {
            for node in &route.write_nodes {
                per_node.entry(node.clone()).or_default().push(id.clone());
            }
        }
    }
    let calls = per_node
        .into_iter()
        .map(|(node, ids)| {
            let call = NodeCall {
                method: Method::POST,
                path: format!("/indexes/{uid}/documents/delete-batch"),
                body: Some(NodeBody::json(&ids)),
            };
            (node, call)
        })
        .collect();
    let details =
        json!({"providedIds": ids.len(), "deletedDocuments": null, "originalFilter": null});
    let owners = Owners::of(&index, &state.topology.current(), &shards);
    delete(state, &index, calls, details, &owners, custom_metadata).await
}
