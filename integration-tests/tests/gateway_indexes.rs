//! Index lifecycle through the gateway: the control plane creates and deletes the index on
//! every node and the client's task reports the nodes' real outcome.

use miroir_integration_tests::{
    ControlPlane, ControlPlaneOptions, Gateway, Meili, NodeKind, TestNode, wait_for,
};
use miroir_proto::pb::NodeState;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

/// A control plane, `n` healthy nodes in group 0, and a gateway.
pub async fn fleet(n: usize) -> (tempfile::TempDir, ControlPlane, Vec<TestNode>, Gateway) {
    fleet_with(n, ControlPlaneOptions::default()).await
}

/// [`fleet`] with control-plane options.
pub async fn fleet_with(
    n: usize,
    options: ControlPlaneOptions,
) -> (tempfile::TempDir, ControlPlane, Vec<TestNode>, Gateway) {
    fleet_in_groups(&vec![0; n], options).await
}

/// [`fleet`] with flags for the gateway.
pub async fn fleet_with_gateway(
    n: usize,
    gateway_args: &[&str],
) -> (tempfile::TempDir, ControlPlane, Vec<TestNode>, Gateway) {
    fleet_in_groups_with(
        &vec![0; n],
        ControlPlaneOptions::default(),
        gateway_args,
        NodeKind::Meilisearch,
    )
    .await
}

/// [`fleet`] of Miroir's test nodes, for tests that inject faults a real process cannot
/// show (latency, refusals, task delays).
pub async fn test_node_fleet(
    n: usize,
) -> (tempfile::TempDir, ControlPlane, Vec<TestNode>, Gateway) {
    test_node_fleet_in_groups(&vec![0; n], ControlPlaneOptions::default()).await
}

/// [`fleet_in_groups`] of Miroir's test nodes.
pub async fn test_node_fleet_in_groups(
    groups: &[u32],
    options: ControlPlaneOptions,
) -> (tempfile::TempDir, ControlPlane, Vec<TestNode>, Gateway) {
    fleet_in_groups_with(groups, options, &[], NodeKind::TestNode).await
}

/// A control plane, node `meili-{i}` in replica group `groups[i]`, and a gateway that
/// follows the fleet and takes writes.
pub async fn fleet_in_groups(
    groups: &[u32],
    options: ControlPlaneOptions,
) -> (tempfile::TempDir, ControlPlane, Vec<TestNode>, Gateway) {
    fleet_in_groups_with(groups, options, &[], NodeKind::Meilisearch).await
}

/// [`fleet_in_groups`] with flags for the gateway.
pub async fn fleet_in_groups_with(
    groups: &[u32],
    options: ControlPlaneOptions,
    gateway_args: &[&str],
    kind: NodeKind,
) -> (tempfile::TempDir, ControlPlane, Vec<TestNode>, Gateway) {
    let (dir, cp) = crate::fresh_control_plane_with(options).await;
    let mut nodes = Vec::new();
    for (i, group) in groups.iter().enumerate() {
        let node = TestNode::start_kind(kind).await;
        cp.add_node(&format!("meili-{i}"), &node.url, *group)
            .await
            .unwrap();
        nodes.push(node);
    }
    for i in 0..groups.len() {
        cp.wait_node_state(&format!("meili-{i}"), NodeState::Active)
            .await;
    }
    let gateway = Gateway::start(dir.path(), &cp.url(), gateway_args).await;
    gateway
        .wait_version(cp.current_topology().await.version)
        .await;
    gateway.wait_writable().await;
    (dir, cp, nodes, gateway)
}

#[tokio::test]
async fn indexes_are_created_and_deleted_on_every_node() {
    let (_dir, cp, nodes, gateway) = fleet(3).await;
    let meili = Meili::new(&gateway.url);

    let task = meili
        .ok(
            Method::POST,
            "/indexes",
            json!({"uid": "movies", "primaryKey": "id", "miroirShardCount": 8}),
        )
        .await;
    assert_eq!(task["type"], "indexCreation");
    assert_eq!(task["indexUid"], "movies");
    assert_eq!(task["details"], json!({"primaryKey": "id"}));
    for node in &nodes {
        let node = Meili::new(&node.url);
        let (status, index) = node.get("/indexes/movies").await;
        assert_eq!((status, index["primaryKey"].as_str()), (200, Some("id")));
        let (_, filterable) = node
            .get("/indexes/movies/settings/filterable-attributes")
            .await;
        assert_eq!(filterable, json!(["_miroir_shard"]));
    }
    gateway
        .wait_version(cp.current_topology().await.version)
        .await;
    let (status, index) = meili.get("/indexes/movies").await;
    assert_eq!(
        (status, index["uid"].as_str(), index["primaryKey"].as_str()),
        (200, Some("movies"), Some("id"))
    );
    let (_, list) = meili.get("/indexes").await;
    assert_eq!(list["total"], 1);
    assert_eq!(cp.current_topology().await.indexes[0].shard_count, 8);

    // As in Meilisearch: 202, then a failed task.
    let (status, enqueued) = meili.post("/indexes", json!({"uid": "movies"})).await;
    assert_eq!(status, 202);
    let task = meili.wait_task(&enqueued).await;
    assert_eq!(task["status"], "failed");
    assert_eq!(task["error"]["code"], "index_already_exists");

    let (status, error) = meili.post("/indexes", json!({"uid": "bad uid"})).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("invalid_index_uid"))
    );

    // Compaction: every node compacts its copy under one task.
    let (status, enqueued) = meili.post("/indexes/movies/compact", json!(null)).await;
    assert_eq!(
        (
            status,
            enqueued["type"].as_str(),
            enqueued["indexUid"].as_str()
        ),
        (202, Some("indexCompaction"), Some("movies")),
        "{enqueued}"
    );
    let task = meili.wait_task(&enqueued).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    let compactions = task["details"]["miroirCompactions"].as_object().unwrap();
    assert_eq!(compactions.len(), 3, "one per node: {task}");
    assert!(
        compactions
            .values()
            .all(|c| c["postCompactionSize"].is_string()),
        "{task}"
    );
    for node in &nodes {
        let (_, tasks) = Meili::new(&node.url)
            .get("/tasks?types=indexCompaction")
            .await;
        assert_eq!(tasks["total"], 1, "{}: {tasks}", node.url);
    }
    let (_, listed) = meili.get("/tasks?types=indexCompaction").await;
    assert_eq!(listed["total"], 1, "{listed}");

    let task = meili
        .ok(Method::DELETE, "/indexes/movies", json!(null))
        .await;
    assert_eq!(task["type"], "indexDeletion");
    for node in &nodes {
        let (status, _) = Meili::new(&node.url).get("/indexes/movies").await;
        assert_eq!(status, 404);
    }
    let (_, enqueued) = meili.delete("/indexes/movies").await;
    assert_eq!(
        meili.wait_task(&enqueued).await["error"]["code"],
        "index_not_found"
    );
    let (status, enqueued) = meili.post("/indexes/movies/compact", json!(null)).await;
    assert_eq!(status, 202, "{enqueued}");
    assert_eq!(
        meili.wait_task(&enqueued).await["error"]["code"],
        "index_not_found"
    );
    let (status, error) = meili.get("/tasks/99999").await;
    assert_eq!(
        (status, error["code"].as_str()),
        (404, Some("task_not_found"))
    );
}

#[tokio::test]
async fn a_node_side_failure_fails_the_task_and_names_the_node() {
    let (_dir, _cp, nodes, gateway) = fleet(2).await;
    let meili = Meili::new(&gateway.url);
    // The index exists on one node already: its creation task fails there.
    let task = Meili::new(&nodes[1].url)
        .ok(Method::POST, "/indexes", json!({"uid": "books"}))
        .await;
    assert_eq!(task["status"], "succeeded");
    let (_, enqueued) = meili.post("/indexes", json!({"uid": "books"})).await;
    let task = meili.wait_task(&enqueued).await;
    assert_eq!(task["status"], "failed");
    assert_eq!(task["error"]["code"], "index_already_exists");
    assert!(
        task["error"]["message"]
            .as_str()
            .unwrap()
            .contains("meili-1"),
        "{task}"
    );

    // Credentials are checked like Meilisearch.
    let response = reqwest::get(format!("{}/indexes", gateway.url))
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    wait_for(
        "health without credentials",
        Duration::from_secs(5),
        || async {
            reqwest::get(format!("{}/health", gateway.url))
                .await
                .ok()
                .filter(|r| r.status() == 200)
                .map(|_| ())
        },
    )
    .await;
}

#[tokio::test]
async fn tasks_are_listed_with_meilisearch_filters_and_paging() {
    let (_dir, cp, _nodes, gateway) = fleet(2).await;
    let meili = Meili::new(&gateway.url);
    meili.create_index("movies").await;
    meili.create_index("books").await;
    gateway
        .wait_version(cp.current_topology().await.version)
        .await;
    meili
        .ok(
            Method::POST,
            "/indexes/movies/documents",
            json!([{"id": 1}]),
        )
        .await;
    let (_, enqueued) = meili.post("/indexes", json!({"uid": "movies"})).await;
    meili.wait_task(&enqueued).await; // fails: exists

    let (status, page) = meili.get("/tasks?limit=2").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 4);
    assert_eq!(page["limit"], 2);
    let uids: Vec<u64> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["uid"].as_u64().unwrap())
        .collect();
    assert_eq!(uids, vec![3, 2], "newest first");
    assert_eq!(page["from"], 3);
    assert_eq!(page["next"], 1);
    let (_, next) = meili.get("/tasks?limit=2&from=1").await;
    assert_eq!(next["results"].as_array().unwrap().len(), 2);
    assert_eq!(next["next"], serde_json::Value::Null);

    let (_, movies) = meili.get("/tasks?indexUids=movies").await;
    assert_eq!(movies["total"], 3);
    let (_, failed) = meili.get("/tasks?statuses=failed").await;
    assert_eq!(failed["total"], 1);
    assert_eq!(
        failed["results"][0]["error"]["code"],
        "index_already_exists"
    );
    let (_, additions) = meili
        .get("/tasks?types=documentAdditionOrUpdate&reverse=true")
        .await;
    assert_eq!(additions["results"][0]["details"]["indexedDocuments"], 1);
    let (status, error) = meili.get("/tasks?statuses=doggo").await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("invalid_task_statuses"))
    );

    let (status, version) = meili.get("/version").await;
    assert_eq!(status, 200);
    assert!(version["pkgVersion"].is_string(), "{version}");
}

/// Sends a write and waits for its task to fail; returns the task's error.
async fn failing(
    meili: &Meili,
    method: Method,
    path: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let (status, enqueued) = meili.json(method, path, body).await;
    assert_eq!(status, 202, "{path}: {enqueued}");
    let task = meili.wait_task(&enqueued).await;
    assert_eq!(task["status"], "failed", "{path}: {task}");
    task["error"].clone()
}

#[tokio::test]
async fn primary_keys_are_recorded_changed_and_indexes_swapped() {
    let (_dir, cp, nodes, gateway) = fleet(3).await;
    let meili = Meili::new(&gateway.url);
    meili
        .ok(Method::POST, "/indexes", json!({"uid": "a"}))
        .await;
    meili
        .ok(
            Method::POST,
            "/indexes",
            json!({"uid": "b", "primaryKey": "sku"}),
        )
        .await;

    // PATCH sets the key everywhere while the index is empty.
    let task = meili
        .ok(Method::PATCH, "/indexes/a", json!({"primaryKey": "code"}))
        .await;
    assert_eq!(
        (task["type"].as_str(), &task["details"]),
        (Some("indexUpdate"), &json!({"primaryKey": "code"}))
    );
    assert_eq!(meili.get("/indexes/a").await.1["primaryKey"], "code");
    for node in &nodes {
        assert_eq!(
            Meili::new(&node.url).get("/indexes/a").await.1["primaryKey"],
            "code"
        );
    }
    meili
        .ok(
            Method::POST,
            "/indexes/a/documents",
            json!([{"code": 1, "title": "from a"}]),
        )
        .await;
    let error = failing(
        &meili,
        Method::PATCH,
        "/indexes/a",
        json!({"primaryKey": "other"}),
    )
    .await;
    assert_eq!(error["code"], "index_primary_key_already_exists", "{error}");
    assert_eq!(meili.get("/indexes/a").await.1["primaryKey"], "code");
    let error = failing(
        &meili,
        Method::POST,
        "/indexes/b/documents?primaryKey=wrong",
        json!([{"wrong": 1}]),
    )
    .await;
    assert_eq!(error["code"], "index_primary_key_already_exists", "{error}");
    meili
        .ok(
            Method::POST,
            "/indexes/b/documents",
            json!([{"sku": "x1", "title": "from b"}, {"sku": "x2", "title": "from b"}]),
        )
        .await;

    // An inferred key is recorded in the topology before any node sees a document.
    meili
        .ok(Method::POST, "/indexes/c/documents", json!([{"cid": 7}]))
        .await;
    let c = cp.index("c").await;
    assert_eq!(c.primary_key.as_deref(), Some("cid"));

    let (status, error) = meili
        .json(Method::PATCH, "/indexes/a", json!({"primaryKey": 3}))
        .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("invalid_index_primary_key")),
        "{error}"
    );
    let error = failing(
        &meili,
        Method::PATCH,
        "/indexes/nope",
        json!({"primaryKey": "id"}),
    )
    .await;
    assert_eq!(error["code"], "index_not_found");

    // Swap: each uid now names the other's documents, key and layout, on every node.
    let task = meili
        .ok(
            Method::POST,
            "/swap-indexes",
            json!([{"indexes": ["a", "b"]}]),
        )
        .await;
    assert_eq!(task["type"], "indexSwap");
    assert_eq!(task["indexUid"], serde_json::Value::Null);
    // Meilisearch 1.50 writes `rename` in every swap's details.
    assert_eq!(
        task["details"],
        json!({"swaps": [{"indexes": ["a", "b"], "rename": false}]})
    );
    assert_eq!(meili.get("/indexes/a").await.1["primaryKey"], "sku");
    let (_, hits) = meili.post("/indexes/a/search", json!({})).await;
    assert_eq!(hits["estimatedTotalHits"], 2, "{hits}");
    assert_eq!(hits["hits"][0]["title"], "from b");
    let (_, document) = meili.get("/indexes/b/documents/1").await;
    assert_eq!(document["title"], "from a");
    for node in &nodes {
        assert_eq!(
            Meili::new(&node.url).get("/indexes/a").await.1["primaryKey"],
            "sku"
        );
    }

    let (status, error) = meili
        .post("/swap-indexes", json!([{"indexes": ["a"]}]))
        .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("invalid_swap_indexes")),
        "{error}"
    );
    let (status, error) = meili
        .post(
            "/swap-indexes",
            json!([{"indexes": ["a", "b"]}, {"indexes": ["b", "c"]}]),
        )
        .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("invalid_swap_duplicate_index_found")),
        "{error}"
    );
    let error = failing(
        &meili,
        Method::POST,
        "/swap-indexes",
        json!([{"indexes": ["a", "nope"]}]),
    )
    .await;
    assert_eq!(
        (error["code"].as_str(), error["message"].as_str()),
        (Some("index_not_found"), Some("Index `nope` not found."))
    );
}

/// `GET /indexes` pages by `offset`/`limit` in uid order, and paths are normalized as in
/// Meilisearch (a trailing slash trimmed, repeated slashes merged).
#[tokio::test]
async fn indexes_are_paged_and_paths_normalized_like_meilisearch() {
    let (_dir, cp, _nodes, gateway) = fleet(2).await;
    let meili = Meili::new(&gateway.url);
    for uid in ["c", "a", "b"] {
        meili
            .ok(Method::POST, "/indexes", json!({"uid": uid}))
            .await;
    }
    gateway
        .wait_version(cp.current_topology().await.version)
        .await;
    let (status, page) = meili.get("/indexes?offset=1&limit=1").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        (
            &page["results"][0]["uid"],
            &page["offset"],
            &page["limit"],
            &page["total"]
        ),
        (&json!("b"), &json!(1), &json!(1), &json!(3)),
        "{page}"
    );
    assert_eq!(page["results"].as_array().map(Vec::len), Some(1));
    let (status, all) = meili.get("/indexes/").await;
    assert_eq!((status, &all["total"]), (200, &json!(3)), "{all}");
    let (status, index) = meili.get("//indexes//b/").await;
    assert_eq!((status, &index["uid"]), (200, &json!("b")), "{index}");
    let (status, answer) = meili.post("/indexes/b/search/", json!({"q": ""})).await;
    assert_eq!((status, &answer["hits"]), (200, &json!([])), "{answer}");
    let (status, _) = meili.get("/nothing/here/").await;
    assert_eq!(status, 404);
}

/// Issue 21, point 3: renaming an index (`PATCH /indexes/{uid}` with `uid`, and
/// `POST /swap-indexes` with `rename`), through the gateway as on one node: the documents
/// go with the name, the old name is gone, earlier tasks name the new one (the rename's own
/// names the old), and refusals are one node's.
#[tokio::test]
async fn indexes_are_renamed_as_on_one_node() {
    let (_dir, cp, _nodes, gateway) = fleet(3).await;
    let single = TestNode::start().await;
    let (meili, reference) = (Meili::new(&gateway.url), Meili::new(&single.url));
    let documents: Vec<_> = (0..30).map(|i| json!({"id": i, "n": i})).collect();
    let mut renames = Vec::new();
    for target in [&meili, &reference] {
        target.create_index("old").await;
        target.create_index("other").await;
        let added = target
            .ok(Method::POST, "/indexes/old/documents", json!(documents))
            .await;
        let renamed = target
            .ok(Method::PATCH, "/indexes/old", json!({"uid": "new"}))
            .await;
        renames.push((added, renamed));
    }
    gateway
        .wait_version(cp.current_topology().await.version)
        .await;
    for ((added, renamed), target) in renames.iter().zip([&meili, &reference]) {
        assert_eq!(renamed["type"], "indexUpdate", "{renamed}");
        assert_eq!(
            renamed["details"],
            json!({"primaryKey": null, "oldIndexUid": "old", "newIndexUid": "new"})
        );
        // The rename's own task names the old uid; earlier ones the new.
        assert_eq!(renamed["indexUid"], "old");
        let (_, earlier) = target.get(&format!("/tasks/{}", added["uid"])).await;
        assert_eq!(earlier["indexUid"], "new", "{earlier}");
        let (_, listed) = target
            .get("/tasks?indexUids=new&types=documentAdditionOrUpdate")
            .await;
        assert_eq!(listed["total"], 1, "{listed}");
        let (status, _) = target.get("/indexes/old").await;
        assert_eq!(status, 404);
        let (status, index) = target.get("/indexes/new").await;
        assert_eq!((status, &index["primaryKey"]), (200, &json!("id")));
        let (_, found) = target
            .post("/indexes/new/search", json!({"limit": 0}))
            .await;
        assert_eq!(found["estimatedTotalHits"], 30, "{found}");
    }
    // Writes and searches under the new name; a swap that renames.
    for target in [&meili, &reference] {
        target
            .ok(Method::POST, "/indexes/new/documents", json!([{"id": 99}]))
            .await;
        let task = target
            .ok(
                Method::POST,
                "/swap-indexes",
                json!([{"indexes": ["new", "newest"], "rename": true}]),
            )
            .await;
        assert_eq!(
            task["details"],
            json!({"swaps": [{"indexes": ["new", "newest"], "rename": true}]})
        );
    }
    gateway
        .wait_version(cp.current_topology().await.version)
        .await;
    for target in [&meili, &reference] {
        let (_, found) = target
            .post("/indexes/newest/search", json!({"limit": 0}))
            .await;
        assert_eq!(found["estimatedTotalHits"], 31, "{found}");
        let (status, _) = target.get("/indexes/new").await;
        assert_eq!(status, 404);
    }
    // Refusals: taken names are failed tasks, bad ones 400s, each as one node's.
    for (method, path, body) in [
        (Method::PATCH, "/indexes/newest", json!({"uid": "other"})),
        (Method::PATCH, "/indexes/ghost", json!({"uid": "spirit"})),
        (
            Method::POST,
            "/swap-indexes",
            json!([{"indexes": ["newest", "other"], "rename": true}]),
        ),
        (
            Method::POST,
            "/swap-indexes",
            json!([{"indexes": ["ghost", "spirit"], "rename": true}]),
        ),
        (Method::PATCH, "/indexes/newest", json!({"uid": "bad uid!"})),
        (Method::PATCH, "/indexes/newest", json!({"uid": 5})),
        (Method::PATCH, "/indexes/newest", json!({"createdAt": 5})),
        (
            Method::POST,
            "/swap-indexes",
            json!([{"indexes": ["newest", "other"], "rename": "x"}]),
        ),
        (
            Method::POST,
            "/swap-indexes",
            json!([{"indexes": ["newest", "bad uid!"]}]),
        ),
    ] {
        let mut answers = Vec::new();
        for target in [&meili, &reference] {
            let (status, answer) = target.json(method.clone(), path, body.clone()).await;
            let answer = if status == 202 {
                let task = target.wait_task(&answer).await;
                json!({"status": task["status"], "error": task["error"], "details": task["details"]})
            } else {
                answer
            };
            answers.push((status, answer));
        }
        assert_eq!(answers[0], answers[1], "{method} {path} {body}");
    }
}

/// Writes streaming in while an index is renamed, then swapped with one of another shard
/// count: every acknowledged document is found afterwards, under the name it was written
/// to or the one the index took (writes are held while the nodes rename or swap, so none
/// reaches a node by a name the node gave away, where it would make an empty index).
#[tokio::test]
async fn writes_during_a_rename_or_a_swap_are_kept() {
    let (_dir, cp, _nodes, gateway) = fleet(3).await;
    let meili = Meili::new(&gateway.url);
    meili.create_index("old").await;
    meili
        .create_index_with("other", json!({"miroirShardCount": 5}))
        .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Four writers, one document a write, each its own ids; `target` is the name written.
    let writers = |target: &'static str, first: u64| {
        stop.store(false, std::sync::atomic::Ordering::SeqCst);
        (0..4u64)
            .map(|w| {
                let (url, stop) = (gateway.url.clone(), stop.clone());
                tokio::spawn(async move {
                    let meili = Meili::new(&url);
                    let mut acknowledged = Vec::new();
                    for i in 0.. {
                        if stop.load(std::sync::atomic::Ordering::SeqCst) {
                            break;
                        }
                        let id = first + w * 100_000 + i;
                        let path = format!("/indexes/{target}/documents");
                        let (status, task) = meili.post(&path, json!([{"id": id}])).await;
                        if status == 202 {
                            acknowledged.push((id, task));
                        }
                    }
                    acknowledged
                })
            })
            .collect::<Vec<_>>()
    };
    // Stops the writers; the ids of their writes, each task checked succeeded.
    let finish = |handles: Vec<tokio::task::JoinHandle<Vec<(u64, serde_json::Value)>>>| {
        let (meili, stop) = (&meili, stop.clone());
        async move {
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            let mut ids = Vec::new();
            for handle in handles {
                for (id, task) in handle.await.unwrap() {
                    let task = meili.wait_task(&task).await;
                    assert_eq!(task["status"], "succeeded", "{task}");
                    ids.push(id);
                }
            }
            ids.sort_unstable();
            ids
        }
    };
    // Every document id the gateway finds under these names.
    let kept = |uids: &[&'static str]| {
        let uids = uids.to_vec();
        let meili = &meili;
        async move {
            let mut ids = Vec::new();
            for uid in uids {
                let (status, page) = meili
                    .get(&format!("/indexes/{uid}/documents?fields=id&limit=100000"))
                    .await;
                if status == 404 {
                    continue;
                }
                let results = page["results"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{uid}: {page}"));
                ids.extend(results.iter().map(|d| d["id"].as_u64().unwrap()));
            }
            ids.sort_unstable();
            ids
        }
    };

    // Renames, one after another, while four writers write to the name being given up;
    // they stop as soon as the gateway serves the new name, so (almost) no write makes a
    // new index by the old name, which would make a node's stray one visible again. (Writes
    // that waited out a rename do make one, as they would on one Meilisearch.)
    let names = ["old", "r1", "r2", "r3", "new"];
    let mut written = Vec::new();
    for (round, pair) in names.windows(2).enumerate() {
        let (from, to) = (pair[0], pair[1]);
        let handles = writers(from, round as u64 * 10_000);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let path = format!("/indexes/{from}");
        let renamed = meili.json(Method::PATCH, &path, json!({"uid": to}));
        let new_name_served = async {
            while meili.get(&format!("/indexes/{to}")).await.0 != 200 {}
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        };
        let ((status, task), ()) = tokio::join!(renamed, new_name_served);
        assert_eq!(status, 202, "{task}");
        let task = meili.wait_task(&task).await;
        assert_eq!(task["status"], "succeeded", "{task}");
        written.extend(finish(handles).await);
        written.sort_unstable();
        gateway
            .wait_version(cp.current_topology().await.version)
            .await;
        assert_eq!(
            kept(&names).await,
            written,
            "rename {from} → {to}: every acknowledged write is kept"
        );
    }
    assert!(
        written.len() > 30,
        "too few writes to mean anything: {written:?}"
    );
    // A swap with an index of another shard count while four writers write to `new`.
    let handles = writers("new", 1_000_000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    meili
        .ok(
            Method::POST,
            "/swap-indexes",
            json!([{"indexes": ["new", "other"]}]),
        )
        .await;
    let mut all = finish(handles).await;
    gateway
        .wait_version(cp.current_topology().await.version)
        .await;
    all.extend(written);
    all.sort_unstable();
    assert_eq!(
        kept(&["old", "r1", "r2", "r3", "new", "other"]).await,
        all,
        "every acknowledged write is kept, by either name"
    );
}
