//! The gateway's HTTP API: Meilisearch's routes and Miroir's own under `/_miroir/`.

pub mod error;
mod miroir;

use crate::state::AppState;
use axum::Router;
use axum::routing::get;

/// Every route the gateway answers.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/_miroir/ready", get(miroir::ready))
        .route("/_miroir/status", get(miroir::status))
        // Meilisearch registers no default service: an unknown route is a bare 404.
        .fallback(|| async { axum::http::StatusCode::NOT_FOUND })
        .with_state(state)
}

/// Meilisearch's `GET /health`: the gateway process is up.
async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "available" }))
}
