//! `POST /dumps` and `POST /snapshots`: every node of the fleet makes its own, under one
//! client task that succeeds when all of them did. A node's dump or snapshot holds its
//! own shard copies; restoring a fleet is restoring each node from its own, with the
//! control plane's store from the same time (docs/operations.md).

use super::error::MeiliError;
use super::indexes::record_task;
use super::tasks::enqueue_on_nodes;
use crate::state::AppState;
use crate::tasks;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use miroir_proto::pb;
use serde_json::{Value, json};

/// `POST /dumps`: a `dumpCreation` task; once it succeeded, `details.miroirDumpUids` names
/// each node's dump (`dumpUid` stays null: there is no one dump).
pub async fn create_dump(State(state): State<AppState>) -> Result<Response, MeiliError> {
    on_every_node(&state, "/dumps", "dumpCreation", json!({"dumpUid": null})).await
}

/// `POST /snapshots`: a `snapshotCreation` task.
pub async fn create_snapshot(State(state): State<AppState>) -> Result<Response, MeiliError> {
    on_every_node(&state, "/snapshots", "snapshotCreation", Value::Null).await
}

/// Asks every node of the fleet for `path` and records the client task over their tasks.
async fn on_every_node(
    state: &AppState,
    path: &str,
    task_type: &str,
    details: Value,
) -> Result<Response, MeiliError> {
    let enqueued_at_ms = miroir_proto::time::now_ms();
    let topology = state.topology.current();
    // Before a topology with nodes is known, "every node" would be none.
    if topology.nodes.is_empty() {
        return Err(MeiliError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "miroir_not_ready",
            super::error::ErrorType::System,
            "the gateway knows no node of the fleet yet",
        ));
    }
    let calls = topology
        .nodes
        .iter()
        .map(|node| (node.id.clone(), path.to_owned()))
        .collect();
    let what = format!("`POST {path}`");
    let (node_tasks, error_json) = enqueue_on_nodes(state, calls, &what).await;
    let request = pb::CreateTaskRequest {
        index_uid: None,
        task_type: task_type.to_owned(),
        node_tasks,
        details_json: if details.is_null() {
            String::new()
        } else {
            details.to_string()
        },
        enqueued_at_ms,
        error_json,
        cancels: Vec::new(),
    };
    let task = record_task(state, request).await?;
    Ok((StatusCode::ACCEPTED, Json(tasks::summary(&task))).into_response())
}
