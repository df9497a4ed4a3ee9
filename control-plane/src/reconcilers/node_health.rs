//! Node health: checks each node's `GET /health` on an interval. A node becomes `failed`
//! after `--health-failures` consecutive failures, and `active` (from `joining` or
//! `failed`) after `--health-successes` consecutive successes. Each change is committed as
//! a new topology version, so gateways learn of it through Watch.

use crate::state::ServiceState;
use crate::topology::set_node_state;
use miroir_proto::node_client::NodeClient;
use miroir_proto::pb::NodeState;
use std::collections::HashMap;
use std::sync::Arc;
use tracing::Instrument;

/// Consecutive results of one node's checks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HealthStreak {
    successes: u32,
    failures: u32,
}

impl HealthStreak {
    /// Adds one check result.
    pub fn record(&mut self, healthy: bool) {
        if healthy {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
    }
}

/// The state a node should move to, given its streak, or `None` to stay.
pub fn next_state(
    current: NodeState,
    streak: HealthStreak,
    failures: u32,
    successes: u32,
) -> Option<NodeState> {
    match current {
        // A draining node that dies fails like any other, so its drain can be cancelled
        // and the node repaired from surviving copies.
        NodeState::Active | NodeState::Draining if streak.failures >= failures => {
            Some(NodeState::Failed)
        }
        NodeState::Joining | NodeState::Failed if streak.successes >= successes => {
            Some(NodeState::Active)
        }
        _ => None,
    }
}

async fn check(client: &NodeClient, id: &str, address: &str) -> bool {
    match client
        .send_raw(id, address, http::Method::GET, "/health", None)
        .await
    {
        Ok((status, _)) => (200..300).contains(&status),
        Err(_) => false,
    }
}

/// A gateway's report that `node`'s calls fail or hang (passive health): checks the node
/// at once, bounded by `--trouble-check-timeout`, and marks it failed if it does not
/// answer healthy. One check per node at a time; a report on a node being checked, or
/// already failed, changes nothing. The node's state after the check.
pub async fn check_reported(
    state: &Arc<ServiceState>,
    node_id: &str,
    gateway: &str,
    detail: &str,
) -> crate::error::Result<NodeState> {
    let topology = state.topology();
    let node = topology
        .nodes
        .iter()
        .find(|n| n.id == node_id)
        .ok_or_else(|| {
            crate::error::ControlPlaneError::NotFound(format!("node {node_id:?} does not exist"))
        })?
        .clone();
    let current = node.state();
    if !matches!(current, NodeState::Active | NodeState::Draining) {
        return Ok(current);
    }
    {
        let mut checking = state
            .trouble_checks
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !checking.insert(node_id.to_owned()) {
            return Ok(current);
        }
    }
    let healthy = tokio::time::timeout(
        state.config.trouble_check_timeout,
        check(state.nodes.inner(), &node.id, &node.address),
    )
    .await
    .unwrap_or(false);
    state
        .trouble_checks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(node_id);
    state.metrics.observe_health_check(node_id, healthy);
    if healthy {
        tracing::info!(node = %node_id, %gateway, %detail, "reported node answered its check");
        return Ok(current);
    }
    tracing::warn!(node = %node_id, %gateway, %detail, "reported node failed its check: marked failed");
    let reason = format!(
        "node {node_id} {} -> failed (reported by gateway {gateway}: {detail}; no answer to a check within {})",
        current.short_name(),
        humantime::format_duration(state.config.trouble_check_timeout)
    );
    let (after, _) = state
        .commit(|t, now| {
            if t.nodes
                .iter()
                .any(|n| n.id == node_id && n.state == current as i32)
            {
                set_node_state(t, node_id, NodeState::Failed, now);
            }
            let after = t
                .nodes
                .iter()
                .find(|n| n.id == node_id)
                .map_or(NodeState::Removed, |n| n.state());
            Ok((after, reason))
        })
        .await?;
    Ok(after)
}

/// Runs until the process stops.
pub async fn run(state: Arc<ServiceState>) {
    let config = &state.config;
    // The node client's settings (TLS, pools), with the health check's timeout.
    let mut options = state.nodes.inner().options().clone();
    options.timeout = config.health_timeout;
    options.connect_timeout = options.connect_timeout.min(config.health_timeout);
    let client = match NodeClient::new(options) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "node health checks disabled: no HTTP client");
            return;
        }
    };
    let mut streaks: HashMap<String, HealthStreak> = HashMap::new();
    let mut interval = tokio::time::interval(config.health_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        // Only the leader checks (DESIGN §8: a background job runs on one control plane);
        // a new leader starts its streaks afresh.
        if !matches!(
            state.leadership(),
            crate::state::LeadershipStatus::Leader { .. }
        ) {
            streaks.clear();
            continue;
        }
        let topology = state.topology();
        client.retain(|address| topology.nodes.iter().any(|n| n.address == address));
        let checks = topology.nodes.iter().map(|node| {
            let (client, id, address) = (client.clone(), node.id.clone(), node.address.clone());
            let span = tracing::debug_span!("node_health_check", node = %id);
            (
                node.id.clone(),
                async move { check(&client, &id, &address).await }.instrument(span),
            )
        });
        let mut changes = Vec::new();
        // A check that panicked observed nothing: it neither fails nor heals its node.
        for (id, healthy) in miroir_proto::fan_out::join_tagged(checks).await {
            let Ok(healthy) = healthy else { continue };
            state.metrics.observe_health_check(&id, healthy);
            let streak = streaks.entry(id.clone()).or_default();
            streak.record(healthy);
            let current = topology
                .nodes
                .iter()
                .find(|n| n.id == id)
                .and_then(|n| NodeState::try_from(n.state).ok())
                .unwrap_or(NodeState::Unspecified);
            // A node under repair stays failed until the repair removes it: it missed
            // writes while down, and its copies are being rebuilt elsewhere.
            let under_repair = crate::operations::under_repair(&topology, &id);
            if let Some(next) = next_state(
                current,
                *streak,
                config.health_failures,
                config.health_successes,
            )
            .filter(|_| !under_repair)
            {
                changes.push((id, current, next));
            }
        }
        streaks.retain(|id, _| topology.nodes.iter().any(|n| &n.id == id));
        if changes.is_empty() {
            continue;
        }
        let reason = changes
            .iter()
            .map(|(id, from, to)| {
                format!(
                    "node {id} {} -> {} (health checks)",
                    from.short_name(),
                    to.short_name()
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        for (id, from, to) in &changes {
            let level_failed = *to == NodeState::Failed;
            if level_failed {
                tracing::warn!(node = %id, from = from.short_name(), "node failed its health checks");
            } else {
                tracing::info!(node = %id, from = from.short_name(), "node is healthy");
            }
        }
        let result = state
            .commit(|t, now| {
                for (id, from, to) in &changes {
                    // Only if nothing else changed the node since the checks started.
                    if t.nodes
                        .iter()
                        .any(|n| &n.id == id && n.state == *from as i32)
                    {
                        set_node_state(t, id, *to, now);
                    }
                }
                Ok(((), reason))
            })
            .await;
        match result {
            // A node that (re)joins gets the fleet's API keys at once.
            Ok(_) if changes.iter().any(|(_, _, to)| *to == NodeState::Active) => {
                state.key_sync.notify_one();
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "could not commit node health changes; retrying next interval");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_need_consecutive_results() {
        let mut streak = HealthStreak::default();
        for _ in 0..2 {
            streak.record(false);
        }
        assert_eq!(next_state(NodeState::Active, streak, 3, 2), None);
        streak.record(false);
        assert_eq!(
            next_state(NodeState::Active, streak, 3, 2),
            Some(NodeState::Failed)
        );
        streak.record(true);
        assert_eq!(next_state(NodeState::Failed, streak, 3, 2), None);
        streak.record(true);
        assert_eq!(
            next_state(NodeState::Failed, streak, 3, 2),
            Some(NodeState::Active)
        );
        assert_eq!(
            next_state(NodeState::Joining, streak, 3, 2),
            Some(NodeState::Active)
        );
        assert_eq!(next_state(NodeState::Draining, streak, 3, 2), None);
        let dead = HealthStreak {
            failures: 3,
            successes: 0,
        };
        assert_eq!(
            next_state(NodeState::Draining, dead, 3, 2),
            Some(NodeState::Failed)
        );
    }
}
