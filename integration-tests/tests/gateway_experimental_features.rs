//! `/experimental-features` through the gateway: a change reaches every node (and nodes
//! that join or drift later), answers and refusals read as one Meilisearch's, and a
//! feature turned on takes effect on every node a search reaches.

use crate::gateway_indexes::fleet_with;
use miroir_integration_tests::{ControlPlaneOptions, Meili, TestNode, wait_for};
use miroir_proto::pb::NodeState;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

const ROUTE: &str = "/experimental-features";

/// A node's `containsFilter`, read from the node itself.
async fn contains_filter_on(url: &str) -> Option<bool> {
    let (status, features) = Meili::new(url).get(ROUTE).await;
    assert_eq!(status, 200, "{features}");
    features["containsFilter"].as_bool()
}

#[tokio::test]
async fn experimental_features_reach_every_node_and_stay_there() {
    let mut options = ControlPlaneOptions::default();
    options
        .extra_args
        .extend(["--key-sync-interval".into(), "300ms".into()]);
    let (_dir, cp, nodes, gateway) = fleet_with(3, options).await;
    let meili = Meili::new(&gateway.url);
    let single = TestNode::start().await;
    let reference = Meili::new(&single.url);

    // Reads and refusals are one Meilisearch's; a refused change reaches no node.
    assert_eq!(meili.get(ROUTE).await, reference.get(ROUTE).await);
    for bad in [
        json!({"notAFeature": true}),
        json!({"containsFilter": "yes"}),
        json!([]),
    ] {
        let through_gateway = meili.json(Method::PATCH, ROUTE, bad.clone()).await;
        assert_eq!(through_gateway.0, 400, "{bad}: {}", through_gateway.1);
        assert_eq!(
            through_gateway,
            reference.json(Method::PATCH, ROUTE, bad.clone()).await,
            "{bad}"
        );
    }
    for node in &nodes {
        assert_eq!(contains_filter_on(&node.url).await, Some(false));
    }

    // Before the feature, `CONTAINS` is refused as one Meilisearch refuses it.
    let documents: Vec<Value> = (0..30)
        .map(|i| json!({"id": i, "title": format!("{} {i}", ["kefir saga", "the doggo", "a kefirette"][i % 3])}))
        .collect();
    for target in [&meili, &reference] {
        target.create_index("books").await;
        target
            .ok(
                Method::PATCH,
                "/indexes/books/settings",
                json!({"filterableAttributes": ["title"]}),
            )
            .await;
        target
            .ok(Method::POST, "/indexes/books/documents", json!(documents))
            .await;
    }
    let query = json!({"filter": "title CONTAINS kefir", "limit": 100});
    let refused = meili.post("/indexes/books/search", query.clone()).await;
    assert_eq!(refused.0, 400, "{}", refused.1);
    assert_eq!(
        refused,
        reference.post("/indexes/books/search", query.clone()).await
    );

    // Turned on through the gateway: every node has it before the answer.
    let patch = json!({"containsFilter": true, "metrics": null});
    let (status, answer) = meili.json(Method::PATCH, ROUTE, patch.clone()).await;
    assert_eq!(
        (status, &answer),
        (200, &reference.json(Method::PATCH, ROUTE, patch).await.1)
    );
    assert_eq!(answer["containsFilter"], true);
    for node in &nodes {
        assert_eq!(
            contains_filter_on(&node.url).await,
            Some(true),
            "{}",
            node.url
        );
    }
    assert_eq!(meili.get(ROUTE).await.1, answer);
    let ids = |answer: &Value| {
        let mut ids: Vec<u64> = answer["hits"]
            .as_array()
            .map(|hits| hits.iter().filter_map(|h| h["id"].as_u64()).collect())
            .unwrap_or_default();
        ids.sort_unstable();
        ids
    };
    let (status, found) = meili.post("/indexes/books/search", query.clone()).await;
    assert_eq!(status, 200, "{found}");
    let (_, expected) = reference.post("/indexes/books/search", query).await;
    assert_eq!(ids(&found), ids(&expected));
    assert_eq!(
        ids(&found).len(),
        20,
        "kefir saga and kefirette titles, on every node"
    );

    // A node changed behind Miroir's back is set back.
    let (status, _) = Meili::new(&nodes[0].url)
        .json(Method::PATCH, ROUTE, json!({"containsFilter": false}))
        .await;
    assert_eq!(status, 200);
    wait_for(
        "feature sync to restore containsFilter",
        Duration::from_secs(20),
        || {
            let url = nodes[0].url.clone();
            async move { (contains_filter_on(&url).await == Some(true)).then_some(()) }
        },
    )
    .await;

    // A node that joins later gets the fleet's features once active.
    let (status, _) = meili.delete("/indexes/books").await;
    assert_eq!(status, 202);
    wait_for("the index to be gone", Duration::from_secs(20), || {
        let cp = &cp;
        async move { cp.current_topology().await.indexes.is_empty().then_some(()) }
    })
    .await;
    let joining = TestNode::start().await;
    assert_eq!(contains_filter_on(&joining.url).await, Some(false));
    cp.add_node("meili-3", &joining.url, 0).await.unwrap();
    cp.wait_node_state("meili-3", NodeState::Active).await;
    wait_for(
        "the new node to get containsFilter",
        Duration::from_secs(20),
        || {
            let url = joining.url.clone();
            async move { (contains_filter_on(&url).await == Some(true)).then_some(()) }
        },
    )
    .await;
}

/// `/chats` (behind `chatCompletions`): workspaces reach every node, and reads, changes and
/// refusals are one Meilisearch's; chat completions are refused (a node would search only
/// its own shards).
#[tokio::test]
async fn chat_workspaces_are_kept_on_every_node() {
    // Miroir's test node has no chats.
    if !miroir_integration_tests::real_meilisearch("chat_workspaces_are_kept_on_every_node") {
        return;
    }
    let (_dir, _cp, nodes, gateway) = fleet_with(3, ControlPlaneOptions::default()).await;
    let single = TestNode::start().await;
    let (meili, reference) = (Meili::new(&gateway.url), Meili::new(&single.url));
    let settings = json!({"source": "openAi", "apiKey": "sk-test-0123456789",
        "prompts": {"system": "You help."}});
    let requests = [
        (Method::GET, "/chats", Value::Null),
        (Method::PATCH, "/chats/ws1/settings", settings.clone()),
        (Method::PATCH, ROUTE, json!({"chatCompletions": true})),
        (Method::PATCH, "/chats/ws1/settings", settings.clone()),
        (
            Method::PATCH,
            "/chats/ws1/settings",
            json!({"source": "nope"}),
        ),
        (Method::GET, "/chats", Value::Null),
        (Method::GET, "/chats?limit=1&offset=0", Value::Null),
        (Method::GET, "/chats/ws1", Value::Null),
        (Method::GET, "/chats/ws1/settings", Value::Null),
        (Method::GET, "/chats/nope", Value::Null),
        (Method::DELETE, "/chats/ws1/settings", Value::Null),
        (Method::GET, "/chats/ws1/settings", Value::Null),
        (Method::DELETE, "/chats/ws1", Value::Null),
        (Method::GET, "/chats/ws1", Value::Null),
        (Method::PATCH, "/chats/ws2/settings", settings),
    ];
    for (method, path, body) in requests {
        let mut answers = Vec::new();
        for target in [&meili, &reference] {
            let answer = if body.is_null() {
                target.send(method.clone(), path, None, None).await
            } else {
                target.json(method.clone(), path, body.clone()).await
            };
            answers.push(answer);
        }
        assert_eq!(answers[0], answers[1], "{method} {path}");
    }
    for node in &nodes {
        let (status, workspace) = Meili::new(&node.url).get("/chats/ws2").await;
        assert_eq!((status, workspace), (200, json!({"uid": "ws2"})));
    }
    let (status, refused) = meili
        .post(
            "/chats/ws2/chat/completions",
            json!({"model": "x", "messages": []}),
        )
        .await;
    assert_eq!(
        (status, &refused["code"]),
        (501, &json!("miroir_not_supported"))
    );
}
