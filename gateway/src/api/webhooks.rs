//! `/webhooks` (Meilisearch 1.50): the fleet's webhooks live in the topology, not on the
//! nodes, whose own would report each node's task uids; the control plane posts every
//! finished client task to them (`control-plane/src/webhooks.rs`). These routes check
//! requests with Meilisearch's rules and messages and show `Authorization` headers
//! redacted, as Meilisearch does.

use super::error::{ErrorType, MeiliError, json_kind};
use super::indexes::TOPOLOGY_WAIT;
use super::request_body::{JsonBody, json_object};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use miroir_proto::pb;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Headers a webhook may have.
const MAX_HEADERS: usize = 200;

/// `GET /webhooks`.
pub async fn list(State(state): State<AppState>) -> Json<Value> {
    let topology = state.topology.current();
    let results: Vec<Value> = topology.webhooks.iter().map(view).collect();
    Json(json!({ "results": results }))
}

/// `GET /webhooks/{uuid}`.
pub async fn get_one(
    State(state): State<AppState>,
    Path(uuid): Path<String>,
) -> Result<Json<Value>, MeiliError> {
    let uuid = parse_uuid(&uuid)?;
    let topology = state.topology.current();
    Ok(Json(view(find(&topology, &uuid)?)))
}

/// `POST /webhooks`: 201 with the webhook.
pub async fn create(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Response, MeiliError> {
    let body = json_object(&body)?;
    let uuid = uuid::Uuid::new_v4().to_string();
    let mut webhook = pb::Webhook {
        uuid: uuid.clone(),
        ..Default::default()
    };
    let (url, header_patch) = fields(&body)?;
    // Meilisearch's order of checks: headers' count, webhooks' count, the URL's presence,
    // the headers themselves, the URL's form.
    let headers = merged_headers(&webhook, header_patch);
    if headers.len() > MAX_HEADERS {
        return Err(too_many_headers(&uuid));
    }
    if state.topology.current().webhooks.len() >= miroir_proto::webhooks::MAX_WEBHOOKS {
        return Err(MeiliError::invalid(
            "invalid_webhooks",
            miroir_proto::webhooks::too_many_webhooks(),
        ));
    }
    let Some(Some(url)) = url else {
        return Err(missing_url(&uuid));
    };
    check_headers(&headers)?;
    check_url(&url)?;
    webhook.url = url;
    webhook.headers = headers.into_iter().collect();
    let recorded = put(&state, webhook, true).await?;
    Ok((StatusCode::CREATED, Json(view(&recorded))).into_response())
}

/// `PATCH /webhooks/{uuid}`: `url` replaced when given; `headers` merged name by name
/// (`null` removes one), or cleared by `headers: null`.
pub async fn update(
    State(state): State<AppState>,
    Path(uuid): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, MeiliError> {
    let uuid = parse_uuid(&uuid)?;
    let body = json_object(&body)?;
    let mut webhook = find(&state.topology.current(), &uuid)?.clone();
    let (url, header_patch) = fields(&body)?;
    let headers = merged_headers(&webhook, header_patch);
    if headers.len() > MAX_HEADERS {
        return Err(too_many_headers(&uuid));
    }
    match url {
        Some(None) => return Err(missing_url(&uuid)),
        Some(Some(url)) => {
            check_headers(&headers)?;
            check_url(&url)?;
            webhook.url = url;
        }
        None => check_headers(&headers)?,
    }
    webhook.headers = headers.into_iter().collect();
    Ok(Json(view(&put(&state, webhook, false).await?)))
}

/// `DELETE /webhooks/{uuid}`: 204.
pub async fn delete(
    State(state): State<AppState>,
    Path(uuid): Path<String>,
) -> Result<StatusCode, MeiliError> {
    let uuid = parse_uuid(&uuid)?;
    find(&state.topology.current(), &uuid)?;
    let response = state
        .control_plane
        .delete_webhook(pb::DeleteWebhookRequest { uuid: uuid.clone() })
        .await
        .map_err(|status| MeiliError::from_status(&status))?;
    state
        .topology
        .wait_for_version(response.topology_version, TOPOLOGY_WAIT)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Records `webhook` through the control plane; once this gateway serves the change.
async fn put(
    state: &AppState,
    webhook: pb::Webhook,
    create: bool,
) -> Result<pb::Webhook, MeiliError> {
    let response = state
        .control_plane
        .put_webhook(pb::PutWebhookRequest {
            webhook: Some(webhook),
            create,
        })
        .await
        .map_err(|status| MeiliError::from_status(&status))?;
    state
        .topology
        .wait_for_version(response.topology_version, TOPOLOGY_WAIT)
        .await;
    Ok(response.webhook.unwrap_or_default())
}

/// `url` (absent, `null`, or a string) and `headers` (absent: `None`; `null`: clear all;
/// else name → value or `null`) of a body, refused as Meilisearch refuses them.
#[allow(clippy::type_complexity)]
fn fields(
    body: &Map<String, Value>,
) -> Result<
    (
        Option<Option<String>>,
        Option<Option<BTreeMap<String, Option<String>>>>,
    ),
    MeiliError,
> {
    for (key, value) in body {
        match key.as_str() {
            "url" | "headers" => {}
            "uuid" | "isEditable" => {
                let code = if key == "uuid" {
                    "immutable_webhook_uuid"
                } else {
                    "immutable_webhook_is_editable"
                };
                return Err(MeiliError::invalid(
                    code,
                    format!("Immutable field `{key}`: expected one of `url`, `headers`"),
                ));
            }
            _ => {
                let _ = value;
                return Err(MeiliError::invalid(
                    "bad_request",
                    format!("Unknown field `{key}`: expected one of `url`, `headers`"),
                ));
            }
        }
    }
    let url = match body.get("url") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(url)) if url.is_empty() => Some(None),
        Some(Value::String(url)) => Some(Some(url.clone())),
        Some(other) => {
            return Err(MeiliError::invalid(
                "invalid_webhook_url",
                format!(
                    "Invalid value type at `.url`: expected a string, but found {}: `{other}`",
                    json_kind(other)
                ),
            ));
        }
    };
    let headers = match body.get("headers") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::Object(map)) => {
            let mut headers = BTreeMap::new();
            for (name, value) in map {
                let value = match value {
                    Value::Null => None,
                    Value::String(value) => Some(value.clone()),
                    other => {
                        return Err(MeiliError::invalid(
                            "invalid_webhook_headers",
                            format!(
                                "Invalid value type at `.headers.{name}`: expected a string, but found {}: `{other}`",
                                json_kind(other)
                            ),
                        ));
                    }
                };
                headers.insert(name.clone(), value);
            }
            Some(Some(headers))
        }
        Some(other) => {
            return Err(MeiliError::invalid(
                "invalid_webhook_headers",
                format!(
                    "Invalid value type at `.headers`: expected an object, but found {}: `{other}`",
                    json_kind(other)
                ),
            ));
        }
    };
    Ok((url, headers))
}

/// `webhook`'s headers after `patch`: `None` leaves them, `Some(None)` clears them, and a
/// map sets or (`null`) removes names. A new webhook keeps a `null` as an empty value, as
/// Meilisearch does.
fn merged_headers(
    webhook: &pb::Webhook,
    patch: Option<Option<BTreeMap<String, Option<String>>>>,
) -> BTreeMap<String, String> {
    let mut headers: BTreeMap<String, String> = webhook
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let creating = webhook.url.is_empty();
    match patch {
        None => {}
        Some(None) => headers.clear(),
        Some(Some(changes)) => {
            for (name, value) in changes {
                match value {
                    Some(value) => {
                        headers.insert(name, value);
                    }
                    None if creating => {
                        headers.insert(name, String::new());
                    }
                    None => {
                        headers.remove(&name);
                    }
                }
            }
        }
    }
    headers
}

fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), MeiliError> {
    for (name, value) in headers {
        if let Err(error) = http::HeaderName::from_bytes(name.as_bytes()) {
            return Err(MeiliError::invalid(
                "invalid_webhook_headers",
                format!("Invalid header name `{name}`: {error}"),
            ));
        }
        if let Err(error) = http::HeaderValue::from_str(value) {
            return Err(MeiliError::invalid(
                "invalid_webhook_headers",
                format!("Invalid header value `{name}`: {error}"),
            ));
        }
    }
    Ok(())
}

fn check_url(url: &str) -> Result<(), MeiliError> {
    url::Url::parse(url).map(|_| ()).map_err(|error| {
        MeiliError::invalid(
            "invalid_webhook_url",
            format!("Invalid URL `{url}`: {error}"),
        )
    })
}

fn missing_url(uuid: &str) -> MeiliError {
    MeiliError::invalid(
        "invalid_webhook_url",
        format!("The URL for the webhook `{uuid}` is missing."),
    )
}

fn too_many_headers(uuid: &str) -> MeiliError {
    MeiliError::invalid(
        "invalid_webhook_headers",
        format!(
            "Too many headers for the webhook `{uuid}`. Please limit the number of headers to {MAX_HEADERS}. Hint: To remove an already defined header set its value to `null`"
        ),
    )
}

/// A path's webhook uuid, refused with Meilisearch's words.
fn parse_uuid(text: &str) -> Result<String, MeiliError> {
    if let Ok(uuid) = uuid::Uuid::try_parse(text) {
        return Ok(uuid.to_string());
    }
    let detail = match text
        .char_indices()
        .find(|(_, c)| !c.is_ascii_hexdigit() && *c != '-')
    {
        Some((at, c)) => format!("invalid character: found `{c}` at {at}"),
        None => format!("invalid length: found {}", text.len()),
    };
    Err(MeiliError::invalid(
        "invalid_webhook_uuid",
        format!("Invalid UUID: {detail}"),
    ))
}

fn find<'a>(topology: &'a pb::Topology, uuid: &str) -> Result<&'a pb::Webhook, MeiliError> {
    topology
        .webhooks
        .iter()
        .find(|w| w.uuid == uuid)
        .ok_or_else(|| {
            MeiliError::new(
                StatusCode::NOT_FOUND,
                "webhook_not_found",
                ErrorType::InvalidRequest,
                format!("Webhook `{uuid}` not found."),
            )
        })
}

/// A webhook as clients read it: headers by name, `Authorization` redacted.
fn view(webhook: &pb::Webhook) -> Value {
    let headers: BTreeMap<&String, String> = webhook
        .headers
        .iter()
        .map(|(name, value)| {
            let shown = if name.eq_ignore_ascii_case("authorization") {
                match value.strip_prefix("Bearer ") {
                    Some(token) => format!("Bearer {}", hide_secret(token)),
                    None => hide_secret(value),
                }
            } else {
                value.clone()
            };
            (name, shown)
        })
        .collect();
    json!({"uuid": webhook.uuid, "isEditable": true, "url": webhook.url, "headers": headers})
}

/// Meilisearch's redaction of a secret: a few first characters, then `X`s.
fn hide_secret(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    match chars.len() {
        0..10 => "XXX...".to_owned(),
        10..20 => format!("{}XXXX...", chars[..2].iter().collect::<String>()),
        _ => format!("{}XXXXX...", chars[..3].iter().collect::<String>()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_as_meilisearch_does() {
        assert_eq!(hide_secret("abc"), "XXX...");
        assert_eq!(hide_secret("secret-token-xyz"), "seXXXX...");
        assert_eq!(hide_secret("0123456789abcdef0123456789"), "012XXXXX...");
        let webhook = pb::Webhook {
            uuid: "u".into(),
            url: "http://x".into(),
            headers: [("Authorization", "Bearer secret-token-xyz"), ("X", "v")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        };
        assert_eq!(
            view(&webhook)["headers"],
            json!({"Authorization": "Bearer seXXXX...", "X": "v"})
        );
    }

    #[test]
    fn uuids_are_refused_in_meilisearch_words() {
        let message = |text: &str| parse_uuid(text).unwrap_err().message;
        assert_eq!(
            message("nope"),
            "Invalid UUID: invalid character: found `n` at 0"
        );
        assert_eq!(message("1234"), "Invalid UUID: invalid length: found 4");
        assert_eq!(
            message("00000000-0000-0000-0000-00000000000g"),
            "Invalid UUID: invalid character: found `g` at 35"
        );
    }
}
