//! Errors in Meilisearch's shape.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An error as Meilisearch reports it, in a response or inside a failed task.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeError {
    /// HTTP status when answered directly.
    pub status: StatusCode,
    /// Error code, e.g. `index_not_found`.
    pub code: &'static str,
    /// `invalid_request`, `internal`, `auth` or `system`.
    pub kind: &'static str,
    /// Message.
    pub message: String,
}

impl NodeError {
    /// A 400 `invalid_request` error.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            kind: "invalid_request",
            message: message.into(),
        }
    }

    /// An error with another status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// `index_not_found`.
    pub fn index_not_found(uid: &str) -> Self {
        Self::invalid("index_not_found", format!("Index `{uid}` not found."))
            .with_status(StatusCode::NOT_FOUND)
    }

    /// An auth error.
    pub fn auth(status: StatusCode, code: &'static str, message: &str) -> Self {
        Self {
            status,
            code,
            kind: "auth",
            message: message.to_owned(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({
            "message": self.message,
            "code": self.code,
            "type": self.kind,
            "link": format!("https://docs.meilisearch.com/errors#{}", self.code),
        })
    }
}

impl IntoResponse for NodeError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}
