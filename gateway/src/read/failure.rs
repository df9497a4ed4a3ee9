//! Why a read has no merged answer: a node's client error (the same on every node) or
//! Miroir's own; each becomes the client's answer in one place.

use crate::api::error::MeiliError;
use axum::http::StatusCode;
use serde_json::Value;

/// Why a scatter-gather has no merged answer: a node's client error (the same on every
/// node) or Miroir's own.
#[derive(Debug)]
pub enum SearchFailure {
    /// A node answered 4xx: passed on as is.
    Node(StatusCode, Value),
    /// Miroir could not run the request.
    Miroir(MeiliError),
}

impl SearchFailure {
    /// The status and Meilisearch error body.
    pub fn parts(self) -> (StatusCode, Value) {
        match self {
            Self::Node(status, mut body) => {
                // Nodes list `_miroir_shard` among the filterable attributes and quote the
                // shard filter beside the client's; clients never see either.
                if let Some(message) = body.get("message").and_then(Value::as_str)
                    && let Some(hidden) = super::strip::client_error_message(message)
                {
                    body["message"] = Value::String(hidden);
                }
                (status, body)
            }
            Self::Miroir(error) => (error.status, error.body()),
        }
    }
}

impl From<MeiliError> for SearchFailure {
    fn from(error: MeiliError) -> Self {
        Self::Miroir(error)
    }
}

impl SearchFailure {
    /// As the client's answer.
    pub fn into_response(self) -> axum::response::Response {
        use axum::response::IntoResponse;
        let (status, body) = self.parts();
        (status, axum::Json(body)).into_response()
    }
}
