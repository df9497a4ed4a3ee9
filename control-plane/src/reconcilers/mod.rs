//! Background loops the leader runs to make the world match the topology.

pub mod feature_sync;
pub mod gateway_expiry;
pub mod key_sync;
pub mod leadership;
pub mod node_health;
pub mod settings;
pub mod shard_moves;

use miroir_proto::pb::{self, NodeState};
use std::future::Future;
use tracing::Instrument;

/// Runs `pass` on every active node of `topology` at once, each in a span naming the pass
/// and the node; the results by node id, as they finish.
pub async fn on_active_nodes<T, F, Fut>(
    topology: &pb::Topology,
    name: &'static str,
    pass: F,
) -> Vec<(String, T)>
where
    F: Fn(pb::Node) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut passes = tokio::task::JoinSet::new();
    for node in topology
        .nodes
        .iter()
        .filter(|n| n.state == NodeState::Active as i32)
    {
        let span = tracing::debug_span!("node_pass", pass = name, node = %node.id);
        let id = node.id.clone();
        let run = pass(node.clone());
        passes.spawn(async move { (id, run.await) }.instrument(span));
    }
    let mut results = Vec::new();
    while let Some(Ok(result)) = passes.join_next().await {
        results.push(result);
    }
    results
}
