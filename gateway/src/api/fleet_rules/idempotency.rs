//! `Idempotency-Key` on writes: the first request with a key runs, the same request
//! again returns its answer, a different one with the same key is refused.

use super::{IDEMPOTENCY_KEY, buffered, credential, digest, header_text, is_read};
use crate::api::error::{ErrorType, MeiliError};
use crate::fleet::Idempotency;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::{Duration, Instant};

/// Runs a keyed write once per key, or replays its answer.
pub async fn idempotency(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let key = match header_text(&request, IDEMPOTENCY_KEY) {
        Some(key) if !is_read(request.method(), request.uri().path()) => {
            format!("{}:{key}", credential(&request))
        }
        _ => return next.run(request).await,
    };
    // The fingerprint covers what the write does: method, path and query, body.
    let (parts, body) = request.into_parts();
    let body =
        match crate::write::payload::collect(body, &parts.headers, state.config.payload_size_limit)
            .await
        {
            Ok(body) => body,
            Err(error) => return error.into_response(),
        };
    let target = parts.uri.path_and_query().map_or("", |p| p.as_str());
    let fingerprint = digest(&[parts.method.as_str().as_bytes(), target.as_bytes(), &body]);
    let deadline = Instant::now() + state.config.node_timeout.max(Duration::from_secs(5));
    loop {
        match state.fleet.idempotency_begin(&key, &fingerprint).await {
            Idempotency::New => break,
            Idempotency::Replay(status, body) => {
                let mut response = (
                    StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED),
                    [(header::CONTENT_TYPE, "application/json")],
                    body,
                )
                    .into_response();
                response
                    .headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
                return response;
            }
            Idempotency::Conflict => {
                return MeiliError::new(
                    StatusCode::CONFLICT,
                    "miroir_idempotency_key_reused",
                    ErrorType::InvalidRequest,
                    "This `Idempotency-Key` was already used for a different request.",
                )
                .into_response();
            }
            Idempotency::InProgress if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Idempotency::InProgress => {
                return MeiliError::new(
                    StatusCode::CONFLICT,
                    "miroir_idempotency_key_in_progress",
                    ErrorType::System,
                    "A request with this `Idempotency-Key` is still running: retry it later.",
                )
                .into_response();
            }
        }
    }
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let (response, answer) = buffered(response).await;
    match &answer {
        Some(answer) if response.status().is_success() => {
            state
                .fleet
                .idempotency_finish(&key, &fingerprint, response.status().as_u16(), answer)
                .await
        }
        // Nothing to replay: the client may retry the same key.
        _ => state.fleet.idempotency_abort(&key).await,
    }
    response
}
