//! `GET`/`POST /indexes/{uid}/similar` through the gateway, against one node holding the
//! same documents (issue 21, point 3): the document's shard is on one node, its neighbours
//! on every node.

use crate::gateway_indexes::fleet;
use miroir_integration_tests::{Meili, TestNode};
use reqwest::Method;
use serde_json::{Value, json};

/// A vector of 3 from `seed`, distinct enough that no two documents tie.
fn vector(seed: u64) -> Value {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 10_000) as f64 / 10_000.0 + 0.01
    };
    json!([next(), next(), next()])
}

#[tokio::test]
async fn similar_documents_are_found_on_every_node() {
    // Miroir's test node has no embedders.
    if !miroir_integration_tests::real_meilisearch("similar_documents_are_found_on_every_node") {
        return;
    }
    let (_dir, cp, _nodes, gateway) = fleet(3).await;
    let single = TestNode::start().await;
    let meili = Meili::new(&gateway.url);
    let reference = Meili::new(&single.url);
    let documents: Vec<Value> = (0..60)
        .map(|i| {
            let mut document = json!({"id": i, "title": format!("film {i}"), "year": 1960 + i});
            // A few documents opt out of embedding: not found, but counted.
            let embedding = if i % 13 == 7 { Value::Null } else { vector(i) };
            document["_vectors"] = json!({ "manual": embedding });
            document
        })
        .collect();
    for (target, extra) in [
        (&meili, json!({"miroirShardCount": 16})),
        (&reference, json!({})),
    ] {
        target.create_index_with("films", extra).await;
        target
            .ok(
                Method::PATCH,
                "/indexes/films/settings",
                json!({"filterableAttributes": ["year"],
                    "embedders": {"manual": {"source": "userProvided", "dimensions": 3}}}),
            )
            .await;
        target
            .ok(Method::POST, "/indexes/films/documents", json!(documents))
            .await;
    }
    gateway
        .wait_version(cp.current_topology().await.version)
        .await;
    let posts = [
        json!({"id": 1, "embedder": "manual"}),
        json!({"id": "2", "embedder": "manual", "limit": 5, "offset": 3, "showRankingScore": true}),
        json!({"id": 3, "embedder": "manual", "filter": "year > 1990", "showRankingScoreDetails": true,
            "attributesToRetrieve": ["title"], "retrieveVectors": true}),
        json!({"id": 4, "embedder": "manual", "rankingScoreThreshold": 0.9, "limit": 50}),
        json!({"id": 7, "embedder": "manual"}),
        json!({"id": 8, "embedder": "manual", "filter": ["year < 1980", "year > 1965"]}),
        // Refused as one node refuses them.
        json!({"id": 999, "embedder": "manual"}),
        json!({"id": 1, "embedder": "nope"}),
        json!({"id": 1}),
        json!({"embedder": "manual"}),
        json!({"id": "bad id!", "embedder": "manual"}),
        json!({"id": 1, "embedder": "manual", "limit": -1}),
        json!({"id": 1, "embedder": "manual", "filter": "title = x"}),
        json!({"id": 1, "embedder": "manual", "rankingScoreThreshold": 2}),
    ];
    for body in posts {
        let (status, mut through) = meili.post("/indexes/films/similar", body.clone()).await;
        let (expected, mut one) = reference.post("/indexes/films/similar", body.clone()).await;
        for answer in [&mut through, &mut one] {
            answer.as_object_mut().map(|a| a.remove("processingTimeMs"));
        }
        assert_eq!((status, &through), (expected, &one), "POST {body}");
    }
    for query in [
        "id=5&embedder=manual&limit=3&attributesToRetrieve=title,id&showRankingScore=true",
        "id=6&embedder=manual&filter=year%20%3E%201980",
        "id=6",
    ] {
        let path = format!("/indexes/films/similar?{query}");
        let (status, mut through) = meili.get(&path).await;
        let (expected, mut one) = reference.get(&path).await;
        for answer in [&mut through, &mut one] {
            answer.as_object_mut().map(|a| a.remove("processingTimeMs"));
        }
        assert_eq!((status, &through), (expected, &one), "GET {query}");
    }
    let (status, missing) = meili
        .post(
            "/indexes/nope/similar",
            json!({"id": 1, "embedder": "manual"}),
        )
        .await;
    assert_eq!((status, &missing["code"]), (404, &json!("index_not_found")));
}
