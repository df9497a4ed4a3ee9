//! Continuous anti-entropy on real Meilisearch nodes: copies changed out of band are
//! repaired within one pass, by majority, while writes flow through a gateway.

use miroir_integration_tests::{ControlPlaneOptions, Meili, ctl};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;

const INDEX: &str = "ae";

/// Every document of the index on one node, by id (`_miroir_shard` kept: it is part of
/// what must be equal).
async fn documents_on(node: &Meili) -> BTreeMap<String, Value> {
    node.documents_by_id(INDEX).await
}

/// `miroir-ctl anti-entropy run --wait -o json`: the finished pass.
async fn run_pass(cp: &str) -> Value {
    let out = ctl(cp, &["anti-entropy", "run", "--wait", "-o", "json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(&out.stdout).expect("a pass as JSON")
}

/// Three copies of every shard (three groups of one node); one node has a document
/// edited, one a document deleted, one a document added, each directly on the node. One
/// pass puts every copy back to the majority's, while a client writes through the
/// gateway; a second pass finds nothing. The scheduled pass and the metrics too.
#[tokio::test]
async fn copies_changed_out_of_band_are_repaired_within_one_pass() {
    let options = ControlPlaneOptions {
        extra_args: ["--anti-entropy-interval", "0s"].map(String::from).to_vec(),
        ..Default::default()
    };
    let (_dir, cp, nodes, gateway) =
        crate::gateway_indexes::fleet_in_groups(&[0, 1, 2], options).await;
    let meili = Meili::new(&gateway.url);
    meili
        .ok(
            Method::POST,
            "/indexes",
            json!({"uid": INDEX, "primaryKey": "id", "miroirShardCount": 4}),
        )
        .await;
    let documents: Vec<Value> = (0..300)
        .map(|i| json!({"id": i, "title": format!("document {i}"), "n": i}))
        .collect();
    meili
        .ok(
            Method::POST,
            &format!("/indexes/{INDEX}/documents"),
            json!(documents),
        )
        .await;
    let nodes: Vec<Meili> = nodes.iter().map(|n| Meili::new(&n.url)).collect();
    let before = documents_on(&nodes[0]).await;
    assert_eq!(before.len(), 300);
    for node in &nodes[1..] {
        assert_eq!(documents_on(node).await, before);
    }

    // Out of band: an edit on the first copy (the one a tie would trust), a delete on
    // the second, an addition (a copy of document 8 under a new id, in its shard) on the
    // third.
    nodes[0]
        .ok(
            Method::PUT,
            &format!("/indexes/{INDEX}/documents"),
            json!([{"id": 5, "title": "edited behind Miroir's back"}]),
        )
        .await;
    let (status, deleted) = nodes[1]
        .delete(&format!("/indexes/{INDEX}/documents/7"))
        .await;
    assert_eq!(status, 202, "{deleted}");
    assert_eq!(nodes[1].wait_task(&deleted).await["status"], "succeeded");
    let mut stray = before["8"].clone();
    stray["id"] = json!(100_000);
    nodes[2]
        .ok(
            Method::POST,
            &format!("/indexes/{INDEX}/documents"),
            json!([stray]),
        )
        .await;
    assert_ne!(documents_on(&nodes[0]).await, before);

    // A client keeps writing new documents through the gateway during the pass: they
    // are no difference, and none is lost.
    let writer = {
        let gateway = Meili::new(&gateway.url);
        tokio::spawn(async move {
            let mut written = Vec::new();
            for i in 1000..1040 {
                let (status, task) = gateway
                    .post(
                        &format!("/indexes/{INDEX}/documents"),
                        json!([{"id": i, "title": format!("new {i}"), "n": i}]),
                    )
                    .await;
                assert_eq!(status, 202, "{task}");
                written.push(task);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            written
        })
    };
    let pass = run_pass(&cp.url()).await;
    for task in writer.await.expect("writer") {
        let task = meili.wait_task(&task).await;
        assert_eq!(task["status"], "succeeded", "{task}");
    }
    assert_eq!(pass["differences"], 3, "{pass}");
    assert_eq!(pass["repaired"], 3, "{pass}");
    assert_eq!(pass["shards_checked"], 4, "{pass}");
    assert_eq!(pass["errors"], json!([]), "{pass}");

    let mut expected = before.clone();
    for i in 1000..1040 {
        let (_, document) = nodes[0]
            .get(&format!("/indexes/{INDEX}/documents/{i}"))
            .await;
        expected.insert(i.to_string(), document);
    }
    for (n, node) in nodes.iter().enumerate() {
        let held = documents_on(node).await;
        assert_eq!(held.len(), expected.len(), "node {n}");
        assert!(held == expected, "node {n} differs after the pass");
    }
    assert_eq!(expected["5"]["title"], "document 5");

    // Nothing left to repair.
    let again = run_pass(&cp.url()).await;
    assert_eq!(
        (again["differences"].as_u64(), again["repaired"].as_u64()),
        (Some(0), Some(0)),
        "{again}"
    );
    assert!(
        again["documents_compared"].as_u64() >= Some(3 * 340),
        "{again}"
    );

    for (name, want) in [
        ("miroir_anti_entropy_passes_total", 2),
        ("miroir_anti_entropy_repaired_total", 3),
        ("miroir_anti_entropy_differences_total", 3),
        ("miroir_anti_entropy_shards_checked_total", 8),
    ] {
        assert_eq!(cp.counter(name).await, Some(want), "{name}");
    }
    assert!(
        cp.counter("miroir_anti_entropy_documents_compared_total")
            .await
            >= Some(2 * 3 * 300)
    );
    let status = ctl(&cp.url(), &["anti-entropy", "status"]).await;
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status.stdout.contains("passes only when asked")
            && status
                .stdout
                .contains("2 passes, 3 documents differed, 3 repaired"),
        "{}",
        status.stdout
    );
}
