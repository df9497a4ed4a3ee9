//! `miroir-ctl` against a real control plane.

use crate::fresh_control_plane;
use miroir_integration_tests::{ctl, free_port};
use miroir_proto::pb;

#[tokio::test]
async fn ctl_manages_nodes_groups_and_shows_status() {
    let (_dir, cp) = fresh_control_plane().await;
    let url = cp.url();
    let out = ctl(
        &url,
        &[
            "node",
            "add",
            "--id",
            "meili-0",
            "--address",
            "http://127.0.0.1:7701",
            "--group",
            "0",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("node meili-0 added"), "{}", out.stdout);
    for (id, port, group) in [("meili-1", "7702", "0"), ("meili-2", "7703", "1")] {
        let out = ctl(
            &url,
            &[
                "node",
                "add",
                "--id",
                id,
                "--address",
                &format!("http://127.0.0.1:{port}"),
                "--group",
                group,
            ],
        )
        .await;
        assert_eq!(out.code, 0, "{}", out.stderr);
    }

    let out = ctl(&url, &["node", "list", "--output", "json"]).await;
    let nodes: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(nodes.as_array().unwrap().len(), 3);
    assert_eq!(nodes[0]["id"], "meili-0");
    assert_eq!(nodes[0]["state"], "joining");
    assert_eq!(nodes[2]["group"], 1);

    let out = ctl(&url, &["node", "list"]).await;
    assert!(out.stdout.starts_with("ID"), "{}", out.stdout);
    assert!(
        out.stdout.contains("meili-2  1      joining"),
        "{}",
        out.stdout
    );

    let out = ctl(&url, &["group", "list", "-o", "json"]).await;
    let groups: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        groups[0]["nodes"],
        serde_json::json!(["meili-0", "meili-1"])
    );
    let out = ctl(&url, &["group", "add", "-o", "json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let group: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(group["id"], 2);

    // An index, so routing shows and changes that would move copies are refused.
    let empty_group = cp.create_index("movies", 4, 1).await.unwrap_err();
    assert_eq!(empty_group.code(), tonic::Code::FailedPrecondition);
    cp.admin()
        .await
        .remove_group(pb::RemoveGroupRequest { id: 2 })
        .await
        .unwrap();
    cp.create_index("movies", 4, 1).await.unwrap();
    let out = ctl(&url, &["index", "list", "-o", "json"]).await;
    let indexes: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(indexes[0]["uid"], "movies");
    assert_eq!(indexes[0]["shard_count"], 4);
    let out = ctl(&url, &["index", "show", "movies", "-o", "json"]).await;
    let index: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(index["routing"].as_array().unwrap().len(), 2);
    assert_eq!(index["routing"][0]["shards"].as_array().unwrap().len(), 4);
    let out = ctl(&url, &["index", "show", "movies"]).await;
    assert!(out.stdout.contains("routing, group 0:"), "{}", out.stdout);
    assert!(out.stdout.contains("SHARD  READ"), "{}", out.stdout);

    let out = ctl(&url, &["node", "repair", "meili-0"]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .starts_with("error: FAILED_PRECONDITION: node \"meili-0\" has not failed"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);

    let out = ctl(&url, &["status", "-o", "json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let status: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(status["leader"]["id"], format!("cp-{}", cp.grpc.port()));
    assert!(status["topology_version"].as_u64().unwrap() >= 6);
    assert_eq!(status["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(status["indexes"][0]["uid"], "movies");
    assert!(status["store"].as_str().unwrap().starts_with("sqlite://"));
    let out = ctl(&url, &["status"]).await;
    for section in [
        "leader:",
        "store:",
        "topology:",
        "nodes (3):",
        "groups (2):",
        "gateways (0):",
        "indexes (1):",
    ] {
        assert!(
            out.stdout.contains(section),
            "missing {section} in {}",
            out.stdout
        );
    }

    // Removing a whole group that the other covers works through the CLI too.
    let out = ctl(&url, &["group", "remove", "1"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("group 1 removed with 1 node(s): meili-2"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn ctl_fails_over_between_control_planes_and_reports_errors_in_one_line() {
    let (_dir, cp) = fresh_control_plane().await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let both = format!("{dead},{}", cp.url());
    let out = ctl(&both, &["status", "-o", "json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);

    let out = ctl(&dead, &["status"]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.starts_with("error: no control plane reachable"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1);

    let out = ctl(&cp.url(), &["node", "remove", "ghost"]).await;
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        "error: NOT_FOUND: node \"ghost\" does not exist"
    );

    let out = ctl(
        &cp.url(),
        &["node", "add", "--id", "a", "--address", "nope"],
    )
    .await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .starts_with("error: INVALID_ARGUMENT: invalid node address"),
        "{}",
        out.stderr
    );

    let out = ctl(&cp.url(), &["node", "frobnicate"]).await;
    assert_eq!(out.code, 2);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

/// `miroir-ctl wait-applied` (the barrier over gRPC, `AwaitApplied`): returns once every
/// live gateway serves the version; a version not committed yet is refused.
#[tokio::test]
async fn ctl_waits_for_every_gateway_to_apply_a_version() {
    let (_dir, cp, _nodes, gateway) = crate::gateway_indexes::fleet(1).await;
    let version = cp.current_topology().await.version;
    let out = ctl(&cp.url(), &["wait-applied"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        format!("every live gateway serves topology version {version}")
    );
    let out = ctl(
        &cp.url(),
        &[
            "--output",
            "json",
            "wait-applied",
            "--version",
            &version.to_string(),
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let answer: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        answer,
        serde_json::json!({"version": version, "lagging": []})
    );
    let out = ctl(
        &cp.url(),
        &["wait-applied", "--version", &(version + 100).to_string()],
    )
    .await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("is not committed"), "{}", out.stderr);
    // The gateway named in the control plane's view is the one that applied it.
    let status = gateway.status().await;
    assert!(
        status["topologyVersion"].as_u64().unwrap() >= version,
        "{status}"
    );
}
