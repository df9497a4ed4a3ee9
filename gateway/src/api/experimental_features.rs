//! `GET/PATCH /experimental-features`. A change goes through the control plane: one node
//! checks and applies it with Meilisearch's own rules and feature names, then the features
//! it sets are recorded in the topology and applied to every node, now and as nodes join
//! (`control-plane/src/reconcilers/feature_sync.rs`). Reads ask a live node, as every node
//! holds the same features.

use super::any_node::from_a_live_node;
use super::error::MeiliError;
use super::request_body::JsonBody;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use miroir_proto::pb;
use serde_json::Value;

/// `GET /experimental-features`.
pub async fn get(State(state): State<AppState>) -> Result<Json<Value>, MeiliError> {
    from_a_live_node(&state, "/experimental-features")
        .await
        .map(Json)
}

/// `PATCH /experimental-features`: the answer of the node that checked the change (every
/// feature's value after it), or that node's refusal.
pub async fn update(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Response, MeiliError> {
    // The node checks the members (names, types) and words the errors.
    let patch = Value::Object(super::request_body::json_object(&body)?);
    let answer = state
        .control_plane
        .update_experimental_features(pb::UpdateExperimentalFeaturesRequest {
            patch_json: patch.to_string(),
        })
        .await
        .map_err(|status| MeiliError::from_status(&status))?;
    state
        .topology
        .wait_for_version(answer.topology_version, super::indexes::TOPOLOGY_WAIT)
        .await;
    let status = u16::try_from(answer.status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let body: Value = serde_json::from_str(&answer.body_json).unwrap_or(Value::Null);
    Ok((status, Json(body)).into_response())
}
