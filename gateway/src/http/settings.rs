//! Settings routes: reads come from a live node with Miroir's own settings hidden; writes
//! go through the control plane, which applies them on every node (keeping `_miroir_shard`
//! filterable) and records the task.

use super::auth::Caller;
use super::documents::{SHARD_FIELD, index_for_write};
use super::error::{ErrorType, MeiliError};
use super::indexes::{accepted, find_index, json_object};
use super::scatter::covering_set;
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use miroir_proto::pb;
use reqwest::Method;
use serde_json::{Map, Value};
use std::sync::Arc;

/// Every settings key of Meilisearch 1.12/1.13, in its order.
const KEYS: &[&str] = &[
    "displayedAttributes",
    "searchableAttributes",
    "filterableAttributes",
    "sortableAttributes",
    "rankingRules",
    "stopWords",
    "nonSeparatorTokens",
    "separatorTokens",
    "dictionary",
    "synonyms",
    "distinctAttribute",
    "proximityPrecision",
    "typoTolerance",
    "faceting",
    "pagination",
    "embedders",
    "searchCutoffMs",
    "localizedAttributes",
    "facetSearch",
    "prefixSearch",
];

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

/// Removes what Miroir adds, so clients read what one Meilisearch would answer.
fn hide(settings: &mut Map<String, Value>) {
    if let Some(Value::Array(items)) = settings.get_mut("filterableAttributes") {
        items.retain(|v| v != SHARD_FIELD);
    }
}

/// An index's settings as clients see them, read from a node at most once a second per
/// index: the merge needs some of them (`distinctAttribute`, `faceting`) because nodes
/// apply them to their own hits only.
pub async fn cached(state: &AppState, uid: &str) -> Option<Arc<Map<String, Value>>> {
    const FRESH: std::time::Duration = std::time::Duration::from_secs(1);
    if let Some((at, settings)) = state
        .index_settings
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(uid)
        && at.elapsed() < FRESH
    {
        return Some(settings.clone());
    }
    let settings = Arc::new(read(state, uid).await.ok()?);
    state
        .index_settings
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(
            uid.to_owned(),
            (std::time::Instant::now(), settings.clone()),
        );
    Some(settings)
}

async fn read(state: &AppState, uid: &str) -> Result<Map<String, Value>, MeiliError> {
    let index = find_index(state, uid)?;
    let topology = state.topology.current();
    let plan = covering_set(&index, &topology, 0);
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
                &format!("/indexes/{uid}/settings"),
                None,
            )
            .await
        {
            return match answer.body {
                Value::Object(mut settings) if answer.status == 200 => {
                    hide(&mut settings);
                    Ok(settings)
                }
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

async fn write(
    state: &AppState,
    caller: &Caller,
    uid: &str,
    settings: Map<String, Value>,
) -> Result<Response, MeiliError> {
    if let Some(unknown) = settings.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(MeiliError::invalid(
            "bad_request",
            format!(
                "Unknown field `{unknown}`: expected one of {}",
                KEYS.iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
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
        .map_err(|s| MeiliError::from_status(&s, "index_not_found"))?;
    match response.task {
        Some(task) => Ok(accepted(&task)),
        None => Err(MeiliError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            ErrorType::Internal,
            "the control plane recorded no task",
        )),
    }
}

/// `GET /indexes/{uid}/settings`.
pub async fn get_all(
    State(state): State<AppState>,
    Path(uid): Path<String>,
) -> Result<Json<Value>, MeiliError> {
    Ok(Json(Value::Object(read(&state, &uid).await?)))
}

/// `PATCH /indexes/{uid}/settings`.
pub async fn patch_all(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(uid): Path<String>,
    body: Bytes,
) -> Result<Response, MeiliError> {
    let settings = json_object(&body)?;
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
    let mut settings = read(&state, &uid).await?;
    Ok(Json(settings.remove(key).unwrap_or(Value::Null)).into_response())
}

/// `PUT`/`PATCH /indexes/{uid}/settings/{name}`.
pub async fn put_one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((uid, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, MeiliError> {
    let Some(key) = route_key(&name) else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let value: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            MeiliError::invalid(
                "malformed_payload",
                format!("The json payload provided is malformed. `{e}`."),
            )
        })?
    };
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
    fn routes_map_to_keys_and_miroir_is_hidden() {
        assert_eq!(
            route_key("filterable-attributes"),
            Some("filterableAttributes")
        );
        assert_eq!(route_key("search-cutoff-ms"), Some("searchCutoffMs"));
        assert_eq!(route_key("nope"), None);
        let mut settings = serde_json::json!({"filterableAttributes": ["genre", "_miroir_shard"]})
            .as_object()
            .unwrap()
            .clone();
        hide(&mut settings);
        assert_eq!(
            settings["filterableAttributes"],
            serde_json::json!(["genre"])
        );
    }
}
