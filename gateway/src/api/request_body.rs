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

/// A JSON object body that may be empty (then no fields).
pub fn json_object_or_empty(body: &Bytes) -> Result<Map<String, Value>, MeiliError> {
    if body.is_empty() {
        Ok(Map::new())
    } else {
        json_object(body)
    }
}
