//! The test node's `/keys`: Meilisearch's API keys, with values derived from the master
//! key and the uid, and the two default keys a new Meilisearch creates.

use super::error::NodeError;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use miroir_proto::keys::{key_value, new_uid, parse_uid};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

type Result<T, E = NodeError> = std::result::Result<T, E>;

/// One stored key (what `GET /keys` shows, without the derived `key`).
#[derive(Debug, Clone)]
struct Key {
    uid: String,
    name: Value,
    description: Value,
    actions: Value,
    indexes: Value,
    expires_at: Value,
    created_at: String,
    updated_at: String,
}

/// The node's keys, newest first.
pub struct KeyStore {
    master_key: Option<String>,
    keys: Mutex<Vec<Key>>,
}

impl KeyStore {
    /// A store with Meilisearch's default keys when a master key is set.
    pub fn new(master_key: Option<String>) -> Arc<Self> {
        let now = super::time::now();
        let default = |name: &str, description: &str, actions: Value| Key {
            uid: new_uid(),
            name: json!(name),
            description: json!(description),
            actions,
            indexes: json!(["*"]),
            expires_at: Value::Null,
            created_at: now.clone(),
            updated_at: now.clone(),
        };
        let keys = if master_key.is_some() {
            vec![
                default(
                    "Default Search API Key",
                    "Use it to search from the frontend",
                    json!(["search"]),
                ),
                default(
                    "Default Admin API Key",
                    "Use it for anything that is not a search operation. Caution! Do not expose it on a public frontend",
                    json!(["*"]),
                ),
            ]
        } else {
            Vec::new()
        };
        Arc::new(Self {
            master_key,
            keys: Mutex::new(keys),
        })
    }

    /// Whether `token` is the value of a key that has not expired.
    pub fn accepts(&self, token: &str) -> bool {
        let Some(master) = &self.master_key else {
            return false;
        };
        let now = super::time::now();
        self.lock().iter().any(|k| {
            key_value(master, &k.uid) == token
                && k.expires_at.as_str().is_none_or(|at| at > now.as_str())
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Key>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn view(&self, key: &Key) -> Value {
        let master = self.master_key.as_deref().unwrap_or_default();
        json!({
            "name": key.name, "description": key.description, "key": key_value(master, &key.uid),
            "uid": key.uid, "actions": key.actions, "indexes": key.indexes,
            "expiresAt": key.expires_at, "createdAt": key.created_at, "updatedAt": key.updated_at,
        })
    }

    fn position(&self, keys: &[Key], uid_or_key: &str) -> Result<usize> {
        let master = self.master_key.as_deref().unwrap_or_default();
        let uid = parse_uid(uid_or_key);
        keys.iter()
            .position(|k| {
                uid.as_deref() == Some(k.uid.as_str()) || key_value(master, &k.uid) == uid_or_key
            })
            .ok_or_else(|| {
                NodeError::invalid(
                    "api_key_not_found",
                    format!("API key `{uid_or_key}` not found."),
                )
                .with_status(StatusCode::NOT_FOUND)
            })
    }
}

/// The `/keys` routes.
pub fn router<S>(store: Arc<KeyStore>) -> Router<S> {
    Router::new()
        .route("/keys", get(list).post(create))
        .route("/keys/{key}", get(get_one).patch(update).delete(delete))
        .with_state(store)
}

fn object(body: &[u8]) -> Result<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(NodeError::invalid(
            "bad_request",
            "Invalid value type: expected an object",
        )),
        Err(e) => Err(NodeError::invalid(
            "malformed_payload",
            format!("The json payload provided is malformed. `{e}`."),
        )),
    }
}

async fn list(
    State(store): State<Arc<KeyStore>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>> {
    let number = |name: &str, default: usize| -> Result<usize> {
        params.get(name).map_or(Ok(default), |v| {
            v.parse().map_err(|_| {
                NodeError::invalid(
                    if name == "offset" { "invalid_api_key_offset" } else { "invalid_api_key_limit" },
                    format!("Invalid value in parameter `{name}`: could not parse `{v}` as a positive integer"),
                )
            })
        })
    };
    let (offset, limit) = (number("offset", 0)?, number("limit", 20)?);
    let keys = store.lock().clone();
    let results: Vec<Value> = keys
        .iter()
        .skip(offset)
        .take(limit)
        .map(|k| store.view(k))
        .collect();
    Ok(Json(
        json!({"results": results, "offset": offset, "limit": limit, "total": keys.len()}),
    ))
}

async fn get_one(
    State(store): State<Arc<KeyStore>>,
    Path(key): Path<String>,
) -> Result<Json<Value>> {
    let keys = store.lock();
    let position = store.position(&keys, &key)?;
    Ok(Json(store.view(&keys[position])))
}

async fn create(State(store): State<Arc<KeyStore>>, body: axum::body::Bytes) -> Result<Response> {
    let body = object(&body)?;
    for field in body.keys() {
        if ![
            "description",
            "name",
            "uid",
            "actions",
            "indexes",
            "expiresAt",
        ]
        .contains(&field.as_str())
        {
            return Err(NodeError::invalid(
                "bad_request",
                format!(
                    "Unknown field `{field}`: expected one of `description`, `name`, `uid`, `actions`, `indexes`, `expiresAt`"
                ),
            ));
        }
    }
    let required = |field: &str, missing: &'static str, invalid: &'static str| -> Result<Value> {
        match body.get(field) {
            None => Err(NodeError::invalid(
                missing,
                format!("Missing field `{field}`"),
            )),
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
                Ok(Value::Array(items.clone()))
            }
            Some(other) => Err(NodeError::invalid(
                invalid,
                format!("Invalid value type at `.{field}`: `{other}`"),
            )),
        }
    };
    let actions = required(
        "actions",
        "missing_api_key_actions",
        "invalid_api_key_actions",
    )?;
    let indexes = required(
        "indexes",
        "missing_api_key_indexes",
        "invalid_api_key_indexes",
    )?;
    let expires_at = match body.get("expiresAt") {
        None => {
            return Err(NodeError::invalid(
                "missing_api_key_expires_at",
                "Missing field `expiresAt`",
            ));
        }
        Some(Value::Null) => Value::Null,
        Some(Value::String(at)) if at.as_str() > super::time::now().as_str() => json!(at),
        Some(other) => {
            return Err(NodeError::invalid(
                "invalid_api_key_expires_at",
                format!(
                    "`{other}` is not a valid date. It should follow the RFC 3339 format to represents a date or datetime in the future or specified as a null value. e.g. 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS'."
                ),
            ));
        }
    };
    let uid = match body.get("uid") {
        None | Some(Value::Null) => new_uid(),
        Some(Value::String(uid)) => parse_uid(uid).ok_or_else(|| {
            NodeError::invalid(
                "invalid_api_key_uid",
                format!("Invalid value at `.uid`: `{uid}` is not a valid UUID."),
            )
        })?,
        Some(other) => {
            return Err(NodeError::invalid(
                "invalid_api_key_uid",
                format!("Invalid value type at `.uid`: `{other}`"),
            ));
        }
    };
    let mut keys = store.lock();
    if keys.iter().any(|k| k.uid == uid) {
        return Err(NodeError::invalid(
            "api_key_already_exists",
            format!("`uid` field value `{uid}` is already an existing API key."),
        )
        .with_status(StatusCode::CONFLICT));
    }
    let now = super::time::now();
    let key = Key {
        uid,
        name: body.get("name").cloned().unwrap_or(Value::Null),
        description: body.get("description").cloned().unwrap_or(Value::Null),
        actions,
        indexes,
        expires_at,
        created_at: now.clone(),
        updated_at: now,
    };
    let view = store.view(&key);
    keys.insert(0, key);
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn update(
    State(store): State<Arc<KeyStore>>,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>> {
    let body = object(&body)?;
    for field in body.keys() {
        let code = match field.as_str() {
            "name" | "description" => continue,
            "uid" => "immutable_api_key_uid",
            "actions" => "immutable_api_key_actions",
            "indexes" => "immutable_api_key_indexes",
            "expiresAt" => "immutable_api_key_expires_at",
            "createdAt" => "immutable_api_key_created_at",
            "updatedAt" => "immutable_api_key_updated_at",
            "key" => "immutable_api_key_key",
            _ => "bad_request",
        };
        return Err(NodeError::invalid(
            code,
            format!("Immutable field `{field}`: expected one of `description`, `name`"),
        ));
    }
    let mut keys = store.lock();
    let position = store.position(&keys, &key)?;
    let entry = &mut keys[position];
    if let Some(name) = body.get("name") {
        entry.name = name.clone();
    }
    if let Some(description) = body.get("description") {
        entry.description = description.clone();
    }
    entry.updated_at = super::time::now();
    Ok(Json(store.view(entry)))
}

async fn delete(State(store): State<Arc<KeyStore>>, Path(key): Path<String>) -> Result<Response> {
    let mut keys = store.lock();
    let position = store.position(&keys, &key)?;
    keys.remove(position);
    Ok(StatusCode::NO_CONTENT.into_response())
}
