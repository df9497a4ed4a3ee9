//! Requests per second per API key and per client address, fleet-wide.

use super::credential;
use crate::api::error::{ErrorType, MeiliError};
use crate::fleet::RateDecision;
use crate::state::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Counts the request against its API key's and its client address's limits.
pub async fn rate_limit(
    State(state): State<AppState>,
    ConnectInfo(crate::http_server::Peer(peer)): ConnectInfo<crate::http_server::Peer>,
    request: Request,
    next: Next,
) -> Response {
    let (per_key, per_ip) = (
        state.config.rate_limit_per_key,
        state.config.rate_limit_per_ip,
    );
    // Health and Miroir's own status stay reachable for probes whatever the load.
    let exempt = {
        let path = request.uri().path();
        path == "/health" || path.starts_with("/_miroir/")
    };
    if (per_key == 0 && per_ip == 0) || exempt {
        return next.run(request).await;
    }
    for (limit, what) in [(per_key, "API key"), (per_ip, "client address")] {
        if limit == 0 {
            continue;
        }
        let bucket = if what == "API key" {
            format!("key:{}", credential(&request))
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
    next.run(request).await
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
