//! Background loops the leader runs to make the world match the topology.

pub mod anti_entropy;
pub mod catch_up;
pub mod feature_sync;
pub mod gateway_expiry;
pub mod key_sync;
pub mod leadership;
pub mod node_health;
pub mod settings;
pub mod shard_moves;
pub mod task_reservations;

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
    let passes = topology
        .nodes
        .iter()
        .filter(|n| n.state == NodeState::Active as i32)
        .map(|node| {
            let span = tracing::debug_span!("node_pass", pass = name, node = %node.id);
            (node.id.clone(), pass(node.clone()).instrument(span))
        });
    // A pass that panicked is logged by `join_tagged` and left out: it changed nothing
    // this round, and the next round runs it again.
    miroir_proto::fan_out::join_tagged(passes)
        .await
        .into_iter()
        .filter_map(|(id, result)| Some((id, result.ok()?)))
        .collect()
}
