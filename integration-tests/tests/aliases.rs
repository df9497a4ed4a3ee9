//! Index aliases on real Meilisearch nodes: the official Rust and Python SDKs use an
//! alias as an index uid, and a switch under writes from two gateways is atomic: once
//! `miroir-ctl alias set` returned, no write through the alias reaches the old index, and
//! every acknowledged write is in exactly one of the two.

use crate::gateway_indexes::fleet;
use meilisearch_sdk::client::Client;
use meilisearch_sdk::tasks::{Task, TasksSearchQuery};
use miroir_integration_tests::{Gateway, MASTER_KEY, Meili, ctl};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn succeeded(task: &Task) {
    assert!(matches!(task, Task::Succeeded { .. }), "{task:?}");
}

async fn set_alias(cp: &str, name: &str, index: &str) -> String {
    let out = ctl(cp, &["alias", "set", name, index]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.stdout
}

/// Creates `movies_v1` and `movies_v2`.
async fn create_both(meili: &Meili) {
    for uid in ["movies_v1", "movies_v2"] {
        meili
            .ok(
                Method::POST,
                "/indexes",
                json!({"uid": uid, "primaryKey": "id", "miroirShardCount": 4}),
            )
            .await;
    }
}

/// One write through the alias: its id, when it was acknowledged, and its task.
struct Sent {
    id: u64,
    acknowledged: Instant,
    task: Value,
}

/// Fills `movies_v2` and switches alias `movies` from `movies_v1` to it while a client on
/// each gateway writes through the alias. Every acknowledged write must be in exactly one
/// of the indexes, and none acknowledged after the switch returned may be in the old one.
async fn switch_under_writes(cp: &str, meili: &Meili, gateways: [&String; 2]) {
    let v2: Vec<Value> = (0..20)
        .map(|i| json!({"id": i, "title": format!("new {i}"), "genre": "new"}))
        .collect();
    meili
        .ok(Method::POST, "/indexes/movies_v2/documents", json!(v2))
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = gateways
        .into_iter()
        .cloned()
        .enumerate()
        .map(|(w, url)| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let through = Meili::new(&url);
                let mut sent = Vec::new();
                let mut id = 1000 + w as u64 * 100_000;
                while !stop.load(Ordering::Relaxed) {
                    id += 1;
                    let (status, task) = through
                        .post(
                            "/indexes/movies/documents",
                            json!([{"id": id, "title": format!("written {id}")}]),
                        )
                        .await;
                    assert_eq!(status, 202, "{task}");
                    let acknowledged = Instant::now();
                    sent.push(Sent {
                        id,
                        acknowledged,
                        task,
                    });
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                sent
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let switched = set_alias(cp, "movies", "movies_v2").await;
    let switched_at = Instant::now();
    assert!(
        switched.contains("alias movies switched from movies_v1 to movies_v2"),
        "{switched}"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = Vec::new();
    for writer in writers {
        sent.extend(writer.await.expect("writer"));
    }
    let (mut before, mut after) = (0, 0);
    for write in &sent {
        let task = meili.wait_task(&write.task).await;
        assert_eq!(task["status"], "succeeded", "{task}");
        let (in_v1, _) = meili
            .get(&format!("/indexes/movies_v1/documents/{}", write.id))
            .await;
        let (in_v2, _) = meili
            .get(&format!("/indexes/movies_v2/documents/{}", write.id))
            .await;
        match (in_v1, in_v2) {
            (200, 404) => {
                assert!(
                    write.acknowledged < switched_at,
                    "write {} acknowledged after the switch returned is in the old index",
                    write.id
                );
                before += 1;
            }
            (404, 200) => after += 1,
            other => panic!("write {} is in v1/v2 as {other:?}", write.id),
        }
    }
    assert!(
        before > 0 && after > 0,
        "writes before the switch {before}, after {after}"
    );
}

#[tokio::test]
async fn an_alias_serves_the_sdk_and_switches_atomically_under_writes() {
    let (dir, cp, _nodes, gateway) = fleet(2).await;
    let other = Gateway::start(dir.path(), &cp.url(), &[]).await;
    other.wait_writable().await;
    let client = Client::new(&gateway.url, Some(MASTER_KEY)).unwrap();
    let meili = Meili::new(&gateway.url);
    create_both(&meili).await;
    let v1: Vec<Value> = (0..20)
        .map(|i| json!({"id": i, "title": format!("old {i}"), "genre": "old"}))
        .collect();
    meili
        .ok(Method::POST, "/indexes/movies_v1/documents", json!(v1))
        .await;
    let created = set_alias(&cp.url(), "movies", "movies_v1").await;
    assert!(
        created.contains("alias movies created for movies_v1"),
        "{created}"
    );

    // The SDK, unchanged, with the alias as its index uid: settings, documents, search,
    // tasks.
    let index = client.index("movies");
    succeeded(
        &index
            .set_filterable_attributes(["genre"])
            .await
            .unwrap()
            .wait_for_completion(&client, None, None)
            .await
            .unwrap(),
    );
    let added = index
        .add_documents(
            &[json!({"id": 20, "title": "old 20", "genre": "sdk"})],
            Some("id"),
        )
        .await
        .unwrap()
        .wait_for_completion(&client, None, None)
        .await
        .unwrap();
    succeeded(&added);
    let filterable = client
        .index("movies_v1")
        .get_filterable_attributes()
        .await
        .unwrap();
    assert!(filterable.contains(&"genre".to_owned()), "{filterable:?}");
    let found = index
        .search()
        .with_filter("genre = sdk")
        .execute::<Value>()
        .await
        .unwrap();
    assert_eq!(found.hits.len(), 1);
    assert_eq!(found.hits[0].result["id"], 20);
    let document: Value = index.get_document("20").await.unwrap();
    assert_eq!(document["title"], "old 20");
    let tasks = TasksSearchQuery::new(&client)
        .with_index_uids(["movies"])
        .execute()
        .await
        .unwrap();
    assert!(tasks.results.len() >= 2, "{:?}", tasks.results);
    let stats = index.get_stats().await.unwrap();
    assert_eq!(stats.number_of_documents, 21);

    // The Python SDK too.
    miroir_integration_tests::run_python_check(
        "sdk_alias.py",
        &[gateway.url.as_ref(), MASTER_KEY.as_ref(), "movies".as_ref()],
    )
    .await;

    // An index cannot take an alias's name; an alias cannot be deleted as an index, nor
    // its index while it names it.
    let (_, task) = meili
        .post("/indexes", json!({"uid": "movies", "primaryKey": "id"}))
        .await;
    let task = meili.wait_task(&task).await;
    assert_eq!(task["error"]["code"], "index_already_exists", "{task}");
    let (status, refused) = meili.delete("/indexes/movies").await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (400, Some("miroir_alias_not_deletable")),
        "{refused}"
    );
    let (status, refused) = meili.delete("/indexes/movies_v1").await;
    assert!(status >= 400, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or("")
            .contains("target of alias `movies`"),
        "{refused}"
    );

    // Reindex: fill movies_v2, then switch while clients write through the alias on both
    // gateways.
    switch_under_writes(&cp.url(), &meili, [&gateway.url, &other.url]).await;

    // Searches through the alias now read the new index, on both gateways.
    for url in [&gateway.url, &other.url] {
        let (status, found) = Meili::new(url)
            .post("/indexes/movies/search", json!({"q": "new", "limit": 1}))
            .await;
        assert_eq!(status, 200, "{found}");
        assert!(
            found["hits"][0]["title"]
                .as_str()
                .unwrap_or("")
                .starts_with("new"),
            "{found}"
        );
    }
    let listed = ctl(&cp.url(), &["alias", "list", "-o", "json"]).await;
    let listed: Value = serde_json::from_str(&listed.stdout).expect("aliases as JSON");
    assert_eq!(listed[0]["name"], "movies");
    assert_eq!(listed[0]["index"], "movies_v2");

    // The old index can go now; once the alias goes, its name names nothing.
    let (status, task) = meili.delete("/indexes/movies_v1").await;
    assert_eq!(status, 202, "{task}");
    assert_eq!(meili.wait_task(&task).await["status"], "succeeded");
    let removed = ctl(&cp.url(), &["alias", "remove", "movies"]).await;
    assert_eq!(removed.code, 0, "{}", removed.stderr);
    let (status, missing) = meili.post("/indexes/movies/search", json!({})).await;
    assert_eq!(
        (status, missing["code"].as_str()),
        (404, Some("index_not_found")),
        "{missing}"
    );
}

/// The switch's barriers are what keep it atomic: with every node call slowed (test
/// nodes, 300 ms each), writes resolved to the old index are still in flight when the
/// alias moves; the switch waits for them, so none is acknowledged into the old index
/// after it returned.
#[tokio::test]
async fn a_switch_waits_for_writes_in_flight_to_the_old_index() {
    let (dir, cp, nodes, gateway) = crate::gateway_indexes::test_node_fleet(2).await;
    let other = Gateway::start(dir.path(), &cp.url(), &[]).await;
    other.wait_writable().await;
    let meili = Meili::new(&gateway.url);
    create_both(&meili).await;
    set_alias(&cp.url(), "movies", "movies_v1").await;
    for node in &nodes {
        node.set_faults(json!({"latencyMs": 300})).await;
    }
    switch_under_writes(&cp.url(), &meili, [&gateway.url, &other.url]).await;
}
