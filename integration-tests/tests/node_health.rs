//! Node health checks drive node states, each change a new topology version.

use crate::fresh_control_plane;
use miroir_integration_tests::{TestNode, wait_for};
use miroir_proto::pb::{self, NodeState};
use std::time::Duration;

#[tokio::test]
async fn nodes_fail_and_recover_on_consecutive_checks() {
    let (_dir, cp) = fresh_control_plane().await;
    let node = TestNode::start().await;
    let mut admin = cp.admin().await;
    let added = admin
        .add_node(pb::AddNodeRequest {
            id: "meili-0".into(),
            address: node.url.clone(),
            group_id: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(added.node.unwrap().state, NodeState::Joining as i32);

    let state_of = |expected: NodeState| {
        let cp = &cp;
        move || async move {
            let response = cp
                .admin()
                .await
                .get_node(pb::GetNodeRequest {
                    id: "meili-0".into(),
                })
                .await
                .ok()?
                .into_inner();
            (response.node?.state == expected as i32).then_some(response.topology_version)
        }
    };
    let active_at = wait_for(
        "joining node to become active",
        Duration::from_secs(10),
        state_of(NodeState::Active),
    )
    .await;
    assert!(active_at > added.topology_version);

    node.set_faults(serde_json::json!({"down": true})).await;
    let failed_at = wait_for(
        "node to be marked failed",
        Duration::from_secs(10),
        state_of(NodeState::Failed),
    )
    .await;
    assert!(failed_at > active_at);
    let topology = cp
        .topology()
        .await
        .get_topology(pb::GetTopologyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        topology.reason.contains("meili-0 active -> failed"),
        "{}",
        topology.reason
    );

    node.set_faults(serde_json::json!({"down": false})).await;
    let recovered_at = wait_for(
        "node to recover",
        Duration::from_secs(10),
        state_of(NodeState::Active),
    )
    .await;
    assert!(recovered_at > failed_at);
}

#[tokio::test]
async fn a_killed_node_is_marked_failed() {
    let (_dir, cp) = fresh_control_plane().await;
    let mut node = TestNode::start().await;
    cp.admin()
        .await
        .add_node(pb::AddNodeRequest {
            id: "meili-0".into(),
            address: node.url.clone(),
            group_id: 0,
        })
        .await
        .unwrap();
    let state = |expected: NodeState| {
        let cp = &cp;
        move || async move {
            let node = cp
                .admin()
                .await
                .get_node(pb::GetNodeRequest {
                    id: "meili-0".into(),
                })
                .await
                .ok()?
                .into_inner()
                .node?;
            (node.state == expected as i32).then_some(())
        }
    };
    wait_for(
        "node to become active",
        Duration::from_secs(10),
        state(NodeState::Active),
    )
    .await;
    node.kill().await;
    wait_for(
        "killed node to be marked failed",
        Duration::from_secs(10),
        state(NodeState::Failed),
    )
    .await;
}
