//! Settings routes: reads come from a live node with Miroir's own settings hidden; writes
//! go through the control plane, which applies them on every node (keeping `_miroir_shard`
//! filterable) and records the task.

use super::auth::Caller;
use super::error::{ErrorType, MeiliError};
use super::indexes::index_for_write;
use super::request_body::{JsonBody, json_object};
use crate::read::plan::covering_set;
use crate::state::AppState;
use crate::write::task::accepted;
use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http::Method;
use miroir_proto::pb;
use serde_json::{Map, Value};
use std::sync::Arc;

use miroir_proto::settings::KEYS;

mod check;
mod embedders;
mod shape;

/// `filterable-attributes` → `filterableAttributes`, if it is a settings route.
fn route_key(name: &str) -> Option<&'static str> {
    let mut key = String::new();
    let mut upper = false;
    for c in name.chars() {
        if c == '-' {
            upper = true;
        } else if upper {
            key.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            key.push(c);
        }
    }
    KEYS.iter().find(|k| **k == key).copied()
}

/// An index's settings as clients read them: the committed ones from the topology (parsed
/// once per settings version), or, before the first commit, read from a node with Miroir's
/// hidden settings removed (at most once a second).
pub async fn cached(state: &AppState, uid: &str) -> Option<Arc<Map<String, Value>>> {
    read(state, uid).await.ok()
}

async fn read(state: &AppState, uid: &str) -> Result<Arc<Map<String, Value>>, MeiliError> {
    const FRESH: std::time::Duration = std::time::Duration::from_secs(1);
    let topology = state.topology.current();
    let index = super::indexes::index_in(&topology, uid)?;
    let version = index.settings_version;
    if let Some((cached_version, at, settings)) = state
        .index_settings
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(uid)
        && *cached_version == version
        && (version > 0 || at.elapsed() < FRESH)
    {
        return Ok(settings.clone());
    }
    let settings = Arc::new(if version > 0 {
        serde_json::from_str(&index.settings_json).unwrap_or_default()
    } else {
        read_from_node(state, index, &topology).await?
    });
    state
        .index_settings
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(
            uid.to_owned(),
            (version, std::time::Instant::now(), settings.clone()),
        );
    Ok(settings)
}

async fn read_from_node(
    state: &AppState,
    index: &pb::Index,
    topology: &pb::Topology,
) -> Result<Map<String, Value>, MeiliError> {
    match node_settings(state, index, topology, "").await? {
        Value::Object(settings) => Ok(miroir_proto::settings::client_view(
            &settings,
            None,
            &Map::new(),
        )),
        other => Err(MeiliError::internal(format!(
            "a node answered settings that are not an object: {other}"
        ))),
    }
}

/// A node's answer to `GET /indexes/{uid}/settings{route}` (its error as the gateway's).
async fn node_settings(
    state: &AppState,
    index: &pb::Index,
    topology: &pb::Topology,
    route: &str,
) -> Result<Value, MeiliError> {
    let uid = &index.uid;
    let plan = covering_set(index, topology, 0);
    for node_id in plan.assignments.keys() {
        let Some(node) = topology.nodes.iter().find(|n| &n.id == node_id) else {
            continue;
        };
        if let Ok(answer) = state
            .nodes
            .call(
                &node.id,
                &node.address,
                Method::GET,
                &format!("/indexes/{uid}/settings{route}"),
                None,
            )
            .await
        {
            return match answer.body {
                settings if answer.status == 200 => Ok(settings),
                other => Err(MeiliError::new(
                    StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY),
                    "internal",
                    ErrorType::Internal,
                    other.to_string(),
                )),
            };
        }
    }
    Err(MeiliError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "miroir_shard_unavailable",
        ErrorType::System,
        format!("no live node holds index `{uid}`"),
    ))
}

/// Commits a settings change that [`check`] has passed (or a reset, which needs none).
async fn write(
    state: &AppState,
    caller: &Caller,
    uid: &str,
    settings: Map<String, Value>,
) -> Result<Response, MeiliError> {
    // Foreign keys join documents of another index on the same node, which a sharded fleet
    // splits: refused, rather than joins that miss documents.
    if settings.get("foreignKeys").is_some_and(|v| !v.is_null()) {
        return Err(MeiliError::new(
            StatusCode::NOT_IMPLEMENTED,
            "miroir_not_supported",
            ErrorType::InvalidRequest,
            "`foreignKeys` is not supported by Miroir: a node joins documents of the foreign index it holds itself, and a sharded fleet spreads that index over several nodes, so joins would miss documents.",
        ));
    }
    // Meilisearch creates a missing index on a settings update.
    index_for_write(state, caller, uid, None).await?;
    let request = pb::UpdateIndexSettingsRequest {
        uid: uid.to_owned(),
        settings_json: Value::Object(settings).to_string(),
    };
    let response = state
        .control_plane
        .update_index_settings(request)
        .await
        .map_err(|s| MeiliError::from_status(&s))?;
    match response.task {
        Some(task) => Ok(accepted(&task)),
        None => Err(crate::write::task::no_task()),
    }
}

/// `GET /indexes/{uid}/settings`.
pub async fn get_all(
    State(state): State<AppState>,
    Path(uid): Path<String>,
) -> Result<Json<Value>, MeiliError> {
    Ok(Json(Value::Object((*read(&state, &uid).await?).clone())))
}

/// `PATCH /indexes/{uid}/settings`.
pub async fn patch_all(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(uid): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, MeiliError> {
    let settings = json_object(&body)?;
    check::settings(&settings, &state.topology.current().experimental_features)?;
    write(&state, &caller, &uid, settings).await
}

/// `DELETE /indexes/{uid}/settings`: every setting back to its default.
pub async fn reset_all(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(uid): Path<String>,
) -> Result<Response, MeiliError> {
    write(
        &state,
        &caller,
        &uid,
        KEYS.iter()
            .map(|k| ((*k).to_owned(), Value::Null))
            .collect(),
    )
    .await
}

/// `GET /indexes/{uid}/settings/{name}`.
pub async fn get_one(
    State(state): State<AppState>,
    Path((uid, name)): Path<(String, String)>,
) -> Result<Response, MeiliError> {
    let Some(key) = route_key(&name) else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let settings = read(&state, &uid).await?;
    match settings.get(key) {
        Some(value) => Ok(Json(value.clone()).into_response()),
        // Left out of a node's full settings while their feature is off, but served by
        // their own routes all the same: a node's answer.
        None if matches!(key, "chat" | "foreignKeys") => {
            let topology = state.topology.current();
            let index = super::indexes::index_in(&topology, &uid)?;
            let route = format!("/{name}");
            Ok(Json(node_settings(&state, index, &topology, &route).await?).into_response())
        }
        None => Ok(Json(Value::Null).into_response()),
    }
}

/// The settings sub-routes Meilisearch 1.50 changes with `PATCH` (their value is merged);
/// every other one takes `PUT`.
const PATCHED: [&str; 5] = [
    "typo-tolerance",
    "faceting",
    "pagination",
    "embedders",
    "chat",
];

/// 405 for a settings sub-route changed with the other method (`PUT` where Meilisearch
/// takes `PATCH`, or the reverse), before credentials are looked at, as Meilisearch routes
/// first.
pub async fn sub_route_method(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = request.method();
    if *method == http::Method::PUT || *method == http::Method::PATCH {
        let segments: Vec<&str> = request.uri().path().trim_matches('/').split('/').collect();
        if let ["indexes", _, "settings", name] = segments.as_slice()
            && route_key(name).is_some()
        {
            let expected = if PATCHED.contains(name) {
                http::Method::PATCH
            } else {
                http::Method::PUT
            };
            if *method != expected {
                return (
                    StatusCode::METHOD_NOT_ALLOWED,
                    [(axum::http::header::ALLOW, expected.as_str())],
                )
                    .into_response();
            }
        }
    }
    next.run(request).await
}

/// `PUT`/`PATCH /indexes/{uid}/settings/{name}` (each sub-route's own method: see
/// [`sub_route_method`]).
pub async fn put_one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((uid, name)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response, MeiliError> {
    let Some(key) = route_key(&name) else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };

    if body.is_empty() {
        return Err(MeiliError::invalid(
            "missing_payload",
            "A json payload is missing.",
        ));
    }
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        MeiliError::invalid(
            "malformed_payload",
            format!("The json payload provided is malformed. `{e}`."),
        )
    })?;
    check::one(key, &value, &state.topology.current().experimental_features)?;
    write(
        &state,
        &caller,
        &uid,
        Map::from_iter([(key.to_owned(), value)]),
    )
    .await
}

/// `DELETE /indexes/{uid}/settings/{name}`.
pub async fn reset_one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((uid, name)): Path<(String, String)>,
) -> Result<Response, MeiliError> {
    let Some(key) = route_key(&name) else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    write(
        &state,
        &caller,
        &uid,
        Map::from_iter([(key.to_owned(), Value::Null)]),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_to_keys() {
        assert_eq!(
            route_key("filterable-attributes"),
            Some("filterableAttributes")
        );
        assert_eq!(route_key("search-cutoff-ms"), Some("searchCutoffMs"));
        assert_eq!(route_key("nope"), None);
    }
}
