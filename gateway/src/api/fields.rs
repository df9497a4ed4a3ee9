//! `POST /indexes/{uid}/fields` (Meilisearch 1.50): the index's fields with what its
//! settings make of each. A node knows the fields of its own documents only, so the list
//! is the union of the fields of nodes holding every shard between them (settings are the same everywhere,
//! so a field's description is too), by name, without Miroir's `_miroir_shard`, then
//! paged.

use super::documents::SHARD_FIELD;
use super::error::{ErrorType, MeiliError};
use super::indexes::index_in;
use super::request_body::JsonBody;
use crate::read::scatter::SearchFailure;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Fields asked of each node at once: every one an index can sensibly have.
const ALL_FIELDS: u64 = 1_000_000;

/// `POST /indexes/{uid}/fields`.
pub async fn fields(
    State(state): State<AppState>,
    Path(uid): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, MeiliError> {
    let topology = state.topology.current();
    let index = index_in(&topology, &uid)?;
    // One live node for each shard: together they hold every document.
    let plan = crate::read::plan::covering_set(index, &topology, 0);
    if let Some(shard) = plan.missing.first() {
        return Err(MeiliError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "miroir_shard_unavailable",
            ErrorType::System,
            format!("no live replica holds shard {shard} of index `{uid}`"),
        ));
    }
    let nodes: Vec<(String, String)> = plan
        .assignments
        .keys()
        .filter_map(|id| topology.nodes.iter().find(|n| &n.id == id))
        .map(|n| (n.id.clone(), n.address.clone()))
        .collect();
    let Some((first, address)) = nodes.first() else {
        return Err(MeiliError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "miroir_shard_unavailable",
            ErrorType::System,
            format!("no live node holds index `{uid}`"),
        ));
    };
    let path = format!("/indexes/{uid}/fields");
    // The client's own request first, so that its refusals are one node's.
    let client: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let checked = state
        .nodes
        .send_raw(
            first,
            address,
            Method::POST,
            &path,
            Some(crate::nodes::NodeBody::Json(body.clone())),
        )
        .await
        .map_err(|unreachable| unreachable_error(&unreachable.error()))?;
    if checked.0 != 200 {
        let status = StatusCode::from_u16(checked.0).unwrap_or(StatusCode::BAD_REQUEST);
        let error = serde_json::from_slice(&checked.1).unwrap_or(Value::Null);
        return Ok(SearchFailure::Node(status, error).into_response());
    }
    let offset = client["offset"].as_u64().unwrap_or(0) as usize;
    let limit = client["limit"].as_u64().unwrap_or(20) as usize;
    let every = json!({"offset": 0, "limit": ALL_FIELDS, "filter": client.get("filter")});
    let mut union: BTreeMap<String, Value> = BTreeMap::new();
    let mut calls = tokio::task::JoinSet::new();
    for (node, address) in nodes {
        let (state, path, every) = (state.clone(), path.clone(), every.clone());
        calls.spawn(async move {
            state
                .nodes
                .call(&node, &address, Method::POST, &path, Some(&every))
                .await
        });
    }
    while let Some(joined) = calls.join_next().await {
        let answer = match joined {
            Ok(Ok(answer)) if answer.status == 200 => answer,
            Ok(Ok(answer)) => return Err(unreachable_error(&answer.body)),
            Ok(Err(unreachable)) => return Err(unreachable_error(&unreachable.error())),
            Err(error) => return Err(MeiliError::internal(format!("a node call failed: {error}"))),
        };
        for field in answer.body["results"].as_array().into_iter().flatten() {
            if let Some(name) = field["name"].as_str()
                && name != SHARD_FIELD
            {
                union
                    .entry(name.to_owned())
                    .or_insert_with(|| field.clone());
            }
        }
    }
    let total = union.len();
    let results: Vec<Value> = union.into_values().skip(offset).take(limit).collect();
    Ok(
        Json(json!({"results": results, "offset": offset, "limit": limit, "total": total}))
            .into_response(),
    )
}

/// A node's failure as the gateway's 503 (the field list would miss its fields).
fn unreachable_error(error: &Value) -> MeiliError {
    MeiliError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "miroir_shard_unavailable",
        ErrorType::System,
        error["message"]
            .as_str()
            .unwrap_or("a node holding the index did not answer")
            .to_owned(),
    )
}
