//! Forgets gateways that stopped heartbeating for longer than `--gateway-ttl`, so they
//! no longer count as live (nor hold barriers); on Postgres, also shares the gateways this
//! replica hears from with the others through the store, so the leader's barrier counts
//! gateways connected to followers.

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

/// Writes this replica's live gateways to the store every 200 ms (Postgres).
pub async fn share(state: Arc<ServiceState>) {
    let mut interval = tokio::time::interval(std::time::Duration::from_millis(200));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let seen = state
            .gateways
            .seen_within(state.config.gateway_ttl, crate::state::now_ms());
        if let Err(error) = state.store.record_gateways(&seen).await {
            tracing::warn!(%error, "could not share gateway heartbeats through the store");
        }
    }
}
