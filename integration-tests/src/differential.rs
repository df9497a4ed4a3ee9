//! Differential fuzzing (issue 24, point 2): seeded requests, valid and mutated, sent to a
//! gateway and to one real node holding the same data; the status and the error `code`
//! must be equal, and the gateway must never answer 5xx for a client's mistake.

use crate::MASTER_KEY;
use crate::rng::Rng;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// One generated request.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method.
    pub method: Method,
    /// Path and query string.
    pub path: String,
    /// `Content-Type`, when one is sent.
    pub content_type: Option<&'static str>,
    /// Body bytes.
    pub body: Option<Vec<u8>>,
    /// The `Authorization` header's key (`None`: no header).
    pub key: Option<String>,
}

/// The index every request is about, set up alike on both sides by [`setup`].
pub const INDEX: &str = "fuzz";

/// The documents of [`INDEX`].
pub fn documents() -> Value {
    let genres = ["drama", "comedy", "horror", "jazz"];
    Value::Array(
        (0..60)
            .map(|i| {
                json!({
                    "id": i,
                    "title": format!("film {i} {}", genres[i % 4]),
                    "genre": genres[i % 4],
                    "year": 1950 + i,
                    "rating": (i % 10) as f64 / 2.0,
                    "tags": [genres[(i + 1) % 4]],
                })
            })
            .collect(),
    )
}

/// The settings of [`INDEX`].
pub fn settings() -> Value {
    json!({
        "filterableAttributes": ["genre", "year", "rating"],
        "sortableAttributes": ["year", "rating"],
        "searchableAttributes": ["title", "genre", "tags"],
    })
}

/// Settings changes one Meilisearch 1.50 refuses, at once or as a failed task, without
/// changing the index: `(sub-route, body)`, the whole settings when the route is empty.
/// Each is a value of the wrong type or out of range, an unknown member, a ranking rule
/// it cannot read, an embedder's missing or unavailable field, or a feature that is off.
pub const BAD_SETTINGS: &[(&str, &str)] = &[
    ("", r#"{"rankingRules": 5}"#),
    ("", r#"{"rankingRules": ["bogus"]}"#),
    ("", r#"{"rankingRules": ["asc(title)"]}"#),
    ("", r#"{"rankingRules": ["title:asc", "x:"]}"#),
    ("", r#"{"rankingRules": ["_geoPoint(1, 2):asc"]}"#),
    ("", r#"{"rankingRules": ["_geoRadius:asc"]}"#),
    ("", r#"{"rankingRules": ["_geo(1):desc"]}"#),
    ("", r#"{"rankingRules": [null]}"#),
    ("", r#"{"stopWords": "the"}"#),
    ("", r#"{"separatorTokens": [null]}"#),
    ("", r#"{"typoTolerance": {"enabled": "yes"}}"#),
    (
        "",
        r#"{"typoTolerance": {"minWordSizeForTypos": {"oneTypo": 9, "twoTypos": 5}}}"#,
    ),
    (
        "",
        r#"{"typoTolerance": {"minWordSizeForTypos": {"oneTypo": 300}}}"#,
    ),
    (
        "",
        r#"{"typoTolerance": {"minWordSizeForTypos": {"bogus": 1}}}"#,
    ),
    ("", r#"{"typoTolerance": {"bogus": 1}}"#),
    ("", r#"{"bogus": 1, "rankingRules": 5}"#),
    (
        "",
        r#"{"stopWords": ["a"], "rankingRules": 5, "synonyms": 1}"#,
    ),
    ("", r#"{"pagination": {"maxTotalHits": -1}}"#),
    ("", r#"{"pagination": {"maxTotalHits": 0}}"#),
    ("", r#"{"pagination": {"maxTotalHits": 1.5}}"#),
    ("", r#"{"faceting": {"sortFacetValuesBy": {"a": "up"}}}"#),
    ("", r#"{"faceting": {"sortFacetValuesBy": {"a": null}}}"#),
    ("", r#"{"synonyms": {"a": "b"}}"#),
    ("", r#"{"synonyms": {"a": null}}"#),
    ("", r#"{"displayedAttributes": [1]}"#),
    ("", r#"{"distinctAttribute": ["x"]}"#),
    ("", r#"{"proximityPrecision": "x"}"#),
    ("", r#"{"searchCutoffMs": -1}"#),
    ("", r#"{"facetSearch": "yes"}"#),
    ("", r#"{"prefixSearch": true}"#),
    (
        "",
        r#"{"localizedAttributes": [{"attributePatterns": ["a"], "locales": ["xx"]}]}"#,
    ),
    ("", r#"{"localizedAttributes": [{"locales": []}]}"#),
    ("", r#"{"localizedAttributes": [null]}"#),
    (
        "",
        r#"{"filterableAttributes": [{"attributePatterns": ["a"], "features": {"filter": {"equality": "x"}}}]}"#,
    ),
    (
        "",
        r#"{"filterableAttributes": [{"attributePatterns": ["a"], "bogus": 1}]}"#,
    ),
    ("", r#"{"filterableAttributes": [{"features": {}}]}"#),
    ("", r#"{"filterableAttributes": [[]]}"#),
    ("", r#"{"embedders": {"x": 1}}"#),
    ("", r#"{"embedders": {"x": {"source": "bogus"}}}"#),
    ("", r#"{"embedders": {"x": {"source": "userProvided"}}}"#),
    (
        "",
        r#"{"embedders": {"x": {"source": "userProvided", "dimensions": 3, "bogus": 1}}}"#,
    ),
    (
        "",
        r#"{"embedders": {"x": {"source": "userProvided", "dimensions": 3, "model": null}}}"#,
    ),
    (
        "",
        r#"{"embedders": {"x": {"source": "openAi", "revision": "r"}}}"#,
    ),
    (
        "",
        r#"{"embedders": {"x": {"source": "ollama", "revision": "r"}}}"#,
    ),
    (
        "",
        r#"{"embedders": {"x": {"source": "rest", "model": "r"}}}"#,
    ),
    (
        "",
        r#"{"embedders": {"x": {"source": "rest", "url": "http://127.0.0.1:1/x"}}}"#,
    ),
    (
        "",
        r#"{"embedders": {"x": {"source": "huggingFace", "model": "x", "dimensions": 3}}}"#,
    ),
    (
        "",
        r#"{"embedders": {"x": {"source": "composite", "model": "r"}}}"#,
    ),
    (
        "",
        r#"{"embedders": {"x": {"source": "userProvided", "dimensions": 3, "indexingFragments": {"a": {"value": "x"}}}}}"#,
    ),
    (
        "",
        r#"{"embedders": {"x": {"source": "userProvided", "dimensions": 0}}}"#,
    ),
    (
        "",
        r#"{"embedders": {"x": {"source": "userProvided", "dimensions": 3, "distribution": {"mean": 2, "sigma": 0.1}}}}"#,
    ),
    (
        "",
        r#"{"embedders": {"x": {"source": "userProvided", "dimensions": 3, "distribution": {"mean": 0.5}}}}"#,
    ),
    (
        "",
        r#"{"embedders": {"x": {"source": "openAi", "url": "not a url"}}}"#,
    ),
    (
        "",
        r#"{"embedders": {"x": {"source": "openAi", "model": "bogus"}}}"#,
    ),
    (
        "",
        r#"{"embedders": {"x": {"source": "openAi", "dimensions": 3, "model": "text-embedding-ada-002"}}}"#,
    ),
    (
        "",
        r#"{"embedders": {"x": {"source": "openAi", "model": "text-embedding-3-large", "dimensions": 3073}}}"#,
    ),
    (
        "",
        r#"{"embedders": {"x": {"source": "huggingFace", "pooling": "x"}}}"#,
    ),
    (
        "",
        r#"{"embedders": {"x": {"source": "rest", "url": "http://127.0.0.1:1/x", "request": {"input": "x"}, "response": {"e": "{{embedding}}"}}}}"#,
    ),
    (
        "",
        r#"{"embedders": {"x": {"source": "rest", "url": "http://127.0.0.1:1/x", "request": {"input": "{{text}}"}, "response": {"e": "x"}, "dimensions": 3}}}"#,
    ),
    (
        "",
        r#"{"embedders": {"x": {"source": "rest", "url": "http://a/x", "request": ["{{text}}", "{{..}}"], "response": {"e": "{{embedding}}"}}}}"#,
    ),
    (
        "",
        r#"{"embedders": {"x": {"source": "rest", "url": "http://a/x", "request": "{{text}}", "response": "{{embedding}}", "headers": {"a": 1}}}}"#,
    ),
    (
        "",
        r#"{"embedders": {"y": {"source": "rest"}, "x": {"source": "userProvided"}}}"#,
    ),
    ("", r#"{"embedders": {"x": {"dimensions": 0}}}"#),
    (
        "",
        r#"{"embedders": {"x": {"source": "openAi", "documentTemplate": "{{ doc.title "}}}"#,
    ),
    (
        "",
        r#"{"embedders": {"x": {"source": "rest", "url": "http://a/x", "request": "{{text}}", "response": "{{embedding}}", "documentTemplate": "{{ doc.x | bogusfilter }}"}}}"#,
    ),
    (
        "",
        r#"{"embedders": {"x": {"source": "userProvided", "documentTemplate": "{% if x %}"}}}"#,
    ),
    (
        "",
        r#"{"embedders": {"x": {"documentTemplate": "{% bogus %}"}}}"#,
    ),
    (
        "",
        r#"{"embedders": {"x": {"source": "openAi", "url": "bad url", "documentTemplate": "{% if x %}"}}}"#,
    ),
    ("", r#"{"embedders": {"x": {"request": {}}}}"#),
    (
        "",
        r#"{"embedders": {"x": {"source": "rest", "url": "http://a/x", "request": "{{text}}", "response": {"e": "{{embedding}}", "f": "{{embedding}}"}}}}"#,
    ),
    ("", r#"{"chat": 1}"#),
    ("", r#"{"chat": {"bogus": 1}}"#),
    (
        "",
        r#"{"chat": {"searchParameters": {"hybrid": {"semanticRatio": 2, "embedder": "x"}}}}"#,
    ),
    ("", r#"{"chat": {"description": "x"}}"#),
    (
        "",
        r#"{"embedders": {"x": {"source": "ollama"}}, "chat": {"description": "x"}}"#,
    ),
    (
        "",
        r#"{"chat": {"description": "x"}, "embedders": {"x": {"source": "composite"}}}"#,
    ),
    ("", r#"{"foreignKeys": [1]}"#),
    ("", r#"{"foreignKeys": [{"foreignIndexUid": "a"}]}"#),
    ("", r#"{"foreignKeys": []}"#),
    ("", r#""x""#),
    ("/ranking-rules", r#""x""#),
    ("/ranking-rules", r#"["x"]"#),
    ("/stop-words", r#"[1]"#),
    ("/synonyms", r#"{"a": "b"}"#),
    ("/filterable-attributes", r#""genre""#),
    ("/typo-tolerance", r#"{"bogus": 1}"#),
    (
        "/typo-tolerance",
        r#"{"minWordSizeForTypos": {"oneTypo": 9, "twoTypos": 1}}"#,
    ),
    ("/pagination", r#"{"maxTotalHits": 0}"#),
    ("/faceting", "[]"),
    ("/embedders", r#"{"x": 1}"#),
    ("/embedders", r#"{"x": {"source": "userProvided"}}"#),
    ("/distinct-attribute", "1"),
    ("/search-cutoff-ms", r#""x""#),
    ("/prefix-search", r#""x""#),
    ("/localized-attributes", "[1]"),
    ("/foreign-keys", "[{}]"),
    ("/chat", "1"),
    ("/displayed-attributes", ""),
];

/// The method of a settings route: `PATCH` for the whole settings and the sub-routes whose
/// value is merged, `PUT` for the others.
pub fn settings_method(route: &str) -> Method {
    const PATCHED: [&str; 5] = [
        "/typo-tolerance",
        "/faceting",
        "/pagination",
        "/embedders",
        "/chat",
    ];
    if route.is_empty() || PATCHED.contains(&route) {
        Method::PATCH
    } else {
        Method::PUT
    }
}

/// A settings change from [`BAD_SETTINGS`]; now and then two whole-settings bodies made
/// one, so that the first fault in the body's order is the one named.
fn settings_change(rng: &mut Rng) -> Request {
    let (route, body) = *rng.pick(BAD_SETTINGS);
    let mut body = body.as_bytes().to_vec();
    if route.is_empty() && rng.next(4) == 0 {
        let (other_route, other) = *rng.pick(BAD_SETTINGS);
        if let (Ok(Value::Object(mut first)), Ok(Value::Object(second)), "") = (
            serde_json::from_slice::<Value>(&body),
            serde_json::from_str::<Value>(other),
            other_route,
        ) {
            for (key, value) in second {
                first.entry(key).or_insert(value);
            }
            body = Value::Object(first).to_string().into_bytes();
        }
    }
    Request::json(
        settings_method(route),
        format!("/indexes/{INDEX}/settings{route}"),
        body,
    )
}

/// A value of some JSON type: what a mutation puts where something else is expected.
fn any_value(rng: &mut Rng) -> Value {
    match rng.next(9) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(1.5),
        4 => json!(7),
        5 => json!("x"),
        6 => json!([]),
        7 => json!([1, "a"]),
        _ => json!({"a": 1}),
    }
}

/// A filter: valid, on attributes that are not filterable, malformed, or of a wrong type.
fn filter(rng: &mut Rng) -> Value {
    match rng.next(10) {
        0 => json!("genre = drama"),
        1 => json!("year > 1970 AND rating >= 2"),
        2 => json!(["genre = comedy", ["year = 1951", "year = 1955"]]),
        3 => json!("title = x"),
        4 => json!("genre = "),
        5 => json!("year 1970"),
        6 => json!(["genre = drama", 5]),
        7 => json!("genre IN [drama, jazz]"),
        8 => json!("_geoRadius(1, 2, 3)"),
        _ => any_value(rng),
    }
}

/// Draws one member's value.
type Draw = fn(&mut Rng) -> Value;

/// A search body: members drawn valid or mutated.
fn search_body(rng: &mut Rng) -> Value {
    let mut body = serde_json::Map::new();
    let members: [(&str, Draw); 17] = [
        ("q", |r| {
            r.pick(&[
                json!("film"),
                json!("drama"),
                json!(""),
                json!(3),
                json!(null),
            ])
            .clone()
        }),
        ("offset", |r| {
            r.pick(&[json!(0), json!(5), json!(-1), json!("2"), json!(1.5)])
                .clone()
        }),
        ("limit", |r| {
            r.pick(&[json!(3), json!(0), json!(1000), json!(-3), json!("x")])
                .clone()
        }),
        ("page", |r| {
            r.pick(&[json!(1), json!(2), json!(0), json!(-1), json!(true)])
                .clone()
        }),
        ("hitsPerPage", |r| {
            r.pick(&[json!(5), json!(0), json!(-2), json!("5")]).clone()
        }),
        ("filter", filter),
        ("sort", |r| {
            r.pick(&[
                json!(["year:asc"]),
                json!(["rating:desc", "year:asc"]),
                json!(["title:asc"]),
                json!(["year"]),
                json!("year:asc"),
                json!([1]),
            ])
            .clone()
        }),
        ("facets", |r| {
            r.pick(&[
                json!(["genre"]),
                json!(["*"]),
                json!(["title"]),
                json!("genre"),
                json!([]),
            ])
            .clone()
        }),
        ("attributesToRetrieve", |r| {
            r.pick(&[json!(["title"]), json!(["*"]), json!("title"), json!([1])])
                .clone()
        }),
        ("attributesToHighlight", |r| {
            r.pick(&[json!(["title"]), json!("title"), json!([2])])
                .clone()
        }),
        ("attributesToCrop", |r| {
            r.pick(&[json!(["title:2"]), json!(["title"]), json!(3)])
                .clone()
        }),
        ("cropLength", |r| {
            r.pick(&[json!(5), json!(-1), json!("5")]).clone()
        }),
        ("showRankingScore", |r| {
            r.pick(&[json!(true), json!(false), json!("yes"), json!(1)])
                .clone()
        }),
        ("showRankingScoreDetails", |r| {
            r.pick(&[json!(true), json!("no")]).clone()
        }),
        ("matchingStrategy", |r| {
            r.pick(&[json!("last"), json!("all"), json!("bogus"), json!(1)])
                .clone()
        }),
        ("distinct", |r| {
            r.pick(&[json!("genre"), json!("title"), json!(3)]).clone()
        }),
        ("rankingScoreThreshold", |r| {
            r.pick(&[json!(0.2), json!(2.0), json!("x")]).clone()
        }),
    ];
    for (name, value) in members {
        if rng.chance(22) {
            body.insert(name.to_owned(), value(rng));
        }
    }
    if rng.chance(5) {
        body.insert("bogusMember".into(), json!(1));
    }
    Value::Object(body)
}

/// A query string for `GET …/search`.
fn search_query_string(rng: &mut Rng) -> String {
    let parameters = [
        "q=film",
        "limit=2",
        "limit=-1",
        "limit=x",
        "offset=3",
        "page=2",
        "hitsPerPage=abc",
        "filter=genre%20%3D%20drama",
        "filter=title%20%3D%20x",
        "sort=year:desc",
        "sort=title:asc",
        "facets=genre",
        "showRankingScore=true",
        "showRankingScore=maybe",
        "attributesToRetrieve=title,year",
        "cropLength=x",
        "bogus=1",
    ];
    let chosen: Vec<&str> = (0..1 + rng.next(3))
        .map(|_| *rng.pick(&parameters))
        .collect();
    chosen.join("&")
}

/// A JSON body as bytes, or a malformed one.
fn bytes_of(rng: &mut Rng, body: &Value) -> Vec<u8> {
    match rng.next(40) {
        0 => b"{\"q\": ".to_vec(),
        1 => b"[1, 2]".to_vec(),
        2 => Vec::new(),
        _ => body.to_string().into_bytes(),
    }
}

impl Request {
    /// A JSON request with the master key.
    pub fn json(method: Method, path: String, body: Vec<u8>) -> Self {
        Self {
            method,
            path,
            content_type: Some("application/json"),
            body: Some(body),
            key: Some(MASTER_KEY.to_owned()),
        }
    }

    /// A `GET` with the master key.
    pub fn get(path: String) -> Self {
        Self {
            method: Method::GET,
            path,
            content_type: None,
            body: None,
            key: Some(MASTER_KEY.to_owned()),
        }
    }
}

/// The next request.
pub fn request(rng: &mut Rng) -> Request {
    let mut request = match rng.next(12) {
        0..=3 => {
            let body = search_body(rng);
            Request::json(
                Method::POST,
                format!("/indexes/{INDEX}/search"),
                bytes_of(rng, &body),
            )
        }
        4 => Request::get(format!(
            "/indexes/{INDEX}/search?{}",
            search_query_string(rng)
        )),
        5 => {
            let queries: Vec<Value> = (0..1 + rng.next(2))
                .map(|_| {
                    let mut query = search_body(rng);
                    if let Some(object) = query.as_object_mut() {
                        match rng.next(10) {
                            0 => {}
                            1 => {
                                object.insert("indexUid".into(), json!("missing"));
                            }
                            _ => {
                                object.insert("indexUid".into(), json!(INDEX));
                            }
                        }
                    }
                    query
                })
                .collect();
            let mut body = json!({ "queries": queries });
            if rng.chance(40) {
                body["federation"] = match rng.next(4) {
                    0 => json!({}),
                    1 => json!({"limit": 3, "offset": 1}),
                    2 => json!({"limit": "x"}),
                    _ => json!({"facetsByIndex": {INDEX: ["genre"]}}),
                };
            }
            Request::json(Method::POST, "/multi-search".into(), bytes_of(rng, &body))
        }
        6 => {
            let mut body = json!({});
            if rng.chance(90) {
                body["facetName"] = rng
                    .pick(&[json!("genre"), json!("title"), json!(3)])
                    .clone();
            }
            if rng.chance(50) {
                body["facetQuery"] = rng.pick(&[json!("dr"), json!(5)]).clone();
            }
            if rng.chance(30) {
                body["filter"] = filter(rng);
            }
            if rng.chance(20) {
                body["q"] = rng.pick(&[json!("film"), json!(1)]).clone();
            }
            Request::json(
                Method::POST,
                format!("/indexes/{INDEX}/facet-search"),
                bytes_of(rng, &body),
            )
        }
        7 => {
            let mut body = json!({});
            if rng.chance(50) {
                body["filter"] = filter(rng);
            }
            if rng.chance(40) {
                body["limit"] = rng.pick(&[json!(3), json!(-1), json!("x")]).clone();
            }
            if rng.chance(40) {
                body["offset"] = rng.pick(&[json!(2), json!(-5)]).clone();
            }
            if rng.chance(30) {
                body["fields"] = rng.pick(&[json!(["title"]), json!("title")]).clone();
            }
            Request::json(
                Method::POST,
                format!("/indexes/{INDEX}/documents/fetch"),
                bytes_of(rng, &body),
            )
        }
        8 => Request::get(format!(
            "/indexes/{INDEX}/documents/{}",
            rng.pick(&["1", "59", "60", "abc", "%20"])
        )),
        9 => Request::get(format!(
            "/indexes/{INDEX}/documents?{}",
            rng.pick(&[
                "limit=2",
                "limit=-1",
                "offset=x",
                "fields=title",
                "filter=genre%20%3D%20drama",
                "filter=title%20%3D%20x"
            ])
        )),
        10 => settings_change(rng),
        _ => {
            // Document payloads the nodes refuse before any task: malformed, or of
            // another content type.
            let (content_type, body): (&'static str, &[u8]) = *rng.pick(&[
                (
                    "application/json",
                    b"[{\"id\": 1, \"title\": \"x\"".as_slice(),
                ),
                ("application/json", b"{\"id\": }".as_slice()),
                ("application/x-ndjson", b"{\"id\": 1}\n{oops}\n".as_slice()),
                ("text/csv", b"id,title\n1,\"unclosed\n".as_slice()),
                ("text/plain", b"[{\"id\": 1}]".as_slice()),
            ]);
            Request {
                method: Method::POST,
                path: format!("/indexes/{INDEX}/documents"),
                content_type: Some(content_type),
                body: Some(body.to_vec()),
                key: Some(MASTER_KEY.to_owned()),
            }
        }
    };
    // Header mutations: no key, a wrong key, no content type.
    match rng.next(40) {
        0 => request.key = None,
        1 => request.key = Some("wrong-key-0123456789".to_owned()),
        2 if request.body.is_some() => request.content_type = None,
        _ => {}
    }
    request
}

/// What one side answered: its status and the error's `code` (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `code` of an error body.
    pub code: Option<String>,
}

/// Sends `request` to `base`, once more if the first try got no answer (a pooled
/// connection the server had just closed).
pub async fn send(client: &reqwest::Client, base: &str, request: &Request) -> Answer {
    let answer = send_once(client, base, request).await;
    if answer.status != 0 {
        return answer;
    }
    send_once(client, base, request).await
}

async fn send_once(client: &reqwest::Client, base: &str, request: &Request) -> Answer {
    let mut builder = client
        .request(request.method.clone(), format!("{base}{}", request.path))
        .timeout(Duration::from_secs(30));
    if let Some(key) = &request.key {
        builder = builder.bearer_auth(key);
    }
    if let Some(content_type) = request.content_type {
        builder = builder.header("content-type", content_type);
    }
    if let Some(body) = &request.body {
        builder = builder.body(body.clone());
    }
    match builder.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            Answer {
                status,
                code: body["code"].as_str().map(str::to_owned),
            }
        }
        Err(error) => Answer {
            status: 0,
            code: Some(format!("transport: {error}")),
        },
    }
}

/// A request the two sides answered differently.
#[derive(Debug, Clone)]
pub struct Mismatch {
    /// The request.
    pub request: Request,
    /// The gateway's answer.
    pub gateway: Answer,
    /// The node's answer.
    pub node: Answer,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = self
            .request
            .body
            .as_ref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        write!(
            f,
            "{} {} [{:?}, key {:?}] {} → gateway {} {:?}, node {} {:?}",
            self.request.method,
            self.request.path,
            self.request.content_type,
            self.request.key.as_deref().map(|k| k == MASTER_KEY),
            body,
            self.gateway.status,
            self.gateway.code,
            self.node.status,
            self.node.code
        )
    }
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    /// Requests sent to each side.
    pub sent: usize,
    /// Answered alike.
    pub equal: usize,
    /// Answered differently otherwise.
    pub mismatches: Vec<Mismatch>,
    /// The gateway answered 5xx where the node answered 4xx.
    pub server_errors_for_client_mistakes: usize,
}

/// Requests that once got another answer through a gateway than from one node: each runs
/// first in every run, so none comes back.
pub fn regressions() -> Vec<Request> {
    let search = format!("/indexes/{INDEX}/search");
    let json = |path: &str, body: &str| {
        Request::json(Method::POST, path.to_owned(), body.as_bytes().to_vec())
    };
    let mut list = vec![
        // A document id that is no URL segment as it stands (was 503).
        Request::get(format!("/indexes/{INDEX}/documents/%20")),
        // An empty search body is `missing_payload` (was 200).
        json(&search, ""),
        // The first bad member in the body's order is named, typed by Miroir or not.
        json(
            &search,
            r#"{"attributesToCrop": 3, "showRankingScoreDetails": "no"}"#,
        ),
        json(
            &format!("/indexes/{INDEX}/documents/fetch"),
            r#"{"limit": "x", "offset": -5}"#,
        ),
        json("/multi-search", r#"{"queries": [{"q": 3}]}"#),
        json(
            "/multi-search",
            r#"{"queries": [{"indexUid": "fuzz", "filter": "genre = "}, {"indexUid": "fuzz", "attributesToCrop": 3}]}"#,
        ),
        Request::get(format!("{search}?bogus=1&hitsPerPage=abc")),
        // An empty facet list in a federated query is no facet (was 400).
        json(
            "/multi-search",
            r#"{"queries": [{"indexUid": "fuzz", "facets": []}], "federation": {}}"#,
        ),
    ];
    // A JSON route without its content type is 415 (was answered).
    let mut untyped = json(&search, r#"{"q": "film"}"#);
    untyped.content_type = None;
    list.push(untyped);
    // A `PUT` sub-route changed with `PATCH` is 405, before credentials (was 202).
    let mut patched = Request::json(
        Method::PATCH,
        format!("/indexes/{INDEX}/settings/stop-words"),
        b"[\"the\"]".to_vec(),
    );
    patched.key = None;
    list.push(patched);
    list
}

/// Sends the [`regressions`], then `count` requests from `seed`, to both sides, one after
/// the other.
pub async fn run(gateway: &str, node: &str, seed: u64, count: usize) -> Report {
    let client = reqwest::Client::new();
    let mut rng = Rng(seed.max(1));
    let mut report = Report::default();
    let mut fixed = regressions().into_iter();
    for _ in 0..count {
        let request = fixed.next().unwrap_or_else(|| request(&mut rng));
        let (through, direct) = tokio::join!(
            send(&client, gateway, &request),
            send(&client, node, &request)
        );
        report.sent += 1;
        if through.status >= 500 && (400..500).contains(&direct.status) {
            report.server_errors_for_client_mistakes += 1;
        }
        let mismatch = Mismatch {
            request,
            gateway: through,
            node: direct,
        };
        if mismatch.gateway == mismatch.node {
            report.equal += 1;
        } else {
            report.mismatches.push(mismatch);
        }
    }
    report
}
