//! Meilisearch's `/keys` routes. Reads come from the served topology; changes go through
//! the control plane, which records them and creates each key on every node with the
//! same uid (so the same value) — see `control-plane/src/reconcilers/key_sync.rs`.

use super::error::{ErrorType, MeiliError, json_kind, optional_positive_integer};
use super::indexes::TOPOLOGY_WAIT;
use super::request_body::{JsonBody, json_object};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use miroir_proto::ErrorCode;
use miroir_proto::keys::{ACTIONS, key_value, parse_uid};
use miroir_proto::pb;
use miroir_proto::time::rfc3339_ms;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// A key as Meilisearch shows it (fields in its order).
fn view(state: &AppState, key: &pb::ApiKey) -> Value {
    json!({
        "name": key.name,
        "description": key.description,
        "key": key_value(&state.config.master_key, &key.uid),
        "uid": key.uid,
        "actions": key.actions,
        "indexes": key.indexes,
        "expiresAt": key.expires_at_ms.map(rfc3339_ms),
        "createdAt": rfc3339_ms(key.created_at_ms),
        "updatedAt": rfc3339_ms(key.updated_at_ms),
    })
}

fn not_found(key: &str) -> MeiliError {
    MeiliError::new(
        StatusCode::NOT_FOUND,
        "api_key_not_found",
        ErrorType::InvalidRequest,
        format!("API key `{key}` not found."),
    )
}

/// A control-plane refusal of a key change, in Meilisearch's words.
fn key_error(key: &str, status: &tonic::Status) -> MeiliError {
    match ErrorCode::of(status) {
        // Named as the caller named it (a uid or a key).
        ErrorCode::ApiKeyNotFound => not_found(key),
        _ => MeiliError::from_status(status),
    }
}

/// The key named by a uid or by its value.
fn find(state: &AppState, uid_or_key: &str) -> Result<pb::ApiKey, MeiliError> {
    let topology = state.topology.current();
    let uid = parse_uid(uid_or_key);
    topology
        .keys
        .iter()
        .find(|k| {
            uid.as_deref() == Some(k.uid.as_str())
                || miroir_proto::keys::same_secret(
                    key_value(&state.config.master_key, &k.uid).as_bytes(),
                    uid_or_key.as_bytes(),
                )
        })
        .cloned()
        // Meilisearch names a uid as it parsed it (hyphenated, lowercase), a key as given.
        .ok_or_else(|| not_found(uid.as_deref().unwrap_or(uid_or_key)))
}

/// `GET /keys`: newest first, `offset`/`limit` (default 20).
pub async fn list(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, MeiliError> {
    if let Some(unknown) = params
        .keys()
        .find(|k| !matches!(k.as_str(), "offset" | "limit"))
    {
        return Err(MeiliError::invalid(
            "bad_request",
            format!("Unknown parameter `{unknown}`: expected one of `offset`, `limit`"),
        ));
    }
    let offset: usize =
        optional_positive_integer(&params, "offset", "invalid_api_key_offset")?.unwrap_or(0);
    let limit: usize =
        optional_positive_integer(&params, "limit", "invalid_api_key_limit")?.unwrap_or(20);
    let topology = state.topology.current();
    let results: Vec<Value> = topology
        .keys
        .iter()
        .skip(offset)
        .take(limit)
        .map(|k| view(&state, k))
        .collect();
    Ok(Json(
        json!({"results": results, "offset": offset, "limit": limit, "total": topology.keys.len()}),
    ))
}

/// `GET /keys/{uidOrKey}`.
pub async fn get(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<Value>, MeiliError> {
    Ok(Json(view(&state, &find(&state, &key)?)))
}

/// An optional string field (`name`, `description`): absent, null or a string.
fn optional_string(
    body: &Map<String, Value>,
    field: &str,
    code: &'static str,
) -> Result<Option<Option<String>>, MeiliError> {
    match body.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(other) => Err(MeiliError::invalid(
            code,
            format!(
                "Invalid value type at `.{field}`: expected a string, but found {}: `{other}`",
                json_kind(other)
            ),
        )),
    }
}

/// `expiresAt`: RFC 3339, `YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DDTHH:MM:SS`
/// (UTC), in the future; or null.
fn expires_at(value: &Value, now_ms: u64) -> Result<Option<u64>, MeiliError> {
    let invalid = |shown: &str| {
        MeiliError::invalid(
            "invalid_api_key_expires_at",
            format!(
                "`{shown}` is not a valid date. It should follow the RFC 3339 format to represents a date or datetime in the future or specified as a null value. e.g. 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS'."
            ),
        )
    };
    let text = match value {
        Value::Null => return Ok(None),
        Value::String(s) => s.trim(),
        other => {
            return Err(MeiliError::invalid(
                "invalid_api_key_expires_at",
                format!(
                    "Invalid value type at `.expiresAt`: expected a string, but found {}: `{other}`",
                    json_kind(other)
                ),
            ));
        }
    };
    let naive = text.replacen(' ', "T", 1);
    let at = crate::tasks::query::parse_task_date(text, false)
        .or_else(|| crate::tasks::query::parse_task_date(&format!("{naive}Z"), false))
        .ok_or_else(|| invalid(text))?;
    if at <= now_ms {
        return Err(invalid(text));
    }
    Ok(Some(at))
}

/// A required list of strings (`actions`, `indexes`).
fn string_list(
    body: &Map<String, Value>,
    field: &str,
    missing: &'static str,
    invalid: &'static str,
) -> Result<Vec<String>, MeiliError> {
    match body.get(field) {
        None => Err(MeiliError::invalid(missing, format!("Missing field `{field}`"))),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    MeiliError::invalid(
                        invalid,
                        format!(
                            "Invalid value type at `.{field}[{i}]`: expected a string, but found {}: `{v}`",
                            json_kind(v)
                        ),
                    )
                })
            })
            .collect(),
        Some(other) => Err(MeiliError::invalid(
            invalid,
            format!(
                "Invalid value type at `.{field}`: expected an array, but found {}: `{other}`",
                json_kind(other)
            ),
        )),
    }
}

/// `POST /keys`: 201 with the key, once this gateway serves it.
pub async fn create(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Response, MeiliError> {
    let body = json_object(&body)?;
    const FIELDS: &[&str] = &[
        "description",
        "name",
        "uid",
        "actions",
        "indexes",
        "expiresAt",
    ];
    if let Some(unknown) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(MeiliError::invalid(
            "bad_request",
            format!(
                "Unknown field `{unknown}`: expected one of `description`, `name`, `uid`, `actions`, `indexes`, `expiresAt`"
            ),
        ));
    }
    let name = optional_string(&body, "name", "invalid_api_key_name")?.flatten();
    let description =
        optional_string(&body, "description", "invalid_api_key_description")?.flatten();
    let uid = match body.get("uid") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(uid)) => parse_uid(uid).ok_or_else(|| {
            MeiliError::invalid(
                "invalid_api_key_uid",
                format!("Invalid value at `.uid`: `{uid}` is not a valid UUID."),
            )
        })?,
        Some(other) => {
            return Err(MeiliError::invalid(
                "invalid_api_key_uid",
                format!(
                    "Invalid value type at `.uid`: expected a string, but found {}: `{other}`",
                    json_kind(other)
                ),
            ));
        }
    };
    let actions = string_list(
        &body,
        "actions",
        "missing_api_key_actions",
        "invalid_api_key_actions",
    )?;
    if let Some((i, bad)) = actions
        .iter()
        .enumerate()
        .find(|(_, a)| !ACTIONS.contains(&a.as_str()))
    {
        let expected: Vec<String> = ACTIONS.iter().map(|a| format!("`{a}`")).collect();
        return Err(MeiliError::invalid(
            "invalid_api_key_actions",
            format!(
                "Unknown value `{bad}` at `.actions[{i}]`: expected one of {}",
                expected.join(", ")
            ),
        ));
    }
    let indexes = string_list(
        &body,
        "indexes",
        "missing_api_key_indexes",
        "invalid_api_key_indexes",
    )?;
    if let Some((i, bad)) = indexes.iter().enumerate().find(|(_, p)| {
        let name = p.strip_suffix('*').unwrap_or(p);
        (name.is_empty() && p.as_str() != "*")
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    }) {
        return Err(MeiliError::invalid(
            "invalid_api_key_indexes",
            format!(
                "Invalid value at `.indexes[{i}]`: `{bad}` is not a valid index uid pattern. Index uid patterns can be an integer or a string containing only alphanumeric characters, hyphens (-), underscores (_), and optionally end with a star (*)."
            ),
        ));
    }
    let Some(expires) = body.get("expiresAt") else {
        return Err(MeiliError::invalid(
            "missing_api_key_expires_at",
            "Missing field `expiresAt`",
        ));
    };
    let expires_at_ms = expires_at(expires, miroir_proto::time::now_ms())?;
    let key = pb::ApiKey {
        uid,
        name,
        description,
        actions,
        indexes,
        expires_at_ms,
        ..Default::default()
    };
    let response = state
        .control_plane
        .create_key(pb::CreateKeyRequest { key: Some(key) })
        .await
        .map_err(|status| key_error("", &status))?;
    state
        .topology
        .wait_for_version(response.topology_version, TOPOLOGY_WAIT)
        .await;
    let key = response.key.unwrap_or_default();
    Ok((StatusCode::CREATED, Json(view(&state, &key))).into_response())
}

/// `PATCH /keys/{uidOrKey}`: `name` and `description` only.
pub async fn update(
    State(state): State<AppState>,
    Path(key): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, MeiliError> {
    let body = json_object(&body)?;
    for (field, code) in [
        ("uid", "immutable_api_key_uid"),
        ("actions", "immutable_api_key_actions"),
        ("indexes", "immutable_api_key_indexes"),
        ("expiresAt", "immutable_api_key_expires_at"),
        ("createdAt", "immutable_api_key_created_at"),
        ("updatedAt", "immutable_api_key_updated_at"),
        ("key", "immutable_api_key_key"),
    ] {
        if body.contains_key(field) {
            return Err(MeiliError::invalid(
                code,
                format!("Immutable field `{field}`: expected one of `description`, `name`"),
            ));
        }
    }
    if let Some(unknown) = body
        .keys()
        .find(|k| !matches!(k.as_str(), "name" | "description"))
    {
        return Err(MeiliError::invalid(
            "bad_request",
            format!("Unknown field `{unknown}`: expected one of `description`, `name`"),
        ));
    }
    let name = optional_string(&body, "name", "invalid_api_key_name")?;
    let description = optional_string(&body, "description", "invalid_api_key_description")?;
    let existing = find(&state, &key)?;
    let request = pb::UpdateKeyRequest {
        uid: existing.uid.clone(),
        update_name: name.is_some(),
        name: name.flatten(),
        update_description: description.is_some(),
        description: description.flatten(),
    };
    let response = state
        .control_plane
        .update_key(request)
        .await
        .map_err(|status| key_error(&key, &status))?;
    state
        .topology
        .wait_for_version(response.topology_version, TOPOLOGY_WAIT)
        .await;
    Ok(Json(view(&state, &response.key.unwrap_or(existing))))
}

/// `DELETE /keys/{uidOrKey}`: 204.
pub async fn delete(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Response, MeiliError> {
    let existing = find(&state, &key)?;
    let response = state
        .control_plane
        .delete_key(pb::DeleteKeyRequest { uid: existing.uid })
        .await
        .map_err(|status| key_error(&key, &status))?;
    state
        .topology
        .wait_for_version(response.topology_version, TOPOLOGY_WAIT)
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
