//! `POST /export`: Meilisearch's export of indexes to another Meilisearch. The body is
//! checked here as Meilisearch checks it; the export itself is run by the control plane's
//! leader (each shard read once from one in-sync copy, `_miroir_shard` removed), under an
//! `export` task it decides (`control-plane/src/export.rs`).

use super::error::{MeiliError, json_kind};
use super::request_body::{JsonBody, json_object};
use crate::state::AppState;
use crate::tasks::view as tasks;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use miroir_proto::pb;
use serde_json::{Map, Value, json};

/// Meilisearch's largest body per request when the client gives none.
const DEFAULT_PAYLOAD_SIZE: &str = "50 MiB";

pub async fn export(
    State(state): State<AppState>,
    JsonBody(bytes): JsonBody,
) -> Result<Response, MeiliError> {
    let body = json_object(&bytes)?;
    let request = checked(&body)?;
    let task = state
        .control_plane
        .start_export(request)
        .await
        .map_err(|status| MeiliError::from_status(&status))?;
    Ok((StatusCode::ACCEPTED, Json(tasks::summary(&task))).into_response())
}

fn type_error(code: &'static str, at: &str, expected: &str, found: &Value) -> MeiliError {
    MeiliError::invalid(
        code,
        format!(
            "Invalid value type at `{at}`: expected {expected}, but found {}: `{found}`",
            json_kind(found)
        ),
    )
}

/// A string member, or `None` when absent or null.
fn string<'a>(
    body: &'a Map<String, Value>,
    key: &str,
    code: &'static str,
) -> Result<Option<&'a str>, MeiliError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(type_error(code, &format!(".{key}"), "a string", other)),
    }
}

/// The request for the control plane, and the task's details as clients see them.
fn checked(body: &Map<String, Value>) -> Result<pb::StartExportRequest, MeiliError> {
    if let Some(unknown) = body
        .keys()
        .find(|k| !matches!(k.as_str(), "url" | "apiKey" | "payloadSize" | "indexes"))
    {
        return Err(MeiliError::invalid(
            "bad_request",
            format!(
                "Unknown field `{unknown}`: expected one of `url`, `apiKey`, `payloadSize`, `indexes`"
            ),
        ));
    }
    let url = string(body, "url", "invalid_export_url")?.unwrap_or_default();
    let api_key = string(body, "apiKey", "invalid_export_api_key")?;
    let payload_size = string(body, "payloadSize", "invalid_export_payload_size")?;
    let (payload_size_bytes, payload_shown) =
        parse_size(payload_size.unwrap_or(DEFAULT_PAYLOAD_SIZE)).map_err(|message| {
            MeiliError::invalid(
                "invalid_export_payload_size",
                format!("Invalid value at `.payloadSize`: {message}"),
            )
        })?;
    let mut patterns = Vec::new();
    let mut shown_indexes = Map::new();
    match body.get("indexes") {
        None | Some(Value::Null) => {
            patterns.push(pb::ExportIndexPattern {
                pattern: "*".into(),
                filter_json: String::new(),
                override_settings: false,
            });
            shown_indexes.insert(
                "*".into(),
                json!({"filter": null, "overrideSettings": false}),
            );
        }
        Some(Value::Object(indexes)) => {
            for (pattern, options) in indexes {
                let at = format!(".indexes.{pattern}");
                check_pattern(pattern, &at)?;
                let empty = Map::new();
                let options = match options {
                    Value::Object(options) => options,
                    Value::Null => &empty,
                    other => {
                        return Err(type_error("bad_request", &at, "an object", other));
                    }
                };
                if let Some(unknown) = options
                    .keys()
                    .find(|k| !matches!(k.as_str(), "filter" | "overrideSettings"))
                {
                    return Err(MeiliError::invalid(
                        "bad_request",
                        format!(
                            "Unknown field `{unknown}` inside `{at}`: expected one of `filter`, `overrideSettings`"
                        ),
                    ));
                }
                let filter = options.get("filter").cloned().unwrap_or(Value::Null);
                if !matches!(filter, Value::Null | Value::String(_) | Value::Array(_)) {
                    return Err(type_error(
                        "invalid_export_index_filter",
                        &format!("{at}.filter"),
                        "a string or an array",
                        &filter,
                    ));
                }
                let override_settings = match options.get("overrideSettings") {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(b)) => *b,
                    Some(other) => {
                        return Err(type_error(
                            "invalid_export_index_override_settings",
                            &format!("{at}.overrideSettings"),
                            "a boolean",
                            other,
                        ));
                    }
                };
                patterns.push(pb::ExportIndexPattern {
                    pattern: pattern.clone(),
                    filter_json: if filter.is_null() {
                        String::new()
                    } else {
                        filter.to_string()
                    },
                    override_settings,
                });
                shown_indexes.insert(
                    pattern.clone(),
                    json!({"filter": filter, "overrideSettings": override_settings}),
                );
            }
        }
        Some(other) => {
            return Err(type_error(
                "invalid_export_indexes_patterns",
                ".indexes",
                "an object",
                other,
            ));
        }
    }
    let mut details = json!({"url": url});
    if let Some(key) = api_key {
        details["apiKey"] = json!(masked(key));
    }
    if payload_size.is_some() {
        details["payloadSize"] = json!(payload_shown);
    }
    details["indexes"] = Value::Object(shown_indexes);
    Ok(pb::StartExportRequest {
        details_json: details.to_string(),
        url: url.to_owned(),
        api_key: api_key.unwrap_or_default().to_owned(),
        payload_size_bytes,
        indexes: patterns,
        enqueued_at_ms: miroir_proto::time::now_ms(),
    })
}

/// An index pattern: `*`, or an index uid's characters with at most a trailing `*`.
fn check_pattern(pattern: &str, at: &str) -> Result<(), MeiliError> {
    let name = pattern.strip_suffix('*').unwrap_or(pattern);
    let valid = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && pattern.len() <= 400;
    if valid {
        Ok(())
    } else {
        Err(MeiliError::invalid(
            "invalid_export_indexes_patterns",
            format!(
                "Invalid value at `{at}`: `{pattern}` is not a valid index uid pattern. Index uid patterns can be an integer or a string containing only alphanumeric characters, hyphens (-), underscores (_), and optionally end with a star (*)."
            ),
        ))
    }
}

/// How Meilisearch shows an API key in a task's details.
fn masked(key: &str) -> String {
    format!("{}XXXX...", key.chars().take(2).collect::<String>())
}

/// A size such as `50 MiB` or `1MB`: its bytes, and how Meilisearch shows it.
fn parse_size(text: &str) -> Result<(u64, String), String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    if number.is_empty() {
        let first = text.chars().next().unwrap_or(' ');
        return Err(format!("the character '{first}' is not a number"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{number}` is not a number"))?;
    let unit = unit.trim();
    let (multiplier, shown) = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => (1u64, "B"),
        "k" | "kb" => (1_000, "KB"),
        "kib" => (1 << 10, "KiB"),
        "m" | "mb" => (1_000_000, "MB"),
        "mib" => (1 << 20, "MiB"),
        "g" | "gb" => (1_000_000_000, "GB"),
        "gib" => (1 << 30, "GiB"),
        _ => {
            return Err(format!(
                "the unit `{unit}` is not one of B, KB, KiB, MB, MiB, GB, GiB"
            ));
        }
    };
    let bytes = (value * multiplier as f64) as u64;
    if bytes == 0 {
        return Err("the size must be more than 0 bytes".into());
    }
    Ok((bytes, format!("{number} {shown}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: Value) -> Result<pb::StartExportRequest, MeiliError> {
        checked(body.as_object().unwrap())
    }

    #[test]
    fn a_request_becomes_the_details_meilisearch_shows() {
        let request = check(json!({
            "url": "http://target:7700",
            "apiKey": "masterKey",
            "payloadSize": "1MiB",
            "indexes": {"m*": {"filter": "t = a"}, "books": {"overrideSettings": true}}
        }))
        .unwrap();
        let details: Value = serde_json::from_str(&request.details_json).unwrap();
        assert_eq!(
            details,
            json!({
                "url": "http://target:7700",
                "apiKey": "maXXXX...",
                "payloadSize": "1 MiB",
                "indexes": {
                    "m*": {"filter": "t = a", "overrideSettings": false},
                    "books": {"filter": null, "overrideSettings": true}
                }
            })
        );
        assert_eq!(request.payload_size_bytes, 1 << 20);
        assert_eq!(request.indexes[0].filter_json, "\"t = a\"");
        assert!(request.indexes[1].override_settings);
        let every = check(json!({"url": "http://t"})).unwrap();
        assert_eq!(every.indexes[0].pattern, "*");
        assert_eq!(every.payload_size_bytes, 50 << 20);
    }

    #[test]
    fn bad_requests_are_refused_as_meilisearch_refuses_them() {
        let refused = |body: Value| check(body).err().map(|e| (e.code.to_owned(), e.message));
        assert_eq!(
            refused(json!({"url": "http://t", "bogus": 1})),
            Some((
                "bad_request".to_owned(),
                "Unknown field `bogus`: expected one of `url`, `apiKey`, `payloadSize`, `indexes`"
                    .to_owned()
            ))
        );
        assert_eq!(
            refused(json!({"url": "http://t", "payloadSize": "abc"})),
            Some((
                "invalid_export_payload_size".to_owned(),
                "Invalid value at `.payloadSize`: the character 'a' is not a number".to_owned()
            ))
        );
        assert_eq!(
            refused(json!({"url": "http://t", "indexes": {"m": {"overrideSettings": "x"}}})),
            Some((
                "invalid_export_index_override_settings".to_owned(),
                "Invalid value type at `.indexes.m.overrideSettings`: expected a boolean, but found a string: `\"x\"`".to_owned()
            ))
        );
        assert_eq!(
            refused(json!({"url": 3})).map(|e| e.0),
            Some("invalid_export_url".to_owned())
        );
        assert_eq!(
            refused(json!({"url": "http://t", "indexes": {"bad name": {}}})).map(|e| e.0),
            Some("invalid_export_indexes_patterns".to_owned())
        );
    }
}
