//! The settings two-phase commit (issue 4): versions, the hidden settings, nodes that
//! refuse or time out, out-of-band changes repaired, the read floor, and a control plane
//! killed between propose and commit.

use crate::gateway_indexes::{fleet_with, test_node_fleet_in_groups};
use miroir_integration_tests::{
    ControlPlane, ControlPlaneOptions, DEFAULT_RANKING_RULES, MASTER_KEY, Meili, TestNode, ctl,
    wait_for,
};
use miroir_proto::pb;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// Control-plane flags for these tests: quick health checks, a short bound on failing
/// nodes, and the given drift interval.
fn options(drift: &str) -> ControlPlaneOptions {
    let mut options = ControlPlaneOptions::default();
    options.extra_args.extend(
        [
            "--settings-commit-timeout",
            "2s",
            "--settings-drift-interval",
            drift,
            "--node-timeout",
            "1s",
        ]
        .map(String::from),
    );
    options
}

/// A GET through the gateway: status, the settings headers, body.
async fn get_with_headers(
    url: &str,
    path: &str,
    floor: Option<u64>,
) -> (u16, Option<u64>, bool, Value) {
    let mut request = reqwest::Client::new()
        .get(format!("{url}{path}"))
        .bearer_auth(MASTER_KEY);
    if let Some(floor) = floor {
        request = request.header("X-Miroir-Min-Settings-Version", floor);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let version = response
        .headers()
        .get("x-miroir-settings-version")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let inconsistent = response
        .headers()
        .get("x-miroir-settings-inconsistent")
        .is_some_and(|v| v == "true");
    (
        status,
        version,
        inconsistent,
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn settings_report(cp: &ControlPlane, uid: &str) -> pb::IndexSettingsReport {
    cp.admin()
        .await
        .get_index_settings(pb::GetIndexSettingsRequest { uid: uid.into() })
        .await
        .expect("GetIndexSettings")
        .into_inner()
}

/// Waits until the index's committed settings version is `version` and every node
/// holding it matches.
async fn wait_committed_everywhere(cp: &ControlPlane, uid: &str, version: u64) {
    wait_for(
        &format!("settings version {version} of {uid} on every node"),
        Duration::from_secs(30),
        || async {
            let report = settings_report(cp, uid).await;
            (report.settings_version == version && report.nodes.iter().all(|n| n.matches))
                .then_some(())
        },
    )
    .await;
}

async fn create_movies(meili: &Meili, cp: &ControlPlane, extra: Value) {
    let mut body = json!({"uid": "movies", "primaryKey": "id"});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    meili.ok(Method::POST, "/indexes", body).await;
    // Index creation commits Miroir's hidden settings as version 1.
    wait_committed_everywhere(cp, "movies", 1).await;
}

#[tokio::test]
async fn settings_commit_as_versions_and_clients_read_what_one_meilisearch_would() {
    let (_dir, cp, nodes, gateway) = fleet_with(3, options("60s")).await;
    let meili = Meili::new(&gateway.url);
    create_movies(&meili, &cp, json!({})).await;
    let (_, version, inconsistent, _) =
        get_with_headers(&gateway.url, "/indexes/movies/settings", None).await;
    assert_eq!((version, inconsistent), (Some(1), false));

    // The same writes on one plain node, for comparison.
    let single = TestNode::start().await;
    let reference = Meili::new(&single.url);
    reference
        .ok(
            Method::POST,
            "/indexes",
            json!({"uid": "movies", "primaryKey": "id"}),
        )
        .await;
    let writes = [
        (
            Method::PATCH,
            "/indexes/movies/settings",
            json!({"filterableAttributes": ["genre"], "faceting": {"maxValuesPerFacet": 2}}),
        ),
        (
            Method::PUT,
            "/indexes/movies/settings/ranking-rules",
            json!(["words", "sort", "typo"]),
        ),
        (
            Method::PATCH,
            "/indexes/movies/settings/faceting",
            json!({"sortFacetValuesBy": {"*": "count"}}),
        ),
    ];
    for (i, (method, path, body)) in writes.iter().enumerate() {
        let task = meili.ok(method.clone(), path, body.clone()).await;
        assert_eq!(task["type"], "settingsUpdate");
        assert!(task["startedAt"].is_string() && task["duration"].is_string());
        reference.ok(method.clone(), path, body.clone()).await;
        // Each change is one version, and the task succeeded only once it was committed
        // on every node.
        let report = settings_report(&cp, "movies").await;
        assert_eq!(report.settings_version, 2 + i as u64, "{path}");
        assert!(report.nodes.iter().all(|n| n.matches), "{report:?}");
        let (_, version, _, _) = get_with_headers(&gateway.url, "/indexes/movies", None).await;
        assert_eq!(version, Some(2 + i as u64));
    }
    let (_, through_gateway) = meili.get("/indexes/movies/settings").await;
    let (_, on_one_node) = reference.get("/indexes/movies/settings").await;
    assert_eq!(
        through_gateway, on_one_node,
        "clients read what one Meilisearch would"
    );
    for node in &nodes {
        let (_, on_node) = Meili::new(&node.url).get("/indexes/movies/settings").await;
        let mut filterable: Vec<&str> = on_node["filterableAttributes"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        filterable.sort_unstable();
        assert_eq!(filterable, ["_miroir_shard", "genre"]);
        assert_eq!(
            on_node["faceting"]["maxValuesPerFacet"],
            json!(miroir_proto::settings::NODE_MAX_VALUES_PER_FACET),
            "nodes return every facet value so the merge is exact"
        );
    }

    // The merge applies the client's maxValuesPerFacet and count order to values summed
    // over every node.
    let documents: Vec<Value> = (0..60)
        .map(|i| {
            let genre = match i % 10 {
                0..=4 => json!("drama"),
                5..=7 => json!("comedy"),
                _ => json!(format!("rare-{i}")),
            };
            json!({"id": i, "genre": genre})
        })
        .collect();
    meili
        .ok(Method::POST, "/indexes/movies/documents", json!(documents))
        .await;
    reference
        .ok(Method::POST, "/indexes/movies/documents", json!(documents))
        .await;
    let query = json!({"q": "", "facets": ["genre"], "limit": 0});
    let (_, merged) = meili.post("/indexes/movies/search", query.clone()).await;
    let (_, single_answer) = reference.post("/indexes/movies/search", query).await;
    assert_eq!(
        merged["facetDistribution"],
        json!({"genre": {"drama": 30, "comedy": 18}})
    );
    assert_eq!(
        merged["facetDistribution"],
        single_answer["facetDistribution"]
    );

    // A full reset keeps Miroir's settings on nodes and shows Meilisearch's defaults.
    meili
        .ok(Method::DELETE, "/indexes/movies/settings", json!(null))
        .await;
    reference
        .ok(Method::DELETE, "/indexes/movies/settings", json!(null))
        .await;
    let (_, through_gateway) = meili.get("/indexes/movies/settings").await;
    let (_, on_one_node) = reference.get("/indexes/movies/settings").await;
    assert_eq!(through_gateway, on_one_node);
    let (_, filterable) = Meili::new(&nodes[0].url)
        .get("/indexes/movies/settings/filterable-attributes")
        .await;
    assert_eq!(filterable, json!(["_miroir_shard"]));
    wait_committed_everywhere(&cp, "movies", 5).await;
}

#[tokio::test]
async fn a_node_that_refuses_or_times_out_fails_the_change_and_nothing_commits() {
    // Test nodes: refusals and slow settings routes are injected faults.
    let (_dir, cp, nodes, gateway) = test_node_fleet_in_groups(&[0, 0], options("1s")).await;
    let meili = Meili::new(&gateway.url);
    create_movies(&meili, &cp, json!({})).await;

    // meili-1 refuses the change: the task fails naming it, version 1 stays, and meili-0,
    // which applied it, is brought back to the committed settings.
    nodes[1].set_faults(json!({"failSettings": true})).await;
    let (status, enqueued) = meili
        .json(
            Method::PUT,
            "/indexes/movies/settings/ranking-rules",
            json!(["words"]),
        )
        .await;
    assert_eq!(status, 202);
    let task = meili.wait_task(&enqueued).await;
    assert_eq!(task["status"], "failed", "{task}");
    assert!(
        task["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("meili-1"),
        "{task}"
    );
    let (_, rules) = meili.get("/indexes/movies/settings/ranking-rules").await;
    assert_eq!(rules, json!(DEFAULT_RANKING_RULES));
    nodes[1].set_faults(json!({})).await;
    wait_committed_everywhere(&cp, "movies", 1).await;
    let (_, on_node) = Meili::new(&nodes[0].url)
        .get("/indexes/movies/settings/ranking-rules")
        .await;
    assert_eq!(
        on_node, rules,
        "the drift pass undid the uncommitted change"
    );

    // meili-0 answers its settings routes slower than the control plane waits: after the
    // bound the change fails, naming it.
    nodes[0]
        .set_faults(json!({"settingsLatencyMs": 1500}))
        .await;
    let (_, enqueued) = meili
        .json(
            Method::PUT,
            "/indexes/movies/settings/stop-words",
            json!(["the"]),
        )
        .await;
    let task = meili.wait_task(&enqueued).await;
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["error"]["code"], "miroir_settings_commit_failed");
    assert!(
        task["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("meili-0"),
        "{task}"
    );
    nodes[0].set_faults(json!({})).await;
    wait_committed_everywhere(&cp, "movies", 1).await;
    let (_, stop_words) = Meili::new(&nodes[1].url)
        .get("/indexes/movies/settings/stop-words")
        .await;
    assert_eq!(stop_words, json!([]));

    // With both nodes healthy the same change commits.
    meili
        .ok(
            Method::PUT,
            "/indexes/movies/settings/stop-words",
            json!(["the"]),
        )
        .await;
    wait_committed_everywhere(&cp, "movies", 2).await;
    wait_for(
        "the failures and repairs counted",
        Duration::from_secs(10),
        || async {
            let status = cp.status().await;
            (status.settings_failures >= 2 && status.settings_drift_repairs >= 1).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn out_of_band_changes_are_repaired_and_shown_by_ctl() {
    // A drift interval long enough that only the ctl repair acts in the first half.
    let (_dir, cp, nodes, gateway) = fleet_with(2, options("60s")).await;
    let meili = Meili::new(&gateway.url);
    create_movies(&meili, &cp, json!({})).await;
    let direct = Meili::new(&nodes[1].url);
    let (status, _) = direct
        .json(
            Method::PATCH,
            "/indexes/movies/settings",
            json!({"rankingRules": ["words"]}),
        )
        .await;
    assert_eq!(status, 202);
    wait_for(
        "the out-of-band change",
        Duration::from_secs(10),
        || async {
            let (_, rules) = direct.get("/indexes/movies/settings/ranking-rules").await;
            (rules == json!(["words"])).then_some(())
        },
    )
    .await;

    let shown = ctl(&cp.url(), &["index", "settings", "movies"]).await;
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    let line = |name: &str| {
        shown
            .stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert!(shown.stdout.contains("version 1"), "{}", shown.stdout);
    assert_eq!(line("meili-0")[2], "yes", "{}", shown.stdout);
    assert_eq!(line("meili-1")[2], "no", "{}", shown.stdout);

    let repaired = ctl(&cp.url(), &["index", "settings", "movies", "--repair"]).await;
    assert_eq!(repaired.code, 0, "{}", repaired.stderr);
    assert!(
        repaired.stdout.contains("repaired:  1 node(s)"),
        "{}",
        repaired.stdout
    );
    let (_, rules) = direct.get("/indexes/movies/settings/ranking-rules").await;
    assert_eq!(rules, json!(DEFAULT_RANKING_RULES));
    let json_report = ctl(
        &cp.url(),
        &["--output", "json", "index", "settings", "movies"],
    )
    .await;
    let report: Value = serde_json::from_str(&json_report.stdout).expect("JSON");
    assert!(
        report["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().all(|n| n["matches"] == true)),
        "{report}"
    );
    let status = ctl(&cp.url(), &["status"]).await;
    assert!(
        status
            .stdout
            .contains("1 node repair(s) by the drift reconciler"),
        "{}",
        status.stdout
    );
}

#[tokio::test]
async fn the_drift_reconciler_repairs_within_one_interval() {
    let (_dir, cp, nodes, gateway) = fleet_with(2, options("1s")).await;
    let meili = Meili::new(&gateway.url);
    create_movies(&meili, &cp, json!({})).await;
    let direct = Meili::new(&nodes[0].url);
    direct
        .ok(
            Method::PATCH,
            "/indexes/movies/settings",
            json!({"filterableAttributes": ["genre"], "searchableAttributes": ["title"]}),
        )
        .await;
    wait_for("the drift repair", Duration::from_secs(10), || async {
        let (_, settings) = direct.get("/indexes/movies/settings").await;
        (settings["searchableAttributes"] == json!(["*"])
            && settings["filterableAttributes"] == json!(["_miroir_shard"]))
        .then_some(())
    })
    .await;
    // The counter moves once the pass has verified the repaired node.
    wait_for(
        "the repair to be counted",
        Duration::from_secs(10),
        || async {
            let metrics = reqwest::get(format!("http://{}/metrics", cp.metrics))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            metrics
                .lines()
                .any(|l| l.starts_with("miroir_settings_drift_repairs_total") && !l.ends_with(" 0"))
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn reads_with_a_settings_floor_avoid_nodes_behind_it() {
    let (_dir, cp, mut nodes, gateway) = fleet_with(2, options("60s")).await;
    let meili = Meili::new(&gateway.url);
    // Both nodes hold every shard (RF 2 in one group).
    create_movies(&meili, &cp, json!({"miroirReplicationFactor": 2})).await;
    meili
        .ok(
            Method::POST,
            "/indexes/movies/documents",
            json!([{"id": 1, "title": "Alien"}, {"id": 2, "title": "Heat"}]),
        )
        .await;

    // meili-1 is down while version 2 commits: it stays behind.
    nodes[1].down().await;
    cp.wait_node_state("meili-1", pb::NodeState::Failed).await;
    meili
        .ok(
            Method::PUT,
            "/indexes/movies/settings/stop-words",
            json!(["the"]),
        )
        .await;
    nodes[1].up().await;
    cp.wait_node_state("meili-1", pb::NodeState::Active).await;
    // Its copies missed no write but are caught up before they serve again; its settings
    // are left to the drift repair (every 60 s here).
    let version = cp.wait_in_sync(Duration::from_secs(30)).await;
    gateway.wait_version(version).await;
    let report = settings_report(&cp, "movies").await;
    assert_eq!(report.settings_version, 2);
    let behind = report.nodes.iter().find(|n| n.node_id == "meili-1");
    assert!(behind.is_some_and(|n| n.verified_version < 2), "{report:?}");

    // At floor 2 only meili-0 can answer, and does, every time.
    for _ in 0..6 {
        let (status, version, _, body) =
            get_with_headers(&gateway.url, "/indexes/movies/search?q=", Some(2)).await;
        assert_eq!((status, version), (200, Some(2)), "{body}");
        assert_eq!(body["estimatedTotalHits"], 2);
    }
    let (status, _, _, body) =
        get_with_headers(&gateway.url, "/indexes/movies/search?q=", Some(3)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("miroir_settings_version_stale"))
    );
    // A multi-search's queries, each run on its own task, keep the request's floor.
    for (floor, expected) in [(3, 503), (2, 200)] {
        let response = reqwest::Client::new()
            .post(format!("{}/multi-search", gateway.url))
            .bearer_auth(MASTER_KEY)
            .header("X-Miroir-Min-Settings-Version", floor)
            .json(&json!({"queries": [
                {"indexUid": "movies", "q": ""},
                {"indexUid": "movies", "q": "heat"},
            ]}))
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, expected, "floor {floor}: {body}");
        if expected == 503 {
            assert_eq!(body["code"], "miroir_settings_version_stale", "{body}");
        }
    }

    // With meili-0 down too, nothing at version 2 remains: stale at the floor, served
    // without it.
    nodes[0].down().await;
    let version = cp.wait_node_state("meili-0", pb::NodeState::Failed).await;
    gateway.wait_version(version).await;
    let (status, _, _, body) =
        get_with_headers(&gateway.url, "/indexes/movies/search?q=", Some(2)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("miroir_settings_version_stale")),
        "{body}"
    );
    let (status, _, _, body) =
        get_with_headers(&gateway.url, "/indexes/movies/search?q=", None).await;
    assert_eq!(
        (status, body["estimatedTotalHits"].as_u64()),
        (200, Some(2)),
        "{body}"
    );
    let (status, _, _, body) =
        get_with_headers(&gateway.url, "/indexes/movies/search?q=", Some(0)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_control_plane_killed_between_propose_and_commit_resumes_the_change() {
    let options = options("60s");
    // Test nodes: slow settings routes are an injected fault.
    let (dir, mut cp, nodes, gateway) = test_node_fleet_in_groups(&[0, 0], options.clone()).await;
    let meili = Meili::new(&gateway.url);
    create_movies(&meili, &cp, json!({})).await;
    // meili-1 takes 800 ms per settings call (under the 1 s node timeout): the change sits
    // between propose and commit long enough to kill the leader there.
    nodes[1].set_faults(json!({"settingsLatencyMs": 800})).await;
    let (status, enqueued) = meili
        .json(
            Method::PUT,
            "/indexes/movies/settings/ranking-rules",
            json!(["words", "typo"]),
        )
        .await;
    assert_eq!(status, 202, "{enqueued}");
    wait_for(
        "the change to be proposed",
        Duration::from_secs(10),
        || async { cp.index("movies").await.pending_settings.map(|_| ()) },
    )
    .await;
    wait_for(
        "responses to say the settings are in flux",
        Duration::from_secs(5),
        || async {
            let (_, _, inconsistent, _) =
                get_with_headers(&gateway.url, "/indexes/movies/settings", None).await;
            inconsistent.then_some(())
        },
    )
    .await;
    cp.restart(dir.path(), &options).await;
    let index = cp.index("movies").await;
    assert_eq!(
        index.settings_version, 1,
        "nothing committed before the kill"
    );

    // The new leader proposes again and commits; the client's task succeeds.
    let task = meili.wait_task(&enqueued).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    wait_committed_everywhere(&cp, "movies", 2).await;
    for node in &nodes {
        let (_, rules) = Meili::new(&node.url)
            .get("/indexes/movies/settings/ranking-rules")
            .await;
        assert_eq!(rules, json!(["words", "typo"]));
    }
    let (_, version, inconsistent, _) =
        get_with_headers(&gateway.url, "/indexes/movies/settings", None).await;
    assert_eq!((version, inconsistent), (Some(2), false));
}
