//! Per-route request metrics (a middleware on matched routes): requests by route template,
//! method and status, their duration, degraded answers, and Meilisearch-shaped errors by
//! code (`miroir_no_quorum` counts the writes that reached no quorum). Labels are route
//! templates, methods, status codes and error codes: bounded.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Instant;

/// The error code a Meilisearch-shaped error answered with, as a response extension.
#[derive(Clone, Copy, Debug)]
pub struct ErrorCodeTag(pub &'static str);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: &'static str,
}

fn duration_histogram() -> Histogram {
    // 50 µs to ~26 s.
    Histogram::new(exponential_buckets(0.00005, 2.0, 20))
}

/// The metrics, registered once.
pub struct RequestMetrics {
    /// Route templates, each kept once for the process's life (the router's routes: a
    /// fixed set), so labels cost no allocation per request.
    routes: std::sync::RwLock<std::collections::HashSet<&'static str>>,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    degraded: Counter,
    errors: Family<CodeLabels, Counter>,
}

impl RequestMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            routes: Default::default(),
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            degraded: Counter::default(),
            errors: Family::default(),
        };
        registry.register(
            "miroir_gateway_requests",
            "Requests answered, by route template, method and status",
            metrics.requests.clone(),
        );
        registry.register(
            "miroir_gateway_request_duration_seconds",
            "Time to answer a request (until its response starts), by route template",
            metrics.duration.clone(),
        );
        registry.register(
            "miroir_gateway_degraded_answers",
            "Answers carrying X-Miroir-Degraded (shards left out of a read, or a write acknowledged by some groups only)",
            metrics.degraded.clone(),
        );
        registry.register(
            "miroir_gateway_errors",
            "Meilisearch-shaped errors answered, by error code (miroir_no_quorum: writes that reached no quorum)",
            metrics.errors.clone(),
        );
        // Exported at 0 from the start: dashboards graph writes without quorum.
        drop(metrics.errors.get_or_create(&CodeLabels {
            code: "miroir_no_quorum",
        }));
        metrics
    }
}

impl RequestMetrics {
    /// `route` as a label that lives as long as the process.
    fn route(&self, route: &str) -> &'static str {
        if let Some(known) = self
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(route)
        {
            return known;
        }
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = routes.get(route) {
            return known;
        }
        let kept: &'static str = Box::leak(route.to_owned().into_boxed_str());
        routes.insert(kept);
        kept
    }
}

/// A method as a label (methods outside the usual ones as `other`).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Records each matched request.
pub async fn record(
    State(metrics): State<Arc<RequestMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    // Matched routes only: the template is one of the router's.
    let route = metrics.route(
        request
            .extensions()
            .get::<MatchedPath>()
            .map_or("", |p| p.as_str()),
    );
    let method = method_label(request.method());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    metrics
        .duration
        .get_or_create(&RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
    if response.headers().contains_key("x-miroir-degraded") {
        metrics.degraded.inc();
    }
    if let Some(ErrorCodeTag(code)) = response.extensions().get::<ErrorCodeTag>() {
        let _zero = metrics.errors.get_or_create(&CodeLabels { code }).inc();
    }
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status,
        })
        .inc();
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_label_is_kept_once() {
        let metrics = RequestMetrics::register(&mut Registry::default());
        let first = metrics.route("/indexes/{uid}/search");
        let again = metrics.route(&String::from("/indexes/{uid}/search"));
        assert!(std::ptr::eq(first, again));
        assert_eq!(metrics.routes.read().unwrap().len(), 1);
        assert_eq!(method_label(&axum::http::Method::PATCH), "PATCH");
    }
}
