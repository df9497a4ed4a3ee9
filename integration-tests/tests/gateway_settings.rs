//! Settings through the gateway: applied on every node, Miroir's own kept and hidden.

use crate::gateway_indexes::fleet;
use miroir_integration_tests::differential::{BAD_SETTINGS, settings_method};
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
    let sides = BesideOneNode::start("movies").await;
    let (meili, reference) = (&sides.meili, &sides.reference);
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
        for target in [meili, reference] {
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

/// Issue 24, point 2: a settings change one Meilisearch refuses at once (a value of the
/// wrong type or out of range, an unknown member, a ranking rule it cannot read, an
/// embedder's missing or unavailable field, a feature that is off) is refused at once
/// through the gateway too, with the same status and the same error body, instead of a
/// 202 and a failed task after the two-phase commit; what one node takes, the fleet takes.
#[tokio::test]
async fn bad_settings_are_refused_at_once_as_one_meilisearch_refuses_them() {
    if !miroir_integration_tests::real_meilisearch(
        "bad_settings_are_refused_at_once_as_one_meilisearch_refuses_them",
    ) {
        return;
    }
    let sides = BesideOneNode::start("movies").await;
    let (meili, reference) = (&sides.meili, &sides.reference);
    // Changes one node takes (kept apart from the fuzzer's, which must not change the
    // index it searches), then every refusal the fuzzer draws from.
    let taken: &[(&str, &str)] = &[
        (
            "",
            r#"{"rankingRules": ["words", "wordPosition", "x:asc:desc", ":asc"]}"#,
        ),
        (
            "",
            r#"{"typoTolerance": {"enabled": null, "disableOnNumbers": true}}"#,
        ),
        ("", r#"{"faceting": {"maxValuesPerFacet": 0}}"#),
        (
            "",
            r#"{"embedders": {"x": {"source": "userProvided", "dimensions": 3}, "y": null}}"#,
        ),
        ("/displayed-attributes", "null"),
    ];
    let mut refused = 0;
    for (route, body) in taken.iter().chain(BAD_SETTINGS) {
        let method = settings_method(route);
        let path = format!("/indexes/movies/settings{route}");
        let mut answers = Vec::new();
        for target in [meili, reference] {
            let body = (!body.is_empty()).then(|| body.as_bytes().to_vec());
            let (status, mut answer) = target
                .send(method.clone(), &path, Some("application/json"), body)
                .await;
            if status == 202 {
                let task = target.wait_task(&answer).await;
                answer = json!({"status": task["status"], "error": task["error"]["code"]});
            }
            answers.push((status, answer));
        }
        assert_eq!(answers[0], answers[1], "{method} {path} {body}");
        refused += usize::from(answers[1].0 == 400);
    }
    // Most of them are refusals; a few are taken, by both alike.
    assert!(refused > 80, "{refused} refused");
    // Composite embedders and fragments, behind their features: a nested embedder's source
    // and fields, the document template of the indexing one, fragments' templates and the
    // request's placeholder.
    for target in [meili, reference] {
        let (status, features) = target
            .json(
                Method::PATCH,
                "/experimental-features",
                json!({"compositeEmbedders": true, "multimodal": true}),
            )
            .await;
        assert_eq!(status, 200, "{features}");
    }
    sides.wait_gateway().await;
    let ollama = r#"{"source": "ollama", "model": "m"}"#;
    let rest = r#""source": "rest", "url": "http://a", "response": "{{embedding}}""#;
    let behind_features = [
        format!(r#"{{"x": {{"source": "composite", "searchEmbedder": {{"source": "ollama", "model": "m", "distribution": {{"mean": 0.5, "sigma": 0.5}}}}, "indexingEmbedder": {ollama}}}}}"#),
        format!(r#"{{"x": {{"source": "composite", "searchEmbedder": {ollama}, "indexingEmbedder": {{"source": "ollama", "model": "m", "binaryQuantized": true}}}}}}"#),
        format!(r#"{{"x": {{"source": "composite", "searchEmbedder": {{"source": "huggingFace", "documentTemplate": "x"}}, "indexingEmbedder": {ollama}}}}}"#),
        format!(r#"{{"x": {{"source": "composite", "searchEmbedder": {{{rest}, "request": "{{{{text}}}}", "indexingFragments": {{}}}}, "indexingEmbedder": {ollama}}}}}"#),
        format!(r#"{{"x": {{"source": "composite", "searchEmbedder": {{"source": "ollama", "model": "m", "searchEmbedder": {{}}}}, "indexingEmbedder": {ollama}}}}}"#),
        r#"{"x": {"source": "composite", "indexingEmbedder": {"source": "ollama", "model": "m"}, "searchEmbedder": {"source": "ollama"}}}"#.to_owned(),
        r#"{"x": {"source": "composite", "searchEmbedder": {"source": "userProvided", "dimensions": 3}, "indexingEmbedder": {"source": "composite"}}}"#.to_owned(),
        format!(r#"{{"x": {{"source": "composite", "searchEmbedder": {{"source": null}}, "indexingEmbedder": {ollama}}}}}"#),
        format!(r#"{{"x": {{"source": "composite", "searchEmbedder": null, "indexingEmbedder": {ollama}}}}}"#),
        format!(r#"{{"x": {{"source": "composite", "searchEmbedder": {ollama}, "indexingEmbedder": {{"source": "ollama", "model": "m", "documentTemplate": "{{% if %}}"}}}}}}"#),
        format!(r#"{{"x": {{"source": "composite", "model": "x", "searchEmbedder": {ollama}, "indexingEmbedder": {ollama}}}}}"#),
        format!(r#"{{"x": {{{rest}, "request": "{{{{text}}}}", "indexingFragments": {{"a": {{"value": "x"}}}}, "searchFragments": {{"b": {{"value": "y"}}}}}}}}"#),
        format!(r#"{{"x": {{{rest}, "request": "{{{{fragment}}}}", "indexingFragments": {{"a": {{"value": "{{% if %}}"}}}}, "searchFragments": {{"b": {{"value": "y"}}}}}}}}"#),
        format!(r#"{{"x": {{{rest}, "request": "{{{{fragment}}}}", "indexingFragments": {{"a": {{"x": 1}}}}}}}}"#),
    ];
    for body in &behind_features {
        let mut answers = Vec::new();
        for target in [meili, reference] {
            let (status, answer) = target
                .send(
                    Method::PATCH,
                    "/indexes/movies/settings/embedders",
                    Some("application/json"),
                    Some(body.as_bytes().to_vec()),
                )
                .await;
            answers.push((status, answer));
        }
        assert_eq!(answers[1].0, 400, "{body}: {}", answers[1].1);
        assert_eq!(answers[0], answers[1], "{body}");
    }
}

/// A 2-node fleet beside one real node, each with the same empty index: what the gateway
/// answers is compared with what the node answers.
struct BesideOneNode {
    _dir: tempfile::TempDir,
    cp: miroir_integration_tests::ControlPlane,
    _nodes: Vec<miroir_integration_tests::TestNode>,
    gateway: miroir_integration_tests::Gateway,
    _single: miroir_integration_tests::TestNode,
    meili: Meili,
    reference: Meili,
}

impl BesideOneNode {
    async fn start(index: &str) -> Self {
        let (_dir, cp, _nodes, gateway) = fleet(2).await;
        let single = miroir_integration_tests::TestNode::start().await;
        let sides = Self {
            meili: Meili::new(&gateway.url),
            reference: Meili::new(&single.url),
            _dir,
            cp,
            _nodes,
            gateway,
            _single: single,
        };
        for target in [&sides.meili, &sides.reference] {
            target.create_index(index).await;
        }
        sides.wait_gateway().await;
        sides
    }

    /// Until the gateway has applied the control plane's newest topology.
    async fn wait_gateway(&self) {
        self.gateway
            .wait_version(self.cp.current_topology().await.version)
            .await;
    }
}
