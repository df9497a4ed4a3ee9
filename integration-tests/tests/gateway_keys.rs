//! API keys through the gateway: created everywhere with one uid (so one value), enforced
//! by action and index, tenant tokens with search rules, and nodes kept in line.

use crate::gateway_indexes::fleet_with;
use base64::Engine;
use hmac::{Hmac, Mac};
use miroir_integration_tests::{ControlPlaneOptions, MASTER_KEY, Meili, wait_for};
use miroir_proto::keys::key_value;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

/// A client that authenticates with `token`.
async fn call(
    url: &str,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{url}{path}"))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A tenant token (HS256) signed with `key`.
fn tenant_token(key: &str, claims: Value) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let signed = format!(
        "{}.{}",
        b64(&json!({"alg": "HS256", "typ": "JWT"})),
        b64(&claims)
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(signed.as_bytes());
    let signature =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signed}.{signature}")
}

/// The uids of the keys a node holds.
async fn node_key_uids(url: &str) -> BTreeSet<String> {
    let (_, keys) = Meili::new(url).get("/keys?limit=1000").await;
    keys["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["uid"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn keys_are_the_same_everywhere_and_enforced() {
    let mut options = ControlPlaneOptions::default();
    options
        .extra_args
        .extend(["--key-sync-interval".into(), "300ms".into()]);
    let (_dir, cp, nodes, gateway) = fleet_with(2, options).await;
    let meili = Meili::new(&gateway.url);

    // The fleet's two default keys replace each node's own random ones.
    let (status, listed) = meili.get("/keys").await;
    assert_eq!(status, 200, "{listed}");
    let names: Vec<&str> = listed["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["name"].as_str())
        .collect();
    assert_eq!(names, ["Default Search API Key", "Default Admin API Key"]);
    let fleet_uids: BTreeSet<String> = listed["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["uid"].as_str().unwrap().to_owned())
        .collect();
    for node in &nodes {
        wait_for(
            "the node to hold exactly the fleet's keys",
            Duration::from_secs(20),
            || {
                let (url, wanted) = (node.url.clone(), fleet_uids.clone());
                async move { (node_key_uids(&url).await == wanted).then_some(()) }
            },
        )
        .await;
    }

    // A key with an explicit uid has the value Meilisearch derives, on every node.
    let uid = "01b4bc42-eb33-4041-b481-254d00cce834";
    let (status, created) = meili
        .post("/keys", json!({"uid": uid, "name": "movies search", "actions": ["search", "documents.get"], "indexes": ["movies"], "expiresAt": null}))
        .await;
    assert_eq!(status, 201, "{created}");
    let search_key = key_value(MASTER_KEY, uid);
    assert_eq!(created["key"], search_key.as_str());
    for node in &nodes {
        let (status, on_node) = Meili::new(&node.url).get(&format!("/keys/{uid}")).await;
        assert_eq!(
            (status, on_node["key"].as_str()),
            (200, Some(search_key.as_str()))
        );
    }
    let (status, error) = meili
        .post(
            "/keys",
            json!({"uid": uid, "actions": ["search"], "indexes": ["*"], "expiresAt": null}),
        )
        .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (409, Some("api_key_already_exists"))
    );
    let (status, error) = meili
        .post("/keys", json!({"indexes": ["*"], "expiresAt": null}))
        .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("missing_api_key_actions"))
    );
    let (status, error) = meili
        .post(
            "/keys",
            json!({"actions": ["fly"], "indexes": ["*"], "expiresAt": null}),
        )
        .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("invalid_api_key_actions"))
    );
    let (status, error) = meili
        .post(
            "/keys",
            json!({"actions": ["search"], "indexes": ["*"], "expiresAt": "2001-01-01"}),
        )
        .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("invalid_api_key_expires_at"))
    );

    for uid in ["movies", "books"] {
        meili
            .ok(
                Method::POST,
                "/indexes",
                json!({"uid": uid, "primaryKey": "id"}),
            )
            .await;
        meili
            .ok(
                Method::PUT,
                &format!("/indexes/{uid}/settings/filterable-attributes"),
                json!(["genre", "owner"]),
            )
            .await;
        let documents: Vec<Value> = (0..20)
            .map(|i| json!({"id": i, "genre": if i % 2 == 0 { "horror" } else { "comedy" }, "owner": i % 4}))
            .collect();
        meili
            .ok(
                Method::POST,
                &format!("/indexes/{uid}/documents"),
                json!(documents),
            )
            .await;
    }

    // Actions and indexes are enforced.
    let url = gateway.url.as_str();
    let (status, hits) = call(
        url,
        &search_key,
        Method::POST,
        "/indexes/movies/search",
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (status, hits["estimatedTotalHits"].as_u64()),
        (200, Some(20)),
        "{hits}"
    );
    let (status, _) = call(
        url,
        &search_key,
        Method::GET,
        "/indexes/movies/documents/3",
        None,
    )
    .await;
    assert_eq!(status, 200);
    for (method, path, body) in [
        (Method::POST, "/indexes/books/search", Some(json!({}))),
        (
            Method::POST,
            "/indexes/movies/documents",
            Some(json!([{"id": 99}])),
        ),
        (Method::GET, "/keys", None),
        (Method::DELETE, "/indexes/movies", None),
    ] {
        let (status, error) = call(url, &search_key, method, path, body).await;
        assert_eq!(
            (status, error["code"].as_str()),
            (403, Some("invalid_api_key")),
            "{path}"
        );
    }
    let (status, visible) = call(url, &search_key, Method::GET, "/indexes", None).await;
    assert_eq!(
        status, 403,
        "indexes.get is not among the key's actions: {visible}"
    );

    // A tenant token searches only what its rules allow, with their filter applied.
    let admin = created_key(
        &meili,
        json!({"actions": ["search"], "indexes": ["*"], "expiresAt": null}),
    )
    .await;
    let token = tenant_token(
        admin["key"].as_str().unwrap(),
        json!({"apiKeyUid": admin["uid"], "searchRules": {"movies": {"filter": "owner = 1"}}}),
    );
    let (status, hits) = call(
        url,
        &token,
        Method::POST,
        "/indexes/movies/search",
        Some(json!({"filter": "genre = comedy", "limit": 50})),
    )
    .await;
    assert_eq!(status, 200, "{hits}");
    assert_eq!(
        hits["estimatedTotalHits"], 5,
        "owner = 1 AND genre = comedy: {hits}"
    );
    assert!(
        hits["hits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["owner"] == 1)
    );
    let (status, multi) = call(
        url,
        &token,
        Method::POST,
        "/multi-search",
        Some(json!({"queries": [{"indexUid": "movies", "limit": 50}]})),
    )
    .await;
    assert_eq!(
        (status, multi["results"][0]["estimatedTotalHits"].as_u64()),
        (200, Some(5)),
        "{multi}"
    );
    let (status, error) = call(
        url,
        &token,
        Method::POST,
        "/indexes/books/search",
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (403, Some("invalid_api_key")),
        "{error}"
    );
    let (status, _) = call(url, &token, Method::GET, "/indexes/movies/documents", None).await;
    assert_eq!(status, 403, "tenant tokens only search");
    let expired = tenant_token(
        admin["key"].as_str().unwrap(),
        json!({"apiKeyUid": admin["uid"], "searchRules": ["*"], "exp": 1_000_000_000}),
    );
    let (status, error) = call(
        url,
        &expired,
        Method::POST,
        "/indexes/movies/search",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("Tenant token expired."),
        "{error}"
    );
    let forged = tenant_token(
        "not-the-key",
        json!({"apiKeyUid": admin["uid"], "searchRules": ["*"]}),
    );
    let (status, _) = call(
        url,
        &forged,
        Method::POST,
        "/indexes/movies/search",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 403);

    // A key deleted behind Miroir's back comes back on the next sync pass.
    let (status, _) = Meili::new(&nodes[0].url)
        .delete(&format!("/keys/{uid}"))
        .await;
    assert_eq!(status, 204);
    wait_for(
        "key sync to restore the key",
        Duration::from_secs(20),
        || {
            let url = nodes[0].url.clone();
            async move { node_key_uids(&url).await.contains(uid).then_some(()) }
        },
    )
    .await;

    // Updates and deletions reach every node; a deleted key stops working.
    let (status, updated) = meili
        .json(
            Method::PATCH,
            &format!("/keys/{search_key}"),
            json!({"name": "renamed"}),
        )
        .await;
    assert_eq!((status, updated["name"].as_str()), (200, Some("renamed")));
    let (status, error) = meili
        .json(
            Method::PATCH,
            &format!("/keys/{uid}"),
            json!({"actions": ["*"]}),
        )
        .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("immutable_api_key_actions"))
    );
    for node in &nodes {
        let (_, on_node) = Meili::new(&node.url).get(&format!("/keys/{uid}")).await;
        assert_eq!(on_node["name"], "renamed");
    }
    let (status, _) = meili.delete(&format!("/keys/{uid}")).await;
    assert_eq!(status, 204);
    let (status, _) = call(
        url,
        &search_key,
        Method::POST,
        "/indexes/movies/search",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 403);
    for node in &nodes {
        assert!(!node_key_uids(&node.url).await.contains(uid));
    }
    let (status, error) = meili.get(&format!("/keys/{uid}")).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (404, Some("api_key_not_found"))
    );
    // Uids in any form a UUID parser reads, and not-UUIDs, answer as one node does.
    for asked in [
        format!("%7B{}%7D", uid.to_uppercase()),
        uid.replace('-', ""),
        format!("{}-", uid.replacen('-', "", 1)),
    ] {
        let ours = meili.get(&format!("/keys/{asked}")).await;
        let theirs = Meili::new(&nodes[0].url)
            .get(&format!("/keys/{asked}"))
            .await;
        assert_eq!(ours, theirs, "{asked}");
    }
    drop(cp);
}

async fn created_key(meili: &Meili, body: Value) -> Value {
    let (status, key) = meili.post("/keys", body).await;
    assert_eq!(status, 201, "{key}");
    key
}

#[tokio::test]
async fn keys_see_only_their_indexes_tasks_and_create_only_with_the_right() {
    let (_dir, _cp, _nodes, gateway) = crate::gateway_indexes::fleet(2).await;
    let meili = Meili::new(&gateway.url);
    let books_task = meili
        .ok(Method::POST, "/indexes/books/documents", json!([{"id": 1}]))
        .await;
    meili
        .ok(
            Method::POST,
            "/indexes/movies/documents",
            json!([{"id": 1}]),
        )
        .await;
    let url = gateway.url.as_str();

    let reader = created_key(
        &meili,
        json!({"actions": ["tasks.get"], "indexes": ["movies"], "expiresAt": null}),
    )
    .await;
    let reader = reader["key"].as_str().unwrap();
    let (status, tasks) = call(url, reader, Method::GET, "/tasks", None).await;
    assert_eq!(status, 200, "{tasks}");
    let indexes: BTreeSet<&str> = tasks["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["indexUid"].as_str())
        .collect();
    assert_eq!(indexes, BTreeSet::from(["movies"]), "{tasks}");
    assert_eq!(
        tasks["total"], 2,
        "creation and addition of movies: {tasks}"
    );
    let (status, _) = call(
        url,
        reader,
        Method::GET,
        &format!("/tasks/{}", books_task["uid"]),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (_, none) = call(url, reader, Method::GET, "/tasks?indexUids=books", None).await;
    assert_eq!(none["total"], 0, "{none}");

    // Writing to a missing index creates it only with `indexes.create`.
    let writer = created_key(
        &meili,
        json!({"actions": ["documents.add"], "indexes": ["new_*"], "expiresAt": null}),
    )
    .await;
    let (status, error) = call(
        url,
        writer["key"].as_str().unwrap(),
        Method::POST,
        "/indexes/new_a/documents",
        Some(json!([{"id": 1}])),
    )
    .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (403, Some("invalid_api_key")),
        "{error}"
    );
    let creator = created_key(&meili, json!({"actions": ["documents.add", "indexes.create"], "indexes": ["new_*"], "expiresAt": null})).await;
    let (status, task) = call(
        url,
        creator["key"].as_str().unwrap(),
        Method::POST,
        "/indexes/new_a/documents",
        Some(json!([{"id": 1}])),
    )
    .await;
    assert_eq!(status, 202, "{task}");
    assert_eq!(meili.wait_task(&task).await["status"], "succeeded");
}
