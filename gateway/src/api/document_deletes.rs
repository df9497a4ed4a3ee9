//! Document deletes through Meilisearch's routes ([`crate::write::deletes`]).

use super::error::MeiliError;
use super::request_body::{JsonBody, json_object};
use crate::state::AppState;
use crate::write::deletes::{delete_everywhere, delete_ids};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::Method;
use serde_json::{Value, json};
use std::collections::HashMap;

/// The client's `customMetadata` (Meilisearch 1.50), kept with the task it makes.
fn custom_metadata(params: &HashMap<String, String>) -> Option<String> {
    params.get("customMetadata").cloned()
}

/// `DELETE /indexes/{uid}/documents/{id}`.
pub async fn delete_one(
    State(state): State<AppState>,
    Path((uid, id)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, MeiliError> {
    delete_ids(&state, &uid, vec![id], custom_metadata(&params)).await
}

/// `POST /indexes/{uid}/documents/delete-batch`.
pub async fn delete_batch(
    State(state): State<AppState>,
    Path(uid): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    JsonBody(body): JsonBody,
) -> Result<Response, MeiliError> {
    let Ok(Value::Array(ids)) = serde_json::from_slice::<Value>(&body) else {
        return Err(MeiliError::invalid(
            "bad_request",
            "Invalid value type: expected an array of document ids",
        ));
    };
    let ids = ids
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string())
        })
        .collect();
    delete_ids(&state, &uid, ids, custom_metadata(&params)).await
}

/// `POST /indexes/{uid}/documents/delete` (by filter): every node.
pub async fn delete_by_filter(
    State(state): State<AppState>,
    Path(uid): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    JsonBody(body): JsonBody,
) -> Result<Response, MeiliError> {
    let body = json_object(&body)?;
    let Some(filter) = body.get("filter").cloned() else {
        return Err(MeiliError::invalid(
            "missing_document_filter",
            "Missing field `filter`",
        ));
    };
    let details =
        json!({"providedIds": 0, "deletedDocuments": null, "originalFilter": filter.to_string()});
    let call = (
        Method::POST,
        format!("/indexes/{uid}/documents/delete"),
        Some(json!({ "filter": filter })),
    );
    delete_everywhere(&state, &uid, call, details, custom_metadata(&params)).await
}

/// `DELETE /indexes/{uid}/documents`: every node.
pub async fn clear(
    State(state): State<AppState>,
    Path(uid): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, MeiliError> {
    let details = json!({"deletedDocuments": null});
    let call = (Method::DELETE, format!("/indexes/{uid}/documents"), None);
    delete_everywhere(&state, &uid, call, details, custom_metadata(&params)).await
}
