//! Index lifecycle (create, update and rename, delete, swap, list, compact): index changes
//! go through the control plane, which applies them on every node and records the
//! client's task; and finding an index in the served topology.

use super::error::{ErrorType, MeiliError, optional_positive_integer};
use super::request_body::{JsonBody, json_object};
use crate::state::AppState;
use crate::write::task::{accepted, failed_task, no_task};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use miroir_proto::ErrorCode;
use miroir_proto::pb;
use miroir_proto::time::rfc3339_ms;
use serde_json::{Value, json};
use std::collections::HashMap;

/// How long an answer waits for this gateway to serve a topology change it just made.
pub const TOPOLOGY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// [`accepted`], once this gateway serves `version` (at most [`TOPOLOGY_WAIT`]), so the
/// client's next request through it sees the change.
pub async fn accepted_at(state: &AppState, task: &pb::Task, version: u64) -> Response {
    state
        .topology
        .wait_for_version(version, TOPOLOGY_WAIT)
        .await;
    accepted(task)
}

/// `POST /indexes` (`uid`, `primaryKey`; Miroir's `miroirShardCount`, `miroirReplicationFactor`).
pub async fn create(
    State(state): State<AppState>,
    axum::extract::Extension(caller): axum::extract::Extension<super::auth::Caller>,
    JsonBody(body): JsonBody,
) -> Result<Response, MeiliError> {
    let body = json_object(&body)?;
    const FIELDS: &[&str] = &[
        "uid",
        "primaryKey",
        "miroirShardCount",
        "miroirReplicationFactor",
    ];
    if let Some(unknown) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(MeiliError::invalid(
            "bad_request",
            format!("Unknown field `{unknown}`: expected one of `uid`, `primaryKey`"),
        ));
    }
    let Some(uid) = body.get("uid").and_then(Value::as_str).map(str::to_owned) else {
        return Err(MeiliError::invalid(
            "missing_index_uid",
            "Missing field `uid`",
        ));
    };
    if !caller.allows("indexes.create", Some(&uid)) {
        return Err(super::auth::forbidden());
    }
    let number = |key: &str| -> Result<Option<u32>, MeiliError> {
        match body.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n))
                if n.as_u64().is_some_and(|n| n >= 1 && n <= u32::MAX as u64) =>
            {
                Ok(n.as_u64().map(|n| n as u32))
            }
            Some(other) => Err(MeiliError::invalid(
                "bad_request",
                format!("Invalid value at `.{key}`: expected a positive integer, found `{other}`"),
            )),
        }
    };
    let request = pb::CreateIndexRequest {
        uid: uid.clone(),
        primary_key: body
            .get("primaryKey")
            .and_then(Value::as_str)
            .map(str::to_owned),
        shard_count: number("miroirShardCount")?,
        replication_factor: number("miroirReplicationFactor")?,
    };
    let details = json!({"primaryKey": request.primary_key});
    let result = state.control_plane.create_index(request).await;
    match result {
        Ok(pb::IndexResponse {
            task: Some(task),
            topology_version,
            ..
        }) => Ok(accepted_at(&state, &task, topology_version).await),
        Ok(_) => Err(no_task()),
        Err(status) => match ErrorCode::of(&status) {
            // Meilisearch enqueues the creation and fails its task.
            ErrorCode::IndexAlreadyExists => {
                let error = MeiliError::from_status(&status);
                failed_task(&state, &uid, "indexCreation", details, error).await
            }
            ErrorCode::InvalidIndexUid => Err(MeiliError::from_code(
                ErrorCode::InvalidIndexUid,
                format!("Invalid value at `.uid`: {}", status.message()),
            )),
            _ => Err(MeiliError::from_status(&status)),
        },
    }
}

/// `DELETE /indexes/{uid}`.
pub async fn delete(
    State(state): State<AppState>,
    Path(uid): Path<String>,
) -> Result<Response, MeiliError> {
    let request = pb::DeleteIndexRequest { uid: uid.clone() };
    let result = state.control_plane.delete_index(request).await;
    match result {
        Ok(pb::IndexResponse {
            task: Some(task),
            topology_version,
            ..
        }) => Ok(accepted_at(&state, &task, topology_version).await),
        Ok(_) => Err(no_task()),
        Err(status) if ErrorCode::of(&status) == ErrorCode::IndexNotFound => {
            let error = MeiliError::from_status(&status);
            failed_task(
                &state,
                &uid,
                "indexDeletion",
                json!({"deletedDocuments": 0}),
                error,
            )
            .await
        }
        Err(status) => Err(MeiliError::from_status(&status)),
    }
}

/// `PATCH /indexes/{uid}`: a new primary key, or a new uid (Meilisearch 1.50 renames the
/// index), applied through the control plane.
pub async fn update(
    State(state): State<AppState>,
    Path(uid): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, MeiliError> {
    let body = json_object(&body)?;
    for (field, code) in [
        ("createdAt", "immutable_index_created_at"),
        ("updatedAt", "immutable_index_updated_at"),
    ] {
        if body.contains_key(field) {
            return Err(MeiliError::invalid(
                code,
                format!("Immutable field `{field}`: expected one of `primaryKey`, `uid`"),
            ));
        }
    }
    if let Some(unknown) = body
        .keys()
        .find(|k| !matches!(k.as_str(), "primaryKey" | "uid"))
    {
        return Err(MeiliError::invalid(
            "bad_request",
            format!("Unknown field `{unknown}`: expected one of `primaryKey`, `uid`"),
        ));
    }
    let new_uid = match body.get("uid") {
        None | Some(Value::Null) => None,
        Some(Value::String(new_uid)) => {
            miroir_proto::IndexUid::check(new_uid)
                .map_err(|message| MeiliError::invalid("invalid_index_uid", message))?;
            Some(new_uid.clone())
        }
        Some(other) => {
            return Err(MeiliError::invalid(
                "invalid_index_uid",
                format!(
                    "Invalid value type at `.uid`: expected a string, but found {}: `{other}`",
                    super::error::json_kind(other)
                ),
            ));
        }
    };
    let primary_key = match body.get("primaryKey") {
        None | Some(Value::Null) => None,
        Some(Value::String(pk)) => Some(pk.clone()),
        Some(other) => {
            return Err(MeiliError::invalid(
                "invalid_index_primary_key",
                format!(
                    "Invalid value type at `.primaryKey`: expected a string, but found {}: `{other}`",
                    super::error::json_kind(other)
                ),
            ));
        }
    };
    let mut details = json!({"primaryKey": primary_key});
    if let Some(new_uid) = &new_uid {
        details["oldIndexUid"] = json!(uid);
        details["newIndexUid"] = json!(new_uid);
    }
    let request = pb::UpdateIndexRequest {
        uid: uid.clone(),
        primary_key,
        new_uid,
    };
    match state.control_plane.update_index(request).await {
        Ok(pb::IndexResponse {
            task: Some(task),
            topology_version,
            ..
        }) => Ok(accepted_at(&state, &task, topology_version).await),
        Ok(_) => Err(no_task()),
        Err(status) if ErrorCode::of(&status) == ErrorCode::IndexNotFound => {
            let error = MeiliError::from_status(&status);
            failed_task(&state, &uid, "indexUpdate", details, error).await
        }
        Err(status) => Err(MeiliError::from_status(&status)),
    }
}

/// `POST /swap-indexes`: `[{"indexes": ["a", "b"]}, …]`, swapped in the topology and on
/// every node through the control plane.
pub async fn swap(
    State(state): State<AppState>,
    axum::extract::Extension(caller): axum::extract::Extension<super::auth::Caller>,
    JsonBody(body): JsonBody,
) -> Result<Response, MeiliError> {
    if body.is_empty() {
        return Err(MeiliError::invalid(
            "missing_payload",
            "A json payload is missing.",
        ));
    }
    let items = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(items)) => items,
        Ok(other) => {
            return Err(MeiliError::invalid(
                "bad_request",
                format!(
                    "Invalid value type: expected an array, but found {}: `{other}`",
                    super::error::json_kind(&other)
                ),
            ));
        }
        Err(e) => {
            return Err(MeiliError::invalid(
                "malformed_payload",
                format!("The json payload provided is malformed. `{e}`."),
            ));
        }
    };
    let mut swaps = Vec::with_capacity(items.len());
    let mut seen = std::collections::HashSet::new();
    for (position, item) in items.iter().enumerate() {
        let Some(object) = item.as_object() else {
            return Err(MeiliError::invalid(
                "bad_request",
                format!(
                    "Invalid value type at `[{position}]`: expected an object, but found {}: `{item}`",
                    super::error::json_kind(item)
                ),
            ));
        };
        if let Some(unknown) = object
            .keys()
            .find(|k| !matches!(k.as_str(), "indexes" | "rename"))
        {
            return Err(MeiliError::invalid(
                "bad_request",
                format!(
                    "Unknown field `{unknown}` inside `[{position}]`: expected one of `indexes`, `rename`"
                ),
            ));
        }
        let rename = match object.get("rename") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(rename)) => *rename,
            Some(other) => {
                return Err(MeiliError::invalid(
                    "invalid_swap_rename",
                    format!(
                        "Invalid value type at `[{position}].rename`: expected a boolean, but found {}: `{other}`",
                        super::error::json_kind(other)
                    ),
                ));
            }
        };
        let uids: Vec<String> = match object.get("indexes") {
            Some(Value::Array(uids)) if uids.iter().all(Value::is_string) => uids
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            None => {
                return Err(MeiliError::invalid(
                    "missing_swap_indexes",
                    format!("Missing field `indexes` inside `[{position}]`"),
                ));
            }
            Some(other) => {
                return Err(MeiliError::invalid(
                    "invalid_swap_indexes",
                    format!(
                        "Invalid value type at `[{position}].indexes`: expected an array of index uids, but found `{other}`"
                    ),
                ));
            }
        };
        for (at, uid) in uids.iter().enumerate() {
            miroir_proto::IndexUid::check(uid).map_err(|message| {
                MeiliError::invalid(
                    "invalid_swap_indexes",
                    format!("Invalid value at `[{position}].indexes[{at}]`: {message}"),
                )
            })?;
        }
        let [first, second] = uids.as_slice() else {
            return Err(MeiliError::invalid(
                "invalid_swap_indexes",
                format!(
                    "Two indexes must be given for each swap. The list `{}` contains {} indexes.",
                    Value::from(uids.clone()),
                    uids.len()
                ),
            ));
        };
        for uid in [first, second] {
            if !caller.allows("indexes.swap", Some(uid)) {
                return Err(super::auth::forbidden());
            }
            if !seen.insert(uid.clone()) {
                return Err(MeiliError::invalid(
                    "invalid_swap_duplicate_index_found",
                    format!(
                        "Indexes must be declared only once during a swap. `{uid}` was specified several times."
                    ),
                ));
            }
        }
        swaps.push(pb::IndexSwap {
            first: first.clone(),
            second: second.clone(),
            rename,
        });
    }
    match state
        .control_plane
        .swap_indexes(pb::SwapIndexesRequest { swaps })
        .await
    {
        Ok(pb::SwapIndexesResponse {
            task: Some(task),
            topology_version,
        }) => Ok(accepted_at(&state, &task, topology_version).await),
        Ok(_) => Err(no_task()),
        Err(status) => Err(MeiliError::from_status(&status)),
    }
}

fn index_view(index: &pb::Index) -> Value {
    let at = rfc3339_ms(index.created_at_ms);
    json!({"uid": index.uid, "createdAt": at, "updatedAt": at, "primaryKey": index.primary_key})
}

/// The index `uid` in the served topology (a copy; hot paths use [`index_in`]).
pub fn find_index(state: &AppState, uid: &str) -> Result<pb::Index, MeiliError> {
    index_in(&state.topology.current(), uid).cloned()
}

/// `POST /indexes/{uid}/compact` (Meilisearch 1.23): every node compacts its copy of the
/// index under one `indexCompaction` task; once it succeeded, `details.miroirCompactions`
/// gives each node's sizes before and after. A missing index is a failed task, as in
/// Meilisearch.
pub async fn compact(
    State(state): State<AppState>,
    Path(uid): Path<String>,
) -> Result<Response, MeiliError> {
    if index_in(&state.topology.current(), &uid).is_err() {
        return failed_task(
            &state,
            &uid,
            "indexCompaction",
            json!({}),
            index_not_found(&uid),
        )
        .await;
    }
    let path = format!("/indexes/{uid}/compact");
    super::tasks::on_every_node(&state, Some(&uid), &path, "indexCompaction", json!({})).await
}

/// Meilisearch's `index_not_found`.
pub fn index_not_found(uid: &str) -> MeiliError {
    MeiliError::new(
        StatusCode::NOT_FOUND,
        "index_not_found",
        ErrorType::InvalidRequest,
        format!("Index `{uid}` not found."),
    )
}

/// The index `uid` in `topology`.
pub fn index_in<'a>(topology: &'a pb::Topology, uid: &str) -> Result<&'a pb::Index, MeiliError> {
    topology
        .indexes
        .iter()
        .find(|i| i.uid == uid)
        .ok_or_else(|| index_not_found(uid))
}

/// `GET /indexes/{uid}`.
pub async fn get(
    State(state): State<AppState>,
    Path(uid): Path<String>,
) -> Result<Json<Value>, MeiliError> {
    Ok(Json(index_view(&find_index(&state, &uid)?)))
}

/// `GET /indexes`: the indexes the caller's key covers.
pub async fn list(
    State(state): State<AppState>,
    axum::extract::Extension(caller): axum::extract::Extension<super::auth::Caller>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, MeiliError> {
    let offset = optional_positive_integer(&params, "offset", "invalid_index_offset")?.unwrap_or(0);
    let limit = optional_positive_integer(&params, "limit", "invalid_index_limit")?.unwrap_or(20);
    let topology = state.topology.current();
    let visible: Vec<&pb::Index> = topology
        .indexes
        .iter()
        .filter(|i| caller.sees(&i.uid))
        .collect();
    let results: Vec<Value> = visible
        .iter()
        .skip(offset)
        .take(limit)
        .map(|i| index_view(i))
        .collect();
    Ok(Json(
        json!({"results": results, "offset": offset, "limit": limit, "total": visible.len()}),
    ))
}

/// The index to write to, created through the control plane if it does not exist yet
/// (Meilisearch creates indexes on first write).
pub async fn index_for_write(
    state: &AppState,
    caller: &super::auth::Caller,
    uid: &str,
    primary_key: Option<&str>,
) -> Result<pb::Index, MeiliError> {
    if let Ok(index) = find_index(state, uid) {
        return Ok(index);
    }
    // As in Meilisearch, creating by writing needs the right to create.
    if !caller.allows("indexes.create", Some(uid)) {
        return Err(super::auth::forbidden());
    }
    let request = pb::CreateIndexRequest {
        uid: uid.to_owned(),
        primary_key: primary_key.map(str::to_owned),
        shard_count: None,
        replication_factor: None,
    };
    let result = state.control_plane.create_index(request).await;
    match result {
        Ok(response) => {
            state
                .topology
                .wait_for_version(response.topology_version, TOPOLOGY_WAIT)
                .await;
            response
                .index
                .ok_or_else(|| MeiliError::internal("no index in the answer"))
        }
        // Another gateway created it meanwhile.
        Err(status) if ErrorCode::of(&status) == ErrorCode::IndexAlreadyExists => {
            let request = pb::GetIndexRequest {
                uid: uid.to_owned(),
            };
            state
                .control_plane
                .get_index(request)
                .await
                .ok()
                .and_then(|r| r.index)
                .ok_or_else(|| MeiliError::from_status(&status))
        }
        Err(status) => Err(MeiliError::from_status(&status)),
    }
}
