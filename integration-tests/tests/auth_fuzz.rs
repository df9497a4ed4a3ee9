//! Auth fuzzing (issue 24, point 4): API keys and tenant tokens, valid and abused
//! (expired, wrong signature, `alg: none`, an unknown or missing key uid, a key without the
//! action, search rules reaching past the key's indexes, malformed tokens), each used on
//! every route of a set through a gateway and on one real node with the same keys: the
//! status and the error code must be equal, so Miroir never gives more access than one
//! Meilisearch would.

use crate::gateway_indexes::fleet;
use base64::Engine;
use hmac::{Hmac, Mac};
use miroir_integration_tests::differential::{Mismatch, Request, send};
use miroir_integration_tests::{Meili, TestNode};
use reqwest::Method;
use serde_json::{Value, json};

/// The keys both sides get, with fixed uids: a key's value is derived from its uid and
/// the master key, so each has the same value on both.
fn keys() -> Vec<(&'static str, Value)> {
    vec![
        (
            "0b2e8a54-0000-4000-8000-000000000001",
            json!({"actions": ["search"], "indexes": ["fuzz"], "expiresAt": null}),
        ),
        (
            "0b2e8a54-0000-4000-8000-000000000002",
            json!({"actions": ["search"], "indexes": ["*"], "expiresAt": null}),
        ),
        (
            "0b2e8a54-0000-4000-8000-000000000003",
            json!({"actions": ["documents.get", "settings.get"], "indexes": ["fu*"], "expiresAt": null}),
        ),
        (
            "0b2e8a54-0000-4000-8000-000000000004",
            json!({"actions": ["*"], "indexes": ["other"], "expiresAt": "2099-01-01T00:00:00Z"}),
        ),
    ]
}

/// A JWT with `header` and `claims`, signed with HS256 under `secret` (none: no signature).
fn token(header: Value, claims: &Value, secret: Option<&str>) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let signed = format!("{}.{}", b64(&header), b64(claims));
    match secret {
        Some(secret) => {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(signed.as_bytes());
            let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(mac.finalize().into_bytes());
            format!("{signed}.{signature}")
        }
        None => format!("{signed}."),
    }
}

/// Every credential tried: the keys, and tenant tokens made from them, valid and abused.
fn credentials(values: &[(String, String)]) -> Vec<(String, String)> {
    let hs256 = json!({"alg": "HS256", "typ": "JWT"});
    let mut out: Vec<(String, String)> = values
        .iter()
        .map(|(uid, key)| (format!("key {uid}"), key.clone()))
        .collect();
    out.push(("a key nobody has".into(), "f".repeat(64)));
    for (uid, key) in values {
        let claims = |rules: Value| json!({"apiKeyUid": uid, "searchRules": rules});
        let cases: Vec<(&str, Value, Value, Option<&str>)> = vec![
            (
                "all indexes",
                hs256.clone(),
                claims(json!(["*"])),
                Some(key),
            ),
            (
                "index fuzz",
                hs256.clone(),
                claims(json!(["fuzz"])),
                Some(key),
            ),
            (
                "index other",
                hs256.clone(),
                claims(json!({"other": null})),
                Some(key),
            ),
            (
                "fuzz with a filter",
                hs256.clone(),
                claims(json!({"fuzz": {"filter": "genre = drama"}})),
                Some(key),
            ),
            (
                "a pattern",
                hs256.clone(),
                claims(json!(["fu*"])),
                Some(key),
            ),
            (
                "expired",
                hs256.clone(),
                json!({"apiKeyUid": uid, "searchRules": ["*"], "exp": 1_000_000_000}),
                Some(key),
            ),
            (
                "expiring later",
                hs256.clone(),
                json!({"apiKeyUid": uid, "searchRules": ["*"], "exp": 4_000_000_000u64}),
                Some(key),
            ),
            (
                "a wrong signature",
                hs256.clone(),
                claims(json!(["*"])),
                Some("not-the-key"),
            ),
            (
                "alg none",
                json!({"alg": "none", "typ": "JWT"}),
                claims(json!(["*"])),
                None,
            ),
            (
                "alg HS512 named, HS256 signed",
                json!({"alg": "HS512", "typ": "JWT"}),
                claims(json!(["*"])),
                Some(key),
            ),
            (
                "an unknown key uid",
                hs256.clone(),
                json!({"apiKeyUid": "0b2e8a54-0000-4000-8000-0000000000ff", "searchRules": ["*"]}),
                Some(key),
            ),
            (
                "no key uid",
                hs256.clone(),
                json!({"searchRules": ["*"]}),
                Some(key),
            ),
            (
                "no search rules",
                hs256.clone(),
                json!({"apiKeyUid": uid}),
                Some(key),
            ),
        ];
        for (name, header, claims, secret) in cases {
            out.push((
                format!("token of {uid}: {name}"),
                token(header, &claims, secret),
            ));
        }
    }
    out.push(("a malformed token".into(), "abc.def".into()));
    out.push((
        "a token of two parts".into(),
        "eyJhbGciOiJIUzI1NiJ9.e30".into(),
    ));
    out
}

/// The requests each credential is tried on.
fn requests() -> Vec<Request> {
    let json = |method: Method, path: &str, body: Value| {
        Request::json(method, path.to_owned(), body.to_string().into_bytes())
    };
    vec![
        json(Method::POST, "/indexes/fuzz/search", json!({"q": "film"})),
        json(Method::POST, "/indexes/other/search", json!({})),
        Request::get("/indexes/fuzz/search?q=film".into()),
        json(
            Method::POST,
            "/multi-search",
            json!({"queries": [{"indexUid": "fuzz"}, {"indexUid": "other"}]}),
        ),
        json(
            Method::POST,
            "/multi-search",
            json!({"queries": [{"indexUid": "fuzz"}], "federation": {}}),
        ),
        json(
            Method::POST,
            "/indexes/fuzz/facet-search",
            json!({"facetName": "genre"}),
        ),
        Request::get("/indexes/fuzz/documents/1".into()),
        Request::get("/indexes/fuzz/documents?limit=2".into()),
        Request::get("/indexes/fuzz/settings".into()),
        Request::get("/indexes/other/settings".into()),
        Request::get("/indexes".into()),
        Request::get("/keys".into()),
        json(
            Method::POST,
            "/keys",
            json!({"actions": ["*"], "indexes": ["*"], "expiresAt": null}),
        ),
        Request::get("/version".into()),
        Request::get("/experimental-features".into()),
        Request::get("/webhooks".into()),
        Request::get("/batches?limit=1".into()),
        Request::get("/tasks?limit=1".into()),
        Request::get("/stats".into()),
        json(Method::POST, "/indexes", json!({"uid": "intruder"})),
    ]
}

#[tokio::test]
async fn keys_and_tenant_tokens_open_what_one_meilisearch_opens_and_no_more() {
    let (_dir, _cp, _nodes, gateway) = fleet(2).await;
    let node = TestNode::start().await;
    let mut values = Vec::new();
    for side in [Meili::new(&gateway.url), Meili::new(&node.url)] {
        for index in ["fuzz", "other"] {
            side.create_index(index).await;
        }
        side.ok(
            Method::PATCH,
            "/indexes/fuzz/settings",
            json!({"filterableAttributes": ["genre"]}),
        )
        .await;
        side.ok(
            Method::POST,
            "/indexes/fuzz/documents",
            json!([{"id": 1, "title": "film a", "genre": "drama"}, {"id": 2, "title": "film b", "genre": "jazz"}]),
        )
        .await;
        let mut these = Vec::new();
        for (uid, body) in keys() {
            let mut body = body.clone();
            body["uid"] = json!(uid);
            let (status, key) = side.post("/keys", body).await;
            assert_eq!(status, 201, "{key}");
            these.push((uid.to_owned(), key["key"].as_str().unwrap().to_owned()));
        }
        values.push(these);
    }
    assert_eq!(values[0], values[1], "the same key values on both sides");
    let client = reqwest::Client::new();
    let (mut tried, mut mismatches) = (0, Vec::new());
    for (name, credential) in credentials(&values[0]) {
        for mut request in requests() {
            request.key = Some(credential.clone());
            let (through, direct) = tokio::join!(
                send(&client, &gateway.url, &request),
                send(&client, &node.url, &request)
            );
            tried += 1;
            if through != direct {
                mismatches.push((
                    name.clone(),
                    Mismatch {
                        request,
                        gateway: through,
                        node: direct,
                    },
                ));
            }
        }
    }
    println!(
        "{tried} credential × route pairs, {} answered differently",
        mismatches.len()
    );
    for (name, mismatch) in &mismatches {
        println!("  {name}: {mismatch}");
    }
    // Access granted through Miroir where one node refuses is the failure that matters most.
    let wider: Vec<&(String, Mismatch)> = mismatches
        .iter()
        .filter(|(_, m)| m.gateway.status < 400 && m.node.status >= 400)
        .collect();
    assert!(wider.is_empty(), "Miroir gave more access: {wider:?}");
    assert!(mismatches.is_empty(), "{} differences", mismatches.len());
}
