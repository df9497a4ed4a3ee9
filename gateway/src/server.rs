//! Starts the gateway: topology watcher, HTTP API and metrics.

use crate::config::Config;
use crate::state::GatewayState;
use crate::topology::TopologyHandle;
use crate::topology::watcher::{self, WatcherConfig};
use anyhow::Context;
use miroir_proto::telemetry::{serve_metrics, shutdown_signal};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// A listener on `address` with a `backlog` of its own (the standard library's is 128,
/// which a burst of new clients overflows).
fn listen(address: std::net::SocketAddr, backlog: u32) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match address {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(backlog)
}

/// Runs the gateway until a shutdown signal.
pub async fn run(config: Config) -> anyhow::Result<()> {
    config.validate()?;
    let id: Arc<str> = config.id().into();
    let listener = listen(config.listen, config.listen_backlog)
        .with_context(|| format!("cannot listen on {} (--listen)", config.listen))?;
    let metrics_listener = tokio::net::TcpListener::bind(config.metrics_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (--metrics-listen)",
                config.metrics_listen
            )
        })?;
    let address = listener.local_addr()?;
    let metrics_address = metrics_listener.local_addr()?;

    let topology = Arc::new(TopologyHandle::default());
    tokio::spawn(watcher::run(
        topology.clone(),
        WatcherConfig {
            gateway_id: id.to_string(),
            advertise: address.to_string(),
            control_planes: config.control_plane.clone(),
            connect_timeout: config.control_plane_connect_timeout,
            heartbeat_interval: config.heartbeat_interval,
            write_drain_bound: config.node_timeout + std::time::Duration::from_secs(1),
        },
    ));

    let redis_ca = match &config.redis_ca_file {
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("cannot read --redis-ca-file {}", path.display()))?,
        ),
        None => None,
    };
    let fleet = Arc::new(
        crate::fleet::FleetState::new(
            config.redis_url.as_deref(),
            config.redis_timeout,
            redis_ca,
            config.redis_unavailable_rate_limits,
        )
        .map_err(|e| anyhow::anyhow!("--redis-url: {e}"))?,
    );
    let mut registry = Registry::default();
    let version = Gauge::<i64>::default();
    registry.register(
        "miroir_gateway_topology_version",
        "Topology version this gateway serves",
        version.clone(),
    );
    let lease = Gauge::<i64>::default();
    registry.register(
        "miroir_gateway_lease_valid",
        "1 while the write lease holds",
        lease.clone(),
    );
    registry.register(
        "miroir_gateway_fleet_state_fallbacks",
        "Calls to the fleet state that used this gateway's memory because Redis was unreachable, by operation",
        fleet.fallbacks(),
    );
    let redis_reachable = Gauge::<i64>::default();
    registry.register(
        "miroir_gateway_redis_reachable",
        "1 while the last Redis command succeeded (absent without --redis-url)",
        redis_reachable.clone(),
    );
    let hedges = Arc::new(crate::read::hedge::Hedges::default());
    registry.register(
        "miroir_gateway_hedges_sent",
        "Read calls sent again to another copy of their shards after the first node's recent 95th percentile latency",
        hedges.sent.clone(),
    );
    registry.register(
        "miroir_gateway_hedges_won",
        "Hedged read calls whose answer came first and was used",
        hedges.won.clone(),
    );
    if config.result_cache && fleet.redis().is_none() {
        anyhow::bail!(
            "--result-cache needs --redis-url: without Redis a gateway cannot know of another's writes, and its cache could answer from before them"
        );
    }
    let result_cache = config.result_cache.then(|| {
        let cache = Arc::new(crate::read::cache_store::ResultCache::new(config.result_cache_bytes));
        for (name, help, counter) in [
            ("miroir_gateway_result_cache_hits", "Searches and multi-searches answered from the result cache", &cache.hits),
            ("miroir_gateway_result_cache_misses", "Searches and multi-searches computed and offered to the result cache", &cache.misses),
            ("miroir_gateway_result_cache_bypassed", "Searches and multi-searches computed without the result cache (a write pending on an index, Redis unreachable, performance details asked for)", &cache.bypassed),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "miroir_gateway_result_cache_bytes",
            "Bytes the result cache holds",
            cache.bytes.clone(),
        );
        cache
    });
    let request_metrics = Arc::new(crate::api::request_metrics::RequestMetrics::register(
        &mut registry,
    ));
    let registry = Arc::new(registry);
    let metrics_fleet = fleet.clone();
    let metrics_topology = topology.clone();
    tokio::spawn(serve_metrics(metrics_listener, move || {
        version.set(metrics_topology.current().version as i64);
        lease.set(metrics_topology.lease.is_valid() as i64);
        if let Some(redis) = metrics_fleet.redis() {
            redis_reachable.set(redis.reachable() as i64);
        }
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }));

    let coordination = match fleet.redis() {
        Some(redis) => format!(
            "redis at {} (rate limits fail {:?} while it is unreachable)",
            redis.address(),
            config.redis_unavailable_rate_limits
        )
        .to_lowercase(),
        None => {
            "memory (no Redis: idempotency keys, sessions and rate-limit counters are per gateway)"
                .to_owned()
        }
    };
    tracing::info!(
        id = %id,
        http = %address,
        metrics = %metrics_address,
        control_planes = %config.control_plane.join(","),
        fleet_state = %coordination,
        result_cache = if config.result_cache { "on" } else { "off" },
        threads = config.worker_threads(),
        max_connections = config.max_connections,
        "miroir gateway started"
    );
    if config.replicas > 1 && !fleet.is_shared() {
        tracing::warn!(
            replicas = config.replicas,
            "several gateways without --redis-url: an Idempotency-Key and an X-Miroir-Session \
             hold on the gateway that saw them only, and rate limits are divided by the live \
             gateway count; set MIROIR_REDIS_URL to share them"
        );
    }
    let control_plane = Arc::new(crate::control_plane::ControlPlaneClient::new(
        &config.control_plane,
        config.control_plane_connect_timeout,
        config.control_plane_timeout,
    ));
    let nodes = crate::nodes::NodeClient::new(
        config
            .node_client
            .options(&config.master_key, config.node_timeout)?,
    )?;
    tokio::spawn(forget_removed_nodes(topology.clone(), nodes.clone()));
    let live_gateways = Arc::new(std::sync::atomic::AtomicU64::new(1));
    if !fleet.is_shared() && (config.rate_limit_per_key > 0 || config.rate_limit_per_ip > 0) {
        tokio::spawn(count_live_gateways(
            control_plane.clone(),
            live_gateways.clone(),
        ));
    }
    let state = Arc::new(GatewayState {
        config: Arc::new(config),
        id,
        topology,
        control_plane,
        nodes,
        keys: Arc::default(),
        index_settings: Arc::default(),
        fleet,
        live_gateways,
        trouble: Arc::default(),
        loads: Arc::default(),
        hedges,
        result_cache,
        request_metrics,
    });
    if state.result_cache.is_some() {
        tokio::spawn(crate::read::cache::sweep(state.clone()));
    }
    tokio::spawn(crate::nodes::trouble::watch_silent_nodes(state.clone()));
    let sweep_interval = state.config.task_sweep_interval;
    if !sweep_interval.is_zero() {
        tokio::spawn(crate::tasks::outcomes::sweep_task_outcomes(
            state.clone(),
            sweep_interval,
        ));
    }
    let limits = crate::http_server::ConnectionLimits {
        max_connections: state.config.max_connections,
        idle_timeout: state.config.client_idle_timeout,
        shutdown_grace: state.config.shutdown_grace,
    };
    let app = crate::api::router(state);
    crate::http_server::serve(listener, app, limits, shutdown_signal()).await;
    tracing::info!("miroir gateway stopped");
    Ok(())
}

/// Drops the connection pools of nodes that left the topology, as versions arrive.
async fn forget_removed_nodes(topology: Arc<TopologyHandle>, nodes: crate::nodes::NodeClient) {
    let mut version = 0;
    loop {
        let current = topology.current();
        if current.version != version {
            version = current.version;
            nodes.retain(|address| current.nodes.iter().any(|n| n.address == address));
        }
        topology
            .wait_for_newer(
                version,
                tokio::time::Instant::now() + std::time::Duration::from_secs(3600),
            )
            .await;
    }
}

/// Keeps `live` at the number of gateways the control plane reports (at least 1), every
/// 5 s: without shared state each gateway allows its share of a rate limit.
async fn count_live_gateways(
    control_plane: Arc<crate::control_plane::ControlPlaneClient>,
    live: Arc<std::sync::atomic::AtomicU64>,
) {
    loop {
        match control_plane
            .get_cluster_status(miroir_proto::pb::GetClusterStatusRequest {})
            .await
        {
            Ok(status) => live.store(
                (status.gateways.len() as u64).max(1),
                std::sync::atomic::Ordering::Relaxed,
            ),
            Err(error) => tracing::warn!(%error, "cannot count live gateways for rate limits"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    }
}
