//! Settings through the gateway: applied on every node, Miroir's own kept and hidden.

use crate::gateway_indexes::fleet;
use miroir_integration_tests::{DEFAULT_RANKING_RULES, Meili};
use reqwest::Method;
use serde_json::json;

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
