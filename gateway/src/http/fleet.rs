//! The rules that must hold whichever gateway a request reaches (DESIGN §8), on the fleet
//! state (`crate::fleet`: Redis, or this process's memory):
//! - **rate limits** per API key and per client IP (`--rate-limit-per-key`,
//!   `--rate-limit-per-ip`, requests per second): 429 `miroir_rate_limited`;
//! - **`Idempotency-Key`** on writes: the same key with the same request returns the first
//!   answer (the same task uid, `Idempotent-Replayed: true`); with a different request,
//!   409 `miroir_idempotency_key_reused`;
//! - **`X-Miroir-Session`**: a read in a session first waits (up to `--node-timeout`) for
//!   the session's last write task to finish, so it sees that write.
//!
//! While Redis cannot be reached, idempotency keys and sessions hold on this gateway
//! (its memory), and rate limits pass or refuse as `--redis-unavailable-rate-limits` says.

use super::error::{ErrorType, MeiliError};
use crate::fleet::{Idempotency, RateDecision};
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::{Duration, Instant};

/// The header naming a read-your-writes session.
pub const SESSION: &str = "x-miroir-session";
/// The header that makes a write idempotent.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Whether a request only reads (its answer comes from nodes, no task is made).
fn is_read(method: &Method, path: &str) -> bool {
    method == Method::GET
        || (method == Method::POST
            && (path.ends_with("/search")
                || path == "/multi-search"
                || path.ends_with("/documents/fetch")
                || path.ends_with("/facet-search")))
}

/// A short, stable digest of `parts` (idempotency fingerprints, bucket names).
fn digest(parts: &[&[u8]]) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    format!("{:032x}", hasher.digest128())
}

fn rate_limited(what: &str) -> Response {
    let mut response = MeiliError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "miroir_rate_limited",
        ErrorType::System,
        format!("Too many requests for this {what}: retry in a second."),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// 503 while Redis is unreachable and rate limits fail closed.
fn rate_limit_unavailable() -> Response {
    let mut response = MeiliError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "miroir_rate_limit_unavailable",
        ErrorType::System,
        "Rate limits cannot be checked: Redis is unreachable and `--redis-unavailable-rate-limits` is `closed`. Retry in a second.",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Runs the request under the fleet rules.
pub async fn fleet_rules(
    State(state): State<AppState>,
    ConnectInfo(crate::http_server::Peer(peer)): ConnectInfo<crate::http_server::Peer>,
    request: Request,
    next: Next,
) -> Response {
    let header_text = |request: &Request, name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let session = header_text(&request, SESSION);
    let idempotency_key = header_text(&request, IDEMPOTENCY_KEY);
    let (per_key, per_ip) = (
        state.config.rate_limit_per_key,
        state.config.rate_limit_per_ip,
    );
    // Most requests carry none of this: nothing to look up.
    if per_key == 0 && per_ip == 0 && session.is_none() && idempotency_key.is_none() {
        return next.run(request).await;
    }
    // Sessions, keys and per-key counters belong to the credential that made them.
    let credential = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| digest(&[v.as_bytes()]))
        .unwrap_or_default();
    // Health and Miroir's own status stay reachable for probes whatever the load.
    let exempt = {
        let path = request.uri().path();
        path == "/health" || path.starts_with("/_miroir/")
    };
    for (limit, what) in [(per_key, "API key"), (per_ip, "client address")] {
        if limit == 0 || exempt {
            continue;
        }
        let bucket = if what == "API key" {
            format!("key:{credential}")
        } else {
            format!("ip:{}", peer.ip())
        };
        // Without shared counters each gateway allows its share, so the fleet's total
        // stays within the limit.
        let allowed = if state.fleet.is_shared() {
            limit
        } else {
            limit
                / state
                    .live_gateways
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .max(1)
        };
        match state.fleet.rate_take(&bucket, allowed).await {
            RateDecision::Allowed => {}
            RateDecision::Limited => return rate_limited(what),
            RateDecision::Unchecked => return rate_limit_unavailable(),
        }
    }

    let session = session.map(|s| format!("{credential}:{s}"));
    let read = is_read(request.method(), request.uri().path());
    if read {
        if let Some(session) = &session {
            wait_for_session(&state, session).await;
        }
        return next.run(request).await;
    }

    let Some(key) = idempotency_key.map(|k| format!("{credential}:{k}")) else {
        let response = next.run(request).await;
        return after_write(&state, session.as_deref(), response).await;
    };
    // The fingerprint covers what the write does: method, path and query, body.
    let (parts, body) = request.into_parts();
    let body = match super::payload::collect(body, &parts.headers, state.config.payload_size_limit)
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
    if let (Some(session), Some(answer)) = (&session, &answer)
        && response.status() == StatusCode::ACCEPTED
    {
        record_session(&state, session, answer).await;
    }
    response
}

/// The answer of a write, with its body read (writes answer small JSON documents).
async fn buffered(response: Response) -> (Response, Option<String>) {
    let (parts, body) = response.into_parts();
    match axum::body::to_bytes(body, 1024 * 1024).await {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            (Response::from_parts(parts, Body::from(bytes)), Some(text))
        }
        Err(_) => (Response::from_parts(parts, Body::from(Bytes::new())), None),
    }
}

/// Records a session's write task (from a `202` answer's `taskUid`).
async fn after_write(state: &AppState, session: Option<&str>, response: Response) -> Response {
    let Some(session) = session else {
        return response;
    };
    if response.status() != StatusCode::ACCEPTED {
        return response;
    }
    let (response, answer) = buffered(response).await;
    if let Some(answer) = answer {
        record_session(state, session, &answer).await;
    }
    response
}

/// Remembers the task of a session's write, from its `202` answer.
async fn record_session(state: &AppState, session: &str, answer: &str) {
    let task_uid = serde_json::from_str::<serde_json::Value>(answer)
        .ok()
        .and_then(|a| a["taskUid"].as_u64());
    if let Some(uid) = task_uid {
        state.fleet.session_wrote(session, uid as u32).await;
    }
}

/// Waits until the session's last write task finished (bounded by `--node-timeout`).
async fn wait_for_session(state: &AppState, session: &str) {
    let Some(uid) = state.fleet.session_last_write(session).await else {
        return;
    };
    let deadline = Instant::now() + state.config.node_timeout;
    while Instant::now() < deadline {
        let Ok(task) = state
            .control_plane
            .get_task(miroir_proto::pb::GetTaskRequest { uid })
            .await
        else {
            return;
        };
        let view = crate::tasks::view(&task, &state.topology.current(), &state.nodes).await;
        if view["status"].as_str().is_some_and(crate::tasks::is_final) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tracing::warn!(
        task = uid,
        "session read went ahead before its write finished"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_are_told_apart() {
        assert!(is_read(&Method::GET, "/indexes/a/documents"));
        assert!(is_read(&Method::POST, "/indexes/a/search"));
        assert!(is_read(&Method::POST, "/multi-search"));
        assert!(is_read(&Method::POST, "/indexes/a/documents/fetch"));
        assert!(!is_read(&Method::POST, "/indexes/a/documents"));
        assert!(!is_read(&Method::DELETE, "/indexes/a"));
        assert_ne!(digest(&[b"ab", b"c"]), digest(&[b"a", b"bc"]));
    }
}
