//! The gateway's HTTP API: Meilisearch's routes and Miroir's own under `/_miroir/`.

pub(crate) mod aliases;
pub(crate) mod any_node;
pub mod auth;
pub(crate) mod backups;
pub(crate) mod chats;
pub(crate) mod consistency;
pub(crate) mod document_deletes;
pub(crate) mod document_reads;
pub(crate) mod documents;
pub mod error;
pub(crate) mod experimental_features;
pub(crate) mod export;
pub(crate) mod fields;
pub(crate) mod fleet_page;
pub(crate) mod fleet_rules;
pub(crate) mod indexes;
pub(crate) mod keys;
pub(crate) mod miroir;
pub(crate) mod multi_search;
pub(crate) mod request_body;
pub mod request_metrics;
pub(crate) mod search;
pub(crate) mod settings;
pub(crate) mod similar;
pub(crate) mod stats;
pub(crate) mod tasks;
pub(crate) mod webhooks;

use crate::state::AppState;
use axum::Router;
use axum::routing::get;

/// Every route the gateway answers.
pub fn router(state: AppState) -> Router {
    let router = Router::new()
        .route("/health", get(health))
        .route("/_miroir/ready", get(miroir::ready))
        .route("/_miroir/status", get(miroir::status))
        .route("/_miroir/ui", get(fleet_page::page))
        .route("/_miroir/ui/app.js", get(fleet_page::script))
        .route("/_miroir/ui/app.css", get(fleet_page::style))
        .route("/_miroir/ui/fleet", get(fleet_page::fleet))
        .route("/indexes", get(indexes::list).post(indexes::create))
        .route(
            "/indexes/{uid}",
            get(indexes::get)
                .patch(indexes::update)
                .delete(indexes::delete),
        )
        .route("/swap-indexes", axum::routing::post(indexes::swap))
        .route(
            "/indexes/{uid}/documents",
            get(document_reads::list)
                .post(documents::replace)
                .put(documents::update)
                .delete(document_deletes::clear),
        )
        .route(
            "/indexes/{uid}/documents/fetch",
            axum::routing::post(document_reads::fetch),
        )
        .route(
            "/indexes/{uid}/documents/delete-batch",
            axum::routing::post(document_deletes::delete_batch),
        )
        .route(
            "/indexes/{uid}/documents/delete",
            axum::routing::post(document_deletes::delete_by_filter),
        )
        .route(
            "/indexes/{uid}/documents/{id}",
            get(document_reads::get_one).delete(document_deletes::delete_one),
        )
        .route(
            "/indexes/{uid}/search",
            get(search::search_get).post(search::search_post),
        )
        .route(
            "/indexes/{uid}/settings",
            get(settings::get_all)
                .patch(settings::patch_all)
                .delete(settings::reset_all),
        )
        .route(
            "/indexes/{uid}/settings/{name}",
            get(settings::get_one)
                .put(settings::put_one)
                .patch(settings::put_one)
                .delete(settings::reset_one),
        )
        .route(
            "/multi-search",
            axum::routing::post(multi_search::multi_search),
        )
        .route(
            "/indexes/{uid}/facet-search",
            axum::routing::post(search::facet_search),
        )
        .route("/indexes/{uid}/fields", axum::routing::post(fields::fields))
        .route(
            "/indexes/{uid}/similar",
            get(similar::similar_get).post(similar::similar_post),
        )
        .route("/tasks", get(tasks::list_tasks).delete(tasks::delete))
        .route("/tasks/cancel", axum::routing::post(tasks::cancel))
        .route("/tasks/{uid}", get(tasks::get_task))
        .route("/dumps", axum::routing::post(backups::create_dump))
        .route("/export", axum::routing::post(export::export))
        .route("/snapshots", axum::routing::post(backups::create_snapshot))
        .route("/batches", get(tasks::list_batches))
        .route("/batches/{uid}", get(tasks::get_batch))
        .route("/version", get(any_node::version))
        .route(
            "/experimental-features",
            get(experimental_features::get).patch(experimental_features::update),
        )
        .route("/keys", get(keys::list).post(keys::create))
        .route(
            "/keys/{key}",
            get(keys::get).patch(keys::update).delete(keys::delete),
        )
        .route("/chats", get(chats::read))
        .route("/chats/{workspace}", get(chats::read).delete(chats::change))
        .route(
            "/chats/{workspace}/settings",
            get(chats::read).patch(chats::change).delete(chats::change),
        )
        .route(
            "/chats/{workspace}/chat/completions",
            axum::routing::post(chats::completions),
        )
        .route("/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/webhooks/{uuid}",
            get(webhooks::get_one)
                .patch(webhooks::update)
                .delete(webhooks::delete),
        )
        .route("/stats", get(stats::all))
        .route("/indexes/{uid}/stats", get(stats::one))
        .route(
            "/indexes/{uid}/compact",
            axum::routing::post(indexes::compact),
        )
        // Only matched routes: Meilisearch checks credentials inside its handlers, so an
        // unknown route is a 404 even without them.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            consistency::settings_headers,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            fleet_rules::idempotency,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            fleet_rules::session,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            fleet_rules::rate_limit,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            miroir::until_topology,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.request_metrics.clone(),
            request_metrics::record,
        ))
        .route_layer(axum::middleware::from_fn(trace_request))
        // Meilisearch registers no default service: an unknown route is a bare 404.
        .fallback(|| async { axum::http::StatusCode::NOT_FOUND })
        .layer(axum::middleware::from_fn(settings::sub_route_method))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.payload_size_limit,
        ));
    let app = guarded(router, state.config.request_timeout).with_state(state.clone());
    // Aliases are resolved before routing, so every route sees the index's own uid.
    Router::new().fallback_service(tower::Layer::layer(
        &axum::middleware::from_fn_with_state(state, aliases::resolve),
        app,
    ))
}

/// `router` behind the layers every request passes first: a panic is caught and answered
/// 500, and a request outliving `request_timeout` is answered 504 (its handler dropped).
fn guarded<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    request_timeout: std::time::Duration,
) -> Router<S> {
    router.layer(
        tower::ServiceBuilder::new()
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
            .layer(axum::error_handling::HandleErrorLayer::new(
                |_: tower::BoxError| async { timed_out() },
            ))
            .layer(tower::timeout::TimeoutLayer::new(request_timeout)),
    )
}

/// A handler's panic: logged, and answered as Meilisearch answers an internal error.
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    tracing::error!(panic = what, "a request handler panicked");
    axum::response::IntoResponse::into_response(error::MeiliError::internal(
        "the gateway failed while handling this request (logged); nothing is known of its effect: check the task list before retrying a write",
    ))
}

/// 504 `miroir_request_timeout`: the request outlived `--request-timeout`.
fn timed_out() -> axum::response::Response {
    axum::response::IntoResponse::into_response(error::MeiliError::new(
        axum::http::StatusCode::GATEWAY_TIMEOUT,
        "miroir_request_timeout",
        error::ErrorType::System,
        "the request took longer than the gateway's --request-timeout; a write may still complete on the nodes: check the task list before retrying it",
    ))
}

/// The request with its path normalized as Meilisearch does before routing (actix's
/// `NormalizePath` with `TrailingSlash::Trim`): repeated slashes merged, a trailing slash
/// removed, so `/indexes/` is `/indexes`.
pub fn normalize_path(mut request: axum::extract::Request) -> axum::extract::Request {
    let path = request.uri().path();
    if !(path.contains("//") || (path.len() > 1 && path.ends_with('/'))) {
        return request;
    }
    let mut normalized = String::with_capacity(path.len());
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        normalized.push('/');
        normalized.push_str(segment);
    }
    if normalized.is_empty() {
        normalized.push('/');
    }
    if let Some(query) = request.uri().query() {
        normalized.push('?');
        normalized.push_str(query);
    }
    let mut parts = request.uri().clone().into_parts();
    if let Ok(path_and_query) = normalized.parse() {
        parts.path_and_query = Some(path_and_query);
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
    request
}

/// Meilisearch's `GET /health`: the gateway process is up.
async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "available" }))
}

/// One span per request, named after the route template (bounded cardinality), a child of
/// the client's W3C `traceparent` when it sends one; node calls are its children.
async fn trace_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    // The fields are only formatted when the span is enabled (OTLP on, or logged).
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("", |p| p.as_str());
    let method = request.method();
    let span = tracing::info_span!(
        target: miroir_proto::telemetry::REQUEST_TARGET,
        "http_request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.method = %method,
        http.route = %route,
        http.status = tracing::field::Empty,
    );
    miroir_proto::telemetry::set_parent_from_headers(&span, request.headers());
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.status", response.status().as_u16());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn boom() -> &'static str {
        panic!("boom")
    }

    #[tokio::test]
    async fn panics_and_slow_requests_are_answered_in_meilisearch_shape() {
        use tower::ServiceExt;
        let router: Router = guarded(
            Router::new().route("/panic", get(boom)).route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                }),
            ),
            std::time::Duration::from_millis(50),
        );
        for (path, status, code) in [
            ("/panic", 500, "internal"),
            ("/slow", 504, "miroir_request_timeout"),
        ] {
            let request = axum::http::Request::builder()
                .uri(path)
                .body(axum::body::Body::empty())
                .unwrap();
            let response = router.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status().as_u16(), status, "{path}");
            let body = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["code"], code, "{body}");
            assert!(
                body["message"].is_string() && body["link"].is_string(),
                "{body}"
            );
        }
    }

    #[tokio::test]
    async fn a_gateway_without_a_topology_answers_not_ready_rather_than_not_found() {
        use tower::ServiceExt;
        let state = crate::state::GatewayState::for_tests(Default::default());
        let app = router(state);
        for (method, path, status) in [
            ("DELETE", "/indexes/movies/documents/1", 503),
            ("GET", "/indexes/movies", 503),
            ("GET", "/keys", 503),
        ] {
            let request = axum::http::Request::builder()
                .method(method)
                .uri(path)
                .header("authorization", "Bearer unit-test-master-key")
                .body(axum::body::Body::empty())
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status().as_u16(), status, "{method} {path}");
            if status == 503 {
                assert!(response.headers().contains_key("retry-after"));
                let body = axum::body::to_bytes(response.into_body(), 1 << 16)
                    .await
                    .unwrap();
                let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(body["code"], "miroir_not_ready", "{body}");
            }
        }
    }

    #[test]
    fn paths_are_normalized_like_meilisearch() {
        let path = |uri: &str| {
            let request = axum::http::Request::builder()
                .uri(uri)
                .body(axum::body::Body::empty())
                .unwrap();
            normalize_path(request).uri().to_string()
        };
        assert_eq!(path("/indexes/"), "/indexes");
        assert_eq!(
            path("/indexes//movies/search/?q=a/"),
            "/indexes/movies/search?q=a/"
        );
        assert_eq!(path("/"), "/");
        assert_eq!(path("//"), "/");
        assert_eq!(path("/indexes?limit=2"), "/indexes?limit=2");
    }
}
