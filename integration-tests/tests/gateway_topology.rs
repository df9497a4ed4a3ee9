//! The gateway follows the topology: Watch, acknowledgements, readiness, failover between
//! control planes, and serving from its last snapshot when none is reachable.

use crate::{fresh_control_plane, fresh_control_plane_with};
use miroir_integration_tests::{
    ControlPlaneOptions, Gateway, Meili, TestNode, free_port, wait_for,
};
use miroir_proto::pb::NodeState;
use std::time::Duration;

#[tokio::test]
async fn the_gateway_applies_and_acknowledges_every_version() {
    let (dir, cp) = fresh_control_plane().await;
    let gateway = Gateway::start(dir.path(), &cp.url(), &[]).await;
    gateway
        .wait_version(cp.current_topology().await.version)
        .await;
    let status = gateway.status().await;
    assert_eq!(status["controlPlane"]["connected"], true);
    assert_eq!(status["controlPlane"]["address"], cp.url());
    assert_eq!(status["coordination"]["mode"], "memory");
    let id = status["gatewayId"].as_str().unwrap().to_owned();

    let added = cp
        .add_node("meili-0", "http://127.0.0.1:9", 0)
        .await
        .unwrap();
    gateway.wait_version(added.topology_version).await;
    // The control plane sees the acknowledgement: no lag.
    wait_for(
        "the control plane to record the gateway's applied version",
        Duration::from_secs(10),
        || async {
            let status = cp.status().await;
            let gw = status.gateways.iter().find(|g| g.id == id)?;
            (gw.applied_version == added.topology_version && gw.lag == 0 && gw.connected)
                .then_some(())
        },
    )
    .await;
    // Heartbeats keep the write lease.
    wait_for("the lease", Duration::from_secs(10), || async {
        (gateway.status().await["lease"]["valid"] == true).then_some(())
    })
    .await;

    let health: serde_json::Value = reqwest::get(format!("{}/health", gateway.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health, serde_json::json!({"status": "available"}));
    let unknown = reqwest::get(format!("{}/no/such/route", gateway.url))
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    // Like Meilisearch (no default service in its actix app): a bare 404.
    assert!(unknown.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn ready_only_with_a_full_covering_set() {
    let (dir, cp) = fresh_control_plane().await;
    let mut node = TestNode::start().await;
    let gateway = Gateway::start(dir.path(), &cp.url(), &[]).await;
    cp.add_node("meili-0", &node.url, 0).await.unwrap();
    cp.wait_node_state("meili-0", NodeState::Active).await;
    let index = cp.create_index("movies", 4, 1).await.unwrap();
    assert_eq!(index.shard_count, 4);
    let ready = |expected: u16| {
        let url = format!("{}/_miroir/ready", gateway.url);
        move || {
            let url = url.clone();
            async move { (reqwest::get(&url).await.ok()?.status() == expected).then_some(()) }
        }
    };
    wait_for("ready", Duration::from_secs(10), ready(200)).await;

    node.down().await;
    cp.wait_node_state("meili-0", NodeState::Failed).await;
    wait_for(
        "not ready once the only node failed",
        Duration::from_secs(10),
        ready(503),
    )
    .await;
    let body: serde_json::Value = reqwest::get(format!("{}/_miroir/ready", gateway.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["code"], "miroir_not_ready");
    assert!(
        body["message"].as_str().unwrap().contains("movies/0"),
        "{body}"
    );
    assert_eq!(
        gateway.status().await["uncoveredShards"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    node.up().await;
    wait_for("ready again", Duration::from_secs(10), ready(200)).await;
}

/// Issue 21, 2a: on a fleet whose nodes all still join, the gateway is not ready; an index
/// created and filled then is placed on those nodes, and once its tasks report
/// `succeeded`, every gateway finds every document (the SDKs' "wait for the task, then
/// search"). Before, reads skipped joining nodes: 0 hits until they turned active.
#[tokio::test]
async fn writes_to_joining_nodes_are_found_once_their_task_succeeded() {
    let mut options = ControlPlaneOptions::default();
    // So many checks to pass that the nodes stay joining throughout.
    options
        .extra_args
        .extend(["--health-successes".into(), "100000".into()]);
    let (dir, cp) = fresh_control_plane_with(options).await;
    let mut nodes = Vec::new();
    for i in 0..3 {
        let node = TestNode::start().await;
        cp.add_node(&format!("meili-{i}"), &node.url, 0)
            .await
            .unwrap();
        nodes.push(node);
    }
    let gateways = [
        Gateway::start(dir.path(), &cp.url(), &[]).await,
        Gateway::start(dir.path(), &cp.url(), &[]).await,
    ];
    for gateway in &gateways {
        gateway
            .wait_version(cp.current_topology().await.version)
            .await;
        gateway.wait_writable().await;
        let ready = reqwest::get(format!("{}/_miroir/ready", gateway.url))
            .await
            .unwrap();
        assert_eq!(ready.status(), 503);
        let body: serde_json::Value = ready.json().await.unwrap();
        assert_eq!(body["code"], "miroir_not_ready");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("no node has passed its health checks yet (meili-0 joining"),
            "{body}"
        );
    }
    let meili = Meili::new(&gateways[0].url);
    meili
        .ok(
            reqwest::Method::POST,
            "/indexes",
            serde_json::json!({"uid": "early", "primaryKey": "id", "miroirShardCount": 16}),
        )
        .await;
    let documents: Vec<_> = (0..300)
        .map(|i| serde_json::json!({"id": i, "title": format!("book {i}")}))
        .collect();
    meili
        .ok(
            reqwest::Method::POST,
            "/indexes/early/documents",
            serde_json::json!(documents),
        )
        .await;
    let topology = cp.current_topology().await;
    assert!(
        topology
            .nodes
            .iter()
            .all(|n| n.state() == NodeState::Joining),
        "the nodes were to be joining still"
    );
    for gateway in &gateways {
        gateway.wait_version(topology.version).await;
        let (status, found) = Meili::new(&gateway.url)
            .post("/indexes/early/search", serde_json::json!({"q": "book"}))
            .await;
        assert_eq!(status, 200, "{found}");
        assert_eq!(found["estimatedTotalHits"], 300, "{found}");
        let (_, stats) = Meili::new(&gateway.url).get("/indexes/early/stats").await;
        assert_eq!(stats["numberOfDocuments"], 300, "{stats}");
    }
}

#[tokio::test]
async fn the_gateway_fails_over_and_serves_from_its_last_snapshot_when_cut_off() {
    let mut options = ControlPlaneOptions::default();
    options
        .extra_args
        .extend(["--gateway-lease-ttl".into(), "1s".into()]);
    let (dir, mut cp) = fresh_control_plane_with(options).await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let gateway = Gateway::start(
        dir.path(),
        &format!("{dead},{}", cp.url()),
        &["--heartbeat-interval", "100ms"],
    )
    .await;
    cp.add_node("meili-0", "http://127.0.0.1:9", 0)
        .await
        .unwrap();
    let version = cp.current_topology().await.version;
    gateway.wait_version(version).await;
    assert_eq!(gateway.status().await["controlPlane"]["address"], cp.url());
    wait_for("the lease", Duration::from_secs(10), || async {
        (gateway.status().await["lease"]["valid"] == true).then_some(())
    })
    .await;

    cp.kill().await;
    wait_for("the gateway to notice", Duration::from_secs(10), || async {
        (gateway.status().await["controlPlane"]["connected"] == false).then_some(())
    })
    .await;
    // Static stability: still answering, from the last snapshot; the lease lapses.
    let status = gateway.status().await;
    assert_eq!(status["topologyVersion"], version);
    assert!(status["controlPlane"]["lastError"].is_string());
    wait_for("the lease to lapse", Duration::from_secs(10), || async {
        (gateway.status().await["lease"]["valid"] == false).then_some(())
    })
    .await;
    assert_eq!(
        reqwest::get(format!("{}/health", gateway.url))
            .await
            .unwrap()
            .status(),
        200
    );
}

/// DESIGN §3: a gateway cut off from every control plane refuses writes once its lease
/// lapsed (503, `Retry-After`), keeps answering reads, and writes again once reconnected.
#[tokio::test]
async fn writes_wait_for_the_lease_while_reads_go_on() {
    let mut options = ControlPlaneOptions::default();
    options
        .extra_args
        .extend(["--gateway-lease-ttl".into(), "1s".into()]);
    let (dir, mut cp) = fresh_control_plane_with(options.clone()).await;
    let node = TestNode::start().await;
    cp.add_node("meili-0", &node.url, 0).await.unwrap();
    cp.wait_node_state("meili-0", NodeState::Active).await;
    let gateway = Gateway::start(dir.path(), &cp.url(), &["--heartbeat-interval", "100ms"]).await;
    gateway.wait_writable().await;
    let meili = miroir_integration_tests::Meili::new(&gateway.url);
    meili
        .ok(
            reqwest::Method::POST,
            "/indexes",
            serde_json::json!({"uid": "books", "primaryKey": "id"}),
        )
        .await;
    meili
        .ok(
            reqwest::Method::POST,
            "/indexes/books/documents",
            serde_json::json!([{"id": 1, "title": "Dune"}]),
        )
        .await;

    cp.kill().await;
    wait_for("the lease to lapse", Duration::from_secs(10), || async {
        (gateway.status().await["lease"]["valid"] == false).then_some(())
    })
    .await;
    let refused = reqwest::Client::new()
        .post(format!("{}/indexes/books/documents", gateway.url))
        .bearer_auth(miroir_integration_tests::MASTER_KEY)
        .json(&serde_json::json!([{"id": 2, "title": "Emma"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let error: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(error["code"], "miroir_lease_expired", "{error}");
    let (status, found) = meili.get("/indexes/books/documents/1").await;
    assert_eq!((status, found["title"].as_str()), (200, Some("Dune")));

    cp.restart(dir.path(), &options).await;
    gateway.wait_writable().await;
    meili
        .ok(
            reqwest::Method::POST,
            "/indexes/books/documents",
            serde_json::json!([{"id": 2, "title": "Emma"}]),
        )
        .await;
}

/// Production guard: several gateways without Redis are told, at startup, what holds per
/// gateway only; with Redis the startup line names it.
#[tokio::test]
async fn the_startup_line_names_the_fleet_state_and_warns_without_redis() {
    let (dir, cp) = fresh_control_plane().await;
    let alone = Gateway::start(dir.path(), &cp.url(), &["--replicas", "3"]).await;
    let redis = miroir_integration_tests::RedisServer::start().await;
    let shared = Gateway::start(
        dir.path(),
        &cp.url(),
        &["--replicas", "3", "--redis-url", &redis.url],
    )
    .await;
    // The log without its colour codes.
    let log = |gateway: &Gateway| {
        let raw = std::fs::read_to_string(&gateway.log).unwrap_or_default();
        let mut plain = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                chars.by_ref().find(|&c| c == 'm');
            } else {
                plain.push(c);
            }
        }
        plain
    };
    wait_for("both startup lines", Duration::from_secs(10), || async {
        (log(&alone).contains("miroir gateway started")
            && log(&shared).contains("miroir gateway started"))
        .then_some(())
    })
    .await;
    let alone_log = log(&alone);
    assert!(alone_log.contains("fleet_state=memory"), "{alone_log}");
    assert!(
        alone_log.contains("WARN") && alone_log.contains("Idempotency-Key and an X-Miroir-Session"),
        "{alone_log}"
    );
    let shared_log = log(&shared);
    assert!(
        shared_log.contains("fleet_state=redis at redis://127.0.0.1:"),
        "{shared_log}"
    );
    assert!(!shared_log.contains("WARN"), "{shared_log}");
    assert_eq!(shared.status().await["coordination"]["mode"], "redis");
}
