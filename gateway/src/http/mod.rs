//! The gateway's HTTP API: Meilisearch's routes and Miroir's own under `/_miroir/`.

pub mod error;
mod miroir;

use crate::state::AppState;
use axum::Router;
use axum::routing::get;
use error::MeiliError;

/// Every route the gateway answers.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/_miroir/ready", get(miroir::ready))
        .route("/_miroir/status", get(miroir::status))
        .fallback(|| async { MeiliError::route_not_found() })
        .with_state(state)
}

/// Meilisearch's `GET /health`: the gateway process is up.
async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "available" }))
}
