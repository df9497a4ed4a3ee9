//! Request bodies read as Meilisearch reads them, with its errors for a missing, malformed
//! or non-object payload.

use super::error::MeiliError;
use axum::body::Bytes;
use serde_json::{Map, Value};

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
            format!(
                "Invalid value type: expected an object, but found {}: `{other}`",
                super::error::json_kind(&other)
            ),
        )),
        Err(e) => Err(MeiliError::invalid(
            "malformed_payload",
            format!("The json payload provided is malformed. `{e}`."),
        )),
    }
}

/// The bytes of a body sent as `application/json`, the only type Meilisearch takes on its
/// JSON routes: a missing or other `Content-Type` is refused with its 415 before the body
/// is read.
pub struct JsonBody(pub Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for JsonBody {
    type Rejection = axum::response::Response;

    async fn from_request(
        request: axum::extract::Request,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        use axum::response::IntoResponse;
        require_json(request.headers()).map_err(IntoResponse::into_response)?;
        Bytes::from_request(request, state)
            .await
            .map(JsonBody)
            .map_err(IntoResponse::into_response)
    }
}

/// Meilisearch's refusal of a JSON route's request without `Content-Type:
/// application/json`.
pub fn require_json(headers: &axum::http::HeaderMap) -> Result<(), MeiliError> {
    let accepted = "Accepted values for the Content-Type header are: `application/json`";
    let unsupported = |code, message: String| {
        MeiliError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code,
            super::error::ErrorType::InvalidRequest,
            message,
        )
    };
    match headers
        .get(axum::http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or(""))
    {
        None | Some("") => Err(unsupported(
            "missing_content_type",
            format!("A Content-Type header is missing. {accepted}"),
        )),
        Some(content_type)
            if content_type
                .split(';')
                .next()
                .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json")) =>
        {
            Ok(())
        }
        Some(other) => Err(unsupported(
            "invalid_content_type",
            format!("The Content-Type `{other}` is invalid. {accepted}"),
        )),
    }
}
