//! Miroir's own routes: readiness and status.

use super::error::{ErrorType, MeiliError};
use crate::state::AppState;
use crate::topology::{covering_gaps, not_ready};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;

/// `GET /_miroir/ready`: 200 once a snapshot is applied in which some node passed its
/// health checks and every shard has a live replica ([`not_ready`]).
pub async fn ready(State(state): State<AppState>) -> Result<Json<serde_json::Value>, MeiliError> {
    let topology = state.topology.current();
    if let Some(why) = not_ready(&topology) {
        return Err(MeiliError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "miroir_not_ready",
            ErrorType::System,
            why,
        ));
    }
    Ok(Json(
        json!({ "status": "ready", "topologyVersion": topology.version }),
    ))
}

/// `GET /_miroir/status`: id, topology, control-plane connection, lease, coordination.
pub async fn status(State(state): State<AppState>) -> Json<serde_json::Value> {
    let topology = state.topology.current();
    let connection = state.topology.connection();
    let gaps = covering_gaps(&topology);
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    Json(json!({
        "gatewayId": &*state.id,
        "topologyVersion": topology.version,
        "ready": not_ready(&topology).is_none(),
        "uncoveredShards": gaps,
        "controlPlane": {
            "configured": state.config.control_plane,
            "connected": connection.address.is_some(),
            "address": connection.address,
            "connectedForMs": connection.since.map(|s| ms(s.elapsed())),
            "lastMessageMsAgo": connection.last_message.map(|s| ms(s.elapsed())),
            "lastError": connection.last_error,
        },
        "lease": {
            "valid": state.topology.lease.is_valid(),
            "remainingMs": state.topology.lease.remaining().map(ms),
            "ttlMs": state.topology.lease.ttl().map(ms),
        },
        "coordination": match state.fleet.redis() {
            Some(redis) => json!({
                "mode": "redis",
                "reachable": redis.reachable(),
                "detail": format!(
                    "idempotency keys, sessions and rate-limit counters shared through Redis at {}",
                    redis.address()
                ),
            }),
            None => json!({
                "mode": "memory",
                "detail": "no Redis configured: idempotency keys, sessions and rate-limit counters are per gateway",
                "liveGateways": state.live_gateways.load(std::sync::atomic::Ordering::Relaxed),
            }),
        },
        "nodes": topology.nodes.len(),
        "indexes": topology.indexes.iter().map(|i| &i.uid).collect::<Vec<_>>(),
    }))
}

/// Answers every Meilisearch route 503 `miroir_not_ready` (with `Retry-After`) until the
/// gateway has applied a first topology: without one it knows no index, key or node, and
/// would answer a client's valid request as if the index or the key did not exist (a
/// restarted gateway answered two deletes 404 `index_not_found` in a chaos run). `/health`
/// and `/_miroir/*` answer as always.
pub async fn until_topology(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = request.uri().path();
    if state.topology.current().version > 0 || path == "/health" || path.starts_with("/_miroir/") {
        return next.run(request).await;
    }
    let mut response = axum::response::IntoResponse::into_response(MeiliError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "miroir_not_ready",
        ErrorType::System,
        "the gateway has not received the fleet's topology from the control plane yet; retry",
    ));
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("1"),
    );
    response
}
