//! Document reads and deletes through the gateway.

use crate::gateway_indexes::fleet;
use miroir_integration_tests::Meili;
use reqwest::Method;
use serde_json::json;
use std::collections::BTreeSet;

#[tokio::test]
async fn documents_are_read_paged_and_deleted_across_the_fleet() {
    let (_dir, cp, nodes, gateway) = fleet(3).await;
    let meili = Meili::new(&gateway.url);
    meili.ok(Method::POST, "/indexes", json!({"uid": "movies", "primaryKey": "id", "miroirShardCount": 8, "miroirReplicationFactor": 2})).await;
    meili
        .ok(
            Method::PATCH,
            "/indexes/movies/settings",
            json!({"filterableAttributes": ["genre"], "sortableAttributes": ["rank"]}),
        )
        .await;
    gateway
        .wait_version(cp.current_topology().await.version)
        .await;
    let documents: Vec<_> = (0..30)
        .map(|i| json!({"id": i, "genre": if i % 3 == 0 { "horror" } else { "drama" }, "rank": (i * 7) % 30}))
        .collect();
    meili
        .ok(Method::POST, "/indexes/movies/documents", json!(documents))
        .await;

    let (status, document) = meili.get("/indexes/movies/documents/5").await;
    assert_eq!(
        (status, document),
        (200, json!({"id": 5, "genre": "drama", "rank": 5}))
    );
    let (status, error) = meili.get("/indexes/movies/documents/999").await;
    assert_eq!(
        (status, error["code"].as_str()),
        (404, Some("document_not_found"))
    );

    // Pages of 7 cover every document once.
    let mut seen = Vec::new();
    for page in 0..5 {
        let (status, body) = meili
            .get(&format!(
                "/indexes/movies/documents?offset={}&limit=7",
                page * 7
            ))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["total"], 30);
        for document in body["results"].as_array().unwrap() {
            assert!(document.get("_miroir_shard").is_none());
            seen.push(document["id"].as_i64().unwrap());
        }
    }
    assert_eq!(seen.len(), 30, "no duplicate: {seen:?}");
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 30, "no gap");
    let (_, horror) = meili
        .post(
            "/indexes/movies/documents/fetch",
            json!({"filter": "genre = horror", "limit": 100}),
        )
        .await;
    assert_eq!(horror["total"], 10);

    // Sorted pages merge across nodes by the sort key; the key is fetched for the merge
    // and not shown when `fields` leaves it out.
    let mut ranked = Vec::new();
    for page in 0..3 {
        let (status, body) = meili
            .post(
                "/indexes/movies/documents/fetch",
                json!({"sort": ["rank:desc"], "fields": ["id"], "offset": page * 10, "limit": 10}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        for document in body["results"].as_array().unwrap() {
            assert_eq!(document.as_object().unwrap().len(), 1, "{document}");
            ranked.push(document["id"].as_i64().unwrap());
        }
    }
    let expected: Vec<i64> = (0..30).rev().map(|rank| (rank * 13) % 30).collect();
    assert_eq!(
        ranked, expected,
        "rank = 7·id mod 30, so id = 13·rank mod 30"
    );

    meili
        .ok(Method::DELETE, "/indexes/movies/documents/5", json!(null))
        .await;
    let (status, _) = meili.get("/indexes/movies/documents/5").await;
    assert_eq!(status, 404);
    meili
        .ok(
            Method::POST,
            "/indexes/movies/documents/delete-batch",
            json!([1, "2"]),
        )
        .await;
    meili
        .ok(
            Method::POST,
            "/indexes/movies/documents/delete",
            json!({"filter": "genre = horror"}),
        )
        .await;
    let (_, rest) = meili.get("/indexes/movies/documents?limit=100").await;
    assert_eq!(rest["total"], 17, "30 - 3 by id - 10 horror");
    meili
        .ok(Method::DELETE, "/indexes/movies/documents", json!(null))
        .await;
    for node in &nodes {
        let (_, stats) = Meili::new(&node.url).get("/indexes/movies/stats").await;
        assert_eq!(stats["numberOfDocuments"], 0);
    }
}

/// A `?primaryKey=` naming a field with `&`, `=` or non-ASCII characters reaches the
/// nodes as the client sent it, as one Meilisearch takes it.
#[tokio::test]
async fn primary_keys_with_reserved_or_non_ascii_characters_reach_nodes_intact() {
    let (_dir, _cp, _nodes, gateway) = fleet(2).await;
    let single = miroir_integration_tests::TestNode::start().await;
    let (meili, reference) = (Meili::new(&gateway.url), Meili::new(&single.url));
    for (uid, key, encoded) in [
        ("accents", "clé", "cl%C3%A9"),
        ("reserved", "a&skipCreation=true", "a%26skipCreation%3Dtrue"),
    ] {
        let documents: Vec<_> = (0..20).map(|i| json!({key: i, "title": "x"})).collect();
        for target in [&meili, &reference] {
            target
                .ok(Method::POST, "/indexes", json!({"uid": uid}))
                .await;
            let task = target
                .ok(
                    Method::POST,
                    &format!("/indexes/{uid}/documents?primaryKey={encoded}"),
                    json!(documents),
                )
                .await;
            assert_eq!(task["details"]["indexedDocuments"], 20, "{uid}: {task}");
            let (status, index) = target.get(&format!("/indexes/{uid}")).await;
            assert_eq!(
                (status, &index["primaryKey"]),
                (200, &json!(key)),
                "{index}"
            );
            let (status, page) = target.get(&format!("/indexes/{uid}/documents")).await;
            assert_eq!((status, &page["total"]), (200, &json!(20)), "{page}");
        }
    }
}
