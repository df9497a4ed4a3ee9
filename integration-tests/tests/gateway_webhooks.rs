//! `/webhooks` through the gateway (issue 21, point 3): the same answers as one real node
//! for every request, and deliveries of the fleet's tasks, with the gateway's task uids.

use crate::gateway_indexes::fleet;
use miroir_integration_tests::{Meili, TestNode, wait_for};
use reqwest::Method;
use serde_json::{Value, json};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `answer` with every UUID in it (webhooks' and those quoted in messages) replaced by
/// `<uuid>`: they are random on both sides.
fn without_uuids(answer: &Value) -> Value {
    let text = answer.to_string();
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let candidate = text
            .get(i..i + 36)
            .filter(|s| uuid::Uuid::try_parse(s).is_ok());
        match candidate {
            Some(_) => {
                out.push_str("<uuid>");
                i += 36;
            }
            None => {
                let c = text[i..].chars().next().unwrap_or_default();
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    serde_json::from_str(&out).unwrap_or(Value::Null)
}

async fn send(
    meili: &Meili,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let (status, answer) = meili
        .send(
            method,
            path,
            content_type,
            body.map(|b| b.as_bytes().to_vec()),
        )
        .await;
    (status, without_uuids(&answer))
}

#[tokio::test]
async fn webhooks_are_managed_as_on_one_node() {
    // Miroir's test node has no webhooks to compare with.
    if !miroir_integration_tests::real_meilisearch("webhooks_are_managed_as_on_one_node") {
        return;
    }
    let (_dir, _cp, _nodes, gateway) = fleet(2).await;
    let single = TestNode::start().await;
    let (meili, reference) = (Meili::new(&gateway.url), Meili::new(&single.url));
    let json = Some("application/json");
    let (_, created) = meili
        .post(
            "/webhooks",
            json!({"url": "http://127.0.0.1:9/a", "headers": {"Authorization": "Bearer secret-token-xyz", "x-b": "1"}}),
        )
        .await;
    let (_, created_there) = reference
        .post(
            "/webhooks",
            json!({"url": "http://127.0.0.1:9/a", "headers": {"Authorization": "Bearer secret-token-xyz", "x-b": "1"}}),
        )
        .await;
    assert_eq!(without_uuids(&created), without_uuids(&created_there));
    let ids = [
        created["uuid"].as_str().unwrap().to_owned(),
        created_there["uuid"].as_str().unwrap().to_owned(),
    ];
    let many_headers: serde_json::Map<String, Value> =
        (0..201).map(|i| (format!("h{i}"), json!("v"))).collect();
    let many = json!({"url": "http://x", "headers": many_headers}).to_string();
    let bodies: Vec<(Method, String, Option<&str>, Option<String>)> = vec![
        (Method::GET, "/webhooks".into(), None, None),
        (Method::GET, "/webhooks/{id}".into(), None, None),
        (Method::GET, "/webhooks/nope".into(), None, None),
        (Method::GET, "/webhooks/1234".into(), None, None),
        (
            Method::GET,
            "/webhooks/11111111-1111-4111-8111-111111111111".into(),
            None,
            None,
        ),
        (Method::POST, "/webhooks".into(), json, Some("{}".into())),
        (
            Method::POST,
            "/webhooks".into(),
            json,
            Some(r#"{"url": ""}"#.into()),
        ),
        (
            Method::POST,
            "/webhooks".into(),
            json,
            Some(r#"{"url": "not a url"}"#.into()),
        ),
        (
            Method::POST,
            "/webhooks".into(),
            json,
            Some(r#"{"url": "http://"}"#.into()),
        ),
        (
            Method::POST,
            "/webhooks".into(),
            json,
            Some(r#"{"url": 123}"#.into()),
        ),
        (
            Method::POST,
            "/webhooks".into(),
            json,
            Some(r#"{"url": "http://x", "headers": "x"}"#.into()),
        ),
        (
            Method::POST,
            "/webhooks".into(),
            json,
            Some(r#"{"url": "http://x", "headers": {"a": 1}}"#.into()),
        ),
        (
            Method::POST,
            "/webhooks".into(),
            json,
            Some(r#"{"url": "http://x", "headers": {"bad header": "v"}}"#.into()),
        ),
        (
            Method::POST,
            "/webhooks".into(),
            json,
            Some(r#"{"url": "http://x", "headers": {"h": "bad\nvalue"}}"#.into()),
        ),
        (
            Method::POST,
            "/webhooks".into(),
            json,
            Some(r#"{"url": "http://x", "uuid": "x"}"#.into()),
        ),
        (
            Method::POST,
            "/webhooks".into(),
            json,
            Some(r#"{"url": "http://x", "isEditable": false}"#.into()),
        ),
        (
            Method::POST,
            "/webhooks".into(),
            json,
            Some(r#"{"url": "http://x", "foo": 1}"#.into()),
        ),
        (Method::POST, "/webhooks".into(), json, Some("[]".into())),
        (Method::POST, "/webhooks".into(), json, Some("{".into())),
        (Method::POST, "/webhooks".into(), None, Some("{}".into())),
        (
            Method::POST,
            "/webhooks".into(),
            Some("text/plain"),
            Some("{}".into()),
        ),
        (Method::POST, "/webhooks".into(), json, Some(many)),
        (
            Method::PATCH,
            "/webhooks/{id}".into(),
            json,
            Some(r#"{"headers": {"x-b": null, "x-c": "2"}}"#.into()),
        ),
        (
            Method::PATCH,
            "/webhooks/{id}".into(),
            json,
            Some(r#"{"url": "http://127.0.0.1:9/b"}"#.into()),
        ),
        (
            Method::PATCH,
            "/webhooks/{id}".into(),
            json,
            Some(r#"{"url": null}"#.into()),
        ),
        (
            Method::PATCH,
            "/webhooks/{id}".into(),
            json,
            Some(r#"{"headers": null}"#.into()),
        ),
        (
            Method::PATCH,
            "/webhooks/{id}".into(),
            json,
            Some("{}".into()),
        ),
        (
            Method::PATCH,
            "/webhooks/11111111-1111-4111-8111-111111111111".into(),
            json,
            Some("{}".into()),
        ),
        (Method::GET, "/webhooks/{id}".into(), None, None),
        (Method::DELETE, "/webhooks/{id}".into(), None, None),
        (Method::DELETE, "/webhooks/{id}".into(), None, None),
        (Method::GET, "/webhooks".into(), None, None),
    ];
    for (method, path, content_type, body) in bodies {
        let mut answers = Vec::new();
        for (target, id) in [(&meili, &ids[0]), (&reference, &ids[1])] {
            let path = path.replace("{id}", id);
            answers.push(send(target, method.clone(), &path, content_type, body.as_deref()).await);
        }
        assert_eq!(answers[0], answers[1], "{method} {path} {body:?}");
    }
    // The 21st webhook is refused, as on one node.
    for target in [&meili, &reference] {
        for _ in 0..20 {
            let (status, _) = target.post("/webhooks", json!({"url": "http://x"})).await;
            assert_eq!(status, 201);
        }
    }
    let (status, refused) = send(
        &meili,
        Method::POST,
        "/webhooks",
        json,
        Some(r#"{"url": "http://x"}"#),
    )
    .await;
    let (expected, one) = send(
        &reference,
        Method::POST,
        "/webhooks",
        json,
        Some(r#"{"url": "http://x"}"#),
    )
    .await;
    assert_eq!((status, refused), (expected, one));
}

/// What a webhook receiver got: each delivery's headers and body.
type Deliveries = Arc<Mutex<Vec<(axum::http::HeaderMap, Vec<u8>)>>>;

/// Every finished task of the fleet is posted to the webhook once, gzip NDJSON, with the
/// gateway's view of the task (its uid, not a node's) and the webhook's headers.
#[tokio::test]
async fn webhooks_receive_the_fleets_tasks() {
    let (_dir, _cp, _nodes, gateway) = fleet(2).await;
    let received: Deliveries = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    sink.lock().unwrap().push((headers, body.to_vec()));
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let meili = Meili::new(&gateway.url);
    let (status, _) = meili
        .post(
            "/webhooks",
            json!({"url": format!("http://{address}/hook"), "headers": {"Authorization": "Bearer hook-secret"}}),
        )
        .await;
    assert_eq!(status, 201);
    meili.create_index("hooked").await;
    let added = meili
        .ok(
            Method::POST,
            "/indexes/hooked/documents",
            json!([{"id": 1}, {"id": 2}, {"id": 3}]),
        )
        .await;
    let deliveries = wait_for("two deliveries", Duration::from_secs(20), || async {
        let received = received.lock().unwrap();
        (received.len() >= 2).then(|| received.clone())
    })
    .await;
    let mut views = Vec::new();
    for (headers, body) in &deliveries {
        assert_eq!(headers["content-type"], "application/x-ndjson");
        assert_eq!(headers["content-encoding"], "gzip");
        assert_eq!(headers["authorization"], "Bearer hook-secret");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .unwrap();
        for line in text.lines() {
            views.push(serde_json::from_str::<Value>(line).unwrap());
        }
    }
    let delivered = views
        .iter()
        .find(|v| v["uid"] == added["uid"])
        .unwrap_or_else(|| panic!("task {} delivered: {views:?}", added["uid"]));
    let (_, read) = meili.get(&format!("/tasks/{}", added["uid"])).await;
    assert_eq!(
        delivered, &read,
        "the delivery is the gateway's view of the task"
    );
    assert_eq!(delivered["details"]["receivedDocuments"], 3);
}
