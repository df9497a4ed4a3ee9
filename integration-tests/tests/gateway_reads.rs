//! Reads when nodes fail: replicas cover for each other; shards with no live replica are
//! named in X-Miroir-Degraded.

use crate::gateway_indexes::fleet;
use miroir_integration_tests::Meili;
use miroir_proto::pb::NodeState;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn a_failed_replica_is_covered_and_a_lost_shard_is_reported() {
    let (_dir, cp, mut nodes, gateway) = fleet(3).await;
    let meili = Meili::new(&gateway.url);
    meili.ok(Method::POST, "/indexes", json!({"uid": "rf2", "primaryKey": "id", "miroirShardCount": 8, "miroirReplicationFactor": 2})).await;
    meili.ok(Method::POST, "/indexes", json!({"uid": "rf1", "primaryKey": "id", "miroirShardCount": 8, "miroirReplicationFactor": 1})).await;
    gateway
        .wait_version(cp.current_topology().await.version)
        .await;
    let documents: Vec<_> = (0..50)
        .map(|i| json!({"id": i, "title": format!("doc {i}")}))
        .collect();
    meili
        .ok(Method::POST, "/indexes/rf2/documents", json!(documents))
        .await;
    meili
        .ok(Method::POST, "/indexes/rf1/documents", json!(documents))
        .await;

    nodes[2].kill().await;
    let failed_at = cp.wait_node_state("meili-2", NodeState::Failed).await;
    gateway.wait_version(failed_at).await;

    let response = reqwest::Client::new()
        .post(format!("{}/indexes/rf2/search", gateway.url))
        .bearer_auth(miroir_integration_tests::MASTER_KEY)
        .json(&json!({"limit": 100}))
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("x-miroir-degraded").is_none());
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body["estimatedTotalHits"], 50,
        "RF 2 covers the failed node"
    );
    assert_eq!(body["hits"].as_array().unwrap().len(), 50);

    let response = reqwest::Client::new()
        .post(format!("{}/indexes/rf1/search", gateway.url))
        .bearer_auth(miroir_integration_tests::MASTER_KEY)
        .json(&json!({"limit": 100}))
        .send()
        .await
        .unwrap();
    let degraded = response
        .headers()
        .get("x-miroir-degraded")
        .expect("degraded header")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(degraded.starts_with("shards=rf1/"), "{degraded}");
    let lost = cp
        .current_topology()
        .await
        .indexes
        .iter()
        .find(|i| i.uid == "rf1")
        .unwrap()
        .routing[0]
        .shards
        .iter()
        .filter(|s| s.read_nodes == ["meili-2"])
        .count();
    assert_eq!(degraded.matches("rf1/").count(), lost);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["estimatedTotalHits"].as_u64().unwrap() < 50);
}
