//! `miroir-test-node`: a small Meilisearch-compatible server for tests, used when no real
//! Meilisearch binary is available (`MEILISEARCH_BIN` unset).
//!
//! This first version answers what the control plane needs (`GET /health`,
//! `GET /version`) and supports fault injection; the document, search, task and settings
//! routes come with the gateway. Faults are set with
//! `POST /_testnode/faults {"down": bool, "latencyMs": u64, "errorRate": f64}`
//! (not part of Meilisearch's API; real Meilisearch tests use process kills instead).
//!
//! Prints `listening on ADDR` on stdout once it accepts connections.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A Meilisearch-compatible test node with fault injection.
#[derive(Debug, Parser)]
struct Args {
    /// Listen address (port 0 picks a free one; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Master key, as Meilisearch's --master-key.
    #[arg(long, env = "MEILI_MASTER_KEY")]
    master_key: Option<String>,
}

/// Injected faults.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Faults {
    /// Answer every Meilisearch route with 503.
    down: bool,
    /// Delay every Meilisearch route by this much.
    latency_ms: u64,
    /// Fail this fraction (0..1) of requests with 500.
    error_rate: f64,
}

#[derive(Default)]
struct Node {
    faults: Mutex<Faults>,
    requests: Mutex<u64>,
}

type Shared = Arc<Node>;

async fn inject_faults(State(node): State<Shared>, request: Request, next: Next) -> Response {
    if request.uri().path().starts_with("/_testnode/") {
        return next.run(request).await;
    }
    let (faults, n) = {
        let faults = node
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut count = node.requests.lock().unwrap_or_else(|e| e.into_inner());
        *count += 1;
        (faults, *count)
    };
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    if faults.down {
        return meili_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "test node is down (injected fault)",
            "internal",
            "internal",
        );
    }
    // Deterministic "random": fail every k-th request for a rate of 1/k.
    if faults.error_rate > 0.0 {
        let every = (1.0 / faults.error_rate.min(1.0)).round().max(1.0) as u64;
        if n % every == 0 {
            return meili_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "injected error",
                "internal",
                "internal",
            );
        }
    }
    next.run(request).await
}

fn meili_error(status: StatusCode, message: &str, code: &str, kind: &str) -> Response {
    (
        status,
        Json(json!({
            "message": message,
            "code": code,
            "type": kind,
            "link": format!("https://docs.meilisearch.com/errors#{code}"),
        })),
    )
        .into_response()
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "available" }))
}

async fn version() -> Json<serde_json::Value> {
    Json(json!({
        "commitSha": "miroir-test-node",
        "commitDate": "2026-01-01T00:00:00Z",
        "pkgVersion": "1.12.0"
    }))
}

async fn set_faults(State(node): State<Shared>, Json(faults): Json<Faults>) -> Json<Faults> {
    *node.faults.lock().unwrap_or_else(|e| e.into_inner()) = faults.clone();
    Json(faults)
}

async fn not_found() -> Response {
    meili_error(
        StatusCode::NOT_FOUND,
        "Not found.",
        "not_found",
        "invalid_request",
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = args.master_key;
    let node: Shared = Arc::default();
    let app = Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/_testnode/faults", post(set_faults))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(node.clone(), inject_faults))
        .with_state(node);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
