//! The fleet page at `/_miroir/ui`: one HTML page, its script and its style sheet,
//! embedded in the binary (nothing to build or download), and the JSON it polls,
//! `/_miroir/ui/fleet`, for the master key or an admin API key. The key is typed into the
//! page and kept in the browser's session storage; every request carries it as Meilisearch
//! clients do, in `Authorization: Bearer`.

pub(crate) mod view;

use super::auth::fleet_admin;
use super::error::MeiliError;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use miroir_proto::pb;
use std::time::Duration;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// How long the page waits for the control plane before showing the topology alone.
const CONTROL_PLANE_WAIT: Duration = Duration::from_secs(2);

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // The page holds a key: nothing but its own files may run in it, and it may not be
    // framed by another site.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `GET /_miroir/ui`.
pub async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /_miroir/ui/app.js`.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /_miroir/ui/app.css`.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// `GET /_miroir/ui/fleet`: the page's data ([`view::fleet`]).
pub async fn fleet(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, MeiliError> {
    fleet_admin(&state, &headers)?;
    let control_plane = &state.control_plane;
    let (status, operations) = tokio::join!(
        tokio::time::timeout(
            CONTROL_PLANE_WAIT,
            control_plane.get_cluster_status(pb::GetClusterStatusRequest {}),
        ),
        tokio::time::timeout(
            CONTROL_PLANE_WAIT,
            control_plane.list_operations(pb::ListOperationsRequest {}),
        ),
    );
    let status = match status {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(error)) => Err(error.message().to_owned()),
        Err(_) => Err(format!(
            "the control plane did not answer within {CONTROL_PLANE_WAIT:?}"
        )),
    };
    let operations = operations.ok().and_then(Result::ok);
    let topology = state.topology.current();
    Ok(Json(view::fleet(
        &state.id,
        &topology,
        view::ControlPlaneView {
            status: status.as_ref().map_err(Clone::clone),
            operations: operations.as_ref(),
        },
        &state.loads,
        miroir_proto::time::now_ms(),
    )))
}
