//! Forgets gateways that stopped heartbeating for longer than `--gateway-ttl`, so they
//! no longer count as live (nor hold barriers).

use crate::state::ServiceState;
use std::sync::Arc;

/// Runs until the process stops.
pub async fn run(state: Arc<ServiceState>) {
    let ttl = state.config.gateway_ttl;
    let mut interval = tokio::time::interval((ttl / 4).max(std::time::Duration::from_millis(100)));
    loop {
        interval.tick().await;
        for id in state.gateways.expire(ttl) {
            tracing::info!(gateway = %id, ttl = ?ttl, "gateway forgotten after its TTL");
        }
        state.metrics.gateways.set(state.gateways.len() as i64);
    }
}
