//! Logs and traces for the server binaries.
//!
//! Logs go to stderr (text, or JSON with `--log-format json`), filtered by `RUST_LOG`
//! (default `info`). When `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans are exported over
//! OTLP/gRPC and W3C trace context (`traceparent`) is read from and written to requests.
//!
//! Spans on the request path (target [`REQUEST_TARGET`]) go to OTLP but not into log
//! lines unless `RUST_LOG` names that target: a log layer formats every field of every
//! span it sees when the span opens, which cost about 7 % of the gateway's CPU per search
//! for context no log line used. Without OTLP they are then not even created.

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// The target of the spans opened per request and per node call.
pub const REQUEST_TARGET: &str = "miroir::request";

/// `RUST_LOG`'s directives, `info` when unset or empty.
fn directives(rust_log: Option<&str>) -> &str {
    match rust_log.map(str::trim) {
        Some(directives) if !directives.is_empty() => directives,
        _ => "info",
    }
}

/// The log filter: `RUST_LOG` (default `info`), without the request spans unless it
/// names them.
fn log_filter(rust_log: Option<&str>) -> EnvFilter {
    let directives = directives(rust_log);
    let mut filter = EnvFilter::builder().parse_lossy(directives);
    if !directives.contains(REQUEST_TARGET)
        && let Ok(off) = format!("{REQUEST_TARGET}=off").parse()
    {
        filter = filter.add_directive(off);
    }
    filter
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for production log pipelines).
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format {other:?}: expected text or json"
            )),
        }
    }
}

/// Flushes exported spans when dropped.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// True when spans are exported over OTLP.
    pub fn otlp_enabled(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// A server binary's life: sets up logging and OTLP, runs `service`, and turns its
/// outcome into the exit code (an error is logged, or printed when logging could not start).
pub async fn run_service(
    service_name: &'static str,
    format: LogFormat,
    service: impl std::future::Future<Output = anyhow::Result<()>>,
) -> std::process::ExitCode {
    let _telemetry = match init(service_name, format) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("error: cannot set up logging: {error:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match service.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Installs the global subscriber: log lines, and OTLP export when configured.
pub fn init(service_name: &'static str, format: LogFormat) -> anyhow::Result<TelemetryGuard> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let endpoint_set = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .map(|v| !v.trim().is_empty())
        .unwrap_or(false);
    let provider = if endpoint_set {
        // The exporter reads OTEL_EXPORTER_OTLP_ENDPOINT (and the other OTEL_* variables).
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(service_name)
            .build();
        Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build(),
        )
    } else {
        None
    };
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let tracer = provider
        .as_ref()
        .map(|provider| provider.tracer(service_name));
    tracing_subscriber::registry()
        .with(layers(rust_log.as_deref(), format, tracer))
        .try_init()?;
    Ok(TelemetryGuard { provider })
}

/// The subscriber's layers: log lines, and spans to `tracer` when OTLP is configured.
/// Without a tracer there is no OpenTelemetry layer at all (not an absent `Option` layer,
/// which tracing-subscriber counts as interested in every span): the request spans are
/// then disabled, never created.
fn layers(
    rust_log: Option<&str>,
    format: LogFormat,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
) -> Vec<Box<dyn Layer<Registry> + Send + Sync>> {
    let fmt_layer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(log_filter(rust_log))
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(log_filter(rust_log))
            .boxed(),
    };
    let mut layers = vec![fmt_layer];
    if let Some(tracer) = tracer {
        let filter = EnvFilter::builder().parse_lossy(directives(rust_log));
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(filter)
                .boxed(),
        );
    }
    layers
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Makes `span` a child of the W3C trace context carried by `headers`, if any.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if span.is_disabled() {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    let _ = span.set_parent(parent);
}

/// Writes the current span's W3C trace context (`traceparent`) into `headers`.
pub fn inject_current_context(headers: &mut http::HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let span = tracing::Span::current();
    if span.is_disabled() {
        return;
    }
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers))
    });
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// Serves `GET /metrics` (Prometheus text from `encode`) on `listener` until a shutdown
/// signal.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    encode: impl Fn() -> String + Clone + Send + Sync + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let encode = encode.clone();
            async move {
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    encode(),
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a request span and another span are enabled under the subscriber `init`
    /// builds (without OTLP) for `rust_log`.
    fn request_span_logged(rust_log: Option<&str>) -> (bool, bool) {
        spans_enabled(rust_log, None)
    }

    fn spans_enabled(
        rust_log: Option<&str>,
        tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
    ) -> (bool, bool) {
        let subscriber =
            tracing_subscriber::registry().with(layers(rust_log, LogFormat::Text, tracer));
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!(target: REQUEST_TARGET, "http_request");
            let other = tracing::info_span!("watch_session");
            (!request.is_disabled(), !other.is_disabled())
        })
    }

    #[test]
    fn request_spans_stay_out_of_logs_unless_named() {
        assert_eq!(request_span_logged(None), (false, true));
        assert_eq!(request_span_logged(Some("info")), (false, true));
        assert_eq!(request_span_logged(Some("warn")), (false, false));
        assert_eq!(
            request_span_logged(Some("info,miroir::request=info")),
            (true, true)
        );
    }

    #[test]
    fn request_spans_exist_only_for_otlp() {
        let tracer = SdkTracerProvider::builder().build().tracer("test");
        assert_eq!(spans_enabled(None, Some(tracer)), (true, true));
        assert_eq!(spans_enabled(None, None), (false, true));
    }
}
