//! Shard-routed writes through the gateway.

use crate::gateway_indexes::fleet;
use miroir_integration_tests::Meili;
use miroir_proto::pb::NodeState;
use miroir_proto::placement::shard_for_key;
use reqwest::Method;
use serde_json::json;
use std::collections::BTreeMap;

#[tokio::test]
async fn documents_land_on_their_shard_owners_once_per_replica() {
    let (_dir, cp, nodes, gateway) = fleet(3).await;
    let meili = Meili::new(&gateway.url);
    meili.ok(Method::POST, "/indexes", json!({"uid": "movies", "primaryKey": "id", "miroirShardCount": 8, "miroirReplicationFactor": 2})).await;
    gateway
        .wait_version(cp.current_topology().await.version)
        .await;
    let documents: Vec<_> = (0..40)
        .map(|i| json!({"id": i, "title": format!("movie {i}")}))
        .collect();
    let task = meili
        .ok(Method::POST, "/indexes/movies/documents", json!(documents))
        .await;
    assert_eq!(
        task["details"],
        json!({"receivedDocuments": 40, "indexedDocuments": 40})
    );

    let index = cp.current_topology().await.indexes[0].clone();
    let node_url: BTreeMap<String, String> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("meili-{i}"), n.url.clone()))
        .collect();
    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    for (node_id, url) in &node_url {
        let (_, page) = Meili::new(url)
            .post("/indexes/movies/documents/fetch", json!({"limit": 1000}))
            .await;
        for document in page["results"].as_array().unwrap() {
            let id = document["id"].to_string();
            let shard = shard_for_key(&id, 8).0;
            assert_eq!(
                document["_miroir_shard"],
                miroir_proto::settings::shard_tag(shard),
                "stamped with its shard"
            );
            let owners = &index.routing[0].shards[shard as usize].write_nodes;
            assert!(
                owners.contains(node_id),
                "document {id} on {node_id}, owners {owners:?}"
            );
            *copies.entry(id).or_default() += 1;
        }
    }
    assert_eq!(copies.len(), 40);
    assert!(
        copies.values().all(|&c| c == 2),
        "RF 2: two copies each: {copies:?}"
    );

    let (status, error) = meili
        .post(
            "/indexes/movies/documents",
            json!([{"id": 1, "_miroir_shard": 3}]),
        )
        .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("miroir_reserved_field"))
    );
    let (_, enqueued) = meili
        .post(
            "/indexes/movies/documents",
            json!([{"id": 1}, {"id": "bad id"}]),
        )
        .await;
    let task = meili.wait_task(&enqueued).await;
    assert_eq!(
        (task["status"].as_str(), task["error"]["code"].as_str()),
        (Some("failed"), Some("invalid_document_id"))
    );

    // Writing to a missing index creates it, with an inferred primary key.
    let task = meili
        .ok(
            Method::POST,
            "/indexes/books/documents",
            json!([{"book_id": "a1", "title": "x"}]),
        )
        .await;
    assert_eq!(task["indexUid"], "books");
    let (_, enqueued) = meili
        .post("/indexes/notes/documents", json!([{"title": "no id"}]))
        .await;
    assert_eq!(
        meili.wait_task(&enqueued).await["error"]["code"],
        "index_primary_key_no_candidate_found"
    );
    // An empty batch has nothing to infer from: it succeeds and the key stays unset, as
    // on Meilisearch; the next batch's first document then names it.
    let (_, enqueued) = meili.post("/indexes/empty/documents", json!([])).await;
    let done = meili.wait_task(&enqueued).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["details"]["receivedDocuments"], 0, "{done}");
    assert_eq!(done["details"]["indexedDocuments"], 0, "{done}");
    let (_, index) = meili.get("/indexes/empty").await;
    assert!(index["primaryKey"].is_null(), "{index}");
    meili
        .ok(
            Method::POST,
            "/indexes/empty/documents",
            json!([{"ref_id": 7, "title": "x"}]),
        )
        .await;
    let (_, index) = meili.get("/indexes/empty").await;
    assert_eq!(index["primaryKey"], "ref_id", "{index}");
}

#[tokio::test]
async fn a_shard_without_quorum_is_not_acknowledged() {
    let (_dir, cp, mut nodes, gateway) = fleet(2).await;
    let meili = Meili::new(&gateway.url);
    meili
        .ok(
            Method::POST,
            "/indexes",
            json!({"uid": "movies", "primaryKey": "id", "miroirShardCount": 4}),
        )
        .await;
    gateway
        .wait_version(cp.current_topology().await.version)
        .await;
    nodes[1].kill().await;
    let documents: Vec<_> = (0..20).map(|i| json!({"id": i})).collect();
    let (status, error) = meili
        .post("/indexes/movies/documents", json!(documents))
        .await;
    assert_eq!(status, 503, "{error}");
    assert_eq!(error["code"], "miroir_no_quorum");
    assert_eq!(error["type"], "system");
}

#[tokio::test]
async fn csv_and_ndjson_writes_read_like_meilisearch() {
    let (dir, cp, _nodes, gateway) = crate::gateway_indexes::fleet(2).await;
    let meili = Meili::new(&gateway.url);
    let csv = "sku;title;price:number;sold:boolean\na1;\"Chair; oak\";49.5;true\na2;Lamp;;false\n";
    let (status, enqueued) = meili
        .send(
            Method::POST,
            "/indexes/shop/documents?csvDelimiter=%3B&primaryKey=sku",
            Some("text/csv"),
            Some(csv.as_bytes().to_vec()),
        )
        .await;
    assert_eq!(status, 202, "{enqueued}");
    let task = meili.wait_task(&enqueued).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["details"]["receivedDocuments"], 2);
    let (_, chair) = meili.get("/indexes/shop/documents/a1").await;
    assert_eq!(
        chair,
        json!({"sku": "a1", "title": "Chair; oak", "price": 49.5, "sold": true})
    );
    let (_, lamp) = meili.get("/indexes/shop/documents/a2").await;
    assert_eq!(lamp["price"], serde_json::Value::Null);

    let ndjson = "{\"sku\": \"a3\", \"title\": \"Desk\"}\n\n{\"sku\": \"a4\"}\n";
    let (status, enqueued) = meili
        .send(
            Method::PUT,
            "/indexes/shop/documents",
            Some("application/x-ndjson"),
            Some(ndjson.as_bytes().to_vec()),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(meili.wait_task(&enqueued).await["status"], "succeeded");
    let (_, all) = meili.get("/indexes/shop/documents?limit=10").await;
    assert_eq!(all["total"], 4);

    let (status, error) = meili
        .send(
            Method::POST,
            "/indexes/shop/documents?csvDelimiter=ab",
            Some("text/csv"),
            Some(b"sku\nx\n".to_vec()),
        )
        .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("invalid_document_csv_delimiter"))
    );
    let (status, error) = meili
        .send(
            Method::POST,
            "/indexes/shop/documents?csvDelimiter=%3B",
            Some("application/json"),
            Some(b"[]".to_vec()),
        )
        .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (415, Some("invalid_document_csv_delimiter"))
    );
    let (status, error) = meili
        .send(
            Method::POST,
            "/indexes/shop/documents",
            Some("text/csv"),
            Some(b"sku,price:number\nx,cheap\n".to_vec()),
        )
        .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("malformed_payload")),
        "{error}"
    );

    // Bodies past the limit get Meilisearch's 413, declared length or not.
    let small = miroir_integration_tests::Gateway::start(
        dir.path(),
        &cp.url(),
        &["--payload-size-limit", "1024"],
    )
    .await;
    small.wait_writable().await;
    let big: Vec<serde_json::Value> = (0..100)
        .map(|i| json!({"sku": format!("b{i}"), "title": "x".repeat(20)}))
        .collect();
    let (status, error) = Meili::new(&small.url)
        .post("/indexes/shop/documents", json!(big))
        .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (413, Some("payload_too_large")),
        "{error}"
    );
    assert_eq!(error["type"], "invalid_request");
}

/// Two groups, RF 1, one node of group 1 failed: writes and deletes of every kind reach
/// quorum in group 0, are acknowledged with the shards group 1 missed named in
/// `X-Miroir-Degraded`, and their tasks succeed; reads of those shards come from group 0.
#[tokio::test]
async fn writes_missing_one_group_are_acknowledged_degraded_and_reads_use_the_other() {
    let (_dir, cp, mut nodes, gateway) = crate::gateway_indexes::fleet_in_groups(
        &[0, 0, 1, 1],
        miroir_integration_tests::ControlPlaneOptions::default(),
    )
    .await;
    let meili = Meili::new(&gateway.url);
    meili.ok(Method::POST, "/indexes", json!({"uid": "books", "primaryKey": "id", "miroirShardCount": 8, "miroirReplicationFactor": 1})).await;
    meili
        .ok(
            Method::PATCH,
            "/indexes/books/settings",
            json!({"filterableAttributes": ["year"]}),
        )
        .await;
    nodes[3].kill().await;
    let failed_at = cp.wait_node_state("meili-3", NodeState::Failed).await;
    gateway.wait_version(failed_at).await;
    let routing = cp.index("books").await.routing;
    let lost: Vec<u32> = routing
        .iter()
        .find(|r| r.group_id == 1)
        .unwrap()
        .shards
        .iter()
        .filter(|s| s.read_nodes == ["meili-3"])
        .map(|s| s.shard)
        .collect();
    assert!(!lost.is_empty(), "meili-3 owns shards in group 1");
    let expected = |shards: &[u32]| {
        let named: Vec<String> = shards
            .iter()
            .map(|s| format!("books/group1/shard{s}"))
            .collect();
        format!("quorum={}", named.join(","))
    };

    let documents: Vec<_> = (0..60)
        .map(|i| json!({"id": i, "year": 2000 + i % 3}))
        .collect();
    let (status, header, task) = meili
        .degraded(
            Method::POST,
            "/indexes/books/documents",
            Some(json!(documents)),
        )
        .await;
    assert_eq!(status, 202, "{task}");
    assert_eq!(
        header,
        Some(expected(&lost)),
        "the write names what group 1 missed"
    );
    assert_eq!(meili.wait_task(&task).await["status"], "succeeded");

    // Every document is read, from group 0 where group 1 lost its owner.
    for _ in 0..4 {
        let (status, header, body) = meili
            .degraded(
                Method::POST,
                "/indexes/books/search",
                Some(json!({"limit": 100})),
            )
            .await;
        assert_eq!((status, header), (200, None), "{body}");
        assert_eq!(body["estimatedTotalHits"], 60);
    }

    let lost_id = (0..60)
        .find(|i| lost.contains(&shard_for_key(&i.to_string(), 8).0))
        .unwrap();
    let (status, header, task) = meili
        .degraded(
            Method::DELETE,
            &format!("/indexes/books/documents/{lost_id}"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{task}");
    let shard = shard_for_key(&lost_id.to_string(), 8).0;
    assert_eq!(header, Some(expected(&[shard])));
    let done = meili.wait_task(&task).await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["details"]["deletedDocuments"], 1, "{done}");

    let (status, header, task) = meili
        .degraded(
            Method::POST,
            "/indexes/books/documents/delete",
            Some(json!({"filter": "year = 2000"})),
        )
        .await;
    assert_eq!(status, 202, "{task}");
    assert_eq!(header, Some(expected(&lost)), "a delete by filter too");
    let done = meili.wait_task(&task).await;
    assert_eq!(done["status"], "succeeded");
    let by_filter = (0..60)
        .filter(|i| *i != lost_id && 2000 + i % 3 == 2000)
        .count();
    assert_eq!(done["details"]["deletedDocuments"], by_filter, "{done}");
    let (_, _, body) = meili
        .degraded(
            Method::POST,
            "/indexes/books/search",
            Some(json!({"limit": 100})),
        )
        .await;
    let remaining = (0..60)
        .filter(|i| *i != lost_id && 2000 + i % 3 != 2000)
        .count();
    assert_eq!(body["estimatedTotalHits"], remaining);

    let (status, header, task) = meili
        .degraded(Method::DELETE, "/indexes/books/documents", None)
        .await;
    assert_eq!(status, 202, "{task}");
    assert_eq!(header, Some(expected(&lost)), "and a delete of all");
    let done = meili.wait_task(&task).await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["details"]["deletedDocuments"], remaining, "{done}");
}

/// Issue 21, point 3: `customMetadata` on document writes and deletes shows, last, in the
/// 202 answer and the task (not on other routes, as in Meilisearch 1.50), and
/// `skipCreation` updates only documents that exist — through the gateway as on one node.
#[tokio::test]
async fn custom_metadata_and_skip_creation_as_on_one_node() {
    let (_dir, cp, _nodes, gateway) = fleet(3).await;
    let single = miroir_integration_tests::TestNode::start().await;
    if !single.real {
        eprintln!(
            "custom_metadata_and_skip_creation_as_on_one_node: SKIPPED, needs MEILISEARCH_BIN"
        );
        return;
    }
    let (meili, reference) = (Meili::new(&gateway.url), Meili::new(&single.url));
    let mut seen = Vec::new();
    for target in [&meili, &reference] {
        target.create_index("meta").await;
        if target.url == meili.url {
            gateway
                .wait_version(cp.current_topology().await.version)
                .await;
        }
        let documents: Vec<_> = (0..10).map(|i| json!({"id": i, "a": i})).collect();
        let writes = [
            (
                Method::POST,
                "/indexes/meta/documents?customMetadata=first%20load",
                json!(documents),
            ),
            (
                Method::POST,
                "/indexes/meta/documents?skipCreation=true&customMetadata=",
                json!([{"id": 1, "a": "updated"}, {"id": 50, "a": "new"}]),
            ),
            (
                Method::PUT,
                "/indexes/meta/documents?skipCreation=TRUE",
                json!([{"id": 2, "b": "partial"}, {"id": 51, "b": "new"}]),
            ),
            (
                Method::DELETE,
                "/indexes/meta/documents/3?customMetadata=one",
                json!(null),
            ),
            (
                Method::POST,
                "/indexes/meta/documents/delete-batch?customMetadata=batch",
                json!([4, 5]),
            ),
            (
                Method::PATCH,
                "/indexes/meta/settings?customMetadata=ignored",
                json!({"filterableAttributes": ["a"]}),
            ),
            (
                Method::POST,
                "/indexes/meta/documents/delete?customMetadata=filter",
                json!({"filter": "a = 6"}),
            ),
        ];
        let mut answers = Vec::new();
        for (method, path, body) in writes {
            let (status, enqueued) = if body.is_null() {
                target.send(method.clone(), path, None, None).await
            } else {
                target.json(method.clone(), path, body).await
            };
            assert_eq!(status, 202, "{path}: {enqueued}");
            let task = target.wait_task(&enqueued).await;
            answers.push(json!({
                "enqueued": {"type": enqueued["type"], "status": enqueued["status"],
                    "customMetadata": enqueued.get("customMetadata"),
                    "keys": enqueued.as_object().unwrap().keys().cloned().collect::<Vec<_>>()},
                "task": {"status": task["status"], "details": task["details"], "error": task["error"],
                    "customMetadata": task.get("customMetadata")},
            }));
        }
        let (status, refused) = target
            .post(
                "/indexes/meta/documents?skipCreation=maybe",
                json!([{"id": 1}]),
            )
            .await;
        answers.push(json!({"status": status, "refused": refused}));
        let (_, documents) = target.get("/indexes/meta/documents?limit=100").await;
        let mut results = documents["results"].as_array().unwrap().clone();
        results.sort_by_key(|d| d["id"].as_i64());
        answers.push(json!(results));
        seen.push(answers);
    }
    assert_eq!(seen[0].len(), seen[1].len());
    for (through, one) in seen[0].iter().zip(&seen[1]) {
        assert_eq!(through, one);
    }
}
