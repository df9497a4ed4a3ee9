//! Prometheus metrics, served as text on their own port, and the gRPC metrics layer.
//!
//! Labels are bounded: gRPC method paths, store operation names, node states and node ids
//! (the fleet's size), never request contents.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    operation: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodCodeLabels {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeResultLabels {
    node: String,
    result: String,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Every metric the control plane exports.
pub struct Metrics {
    registry: Registry,
    store_duration: Family<OperationLabels, Histogram, fn() -> Histogram>,
    store_operations: Family<OutcomeLabels, Counter>,
    grpc_duration: Family<MethodLabels, Histogram, fn() -> Histogram>,
    grpc_requests: Family<MethodCodeLabels, Counter>,
    /// Newest committed topology version.
    pub topology_version: Gauge,
    nodes: Family<StateLabels, Gauge>,
    /// Gateways seen within the gateway TTL.
    pub gateways: Gauge,
    /// Open Watch streams.
    pub watch_streams: Gauge,
    health_checks: Family<NodeResultLabels, Counter>,
    key_repairs: Family<NodeResultLabels, Counter>,
    /// Settings changes committed by the two-phase commit.
    pub settings_commits: Counter,
    /// Settings changes that failed (nothing committed).
    pub settings_failures: Counter,
    /// Nodes whose settings the drift reconciler (or a repair on demand) brought back to
    /// the committed ones.
    pub settings_drift_repairs: Counter,
    /// 1 while this control plane leads.
    pub is_leader: Gauge,
    /// How long each finished shard move held writes in cutover.
    pub move_blocked_seconds: Histogram,
    /// Shard moves finished (done or rolled back).
    pub moves_finished: Counter,
    /// Documents copied by shard moves.
    pub documents_copied: Counter,
    /// Shard moves planned or running (in the topology).
    pub shard_moves: Gauge,
    /// Times this process became the leader.
    pub leadership_acquired: Counter,
    /// Anti-entropy's counts ([`crate::reconcilers::anti_entropy`]).
    pub anti_entropy: AntiEntropyMetrics,
}

/// What anti-entropy passes did.
#[derive(Default)]
pub struct AntiEntropyMetrics {
    /// Passes finished.
    pub passes: Counter,
    /// Shards compared.
    pub shards_checked: Counter,
    /// Documents read from the copies.
    pub documents_compared: Counter,
    /// Documents that still differed once the shard's writes were held.
    pub differences: Counter,
    /// Document copies written or deleted to repair them.
    pub repaired: Counter,
    /// Shards that could not be compared (a node failed, the hold timed out).
    pub shard_errors: Counter,
    /// When the last pass finished, Unix seconds.
    pub last_finished: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let store_duration =
            Family::<OperationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            );
        registry.register(
            "miroir_store_operation_duration_seconds",
            "Time spent in each store operation",
            store_duration.clone(),
        );
        let store_operations = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "miroir_store_operations",
            "Store operations by outcome",
            store_operations.clone(),
        );
        let grpc_duration =
            Family::<MethodLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            );
        registry.register(
            "miroir_grpc_request_duration_seconds",
            "Time to answer each gRPC method (streams: until the response starts)",
            grpc_duration.clone(),
        );
        let grpc_requests = Family::<MethodCodeLabels, Counter>::default();
        registry.register(
            "miroir_grpc_requests",
            "gRPC requests by method and status code",
            grpc_requests.clone(),
        );
        let topology_version = Gauge::default();
        registry.register(
            "miroir_topology_version",
            "Newest committed topology version",
            topology_version.clone(),
        );
        let nodes = Family::<StateLabels, Gauge>::default();
        registry.register("miroir_nodes", "Nodes by state", nodes.clone());
        let gateways = Gauge::default();
        registry.register(
            "miroir_gateways",
            "Gateways seen within the gateway TTL",
            gateways.clone(),
        );
        let watch_streams = Gauge::default();
        registry.register(
            "miroir_watch_streams",
            "Open topology Watch streams",
            watch_streams.clone(),
        );
        let health_checks = Family::<NodeResultLabels, Counter>::default();
        registry.register(
            "miroir_node_health_checks",
            "Node health checks by node and result",
            health_checks.clone(),
        );
        let key_repairs = Family::<NodeResultLabels, Counter>::default();
        registry.register(
            "miroir_node_key_repairs",
            "API keys created, updated or deleted on nodes to match the topology, by node and change",
            key_repairs.clone(),
        );
        let settings_commits = Counter::default();
        registry.register(
            "miroir_settings_commits",
            "Settings changes committed (proposed on every node, verified, committed)",
            settings_commits.clone(),
        );
        let settings_failures = Counter::default();
        registry.register(
            "miroir_settings_failures",
            "Settings changes that failed and committed nothing",
            settings_failures.clone(),
        );
        let settings_drift_repairs = Counter::default();
        registry.register(
            "miroir_settings_drift_repairs",
            "Nodes whose settings were repaired to the committed ones",
            settings_drift_repairs.clone(),
        );
        let is_leader = Gauge::default();
        registry.register(
            "miroir_control_plane_is_leader",
            "1 while this control plane is the leader",
            is_leader.clone(),
        );
        let move_blocked_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "miroir_shard_move_blocked_seconds",
            "Time each shard move held writes to its shard in cutover",
            move_blocked_seconds.clone(),
        );
        let moves_finished = Counter::default();
        registry.register(
            "miroir_shard_moves_finished",
            "Shard moves finished (done or rolled back)",
            moves_finished.clone(),
        );
        let documents_copied = Counter::default();
        registry.register(
            "miroir_shard_move_documents_copied",
            "Documents copied by shard moves",
            documents_copied.clone(),
        );
        let shard_moves = Gauge::default();
        registry.register(
            "miroir_shard_moves_in_progress",
            "Shard moves planned or running",
            shard_moves.clone(),
        );
        let leadership_acquired = Counter::default();
        registry.register(
            "miroir_control_plane_leadership_acquired",
            "Times this control plane became the leader (a leader change, seen by the new leader)",
            leadership_acquired.clone(),
        );
        let anti_entropy = AntiEntropyMetrics::default();
        for (name, help, counter) in [
            (
                "miroir_anti_entropy_passes",
                "Anti-entropy passes finished",
                &anti_entropy.passes,
            ),
            (
                "miroir_anti_entropy_shards_checked",
                "Shards whose copies anti-entropy compared",
                &anti_entropy.shards_checked,
            ),
            (
                "miroir_anti_entropy_documents_compared",
                "Documents anti-entropy read from shard copies",
                &anti_entropy.documents_compared,
            ),
            (
                "miroir_anti_entropy_differences",
                "Documents that differed between a shard's copies (confirmed with the shard's writes held)",
                &anti_entropy.differences,
            ),
            (
                "miroir_anti_entropy_repaired",
                "Document copies anti-entropy wrote or deleted to make a shard's copies equal",
                &anti_entropy.repaired,
            ),
            (
                "miroir_anti_entropy_shard_errors",
                "Shards anti-entropy could not compare (a node failed, the hold timed out)",
                &anti_entropy.shard_errors,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "miroir_anti_entropy_last_pass_finished_timestamp_seconds",
            "When the last anti-entropy pass finished (Unix seconds)",
            anti_entropy.last_finished.clone(),
        );
        Self {
            shard_moves,
            leadership_acquired,
            anti_entropy,
            registry,
            store_duration,
            store_operations,
            grpc_duration,
            grpc_requests,
            topology_version,
            nodes,
            gateways,
            watch_streams,
            health_checks,
            key_repairs,
            settings_commits,
            settings_failures,
            settings_drift_repairs,
            is_leader,
            move_blocked_seconds,
            moves_finished,
            documents_copied,
        }
    }

    /// Records one store operation.
    pub fn observe_store_operation(&self, operation: &'static str, elapsed: Duration, ok: bool) {
        self.store_duration
            .get_or_create(&OperationLabels {
                operation: operation.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
        self.store_operations
            .get_or_create(&OutcomeLabels {
                operation: operation.to_owned(),
                outcome: if ok { "ok" } else { "error" }.to_owned(),
            })
            .inc();
    }

    /// Records one gRPC call.
    pub fn observe_grpc(&self, method: &str, code: &str, elapsed: Duration) {
        self.grpc_duration
            .get_or_create(&MethodLabels {
                method: method.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
        self.grpc_requests
            .get_or_create(&MethodCodeLabels {
                method: method.to_owned(),
                code: code.to_owned(),
            })
            .inc();
    }

    /// Sets the node counts by state.
    pub fn set_node_counts(&self, counts: &[(&str, i64)]) {
        for (state, count) in counts {
            self.nodes
                .get_or_create(&StateLabels {
                    state: (*state).to_owned(),
                })
                .set(*count);
        }
    }

    /// Records one node health check.
    pub fn observe_health_check(&self, node: &str, healthy: bool) {
        self.health_checks
            .get_or_create(&NodeResultLabels {
                node: node.to_owned(),
                result: if healthy { "healthy" } else { "unhealthy" }.to_owned(),
            })
            .inc();
    }

    /// Records what a key sync pass changed on a node.
    pub fn observe_key_repairs(&self, node: &str, created: u32, updated: u32, deleted: u32) {
        for (result, count) in [
            ("created", created),
            ("updated", updated),
            ("deleted", deleted),
        ] {
            self.key_repairs
                .get_or_create(&NodeResultLabels {
                    node: node.to_owned(),
                    result: result.to_owned(),
                })
                .inc_by(u64::from(count));
        }
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A tower layer that times every gRPC call and counts it by status code.
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    metrics: Arc<Metrics>,
}

impl GrpcMetricsLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// See [`GrpcMetricsLayer`].
#[derive(Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcMetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let metrics = self.metrics.clone();
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            // Errors come back "trailers-only", with grpc-status in the headers; a
            // response without it started normally.
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map(|c| format!("{:?}", tonic::Code::from_i32(c)))
                    .unwrap_or_else(|| "Ok".to_owned()),
                Err(_) => "TransportError".to_owned(),
            };
            metrics.observe_grpc(&method, &code, started.elapsed());
            result
        })
    }
}
