//! `/chats` (Meilisearch 1.50, behind `chatCompletions`): chat workspaces are settings
//! every node keeps, so reads ask one live node and changes go to every live node — the
//! first decides (its refusal is the answer, nothing sent further), the others follow.
//! Chat completions are refused: a node answers them by searching its own shards only,
//! which would be an answer from part of the data.

use super::error::{ErrorType, MeiliError};
use crate::nodes::NodeBody;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// `GET /chats`, `GET /chats/{workspace}`, `GET /chats/{workspace}/settings`: one node's
/// answer.
pub async fn read(State(state): State<AppState>, uri: Uri) -> Result<Response, MeiliError> {
    let path = path_and_query(&uri);
    let nodes = live_nodes(&state);
    let (state, path) = (&state, &path);
    crate::nodes::in_turn(
        state.config.node_timeout,
        nodes,
        |(id, address)| async move {
            let (status, body) = state
                .nodes
                .send_raw(&id, &address, Method::GET, path, None)
                .await
                .map_err(|unreachable| unreachable.error())?;
            if status >= 500 {
                return Err(serde_json::Value::Null);
            }
            Ok(answer(status, body))
        },
    )
    .await
    .map_err(|_| unavailable())
}

/// `PATCH /chats/{workspace}/settings`, `DELETE /chats/{workspace}[/settings]`: the first
/// live node's answer, once every live node took the change; nodes that did not are
/// named in `X-Miroir-Degraded: nodes=…`.
pub async fn change(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, MeiliError> {
    // A change has a JSON body; a deletion none.
    if method == Method::PATCH {
        super::request_body::require_json(&headers)?;
    }
    let path = path_and_query(&uri);
    let nodes = live_nodes(&state);
    let Some(((first, address), others)) = nodes.split_first() else {
        return Err(unavailable());
    };
    let node_body = || (!body.is_empty()).then(|| NodeBody::Json(body.clone()));
    let (status, answered) = state
        .nodes
        .send_raw(first, address, method.clone(), &path, node_body())
        .await
        .map_err(|_| unavailable())?;
    let mut response = answer(status, answered);
    if !(200..300).contains(&status) {
        return Ok(response);
    }
    let mut calls = tokio::task::JoinSet::new();
    for (id, address) in others.iter().cloned() {
        let (state, method, path, body) =
            (state.clone(), method.clone(), path.clone(), node_body());
        calls.spawn(async move {
            let sent = state
                .nodes
                .send_raw(&id, &address, method, &path, body)
                .await;
            (
                id,
                matches!(sent, Ok((status, _)) if (200..300).contains(&status)),
            )
        });
    }
    let mut missed = Vec::new();
    while let Some(joined) = calls.join_next().await {
        if let Ok((id, false)) = joined {
            missed.push(id);
        }
    }
    if !missed.is_empty() {
        missed.sort();
        if let Ok(value) = HeaderValue::from_str(&format!("nodes={}", missed.join(","))) {
            response.headers_mut().insert("x-miroir-degraded", value);
        }
    }
    Ok(response)
}

/// `POST /chats/{workspace}/chat/completions`: refused (see the module's comment).
pub async fn completions() -> MeiliError {
    MeiliError::new(
        StatusCode::NOT_IMPLEMENTED,
        "miroir_not_supported",
        ErrorType::InvalidRequest,
        "Chat completions are not supported by Miroir: a node answers them by searching its own shards only, which would be an answer from part of the fleet's documents.",
    )
}

fn path_and_query(uri: &Uri) -> String {
    uri.path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned())
}

fn live_nodes(state: &AppState) -> Vec<(String, String)> {
    super::any_node::fleet_wide_nodes(&state.topology.current())
}

/// A node's answer as the client's.
fn answer(status: u16, body: Bytes) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    if body.is_empty() {
        return status.into_response();
    }
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn unavailable() -> MeiliError {
    MeiliError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "miroir_node_unavailable",
        ErrorType::System,
        "no live node answered",
    )
}
