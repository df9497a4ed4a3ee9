//! `POST` and `PUT /indexes/{uid}/documents`: document writes ([`crate::write`]).

use super::auth::Caller;
use super::error::MeiliError;
use crate::state::AppState;
use crate::write::documents::write_documents;
use axum::body::Body;
use axum::extract::{Extension, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use http::Method;
use std::collections::HashMap;

/// The field Miroir stamps on every document; `_miroir_*` fields are reserved.
pub use miroir_proto::settings::SHARD_FIELD;

/// `POST /indexes/{uid}/documents` (replace).
pub async fn replace(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(uid): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, MeiliError> {
    write_documents(&state, &caller, &uid, &params, &headers, body, Method::POST).await
}

/// `PUT /indexes/{uid}/documents` (update: merge fields).
pub async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(uid): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, MeiliError> {
    write_documents(&state, &caller, &uid, &params, &headers, body, Method::PUT).await
}
