//! The Meilisearch test node answers like Meilisearch: each check runs on the test node and,
//! when MEILISEARCH_BIN is set, unchanged on real Meilisearch.

use miroir_integration_tests::{Meili, TestNode};
use reqwest::Method;
use serde_json::json;

fn ids(response: &serde_json::Value) -> Vec<i64> {
    response["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_i64().unwrap())
        .collect()
}

/// The test node, then real Meilisearch when `MEILISEARCH_BIN` is set.
async fn nodes() -> Vec<TestNode> {
    let mut nodes = vec![TestNode::start_test_node().await];
    if std::env::var_os("MEILISEARCH_BIN").is_some() {
        nodes.push(TestNode::start().await);
    }
    nodes
}

#[tokio::test]
async fn documents_tasks_search_and_settings() {
    for node in nodes().await {
        documents_tasks_search_and_settings_on(&node).await;
    }
}

async fn documents_tasks_search_and_settings_on(node: &TestNode) {
    let meili = Meili::new(&node.url);

    let task = meili
        .ok(
            Method::POST,
            "/indexes",
            json!({"uid": "movies", "primaryKey": "id"}),
        )
        .await;
    assert_eq!(task["type"], "indexCreation");
    for field in [
        "uid",
        "batchUid",
        "indexUid",
        "status",
        "type",
        "canceledBy",
        "details",
        "error",
        "duration",
        "enqueuedAt",
        "startedAt",
        "finishedAt",
    ] {
        assert!(task.get(field).is_some(), "task lacks {field}: {task}");
    }
    let (status, index) = meili.get("/indexes/movies").await;
    assert_eq!(status, 200);
    assert_eq!(index["primaryKey"], "id");

    meili
        .ok(
            Method::PATCH,
            "/indexes/movies/settings",
            json!({"filterableAttributes": ["genre", "year"], "sortableAttributes": ["year"]}),
        )
        .await;
    let documents = json!([
        {"id": 1, "title": "The Dark Knight", "genre": "action", "year": 2008},
        {"id": 2, "title": "Dark Water", "genre": "horror", "year": 2005},
        {"id": 3, "title": "Knight and Day", "genre": "action", "year": 2010},
    ]);
    let (status, enqueued) = meili.post("/indexes/movies/documents", documents).await;
    assert_eq!(status, 202);
    for field in ["taskUid", "indexUid", "status", "type", "enqueuedAt"] {
        assert!(
            enqueued.get(field).is_some(),
            "summary lacks {field}: {enqueued}"
        );
    }
    let task = meili.wait_task(&enqueued).await;
    assert_eq!(
        task["details"],
        json!({"receivedDocuments": 3, "indexedDocuments": 3})
    );

    let ndjson =
        b"{\"id\": 4, \"title\": \"Darkness\", \"genre\": \"horror\", \"year\": 2002}\n".to_vec();
    let (status, enqueued) = meili
        .send(
            Method::POST,
            "/indexes/movies/documents",
            Some("application/x-ndjson"),
            Some(ndjson),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(meili.wait_task(&enqueued).await["status"], "succeeded");
    let csv = b"id:number,title,genre,year:number\n5,Night Watch,fantasy,2004\n".to_vec();
    let (_, enqueued) = meili
        .send(
            Method::PUT,
            "/indexes/movies/documents",
            Some("text/csv"),
            Some(csv),
        )
        .await;
    assert_eq!(meili.wait_task(&enqueued).await["status"], "succeeded");

    let (_, result) = meili
        .post(
            "/indexes/movies/search",
            json!({"q": "dark", "filter": "year > 2003", "sort": ["year:desc"]}),
        )
        .await;
    assert_eq!(ids(&result), vec![1, 2]);
    assert_eq!(result["estimatedTotalHits"], 2);
    let (_, result) = meili
        .post(
            "/indexes/movies/search",
            json!({"facets": ["genre"], "hitsPerPage": 2, "page": 1}),
        )
        .await;
    assert_eq!(result["totalHits"], 5);
    assert_eq!(result["totalPages"], 3);
    assert_eq!(
        result["facetDistribution"]["genre"],
        json!({"action": 2, "fantasy": 1, "horror": 2})
    );
    let (_, result) = meili
        .get("/indexes/movies/search?q=knight&attributesToRetrieve=title&sort=year:asc")
        .await;
    assert_eq!(
        result["hits"],
        json!([{"title": "The Dark Knight"}, {"title": "Knight and Day"}]),
        "real: {}",
        node.real
    );

    let (status, error) = meili
        .post("/indexes/movies/search", json!({"filter": "title = x"}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(error["code"], "invalid_search_filter");
    assert_eq!(error["type"], "invalid_request");
    assert_eq!(
        error["link"],
        "https://docs.meilisearch.com/errors#invalid_search_filter"
    );

    let (_, page) = meili
        .post(
            "/indexes/movies/documents/fetch",
            json!({"filter": "genre = horror", "fields": ["id"]}),
        )
        .await;
    assert_eq!(
        page,
        json!({"results": [{"id": 2}, {"id": 4}], "offset": 0, "limit": 20, "total": 2})
    );
    let (status, document) = meili.get("/indexes/movies/documents/5").await;
    assert_eq!(
        (status, document["title"].as_str()),
        (200, Some("Night Watch"))
    );
    let (status, error) = meili.get("/indexes/movies/documents/99").await;
    assert_eq!(
        (status, error["code"].as_str()),
        (404, Some("document_not_found"))
    );

    let (_, settings) = meili.get("/indexes/movies/settings").await;
    assert_eq!(settings["filterableAttributes"], json!(["genre", "year"]));
    assert_eq!(settings["pagination"], json!({"maxTotalHits": 1000}));
    let (_, filterable) = meili
        .get("/indexes/movies/settings/filterable-attributes")
        .await;
    assert_eq!(filterable, json!(["genre", "year"]));

    meili
        .ok(
            Method::POST,
            "/indexes/movies/documents/delete-batch",
            json!([1, "2"]),
        )
        .await;
    let task = meili
        .ok(
            Method::POST,
            "/indexes/movies/documents/delete",
            json!({"filter": "genre = horror"}),
        )
        .await;
    assert_eq!(task["details"]["deletedDocuments"], 1);
    let (_, stats) = meili.get("/indexes/movies/stats").await;
    assert_eq!(stats["numberOfDocuments"], 2);

    let (_, tasks) = meili.get("/tasks?indexUids=movies&limit=2").await;
    assert_eq!(tasks["results"].as_array().unwrap().len(), 2);
    assert_eq!(tasks["total"], 7);
    assert!(tasks["next"].is_u64());
}

#[tokio::test]
async fn failures_are_reported_like_meilisearch() {
    for node in nodes().await {
        failures_are_reported_like_meilisearch_on(&node).await;
    }
}

async fn failures_are_reported_like_meilisearch_on(node: &TestNode) {
    let meili = Meili::new(&node.url);
    // No primary key candidate: the task fails, nothing is half-applied.
    let (_, enqueued) = meili
        .post("/indexes/books/documents", json!([{"title": "a"}]))
        .await;
    let task = meili.wait_task(&enqueued).await;
    assert_eq!(task["status"], "failed");
    assert_eq!(
        task["error"]["code"],
        "index_primary_key_no_candidate_found"
    );
    assert_eq!(task["details"]["indexedDocuments"], 0);

    let (status, error) = meili
        .send(
            Method::POST,
            "/indexes/books/documents",
            Some("text/plain"),
            Some(b"x".to_vec()),
        )
        .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (415, Some("invalid_content_type"))
    );
    let (status, error) = meili
        .send(
            Method::POST,
            "/indexes/books/documents",
            Some("application/json"),
            Some(b"[{".to_vec()),
        )
        .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("malformed_payload"))
    );
    let (status, error) = meili.get("/indexes/nope").await;
    assert_eq!(
        (status, error["code"].as_str()),
        (404, Some("index_not_found"))
    );
    let (status, error) = meili.get("/tasks/123456").await;
    assert_eq!(
        (status, error["code"].as_str()),
        (404, Some("task_not_found"))
    );
    let (status, error) = meili.post("/tasks/cancel", json!(null)).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("missing_task_filters"))
    );
    let (status, body) = meili.get("/no/such/route").await;
    assert_eq!((status, body), (404, serde_json::Value::Null));

    // Credentials.
    let response = reqwest::get(format!("{}/indexes", node.url)).await.unwrap();
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "missing_authorization_header");
    let response = reqwest::Client::new()
        .get(format!("{}/indexes", node.url))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        reqwest::get(format!("{}/health", node.url))
            .await
            .unwrap()
            .status(),
        200
    );
}
