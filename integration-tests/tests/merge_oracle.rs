//! The merge oracle: one node holding everything against a Miroir fleet, for the same
//! dataset and generated queries. Hits must match as sets within each run of equal
//! ranking key (in order otherwise); totals and facets must be equal.

use miroir_integration_tests::{ControlPlane, Gateway, Meili, TestNode};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

const WORDS: &[&str] = &[
    "dark", "knight", "water", "night", "day", "star", "wars", "love", "story", "city",
];
const GENRES: &[&str] = &["action", "drama", "horror", "comedy", "fantasy"];

/// A deterministic generator (no test may depend on chance).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

fn dataset() -> Vec<Value> {
    dataset_of(240)
}

/// `count` generated movies (the first 240 are [`dataset`]'s).
pub fn dataset_of(count: usize) -> Vec<Value> {
    let mut rng = Lcg(7);
    (0..count)
        .map(|id| {
            let title: Vec<&str> = (0..1 + rng.next(3))
                .map(|_| WORDS[rng.next(WORDS.len())])
                .collect();
            let mut doc = json!({
                "id": id,
                "title": title.join(" "),
                "genre": GENRES[rng.next(GENRES.len())],
                "year": 1990 + rng.next(31),
                "rating": (rng.next(50) as f64) / 10.0,
                "tags": [WORDS[rng.next(WORDS.len())], WORDS[rng.next(WORDS.len())]],
            });
            if rng.next(10) == 0 {
                doc.as_object_mut().unwrap().remove("year");
            }
            doc
        })
        .collect()
}

pub fn queries(count: usize) -> Vec<Value> {
    let mut rng = Lcg(42);
    let filters = [
        "genre = horror",
        "year > 2005",
        "year 1995 TO 2010 AND genre != drama",
        "rating >= 2.5 OR genre = comedy",
        "tags IN [dark, love]",
        "NOT genre = action",
        "year NOT EXISTS",
    ];
    (0..count)
        .map(|_| {
            let mut q = serde_json::Map::new();
            q.insert("showRankingScore".into(), json!(true));
            match rng.next(4) {
                0 => {}
                1 => {
                    q.insert("q".into(), json!(WORDS[rng.next(WORDS.len())]));
                }
                2 => {
                    q.insert(
                        "q".into(),
                        json!(format!(
                            "{} {}",
                            WORDS[rng.next(WORDS.len())],
                            WORDS[rng.next(WORDS.len())]
                        )),
                    );
                }
                _ => {
                    q.insert("q".into(), json!(&WORDS[rng.next(WORDS.len())][..2]));
                }
            }
            if rng.next(2) == 0 {
                q.insert("filter".into(), json!(filters[rng.next(filters.len())]));
            }
            if rng.next(3) == 0 {
                q.insert("facets".into(), json!(["genre", "year", "tags"]));
            }
            if rng.next(3) == 0 {
                let sort = if rng.next(2) == 0 {
                    "year:asc"
                } else {
                    "rating:desc"
                };
                q.insert("sort".into(), json!([sort]));
            }
            if rng.next(2) == 0 {
                q.insert("offset".into(), json!(rng.next(30)));
                q.insert("limit".into(), json!(1 + rng.next(25)));
            } else {
                q.insert("page".into(), json!(1 + rng.next(4)));
                q.insert("hitsPerPage".into(), json!(1 + rng.next(15)));
            }
            // Distinct, in page mode: Meilisearch's `totalHits` is then exhaustive, where
            // `estimatedTotalHits` under distinct is its own estimate. Without facets:
            // under distinct their counts depend on which document of a value each node
            // keeps (docs/api-compatibility.md, known differences).
            if rng.next(5) == 0 {
                q.remove("facets");
                q.insert("distinct".into(), json!("genre"));
                if q.remove("offset").is_some() {
                    q.remove("limit");
                    q.insert("page".into(), json!(1 + rng.next(2)));
                    q.insert("hitsPerPage".into(), json!(1 + rng.next(4)));
                }
            }
            Value::Object(q)
        })
        .collect()
}

// Explicit searchable attributes: with `["*"]` the nodes count Miroir's `_miroir_shard` as
// one more searchable attribute (no query matches it, see the test below), and scores,
// which depend on that count, would differ slightly from one node's.
pub const SETTINGS: &str = r#"{"searchableAttributes": ["title", "genre", "tags"], "filterableAttributes": ["genre", "year", "rating", "tags"], "sortableAttributes": ["year", "rating"]}"#;

/// The ranking key of a hit: its sort values, then its score.
fn key(hit: &Value, query: &Value) -> String {
    let mut parts: Vec<String> = query["sort"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str()?.split(':').next())
        .map(|field| {
            hit.get(field)
                .map(|v| v.to_string())
                .unwrap_or_else(|| "null".into())
        })
        .collect();
    parts.push(format!(
        "{:.12}",
        hit["_rankingScore"].as_f64().unwrap_or(-1.0)
    ));
    parts.join("|")
}

/// What a hit stands for: its document, or under `distinct` its distinct value. Which
/// document of a value is kept among equally ranked ones is the engine's internal order
/// (insertion order on one node), which a fleet of nodes does not share; the value, its
/// rank and the totals are what must match.
fn identity(hit: &Value, query: &Value) -> String {
    match query["distinct"].as_str() {
        Some(attribute) => hit[attribute].to_string(),
        None => hit["id"].to_string(),
    }
}

async fn compare(reference: &Meili, fleet: &Meili, query: &Value, label: &str) {
    compare_within(reference, fleet, query, label, 1000).await
}

/// [`compare`], looking hits up among the reference's first `depth` (more than the
/// largest run of equally ranked documents the dataset has).
pub async fn compare_within(
    reference: &Meili,
    fleet: &Meili,
    query: &Value,
    label: &str,
    depth: usize,
) {
    let (status_r, r) = reference
        .post("/indexes/movies/search", query.clone())
        .await;
    let (status_f, f) = fleet.post("/indexes/movies/search", query.clone()).await;
    assert_eq!(
        (status_r, status_f),
        (200, 200),
        "{label} {query}: {r} / {f}"
    );
    for field in [
        "estimatedTotalHits",
        "totalHits",
        "totalPages",
        "facetDistribution",
        "facetStats",
        "limit",
        "offset",
        "page",
        "hitsPerPage",
    ] {
        assert_eq!(r.get(field), f.get(field), "{label} {field} for {query}");
    }
    let (rh, fh) = (r["hits"].as_array().unwrap(), f["hits"].as_array().unwrap());
    let keys = |hits: &[Value]| hits.iter().map(|h| key(h, query)).collect::<Vec<_>>();
    assert_eq!(keys(rh), keys(fh), "{label} ranking keys for {query}");
    // Every hit's key is its key in the unpaged reference, and runs of equal keys that
    // the page does not cut hold the same documents.
    let mut unpaged = query.clone();
    let object = unpaged.as_object_mut().unwrap();
    for k in ["offset", "limit", "page", "hitsPerPage"] {
        object.remove(k);
    }
    object.insert("limit".into(), json!(depth));
    object.remove("facets");
    let (_, all) = reference.post("/indexes/movies/search", unpaged).await;
    let full: BTreeMap<String, String> = all["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (identity(h, query), key(h, query)))
        .collect();
    let mut runs: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for hit in fh {
        assert_eq!(
            full.get(&identity(hit, query)),
            Some(&key(hit, query)),
            "{label} hit {hit} for {query}"
        );
    }
    for (r_hit, f_hit) in rh.iter().zip(fh) {
        let run = runs.entry(key(r_hit, query)).or_default();
        run.0.insert(identity(r_hit, query));
        run.1.insert(identity(f_hit, query));
    }
    let (first, last) = (
        rh.first().map(|h| key(h, query)),
        rh.last().map(|h| key(h, query)),
    );
    for (k, (r_ids, f_ids)) in runs {
        if Some(&k) != first.as_ref() && Some(&k) != last.as_ref() {
            assert_eq!(r_ids, f_ids, "{label} run {k} for {query}");
        }
    }
    for hit in fh {
        assert!(
            hit.get("_miroir_shard").is_none(),
            "{label}: _miroir_shard leaked"
        );
    }
}

/// Multi-search, plain and federated, compared the same way. Both federated queries are on
/// one index, so the union rules apply: a document both match appears once, and the total
/// and `facetsByIndex` (`variant` 1) or `mergeFacets` (`variant` 2) count the union.
async fn compare_multi(
    reference: &Meili,
    fleet: &Meili,
    queries: &[Value],
    label: &str,
    variant: usize,
) {
    let strip = |q: &Value| {
        let mut q = q.as_object().unwrap().clone();
        q.insert("indexUid".into(), json!("movies"));
        for k in ["offset", "limit", "page", "hitsPerPage", "facets"] {
            q.remove(k);
        }
        q
    };
    let plain =
        json!({"queries": [Value::Object(strip(&queries[0])), Value::Object(strip(&queries[1]))]});
    let (status_r, r) = reference.post("/multi-search", plain.clone()).await;
    let (status_f, f) = fleet.post("/multi-search", plain.clone()).await;
    assert_eq!(
        (status_r, status_f),
        (200, 200),
        "{label} {plain}: {r} / {f}"
    );
    for i in 0..2 {
        let (rr, fr) = (&r["results"][i], &f["results"][i]);
        assert_eq!(rr["indexUid"], fr["indexUid"]);
        assert_eq!(
            rr["estimatedTotalHits"], fr["estimatedTotalHits"],
            "{label} multi-search {plain}"
        );
        let keys = |v: &Value| {
            v["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| key(h, &queries[i]))
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(rr), keys(fr), "{label} multi-search keys {plain}");
    }
    let mut first = strip(&queries[0]);
    let mut second = strip(&queries[1]);
    // Without `distinct`: each node would keep one document per value of its own shards,
    // and the union of the queries' matches is counted per node (known difference).
    for q in [&mut first, &mut second] {
        q.remove("showRankingScore");
        q.remove("sort");
        q.remove("distinct");
    }
    // Equal weights put a document both queries match next to itself; a lower one for
    // the second query lets the first's hits lead.
    let weight = if variant == 0 { 0.5 } else { 1.0 };
    second.insert("federationOptions".into(), json!({ "weight": weight }));
    let mut federation = match variant {
        0 => json!({"offset": 3, "limit": 10}),
        1 => json!({"page": 2, "hitsPerPage": 8}),
        _ => json!({"offset": 0, "limit": 40}),
    };
    if variant > 0 {
        federation["facetsByIndex"] = json!({"movies": ["genre", "tags", "rating"]});
    }
    if variant == 2 {
        federation["mergeFacets"] = json!({});
    }
    let federated = json!({"queries": [first, second], "federation": federation});
    let (status_r, r) = reference.post("/multi-search", federated.clone()).await;
    let (status_f, f) = fleet.post("/multi-search", federated.clone()).await;
    assert_eq!(
        (status_r, status_f),
        (200, 200),
        "{label} {federated}: {r} / {f}"
    );
    for field in [
        "estimatedTotalHits",
        "offset",
        "limit",
        "totalHits",
        "totalPages",
        "page",
        "hitsPerPage",
    ] {
        assert_eq!(r.get(field), f.get(field), "{label} {field} of {federated}");
    }
    let scores = |v: &Value| -> Vec<String> {
        v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                format!(
                    "{:.12}/{}",
                    h["_federation"]["weightedRankingScore"].as_f64().unwrap(),
                    h["_federation"]["queriesPosition"]
                )
            })
            .collect()
    };
    assert_eq!(
        scores(&r),
        scores(&f),
        "{label} federated order for {federated}"
    );
    // Which of several equal-score documents fill the page's edge can differ (as in a
    // search); no document may come twice.
    for answer in [&r, &f] {
        let ids: Vec<String> = answer["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].to_string())
            .collect();
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(
            unique.len(),
            ids.len(),
            "{label}: a document twice in {answer}"
        );
    }
    for field in ["facetsByIndex", "facetDistribution", "facetStats"] {
        assert_eq!(r.get(field), f.get(field), "{label} {field} of {federated}");
    }
    match variant {
        1 => assert!(
            r["facetsByIndex"]["movies"]["distribution"]["genre"].is_object()
                && r["totalHits"].is_u64(),
            "{r}"
        ),
        2 => assert!(
            r["facetDistribution"]["genre"].is_object() && r.get("facetsByIndex").is_none(),
            "{r}"
        ),
        _ => assert!(r.get("facetsByIndex").is_none(), "{r}"),
    }
}

async fn fleet(groups: &[u32]) -> (tempfile::TempDir, ControlPlane, Vec<TestNode>, Gateway) {
    crate::gateway_indexes::fleet_in_groups(groups, Default::default()).await
}

async fn run_oracle(label: &str, groups: &[u32], replication_factor: u32) {
    let reference_node = TestNode::start().await;
    let reference = Meili::new(&reference_node.url);
    reference
        .ok(
            Method::POST,
            "/indexes",
            json!({"uid": "movies", "primaryKey": "id"}),
        )
        .await;
    reference
        .ok(
            Method::PATCH,
            "/indexes/movies/settings",
            serde_json::from_str(SETTINGS).unwrap(),
        )
        .await;
    reference
        .ok(Method::POST, "/indexes/movies/documents", json!(dataset()))
        .await;

    let (_dir, cp, _nodes, gateway) = fleet(groups).await;
    let meili = Meili::new(&gateway.url);
    meili
        .ok(Method::POST, "/indexes", json!({"uid": "movies", "primaryKey": "id", "miroirShardCount": 16, "miroirReplicationFactor": replication_factor}))
        .await;
    meili
        .ok(
            Method::PATCH,
            "/indexes/movies/settings",
            serde_json::from_str(SETTINGS).unwrap(),
        )
        .await;
    gateway
        .wait_version(cp.current_topology().await.version)
        .await;
    meili
        .ok(Method::POST, "/indexes/movies/documents", json!(dataset()))
        .await;

    let queries = queries(300);
    for query in &queries {
        compare(&reference, &meili, query, label).await;
    }
    // The GET form of some of them.
    for query in queries.iter().take(30) {
        let mut params = Vec::new();
        for (k, v) in query.as_object().unwrap() {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Array(items) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            params.push(format!(
                "{k}={}",
                v.replace('%', "%25")
                    .replace(' ', "%20")
                    .replace('&', "%26")
                    .replace('[', "%5B")
                    .replace(']', "%5D")
                    .replace('>', "%3E")
                    .replace('<', "%3C")
                    .replace('=', "%3D")
            ));
        }
        let path = format!("/indexes/movies/search?{}", params.join("&"));
        let (status_r, r) = reference.get(&path).await;
        let (status_f, f) = meili.get(&path).await;
        assert_eq!(
            (status_r, status_f),
            (200, 200),
            "{label} GET {path}: {r} / {f}"
        );
        assert_eq!(
            r["estimatedTotalHits"], f["estimatedTotalHits"],
            "{label} GET {path}"
        );
        assert_eq!(r["totalHits"], f["totalHits"], "{label} GET {path}");
        let keys = |v: &Value| {
            v["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| key(h, query))
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&r), keys(&f), "{label} GET {path}");
    }
    // Facet search.
    let mut non_empty = 0;
    for (i, query) in queries.iter().take(20).enumerate() {
        let facet = ["genre", "tags"][i % 2];
        let mut body =
            json!({"facetName": facet, "facetQuery": &WORDS[i % WORDS.len()][..1 + i % 2]});
        for k in ["q", "filter"] {
            if let Some(v) = query.get(k) {
                body[k] = v.clone();
            }
        }
        let (status_r, r) = reference
            .post("/indexes/movies/facet-search", body.clone())
            .await;
        let (status_f, f) = meili
            .post("/indexes/movies/facet-search", body.clone())
            .await;
        assert_eq!(
            (status_r, status_f),
            (200, 200),
            "{label} facet search {body}: {r} / {f}"
        );
        assert_eq!(
            r["facetHits"], f["facetHits"],
            "{label} facet search {body}"
        );
        non_empty += usize::from(!r["facetHits"].as_array().unwrap().is_empty());
    }
    assert!(
        non_empty >= 5,
        "{label}: only {non_empty} facet searches found values"
    );
    for (variant, pair) in queries.chunks(2).take(40).enumerate() {
        compare_multi(&reference, &meili, pair, label, variant % 3).await;
    }
    // An index named in `facetsByIndex` but not queried must exist: the same error.
    let missing = json!({"queries": [{"indexUid": "movies", "q": ""}],
        "federation": {"facetsByIndex": {"nowhere": ["genre"]}}});
    let (status_r, r) = reference.post("/multi-search", missing.clone()).await;
    let (status_f, f) = meili.post("/multi-search", missing.clone()).await;
    assert_eq!(status_r, 400, "{r}");
    assert_eq!(
        (status_r, &r["code"], &r["message"]),
        (status_f, &f["code"], &f["message"]),
        "{label}"
    );
    // A query on a missing index: 400 (not the URL's resource), plain or federated.
    for federation in [Value::Null, json!({})] {
        let mut request = json!({"queries": [{"indexUid": "movies", "q": ""},
            {"indexUid": "nowhere", "q": ""}]});
        if !federation.is_null() {
            request["federation"] = federation;
        }
        let (status_r, r) = reference.post("/multi-search", request.clone()).await;
        let (status_f, f) = meili.post("/multi-search", request.clone()).await;
        assert_eq!(
            (status_r, &r["code"]),
            (400, &json!("index_not_found")),
            "{r}"
        );
        assert_eq!(
            (status_r, &r["code"], &r["message"]),
            (status_f, &f["code"], &f["message"]),
            "{label} {request}"
        );
    }
    // Federation's own `distinct` is refused rather than ignored.
    let distinct = json!({"queries": [{"indexUid": "movies", "q": ""}],
        "federation": {"distinct": "genre"}});
    let (status, answer) = meili.post("/multi-search", distinct).await;
    assert_eq!(
        (status, &answer["code"]),
        (501, &json!("miroir_not_supported")),
        "{answer}"
    );
    compare_performance_details(&reference, &meili, label).await;
    println!(
        "merge oracle {label}: {} queries and 40 multi-searches (plain and federated) matched",
        queries.len()
    );
}

/// `showPerformanceDetails` (Meilisearch ≥ 1.35): the same answer plus a
/// `performanceDetails` object of stage durations, for a search (POST and GET) and a
/// federated multi-search; the fleet adds its wait for the nodes and its merge; a value that is not a
/// boolean is the same error on both.
async fn compare_performance_details(reference: &Meili, fleet: &Meili, label: &str) {
    let query = json!({"q": "", "facets": ["genre"], "limit": 5, "showPerformanceDetails": true});
    compare(reference, fleet, &query, label).await;
    let federated = json!({"federation": {"showPerformanceDetails": true, "limit": 5},
        "queries": [{"indexUid": "movies", "q": ""}, {"indexUid": "movies", "filter": "year > 1990"}]});
    for (meili, is_fleet) in [(reference, false), (fleet, true)] {
        let (status, answer) = meili.post("/indexes/movies/search", query.clone()).await;
        assert_eq!(status, 200, "{label}: {answer}");
        let stages = stage_durations(&answer["performanceDetails"], label);
        assert!(stages.contains(&"search".to_owned()), "{label}: {stages:?}");
        // Meilisearch 1.50 names these stages of every search; the fleet adds its own
        // wait for the nodes and its merge to them.
        if is_fleet {
            for stage in ["search > wait for remote results", "search > merge results"] {
                assert!(stages.contains(&stage.to_owned()), "{label}: {stages:?}");
            }
        }
        let (status, answer) = meili
            .get("/indexes/movies/search?q=&limit=2&showPerformanceDetails=true")
            .await;
        assert_eq!(status, 200, "{label}: {answer}");
        stage_durations(&answer["performanceDetails"], label);
        let (_, answer) = meili
            .post("/indexes/movies/search", json!({"q": "", "limit": 2}))
            .await;
        assert!(
            answer.get("performanceDetails").is_none(),
            "{label}: {answer}"
        );
        let (status, answer) = meili
            .post(
                "/indexes/movies/search",
                json!({"q": "", "showPerformanceDetails": "yes"}),
            )
            .await;
        assert_eq!(
            (status, &answer["code"]),
            (400, &json!("invalid_search_show_performance_details")),
            "{label}: {answer}"
        );
        let (status, answer) = meili.post("/multi-search", federated.clone()).await;
        assert_eq!(status, 200, "{label}: {answer}");
        let stages = stage_durations(&answer["performanceDetails"], label);
        assert!(
            stages.contains(&"search > merge results".to_owned()),
            "{label}: {stages:?}"
        );
    }
    let (_, r) = reference.post("/multi-search", federated.clone()).await;
    let (_, f) = fleet.post("/multi-search", federated).await;
    assert_eq!(r["estimatedTotalHits"], f["estimatedTotalHits"], "{label}");
}

/// The stage names of a `performanceDetails` object, each value checked to be a duration
/// as Meilisearch writes it (`"436.67µs"`, `"3.56ms"`).
fn stage_durations(details: &Value, label: &str) -> Vec<String> {
    let stages = details
        .as_object()
        .unwrap_or_else(|| panic!("{label}: no performanceDetails object: {details}"));
    assert!(!stages.is_empty(), "{label}: empty performanceDetails");
    for (stage, duration) in stages {
        let text = duration.as_str().unwrap_or_default();
        let number = text.trim_end_matches(|c: char| c.is_alphabetic() || c == 'µ');
        let unit = &text[number.len()..];
        assert!(
            number.parse::<f64>().is_ok() && ["s", "ms", "µs", "ns"].contains(&unit),
            "{label}: {stage} = {duration}"
        );
    }
    stages.keys().cloned().collect()
}

#[tokio::test]
async fn merge_oracle_3_nodes_one_group_rf1() {
    run_oracle("3 nodes, RG=1, RF=1", &[0, 0, 0], 1).await;
}

#[tokio::test]
async fn merge_oracle_4_nodes_two_groups_rf1() {
    run_oracle("4 nodes, RG=2, RF=1", &[0, 0, 1, 1], 1).await;
}

#[tokio::test]
async fn merge_oracle_4_nodes_one_group_rf2() {
    run_oracle("4 nodes, RG=1, RF=2", &[0, 0, 0, 0], 2).await;
}

/// Under Meilisearch's default `searchableAttributes: ["*"]` the nodes search every
/// attribute, Miroir's `_miroir_shard` too: no query word may match it, so numbers in
/// queries find what one node holding everything finds.
#[tokio::test]
async fn query_words_never_match_miroirs_shard_field() {
    let reference_node = TestNode::start().await;
    let reference = Meili::new(&reference_node.url);
    let (_dir, cp, _nodes, gateway) = fleet(&[0, 0, 0]).await;
    let meili = Meili::new(&gateway.url);
    let documents: Vec<Value> = (0..60)
        .map(|id| json!({"id": id, "title": format!("part {}", id % 7), "note": "- _ : /"}))
        .collect();
    for (target, create) in [
        (&reference, json!({"uid": "plain", "primaryKey": "id"})),
        (
            &meili,
            json!({"uid": "plain", "primaryKey": "id", "miroirShardCount": 16}),
        ),
    ] {
        target.ok(Method::POST, "/indexes", create).await;
    }
    gateway
        .wait_version(cp.current_topology().await.version)
        .await;
    for target in [&reference, &meili] {
        target
            .ok(Method::POST, "/indexes/plain/documents", json!(documents))
            .await;
    }
    for q in ["0", "1", "3", "6", "12", "15", "-", "_:", "part 3"] {
        let query = json!({"q": q, "limit": 100});
        let (_, r) = reference.post("/indexes/plain/search", query.clone()).await;
        let (_, f) = meili.post("/indexes/plain/search", query).await;
        let ids = |answer: &Value| {
            answer["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["id"].as_u64().unwrap())
                .collect::<BTreeSet<_>>()
        };
        assert_eq!(
            (r["estimatedTotalHits"].clone(), ids(&r)),
            (f["estimatedTotalHits"].clone(), ids(&f)),
            "q={q:?}"
        );
    }
}
