//! Errors in Meilisearch's shape: `{message, code, type, link}` with its HTTP status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

pub use miroir_proto::ErrorType;
use miroir_proto::{ErrorCode, error::meili_error_body};

/// An error answered in Meilisearch's shape.
#[derive(Debug, Clone)]
pub struct MeiliError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human message.
    pub message: String,
    /// Machine code, e.g. `index_not_found` or `miroir_not_ready`.
    pub code: &'static str,
    /// Error type.
    pub kind: ErrorType,
}

impl MeiliError {
    /// A new error.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        kind: ErrorType,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            message: message.into(),
            code,
            kind,
        }
    }

    /// Miroir's own failure (500 `internal`).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            ErrorType::Internal,
            message,
        )
    }

    /// The body as JSON.
    pub fn body(&self) -> serde_json::Value {
        meili_error_body(self.code, self.kind, &self.message)
    }
}

impl IntoResponse for MeiliError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        response
            .extensions_mut()
            .insert(super::request_metrics::ErrorCodeTag(self.code));
        // Every 503 here is transient (no quorum, a cutover, a lapsed lease): say when to
        // come back, as load balancers and clients expect.
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

impl MeiliError {
    /// A 400 `invalid_request` error.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code,
            ErrorType::InvalidRequest,
            message,
        )
    }

    /// `message` answered as [`ErrorCode`] `code` says (its one mapping).
    pub fn from_code(code: ErrorCode, message: impl Into<String>) -> Self {
        let spec = code.spec();
        Self::new(spec.http, spec.meili_code, spec.meili_type, message)
    }

    /// The control plane's answer as the error a Meilisearch client expects, by the
    /// Miroir error code in its details.
    pub fn from_status(status: &tonic::Status) -> Self {
        let code = ErrorCode::of(status);
        let message = match code {
            ErrorCode::ControlPlaneUnavailable => {
                format!("the control plane is unavailable: {}", status.message())
            }
            _ => status.message().to_owned(),
        };
        Self::from_code(code, message)
    }
}

/// How Meilisearch names a JSON value's kind in its type errors ("a string", …).
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_u64() => "a positive integer",
        Value::Number(n) if n.is_i64() => "a negative integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Meilisearch's refusal of a JSON member that must be a positive integer when it is not
/// one (absent or `null` is left to the default); `at` gives its path (`.limit`,
/// `.queries[0].limit`), only written for an error since searches run this on every
/// query. Checked where Miroir consumes the member instead of passing it on.
pub fn check_positive_integer(
    value: Option<&Value>,
    at: impl FnOnce() -> String,
    code: &'static str,
) -> Result<(), MeiliError> {
    match value {
        None | Some(Value::Null) => Ok(()),
        Some(v) if v.is_u64() => Ok(()),
        Some(other) => Err(MeiliError::invalid(
            code,
            format!(
                "Invalid value type at `{}`: expected a positive integer, but found {}: `{other}`",
                at(),
                json_kind(other)
            ),
        )),
    }
}

/// A query parameter as a positive integer, or Meilisearch's error for it under `code`.
pub fn positive_integer<T: std::str::FromStr>(
    name: &str,
    value: &str,
    code: &'static str,
) -> Result<T, MeiliError> {
    value.parse().map_err(|_| {
        MeiliError::invalid(
            code,
            format!("Invalid value in parameter `{name}`: could not parse `{value}` as a positive integer"),
        )
    })
}

/// An optional query parameter as a positive integer ([`positive_integer`]).
pub fn optional_positive_integer<T: std::str::FromStr>(
    params: &std::collections::HashMap<String, String>,
    name: &str,
    code: &'static str,
) -> Result<Option<T>, MeiliError> {
    params
        .get(name)
        .map(|v| positive_integer(name, v, code))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_plane_errors_are_answered_by_the_code_in_their_details() {
        let error =
            MeiliError::from_status(&ErrorCode::IndexNotFound.status("Index `x` not found."));
        assert_eq!(
            (error.status, error.code, error.kind),
            (
                StatusCode::NOT_FOUND,
                "index_not_found",
                ErrorType::InvalidRequest
            )
        );
        assert_eq!(error.message, "Index `x` not found.");
        // Same gRPC code, another Miroir code: another answer.
        let error =
            MeiliError::from_status(&ErrorCode::ApiKeyNotFound.status("API key `k` not found."));
        assert_eq!(error.code, "api_key_not_found");
        let error = MeiliError::from_status(&ErrorCode::FailedPrecondition.status("no group yet"));
        assert_eq!(
            (error.status, error.code, error.kind),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "miroir_fleet_not_ready",
                ErrorType::System
            )
        );
        let error = MeiliError::from_status(&ErrorCode::InvalidWebhooks.status("too many"));
        assert_eq!(
            (error.status, error.code),
            (StatusCode::BAD_REQUEST, "invalid_webhooks")
        );
    }

    #[test]
    fn transport_failures_are_the_control_plane_being_unavailable() {
        let error = MeiliError::from_status(&tonic::Status::unavailable("connection refused"));
        assert_eq!(
            (error.status, error.code),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "miroir_control_plane_unavailable"
            )
        );
        assert_eq!(
            error.message,
            "the control plane is unavailable: connection refused"
        );
        let body = error.body();
        assert_eq!(
            body["link"],
            "https://github.com/miroir/miroir/blob/main/docs/errors.md#miroir_control_plane_unavailable"
        );
    }
}
