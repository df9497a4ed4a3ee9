//! Settings through the gateway: applied on every node, Miroir's own kept and hidden.

use crate::gateway_indexes::fleet;
use miroir_integration_tests::{DEFAULT_RANKING_RULES, Meili};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn settings_reach_every_node_and_miroirs_own_stay_hidden() {
    let (_dir, cp, nodes, gateway) = fleet(2).await;
    let meili = Meili::new(&gateway.url);
    meili.create_index("movies").await;
    gateway
        .wait_version(cp.current_topology().await.version)
        .await;

    let task = meili
        .ok(
            Method::PATCH,
            "/indexes/movies/settings",
            json!({"filterableAttributes": ["genre"], "sortableAttributes": ["year"]}),
        )
        .await;
    assert_eq!(task["type"], "settingsUpdate");
    assert_eq!(
        task["details"],
        json!({"filterableAttributes": ["genre"], "sortableAttributes": ["year"]})
    );
    for node in &nodes {
        let (_, filterable) = Meili::new(&node.url)
            .get("/indexes/movies/settings/filterable-attributes")
            .await;
        assert_eq!(
            filterable,
            json!(["genre", "_miroir_shard"]),
            "the node keeps Miroir's attribute"
        );
    }
    let (_, settings) = meili.get("/indexes/movies/settings").await;
    assert_eq!(
        settings["filterableAttributes"],
        json!(["genre"]),
        "clients read what one Meilisearch would"
    );
    assert_eq!(settings["sortableAttributes"], json!(["year"]));
    assert_eq!(settings["rankingRules"], json!(DEFAULT_RANKING_RULES));

    meili
        .ok(
            Method::PUT,
            "/indexes/movies/settings/ranking-rules",
            json!(["words", "sort"]),
        )
        .await;
    let (_, rules) = meili.get("/indexes/movies/settings/ranking-rules").await;
    assert_eq!(rules, json!(["words", "sort"]));

    meili
        .ok(Method::DELETE, "/indexes/movies/settings", json!(null))
        .await;
    let (_, settings) = meili.get("/indexes/movies/settings").await;
    assert_eq!(settings["filterableAttributes"], json!([]));
    for node in &nodes {
        let (_, filterable) = Meili::new(&node.url)
            .get("/indexes/movies/settings/filterable-attributes")
            .await;
        assert_eq!(
            filterable,
            json!(["_miroir_shard"]),
            "a reset never removes Miroir's attribute"
        );
    }
    let (status, error) = meili
        .json(
            Method::PATCH,
            "/indexes/movies/settings",
            json!({"nope": 1}),
        )
        .await;
    assert_eq!((status, error["code"].as_str()), (400, Some("bad_request")));
    let (status, _) = meili.get("/indexes/movies/settings/nope").await;
    assert_eq!(status, 404);
}

/// Issue 21, point 3: Meilisearch 1.50's `chat` and `foreignKeys` settings and their
/// sub-routes: refused at once while their feature is off, `chat` then committed like
/// any setting; `foreignKeys` refused by Miroir (joins would miss documents of a sharded
/// foreign index).
#[tokio::test]
async fn chat_and_foreign_keys_settings_as_meilisearch_1_50() {
    if !miroir_integration_tests::real_meilisearch(
        "chat_and_foreign_keys_settings_as_meilisearch_1_50",
    ) {
        return;
    }
    let (_dir, cp, _nodes, gateway) = fleet(2).await;
    let single = miroir_integration_tests::TestNode::start().await;
    let (meili, reference) = (Meili::new(&gateway.url), Meili::new(&single.url));
    for target in [&meili, &reference] {
        target.create_index("movies").await;
    }
    gateway
        .wait_version(cp.current_topology().await.version)
        .await;
    let chat = json!({"description": "Films", "documentTemplate": "{{ doc.title }}"});
    let steps = [
        (
            Method::PATCH,
            "/indexes/movies/settings",
            json!({"chat": chat}),
        ),
        (Method::PATCH, "/indexes/movies/settings/chat", chat.clone()),
        (
            Method::PUT,
            "/indexes/movies/settings/foreign-keys",
            json!([{"foreignIndexUid": "people", "fieldName": "director"}]),
        ),
        (Method::GET, "/indexes/movies/settings/chat", Value::Null),
        (
            Method::GET,
            "/indexes/movies/settings/foreign-keys",
            Value::Null,
        ),
        (
            Method::PATCH,
            "/experimental-features",
            json!({"chatCompletions": true}),
        ),
        (
            Method::PATCH,
            "/indexes/movies/settings",
            json!({"chat": chat}),
        ),
        (Method::GET, "/indexes/movies/settings/chat", Value::Null),
        (Method::GET, "/indexes/movies/settings", Value::Null),
        (Method::DELETE, "/indexes/movies/settings/chat", Value::Null),
        (Method::GET, "/indexes/movies/settings/chat", Value::Null),
        (Method::DELETE, "/indexes/movies/settings", Value::Null),
        (Method::GET, "/indexes/movies/settings", Value::Null),
    ];
    for (method, path, body) in steps {
        let mut answers = Vec::new();
        for target in [&meili, &reference] {
            let (status, mut answer) = if body.is_null() {
                target.send(method.clone(), path, None, None).await
            } else {
                target.json(method.clone(), path, body.clone()).await
            };
            if status == 202 {
                let task = target.wait_task(&answer).await;
                answer = json!({"status": task["status"], "details": task["details"]});
            }
            answers.push((status, answer));
        }
        assert_eq!(answers[0], answers[1], "{method} {path}");
    }
    // With the feature on, Miroir refuses foreign keys rather than join from part of the
    // foreign index.
    meili
        .json(
            Method::PATCH,
            "/experimental-features",
            json!({"foreignKeys": true}),
        )
        .await;
    let (status, refused) = meili
        .json(
            Method::PUT,
            "/indexes/movies/settings/foreign-keys",
            json!([{"foreignIndexUid": "people", "fieldName": "director"}]),
        )
        .await;
    assert_eq!(
        (status, &refused["code"]),
        (501, &json!("miroir_not_supported")),
        "{refused}"
    );
}
