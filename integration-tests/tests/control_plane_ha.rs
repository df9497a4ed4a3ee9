//! A replicated control plane on real Postgres (issue 5): boots that race, leader election,
//! failover after `kill -9`, and fencing of a leader frozen past its lease.

use miroir_integration_tests::{
    ControlPlane, ControlPlaneOptions, Gateway, Meili, Postgres, TestNode, ctl, wait_for,
};
use miroir_proto::pb;
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};

fn options(lease_ttl: &str) -> ControlPlaneOptions {
    let mut options = ControlPlaneOptions::default();
    options
        .extra_args
        .extend(["--replicas", "3", "--leader-lease-ttl", lease_ttl].map(String::from));
    options
}

async fn leader_info(cp: &ControlPlane) -> Option<pb::LeaderInfo> {
    let mut admin = pb::admin_service_client::AdminServiceClient::new(
        tonic::transport::Channel::from_shared(cp.url())
            .ok()?
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(2))
            .connect()
            .await
            .ok()?,
    );
    admin
        .get_leader(pb::GetLeaderRequest {})
        .await
        .ok()
        .map(|r| r.into_inner())
}

/// Index of the replica that says it leads, once exactly one does.
async fn the_leader(cps: &[&ControlPlane]) -> (usize, pb::LeaderInfo) {
    wait_for("exactly one leader", Duration::from_secs(30), || async {
        let mut leaders = Vec::new();
        for (i, cp) in cps.iter().enumerate() {
            if let Some(info) = leader_info(cp).await
                && info.is_self
            {
                leaders.push((i, info));
            }
        }
        (leaders.len() == 1).then(|| leaders.remove(0))
    })
    .await
}

#[tokio::test]
async fn three_replicas_boot_together_migrate_once_and_follow_one_leader() {
    let postgres = Postgres::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let options = options("2s");
    let (a, b, c) = tokio::join!(
        ControlPlane::start(dir.path(), &postgres.url, &options),
        ControlPlane::start(dir.path(), &postgres.url, &options),
        ControlPlane::start(dir.path(), &postgres.url, &options),
    );
    let ledger = postgres
        .psql("SELECT count(*), count(DISTINCT version) FROM _sqlx_migrations")
        .await
        .unwrap_or_default();
    let (rows, versions) = ledger.split_once('|').unwrap_or_default();
    assert!(
        rows == versions && rows.parse::<u32>().is_ok_and(|n| n >= 1),
        "each migration was applied once: {ledger}"
    );
    let cps = [&a, &b, &c];
    let (leader, info) = the_leader(&cps).await;
    assert_eq!(info.coordination, "postgres");
    for cp in cps {
        let seen = leader_info(cp).await.expect("answers");
        assert_eq!(
            seen.leader_id, info.leader_id,
            "every replica names the same leader"
        );
        assert_eq!(seen.fencing_token, info.fencing_token);
    }

    // `miroir-ctl status` shows every replica, its role and the leader's token.
    let shown = wait_for(
        "ctl to list three control planes",
        Duration::from_secs(10),
        || async {
            let out = ctl(&c.url(), &["status"]).await;
            out.stdout
                .contains("control planes (3)")
                .then_some(out.stdout)
        },
    )
    .await;
    let rows: Vec<&str> = shown.lines().filter(|l| l.starts_with("cp-")).collect();
    assert_eq!(rows.len(), 3, "{shown}");
    let leaders: Vec<&&str> = rows.iter().filter(|l| l.contains(" leader ")).collect();
    assert_eq!(leaders.len(), 1, "{shown}");
    assert!(leaders[0].contains(&info.leader_id), "{shown}");
    assert!(
        leaders[0].contains(&format!(" {} ", info.fencing_token)),
        "{shown}"
    );

    // A commit on the leader reaches the followers (NOTIFY), which serve it.
    cps[leader]
        .add_node("meili-0", "http://127.0.0.1:1", 0)
        .await
        .expect("AddNode on the leader");
    let version = cps[leader].current_topology().await.version;
    for cp in cps {
        wait_for(
            "followers to serve the commit",
            Duration::from_secs(10),
            || async { (cp.current_topology().await.version == version).then_some(()) },
        )
        .await;
    }
    // A follower forwards a mutation to the leader, which commits it.
    let follower = cps[(leader + 1) % 3];
    let added = follower
        .add_node("meili-1", "http://127.0.0.1:2", 0)
        .await
        .expect("AddNode through a follower");
    let committed = cps[leader].current_topology().await;
    assert_eq!(committed.version, added.topology_version);
    assert!(committed.nodes.iter().any(|n| n.id == "meili-1"));
}

#[tokio::test]
async fn a_killed_leader_is_replaced_within_the_lease_and_gateways_carry_on() {
    let postgres = Postgres::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let options = options("2s");
    let mut cps = Vec::new();
    for _ in 0..3 {
        cps.push(ControlPlane::start(dir.path(), &postgres.url, &options).await);
    }
    let (leader, info) = the_leader(&cps.iter().collect::<Vec<_>>()).await;
    let node = TestNode::start().await;
    cps[leader]
        .add_node("meili-0", &node.url, 0)
        .await
        .expect("AddNode");
    cps[leader]
        .wait_node_state("meili-0", pb::NodeState::Active)
        .await;
    let addresses = cps.iter().map(|cp| cp.url()).collect::<Vec<_>>().join(",");
    let gateway = Gateway::start(dir.path(), &addresses, &[]).await;
    gateway
        .wait_version(cps[leader].current_topology().await.version)
        .await;
    gateway.wait_writable().await;
    let meili = Meili::new(&gateway.url);
    meili.create_index("books").await;
    meili
        .ok(
            Method::POST,
            "/indexes/books/documents",
            json!([{"id": 1, "title": "Dune"}]),
        )
        .await;

    let killed_at = Instant::now();
    cps[leader].kill().await;
    let survivors: Vec<&ControlPlane> = cps
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, cp)| cp)
        .collect();
    // Reads go on from the gateway's snapshot while no replica leads.
    let (status, found) = meili.get("/indexes/books/documents/1").await;
    assert_eq!((status, found["title"].as_str()), (200, Some("Dune")));
    let (_, new_info) = the_leader(&survivors).await;
    let took = killed_at.elapsed();
    println!(
        "new leader {} after {:?} (lease TTL 2 s)",
        new_info.leader_id, took
    );
    assert_ne!(new_info.leader_id, info.leader_id);
    assert!(new_info.fencing_token > info.fencing_token);
    // The lease was last renewed before the kill, so it expires within one TTL of it.
    assert!(took < Duration::from_millis(2000 + 500), "took {took:?}");

    // Writes resume through the same gateway.
    meili
        .ok(
            Method::POST,
            "/indexes/books/documents",
            json!([{"id": 2, "title": "Emma"}]),
        )
        .await;
    let (status, found) = meili.get("/indexes/books/documents/2").await;
    assert_eq!((status, found["title"].as_str()), (200, Some("Emma")));
}

#[tokio::test]
async fn a_leader_frozen_past_its_lease_cannot_commit() {
    let postgres = Postgres::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let options = options("1s");
    let a = ControlPlane::start(dir.path(), &postgres.url, &options).await;
    let b = ControlPlane::start(dir.path(), &postgres.url, &options).await;
    let cps = [&a, &b];
    let (leader, info) = the_leader(&cps).await;
    let frozen = cps[leader];
    let pid = frozen.pid().expect("pid").to_string();
    let signal = |name: &'static str, pid: String| async move {
        let status = tokio::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .await
            .expect("kill");
        assert!(status.success());
    };
    // Connected before it freezes (a frozen process cannot finish an HTTP/2 handshake).
    let mut admin = frozen.admin().await;
    signal("-STOP", pid.clone()).await;
    let other = cps[1 - leader];
    wait_for(
        "the other replica to take the lease",
        Duration::from_secs(20),
        || async { leader_info(other).await.filter(|i| i.is_self).map(|_| ()) },
    )
    .await;
    let versions_before = postgres
        .psql("SELECT count(*) FROM topology_versions")
        .await;
    // A write is sent to it while it is frozen, marked as already forwarded so that it
    // must run there: it races the process's own lease renewal when it wakes, and either
    // way must not land (fenced by the store, or refused once it knows it follows).
    let attempt = tokio::spawn(async move {
        let mut request = tonic::Request::new(pb::AddNodeRequest {
            id: "fenced".into(),
            address: "http://127.0.0.1:3".into(),
            group_id: 0,
        });
        request.metadata_mut().insert(
            "x-miroir-forwarded",
            tonic::metadata::MetadataValue::from_static("1"),
        );
        admin.add_node(request).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal("-CONT", pid).await;
    let attempt = attempt.await.expect("join");
    let error = attempt.expect_err("a deposed leader cannot commit");
    println!(
        "the deposed leader's write failed with {:?}: {}",
        error.code(),
        error.message()
    );
    assert!(
        matches!(
            error.code(),
            tonic::Code::Aborted | tonic::Code::Unavailable
        ),
        "{error:?}"
    );
    assert_eq!(
        postgres
            .psql("SELECT count(*) FROM topology_versions")
            .await,
        versions_before,
        "the database is unchanged"
    );
    let topology = other.current_topology().await;
    assert!(topology.nodes.iter().all(|n| n.id != "fenced"));
    assert!(
        leader_info(other)
            .await
            .is_some_and(|i| i.fencing_token > info.fencing_token)
    );
}

#[tokio::test]
async fn gateways_connected_to_a_follower_hold_the_leaders_barrier() {
    let postgres = Postgres::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let options = options("2s");
    let a = ControlPlane::start(dir.path(), &postgres.url, &options).await;
    let b = ControlPlane::start(dir.path(), &postgres.url, &options).await;
    let cps = [&a, &b];
    let (leader, _) = the_leader(&cps).await;
    let follower = cps[1 - leader];
    let node = TestNode::start().await;
    follower
        .add_node("meili-0", &node.url, 0)
        .await
        .expect("AddNode, forwarded");
    cps[leader]
        .wait_node_state("meili-0", pb::NodeState::Active)
        .await;
    // This gateway knows only the follower: the leader hears of it through the store.
    let gateway = Gateway::start(dir.path(), &follower.url(), &[]).await;
    gateway.wait_writable().await;
    let gateway_id = gateway.status().await["gatewayId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    wait_for(
        "the follower to share the gateway",
        Duration::from_secs(10),
        || async {
            postgres
                .psql(&format!(
                    "SELECT count(*) FROM gateways WHERE id = '{gateway_id}'"
                ))
                .await
                .filter(|n| n == "1")
        },
    )
    .await;
    let meili = Meili::new(&gateway.url);
    meili.create_index("books").await;
    // The settings task succeeds only once every live gateway applied the commit, so the
    // very next response of this gateway shows the new version.
    meili
        .ok(
            Method::PUT,
            "/indexes/books/settings/stop-words",
            json!(["the"]),
        )
        .await;
    let version = cps[leader].index("books").await.settings_version;
    assert!(version >= 2, "version {version}");
    let response = reqwest::Client::new()
        .get(format!("{}/indexes/books/settings/stop-words", gateway.url))
        .bearer_auth(miroir_integration_tests::MASTER_KEY)
        .send()
        .await
        .expect("request");
    assert_eq!(
        response
            .headers()
            .get("x-miroir-settings-version")
            .and_then(|v| v.to_str().ok()),
        Some(version.to_string().as_str())
    );
    assert_eq!(
        response.json::<serde_json::Value>().await.ok(),
        Some(json!(["the"]))
    );
    let applied = postgres
        .psql(&format!(
            "SELECT applied_version FROM gateways WHERE id = '{gateway_id}'"
        ))
        .await
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_default();
    assert!(
        applied >= cps[leader].current_topology().await.version - 1,
        "applied {applied}"
    );

    // A rename (forwarded to the leader) renames the recorded tasks in Postgres too.
    let added = meili
        .ok(Method::POST, "/indexes/books/documents", json!([{"id": 1}]))
        .await;
    meili
        .ok(Method::PATCH, "/indexes/books", json!({"uid": "volumes"}))
        .await;
    let (_, earlier) = meili.get(&format!("/tasks/{}", added["uid"])).await;
    assert_eq!(earlier["indexUid"], "volumes", "{earlier}");
    let renamed = postgres
        .psql("SELECT count(*) FROM tasks WHERE index_uid = 'volumes'")
        .await;
    assert_eq!(
        renamed.as_deref(),
        Some("3"),
        "creation, settings, documents"
    );
}

#[tokio::test]
async fn a_settings_change_in_flight_survives_a_leader_kill() {
    let postgres = Postgres::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut options = options("2s");
    options
        .extra_args
        .extend(["--node-timeout", "2s"].map(String::from));
    let mut cps = Vec::new();
    for _ in 0..2 {
        cps.push(ControlPlane::start(dir.path(), &postgres.url, &options).await);
    }
    let (leader, _) = the_leader(&cps.iter().collect::<Vec<_>>()).await;
    // The test node: slow settings calls are an injected fault.
    let node = TestNode::start_test_node().await;
    cps[leader]
        .add_node("meili-0", &node.url, 0)
        .await
        .expect("AddNode");
    cps[leader]
        .wait_node_state("meili-0", pb::NodeState::Active)
        .await;
    let addresses = cps.iter().map(|cp| cp.url()).collect::<Vec<_>>().join(",");
    let gateway = Gateway::start(dir.path(), &addresses, &[]).await;
    gateway.wait_writable().await;
    let meili = Meili::new(&gateway.url);
    meili.create_index("books").await;
    wait_for("settings version 1", Duration::from_secs(20), || async {
        (cps[leader].index("books").await.settings_version == 1).then_some(())
    })
    .await;
    // Slow settings calls keep the change between propose and commit.
    node.set_faults(json!({"settingsLatencyMs": 700})).await;
    let (status, enqueued) = meili
        .json(
            Method::PUT,
            "/indexes/books/settings/ranking-rules",
            json!(["words", "typo"]),
        )
        .await;
    assert_eq!(status, 202, "{enqueued}");
    wait_for(
        "the change to be proposed",
        Duration::from_secs(10),
        || async {
            cps[leader]
                .index("books")
                .await
                .pending_settings
                .map(|_| ())
        },
    )
    .await;
    cps[leader].kill().await;
    let survivor = &cps[1 - leader];
    the_leader(&[survivor]).await;
    // The new leader finds the change in the store and the pending mark in the topology,
    // proposes it again and commits it; the client's task succeeds.
    let task = meili.wait_task(&enqueued).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    let index = survivor.index("books").await;
    assert_eq!(index.settings_version, 2);
    assert!(index.pending_settings.is_none());
    let (_, rules) = Meili::new(&node.url)
        .get("/indexes/books/settings/ranking-rules")
        .await;
    assert_eq!(rules, json!(["words", "typo"]));
}
