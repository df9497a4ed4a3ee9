//! Index lifecycle and tasks: index changes go through the control plane, which applies
//! them on every node and records the client's task.

use super::error::{ErrorType, MeiliError};
use crate::control_plane::ControlPlaneClient;
use crate::state::AppState;
use crate::tasks;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use miroir_proto::pb;
use miroir_proto::time::rfc3339_ms;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// Parses a JSON object body.
pub fn json_object(body: &Bytes) -> Result<Map<String, Value>, MeiliError> {
    if body.is_empty() {
        return Err(MeiliError::invalid(
            "missing_payload",
            "A json payload is missing.",
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(MeiliError::invalid(
            "bad_request",
            format!("Invalid value type: expected an object, but found: `{other}`"),
        )),
        Err(e) => Err(MeiliError::invalid(
            "malformed_payload",
            format!("The json payload provided is malformed. `{e}`."),
        )),
    }
}

pub fn accepted(task: &pb::Task) -> Response {
    (StatusCode::ACCEPTED, Json(tasks::summary(task))).into_response()
}

/// Records a client task through the control plane.
pub async fn record_task(
    state: &AppState,
    request: pb::CreateTaskRequest,
) -> Result<pb::Task, MeiliError> {
    state
        .control_plane
        .call(|channel| {
            let request = request.clone();
            async move {
                ControlPlaneClient::tasks(channel)
                    .create_task(request)
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await
        .map_err(|s| MeiliError::from_status(&s, "task_not_found"))
}

/// Records a task that failed before reaching any node, as Meilisearch reports failures
/// of asynchronous operations: 202 now, a failed task later.
pub async fn failed_task(
    state: &AppState,
    index_uid: &str,
    task_type: &str,
    details: Value,
    error: MeiliError,
) -> Result<Response, MeiliError> {
    let request = pb::CreateTaskRequest {
        index_uid: Some(index_uid.to_owned()),
        task_type: task_type.to_owned(),
        node_tasks: Vec::new(),
        details_json: details.to_string(),
        enqueued_at_ms: miroir_proto::time::now_ms(),
        error_json: error.body().to_string(),
    };
    Ok(accepted(&record_task(state, request).await?))
}

/// `POST /indexes` (`uid`, `primaryKey`; Miroir's `miroirShardCount`, `miroirReplicationFactor`).
pub async fn create(State(state): State<AppState>, body: Bytes) -> Result<Response, MeiliError> {
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
    let result = state
        .control_plane
        .call(|channel| {
            let request = request.clone();
            async move {
                ControlPlaneClient::admin(channel)
                    .create_index(request)
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await;
    match result {
        Ok(pb::IndexResponse {
            task: Some(task), ..
        }) => Ok(accepted(&task)),
        Ok(_) => Err(MeiliError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            ErrorType::Internal,
            "the control plane recorded no task",
        )),
        Err(status) if status.code() == tonic::Code::AlreadyExists => {
            let error = MeiliError::new(
                StatusCode::CONFLICT,
                "index_already_exists",
                ErrorType::InvalidRequest,
                format!("Index `{uid}` already exists."),
            );
            failed_task(&state, &uid, "indexCreation", details, error).await
        }
        Err(status)
            if status.code() == tonic::Code::InvalidArgument
                && status.message().contains("index uid") =>
        {
            Err(MeiliError::invalid(
                "invalid_index_uid",
                format!("Invalid value at `.uid`: {}", status.message()),
            ))
        }
        Err(status) => Err(MeiliError::from_status(&status, "index_not_found")),
    }
}

/// `DELETE /indexes/{uid}`.
pub async fn delete(
    State(state): State<AppState>,
    Path(uid): Path<String>,
) -> Result<Response, MeiliError> {
    let request = pb::DeleteIndexRequest { uid: uid.clone() };
    let result = state
        .control_plane
        .call(|channel| {
            let request = request.clone();
            async move {
                ControlPlaneClient::admin(channel)
                    .delete_index(request)
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await;
    match result {
        Ok(pb::IndexResponse {
            task: Some(task), ..
        }) => Ok(accepted(&task)),
        Ok(_) => Err(MeiliError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            ErrorType::Internal,
            "the control plane recorded no task",
        )),
        Err(status) if status.code() == tonic::Code::NotFound => {
            let error = MeiliError::new(
                StatusCode::NOT_FOUND,
                "index_not_found",
                ErrorType::InvalidRequest,
                format!("Index `{uid}` not found."),
            );
            failed_task(
                &state,
                &uid,
                "indexDeletion",
                json!({"deletedDocuments": 0}),
                error,
            )
            .await
        }
        Err(status) => Err(MeiliError::from_status(&status, "index_not_found")),
    }
}

fn index_view(index: &pb::Index) -> Value {
    let at = rfc3339_ms(index.created_at_ms);
    json!({"uid": index.uid, "createdAt": at, "updatedAt": at, "primaryKey": index.primary_key})
}

/// The index `uid` in the served topology.
pub fn find_index(state: &AppState, uid: &str) -> Result<pb::Index, MeiliError> {
    state
        .topology
        .current()
        .indexes
        .iter()
        .find(|i| i.uid == uid)
        .cloned()
        .ok_or_else(|| {
            MeiliError::new(
                StatusCode::NOT_FOUND,
                "index_not_found",
                ErrorType::InvalidRequest,
                format!("Index `{uid}` not found."),
            )
        })
}

/// `GET /indexes/{uid}`.
pub async fn get(
    State(state): State<AppState>,
    Path(uid): Path<String>,
) -> Result<Json<Value>, MeiliError> {
    Ok(Json(index_view(&find_index(&state, &uid)?)))
}

/// `GET /indexes`.
pub async fn list(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, MeiliError> {
    let number = |name: &str, default: usize| -> Result<usize, MeiliError> {
        params.get(name).map_or(Ok(default), |v| {
            v.parse().map_err(|_| MeiliError::invalid(if name == "offset" { "invalid_index_offset" } else { "invalid_index_limit" }, format!("Invalid value in parameter `{name}`: could not parse `{v}` as a positive integer")))
        })
    };
    let (offset, limit) = (number("offset", 0)?, number("limit", 20)?);
    let topology = state.topology.current();
    let results: Vec<Value> = topology
        .indexes
        .iter()
        .skip(offset)
        .take(limit)
        .map(index_view)
        .collect();
    Ok(Json(
        json!({"results": results, "offset": offset, "limit": limit, "total": topology.indexes.len()}),
    ))
}

/// `GET /tasks/{uid}`.
pub async fn get_task(
    State(state): State<AppState>,
    Path(uid): Path<String>,
) -> Result<Json<Value>, MeiliError> {
    let uid: u32 = uid.parse().map_err(|_| {
        MeiliError::invalid(
            "invalid_task_uids",
            format!("Task uid `{uid}` is invalid. It should only contain numeric characters."),
        )
    })?;
    let task = state
        .control_plane
        .call(|channel| async move {
            ControlPlaneClient::tasks(channel)
                .get_task(pb::GetTaskRequest { uid })
                .await
                .map(|r| r.into_inner())
        })
        .await
        .map_err(|s| MeiliError::from_status(&s, "task_not_found"))?;
    Ok(Json(
        tasks::view(&task, &state.topology.current(), &state.nodes).await,
    ))
}
