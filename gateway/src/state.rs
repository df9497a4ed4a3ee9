//! What every HTTP handler shares.

use crate::config::Config;
use crate::control_plane::ControlPlaneClient;
use crate::nodes::NodeClient;
use crate::topology::TopologyHandle;
use std::sync::Arc;

/// What every handler shares: one allocation, so the per-request clones that axum's
/// middleware makes cost one atomic increment each.
pub type AppState = Arc<GatewayState>;

/// The gateway's shared state.
pub struct GatewayState {
    /// Flags the process started with.
    pub config: Arc<Config>,
    /// This gateway's id.
    pub id: Arc<str>,
    /// The topology it serves from.
    pub topology: Arc<TopologyHandle>,
    /// gRPC calls to the control plane.
    pub control_plane: Arc<ControlPlaneClient>,
    /// HTTP calls to nodes.
    pub nodes: NodeClient,
    /// API key values of the served topology, for authentication.
    pub keys: Arc<crate::key_cache::KeyCache>,
    /// Each index's settings as clients read them (the merge needs some of them).
    pub index_settings: Arc<SettingsCache>,
    /// Idempotency keys, sessions and rate-limit counters (Redis or memory).
    pub fleet: Arc<crate::fleet::FleetState>,
    /// Live gateways as the control plane last reported them (divides rate limits when
    /// the fleet state is not shared).
    pub live_gateways: Arc<std::sync::atomic::AtomicU64>,
    /// Nodes this gateway reported to the control plane, and when (passive health).
    pub trouble: Arc<crate::nodes::reports::TroubleReports>,
    /// Each node's calls in flight and latencies, as this gateway's calls see them.
    pub loads: Arc<crate::nodes::load::NodeLoads>,
    /// Hedged reads' budget and counts.
    pub hedges: Arc<crate::read::hedge::Hedges>,
    /// Per-route request metrics.
    pub request_metrics: Arc<crate::api::request_metrics::RequestMetrics>,
    /// The result cache, when `--result-cache` is on.
    pub result_cache: Option<Arc<crate::read::cache_store::ResultCache>>,
}

/// index uid → (settings version, read at, settings). Committed versions come from the
/// topology and are kept until the version changes; version 0 (none committed yet) was
/// read from a node and is kept a second.
pub type SettingsCache = std::sync::Mutex<
    std::collections::HashMap<
        String,
        (
            u64,
            std::time::Instant,
            Arc<serde_json::Map<String, serde_json::Value>>,
        ),
    >,
>;

#[cfg(test)]
impl GatewayState {
    /// A gateway serving `topology`, with default flags, memory fleet state and a control
    /// plane nobody listens at: for unit tests of stages that call nodes.
    pub fn for_tests(topology: miroir_proto::pb::Topology) -> AppState {
        use clap::Parser;
        let config = Config::parse_from([
            "miroir-gateway",
            "--master-key",
            "unit-test-master-key",
            // The control plane of a test gateway listens nowhere.
            "--task-attach-wait",
            "300ms",
        ]);
        let handle = Arc::new(TopologyHandle::default());
        handle.apply(topology);
        let nodes = NodeClient::new(
            config
                .node_client
                .options(&config.master_key, config.node_timeout)
                .expect("node client options"),
        )
        .expect("node client");
        let fleet = crate::fleet::FleetState::new(
            None,
            config.redis_timeout,
            None,
            config.redis_unavailable_rate_limits,
        )
        .expect("memory fleet state");
        Arc::new(Self {
            control_plane: Arc::new(ControlPlaneClient::new(
                &["http://127.0.0.1:1".to_owned()],
                std::time::Duration::from_millis(100),
                std::time::Duration::from_millis(100),
            )),
            config: Arc::new(config),
            id: "unit-test".into(),
            topology: handle,
            nodes,
            keys: Arc::default(),
            index_settings: Arc::default(),
            fleet: Arc::new(fleet),
            live_gateways: Arc::new(std::sync::atomic::AtomicU64::new(1)),
            trouble: Arc::default(),
            loads: Arc::default(),
            hedges: Arc::default(),
            result_cache: None,
            request_metrics: Arc::new(crate::api::request_metrics::RequestMetrics::register(
                &mut prometheus_client::registry::Registry::default(),
            )),
        })
    }
}
