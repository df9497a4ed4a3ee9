//! What every node keeps alike (version, experimental features, chat workspaces), asked of
//! one live node.

use super::error::{ErrorType, MeiliError};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use miroir_proto::pb;
use serde_json::Value;

/// `GET /version`: the version of a live node (every node runs the same Meilisearch).
pub async fn version(State(state): State<AppState>) -> Result<Json<Value>, MeiliError> {
    from_a_live_node(&state, "/version").await.map(Json)
}

/// The nodes to ask for what every node keeps alike (version, experimental features, chat
/// workspaces), as (id, address): those that passed their health checks, then joining
/// ones (which the control plane may not have brought in line yet); each part in id
/// order, so every gateway asks the same node first. Owned, so no iterator's closure
/// lives across an await (handlers must be Send).
pub fn fleet_wide_nodes(topology: &pb::Topology) -> Vec<(String, String)> {
    let mut nodes: Vec<&pb::Node> = topology.nodes.iter().filter(|n| n.serves()).collect();
    nodes.sort_by(|a, b| (!a.checked(), &a.id).cmp(&(!b.checked(), &b.id)));
    nodes
        .into_iter()
        .map(|n| (n.id.clone(), n.address.clone()))
        .collect()
}

/// A `GET path` every node answers alike (version, experimental features), asked of the
/// live nodes in turn ([`fleet_wide_nodes`]) until one answers.
pub async fn from_a_live_node(state: &AppState, path: &str) -> Result<Value, MeiliError> {
    let live = fleet_wide_nodes(&state.topology.current());
    let asked = crate::nodes::in_turn(
        state.config.node_timeout,
        live,
        |(id, address)| async move {
            match state
                .nodes
                .call(&id, &address, http::Method::GET, path, None)
                .await
            {
                Ok(answer) if answer.status == 200 => Ok(answer.body),
                _ => Err(()),
            }
        },
    )
    .await;
    asked.map_err(|_| {
        MeiliError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "miroir_node_unavailable",
            ErrorType::System,
            format!("no live node answered GET {path}"),
        )
    })
}

/// The refusal one Meilisearch gives a body Miroir found wrong. Meilisearch checks a body's
/// members in their order and names the first bad one, including members Miroir passes on
/// unread, so a live node is shown the client's own read (`method path` and its JSON
/// `body`; a read writes nothing) and its 4xx is the answer; without one, `ours` is.
pub async fn refusal(
    state: &AppState,
    method: http::Method,
    path: &str,
    body: Option<&axum::body::Bytes>,
    ours: impl IntoResponse,
) -> Response {
    let Some((id, address)) = fleet_wide_nodes(&state.topology.current())
        .into_iter()
        .next()
    else {
        return ours.into_response();
    };
    let sent = state
        .nodes
        .send_raw(
            &id,
            &address,
            method,
            path,
            body.map(|body| crate::nodes::NodeBody::Json(body.clone())),
        )
        .await;
    match sent {
        Ok((status @ 400..=499, answer)) => {
            let mut error: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
            // The node lists Miroir's own field among filterable attributes; the client
            // never sees it.
            if let Some(message) = error["message"].as_str()
                && let Some(client) = crate::read::strip::client_error_message(message)
            {
                error["message"] = Value::String(client);
            }
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            (status, Json(error)).into_response()
        }
        _ => ours.into_response(),
    }
}

/// [`refusal`] of a `POST` read with a JSON body (a search, a fetch, a multi-search).
pub async fn post_refusal(
    state: &AppState,
    path: &str,
    body: &axum::body::Bytes,
    ours: impl IntoResponse,
) -> Response {
    refusal(state, http::Method::POST, path, Some(body), ours).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use miroir_proto::pb::NodeState;

    #[test]
    fn checked_nodes_are_asked_before_joining_ones_and_failed_ones_never() {
        let node = |id: &str, state: NodeState| pb::Node {
            id: id.into(),
            address: format!("http://{id}"),
            state: state as i32,
            ..Default::default()
        };
        let topology = pb::Topology {
            nodes: vec![
                node("a", NodeState::Joining),
                node("d", NodeState::Active),
                node("b", NodeState::Failed),
                node("c", NodeState::Draining),
            ],
            ..Default::default()
        };
        let ids: Vec<String> = fleet_wide_nodes(&topology)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, ["c", "d", "a"]);
    }
}
