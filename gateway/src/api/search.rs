//! Search and facet search (DESIGN §5): scatter-gather over a covering set (`scatter.rs`),
//! then an exact merge of hits, totals and facets.

use super::auth::Caller;
use super::consistency::SettingsFloor;
use super::error::{MeiliError, positive_integer};
use super::request_body::{json_object, json_object_or_empty};
use crate::read::plan::{ReadPlan, next_turn};
pub use crate::read::scatter::SearchFailure;
use crate::read::scatter::{NodeRequest, gather, gather_from, mark_degraded};
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use miroir_proto::settings::SHARD_FIELD;
use serde_json::{Map, Value, json};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, HashSet};

fn uint(query: &Map<String, Value>, key: &str) -> Option<usize> {
    query.get(key).and_then(Value::as_u64).map(|v| v as usize)
}

/// What a sort compares of a value, as Meilisearch sorts: numbers first, then strings
/// (booleans are the strings `true` and `false` to Meilisearch's facets), compared
/// lowercase; an array by its first element; anything else (null, an object) is no value.
enum SortKey {
    Number(f64),
    Text(String),
}

impl SortKey {
    fn of(value: Option<&Value>) -> Option<Self> {
        let value = match value? {
            Value::Array(items) => items.first()?,
            other => other,
        };
        match value {
            Value::Number(n) => n.as_f64().map(Self::Number),
            Value::String(s) => Some(Self::Text(s.to_lowercase())),
            Value::Bool(b) => Some(Self::Text(b.to_string())),
            _ => None,
        }
    }

    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Number(x), Self::Number(y)) => x.total_cmp(y),
            (Self::Text(x), Self::Text(y)) => x.cmp(y),
            (Self::Number(_), Self::Text(_)) => Ordering::Less,
            (Self::Text(_), Self::Number(_)) => Ordering::Greater,
        }
    }
}

/// Orders two sort values; a total order over any JSON, so sorting never panics.
pub(crate) fn sort_value_order(a: Option<&Value>, b: Option<&Value>, ascending: bool) -> Ordering {
    // Documents without a value come last in either direction, as in Meilisearch.
    let ordering = match (SortKey::of(a), SortKey::of(b)) {
        (None, None) => return Ordering::Equal,
        (Some(_), None) => return Ordering::Less,
        (None, Some(_)) => return Ordering::Greater,
        (Some(x), Some(y)) => x.cmp(&y),
    };
    if ascending {
        ordering
    } else {
        ordering.reverse()
    }
}

pub(crate) fn lookup<'a>(hit: &'a Value, path: &str) -> Option<&'a Value> {
    hit.get(path)
        .or_else(|| path.split('.').try_fold(hit, |v, part| v.get(part)))
}

/// Orders two hits by their `_rankingScoreDetails`, rule by rule in `order`: higher
/// `score` first; sort criteria (`attr:asc|desc`) by `value`, geo ones by `distance`.
pub fn compare_details(a: &Value, b: &Value) -> Ordering {
    let Some(entries) = a.as_object() else {
        return Ordering::Equal;
    };
    let mut entries: Vec<(&String, &Value)> = entries.iter().collect();
    entries.sort_by_key(|(_, e)| e["order"].as_u64().unwrap_or(u64::MAX));
    for (name, left) in entries {
        let right = &b[name.as_str()];
        let ascending = !name.ends_with(":desc");
        let ordering = if let Some(l) = left.get("score").and_then(Value::as_f64) {
            right["score"]
                .as_f64()
                .unwrap_or(0.0)
                .partial_cmp(&l)
                .unwrap_or(Ordering::Equal)
        } else if left.get("distance").is_some() {
            sort_value_order(left.get("distance"), right.get("distance"), ascending)
        } else {
            sort_value_order(left.get("value"), right.get("value"), ascending)
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    Ordering::Equal
}

/// `POST /indexes/{uid}/search`.
pub async fn search_post(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    floor: SettingsFloor,
    Path(uid): Path<String>,
    body: Bytes,
) -> Result<Response, MeiliError> {
    let query = json_object_or_empty(&body)?;
    Ok(respond(
        run_search(&state, &caller, floor, &uid, query, true).await,
    ))
}

/// `GET /indexes/{uid}/search`: the query string in the POST body's shape (numbers,
/// booleans, comma-separated lists; `sort` keeps `_geoPoint(lat,lng)` whole; a `filter`
/// that parses as JSON is used as JSON, as Meilisearch does).
pub async fn search_get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    floor: SettingsFloor,
    Path(uid): Path<String>,
    axum::extract::Query(params): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<Response, MeiliError> {
    let mut query = Map::new();
    let mut hybrid = std::collections::HashMap::new();
    for (key, value) in params {
        let list = |v: &str| Value::Array(v.split(',').map(|s| json!(s.trim())).collect());
        let parsed = match key.as_str() {
            "offset" | "limit" | "page" | "hitsPerPage" | "cropLength" => {
                json!(positive_integer::<u64>(&key, &value, get_code(&key))?)
            }
            "rankingScoreThreshold" => json!(value.parse::<f64>().map_err(|_| MeiliError::invalid("invalid_search_ranking_score_threshold", format!("Invalid value in parameter `rankingScoreThreshold`: could not parse `{value}` as a float")))?),
            "showRankingScore" | "showRankingScoreDetails" | "showMatchesPosition" | "showPerformanceDetails" | "retrieveVectors" => {
                json!(value.parse::<bool>().map_err(|_| MeiliError::invalid(get_code(&key), format!("Invalid value in parameter `{key}`: could not parse `{value}` as a boolean, expected either `true` or `false`")))?)
            }
            "attributesToRetrieve" | "attributesToCrop" | "attributesToHighlight" | "facets" | "attributesToSearchOn" | "locales" => list(&value),
            "sort" => {
                let (mut items, mut current, mut depth) = (Vec::new(), String::new(), 0i32);
                for c in value.chars() {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        ',' if depth == 0 => {
                            items.push(json!(current.trim()));
                            current.clear();
                            continue;
                        }
                        _ => {}
                    }
                    current.push(c);
                }
                if !current.trim().is_empty() {
                    items.push(json!(current.trim()));
                }
                Value::Array(items)
            }
            "filter" => serde_json::from_str(&value).unwrap_or(json!(value)),
            "vector" => {
                let numbers: Result<Vec<f32>, _> =
                    value.split(',').map(|n| n.trim().parse::<f32>()).collect();
                json!(numbers.map_err(|_| MeiliError::invalid(
                    "invalid_search_vector",
                    format!("Invalid value in parameter `vector`: could not parse `{value}` as a list of floats")
                ))?)
            }
            // Folded into `hybrid` below, as Meilisearch does.
            "hybridEmbedder" | "hybridSemanticRatio" => {
                hybrid.insert(key, value);
                continue;
            }
            _ => json!(value),
        };
        query.insert(key, parsed);
    }
    if let Some(hybrid) = hybrid_from_query_string(&hybrid)? {
        query.insert("hybrid".into(), hybrid);
    }
    if query.contains_key("vector") && !query.contains_key("hybrid") {
        return Err(MeiliError::invalid(
            "missing_search_hybrid",
            "`hybridEmbedder` is mandatory when `vector` is present",
        ));
    }
    Ok(respond(
        run_search(&state, &caller, floor, &uid, query, true).await,
    ))
}

/// `hybrid` from `hybridEmbedder` and `hybridSemanticRatio` (default 0.5), as Meilisearch
/// builds it for a GET search.
fn hybrid_from_query_string(
    params: &std::collections::HashMap<String, String>,
) -> Result<Option<Value>, MeiliError> {
    let ratio = match params.get("hybridSemanticRatio") {
        None => 0.5,
        Some(value) => match value.parse::<f32>() {
            Ok(ratio) if (0.0..=1.0).contains(&ratio) => ratio,
            _ => {
                return Err(MeiliError::invalid(
                    "invalid_search_semantic_ratio",
                    format!(
                        "Invalid value in parameter `hybridSemanticRatio`: `{value}` is not a float between `0.0` and `1.0`"
                    ),
                ));
            }
        },
    };
    match params.get("hybridEmbedder") {
        Some(embedder) => Ok(Some(json!({"embedder": embedder, "semanticRatio": ratio}))),
        None if params.contains_key("hybridSemanticRatio") => Err(MeiliError::invalid(
            "invalid_search_hybrid_query",
            "`hybridEmbedder` is mandatory when `hybridSemanticRatio` is present",
        )),
        None => Ok(None),
    }
}

fn get_code(key: &str) -> &'static str {
    match key {
        "offset" => "invalid_search_offset",
        "limit" => "invalid_search_limit",
        "page" => "invalid_search_page",
        "hitsPerPage" => "invalid_search_hits_per_page",
        "cropLength" => "invalid_search_crop_length",
        "showRankingScore" => "invalid_search_show_ranking_score",
        "showRankingScoreDetails" => "invalid_search_show_ranking_score_details",
        "showMatchesPosition" => "invalid_search_show_matches_position",
        "showPerformanceDetails" => "invalid_search_show_performance_details",
        _ => "invalid_search_retrieve_vectors",
    }
}

/// A merged search answer and the `index/shard`s no live replica could serve.
pub struct Searched {
    /// The response body, in Meilisearch's key order.
    pub body: Map<String, Value>,
    /// The response as a node sent it, Miroir's field removed (then `body` is empty): a
    /// one-node answer passed through without a parse (see [`from_one_node`]).
    pub raw: Option<Vec<u8>>,
    /// Shards left out (partial results).
    pub degraded: Vec<String>,
}

/// The HTTP answer for a search.
pub fn respond(result: Result<Searched, SearchFailure>) -> Response {
    match result {
        Ok(searched) => {
            let mut response = match searched.raw {
                Some(raw) => (
                    StatusCode::OK,
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    raw,
                )
                    .into_response(),
                None => (StatusCode::OK, Json(Value::Object(searched.body))).into_response(),
            };
            mark_degraded(&mut response, &searched.degraded);
            response
        }
        Err(failure) => {
            let (status, body) = failure.parts();
            (status, Json(body)).into_response()
        }
    }
}

/// A merged hit as the client asked for it: without Miroir's field, the attributes the
/// gateway added for the merge (`injected`), and the scores it did not ask for.
pub(crate) fn as_asked(hit: &mut Value, injected: &[String], score: bool, details: bool) {
    if let Some(object) = hit.as_object_mut() {
        strip_miroir(object);
        for field in injected {
            object.remove(field);
        }
        if !score {
            object.remove("_rankingScore");
        }
        if !details {
            object.remove("_rankingScoreDetails");
        }
    }
}

/// Removes Miroir's field from a hit, its `_formatted` copy and its match positions.
pub(crate) fn strip_miroir(hit: &mut Map<String, Value>) {
    hit.remove(SHARD_FIELD);
    if let Some(Value::Object(formatted)) = hit.get_mut("_formatted") {
        formatted.remove(SHARD_FIELD);
    }
    if let Some(Value::Object(positions)) = hit.get_mut("_matchesPosition") {
        positions.remove(SHARD_FIELD);
    }
}

/// When one node holds every shard of the index and is asked for all of them, there is
/// nothing to merge: it gets the client's own query (no page mode, no scores, no shard
/// filter) and its answer is passed on with Miroir's field removed and facet values cut to
/// the index's `maxValuesPerFacet` (nodes hold a higher one). `None` when this does not
/// apply or the node failed (the scatter-gather path then retries elsewhere).
async fn from_one_node(
    state: &AppState,
    read: &ReadPlan,
    query: &Map<String, Value>,
    settings: Option<&Map<String, Value>>,
    raw_ok: bool,
) -> Option<Result<Searched, SearchFailure>> {
    // Under a settings floor the scatter-gather path reports what the floor left out.
    if read.floor > 0 {
        return None;
    }
    let (topology, plan, uid) = (&read.topology, &read.plan, &read.index().uid);
    let (node_id, _) = plan.assignments.iter().next()?;
    if plan.assignments.len() != 1 || !plan.missing.is_empty() || !plan.unfiltered.contains(node_id)
    {
        return None;
    }
    let node = topology.nodes.iter().find(|n| &n.id == node_id)?;
    let body = Value::Object(query.clone());
    let path = format!("/indexes/{uid}/search");
    // When no facet has more values than the index shows, nothing in the answer needs
    // changing but Miroir's field: pass the node's bytes through with it cut out, sparing
    // a parse and a re-serialization.
    if raw_ok {
        let (status, bytes) = state
            .nodes
            .send_raw(
                node_id,
                &node.address,
                http::Method::POST,
                &path,
                Some(crate::nodes::NodeBody::json(&body)),
            )
            .await
            .ok()?;
        // Without facets asked for, the answer has none to cut.
        let facets_within_limit = || {
            let asked = query
                .get("facets")
                .is_some_and(|f| f.as_array().is_none_or(|f| !f.is_empty()));
            !asked
                || crate::read::strip::most_facet_values(&bytes)
                    .is_some_and(|n| n <= FacetOrder::from_settings(settings).max_values)
        };
        return match status {
            200 if facets_within_limit() => Some(Ok(Searched {
                body: Map::new(),
                raw: Some(crate::read::strip::strip_member(&bytes, SHARD_FIELD)),
                degraded: Vec::new(),
            })),
            200 => one_node_answer(serde_json::from_slice(&bytes).ok()?, settings).map(Ok),
            400..=499 => {
                let error = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
                Some(Err(SearchFailure::Node(status, error)))
            }
            _ => None,
        };
    }
    let answer = state
        .nodes
        .call(
            node_id,
            &node.address,
            http::Method::POST,
            &path,
            Some(&body),
        )
        .await
        .ok()?;
    match answer.status {
        200 => {}
        status @ 400..=499 => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            return Some(Err(SearchFailure::Node(status, answer.body)));
        }
        _ => return None,
    }
    one_node_answer(answer.body, settings).map(Ok)
}

/// A one-node answer as the client gets it: without Miroir's field (in hits and facets)
/// and with facet values cut to the index's `maxValuesPerFacet`.
fn one_node_answer(body: Value, settings: Option<&Map<String, Value>>) -> Option<Searched> {
    let Value::Object(mut response) = body else {
        return None;
    };
    if let Some(Value::Array(hits)) = response.get_mut("hits") {
        for hit in hits.iter_mut().filter_map(Value::as_object_mut) {
            strip_miroir(hit);
        }
    }
    if let Some(Value::Object(stats)) = response.get_mut("facetStats") {
        stats.remove(SHARD_FIELD);
    }
    if let Some(distribution) = response.get_mut("facetDistribution").map(Value::take) {
        let order = FacetOrder::from_settings(settings);
        let only = json!({ "facetDistribution": distribution });
        let candidates = ["estimatedTotalHits", "totalHits"]
            .iter()
            .find_map(|key| response.get(*key).and_then(Value::as_u64))
            .unwrap_or(0);
        let (distribution, _) = merge_facets(std::iter::once(&only), &order, candidates);
        response.insert("facetDistribution".into(), distribution);
    }
    Some(Searched {
        body: response,
        raw: None,
        degraded: Vec::new(),
    })
}

/// Scatter-gather and merge one search. With `raw_ok` (a single search, answered as is) a
/// one-node answer may come back as the node's bytes; multi-search merges answers and
/// needs them parsed.
pub async fn run_search(
    state: &AppState,
    caller: &Caller,
    floor: SettingsFloor,
    uid: &str,
    mut query: Map<String, Value>,
    raw_ok: bool,
) -> Result<Searched, SearchFailure> {
    caller
        .restrict_search(uid, &mut query)
        .map_err(SearchFailure::Miroir)?;
    // Nodes get paging of Miroir's making: the client's is checked here.
    for (key, code) in super::error::SEARCH_PAGING {
        super::error::check_positive_integer(query.get(key), || format!(".{key}"), code)
            .map_err(SearchFailure::Miroir)?;
    }
    let turn = next_turn();

    let page_mode = query.contains_key("page") || query.contains_key("hitsPerPage");
    let (offset, limit) = (
        uint(&query, "offset").unwrap_or(0),
        uint(&query, "limit").unwrap_or(20),
    );
    let (page, hits_per_page) = (
        uint(&query, "page").unwrap_or(1),
        uint(&query, "hitsPerPage").unwrap_or(20),
    );
    // Saturating: paging values may be anything up to 2^64 - 1, and a wrap would show
    // another page (as one Meilisearch 1.50 does; docs/api-compatibility.md).
    let (from, count) = if page_mode {
        (
            page.saturating_sub(1).saturating_mul(hits_per_page),
            if page == 0 { 0 } else { hits_per_page },
        )
    } else {
        (offset, limit)
    };
    let show_score = query
        .get("showRankingScore")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let sort: Vec<(String, bool)> = query
        .get("sort")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .filter_map(|s| s.rsplit_once(':').map(|(f, d)| (f.to_owned(), d == "asc")))
                .collect()
        })
        .unwrap_or_default();
    let settings = super::settings::cached(state, uid).await;
    let read = ReadPlan::new(state, uid, turn, floor)?;
    if let Some(searched) = from_one_node(state, &read, &query, settings.as_deref(), raw_ok).await {
        return searched;
    }
    let primary_key = read.index().primary_key.clone();
    // The query's `distinct`, else the index's setting (applied across nodes too).
    let distinct = match query.get("distinct").and_then(Value::as_str) {
        Some(attribute) => Some(attribute.to_owned()),
        None => settings
            .as_ref()
            .and_then(|s| s.get("distinctAttribute"))
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    // The index's `pagination.maxTotalHits` bounds what can be paged through and the total.
    let max_total = settings
        .as_ref()
        .and_then(|s| s.get("pagination"))
        .and_then(|p| p.get("maxTotalHits"))
        .and_then(Value::as_u64)
        .unwrap_or(1000) as usize;
    let requested: Option<Vec<String>> = query
        .get("attributesToRetrieve")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        });

    // What every node is asked: the first from + count hits of its shards, with scores and
    // whatever the merge compares on.
    // Page mode on the nodes: their `totalHits` is exhaustive, where `estimatedTotalHits`
    // is only an estimate in Meilisearch.
    let mut node_query = query.clone();
    for key in ["offset", "limit"] {
        node_query.remove(key);
    }
    node_query.insert("page".into(), json!(1));
    // Nothing past `maxTotalHits` is ever shown: nodes are asked for no more.
    let wanted = if from >= max_total {
        0
    } else {
        from.saturating_add(count).min(max_total)
    };
    node_query.insert("hitsPerPage".into(), json!(wanted));
    node_query.insert("showRankingScore".into(), json!(true));
    // With a sort, Meilisearch ranks by the rules before `sort`, then the sort, then the
    // rules after it: the per-rule details let the merge do exactly that.
    let show_details = query
        .get("showRankingScoreDetails")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    // A hybrid search reports how many of the hits shown are semantic: the details say
    // which (`vectorSort`).
    let hybrid = query.get("hybrid").is_some_and(|h| !h.is_null());
    if !sort.is_empty() || hybrid {
        node_query.insert("showRankingScoreDetails".into(), json!(true));
    }
    // With a distinct attribute a node's total counts each value once among its own
    // shards, but one value can live on several nodes: the nodes' values of that
    // attribute (as a facet) let the merge count each once across nodes.
    let distinct_facet = distinct
        .as_ref()
        // Only a filterable attribute can be a facet; a query's own `distinct` on another
        // is left for the nodes to refuse, with Meilisearch's `invalid_search_distinct`.
        // (Without known settings, a query's own is taken to be filterable.)
        .filter(|a| match settings.as_deref() {
            Some(_) => is_filterable(settings.as_deref(), a),
            None => query.get("distinct").is_some_and(Value::is_string),
        })
        .cloned();
    let mut facet_injected = false;
    if let Some(attribute) = &distinct_facet {
        let mut facets: Vec<Value> = node_query
            .get("facets")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !facets.iter().any(|f| f == attribute.as_str() || f == "*") {
            facets.push(json!(attribute));
            facet_injected = true;
        }
        node_query.insert("facets".into(), Value::Array(facets));
    }
    let mut injected: Vec<String> = Vec::new();
    if let Some(requested) = &requested
        && !requested.iter().any(|a| a == "*")
    {
        let mut attributes = requested.clone();
        // The cross-node distinct needs the distinct attribute's value.
        if let Some(needed) = &distinct
            && !attributes.contains(needed)
        {
            attributes.push(needed.clone());
            injected.push(needed.clone());
        }
        node_query.insert("attributesToRetrieve".into(), json!(attributes));
    }

    let path = format!("/indexes/{uid}/search");
    let waited = std::time::Instant::now();
    let gathered = gather_from(
        state,
        read,
        &path,
        NodeRequest::One {
            body: &node_query,
            filter: query.get("filter"),
        },
    )
    .await?;
    let (waited, merged) = (waited.elapsed(), std::time::Instant::now());
    let mut answers: Vec<(usize, Value)> = gathered.answers.into_iter().enumerate().collect();

    // The hits move out of the answers: no copy.
    let mut hits: Vec<(usize, usize, Value)> = Vec::new();
    for (position, answer) in &mut answers {
        if let Some(Value::Array(list)) = answer.get_mut("hits").map(Value::take) {
            hits.extend(
                list.into_iter()
                    .enumerate()
                    .map(|(rank, hit)| (*position, rank, hit)),
            );
        }
    }
    let score = |hit: &Value| hit["_rankingScore"].as_f64().unwrap_or(0.0);
    hits.sort_by(|a, b| {
        let by_rules = if sort.is_empty() {
            Ordering::Equal
        } else {
            compare_details(&a.2["_rankingScoreDetails"], &b.2["_rankingScoreDetails"])
        };
        by_rules
            .then_with(|| {
                score(&b.2)
                    .partial_cmp(&score(&a.2))
                    .unwrap_or(Ordering::Equal)
            })
            // One node lists equal hits in the order it took the documents (its internal
            // ids), which nodes do not report: by primary key, the order of most bulk
            // loads, rather than node by node.
            .then_with(|| match &primary_key {
                Some(pk) => primary_key_order(a.2.get(pk.as_str()), b.2.get(pk.as_str())),
                None => Ordering::Equal,
            })
            .then(a.0.cmp(&b.0))
            .then(a.1.cmp(&b.1))
    });
    if let Some(attribute) = &distinct {
        let mut seen = HashSet::new();
        hits.retain(|(_, _, hit)| match lookup(hit, attribute) {
            None | Some(Value::Null) => true,
            Some(value) => seen.insert(value.to_string().to_lowercase()),
        });
    }
    let mut semantic_hits = 0;
    let page_hits: Vec<Value> = hits
        .into_iter()
        .skip(from.min(max_total))
        .take(count.min(max_total.saturating_sub(from)))
        .map(|(_, _, mut hit)| {
            if hit["_rankingScoreDetails"].get("vectorSort").is_some() {
                semantic_hits += 1;
            }
            as_asked(&mut hit, &injected, show_score, show_details);
            hit
        })
        .collect();

    // Meilisearch 1.50 counts every candidate (`maxTotalHits` bounds only the hits shown),
    // and so do the nodes: their counts add up.
    let total = distinct_facet
        .as_deref()
        .and_then(|attribute| distinct_total(answers.iter().map(|(_, a)| a), attribute))
        .unwrap_or_else(|| {
            answers
                .iter()
                .map(|(_, a)| a["totalHits"].as_u64().unwrap_or(0))
                .sum::<u64>()
        });
    let mut response = Map::new();
    response.insert("hits".into(), Value::Array(page_hits));
    response.insert(
        "query".into(),
        query
            .get("q")
            .cloned()
            .filter(|q| q.is_string())
            .unwrap_or(json!("")),
    );
    // Every node embeds the query alike.
    if let Some(vector) = answers.iter().find_map(|(_, a)| a.get("queryVector")) {
        response.insert("queryVector".into(), vector.clone());
    }
    response.insert(
        "processingTimeMs".into(),
        json!(
            answers
                .iter()
                .filter_map(|(_, a)| a["processingTimeMs"].as_u64())
                .max()
                .unwrap_or(0)
        ),
    );
    if page_mode {
        response.insert("hitsPerPage".into(), json!(hits_per_page));
        response.insert("page".into(), json!(page));
        response.insert(
            "totalPages".into(),
            json!(if hits_per_page == 0 {
                0
            } else {
                total.div_ceil(hits_per_page as u64)
            }),
        );
        response.insert("totalHits".into(), json!(total));
    } else {
        response.insert("limit".into(), json!(limit));
        response.insert("offset".into(), json!(offset));
        response.insert("estimatedTotalHits".into(), json!(total));
    }
    if query.get("facets").is_some_and(|f| !f.is_null()) {
        let order = FacetOrder::from_settings(settings.as_deref());
        let (mut distribution, mut stats) =
            merge_facets(answers.iter().map(|(_, a)| a), &order, total);
        if let (true, Some(attribute)) = (facet_injected, &distinct_facet) {
            for merged in [&mut distribution, &mut stats] {
                if let Some(object) = merged.as_object_mut() {
                    object.remove(attribute);
                }
            }
        }
        response.insert("facetDistribution".into(), distribution);
        response.insert("facetStats".into(), stats);
    }
    // A single search's own; multi-search gives one to the whole request.
    if raw_ok {
        response.insert("requestUid".into(), json!(request_uid()));
    }
    if crate::read::performance::asked(&query) {
        let mut details = miroir_proto::time::PerformanceDetails::default();
        for (_, answer) in &answers {
            details.add_answer(answer.get("performanceDetails"));
        }
        details.add("search > wait for remote results", waited);
        details.add("search > merge results", merged.elapsed());
        response.insert("performanceDetails".into(), details.to_value());
    }
    // Meilisearch reports it when it ran a semantic search (not for `semanticRatio: 0`):
    // the nodes say whether they did.
    if answers
        .iter()
        .any(|(_, a)| a.get("semanticHitCount").is_some())
    {
        response.insert("semanticHitCount".into(), json!(semantic_hits));
    }
    Ok(Searched {
        body: response,
        raw: None,
        degraded: gathered.degraded,
    })
}

/// Hits' primary key values in the order one node takes such documents in a bulk load:
/// numbers by value, before strings, strings by their bytes.
pub(crate) fn primary_key_order(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(Value::Number(_)), Some(Value::String(_))) => Ordering::Less,
        (Some(Value::String(_)), Some(Value::Number(_))) => Ordering::Greater,
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

/// A search answer's `requestUid`: Meilisearch 1.50 makes a UUID v7 for every search
/// request (one for a whole multi-search), and so does the gateway for what it merges.
pub fn request_uid() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Whether the index's settings make `attribute` filterable (so it can be a facet).
fn is_filterable(settings: Option<&Map<String, Value>>, attribute: &str) -> bool {
    let Some(Value::Array(rules)) = settings.and_then(|s| s.get("filterableAttributes")) else {
        return false;
    };
    rules.iter().any(|rule| match rule {
        Value::String(name) => name == attribute || name == "*",
        // Granular form: `{"attributePatterns": [...], "features": {...}}`.
        Value::Object(rule) => rule
            .get("attributePatterns")
            .and_then(Value::as_array)
            .is_some_and(|p| p.iter().any(|p| p == attribute || p == "*")),
        _ => false,
    })
}

/// The number of hits once distinct is applied across nodes: the distinct values seen on
/// any node, each once, plus the hits without a value (each is its own). `None` when a
/// node's answer lacks the attribute's values or may have cut them
/// ([`NODE_MAX_VALUES_PER_FACET`]), and the sum is all that is known.
fn distinct_total<'a>(answers: impl Iterator<Item = &'a Value>, attribute: &str) -> Option<u64> {
    let mut values: HashSet<String> = HashSet::new();
    let mut without = 0;
    for answer in answers {
        let node_total = answer["totalHits"].as_u64()?;
        // No entry: none of the node's hits has a value.
        let node_values = match answer["facetDistribution"].get(attribute) {
            None => 0,
            Some(Value::Object(node_values)) => {
                if node_values.len() as u64 >= miroir_proto::settings::NODE_MAX_VALUES_PER_FACET {
                    return None;
                }
                values.extend(node_values.keys().map(|v| v.to_lowercase()));
                node_values.len() as u64
            }
            Some(_) => return None,
        };
        without += node_total.saturating_sub(node_values);
    }
    Some(values.len() as u64 + without)
}

/// `POST /indexes/{uid}/facet-search`: each covering node searches the facet values of its
/// own shards; counts are summed per value.
pub async fn facet_search(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    floor: SettingsFloor,
    Path(uid): Path<String>,
    body: Bytes,
) -> Result<Response, MeiliError> {
    let mut query = json_object(&body)?;
    caller.restrict_search(&uid, &mut query)?;
    let path = format!("/indexes/{uid}/facet-search");
    let request = NodeRequest::One {
        body: &query,
        filter: query.get("filter"),
    };
    let gathered = match gather(&state, &uid, next_turn(), floor, &path, request).await {
        Ok(gathered) => gathered,
        Err(failure) => {
            let (status, body) = failure.parts();
            return Ok((status, Json(body)).into_response());
        }
    };
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut processing = 0;
    for answer in &gathered.answers {
        processing = processing.max(answer["processingTimeMs"].as_u64().unwrap_or(0));
        for hit in answer["facetHits"].as_array().into_iter().flatten() {
            if let Some(value) = hit["value"].as_str() {
                *counts.entry(value.to_owned()).or_default() += hit["count"].as_u64().unwrap_or(0);
            }
        }
    }
    // Nodes answer up to Miroir's own limit; the client's index shows its
    // `maxValuesPerFacet` values in the facet's order, as Meilisearch collects them.
    let settings = super::settings::cached(&state, &uid).await;
    let facet = query
        .get("facetName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let hits: Vec<Value> = FacetOrder::from_settings(settings.as_deref())
        .keep(facet, counts.into_iter().collect(), true, 0)
        .into_iter()
        .map(|(value, count)| json!({"value": value, "count": count}))
        .collect();
    let facet_query = query.get("facetQuery").cloned().unwrap_or(Value::Null);
    let mut response =
        Json(json!({"facetHits": hits, "facetQuery": facet_query, "processingTimeMs": processing}))
            .into_response();
    mark_degraded(&mut response, &gathered.degraded);
    Ok(response)
}

/// How an index shows facet values (its `faceting` setting): at most `max_values` per
/// facet, alphabetically or by count.
#[derive(Debug, Clone)]
pub struct FacetOrder {
    /// `maxValuesPerFacet`.
    pub max_values: usize,
    /// `sortFacetValuesBy`: facet (or `*`) → `alpha` or `count`.
    pub sort_by: Map<String, Value>,
}

impl Default for FacetOrder {
    fn default() -> Self {
        Self {
            max_values: 100,
            sort_by: Map::new(),
        }
    }
}

impl FacetOrder {
    /// From an index's settings (Meilisearch's defaults when unknown).
    pub fn from_settings(settings: Option<&Map<String, Value>>) -> Self {
        let faceting = settings.and_then(|s| s.get("faceting"));
        Self {
            max_values: faceting
                .and_then(|f| f.get("maxValuesPerFacet"))
                .and_then(Value::as_u64)
                .map_or(100, |n| n as usize),
            sort_by: faceting
                .and_then(|f| f.get("sortFacetValuesBy"))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// Whether `facet`'s values are sorted by count (`sortFacetValuesBy`: the facet's own
    /// entry, else `*`).
    pub fn by_count(&self, facet: &str) -> bool {
        self.sort_by
            .get(facet)
            .or_else(|| self.sort_by.get("*"))
            .and_then(Value::as_str)
            == Some("count")
    }

    /// `values` (value, count) of `facet` in the index's order, cut at `max_values`, as
    /// Meilisearch 1.50 lists them (milli's `facet_distribution.rs`). A distribution lists
    /// the facet's numbers, then its strings. By count: most frequent first, equal counts
    /// the greater (normalized) value first. Alphabetically: strings by normalized value;
    /// numbers as printed (`10` before `2`) when the search has at most 3 000 candidates,
    /// which Meilisearch scans document by document, by value above that. When numbers fill
    /// the list from the facet tree (by count, or above 3 000), Meilisearch's cut misses
    /// the strings and lists them all. A facet search has strings only, in the same order.
    fn keep(
        &self,
        facet: &str,
        values: Vec<(String, u64)>,
        search: bool,
        candidates: u64,
    ) -> Vec<(String, u64)> {
        // Numbers with their value, parsed once.
        let mut numbers: Vec<(f64, (String, u64))> = Vec::new();
        let mut strings: Vec<(String, u64)> = Vec::new();
        for (value, count) in values {
            match (!search).then(|| facet_number(&value)).flatten() {
                Some(number) => numbers.push((number, (value, count))),
                None => strings.push((value, count)),
            }
        }
        let by_count = self.by_count(facet);
        let scanned = by_count || candidates > LINEAR_SCAN_CANDIDATES;
        if by_count {
            numbers.sort_by(|(x, a), (y, b)| b.1.cmp(&a.1).then(y.total_cmp(x)));
            strings.sort_by_cached_key(|(value, count)| {
                (
                    Reverse(*count),
                    Reverse(normalize_facet(value)),
                    value.clone(),
                )
            });
        } else {
            if scanned {
                numbers.sort_by(|(x, _), (y, _)| x.total_cmp(y));
            } else {
                numbers.sort_by(|(_, a), (_, b)| a.cmp(b));
            }
            strings.sort_by_cached_key(|(value, _)| (normalize_facet(value), value.clone()));
        }
        numbers.truncate(self.max_values);
        if !(scanned && numbers.len() == self.max_values && !search) {
            strings.truncate(self.max_values - numbers.len());
        }
        let mut kept: Vec<(String, u64)> = numbers.into_iter().map(|(_, v)| v).collect();
        kept.extend(strings);
        kept
    }
}

/// Meilisearch counts a facet's values from documents when a search has at most this many
/// candidates, and from its facet tree above (`LINEAR_SCAN_CANDIDATES_THRESHOLD`).
const LINEAR_SCAN_CANDIDATES: u64 = 3000;

/// A facet value as Meilisearch compares and groups it: trimmed, compatibility-decomposed,
/// lower-cased (milli's `normalize_facet`).
fn normalize_facet(value: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    value.trim().nfkd().collect::<String>().to_lowercase()
}

/// The number a facet value prints, when it is one: Meilisearch prints a numeric facet
/// value as its `f64` (`1980`, `2.5`), so `02134` or `1e3` are strings.
fn facet_number(value: &str) -> Option<f64> {
    let number: f64 = value.parse().ok()?;
    (number.is_finite() && number.to_string() == value).then_some(number)
}

/// Sums facet counts per value and keeps the index's first `maxValuesPerFacet` values in
/// its order for a search with `candidates` matches; takes the min of mins and max of
/// maxes.
pub fn merge_facets<'a>(
    answers: impl Iterator<Item = &'a Value>,
    order: &FacetOrder,
    candidates: u64,
) -> (Value, Value) {
    let mut distribution: Map<String, Value> = Map::new();
    let mut stats: Map<String, Value> = Map::new();
    for answer in answers {
        // `facets: ["*"]` asks nodes for every filterable attribute, Miroir's included.
        for (facet, values) in answer["facetDistribution"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(facet, _)| *facet != SHARD_FIELD)
        {
            let merged = distribution
                .entry(facet.clone())
                .or_insert_with(|| json!({}));
            for (value, count) in values.as_object().into_iter().flatten() {
                let total = merged[value].as_u64().unwrap_or(0) + count.as_u64().unwrap_or(0);
                merged[value] = json!(total);
            }
        }
        for (facet, range) in answer["facetStats"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(facet, _)| *facet != SHARD_FIELD)
        {
            let (min, max) = (range["min"].as_f64(), range["max"].as_f64());
            let entry = stats
                .entry(facet.clone())
                .or_insert_with(|| json!({"min": min, "max": max}));
            if let (Some(min), Some(current)) = (min, entry["min"].as_f64()) {
                entry["min"] = json!(current.min(min));
            }
            if let (Some(max), Some(current)) = (max, entry["max"].as_f64()) {
                entry["max"] = json!(current.max(max));
            }
        }
    }
    // Values in the index's order, cut at its maxValuesPerFacet.
    for (facet, values) in distribution.iter_mut() {
        if let Value::Object(map) = values {
            let counts = std::mem::take(map)
                .into_iter()
                .map(|(value, count)| (value, count.as_u64().unwrap_or(0)))
                .collect();
            map.extend(
                order
                    .keep(facet, counts, false, candidates)
                    .into_iter()
                    .map(|(value, count)| (value, json!(count))),
            );
        }
    }
    (Value::Object(distribution), Value::Object(stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_counts_each_value_once_across_nodes() {
        let answers = [
            json!({"totalHits": 3, "facetDistribution": {"color": {"Red": 2, "blue": 1}}}),
            // "red" again (another case), "green", and one hit without a colour.
            json!({"totalHits": 3, "facetDistribution": {"color": {"red": 1, "green": 4}}}),
            json!({"totalHits": 0, "facetDistribution": {}}),
        ];
        assert_eq!(distinct_total(answers.iter(), "color"), Some(3 + 1 + 1));
        let without_values = [json!({"totalHits": 2})];
        assert_eq!(distinct_total(without_values.iter(), "color"), Some(2));
        let capped = serde_json::Map::from_iter(
            (0..miroir_proto::settings::NODE_MAX_VALUES_PER_FACET)
                .map(|v| (v.to_string(), json!(1))),
        );
        let cut = [json!({"totalHits": 20_000, "facetDistribution": {"color": capped}})];
        assert_eq!(
            distinct_total(cut.iter(), "color"),
            None,
            "a cut list is not counted"
        );
    }

    #[test]
    fn a_get_search_builds_hybrid_as_meilisearch_does() {
        let params = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<std::collections::HashMap<_, _>>()
        };
        assert_eq!(hybrid_from_query_string(&params(&[])).unwrap(), None);
        assert_eq!(
            hybrid_from_query_string(&params(&[("hybridEmbedder", "default")])).unwrap(),
            Some(json!({"embedder": "default", "semanticRatio": 0.5}))
        );
        assert_eq!(
            hybrid_from_query_string(&params(&[
                ("hybridEmbedder", "default"),
                ("hybridSemanticRatio", "0.3")
            ]))
            .unwrap(),
            Some(json!({"embedder": "default", "semanticRatio": 0.3f32}))
        );
        let code =
            |pairs: &[(&str, &str)]| hybrid_from_query_string(&params(pairs)).unwrap_err().code;
        assert_eq!(
            code(&[("hybridSemanticRatio", "0.3")]),
            "invalid_search_hybrid_query"
        );
        assert_eq!(
            code(&[
                ("hybridEmbedder", "default"),
                ("hybridSemanticRatio", "1.5")
            ]),
            "invalid_search_semantic_ratio"
        );
    }

    #[test]
    fn facets_never_show_miroirs_field() {
        // `facets: ["*"]` makes nodes count every filterable attribute, Miroir's included.
        let a = json!({"facetDistribution": {"genre": {"a": 1}, "_miroir_shard": {"3": 1}}, "facetStats": {"_miroir_shard": {"min": 3.0, "max": 3.0}}});
        let (distribution, stats) = merge_facets(std::iter::once(&a), &FacetOrder::default(), 1);
        assert_eq!(distribution, json!({"genre": {"a": 1}}));
        assert_eq!(stats, json!({}));
        let answer = one_node_answer(a, None).expect("an object");
        assert_eq!(answer.body["facetDistribution"], json!({"genre": {"a": 1}}));
        assert_eq!(answer.body["facetStats"], json!({}));
    }

    #[test]
    fn facets_sum_and_stats_span() {
        let a = json!({"facetDistribution": {"genre": {"b": 1, "a": 2}}, "facetStats": {"year": {"min": 2000.0, "max": 2005.0}}});
        let b = json!({"facetDistribution": {"genre": {"a": 1}}, "facetStats": {"year": {"min": 1990.0, "max": 2001.0}}});
        let (distribution, stats) = merge_facets([&a, &b].into_iter(), &FacetOrder::default(), 4);
        assert_eq!(distribution, json!({"genre": {"a": 3, "b": 1}}));
        assert_eq!(stats, json!({"year": {"min": 1990.0, "max": 2005.0}}));
        let top = FacetOrder {
            max_values: 1,
            sort_by: json!({"*": "count"}).as_object().unwrap().clone(),
        };
        let (distribution, _) = merge_facets([&a, &b].into_iter(), &top, 4);
        assert_eq!(distribution, json!({"genre": {"a": 3}}));
    }

    /// Orders Meilisearch 1.50 was seen giving (docs/dev/meilisearch-reference.md).
    #[test]
    fn facet_values_are_listed_as_meilisearch_1_50_lists_them() {
        let order = |by: &str, max: usize| FacetOrder {
            max_values: max,
            sort_by: json!({"*": by}).as_object().unwrap().clone(),
        };
        let list = |order: FacetOrder, values: &[&str], candidates: u64| -> Vec<String> {
            let values = values.iter().map(|v| (v.to_string(), 10)).collect();
            order
                .keep("f", values, false, candidates)
                .into_iter()
                .map(|(v, _)| v)
                .collect()
        };
        let genres = ["Blues", "jazz", "Metal", "pop", "Rock"];
        assert_eq!(list(order("count", 2), &genres, 50), ["Rock", "pop"]);
        assert_eq!(
            list(order("alpha", 100), &genres, 50),
            ["Blues", "jazz", "Metal", "pop", "Rock"]
        );
        // A string that reads as a number ("9") cannot be told from one: not used here.
        let mixed = ["b", "A", "x9", "100", "10", "2.5", "2", "1", "-3"];
        assert_eq!(
            list(order("count", 100), &mixed, 50),
            ["100", "10", "2.5", "2", "1", "-3", "x9", "b", "A"]
        );
        // Numbers filling the list leave every string after them.
        assert_eq!(list(order("count", 1), &mixed, 50), ["100", "x9", "b", "A"]);
        assert_eq!(
            list(order("alpha", 100), &mixed, 3000),
            ["-3", "1", "10", "100", "2", "2.5", "A", "b", "x9"]
        );
        assert_eq!(
            list(order("alpha", 100), &mixed, 3001),
            ["-3", "1", "2", "2.5", "10", "100", "A", "b", "x9"]
        );
        assert_eq!(
            list(order("alpha", 1), &mixed, 3001),
            ["-3", "A", "b", "x9"]
        );
        assert_eq!(list(order("alpha", 2), &mixed, 3000), ["-3", "1"]);
        // A facet search lists strings only, equal counts the greater first.
        let values = genres.iter().map(|v| (v.to_string(), 10)).collect();
        let searched: Vec<String> = order("count", 3)
            .keep("f", values, true, 0)
            .into_iter()
            .map(|(v, _)| v)
            .collect();
        assert_eq!(searched, ["Rock", "pop", "Metal"]);
    }

    #[test]
    fn sort_values_are_totally_ordered_across_types() {
        let values = [
            json!("b"),
            json!("A"),
            json!(true),
            json!(false),
            json!({"x": 1}),
            json!(2),
            json!(-1.5),
            json!(null),
            json!([3]),
            json!([]),
            json!(["a"]),
        ];
        for ascending in [true, false] {
            let order = |x: &Value, y: &Value| sort_value_order(Some(x), Some(y), ascending);
            for x in &values {
                assert_eq!(order(x, x), Ordering::Equal, "{x}");
                for y in &values {
                    assert_eq!(order(x, y), order(y, x).reverse(), "{x} {y}");
                    for z in &values {
                        if order(x, y).is_le() && order(y, z).is_le() {
                            assert!(order(x, z).is_le(), "{x} <= {y} <= {z}");
                        }
                    }
                }
            }
            // Sorting many mixed values never panics.
            let mut many: Vec<Value> = values.iter().cycle().take(500).cloned().collect();
            many.sort_by(|x, y| order(x, y));
        }
    }
}
