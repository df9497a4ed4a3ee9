//! The result cache (`--result-cache`, off by default; needs Redis): a search or
//! multi-search answered before is answered again from this gateway's memory, as long as
//! nothing it depends on changed. Never stale:
//!
//! - an entry is keyed by the request (route, body, the caller's permissions, the
//!   settings floor), the topology version (settings commits, shard-move cutovers, swaps,
//!   renames and index deletions all make a new one) and each index's **write version**,
//!   a counter in Redis;
//! - a write moves its index's write version and marks itself **pending** (one Redis
//!   transaction) before any node sees it, and a watcher on the gateway that took it
//!   moves the version again and clears the mark once every node finished it (the same
//!   view `GET /tasks/{uid}` gives). While an index has a pending write its searches
//!   neither read nor fill the cache, so from the moment a task can be seen `succeeded`
//!   until its mark is cleared, searches ask the nodes; after that, only entries made
//!   after the write finished match;
//! - an answer is stored only if the versions read before it was computed still hold
//!   after, and never a degraded one.
//!
//! A write whose mark cannot be set (Redis unreachable) is refused before any node sees
//! it. A write's watcher that dies with its gateway leaves the mark: every gateway's
//! sweep checks marks nobody vouched for in a minute and clears those whose task
//! finished.

use super::cache_store::MAX_ENTRY_BYTES;
use crate::state::AppState;
use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use miroir_proto::pb;
use std::time::Duration;

/// How often a write's watcher vouches for it while it runs.
const VOUCH_EVERY: Duration = Duration::from_secs(20);
/// A pending mark nobody vouched for this long is checked by the sweep.
const UNVOUCHED_AFTER: Duration = Duration::from_secs(60);

/// What a cached answer depends on besides the request: the topology version and each
/// index's write version. `None` while a write is pending on one of them, or when Redis
/// cannot tell.
async fn stamp(state: &AppState, uids: &[&str]) -> Option<Vec<u64>> {
    let redis = state.fleet.redis()?;
    let topology = state.topology.current().version;
    let versions = redis.write_versions(uids).await.ok()?;
    if versions.iter().any(|(_, pending)| *pending > 0) {
        return None;
    }
    let mut stamp = vec![topology];
    stamp.extend(versions.iter().map(|(version, _)| *version));
    Some(stamp)
}

/// Answers a read of the indexes `uids` from the cache, or by `compute` (offering its
/// answer to the cache). `request` identifies the read: route, caller, body.
pub async fn answer<F, Fut>(state: &AppState, uids: &[&str], request: &[u8], compute: F) -> Response
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let Some(cache) = state.result_cache.as_deref() else {
        return compute().await;
    };
    let Some(before) = stamp(state, uids).await else {
        cache.bypassed.inc();
        return compute().await;
    };
    let mut key = Vec::with_capacity(request.len() + 8 * before.len());
    for part in &before {
        key.extend_from_slice(&part.to_le_bytes());
    }
    key.extend_from_slice(request);
    if let Some(body) = cache.get(&key) {
        cache.hits.inc();
        return json_response(super::request_uid::with_new_request_uid(&body));
    }
    cache.misses.inc();
    let response = compute().await;
    // Not kept: an error, a degraded answer, or one larger than an entry may be (its size
    // is known before it is read, so a large answer passes through untouched).
    let size = http_body::Body::size_hint(response.body()).upper();
    if response.status() != StatusCode::OK
        || response.headers().contains_key("x-miroir-degraded")
        || size.is_none_or(|size| size as usize > MAX_ENTRY_BYTES)
    {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the answer could not be read back",
        )
            .into_response();
    };
    // Stored only if nothing moved while it was computed.
    if stamp(state, uids).await.as_ref() == Some(&before) {
        cache.insert(key, body.clone());
    }
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// What identifies a read for the cache: its route, the caller's permissions, the
/// settings floor asked for, and the request itself.
pub fn request_key(
    route: &str,
    caller: &crate::api::auth::Caller,
    floor: u64,
    request: &[u8],
) -> Vec<u8> {
    let identity = caller.cache_identity();
    let mut key = Vec::with_capacity(route.len() + identity.len() + request.len() + 16);
    for part in [route.as_bytes(), identity.as_bytes(), &floor.to_le_bytes()] {
        key.extend_from_slice(&(part.len() as u32).to_le_bytes());
        key.extend_from_slice(part);
    }
    key.extend_from_slice(request);
    key
}

/// Whether a read may be answered from the cache: not one asking for performance details
/// (they describe the run that answers).
pub fn cacheable(state: &AppState, request: &[u8]) -> bool {
    const DETAILS: &[u8] = b"showPerformanceDetails";
    let Some(cache) = state.result_cache.as_deref() else {
        return false;
    };
    let asks_details = request.windows(DETAILS.len()).any(|w| w == DETAILS);
    if asks_details {
        cache.bypassed.inc();
    }
    !asks_details
}

fn json_response(body: Bytes) -> Response {
    let mut response = Response::new(axum::body::Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Marks a write to `uid` (task `task`) pending before any node sees it. Refused (503)
/// when Redis cannot record it: a cache elsewhere could otherwise serve answers from
/// before it.
pub async fn write_started(
    state: &AppState,
    uid: &str,
    task: u32,
) -> Result<(), crate::api::error::MeiliError> {
    if state.result_cache.is_none() {
        return Ok(());
    }
    let Some(redis) = state.fleet.redis() else {
        return Ok(());
    };
    redis
        .write_started(uid, task, miroir_proto::time::now_ms())
        .await
        .map_err(|error| {
            crate::api::error::MeiliError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "miroir_cache_unavailable",
                miroir_proto::ErrorType::System,
                format!("the result cache needs Redis to record this write, and Redis did not answer ({error}); nothing was written, retry"),
            )
        })
}

/// Watches a write's task (as attached) until every node finished it, then clears its
/// pending mark, in the background.
pub fn watch_write(state: &AppState, task: &pb::Task, error: Option<&serde_json::Value>) {
    if state.result_cache.is_none() {
        return;
    }
    let Some(uid) = task.index_uid.clone() else {
        return;
    };
    // The view of the task as its nodes tell it (a reservation left unattached here
    // still names its node tasks).
    let task = pb::Task {
        status: None,
        error_json: error.map(|e| e.to_string()).unwrap_or_default(),
        ..task.clone()
    };
    let state = state.clone();
    tokio::spawn(async move {
        let mut pause = Duration::from_millis(5);
        let mut vouched = tokio::time::Instant::now();
        loop {
            if finished(&state, &task).await {
                break;
            }
            if vouched.elapsed() >= VOUCH_EVERY {
                if let Some(redis) = state.fleet.redis() {
                    let _ = redis
                        .write_still_running(&uid, task.uid, miroir_proto::time::now_ms())
                        .await;
                }
                vouched = tokio::time::Instant::now();
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
        clear(&state, &uid, task.uid).await;
    });
}

/// Whether every node finished `task` (succeeded, failed or canceled).
async fn finished(state: &AppState, task: &pb::Task) -> bool {
    let views = crate::tasks::outcomes::views(state, std::slice::from_ref(task)).await;
    views
        .first()
        .and_then(|v| v["status"].as_str())
        .is_some_and(crate::tasks::view::is_final)
}

/// Clears a finished write's mark, retrying while Redis does not answer.
async fn clear(state: &AppState, uid: &str, task: u32) {
    let Some(redis) = state.fleet.redis() else {
        return;
    };
    for attempt in 0..50u32 {
        match redis.write_finished(uid, task).await {
            Ok(()) => return,
            Err(error) => {
                tracing::debug!(index = uid, task, %error, attempt, "write mark not cleared yet");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt + 1))).await;
            }
        }
    }
    tracing::warn!(index = uid, task, "write mark not cleared: the sweep will");
}

/// Every gateway, every few seconds: the pending marks nobody vouched for in a minute
/// (their gateway stopped) are cleared once their task finished.
pub async fn sweep(state: AppState) {
    let mut interval = tokio::time::interval(Duration::from_secs(5));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(redis) = state.fleet.redis() else {
            return;
        };
        let before =
            miroir_proto::time::now_ms().saturating_sub(UNVOUCHED_AFTER.as_millis() as u64);
        for index in &state.topology.current().indexes {
            let Ok(tasks) = redis.writes_unvouched(&index.uid, before).await else {
                continue;
            };
            for uid in tasks {
                let request = pb::GetTaskRequest { uid };
                let task = match state.control_plane.get_task(request).await {
                    Ok(task) => task,
                    // A task the control plane no longer has (deleted) is over.
                    Err(status) if status.code() == tonic::Code::NotFound => {
                        clear(&state, &index.uid, uid).await;
                        continue;
                    }
                    Err(_) => continue,
                };
                if finished(&state, &task).await {
                    tracing::info!(index = %index.uid, task = uid, "a write's pending mark left by a stopped gateway cleared");
                    clear(&state, &index.uid, uid).await;
                } else {
                    let _ = redis
                        .write_still_running(&index.uid, uid, miroir_proto::time::now_ms())
                        .await;
                }
            }
        }
    }
}
