//! Node health checks drive node states, each change a new topology version.

use crate::fresh_control_plane;
use miroir_integration_tests::TestNode;
use miroir_proto::pb::NodeState;

#[tokio::test]
async fn nodes_fail_and_recover_on_consecutive_checks() {
    let (_dir, cp) = fresh_control_plane().await;
    let mut node = TestNode::start().await;
    let added = cp.add_node("meili-0", &node.url, 0).await.unwrap();
    assert_eq!(added.node.unwrap().state, NodeState::Joining as i32);

    let active_at = cp.wait_node_state("meili-0", NodeState::Active).await;
    assert!(active_at > added.topology_version);

    node.down().await;
    let failed_at = cp.wait_node_state("meili-0", NodeState::Failed).await;
    assert!(failed_at > active_at);
    let topology = cp.current_topology().await;
    assert!(
        topology.reason.contains("meili-0 active -> failed"),
        "{}",
        topology.reason
    );

    node.up().await;
    let recovered_at = cp.wait_node_state("meili-0", NodeState::Active).await;
    assert!(recovered_at > failed_at);
}

#[tokio::test]
async fn a_killed_node_is_marked_failed() {
    let (_dir, cp) = fresh_control_plane().await;
    let mut node = TestNode::start().await;
    cp.add_node("meili-0", &node.url, 0).await.unwrap();
    cp.wait_node_state("meili-0", NodeState::Active).await;
    node.kill().await;
    cp.wait_node_state("meili-0", NodeState::Failed).await;
}
