//! Scatter-gather search (DESIGN §5): one covering set of nodes, each asked only for the
//! shards assigned to it (`_miroir_shard IN [...]` ANDed with the client's filter, so no
//! shard is counted twice with RF > 1), then an exact merge.

use super::documents::SHARD_FIELD;
use super::error::MeiliError;
use super::indexes::{find_index, json_object};
use crate::nodes::{NodeAnswer, Unreachable};
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use miroir_proto::pb::{self, GroupState, NodeState};
use reqwest::Method;
use serde_json::{Map, Value, json};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use tokio::task::JoinSet;

/// Rotates the group and replica chosen first, spreading reads.
static ROUND_ROBIN: AtomicUsize = AtomicUsize::new(0);

/// Which node serves which shards, and the shards nobody can serve.
#[derive(Debug, Default, PartialEq)]
pub struct CoveringSet {
    /// node id → shards it is asked for.
    pub assignments: BTreeMap<String, Vec<u32>>,
    /// Shards with no live replica in any active group.
    pub missing: Vec<u32>,
}

/// For each shard, one live read node: groups are tried in turn starting at `turn`, and
/// within a group the replicas rotate with the shard so load spreads.
pub fn covering_set(index: &pb::Index, topology: &pb::Topology, turn: usize) -> CoveringSet {
    let live: HashSet<&str> = topology
        .nodes
        .iter()
        .filter(|n| n.state == NodeState::Active as i32)
        .map(|n| n.id.as_str())
        .collect();
    let active: HashSet<u32> = topology
        .groups
        .iter()
        .filter(|g| g.state == GroupState::Active as i32)
        .map(|g| g.id)
        .collect();
    let groups: Vec<&pb::GroupRouting> = index
        .routing
        .iter()
        .filter(|r| active.contains(&r.group_id))
        .collect();
    let mut set = CoveringSet::default();
    for shard in 0..index.shard_count {
        let chosen = (0..groups.len()).find_map(|g| {
            let route = groups[(turn + g) % groups.len()]
                .shards
                .get(shard as usize)?;
            let replicas: Vec<&String> = route
                .read_nodes
                .iter()
                .filter(|n| live.contains(n.as_str()))
                .collect();
            (!replicas.is_empty())
                .then(|| replicas[(turn + shard as usize) % replicas.len()].clone())
        });
        match chosen {
            Some(node) => set.assignments.entry(node).or_default().push(shard),
            None => set.missing.push(shard),
        }
    }
    set
}

/// Sends `body` to every node of `plan` at `path` (POST), each with its own shard filter
/// ANDed with the client's `filter`, inside the current span; answers in plan order.
pub(super) async fn scatter(
    state: &AppState,
    topology: &pb::Topology,
    plan: &CoveringSet,
    path: &str,
    body: &Map<String, Value>,
    filter: Option<&Value>,
) -> Vec<(usize, Result<NodeAnswer, Unreachable>)> {
    let mut calls = JoinSet::new();
    for (position, (node_id, shards)) in plan.assignments.iter().enumerate() {
        let Some(node) = topology.nodes.iter().find(|n| &n.id == node_id) else {
            continue;
        };
        let mut node_body = body.clone();
        node_body.insert("filter".into(), with_shard_filter(filter, shards));
        let node_body = Value::Object(node_body);
        let (client, node_id, address, path) = (
            state.nodes.clone(),
            node_id.clone(),
            node.address.clone(),
            path.to_owned(),
        );
        calls.spawn(tracing::Instrument::in_current_span(async move {
            let answer = client
                .call(&node_id, &address, Method::POST, &path, Some(&node_body))
                .await;
            (position, answer)
        }));
    }
    let mut answers = Vec::with_capacity(plan.assignments.len());
    while let Some(Ok(answer)) = calls.join_next().await {
        answers.push(answer);
    }
    answers.sort_by_key(|(position, _)| *position);
    answers
}

/// The client's filter ANDed with the node's shards.
pub(super) fn with_shard_filter(client: Option<&Value>, shards: &[u32]) -> Value {
    let list = shards
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let own = format!("{SHARD_FIELD} IN [{list}]");
    match client {
        None | Some(Value::Null) => json!(own),
        Some(Value::String(s)) if s.trim().is_empty() => json!(own),
        Some(Value::String(s)) => json!(format!("{own} AND ({s})")),
        // The array form is an AND of its elements.
        Some(Value::Array(items)) => {
            let mut all = vec![json!(own)];
            all.extend(items.iter().cloned());
            Value::Array(all)
        }
        Some(other) => other.clone(),
    }
}

fn uint(query: &Map<String, Value>, key: &str) -> Option<usize> {
    query.get(key).and_then(Value::as_u64).map(|v| v as usize)
}

fn sort_value_order(a: Option<&Value>, b: Option<&Value>, ascending: bool) -> Ordering {
    fn first(v: Option<&Value>) -> Option<&Value> {
        match v {
            Some(Value::Array(items)) => items.first(),
            Some(Value::Null) | None => None,
            other => other,
        }
    }
    let (a, b) = (first(a), first(b));
    // Documents without a value come last in either direction, as in Meilisearch.
    let ordering = match (a, b) {
        (None, None) => return Ordering::Equal,
        (Some(_), None) => return Ordering::Less,
        (None, Some(_)) => return Ordering::Greater,
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => x.to_lowercase().cmp(&y.to_lowercase()),
        (Some(Value::Number(_)), Some(_)) => Ordering::Less,
        (Some(_), Some(Value::Number(_))) => Ordering::Greater,
        _ => Ordering::Equal,
    };
    if ascending {
        ordering
    } else {
        ordering.reverse()
    }
}

fn lookup<'a>(hit: &'a Value, path: &str) -> Option<&'a Value> {
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
    Path(uid): Path<String>,
    body: Bytes,
) -> Result<Response, MeiliError> {
    let query = if body.is_empty() {
        Map::new()
    } else {
        json_object(&body)?
    };
    Ok(respond(run_search(&state, &uid, query).await))
}

/// `GET /indexes/{uid}/search`: the query string in the POST body's shape (numbers,
/// booleans, comma-separated lists; `sort` keeps `_geoPoint(lat,lng)` whole; a `filter`
/// that parses as JSON is used as JSON, as Meilisearch does).
pub async fn search_get(
    State(state): State<AppState>,
    Path(uid): Path<String>,
    axum::extract::Query(params): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<Response, MeiliError> {
    let mut query = Map::new();
    for (key, value) in params {
        let list = |v: &str| Value::Array(v.split(',').map(|s| json!(s.trim())).collect());
        let parsed = match key.as_str() {
            "offset" | "limit" | "page" | "hitsPerPage" | "cropLength" => {
                json!(value.parse::<u64>().map_err(|_| MeiliError::invalid(get_code(&key), format!("Invalid value in parameter `{key}`: could not parse `{value}` as a positive integer")))?)
            }
            "rankingScoreThreshold" => json!(value.parse::<f64>().map_err(|_| MeiliError::invalid("invalid_search_ranking_score_threshold", format!("Invalid value in parameter `rankingScoreThreshold`: could not parse `{value}` as a float")))?),
            "showRankingScore" | "showRankingScoreDetails" | "showMatchesPosition" | "retrieveVectors" => {
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
            _ => json!(value),
        };
        query.insert(key, parsed);
    }
    Ok(respond(run_search(&state, &uid, query).await))
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
        _ => "invalid_search_retrieve_vectors",
    }
}

/// A merged search answer and the `index/shard`s no live replica could serve.
pub struct Searched {
    /// The response body, in Meilisearch's key order.
    pub body: Map<String, Value>,
    /// Shards left out (partial results).
    pub degraded: Vec<String>,
}

/// Why a search has no merged answer: a node's client error (the same on every node) or
/// Miroir's own.
pub enum SearchFailure {
    /// A node answered 4xx: passed on as is.
    Node(StatusCode, Value),
    /// Miroir could not run the search.
    Miroir(MeiliError),
}

impl SearchFailure {
    /// The status and Meilisearch error body.
    pub fn parts(self) -> (StatusCode, Value) {
        match self {
            Self::Node(status, body) => (status, body),
            Self::Miroir(error) => (error.status, error.body()),
        }
    }
}

/// The HTTP answer for a search.
pub fn respond(result: Result<Searched, SearchFailure>) -> Response {
    match result {
        Ok(searched) => {
            let mut response = (StatusCode::OK, Json(Value::Object(searched.body))).into_response();
            if !searched.degraded.is_empty()
                && let Ok(value) =
                    HeaderValue::from_str(&format!("shards={}", searched.degraded.join(",")))
            {
                response.headers_mut().insert("x-miroir-degraded", value);
            }
            response
        }
        Err(failure) => {
            let (status, body) = failure.parts();
            (status, Json(body)).into_response()
        }
    }
}

/// Scatter-gather and merge one search.
pub async fn run_search(
    state: &AppState,
    uid: &str,
    query: Map<String, Value>,
) -> Result<Searched, SearchFailure> {
    let index = find_index(state, uid).map_err(SearchFailure::Miroir)?;
    let topology = state.topology.current();
    let turn = ROUND_ROBIN.fetch_add(1, AtomicOrdering::Relaxed);
    let plan = covering_set(&index, &topology, turn);

    let page_mode = query.contains_key("page") || query.contains_key("hitsPerPage");
    let (offset, limit) = (
        uint(&query, "offset").unwrap_or(0),
        uint(&query, "limit").unwrap_or(20),
    );
    let (page, hits_per_page) = (
        uint(&query, "page").unwrap_or(1),
        uint(&query, "hitsPerPage").unwrap_or(20),
    );
    let (from, count) = if page_mode {
        (
            page.saturating_sub(1) * hits_per_page,
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
    let distinct = query
        .get("distinct")
        .and_then(Value::as_str)
        .map(str::to_owned);
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
    node_query.insert("hitsPerPage".into(), json!(from + count));
    node_query.insert("showRankingScore".into(), json!(true));
    // With a sort, Meilisearch ranks by the rules before `sort`, then the sort, then the
    // rules after it: the per-rule details let the merge do exactly that.
    let show_details = query
        .get("showRankingScoreDetails")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !sort.is_empty() {
        node_query.insert("showRankingScoreDetails".into(), json!(true));
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
    let node_answers = scatter(
        state,
        &topology,
        &plan,
        &path,
        &node_query,
        query.get("filter"),
    )
    .await;
    let mut answers: Vec<(usize, Value)> = Vec::new();
    let mut unreachable_shards: Vec<u32> = plan.missing.clone();
    let shard_lists: Vec<&Vec<u32>> = plan.assignments.values().collect();
    for (position, answer) in node_answers {
        match answer {
            Ok(answer) if answer.status == 200 => answers.push((position, answer.body)),
            // A client error (bad filter, sort…) is the same on every node: pass it on.
            Ok(answer) if (400..500).contains(&answer.status) => {
                let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_REQUEST);
                return Err(SearchFailure::Node(status, answer.body));
            }
            _ => unreachable_shards.extend(shard_lists[position].iter().copied()),
        }
    }

    let mut hits: Vec<(usize, usize, Value)> = Vec::new();
    for (position, answer) in &answers {
        for (rank, hit) in answer["hits"].as_array().into_iter().flatten().enumerate() {
            hits.push((*position, rank, hit.clone()));
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
    let page_hits: Vec<Value> = hits
        .into_iter()
        .skip(from)
        .take(count)
        .map(|(_, _, mut hit)| {
            if let Some(object) = hit.as_object_mut() {
                object.remove(SHARD_FIELD);
                for field in &injected {
                    object.remove(field);
                }
                if !show_score {
                    object.remove("_rankingScore");
                }
                if !show_details {
                    object.remove("_rankingScoreDetails");
                }
                if let Some(Value::Object(formatted)) = object.get_mut("_formatted") {
                    formatted.remove(SHARD_FIELD);
                }
                if let Some(Value::Object(positions)) = object.get_mut("_matchesPosition") {
                    positions.remove(SHARD_FIELD);
                }
            }
            hit
        })
        .collect();

    // Nodes cap their totals at maxTotalHits (default 1000); capping the sum again is exact.
    let total = answers
        .iter()
        .map(|(_, a)| a["totalHits"].as_u64().unwrap_or(0))
        .sum::<u64>()
        .min(1000);
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
        let (distribution, stats) = merge_facets(answers.iter().map(|(_, a)| a));
        response.insert("facetDistribution".into(), distribution);
        response.insert("facetStats".into(), stats);
    }
    unreachable_shards.sort_unstable();
    unreachable_shards.dedup();
    Ok(Searched {
        body: response,
        degraded: unreachable_shards
            .iter()
            .map(|s| format!("{uid}/{s}"))
            .collect(),
    })
}

/// `POST /indexes/{uid}/facet-search`: each covering node searches the facet values of its
/// own shards; counts are summed per value.
pub async fn facet_search(
    State(state): State<AppState>,
    Path(uid): Path<String>,
    body: Bytes,
) -> Result<Response, MeiliError> {
    let query = json_object(&body)?;
    let index = find_index(&state, &uid)?;
    let topology = state.topology.current();
    let plan = covering_set(
        &index,
        &topology,
        ROUND_ROBIN.fetch_add(1, AtomicOrdering::Relaxed),
    );
    let path = format!("/indexes/{uid}/facet-search");
    let node_answers = scatter(&state, &topology, &plan, &path, &query, query.get("filter")).await;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut processing = 0;
    for (_, answer) in node_answers {
        match answer {
            Ok(answer) if answer.status == 200 => {
                processing = processing.max(answer.body["processingTimeMs"].as_u64().unwrap_or(0));
                for hit in answer.body["facetHits"].as_array().into_iter().flatten() {
                    if let Some(value) = hit["value"].as_str() {
                        *counts.entry(value.to_owned()).or_default() +=
                            hit["count"].as_u64().unwrap_or(0);
                    }
                }
            }
            Ok(answer) => {
                return Ok((
                    StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY),
                    Json(answer.body),
                )
                    .into_response());
            }
            Err(unreachable) => {
                return Ok(
                    (StatusCode::SERVICE_UNAVAILABLE, Json(unreachable.error())).into_response()
                );
            }
        }
    }
    let hits: Vec<Value> = counts
        .into_iter()
        .take(100)
        .map(|(value, count)| json!({"value": value, "count": count}))
        .collect();
    let facet_query = query.get("facetQuery").cloned().unwrap_or(Value::Null);
    Ok(
        Json(json!({"facetHits": hits, "facetQuery": facet_query, "processingTimeMs": processing}))
            .into_response(),
    )
}

/// Sums facet counts per value; takes the min of mins and max of maxes.
pub fn merge_facets<'a>(answers: impl Iterator<Item = &'a Value>) -> (Value, Value) {
    let mut distribution: Map<String, Value> = Map::new();
    let mut stats: Map<String, Value> = Map::new();
    for answer in answers {
        for (facet, values) in answer["facetDistribution"]
            .as_object()
            .into_iter()
            .flatten()
        {
            let merged = distribution
                .entry(facet.clone())
                .or_insert_with(|| json!({}));
            for (value, count) in values.as_object().into_iter().flatten() {
                let total = merged[value].as_u64().unwrap_or(0) + count.as_u64().unwrap_or(0);
                merged[value] = json!(total);
            }
        }
        for (facet, range) in answer["facetStats"].as_object().into_iter().flatten() {
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
    // Values in Meilisearch's default (alphabetical) order.
    for values in distribution.values_mut() {
        if let Value::Object(map) = values {
            let mut sorted: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            map.extend(sorted);
        }
    }
    (Value::Object(distribution), Value::Object(stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_filters_and_the_client_filter_combine() {
        assert_eq!(
            with_shard_filter(None, &[1, 3]),
            json!("_miroir_shard IN [1, 3]")
        );
        assert_eq!(
            with_shard_filter(Some(&json!("a = 1 OR b = 2")), &[0]),
            json!("_miroir_shard IN [0] AND (a = 1 OR b = 2)")
        );
        assert_eq!(
            with_shard_filter(Some(&json!(["a = 1", ["b = 2", "c = 3"]])), &[2]),
            json!(["_miroir_shard IN [2]", "a = 1", ["b = 2", "c = 3"]])
        );
    }

    #[test]
    fn facets_sum_and_stats_span() {
        let a = json!({"facetDistribution": {"genre": {"b": 1, "a": 2}}, "facetStats": {"year": {"min": 2000.0, "max": 2005.0}}});
        let b = json!({"facetDistribution": {"genre": {"a": 1}}, "facetStats": {"year": {"min": 1990.0, "max": 2001.0}}});
        let (distribution, stats) = merge_facets([&a, &b].into_iter());
        assert_eq!(distribution, json!({"genre": {"a": 3, "b": 1}}));
        assert_eq!(stats, json!({"year": {"min": 1990.0, "max": 2005.0}}));
    }
}
